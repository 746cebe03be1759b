"""``jiebang balances`` on a SQLite file reads through the stdlib sqlite3, never SQLAlchemy.

The read path exists for speed (SQLAlchemy's import alone was a third of a 300,000-transaction
trial balance), so what it must not do is differ: every output, filter and refusal here is
compared with the SQLAlchemy path over the same file, and with PostgreSQL when it is set up.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cli
from programme_fixtures import JM_DEMAND, JM_FIRM, JM_INSTITUTE, JM_UNIVERSITY, UR_DEMAND, UR_SOLVER

import migrations

ROOT = Path(__file__).resolve().parent.parent

# Dates on both sides of the entries: before any, the day before and the day of a release
# (2025-10-10), the day of a bid payment (2025-11-01), after everything, and none.
AS_OF = (None, "2025-01-01", "2025-10-09", "2025-10-10", "2025-11-01", "2030-12-31")
FILTERS = (
    (),
    ("--book", "memo"),
    ("--book", "fiscal"),
    ("--account", "Assets:Memo"),
    ("--account", "Assets:Memo:"),
    ("--account", "Assets:Treasury"),
    ("--account", "Assets:Tre_sury"),  # LIKE wildcards are escaped: matches nothing
    ("--account", "Assets:%"),
    ("--project", "JM2025-007", "--accounts"),
    ("--project", "JM2025-007", "--accounts", "--book", "fiscal"),
    ("--project", "JM2025-007"),
    ("--project", "jm2025-007 "),  # codes are trimmed and upper-cased
    ("--project", "JM2025-007", "--lane", "L2"),
    ("--project", "JM2025-007", "--lane", "3"),
    ("--project", "JM2025-007", "--lane", JM_INSTITUTE),
    ("--project", "JM2025-003"),
    ("--project", "UR2025-011"),
)
FORMATS = ("table", "json", "csv")


def build_world(cli: Cli, files: Path) -> None:
    """Three projects (one lane, three lanes, bid-subsidy) and two manual entries, by the CLI."""
    for uscc, name in ((JM_DEMAND, "江门市某智能装备有限公司"), (JM_UNIVERSITY, "五邑某大学"), (JM_FIRM, "江门市某科技有限公司"),
                       (JM_INSTITUTE, "江门某民办研究院"), (UR_DEMAND, "新疆某光伏有限公司"), (UR_SOLVER, "新疆某大学")):
        cli("party", "add", "--uscc", uscc, "--name", name, "--revenue", "600,000,000.00", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "5000万", "--date", "2025-01-10")
    common = ("--category", "tech_breakthrough", "--demand", JM_DEMAND, "--total-investment", "800万",
              "--start", "2025-10-01", "--end", "2028-09-30", "--date", "2025-09-20")
    cli("project", "approve", "--code", "JM2025-003", "--name", "运动控制器", "--city", "jiangmen", "--mode", "jbgs",
        "--solver", JM_UNIVERSITY, "--grant", "300万", *common)
    cli("project", "approve", "--code", "JM2025-007", "--name", "储能电池热管理", "--city", "jiangmen", "--mode", "赛马",
        "--solver", JM_UNIVERSITY, "--solver", JM_FIRM, "--solver", JM_INSTITUTE, "--grant", "1,000,000.01", *common)
    cli("pledge", "--project", "JM2025-003", "--amount", "500万", "--date", "2025-09-25")
    cli("contribute", "--project", "JM2025-003", "--amount", "120万", "--category", "设备费", "--date", "2025-09-28")
    for code in ("JM2025-003", "JM2025-007"):
        cli("stage", "--project", code, "--stage", "contract_signed", "--passed", "--date", "2025-10-08")
    cli("release", "--project", "JM2025-003", "--date", "2025-10-10")
    for lane in ("L1", "L2"):
        cli("release", "--project", "JM2025-007", "--lane", lane, "--date", "2025-10-10")
    cli("bid", "contract", "--project", "JM2025-007", "--lane", "L3", "--amount", "50万", "--date", "2025-10-12")
    cli("bid", "pay", "--project", "JM2025-007", "--lane", "L3", "--amount", "10万", "--form", "cash", "--date", "2025-11-01")
    cli("project", "approve", "--code", "UR2025-011", "--name", "光伏组件智能运维", "--city", "urumqi",
        "--category", "成果转化", "--mode", "jbgs", "--demand", UR_DEMAND, "--solver", UR_SOLVER,
        "--total-investment", "800万", "--bid", "300万", "--start", "2025-07-01", "--end", "2027-06-30", "--date", "2025-06-20")
    cli("stage", "--project", "UR2025-011", "--stage", "contract_signed", "--date", "2025-07-01")
    cli("bid", "pay", "--project", "UR2025-011", "--amount", "100万", "--form", "cash", "--date", "2025-07-10")
    cli("release", "--project", "UR2025-011", "--date", "2025-07-10")
    cli("open", "Assets:Treasury", "--book", "fiscal", "--date", "2025-01-01")
    cli("open", "Equity:Appropriations:Y2025", "--book", "fiscal", "--date", "2025-01-01")
    cli("open", "Assets:Idle", "--book", "fiscal", "--date", "2025-01-01")  # never posted to
    entry = ('{"date": "2025-10-10", "kind": "manual", "voucher": "J-%d", "memo": "手工", "postings": ['
             '{"account": "Assets:Treasury", "amount": "%s"}, {"account": "Equity:Appropriations:Y2025", "amount": "-%s"}]}')
    for n, amount in ((1, "1,234,567.89"), (2, "0.01")):
        path = files / f"entry-{n}.json"
        path.write_text(entry % (n, amount, amount.replace(",", "")), encoding="utf-8")
        cli("post", "--file", str(path))


def sqlalchemy_url(url: str) -> str:
    """The same database by a URL the CLI hands to SQLAlchemy rather than read itself."""
    return url.replace("sqlite:///", "sqlite+pysqlite:///", 1)


def outcome(cli: Cli, *args: str) -> tuple[int, str, str]:
    result = cli(*args, expect=None)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def fast_ledger(_sqlite_template, tmp_path) -> Cli:
    """A SQLite ledger holding the world, read by the stdlib path."""
    path = tmp_path / "fast" / "ledger.db"
    path.parent.mkdir()
    shutil.copyfile(_sqlite_template, path)
    cli = Cli(f"sqlite:///{path}")
    build_world(cli, path.parent)
    return cli


def test_the_sqlite_read_path_prints_what_sqlalchemy_prints(fast_ledger):
    slow = Cli(sqlalchemy_url(fast_ledger.db_url))
    for filters in FILTERS:
        for as_of in AS_OF:
            for fmt in FORMATS:
                args = ("balances", *filters, "--format", fmt, *(("--as-of", as_of) if as_of else ()))
                fast = outcome(fast_ledger, *args)
                assert fast[0] == 0, (args, fast)
                assert fast == outcome(slow, *args), args
    # The dates matter: a release on 2025-10-10 is out the day before and in on the day.
    before = outcome(fast_ledger, "balances", "--project", "JM2025-003", "--as-of", "2025-10-09", "--format", "json")
    on = outcome(fast_ledger, "balances", "--project", "JM2025-003", "--as-of", "2025-10-10", "--format", "json")
    assert '"grant_released": "0.00"' in before[1] and '"grant_released": "1800000.00"' in on[1]
    # Idle and wildcard-only filters really come out empty or zero-free.
    assert "Assets:Idle" not in outcome(fast_ledger, "balances")[1]
    assert outcome(fast_ledger, "balances", "--account", "Assets:Tre_sury")[1] == "(nothing)\n"


def test_each_backend_through_sqlalchemy_prints_what_the_sqlite_read_path_prints(db_url, fast_ledger, tmp_path):
    """The same world built again, on PostgreSQL where it is set up (read there through psycopg
    directly by the CLI): the shared SQL must agree."""
    other = Cli(sqlalchemy_url(db_url))
    build_world(other, tmp_path)
    for filters in FILTERS:
        for as_of in AS_OF[2:4]:
            args = ("balances", *filters, "--format", "csv", "--as-of", as_of)
            assert outcome(other, *args) == outcome(fast_ledger, *args), args


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("balances", "--project", "JM2099-001"), "error: project JM2099-001 does not exist; `jiebang projects` lists the codes."),
        (
            ("balances", "--project", "JM2025-007", "--lane", "L9"),
            f"error: project JM2025-007 has no lane L9; its lanes are L1 {JM_UNIVERSITY}, L2 {JM_FIRM}, L3 {JM_INSTITUTE}.",
        ),
    ],
)
def test_project_refusals_are_the_same_line_on_both_paths(fast_ledger, args, message):
    fast = outcome(fast_ledger, *args)
    assert fast == (1, "", message + "\n")
    assert outcome(Cli(sqlalchemy_url(fast_ledger.db_url)), *args) == fast


def test_database_refusals_are_the_same_line_on_both_paths(_sqlite_template, tmp_path):
    missing = tmp_path / "missing.db"
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("not a ledger\n", encoding="utf-8")
    no_schema = tmp_path / "other.db"
    with sqlite3.connect(no_schema) as conn:
        conn.execute("CREATE TABLE expenses (id INTEGER PRIMARY KEY)")
    old = tmp_path / "old.db"
    shutil.copyfile(_sqlite_template, old)
    with sqlite3.connect(old) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '20200101_0000'")
    expected = {
        missing: f"no ledger at {missing}; create it with `jiebang --db {missing} init` or point --db at an existing one.",
        not_sqlite: f"{not_sqlite} is not a SQLite database; point --db at a jiebang ledger.",
        no_schema: f"the ledger database has no jiebang schema; run `jiebang --db {no_schema} init` to create or upgrade it.",
        old: f"the ledger database is at schema 20200101_0000, not {migrations.HEAD}; run `jiebang --db {old} init` to create or upgrade it.",
    }
    for path, message in expected.items():
        for args in (("balances",), ("balances", "--project", "JM2025-003")):
            fast = outcome(Cli(f"sqlite:///{path}"), *args)
            assert fast == (1, "", f"error: {message}\n"), (path, args)
            assert outcome(Cli(f"sqlite+pysqlite:///{path}"), *args) == fast
    assert not missing.exists()  # refusing must not leave an empty file behind


IMPORTS_PROBE = """
import sys
from cli import main
main(sys.argv[1:], standalone_mode=False)
print("IMPORTED", sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic")), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ("balances", "--as-of", "2025-12-31", "--format", "csv"),
        ("balances", "--project", "JM2025-007", "--lane", "L3", "--format", "json"),
        ("balances", "--project", "JM2025-007", "--accounts"),
        ("balances", "--project", "JM2099-001"),
    ],
)
def test_balances_on_sqlite_never_import_sqlalchemy(fast_ledger, args):
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE, "--db", fast_ledger.db_url, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert "IMPORTED []\n" in result.stderr, result.stderr
    assert result.stdout == outcome(fast_ledger, *args)[1]


def test_an_unknown_project_is_one_line_on_every_backend(cli):
    """On PostgreSQL the CLI reads through psycopg directly: refusals keep their one line."""
    result = cli("balances", "--project", "NOPE-1", expect=1)
    assert result.stderr == "error: project NOPE-1 does not exist; `jiebang projects` lists the codes.\n"
    assert result.stdout == ""
