"""Backup and restore: `jiebang backup FILE` and `jiebang --db NEW restore FILE`.

On SQLite the backup is SQLite's online backup API: a consistent snapshot even while an
officer keeps writing. A restored ledger verifies with the same chain head and gives the
same bytes for balances, the status report and the audit pack. On PostgreSQL both verbs
refuse in one line that names pg_dump -Fc / pg_restore (docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from pathlib import Path

from conftest import Cli
from programme_fixtures import JM_DEMAND, JM_UNIVERSITY
from sqlalchemy.orm import Session
from test_tamper import PROJECT, build

from ledger.core.db import make_engine


def outputs(cli: Cli, out_dir: Path) -> dict[str, bytes]:
    """Everything a restored ledger must reproduce byte for byte."""
    found = {
        "verify": cli("verify").stdout.encode(),
        "balances": cli("balances", "--format", "json").stdout.encode(),
        "balances_project": cli("balances", "--project", PROJECT, "--format", "json").stdout.encode(),
        "journal": cli("journal", "--format", "json").stdout.encode(),
        "status_json": cli("report", "status", "--party", JM_DEMAND, "--format", "json").stdout.encode(),
        "status_table": cli("report", "status", "--party", JM_UNIVERSITY).stdout.encode(),
    }
    cli("report", "audit", "--project", PROJECT, "--out", str(out_dir))
    for path in sorted(out_dir.rglob("*")):
        if path.is_file():
            found[f"audit/{path.relative_to(out_dir)}"] = path.read_bytes()
    return found


def test_a_restored_ledger_verifies_and_reproduces_every_report_byte_for_byte(db_url, backend, cli, tmp_path):
    if backend == "postgresql":
        line = cli("backup", str(tmp_path / "x.db"), expect=1).stderr.strip()
        assert "pg_dump -Fc" in line and "pg_restore" in line and "docs/operations.md" in line
        line = cli("restore", str(tmp_path / "x.db"), expect=1).stderr.strip()
        assert "pg_restore" in line
        assert not (tmp_path / "x.db").exists()
        return
    build(cli)
    backup_file = tmp_path / "backups" / "jiebang-2025-03-05.db"
    backup_file.parent.mkdir()
    said = cli("backup", str(backup_file)).stdout
    assert said.startswith("backed up 9 entries (chain head 9 ")
    assert not list(backup_file.parent.glob("*.partial"))
    # A backup never replaces a file by accident, nor the ledger itself.
    cli("backup", str(backup_file), expect=1)
    cli("backup", db_url.removeprefix("sqlite:///"), "--force", expect=1)

    restored = Cli(f"sqlite:///{tmp_path / 'restored.db'}")
    assert "verify OK" in restored("restore", str(backup_file)).stdout
    # Restoring onto an existing ledger needs --force.
    line = restored("restore", str(backup_file), expect=1).stderr
    assert "already exists" in line and "--force" in line
    restored("restore", str(backup_file), "--force")

    original = outputs(cli, tmp_path / "audit-original")
    copy = outputs(restored, tmp_path / "audit-restored")
    assert original.keys() == copy.keys() and any(k.endswith(".pdf") for k in original)
    different = [name for name in original if original[name] != copy[name]]
    assert not different, f"restored ledger differs in {different}"


def sqlite_ledger(template: Path, path: Path) -> str:
    """A fresh SQLite ledger (these tests are about SQLite files only)."""
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


def test_a_file_that_is_not_a_backup_is_refused_before_anything_is_written(_sqlite_template, tmp_path):
    target = Cli(f"sqlite:///{tmp_path / 'new.db'}")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert "is not a SQLite database" in target("restore", str(junk), expect=1).stderr
    assert "does not exist" in target("restore", str(tmp_path / "missing.db"), expect=1).stderr
    assert not (tmp_path / "new.db").exists()


def test_backups_taken_while_an_officer_keeps_writing_are_consistent_snapshots(_sqlite_template, tmp_path):
    from ledger.programme import appropriate

    db_url = sqlite_ledger(_sqlite_template, tmp_path / "ledger.db")
    cli = Cli(db_url)

    cli("appropriate", "--year", "2025", "--amount", "1.00", "--date", "2025-01-10")
    engine = make_engine(db_url)
    stop = threading.Event()
    written = [0]

    def officer() -> None:
        day = dt.date(2025, 1, 1)
        while not stop.is_set():
            with Session(engine) as session, session.begin():
                appropriate(session, year=2025, amount_fen=100 + written[0], date=day, voucher=f"ONLINE-{written[0]}", actor="officer-b")
            written[0] += 1

    thread = threading.Thread(target=officer, daemon=True)
    thread.start()
    try:
        counts = []
        for i in range(3):
            while written[0] < 5 * (i + 1):  # let some entries commit between backups
                threading.Event().wait(0.01)
            said = cli("backup", str(tmp_path / f"online-{i}.db")).stdout  # the copy is verified before it is kept
            counts.append(int(said.split()[2]))
    finally:
        stop.set()
        thread.join(timeout=30)
        engine.dispose()
    assert counts == sorted(counts) and counts[0] >= 6, counts
    for i, count in enumerate(counts):
        restored = Cli(f"sqlite:///{tmp_path / f'restored-{i}.db'}")
        assert f"restored {count} entries" in restored("restore", str(tmp_path / f"online-{i}.db")).stdout
        assert restored("verify").stdout.startswith(f"OK: {count} entries verified")
