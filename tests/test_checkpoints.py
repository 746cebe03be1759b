"""Verification checkpoints: `verify --checkpoint` records the chain head a full verification
found sound; the audit pack then checks only the entries after the latest checkpoint and says
which checkpoint it relied on. A change before the checkpoint is still caught by a full
`verify`; a change after it, or to the checkpointed entry itself, by the pack."""

from __future__ import annotations

import json

from sqlalchemy import text
from test_audit import audit, pdf_text
from test_tamper import PROJECT, build, disable_guards, raw_engine


def _checkpoints(engine) -> list[tuple[int, str]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text("SELECT entry_id, hash FROM verify_checkpoints ORDER BY id"))]


def _integrity(cli, out) -> dict[str, str]:
    from openpyxl import load_workbook

    files = audit(cli, out, PROJECT, "2025-12-31")
    wb = load_workbook(files["xlsx"])
    rows = {r[0].value.split(" ")[0]: r[1].value for r in wb["9 完整性"].iter_rows(min_row=2) if r[0].value and r[1].value}
    return rows | {"_pdf": pdf_text(files["pdf"])}


def _tamper(db_url, sql: str, **params) -> None:
    raw = raw_engine(db_url)
    try:
        with raw.begin() as c:
            disable_guards(c)
            c.execute(text(sql), params)
    finally:
        raw.dispose()


def test_only_an_explicit_verify_records_a_checkpoint(cli, engine):
    build(cli)  # runs a plain `verify`
    assert _checkpoints(engine) == []
    head = json.loads(cli("verify", "--format", "json").stdout)
    assert _checkpoints(engine) == []
    shown = cli("verify", "--checkpoint").stdout
    assert shown.strip().endswith(f"checkpoint recorded at entry {head['head_id']}")
    assert _checkpoints(engine) == [(head["head_id"], head["head_hash"])]
    data = json.loads(cli("verify", "--checkpoint", "--format", "json").stdout)
    assert data["checkpoint"] == {"entry_id": head["head_id"], "hash": head["head_hash"]}


def test_a_failed_verify_records_no_checkpoint(cli, engine, db_url):
    ids = build(cli)
    _tamper(db_url, "UPDATE journal_entries SET memo = memo || 'x' WHERE id = :e", e=ids["approval"])
    cli("verify", "--checkpoint", expect=1)
    assert _checkpoints(engine) == []


def test_the_pack_says_which_checkpoint_it_relied_on_and_checks_what_came_after(cli, engine, db_url, tmp_path):
    ids = build(cli)
    full = _integrity(cli, tmp_path / "a")
    assert full["校验依据"].startswith("全账校验") and full["校验结果"].startswith("通过")
    cli("verify", "--checkpoint")
    [(at, digest)] = _checkpoints(engine)
    cli("spend", "--project", PROJECT, "--amount", "1,000.00", "--category", "业务费", "--date", "2025-03-06")
    relied = _integrity(cli, tmp_path / "b")
    assert relied["校验依据"].startswith(f"检查点：第 {at} 笔分录，哈希 {digest}") and "其后 1 笔分录" in relied["校验依据"]
    assert relied["校验结果"].startswith("通过")
    assert f"第 {at} 笔分录" in relied["_pdf"].replace("\n", "")
    # Same ledger, same checkpoint: the same bytes.
    again = audit(cli, tmp_path / "c", PROJECT, "2025-12-31")
    assert again["pdf"].read_bytes() == audit(cli, tmp_path / "d", PROJECT, "2025-12-31")["pdf"].read_bytes()

    # A change after the checkpoint fails the pack's check ...
    last = ids["last"] + 1
    _tamper(db_url, "UPDATE postings SET amount_fen = amount_fen * 10 WHERE entry_id = :e", e=last)
    failed = _integrity(cli, tmp_path / "e")
    assert failed["校验结果"].startswith("未通过") and f"第 {last} 笔" in failed["校验结果"]


def test_a_change_before_the_checkpoint_is_caught_by_a_full_verify(cli, engine, db_url, tmp_path):
    ids = build(cli)
    cli("verify", "--checkpoint")
    _tamper(db_url, "UPDATE journal_entries SET memo = memo || ' (amended)' WHERE id = :e", e=ids["approval"])
    # The pack relies on the checkpoint and reads only what came after it ...
    assert _integrity(cli, tmp_path / "a")["校验结果"].startswith("通过")
    # ... and the full verify names the altered entry.
    failed = cli("verify", expect=1).stderr
    assert failed.startswith(f"FAILED at entry {ids['approval']}:") and "altered" in failed


def test_a_changed_checkpointed_entry_or_a_later_project_row_fails_the_pack(cli, engine, db_url, tmp_path):
    build(cli)
    cli("verify", "--checkpoint")
    [(at, _)] = _checkpoints(engine)
    cli("stage", "--project", PROJECT, "--stage", "midterm", "--passed", "--date", "2025-06-30", "--reference", "中期-1")
    _tamper(db_url, "UPDATE project_events SET reference = 'forged' WHERE entry_id > :e", e=at)
    failed = _integrity(cli, tmp_path / "a")["校验结果"]
    assert failed.startswith("未通过") and "project_events" in failed and "forged" in failed
    _tamper(db_url, "UPDATE journal_entries SET hash = :h WHERE id = :e", h="0" * 64, e=at)
    assert "no longer has the hash the checkpoint recorded" in _integrity(cli, tmp_path / "b")["校验结果"]
