"""Verified checkpoints: a passing full `jiebang verify` records one; `verify_since`, `jiebang
verify --since-checkpoint` and the audit pack's integrity section check only what came after.

Both sides of the boundary: tampering after the checkpoint is caught by the incremental check;
tampering before it is not (that is what the checkpoint vouches for) but a full `verify`
still catches it, and so does the incremental check when the checkpoint entry's own hash
changed. The table is insert-only and a checkpoint can only name the hash its entry holds.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from test_roles import logins  # noqa: F401  (the PostgreSQL logins fixture)
from test_tamper import PROJECT, build, disable_guards, raw_engine

from ledger.core.checkpoint import latest_checkpoint, verify_since
from ledger.core.verify import verify

CHECKPOINT_LINE = re.compile(r"^OK: (\d+) entries verified; chain head (\d+) ([0-9a-f]{64}); checkpoint (\d+) recorded\n$")


def checkpoints(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, entry_id, hash, recorded_by, projections_checked FROM verify_checkpoints ORDER BY id"))]


def spend(cli, day: int, amount: str = "10,000.00"):
    cli("spend", "--project", PROJECT, "--amount", amount, "--category", "业务费", "--date", f"2025-04-{day:02d}")


def test_a_passing_full_verify_records_a_checkpoint_and_since_checks_only_later_entries(cli, engine):
    assert cli("verify", "--since-checkpoint", expect=1).stderr == (
        "error: no verified checkpoint yet: run `jiebang verify` once (a full verification that passes records one).\n")
    ids = build(cli)  # ends with a full `jiebang verify`
    [(first, entry_id, head_hash, by, projections)] = checkpoints(engine)
    assert (entry_id, by, bool(projections)) == (ids["last"], "officer-a" if engine.dialect.name == "sqlite" else by, True)

    result = cli("verify", "--since-checkpoint")
    assert result.stdout.startswith(f"OK: 0 entries after checkpoint {first} (entry {ids['last']} {head_hash}, recorded by {by} at ")
    assert result.stdout.endswith(f"verified; chain head {ids['last']} {head_hash}\n")
    spend(cli, 1)
    spend(cli, 2)
    since = json.loads(cli("verify", "--since-checkpoint", "--format", "json").stdout)
    assert (since["ok"], since["entries"], since["head_id"], since["mode"]) == (True, 2, ids["last"] + 2, "since_checkpoint")
    assert since["checkpoint"]["id"] == first and since["checkpoint"]["entry_id"] == ids["last"]
    assert "checkpoint_not_recorded" not in since
    assert len(checkpoints(engine)) == 1, "the incremental check records nothing"

    full = CHECKPOINT_LINE.match(cli("verify").stdout)
    assert full and int(full[2]) == ids["last"] + 2 and int(full[4]) > first
    with Session(engine) as session:
        newest = latest_checkpoint(session)
        assert (newest.entry_id, newest.hash) == (ids["last"] + 2, full[3])
        # "at or before the chain head": a checkpoint beyond a given position is passed over.
        assert latest_checkpoint(session, at_or_before=ids["last"] + 1).id == first


def test_the_checkpoint_table_is_insert_only_and_names_only_real_hashes(cli, engine):
    build(cli)
    [(first, entry_id, head_hash, _, _)] = checkpoints(engine)
    for sql, says in (
        ("UPDATE verify_checkpoints SET entry_id = 1", "insert-only"),
        ("DELETE FROM verify_checkpoints", "insert-only"),
        (f"INSERT INTO verify_checkpoints (entry_id, hash, recorded_by, projections_checked) VALUES ({entry_id}, '{'0' * 64}', 'x', true)",
         "checkpoint_must_match_entry"),
        (f"INSERT INTO verify_checkpoints (entry_id, hash, recorded_by, projections_checked) VALUES ({entry_id + 5}, '{head_hash}', 'x', true)",
         "checkpoint_must_match_entry"),
    ):
        with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
            conn.execute(text(sql))
            conn.commit()
        assert says in str(caught.value.orig), sql
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn, pytest.raises(DBAPIError) as caught:
            conn.execute(text("TRUNCATE verify_checkpoints"))
        assert "insert-only" in str(caught.value.orig)
    assert [row[0] for row in checkpoints(engine)] == [first]


def _tampered(db_url, change) -> tuple:
    """Apply ``change`` on a raw connection with the guards off, run the full and the
    incremental check on the same connection, roll back; return both results."""
    engine = raw_engine(db_url)
    try:
        with engine.connect() as conn:
            conn.begin()
            disable_guards(conn)
            change(conn)
            with Session(bind=conn) as session:
                checkpoint = latest_checkpoint(session)
                full, since = verify(session), verify_since(session, checkpoint)
            conn.rollback()
        return full, since
    finally:
        engine.dispose()


def test_tampering_before_the_checkpoint_is_caught_by_a_full_verify(db_url, cli):
    ids = build(cli)
    memo = "UPDATE journal_entries SET memo = memo || ' (amended)' WHERE id = :e"
    full, since = _tampered(db_url, lambda conn: conn.execute(text(memo), {"e": ids["approval"]}))
    assert (full.ok, full.first_bad_entry) == (False, ids["approval"]) and "altered after posting" in full.problem
    assert since.ok and since.entries == 0, "entries up to the checkpoint are what the checkpoint vouches for"
    # A forger who rewrites the chain from the tampered entry on changes the checkpoint entry's hash too.
    full, since = _tampered(db_url, lambda conn: conn.execute(
        text("UPDATE journal_entries SET hash = :h WHERE id = :e"), {"h": "e" * 64, "e": ids["last"]}))
    assert not full.ok
    assert (since.ok, since.first_bad_entry) == (False, ids["last"])
    assert since.problem.endswith("no longer has the hash recorded at the checkpoint")
    _, since = _tampered(db_url, lambda conn: conn.execute(text("DELETE FROM journal_entries WHERE id = :e"), {"e": ids["last"]}))
    assert not since.ok and since.problem.endswith("is missing")


def test_tampering_after_the_checkpoint_is_caught_by_the_incremental_check(db_url, cli):
    ids = build(cli)
    spend(cli, 1, "11,000.00")
    spend(cli, 2, "12,000.00")
    later = ids["last"] + 1
    scenarios = {
        "amount": ("UPDATE postings SET amount_fen = amount_fen * 10 WHERE entry_id = :e", "altered after posting"),
        "one leg": ("UPDATE postings SET amount_fen = amount_fen + 1 WHERE id = (SELECT min(id) FROM postings WHERE entry_id = :e)",
                    "does not balance"),
        "actor": ("UPDATE journal_entries SET actor = 'someone-else' WHERE id = :e", "does not match its content and predecessor"),
        "deleted": ("DELETE FROM journal_entries WHERE id = :e", "is missing"),
    }
    for name, (sql, says) in scenarios.items():
        full, since = _tampered(db_url, lambda conn, sql=sql: conn.execute(text(sql), {"e": later}))
        assert (since.ok, since.first_bad_entry) == (False, later) and says in since.problem, name
        assert (full.ok, full.first_bad_entry) == (False, later), name
    _, since = _tampered(db_url, lambda conn: conn.execute(text("UPDATE chain_head SET last_entry_id = last_entry_id - 1")))
    assert not since.ok and "the chain head records entry" in since.problem
    # The programme tables are folded and compared by the incremental check as well.
    engine = raw_engine(db_url)
    try:
        with engine.connect() as conn:
            conn.begin()
            disable_guards(conn)
            conn.execute(text("UPDATE projects SET approved_grant_fen = approved_grant_fen + 1 WHERE code = :c"), {"c": PROJECT})
            conn.commit()
    finally:
        engine.dispose()
    result = cli("verify", "--since-checkpoint", expect=1)
    assert result.stderr.startswith("FAILED: ") and f"(checked since checkpoint 1, entry {ids['last']})" in result.stderr


def _integrity_rows(session) -> dict[str, str]:
    from reports.audit import audit_pack

    pack = audit_pack(session, PROJECT)
    [table] = pack.sections[-1].tables
    return dict(zip(table.frame["item"], table.frame["value"], strict=True))


def test_the_audit_pack_names_the_checkpoint_it_relied_on_and_stays_byte_identical(cli, engine, tmp_path):
    from test_audit import audit, tree_bytes

    ids = build(cli)
    [(first, entry_id, head_hash, by, _)] = checkpoints(engine)
    spend(cli, 1)
    with Session(engine) as session:
        rows = _integrity_rows(session)
    assert rows["校验依据 Checkpoint"] == f"第 {first} 号检查点：第 {entry_id} 笔分录（由 {by} 的完整校验记录，含项目表与分录事实的核对）"
    assert rows["检查点哈希 Checkpoint hash"] == head_hash
    assert rows["校验结果 verify"].startswith("通过 OK：检查点分录仍为所记哈希")

    first_run = tree_bytes(audit(cli, tmp_path / "one", PROJECT))
    assert tree_bytes(audit(cli, tmp_path / "two", PROJECT)) == first_run
    assert len(checkpoints(engine)) == 1, "a report never records a checkpoint"

    # Tampering after the checkpoint shows in the pack.
    raw = raw_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        with raw.connect() as conn:
            conn.begin()
            disable_guards(conn)
            conn.execute(text("UPDATE journal_entries SET memo = 'x' WHERE id = :e"), {"e": ids["last"] + 1})
            with Session(bind=conn) as session:
                rows = _integrity_rows(session)
            conn.rollback()
    finally:
        raw.dispose()
    assert rows["校验结果 verify"].startswith(f"未通过 FAILED：entry {ids['last'] + 1}:")


def test_with_no_checkpoint_the_pack_says_so_and_verifies_the_whole_chain(cli, engine):
    build(cli)
    raw = raw_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        with raw.connect() as conn:
            conn.begin()
            disable_guards(conn)
            conn.execute(text("DELETE FROM verify_checkpoints"))
            with Session(bind=conn) as session:
                rows = _integrity_rows(session)
            # and a tampered entry is then found by the whole-chain verification
            conn.execute(text("UPDATE journal_entries SET memo = 'x' WHERE id = 2"))
            with Session(bind=conn) as session:
                tampered = _integrity_rows(session)
            conn.rollback()
    finally:
        raw.dispose()
    assert rows["校验依据 Checkpoint"].startswith("无检查点 None：")
    assert "检查点哈希 Checkpoint hash" not in rows
    assert rows["校验结果 verify"].startswith("通过 OK：全账哈希链")
    assert tampered["校验结果 verify"].startswith("未通过 FAILED：entry 2:")


def test_officers_record_checkpoints_and_an_auditor_login_records_none(logins, db_url, engine):  # noqa: F811
    from conftest import Cli

    before = len(checkpoints(engine))
    auditor = Cli(logins["url"]["auditor"])("verify")
    assert re.search(r"; no checkpoint recorded: login jb_\w+_auditor may not record checkpoints \(read-only\)\n$", auditor.stdout)
    assert len(checkpoints(engine)) == before
    assert Cli(logins["url"]["auditor"])("verify", "--since-checkpoint", expect=None).exit_code in (0, 1)
    officer = Cli(logins["url"]["officer"])("verify")
    assert CHECKPOINT_LINE.match(officer.stdout), officer.stdout
    newest = checkpoints(engine)[-1]
    assert newest[3].endswith("_officer"), "on PostgreSQL the recorder is the database login"
    since = Cli(logins["url"]["auditor"])("verify", "--since-checkpoint")
    assert since.stdout.startswith(f"OK: 0 entries after checkpoint {newest[0]} ")
