"""Tamper evidence in depth: changes made behind the application's back are caught.

Someone with write access to the database drops (SQLite) or disables (PostgreSQL, as a
superuser) the append-only triggers and edits, deletes, inserts or reorders rows. `verify`
names the first bad entry every time. A careful forger who re-hashes the whole chain after
the change (and fixes the chain head) gets past `verify`, which only proves the chain is
consistent with itself, but not past `verify --anchor FILE` against an anchor exported
earlier with `jiebang anchor`.

Most scenarios tamper inside a transaction, run the verifier on the same connection and
roll back, so one ledger serves them all; the CLI scenarios commit the damage and run
`jiebang verify` as an auditor would.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from programme_fixtures import JM_DEMAND, JM_UNIVERSITY
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from ledger.core.journal import chain_hash, content_hash
from ledger.core.verify import verify

PROJECT = "JM2025-901"
ENTRY_COLUMNS = "id, value_date, kind, project_code, voucher, memo, actor, recorded_at, rules_version, trace, reverses_id, content_hash, prev_hash, hash, facts"


def build(cli) -> dict[str, int]:
    """A small real ledger: parties, a budget, a project, a release and three spending reports."""
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "600,000,000.00", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "50,000,000.00", "--date", "2025-01-10")
    cli("project", "approve", "--code", PROJECT, "--name", "防篡改测试", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", "8,000,000.00",
        "--grant", "3,000,000.00", "--start", "2025-03-01", "--end", "2027-02-28", "--date", "2025-02-01")
    cli("stage", "--project", PROJECT, "--stage", "contract_signed", "--passed", "--date", "2025-02-10")
    cli("release", "--project", PROJECT, "--date", "2025-02-15")
    for day, amount in ((3, "100,000.00"), (4, "200,000.00"), (5, "300,000.00")):
        cli("spend", "--project", PROJECT, "--amount", amount, "--category", "业务费", "--date", f"2025-03-{day:02d}")
    assert cli("verify").stdout.startswith("OK: ")
    return ids_by_kind(cli)


def ids_by_kind(cli) -> dict[str, int]:
    """The first entry id of each kind, and 'last'."""
    rows = json.loads(cli("journal", "--format", "json").stdout)
    found: dict[str, int] = {}
    for row in rows:
        found.setdefault(row["kind"], row["entry"])
    found["last"] = max(row["entry"] for row in rows)
    found["spends"] = sorted({row["entry"] for row in rows if row["kind"] == "spend"})  # type: ignore[assignment]
    return found


def raw_engine(db_url: str):
    """An engine without the application's connection hooks (no foreign keys on SQLite)."""
    return create_engine(db_url)


def disable_guards(conn) -> None:
    """What a forger with database access does first: remove the triggers that refuse changes."""
    if conn.dialect.name == "sqlite":
        for name in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars().all():
            conn.execute(text(f'DROP TRIGGER "{name}"'))
    else:
        tables = conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )).scalars().all()
        for table in tables:
            conn.execute(text(f'ALTER TABLE "{table}" DISABLE TRIGGER ALL'))  # superuser: also the FK triggers


def verify_on(conn):
    with Session(bind=conn) as session:
        return verify(session)


# --- the tampering ----------------------------------------------------------------------


def edit_amount(conn, ids):
    """Both legs of a spending report changed by the same amount: still balanced, but altered."""
    entry = ids["spends"][1]
    conn.execute(text("UPDATE postings SET amount_fen = amount_fen * 10 WHERE entry_id = :e"), {"e": entry})
    return entry, "was altered after posting"


def edit_one_leg(conn, ids):
    entry = ids["release"]
    first = conn.execute(text("SELECT min(id) FROM postings WHERE entry_id = :e"), {"e": entry}).scalar_one()
    conn.execute(text("UPDATE postings SET amount_fen = amount_fen + 1 WHERE id = :p"), {"p": first})
    return entry, "does not balance"


def edit_memo(conn, ids):
    entry = ids["approval"]
    conn.execute(text("UPDATE journal_entries SET memo = memo || ' (amended)' WHERE id = :e"), {"e": entry})
    return entry, "was altered after posting"


def edit_actor(conn, ids):
    entry = ids["release"] - 1  # the contract-signed stage result: a fact with no postings
    conn.execute(text("UPDATE journal_entries SET actor = 'someone-else' WHERE id = :e"), {"e": entry})
    return entry, "has a hash that does not match"


def edit_date(conn, ids):
    """The value date moved on the entry and its postings together."""
    entry = ids["spends"][0]
    conn.execute(text("UPDATE journal_entries SET value_date = :d WHERE id = :e"), {"e": entry, "d": "2025-03-02"})
    conn.execute(text("UPDATE postings SET value_date = :d WHERE entry_id = :e"), {"e": entry, "d": "2025-03-02"})
    return entry, "was altered after posting"


def delete_middle(conn, ids):
    entry = ids["release"]
    conn.execute(text("DELETE FROM postings WHERE entry_id = :e"), {"e": entry})
    conn.execute(text("DELETE FROM journal_entries WHERE id = :e"), {"e": entry})
    return entry, f"entry {entry} is missing"


def delete_postings(conn, ids):
    entry = ids["spends"][2]
    conn.execute(text("DELETE FROM postings WHERE entry_id = :e"), {"e": entry})
    return entry, "was altered after posting"


def delete_last(conn, ids):
    """The last entry removed, the chain head left alone: the head no longer matches."""
    entry = ids["last"]
    conn.execute(text("DELETE FROM postings WHERE entry_id = :e"), {"e": entry})
    conn.execute(text("DELETE FROM journal_entries WHERE id = :e"), {"e": entry})
    return entry, "the chain head records entry"


def insert_posting(conn, ids):
    """A balanced pair of postings slipped into a sealed entry."""
    entry = ids["spends"][0]
    rows = conn.execute(text("SELECT account_id, value_date, book, amount_fen FROM postings WHERE entry_id = :e ORDER BY id"), {"e": entry}).all()
    for account_id, value_date, book, amount in rows:
        conn.execute(
            text("INSERT INTO postings (entry_id, account_id, value_date, book, amount_fen) VALUES (:e, :a, :d, :b, :m)"),
            {"e": entry, "a": account_id, "d": value_date, "b": book, "m": amount},
        )
    return entry, "was altered after posting"


def insert_entry(conn, ids):
    """A copy of an entry appended after the head, chain fields copied as they were."""
    source = ids["spends"][0]
    new_id = ids["last"] + 1
    # The hash column is unique, so the forger must invent one: copy the row with a made-up hash.
    row = conn.execute(text(f"SELECT {ENTRY_COLUMNS} FROM journal_entries WHERE id = :s"), {"s": source}).mappings().one()
    values = dict(row) | {"id": new_id, "voucher": f"{row['voucher']}-copy", "hash": "f" * 64}
    conn.execute(text(f"INSERT INTO journal_entries ({ENTRY_COLUMNS}) VALUES ({', '.join(':' + c.strip() for c in ENTRY_COLUMNS.split(','))})"), values)
    conn.execute(text(
        "INSERT INTO postings (entry_id, account_id, value_date, book, amount_fen, budget_category, fund_source) "
        "SELECT :n, account_id, value_date, book, amount_fen, budget_category, fund_source FROM postings WHERE entry_id = :s"
    ), {"n": new_id, "s": source})
    return new_id, f"entry {new_id}"


def reorder(conn, ids):
    """Two neighbouring entries swap places (ids swapped on the entries and their postings)."""
    a, b = ids["spends"][0], ids["spends"][1]
    parked = 1_000_000
    for old, new in ((a, parked), (b, a), (parked, b)):
        conn.execute(text("UPDATE postings SET entry_id = :new WHERE entry_id = :old"), {"old": old, "new": new})
        conn.execute(text("UPDATE journal_entries SET id = :new WHERE id = :old"), {"old": old, "new": new})
    return a, f"entry {a} does not follow entry {a - 1}"


def move_head(conn, ids):
    conn.execute(text("UPDATE chain_head SET last_entry_id = last_entry_id - 1"))
    return ids["last"] - 1, "the chain head records entry"  # verify names the entry the head claims


SCENARIOS: dict[str, Callable] = {
    "edit_amount": edit_amount, "edit_one_leg": edit_one_leg, "edit_memo": edit_memo, "edit_actor": edit_actor,
    "edit_date": edit_date, "delete_middle": delete_middle, "delete_postings": delete_postings,
    "delete_last": delete_last, "insert_posting": insert_posting, "insert_entry": insert_entry, "reorder": reorder,
    "move_head": move_head,
}


def test_every_edit_delete_insert_and_reorder_behind_the_application_is_named_by_verify(db_url, cli):
    ids = build(cli)
    engine = raw_engine(db_url)
    try:
        with engine.connect() as conn:
            clean = verify_on(conn)
            conn.rollback()
        assert clean.ok
        for name, tamper in SCENARIOS.items():
            with engine.connect() as conn:
                conn.begin()
                disable_guards(conn)
                bad_entry, phrase = tamper(conn, ids)
                result = verify_on(conn)
                conn.rollback()  # the next scenario starts from the sound ledger again
            assert not result.ok, f"{name}: verify did not notice"
            assert result.first_bad_entry == bad_entry, f"{name}: named entry {result.first_bad_entry}, not {bad_entry}: {result.problem}"
            assert phrase in result.problem and "\n" not in result.problem, f"{name}: {result.problem}"
        # The rollbacks restored everything, triggers included.
        assert cli("verify").stdout.startswith("OK: ")
    finally:
        engine.dispose()


def test_the_cli_names_the_first_bad_entry_of_a_committed_edit(db_url, cli):
    ids = build(cli)
    engine = raw_engine(db_url)
    try:
        with engine.begin() as conn:
            disable_guards(conn)
            edit_amount(conn, ids)
            edit_memo(conn, ids)  # an earlier entry: that is the first bad one
    finally:
        engine.dispose()
    result = cli("verify", expect=1)
    assert result.stderr.strip() == (
        f"FAILED at entry {ids['approval']}: entry {ids['approval']} (approval APPROVE-{PROJECT}) was altered after posting: "
        "its content no longer matches its recorded digest"
    )
    data = verify_json(db_url)
    assert (data["ok"], data["first_bad_entry"]) == (False, ids["approval"])


def verify_json(db_url: str, *args: str) -> dict:
    """`jiebang verify --format json` on a failing ledger: exit 1, the JSON on stdout."""
    from click.testing import CliRunner

    from cli import main

    result = CliRunner().invoke(main, ["--db", db_url, "verify", "--format", "json", *args])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit), result.output
    return json.loads(result.stdout)


# --- the anchor -------------------------------------------------------------------------


def rewrite_chain(conn, from_entry: int, factor: int) -> None:
    """A consistent forgery: change one entry's amounts, then re-hash it and every later entry
    with the application's own functions, and move the chain head to the new last hash."""
    entries = conn.execute(text(f"SELECT {ENTRY_COLUMNS} FROM journal_entries ORDER BY id")).mappings().all()
    conn.execute(text("UPDATE postings SET amount_fen = amount_fen * :f WHERE entry_id = :e"), {"f": factor, "e": from_entry})
    prev = None
    for entry in entries:
        if entry["id"] < from_entry:
            prev = entry["hash"]
            continue
        legs = conn.execute(text(
            "SELECT p.book, a.name, p.amount_fen, p.budget_category, p.fund_source FROM postings p "
            "JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = :e"
        ), {"e": entry["id"]}).all()
        value_date = entry["value_date"]
        if isinstance(value_date, str):
            import datetime as dt

            value_date = dt.date.fromisoformat(value_date)
        digest = content_hash(
            value_date=value_date, kind=entry["kind"], project_code=entry["project_code"], voucher=entry["voucher"],
            memo=entry["memo"], rules_version=entry["rules_version"], trace_text=entry["trace"],
            reverses_id=entry["reverses_id"], postings=[tuple(leg) for leg in legs], facts_text=entry["facts"],
        )
        new_hash = chain_hash(entry["id"], digest, entry["actor"], prev)
        conn.execute(
            text("UPDATE journal_entries SET content_hash = :c, prev_hash = :p, hash = :h WHERE id = :e"),
            {"c": digest, "p": prev, "h": new_hash, "e": entry["id"]},
        )
        prev = new_hash
    conn.execute(text("UPDATE chain_head SET last_hash = :h"), {"h": prev})


def test_an_anchor_catches_a_consistent_rewrite_of_the_whole_chain(db_url, cli, tmp_path):
    ids = build(cli)
    anchor_file = tmp_path / "anchor-2025-03-05.json"
    written = cli("anchor", "--out", str(anchor_file)).stdout
    anchor = json.loads(anchor_file.read_text(encoding="utf-8"))
    assert anchor["format"] == "jiebang-anchor/1"
    assert (anchor["head_id"], anchor["entries"], anchor["latest_value_date"]) == (ids["last"], ids["last"], "2025-03-05")
    assert len(anchor["head_hash"]) == 64 and anchor["head_hash"] in written
    # The anchor never overwrites an earlier one by accident.
    cli("anchor", "--out", str(anchor_file), expect=1)

    # The ledger grows after the anchor: the anchored head is still there, so it passes.
    cli("spend", "--project", PROJECT, "--amount", "1,000.00", "--category", "业务费", "--date", "2025-03-06")
    ok = cli("verify", "--anchor", str(anchor_file)).stdout
    assert ok.startswith("OK: ") and f"anchor entry {ids['last']} matches" in ok

    # A forger changes the first spending report tenfold and re-hashes everything after it.
    engine = raw_engine(db_url)
    try:
        with engine.begin() as conn:
            disable_guards(conn)
            rewrite_chain(conn, ids["spends"][0], 10)
    finally:
        engine.dispose()
    # The chain is consistent again, so verify alone cannot tell ...
    assert cli("verify").stdout.startswith("OK: ")
    # ... but the auditor's anchor can.
    failed = cli("verify", "--anchor", str(anchor_file), expect=1).stderr.strip()
    assert failed.startswith(f"FAILED at entry {ids['last']}: entry {ids['last']} has hash "), failed
    assert "the chain up to it was rewritten" in failed
    data = verify_json(db_url, "--anchor", str(anchor_file))
    assert (data["ok"], data["first_bad_entry"], data["anchor"]["head_hash"]) == (False, ids["last"], anchor["head_hash"])


def test_an_anchor_catches_entries_removed_with_the_head_moved_back(db_url, cli, tmp_path):
    ids = build(cli)
    anchor_file = tmp_path / "anchor.json"
    cli("anchor", "--out", str(anchor_file))
    engine = raw_engine(db_url)
    try:
        with engine.begin() as conn:
            disable_guards(conn)
            last = ids["last"]
            previous = conn.execute(text("SELECT hash FROM journal_entries WHERE id = :e"), {"e": last - 1}).scalar_one()
            conn.execute(text("DELETE FROM project_events WHERE entry_id = :e"), {"e": last})
            conn.execute(text("DELETE FROM postings WHERE entry_id = :e"), {"e": last})
            conn.execute(text("DELETE FROM journal_entries WHERE id = :e"), {"e": last})
            conn.execute(text("UPDATE chain_head SET last_entry_id = :i, last_hash = :h"), {"i": last - 1, "h": previous})
    finally:
        engine.dispose()
    assert cli("verify").stdout.startswith("OK: ")  # a shorter chain is still a consistent chain
    failed = cli("verify", "--anchor", str(anchor_file), expect=1).stderr.strip()
    assert failed.startswith(f"FAILED at entry {ids['last']}: ") and "entries were removed" in failed, failed


@pytest.mark.parametrize("content", ["", "not json", '{"format": "jiebang-anchor/1", "head_id": "x"}', "[1, 2]",
                                     '{"format": "jiebang-anchor/1", "head_id": 3, "entries": 3, "head_hash": "zz"}'])
def test_a_broken_anchor_file_is_refused_in_one_line(db_url, cli, tmp_path, content):
    path = tmp_path / "anchor.json"
    path.write_text(content, encoding="utf-8")
    line = cli("verify", "--anchor", str(path), expect=1).stderr.strip()
    assert line.startswith("error: ") and "is not a jiebang anchor" in line
    missing = cli("verify", "--anchor", str(tmp_path / "nope.json"), expect=1).stderr.strip()
    assert "does not exist" in missing

