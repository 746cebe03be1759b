"""Hostile files and limits (issue 13, items 3, 4, part of 6 and 7), each attack kept as a test.

* One encoding per file: a UTF-8 CSV with one GBK row appended was decoded whole as GBK, which
  renamed voucher 江财-1 to 姹熻储-1 and posted 5,000,000.00 a second time; it is refused naming
  the line. A GB18030-only file is still read.
* Restore never loses entries silently: over a newer ledger (or one whose chain went another
  way) it is refused with the count and dates, unless --discard-newer names the exact count; a
  safety copy of the replaced ledger is kept beside it and verifies.
* Limits: value dates in 2000-01-01..2099-12-31 (JIEBANG_DATE_MIN / JIEBANG_DATE_MAX), NUL
  characters in text refused on both backends, the absolute amounts of an account bounded by
  2**62 fen so no SUM overflows; backup onto a read-only folder and reads of a ledger in one
  refuse in one line naming the path.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.core import bulk, limits
from ledger.core.errors import Refusal
from tests.conftest import Cli

HEADER = "txn_id,date,account,amount,voucher,memo\n"


def _rows(txn: str, voucher: str, yuan: str, date: str = "2025-01-02", memo: str = "") -> str:
    return (f"{txn},{date},Assets:Bank,{yuan},{voucher},{memo}\n"
            f"{txn},{date},Income:Fiscal:Funding:Y2025,-{yuan},{voucher},{memo}\n")


def _entries(engine) -> list[tuple[str, int]]:
    """(voucher, debit total) per entry, in chain order."""
    with Session(engine) as session:
        return [tuple(r) for r in session.execute(text(
            "SELECT j.voucher, SUM(CASE WHEN p.amount_fen > 0 THEN p.amount_fen ELSE 0 END) FROM journal_entries j"
            " JOIN postings p ON p.entry_id = j.id GROUP BY j.id, j.voucher ORDER BY j.id"
        ))]


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- 3. one encoding per file ----------------------------------------------------------------


def test_a_gbk_row_appended_to_a_utf8_csv_is_refused_not_posted_twice(cli, engine, tmp_path):
    path = tmp_path / "funding.csv"
    path.write_bytes((HEADER + _rows("T1", "江财-1", "5000000.00", memo="首期")).encode("utf-8"))
    assert cli("post", "--file", str(path), "--open-accounts").stdout == "posted 1 entry; 0 already present.\n"
    with path.open("ab") as handle:  # the attack: one row saved by a GBK editor
        handle.write("T2,2025-01-03,Assets:Bank,1.00,江财-2,追加\n".encode("gbk"))
    line = _one_line(cli("post", "--file", str(path), expect=1))
    assert "mixes encodings: line 4 does not fit the UTF-8 of line 2" in line, line
    assert _entries(engine) == [("江财-1", 500_000_000)]  # not 姹熻储-1, not 5,000,000.00 twice
    assert cli("verify").stdout.startswith("OK: 1 entries verified")
    # Without the GBK row the file is recognised as already posted.
    path.write_bytes((HEADER + _rows("T1", "江财-1", "5000000.00", memo="首期")).encode("utf-8"))
    assert cli("post", "--file", str(path)).stdout == "posted 0 entries; 1 already present.\n"


def test_a_gb18030_only_file_is_read_and_a_utf8_line_in_it_is_refused(cli, engine, tmp_path):
    path = tmp_path / "gbk.csv"
    body = HEADER + _rows("T1", "江财-1", "100.00", memo="拨付")
    path.write_bytes(body.encode("gb18030"))
    assert cli("post", "--file", str(path), "--open-accounts").stdout == "posted 1 entry; 0 already present.\n"
    assert _entries(engine) == [("江财-1", 10_000)]
    # The other way round: a UTF-8 row in a GB18030 file decodes as GB18030 without error, and
    # would be mojibake; it is refused naming its line.
    path.write_bytes(body.encode("gb18030") + "T2,2025-01-03,Assets:Bank,1.00,江财-2,\n".encode())
    line = _one_line(cli("post", "--file", str(path), expect=1))
    assert "line 4 does not fit the GBK/GB18030 of line 2" in line, line
    assert _entries(engine) == [("江财-1", 10_000)]


def test_a_utf8_file_with_a_bom_is_read_and_json_follows_the_same_rule(tmp_path):
    good = tmp_path / "bom.csv"
    good.write_bytes(b"\xef\xbb\xbf" + (HEADER + _rows("T1", "江财-1", "1.00")).encode("utf-8"))
    assert bulk.read_csv_batch(good, default_kind="manual").voucher == ["江财-1"]
    mixed = tmp_path / "bom-gbk.csv"
    mixed.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + _rows("T1", "江财-1", "1.00").encode("gbk"))
    with pytest.raises(Refusal, match="line 2 does not fit the UTF-8 of line 1") as caught:
        bulk.read_csv_batch(mixed, default_kind="manual")
    assert caught.value.code == "file_must_have_one_encoding"
    entry = {"date": "2025-01-02", "voucher": "江财-1", "memo": "首期",
             "postings": [{"account": "Assets:Bank", "amount": "1.00"}, {"account": "Income:Fiscal:Funding:Y2025", "amount": "-1.00"}]}
    doc = tmp_path / "mixed.json"
    lines = json.dumps([entry], ensure_ascii=False, indent=1).splitlines()
    assert "江财-1" in lines[3] and "首期" in lines[4]  # the voucher's line UTF-8, the memo's GBK
    doc.write_bytes("\n".join(lines[:4]).encode("utf-8") + b"\n" + "\n".join(lines[4:]).encode("gbk"))
    with pytest.raises(Refusal, match="line 5 does not fit the UTF-8 of line 4"):
        bulk.read_json_entries(doc, default_kind="manual", actor="t")
    doc.write_bytes("\n".join(lines).encode("gb18030"))
    assert bulk.read_json_entries(doc, default_kind="manual", actor="t")[0].voucher == "江财-1"


def test_import_csv_with_mixed_encodings_is_refused_naming_the_line(cli, tmp_path):
    path = tmp_path / "parties.csv"
    head = b"uscc,name,kind,date\n" + "91440700MA51XXXX0A,江门甲公司,enterprise,2025-01-02\n".encode()
    path.write_bytes(head + "91440700MA51XXXX1B,江门乙公司,enterprise,2025-01-02\n".encode("gbk"))
    line = _one_line(cli("import", str(path), "--kind", "parties", expect=1))
    assert "mixes encodings: line 3 does not fit the UTF-8 of line 2" in line, line


# --- 4. restore never loses entries silently ---------------------------------------------------


def _sqlite_cli(path: Path) -> Cli:
    return Cli(f"sqlite:///{path}")


def _post(cli: Cli, tmp_path: Path, voucher: str, date: str, open_accounts: bool = False) -> None:
    path = tmp_path / f"{voucher}.csv"
    path.write_text(HEADER + _rows(voucher, voucher, "10.00", date=date), encoding="utf-8")
    cli("post", "--file", str(path), *(["--open-accounts"] if open_accounts else []))


def test_restore_over_a_newer_ledger_is_refused_with_the_count_unless_discard_newer_says_it(_sqlite_template, tmp_path):
    import shutil

    ledger = tmp_path / "ledger.db"
    shutil.copyfile(_sqlite_template, ledger)
    cli = _sqlite_cli(ledger)
    _post(cli, tmp_path, "V1", "2025-01-02", open_accounts=True)
    _post(cli, tmp_path, "V2", "2025-01-03")
    backup = tmp_path / "backup.db"
    cli("backup", str(backup))
    _post(cli, tmp_path, "V3", "2025-02-01")
    _post(cli, tmp_path, "V4", "2025-03-15")
    line = _one_line(cli("restore", str(backup), "--force", expect=1))
    assert "would lose 2 entries (ids 3..4, dated 2025-02-01 to 2025-03-15)" in line and "--discard-newer 2" in line, line
    line = _one_line(cli("restore", str(backup), "--discard-newer", "1", expect=1))
    assert "(--discard-newer 1 does not match)" in line, line
    assert cli("verify").stdout.startswith("OK: 4 entries verified")  # nothing written
    assert not list(tmp_path.glob("ledger.db.before-restore-*"))
    out = cli("restore", str(backup), "--discard-newer", "2").stdout
    assert "restored 2 entries" in out
    safety = [p for p in tmp_path.glob("ledger.db.before-restore-*.db")]
    assert len(safety) == 1 and f"kept the replaced ledger as {safety[0]}" in out
    assert cli("verify").stdout.startswith("OK: 2 entries verified")
    assert _sqlite_cli(safety[0])("verify").stdout.startswith("OK: 4 entries verified")  # the copy holds V3, V4
    # A backup the ledger is behind (or equal to) needs only --force, and still leaves a copy.
    newer = tmp_path / "newer.db"
    _sqlite_cli(safety[0])("backup", str(newer))
    assert "restored 4 entries" in cli("restore", str(newer), "--force").stdout
    assert len(list(tmp_path.glob("ledger.db.before-restore-*.db"))) == 2


def test_restore_of_a_backup_whose_chain_went_another_way_is_refused_too(_sqlite_template, tmp_path):
    import shutil

    ledger = tmp_path / "ledger.db"
    shutil.copyfile(_sqlite_template, ledger)
    cli = _sqlite_cli(ledger)
    _post(cli, tmp_path, "V1", "2025-01-02", open_accounts=True)
    common = tmp_path / "common.db"
    cli("backup", str(common))
    other = tmp_path / "other.db"
    shutil.copyfile(common, other)
    _post(_sqlite_cli(other), tmp_path, "OTHER-2", "2025-01-05")
    _post(_sqlite_cli(other), tmp_path, "OTHER-3", "2025-01-06")
    other_backup = tmp_path / "other-backup.db"
    _sqlite_cli(other)("backup", str(other_backup))
    _post(cli, tmp_path, "MINE-2", "2025-01-04")  # same length after, different entry 2
    line = _one_line(cli("restore", str(other_backup), "--force", expect=1))
    assert "the chains differ from entry 2" in line and "replace 1 entry (ids 2..2, dated 2025-01-04 to 2025-01-04)" in line, line
    assert "restored 3 entries" in cli("restore", str(other_backup), "--discard-newer", "1").stdout
    assert len(list(tmp_path.glob("ledger.db.before-restore-*.db"))) == 1


def test_a_backup_from_another_schema_names_the_fix(_sqlite_template, tmp_path):
    import shutil

    old = tmp_path / "old.db"
    shutil.copyfile(_sqlite_template, old)
    with sqlite3.connect(old) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001_older'")
    conn.close()
    line = _one_line(_sqlite_cli(tmp_path / "new.db")("restore", str(old), expect=1))
    assert "is at schema 0001_older" in line and "jiebang --db COPY.db init" in line, line


# --- 6. limits -----------------------------------------------------------------------------------


def _json_entry(tmp_path: Path, date: str, voucher: str = "D", memo: str = "", yuan: str = "1.00") -> Path:
    path = tmp_path / f"entry-{voucher.encode().hex()}-{date}.json"
    path.write_text(json.dumps({
        "date": date, "voucher": voucher, "memo": memo,
        "postings": [{"account": "Assets:Bank", "amount": yuan}, {"account": "Income:Fiscal:Funding:Y2025", "amount": f"-{yuan}"}],
    }), encoding="utf-8")
    return path


def _open_two(cli: Cli, date: str = "2000-01-01") -> None:
    cli("open", "Assets:Bank", "--book", "fiscal", "--date", date)
    cli("open", "Income:Fiscal:Funding:Y2025", "--book", "fiscal", "--date", date)


@pytest.mark.parametrize("inside, outside", [("2000-01-01", "1999-12-31"), ("2099-12-31", "2100-01-01")])
def test_value_dates_one_day_either_side_of_the_window(cli, tmp_path, inside, outside):
    _open_two(cli)
    line = _one_line(cli("post", "--file", str(_json_entry(tmp_path, outside, f"J{outside}")), expect=1))
    assert f"date {outside} is outside the ledger's dates 2000-01-01..2099-12-31" in line, line
    assert cli("post", "--file", str(_json_entry(tmp_path, inside, f"J{inside}"))).stdout.startswith("posted 1 entr")
    csv_path = tmp_path / "d.csv"
    csv_path.write_text(HEADER + _rows("C1", "C1", "1.00", date=outside), encoding="utf-8")
    line = _one_line(cli("post", "--file", str(csv_path), expect=1))
    assert "line 2: date" in line and "outside the ledger's dates" in line, line
    csv_path.write_text(HEADER + _rows("C1", "C1", "1.00", date=inside), encoding="utf-8")
    assert cli("post", "--file", str(csv_path)).stdout.startswith("posted 1 entr")


def test_the_attacks_dates_are_refused_by_the_services_and_the_window_is_configurable(cli, tmp_path, monkeypatch):
    for date in ("9999-12-31", "0001-01-01"):
        line = _one_line(cli("appropriate", "--year", "2025", "--amount", "1.00", "--date", date, expect=1))
        assert f"{date} is outside the ledger's dates" in line, line
        line = _one_line(cli("open", "Assets:Bank", "--book", "fiscal", "--date", date, expect=1))
        assert "opening date" in line, line
    assert cli("journal", "--format", "csv").stdout.count("\n") <= 1
    monkeypatch.setenv("JIEBANG_DATE_MIN", "1990-01-01")
    assert "2025" not in cli("open", "Assets:Bank", "--book", "fiscal", "--date", "1990-01-01").stderr
    monkeypatch.setenv("JIEBANG_DATE_MAX", "1980-01-01")
    assert "is after JIEBANG_DATE_MAX" in _one_line(cli("appropriate", "--year", "2025", "--amount", "1.00", "--date", "2025-01-10", expect=1))


@pytest.mark.parametrize("field", ["voucher", "memo"])
def test_nul_in_a_voucher_or_memo_is_refused_on_both_backends(cli, engine, tmp_path, field):
    _open_two(cli)
    values = {"voucher": "V\x001", "memo": ""} if field == "voucher" else {"voucher": "V1", "memo": "a\x00b"}
    line = _one_line(cli("post", "--file", str(_json_entry(tmp_path, "2025-01-02", **values)), expect=1))
    assert "contains a NUL character" in line and field in line, line
    csv_path = tmp_path / "nul.csv"
    csv_path.write_text(HEADER + _rows("C1", values["voucher"], "1.00", memo=values["memo"]), encoding="utf-8")
    line = _one_line(cli("post", "--file", str(csv_path), expect=1))
    assert "contains a NUL character" in line and field in line, line
    line = _one_line(cli("appropriate", "--year", "2025", "--amount", "1.00", "--date", "2025-01-10", "--voucher", "A\x00B", expect=1))
    assert "contains a NUL character" in line, line
    assert _entries(engine) == []
    values[field] = values[field].replace("\x00", "")
    assert cli("post", "--file", str(_json_entry(tmp_path, "2025-01-02", **values))).stdout.startswith("posted 1 entr")


def test_nul_in_an_imported_cell_is_a_problem_of_its_row(cli, tmp_path):
    path = tmp_path / "parties.csv"
    # Past the first 4,096 bytes (a NUL there marks the file as binary and refuses it whole).
    name = "江门" + "甲" * 2000 + "\x00公司"
    path.write_text(f"uscc,name,kind,date\n91440700MA51XXXX0A,{name},enterprise,2025-01-02\n", encoding="utf-8")
    result = cli("import", str(path), "--kind", "parties", expect=1)
    assert "parties!2 name: the cell contains a NUL character" in result.stdout, result.stdout
    assert "nothing was written" in result.stderr
    assert cli("parties", "--format", "csv").stdout.count("\n") <= 1


def test_the_running_total_bound_one_fen_either_side(cli, engine, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "TOTAL_FEN_MAX", 1_000)  # 10.00 yuan, to keep the amounts small
    _open_two(cli)
    for voucher, yuan in (("B1", "5.00"), ("B2", "4.00")):  # an entry of 5.00 moves 10.00: at the bound
        assert cli("post", "--file", str(_json_entry(tmp_path, "2025-01-02", voucher, yuan=yuan))).stdout.startswith("posted 1")
    line = _one_line(cli("post", "--file", str(_json_entry(tmp_path, "2025-01-02", "B3", yuan="1.01")), expect=1))
    assert "account Assets:Bank would reach 10.01" in line and "(9.00 before, 1.01 now)" in line and "past the bound 10.00" in line, line
    csv_path = tmp_path / "bound.csv"
    csv_path.write_text(HEADER + _rows("C1", "C1", "0.50") + _rows("C2", "C2", "0.51"), encoding="utf-8")
    line = _one_line(cli("post", "--file", str(csv_path), expect=1))
    assert "would reach 10.01" in line and "(9.00 before, 1.01 now)" in line, line
    csv_path.write_text(HEADER + _rows("C1", "C1", "0.50") + _rows("C2", "C2", "0.50"), encoding="utf-8")
    assert cli("post", "--file", str(csv_path)).stdout.startswith("posted 2 entries")
    assert _entries(engine)[-1] == ("C2", 50)
    # Re-posting what is present adds nothing, so it is not refused at the bound.
    assert cli("post", "--file", str(csv_path)).stdout == "posted 0 entries; 2 already present.\n"
    # One entry alone past the bound, on both paths: refused before the ledger is asked.
    line = _one_line(cli("post", "--file", str(_json_entry(tmp_path, "2025-01-02", "B4", yuan="5.01")), expect=1))
    assert "moves 10.02 in absolute amounts" in line, line
    csv_path.write_text(HEADER + _rows("C3", "C3", "5.01"), encoding="utf-8")
    assert "moves 10.02 in absolute amounts" in _one_line(cli("post", "--file", str(csv_path), expect=1))


def test_the_real_bound_refuses_the_issues_hundred_quadrillion_yuan_entries(cli, tmp_path):
    _open_two(cli)
    huge = "1000000000000000.00"  # 10**17 fen: the per-amount limit
    csv_path = tmp_path / "huge.csv"
    csv_path.write_text(HEADER + "".join(_rows(f"H{i}", f"H{i}", huge) for i in range(100)), encoding="utf-8")
    line = _one_line(cli("post", "--file", str(csv_path), expect=1))
    assert "past the bound 46,116,860,184,273,879.04" in line or "past the bound 46116860184273879.04" in line, line
    # 46 of them fit (46 * 10**17 <= 2**62), and balances still add up.
    csv_path.write_text(HEADER + "".join(_rows(f"H{i}", f"H{i}", huge) for i in range(46)), encoding="utf-8")
    assert cli("post", "--file", str(csv_path)).stdout.startswith("posted 46 entries")
    line = _one_line(cli("post", "--file", str(_json_entry(tmp_path, "2025-01-02", "H46", yuan=huge)), expect=1))
    assert "account Assets:Bank would reach" in line, line
    assert "4600000000000000000" in cli("balances", "--format", "json").stdout.replace(",", "").replace(".", "")


# --- 7. storage errors: one line naming the path ------------------------------------------------


def _mount_tmpfs(path: Path, *options: str) -> bool:
    """A small tmpfs at ``path`` (root only, where mounts are allowed): a real full or read-only disk."""
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        return False
    return _run("mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)) == 0


def _umount(path: Path) -> None:
    _run("umount", "-l", str(path))


def test_backup_onto_a_full_disk_or_a_read_only_folder_is_one_line_naming_the_path(_sqlite_template, tmp_path):
    import shutil

    ledger = tmp_path / "ledger.db"
    shutil.copyfile(_sqlite_template, ledger)
    cli = _sqlite_cli(ledger)
    _post(cli, tmp_path, "V1", "2025-01-02", open_accounts=True)
    assert ledger.stat().st_size > 64 * 1024
    full, locked = tmp_path / "full", tmp_path / "locked"
    if _mount_tmpfs(full, "size=64k"):
        try:
            line = _one_line(cli("backup", str(full / "b.db"), expect=1))
            assert f"cannot write the backup {full / 'b.db'}: database or disk is full" in line, line
            assert not list(full.iterdir())  # no partial left behind
        finally:
            _umount(full)
        mounted = _mount_tmpfs(locked, "size=1m", "ro")
    else:
        locked.mkdir(exist_ok=True)
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        mounted = False
    try:
        line = _one_line(cli("backup", str(locked / "b.db"), expect=1))
        assert f"{locked / 'b.db'}" in line and line.startswith("error: cannot write"), line
        assert not list(locked.iterdir())
    finally:
        _umount(locked) if mounted else locked.chmod(stat.S_IRWXU)


def test_a_ledger_on_a_read_only_disk_is_read_and_a_write_is_one_line_naming_it(_sqlite_template, tmp_path):
    import shutil

    disk, view = tmp_path / "disk", tmp_path / "view"
    disk.mkdir()
    view.mkdir()
    ledger = disk / "ledger.db"
    shutil.copyfile(_sqlite_template, ledger)
    _post(_sqlite_cli(ledger), tmp_path, "V1", "2025-01-02", open_accounts=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    # A read-only view of the folder (a bind mount remounted read-only), as a ledger on a
    # read-only disk or share is seen.
    if os.geteuid() != 0 or _run("mount", "--bind", str(disk), str(view)):
        pytest.skip("needs root to mount a read-only view of a folder")
    try:
        if _run("mount", "-o", "remount,ro,bind", str(view)):
            pytest.skip("cannot remount the view read-only here")
        seen = view / "ledger.db"
        cli = _sqlite_cli(seen)
        # Reads open it read-only (tests/test_read_only.py runs every read verb); a write
        # names the file and says its storage is read-only.
        for verb in (("balances",), ("verify",), ("journal",)):
            cli(*verb)
        line = _one_line(cli("open", "Assets:More", "--book", "fiscal", "--date", "2025-01-03", expect=1))
        assert str(seen) in line and "read-only storage" in line, line
    finally:
        _run("umount", "-l", str(view))


def _run(*command: str) -> int:
    return subprocess.run(command, check=False, capture_output=True).returncode


def test_writes_to_a_read_only_postgresql_server_are_one_line_naming_the_server(db_url, backend):
    if backend != "postgresql":
        pytest.skip("a server that accepts reads only is a PostgreSQL condition; SQLite's is the file's above")
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    options = url.query["options"] + " -cdefault_transaction_read_only=on"
    standby = url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    cli = Cli(standby)
    assert cli("balances").exit_code == 0  # reads work
    line = _one_line(cli("appropriate", "--year", "2025", "--amount", "1,000.00", "--date", "2025-01-02", expect=1))
    assert "accepts reads only" in line and "point --db at the primary server" in line, line
    assert "nothing was written" in line and "Traceback" not in line
