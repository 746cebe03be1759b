"""`jiebang due` and ``ledger.programme.due``: what needs an officer's attention, on the demo
ledger (SQLite and PostgreSQL), with every figure checkable by hand from the demo's journal.

The demo's facts the tests rely on (``jiebang journal`` on the demo shows each):

* JM2025-003: period 2025-04-01 .. 2026-12-31, extended by 5 months on 2026-11-20 (to
  2027-05-31); pledged 3,500,000.00 on 2025-03-28; contributed 2,200,000.00 by 2026-05-09;
  mid-term passed 2026-04-15, tranche 2 (1,000,000.00) released 2026-05-10.
* JM2024-002 L3: failed its stage assessment on 2025-06-15 (clawback assessed that day),
  500,000.00 (1,200,000.00 released less 700,000.00 spent), 200,000.00 of it still
  outstanding after the collection of 300,000.00 on 2025-08-20.
* JM2024-001: period ends 2027-02-28, no acceptance recorded.
* UR2026-004 L1 tranche 1 (subsidy_earned) has its conditions met but only an equity bid
  payment, so no subsidy is payable and nothing is ready to release.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex

import pytest
from click.testing import CliRunner
from conftest import Cli
from sqlalchemy.orm import Session

from cli import main
from ledger.programme.due import KINDS, DueItem, due_items


@pytest.fixture
def demo_cli(demo_engine) -> Cli:
    return Cli(demo_engine.url.render_as_string(hide_password=False))


def _items(engine, as_of: str, **kw) -> list[DueItem]:
    with Session(engine) as session:
        return due_items(session, dt.date.fromisoformat(as_of), **kw)


def _short(items: list[DueItem]) -> list[tuple]:
    return [(i.kind, i.project_code, i.lane, i.amount_fen, i.date and i.date.isoformat()) for i in items]


def test_due_on_2026_05_09_lists_the_ready_tranche_the_old_clawback_and_the_pledges_behind(demo_engine):
    items = _items(demo_engine, "2026-05-09")
    # JM2025-003: 3,500,000.00 × 403 of 639 days (2025-04-01 .. 2026-05-09 of .. 2026-12-31)
    # = 2,207,355.24 due, 2,200,000.00 arrived: 7,355.24 behind.
    # UR2026-004: 2,000,000.00 pledged, nothing arrived, 38 of 730 days elapsed: 104,109.59.
    assert _short(items) == [
        ("clawback_outstanding", "JM2024-002", "L3", 20_000_000, "2025-06-15"),
        ("tranche_ready", "JM2025-003", "L1", 100_000_000, "2026-04-15"),
        ("pledge_behind", "JM2025-003", None, 735_524, "2026-12-31"),
        ("pledge_behind", "UR2026-004", None, 10_410_959, "2028-03-31"),
    ]
    clawback, tranche, pledge, _ = items
    assert clawback.description == "L3 应追回资金 200,000.00 自 2025-06-15 起未收回，已逾 328 天"
    assert clawback.command == "jiebang collect --project JM2024-002 --lane L3 --amount 200000.00 --date 2026-05-09"
    assert tranche.description == "L1 第2期（midterm）拨付条件已满足，待拨付 1,000,000.00"
    assert tranche.command == "jiebang release --project JM2025-003 --lane L1 --tranche 2 --date 2026-05-09"
    assert pledge.description == (
        "自筹资金到位率 62.86%，按期应达 63.07%（承诺 3,500,000.00，已到位 2,200,000.00，应到位 2,207,355.24），差 7,355.24"
    )
    assert pledge.command.startswith("jiebang contribute --project JM2025-003 --amount 7355.24 --category ")
    for item in items:
        assert item.kind in KINDS and "jiebang" not in item.description and "\n" not in item.description


def test_a_released_tranche_is_no_longer_due_and_the_day_before_it_is(demo_engine):
    before = [i for i in _items(demo_engine, "2026-05-09") if i.kind == "tranche_ready"]
    after = [i for i in _items(demo_engine, "2026-05-10") if i.kind == "tranche_ready"]
    assert [(i.project_code, i.lane) for i in before] == [("JM2025-003", "L1")]
    assert after == []


def test_a_subsidy_tranche_with_nothing_payable_is_not_due(demo_engine):
    # UR2026-004 L1 tranche 1: conditions met (contract signed 2026-04-20), equity bid only.
    assert not [i for i in _items(demo_engine, "2026-12-05") if i.kind == "tranche_ready"]


def test_the_clawback_is_due_from_within_days_after_it_was_assessed(demo_engine):
    # assessed 2025-06-15: 30 days later on 2025-07-15, 29 on 2025-07-14
    on = [i for i in _items(demo_engine, "2025-07-15", within_days=30) if i.kind == "clawback_outstanding"]
    before = [i for i in _items(demo_engine, "2025-07-14", within_days=30) if i.kind == "clawback_outstanding"]
    # 500,000.00 assessed (L3's 1,200,000.00 released less 700,000.00 spent), before the
    # collection of 300,000.00 on 2025-08-20
    assert [(i.project_code, i.lane, i.amount_fen) for i in on] == [("JM2024-002", "L3", 50_000_000)]
    assert before == []


def test_periods_ending_within_days_and_the_extension_running_out(demo_engine):
    today = _items(demo_engine, "2026-12-05")
    ending = [(i.kind, i.project_code, i.date.isoformat()) for i in today if i.kind.endswith("_ending")]
    assert ending == [("period_ending", "JM2024-001", "2027-02-28")]  # 85 days on
    assert [i.description for i in today if i.kind == "period_ending"] == ["实施期将于 2027-02-28 到期（还有 85 天），尚未通过验收"]
    wider = _items(demo_engine, "2026-12-05", within_days=177)
    extended = [i for i in wider if i.kind == "extension_ending"]
    assert [(i.project_code, i.date.isoformat()) for i in extended] == [("JM2025-003", "2027-05-31")]
    assert extended[0].command == "jiebang stage --project JM2025-003 --stage acceptance --passed --date 2026-12-05"
    assert not [i for i in _items(demo_engine, "2026-12-05", within_days=176) if i.kind == "extension_ending"]


def test_due_filters_by_city_and_projects_and_the_order_is_by_date(demo_engine):
    everything = _items(demo_engine, "2027-03-01")
    urumqi = _items(demo_engine, "2027-03-01", city="urumqi")
    assert urumqi == [i for i in everything if i.project_code.startswith("UR")]
    one = _items(demo_engine, "2027-03-01", projects=["jm2024-002"])
    assert one == [i for i in everything if i.project_code == "JM2024-002"]
    dates = [i.date for i in everything]
    assert dates == sorted(dates)
    assert _items(demo_engine, "2027-03-01") == everything  # deterministic


def test_cli_due_table_json_and_csv(demo_cli):
    table = demo_cli("due", "--as-of", "2026-05-09").stdout.splitlines()
    assert table[0].split() == ["date", "kind", "project", "lane", "amount", "description", "command"]
    # The ledger was named with --db, so the command repeats it and works when pasted.
    db = shlex.quote(demo_cli.db_url)
    assert any("1,000,000.00" in line and f"jiebang --db {db} release --project JM2025-003 --lane L1 --tranche 2" in line
               for line in table)
    rows = json.loads(demo_cli("due", "--as-of", "2026-05-09", "--format", "json").stdout)
    assert [(r["kind"], r["project"], r["amount"]) for r in rows] == [
        ("clawback_outstanding", "JM2024-002", "200000.00"),
        ("tranche_ready", "JM2025-003", "1000000.00"),
        ("pledge_behind", "JM2025-003", "7355.24"),
        ("pledge_behind", "UR2026-004", "104109.59"),
    ]
    csv_lines = demo_cli("due", "--as-of", "2026-05-09", "--city", "urumqi", "--format", "csv").stdout.splitlines()
    assert csv_lines[0] == "date,kind,project,lane,amount,description,command"
    assert len(csv_lines) == 2 and ",UR2026-004,," in csv_lines[1]
    wide = json.loads(demo_cli("due", "--as-of", "2026-12-05", "--within", "177", "--format", "json").stdout)
    assert ("extension_ending", "JM2025-003") in [(r["kind"], r["project"]) for r in wide]
    demo_cli("due", "--within", "-1", expect=2)


def test_a_due_command_pasted_as_printed_runs(demo_cli, monkeypatch):
    """Each command of the list, split as a shell would and run (with --dry-run: nothing is
    written), is accepted; named through JIEBANG_DB, the ledger is not repeated in it."""
    # After the demo's last entry, so that what is due now is due on the ledger as it stands.
    when = ["--as-of", "2027-06-30", "--within", "365"]
    rows = json.loads(demo_cli("due", *when, "--format", "json").stdout)
    assert {r["kind"] for r in rows} >= {"clawback_outstanding", "pledge_behind", "period_ending", "extension_ending"}
    for row in rows:
        words = shlex.split(row["command"])
        assert words[:3] == ["jiebang", "--db", demo_cli.db_url]
        result = CliRunner().invoke(main, [*words[1:], "--dry-run"])
        assert result.exit_code == 0, (row["command"], result.output)
    monkeypatch.setenv("JIEBANG_DB", demo_cli.db_url)
    plain = CliRunner().invoke(main, ["due", *when, "--format", "json"])
    assert [shlex.split(r["command"])[1] for r in json.loads(plain.stdout)] == [shlex.split(r["command"])[3] for r in rows]

