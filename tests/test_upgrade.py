"""Upgrading a ledger made before the programme facts were in the hash chain.

The fixture is the demo ledger of commit 698fefe (schema 20261201_0004) and the anchor
taken on it then (tests/fixtures/upgrade/README.md). ``jiebang init`` upgrades it: its 170
entries keep their hashes, so the old anchor still matches, and the programme state it held
is recorded as one hashed snapshot entry, so from the upgrade on a row changed behind the
application's back is named by ``verify``. On PostgreSQL the same rows are loaded into a
schema migrated to 20261201_0004 and upgraded the same way.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Boolean, Date, DateTime, create_engine, text

from ledger.core.db import make_engine
from ledger.core.models import Base
from migrations import HEAD, migrate

FIXTURES = Path(__file__).parent / "fixtures" / "upgrade"
OLD = "20261201_0004"
ANCHOR = FIXTURES / "demo-20261201_0004.anchor.json"


def _old_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    with gzip.open(FIXTURES / "demo-20261201_0004.db.gz") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    return path


# Parents before children; postings before the entries that seal them.
COPY_ORDER = ("parties", "party_relations", "accounts", "postings", "journal_entries", "projects", "lanes",
              "tranches", "project_events", "settings", "requests", "enterprise_logins")


def _load_into_postgres(sqlite_path: Path, url: str) -> None:
    """Copy every row of the old SQLite ledger into a PostgreSQL schema at the old revision."""
    engine = make_engine(url)
    migrate(engine, OLD)
    source = sqlite3.connect(sqlite_path)
    source.row_factory = sqlite3.Row
    with engine.begin() as conn:
        for table in COPY_ORDER:
            model = Base.metadata.tables[table]
            rows = [dict(r) for r in source.execute(f"SELECT * FROM {table} ORDER BY rowid")]
            if not rows:
                continue
            for row in rows:
                for name, value in row.items():
                    kind = model.c[name].type
                    if value is None:
                        continue
                    if isinstance(kind, Boolean):
                        row[name] = bool(value)
                    elif isinstance(kind, DateTime):
                        row[name] = dt.datetime.fromisoformat(value)
                    elif isinstance(kind, Date):
                        row[name] = dt.date.fromisoformat(value)
            columns = list(rows[0])
            conn.execute(
                text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"),
                rows,
            )
            if "id" in columns and table not in ("journal_entries",):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"))
        head = source.execute("SELECT last_entry_id, last_hash FROM chain_head").fetchone()
        conn.execute(text("UPDATE chain_head SET last_entry_id = :i, last_hash = :h"), {"i": head[0], "h": head[1]})
    source.close()
    engine.dispose()


@pytest.fixture
def old_ledger(backend, db_url, tmp_path) -> str:
    path = _old_sqlite(tmp_path)
    if backend == "sqlite":
        return f"sqlite:///{path}"
    _load_into_postgres(path, db_url)
    return db_url


def test_an_old_demo_ledger_upgrades_verifies_and_keeps_its_anchor(old_ledger, tmp_path):
    from conftest import Cli

    cli = Cli(old_ledger)
    refused = cli("verify", expect=1)
    assert "run `jiebang --db " in refused.stderr and " init` to create or upgrade it" in refused.stderr
    upgraded = cli("init").stdout
    assert f"upgraded from {OLD}" in upgraded and f"(schema {HEAD})" in upgraded
    assert "recorded the programme data as it stood as snapshot entry 171" in upgraded
    anchor = json.loads(ANCHOR.read_text(encoding="utf-8"))
    ok = cli("verify", "--anchor", str(ANCHOR)).stdout
    assert ok.startswith("OK: 171 entries verified") and f"anchor entry {anchor['head_id']} matches" in ok
    # Running init again changes nothing.
    assert "already at schema" in cli("init").stdout
    assert cli("verify").stdout.startswith("OK: 171 entries verified")

    # The ledger works on: a contribution is recorded and everything still verifies.
    cli("contribute", "--project", "JM2026-005", "--amount", "10万", "--category", "设备费", "--date", "2027-04-01")
    assert cli("verify", "--anchor", str(ANCHOR)).stdout.startswith("OK: 172 entries verified")

    # From the upgrade on, the programme rows are covered: a tranche changed behind the
    # application's back (its guard dropped) is named.
    engine = create_engine(old_ledger)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER tranches_no_update"))
        else:
            conn.execute(text("ALTER TABLE tranches DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE tranches SET amount_fen = amount_fen + 100 WHERE project_code = 'JM2024-002' AND seq = 2"))
    engine.dispose()
    failed = cli("verify", expect=1).stderr
    assert "table tranches, row (JM2024-002, 1, 2), column amount_fen" in failed
