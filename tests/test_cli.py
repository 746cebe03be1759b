"""The command line: exit codes, one-line refusals, the head check, files in, help text."""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

import migrations
from cli import main

ROOT = Path(__file__).resolve().parent.parent
OWN_VERBS = ("init", "open", "accounts", "post", "reverse", "balances", "journal", "verify", "export")


def jiebang(*args: str):
    """Run jiebang in-process without a prepared database; a traceback fails the test."""
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"jiebang {' '.join(args)} raised {result.exception!r}: {result.output}")
    return result


def refused(result) -> str:
    """The single stderr line of a refusal, after checking exit code 1 and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# --- usage errors exit 2 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "No such command 'frobnicate'"),
        (["balances", "--nope"], "No such option '--nope'"),
        (["--nope", "balances"], "No such option '--nope'"),
        (["balances", "--format", "xml"], "Invalid value for '--format'"),
        (["balances", "--as-of", "31/12/2025"], "Invalid value for '--as-of'"),
        (["reverse", "1"], "Missing option '--reason'"),
        (["reverse", "first", "--reason", "x"], "Invalid value for 'ENTRY_ID'"),
        (["export", "beancount"], "Missing option '--out'"),
        (["open", "Assets:Treasury", "--book", "cash", "--date", "2025-01-01"], "Invalid value for '--book'"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    result = jiebang("--db", str(tmp_path / "none.db"), *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


# --- refusals exit 1 with one line ------------------------------------------------------


def _write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


def _entry(voucher="J-1", amount="1,000.00", counter="-1000.00", date="2025-03-10"):
    return {
        "date": date,
        "kind": "manual",
        "voucher": voucher,
        "memo": "手工调整",
        "postings": [{"account": "Assets:Treasury", "amount": amount}, {"account": "Equity:Appropriations:Y2025", "amount": counter}],
    }


@pytest.fixture
def opened(cli):
    cli("open", "Assets:Treasury", "--book", "fiscal", "--date", "2025-01-01")
    cli("open", "Equity:Appropriations:Y2025", "--book", "fiscal", "--date", "2025-01-01")
    return cli


def test_refusals_are_one_line_and_exit_1(opened, tmp_path):
    cli = opened
    assert cli("post", "--file", str(_write_json(tmp_path / "ok.json", _entry()))).stdout == (
        "posted 1 entry; 0 already present.\n"
    )
    cases = [
        (
            ["reverse", "99", "--reason", "typo"],
            "error: entry 99 does not exist; `jiebang journal` lists entries.",
        ),
        (
            ["post", "--file", str(_write_json(tmp_path / "unbalanced.json", _entry("J-2", "1000.00", "-999.99")))],
            ("error: entry manual J-2 does not balance in the fiscal book: postings sum to 0.01, not 0.00; "
            "fix the amounts so debits equal credits."),
        ),
        (
            ["post", "--file", str(_write_json(tmp_path / "conflict.json", _entry("J-1", "2000.00", "-2000.00")))],
            ("error: voucher J-1 was already used for manual entry 1 with different content; "
            "use a new voucher, or reverse entry 1 first if it was wrong."),
        ),
        (
            ["post", "--file", str(_write_json(tmp_path / "float.json", _entry("J-3", 1000.5, "-1000.50")))],
            (f"error: {tmp_path / 'float.json'} entry 1 amount 1000.5 is a binary float; "
            "give it as text such as '1234.56' so no fen is lost."),
        ),
        (
            ["post", "--file", str(_write_json(tmp_path / "early.json", _entry("J-4", date="2024-12-31")))],
            ("error: account Assets:Treasury opens on 2025-01-01, after the entry's date 2024-12-31; "
            "date the entry on or after the opening."),
        ),
        (
            ["post", "--file", str(tmp_path / "missing.json")],
            f"error: cannot read {tmp_path / 'missing.json'}: No such file or directory.",
        ),
        (
            ["open", "assets:lower", "--book", "fiscal", "--date", "2025-01-01"],
            ("error: account name 'assets:lower' is not a valid beancount name: it must start with one of "
            "Assets, Liabilities, Equity, Income, Expenses and each ':'-separated part must start with a "
            "capital letter or digit"),
        ),
        (
            ["open", "Assets:Treasury", "--book", "memo", "--date", "2025-01-01"],
            "error: account Assets:Treasury is in the fiscal book; it cannot be used in the memo book.",
        ),
        (
            ["open", "Assets:Other", "--book", "fiscal", "--date", "2025-13-01"],
            "error: account Assets:Other opening date '2025-13-01' is not a date; write it as 2026-03-05, 2026/3/5, 20260305 or 2026年3月5日.",
        ),
    ]
    for args, message in cases:
        assert refused(cli(*args, expect=1)) == message, args
    # Nothing but the first entry was written.
    assert "OK: 1 entries verified" in cli("verify").stdout

    dry = cli("reverse", "1", "--reason", "keyed twice", "--dry-run").stdout
    assert "OK: 1 entries verified" in cli("verify").stdout  # the dry run wrote nothing
    real = cli("reverse", "1", "--reason", "keyed twice").stdout
    assert dry == "试算（未写入）：" + real
    assert real.startswith("冲销分录 1：1,000.00，") and real.endswith("，分录 2\n")
    assert refused(cli("reverse", "1", "--reason", "again", expect=1)) == (
        "error: entry 1 was already reversed by entry 2; nothing more to undo."
    )
    assert refused(cli("reverse", "2", "--reason", "undo", expect=1)).startswith(
        "error: entry 2 is itself the reversal of entry 1;"
    )


# --- the database must exist, be SQLite or PostgreSQL, and be at head --------------------


def test_a_missing_db_file_is_refused(tmp_path):
    path = tmp_path / "missing.db"
    assert refused(jiebang("--db", str(path), "balances")) == (
        f"error: no ledger at {path}; create it with `jiebang --db {path} init` or point --db at an existing one."
    )
    assert not path.exists()  # refusing must not leave an empty file behind


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are not the ledgers you are looking for\n", encoding="utf-8")
    assert refused(jiebang("--db", str(path), "balances")) == (
        f"error: {path} is not a SQLite database; point --db at a jiebang ledger."
    )
    # init does not require the file to exist, so SQLite itself refuses the foreign file.
    assert refused(jiebang("--db", str(path), "init")) == (
        "error: the database refused the operation: file is not a database; nothing was written."
    )
    assert path.read_text(encoding="utf-8") == "these are not the ledgers you are looking for\n"


def test_an_unreadable_db_file_is_refused(tmp_path, monkeypatch):
    # Tests run as root in CI, where chmod 000 still reads; simulate the permission check.
    import ledger.core.reads

    path = tmp_path / "ledger.db"
    assert jiebang("--db", str(path), "init").exit_code == 0
    monkeypatch.setattr(ledger.core.reads.os, "access", lambda *_: False)
    assert refused(jiebang("--db", str(path), "balances")) == (
        f"error: ledger file {path} is not readable; check its permissions."
    )


def test_a_sqlite_file_without_the_schema_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE expenses (id INTEGER PRIMARY KEY, amount REAL)")
    for verb in (["balances"], ["verify"], ["journal"], ["accounts"]):
        assert refused(jiebang("--db", str(path), *verb)) == (
            f"error: the ledger database has no jiebang schema; run `jiebang --db {path} init` to create or upgrade it."
        )
    empty = tmp_path / "empty.db"
    empty.touch()
    assert refused(jiebang("--db", str(empty), "balances")) == (
        f"error: the ledger database has no jiebang schema; run `jiebang --db {empty} init` to create or upgrade it."
    )
    assert jiebang("--db", str(empty), "init").exit_code == 0
    assert jiebang("--db", str(empty), "balances").stdout == "(nothing)\n"


def test_a_database_at_another_revision_is_refused(cli, db_url):
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '20200101_0000'"))
    engine.dispose()
    command = f"jiebang --db {db_url.removeprefix('sqlite:///')} init" if db_url.startswith("sqlite") else f"jiebang --db {shlex.quote(db_url.replace('postgresql+psycopg://', 'postgresql://'))} init"
    assert refused(cli("balances", expect=1)) == (
        f"error: the ledger database is at schema 20200101_0000, not {migrations.HEAD}; "
        f"run `{command}` to create or upgrade it."
    )
    assert refused(cli("init", expect=1)) == (
        "error: the ledger database is at schema 20200101_0000, which this jiebang does not know; "
        "use the jiebang version that wrote it."
    )


def test_init_creates_then_reports_head(tmp_path):
    path = tmp_path / "new.db"
    result = jiebang("--db", str(path), "init")
    assert result.stdout == f"ledger created at sqlite:///{path} (schema {migrations.HEAD}).\n"
    result = jiebang("--db", str(path), "init")
    assert result.stdout == f"ledger at sqlite:///{path} is already at schema {migrations.HEAD}.\n"
    assert jiebang("--db", str(path), "verify").stdout == f"OK: 0 entries verified; chain head 0 {'0' * 64}\n"


def test_migrations_head_is_alembics_head():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config("sqlite://"))
    assert script.get_heads() == [migrations.HEAD]


# --- help -------------------------------------------------------------------------------


def test_help_lists_the_verbs():
    result = jiebang("--help")
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert set(OWN_VERBS) <= listed


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


def test_every_verb_has_an_example_in_its_help():
    verbs = list(_leaf_commands(main))
    assert ("export", "beancount") in verbs and len(verbs) >= 9
    missing = [" ".join(verb) for verb in verbs if "Example" not in jiebang(*verb, "--help").stdout]
    assert missing == []


def test_importing_the_cli_and_showing_help_loads_no_heavy_library():
    heavy = ("pandas", "reportlab", "beancount", "sqlalchemy", "alembic", "openpyxl")
    code = (
        "import sys, cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stderr == "loaded: []\n"


# --- posting from files -----------------------------------------------------------------

CSV_TEXT = """txn_id,date,account,amount,book,memo,project
T1,2025-01-02,Assets:Treasury,"5,000,000.00",fiscal,年度预算,
T1,2025-01-02,Equity:Appropriations:Y2025,-500万,fiscal,,
T2,2025-03-10,Assets:Advances:JM2025-003,600000.01元,fiscal,首笔拨付,JM2025-003
T2,2025-03-10,Assets:Treasury,-600000.01,fiscal,,
T2,2025-03-10,Assets:Obligations:JM2025-003,-600000.01,memo,,JM2025-003
T2,2025-03-10,Equity:BudgetAuthority:Y2025,"600,000.01",memo,,
"""


def test_post_csv_opening_accounts(cli, tmp_path):
    path = tmp_path / "postings.csv"
    # A malformed amount names its line, and nothing of the file is written.
    path.write_text(CSV_TEXT.replace("-600000.01,memo", "-600000.015,memo"), encoding="utf-8")
    assert refused(cli("post", "--file", str(path), "--open-accounts", expect=1)) == (
        f"error: {path} line 6 amount '-600000.015' has more than two decimals (fen); round it to 0.01 yuan and retry."
    )
    assert cli("accounts", "--format", "json").stdout.strip() == "[]"
    path.write_text(CSV_TEXT, encoding="utf-8")
    assert refused(cli("post", "--file", str(path), expect=1)) == (
        "error: account Assets:Treasury does not exist; open it first (jiebang accounts lists them)."
    )
    assert cli("post", "--file", str(path), "--open-accounts").stdout == "posted 2 entries; 0 already present.\n"
    # The same file again is recognised by its txn_id vouchers: nothing is written twice.
    assert cli("post", "--file", str(path), "--open-accounts").stdout == "posted 0 entries; 2 already present.\n"
    assert cli("accounts", "--format", "csv").stdout == (
        "account,book,type,project,lane,opened_on,closed_on\n"
        "Assets:Advances:JM2025-003,fiscal,Assets,JM2025-003,,2025-03-10,\n"
        "Assets:Treasury,fiscal,Assets,,,2025-01-02,\n"
        "Equity:Appropriations:Y2025,fiscal,Equity,,,2025-01-02,\n"
        "Assets:Obligations:JM2025-003,memo,Assets,JM2025-003,,2025-03-10,\n"
        "Equity:BudgetAuthority:Y2025,memo,Equity,,,2025-03-10,\n"
    )
    balances = json.loads(cli("balances", "--format", "json").stdout)
    assert [(b["account"], b["book"], b["balance"]) for b in balances] == [
        ("Assets:Advances:JM2025-003", "fiscal", "600000.01"),
        ("Assets:Treasury", "fiscal", "4399999.99"),
        ("Equity:Appropriations:Y2025", "fiscal", "-5000000.00"),
        ("Assets:Obligations:JM2025-003", "memo", "-600000.01"),
        ("Equity:BudgetAuthority:Y2025", "memo", "600000.01"),
    ]
    as_of = json.loads(cli("balances", "--format", "json", "--as-of", "2025-03-09").stdout)
    assert [(b["account"], b["balance"]) for b in as_of] == [
        ("Assets:Treasury", "5000000.00"),
        ("Equity:Appropriations:Y2025", "-5000000.00"),
    ]
    journal = json.loads(cli("journal", "--format", "json").stdout)
    assert [(row["entry"], row["voucher"], row["memo"], row["amount"]) for row in journal][:3] == [
        (1, "T1", "年度预算", "5000000.00"),
        (1, "T1", "年度预算", "-5000000.00"),
        (2, "T2", "首笔拨付", "600000.01"),
    ]


def test_csv_saved_by_chinese_excel_is_accepted(cli, tmp_path):
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(CSV_TEXT.encode("gbk"))
    assert cli("post", "--file", str(gbk), "--open-accounts").stdout == "posted 2 entries; 0 already present.\n"
    journal = json.loads(cli("journal", "--format", "json", "--kind", "manual").stdout)
    assert sorted({row["memo"] for row in journal}) == ["年度预算", "首笔拨付"]
    # The same file saved as UTF-8 with a byte-order mark decodes to the same content, so
    # its vouchers are recognised rather than refused as conflicts.
    bom = tmp_path / "bom.csv"
    bom.write_bytes(CSV_TEXT.encode("utf-8-sig"))
    assert cli("post", "--file", str(bom), "--open-accounts").stdout == "posted 0 entries; 2 already present.\n"


def test_output_formats(opened, tmp_path):
    cli = opened
    cli("post", "--file", str(_write_json(tmp_path / "e.json", _entry(amount="1,234,567.89", counter="-1234567.89"))))
    assert cli("balances", "--format", "csv").stdout == (
        "account,book,project,lane,balance\n"
        "Assets:Treasury,fiscal,,,1234567.89\n"
        "Equity:Appropriations:Y2025,fiscal,,,-1234567.89\n"
    )
    # Tables group thousands (issue 15); CSV above and JSON stay plain.
    assert cli("balances").stdout == (
        "account                      book    project  lane        balance\n"
        "---------------------------  ------  -------  ----  -------------\n"
        "Assets:Treasury              fiscal                  1,234,567.89\n"
        "Equity:Appropriations:Y2025  fiscal                 -1,234,567.89\n"
    )
