"""`jiebang demo` and `jiebang report status`.

The demo is run once per module on a fresh SQLite file in a temporary directory (it always
builds SQLite). The status-report tests load the same programme into the ``db_url`` ledger
through the services, so they run on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from programme_fixtures import bean_check, bean_check_command
from sqlalchemy.orm import Session

from cli import main
from ledger.core.db import make_engine
from ledger.programme import BALANCE_KEYS, pledge, project_balances
from ledger.programme.demo import PARTIES, STATUS_PARTIES, programme, wan
from reports.status import arrival_rate

USCC = {p.key: p.uscc for p in PARTIES}
DEMAND = USCC["jm_yuehai"]  # demand side of JM2024-001 and JM2026-005
SOLVER = USCC["jm_zhilian"]  # L2 of JM2024-002 (Jiangmen 赛马) and L1 of UR2025-003 (Urumqi 赛马)


# --- the demo -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run `jiebang demo` in a fresh directory; yield (directory, CliRunner result)."""
    where = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        result = CliRunner().invoke(main, ["demo"], catch_exceptions=False)
    return where, result


def _listed_paths(output: str) -> list[str]:
    lines = output.splitlines()
    start = lines.index("wrote:") + 1
    paths = []
    for line in lines[start:]:
        if not line.strip():
            break
        paths.append(line.strip())
    return paths


def test_demo_exits_0_and_every_listed_path_exists(demo_run):
    where, result = demo_run
    assert result.exit_code == 0, result.output
    paths = _listed_paths(result.output)
    assert paths[0] == "demo-out/jiebang.db"
    # ledger, two books, nine balances files, two status reports × 2, two audit packs × 3
    # (pdf, xlsx, beancount extract), the forecast scenario and two forecasts × 2 (xlsx, pdf)
    assert len(paths) == 1 + 2 + 9 + 4 + 6 + 5
    for path in paths:
        assert not Path(path).is_absolute()
        assert (where / path).is_file() or any((where / path).glob("*.beancount")), path
    assert {Path(p).name for p in paths} >= {
        "fiscal.beancount", "memo.beancount", "JM2025-004.json",
        f"status-{DEMAND}-2027-03-31.json", f"status-{DEMAND}-2027-03-31.xlsx",
        f"status-{SOLVER}-2027-03-31.json", f"status-{SOLVER}-2027-03-31.xlsx",
    }
    assert "next commands to try:" in result.output
    assert "jiebang --db demo-out/jiebang.db report status --party" in result.output


def test_demo_ledger_verifies_and_prints_the_chain_head(demo_run):
    where, result = demo_run
    verify_line = next(line for line in result.output.splitlines() if line.startswith("verify: "))
    assert verify_line.startswith("verify: OK: ")
    head = verify_line.rsplit(" ", 1)[1]
    again = CliRunner().invoke(main, ["--db", str(where / "demo-out/jiebang.db"), "verify"])
    assert again.exit_code == 0
    assert again.output.strip().endswith(head)


def test_bean_check_passes_on_the_exported_books(demo_run):
    where, _ = demo_run
    for book in ("fiscal", "memo"):
        bean_check(where / "demo-out" / "beancount" / f"{book}.beancount")


def test_bean_check_is_found_beside_the_interpreter(monkeypatch):
    """`.venv/bin/python -m pytest` without activating the virtualenv: PATH has no bean-check."""
    monkeypatch.setenv("PATH", "/nonexistent")
    command = bean_check_command()
    assert command[0] != "bean-check"
    assert subprocess.run([*command, "--help"], capture_output=True, check=False, timeout=60).returncode == 0


def test_eliminated_saima_lane_has_its_unspent_advance_assessed(demo_run):
    where, _ = demo_run
    engine = make_engine(f"sqlite:///{where / 'demo-out/jiebang.db'}")
    with Session(engine) as session:
        l3 = project_balances(session, "JM2024-002", lane="L3")
    engine.dispose()
    # L3 got the 60% tranche (1,200,000), spent 400,000 + 300,000, then failed the assessment:
    # its unspent 500,000 is assessed and its 40% (800,000) deobligated; 300,000 collected.
    assert l3["clawback_assessed"] == wan(50) > 0
    assert l3["clawback_collected"] == wan(30)
    assert l3["clawback_outstanding"] == wan(20)
    assert l3["advances_outstanding"] == 0
    assert l3["grant_released"] == l3["grant_obligated"] == wan(120)
    assert l3["grant_unreleased"] == 0


def test_terminated_project_balances_match_the_hand_computation(demo_run):
    where, _ = demo_run
    # JM2025-004: grant 2,000,000; 60% released = 1,200,000; spent 300,000 + 250,000 + 150,000
    # = 700,000; terminated with 80,000 of the 250,000 misused. Clawback = unspent 500,000 +
    # misused 80,000 = 580,000, collected in full; the 40% never released is deobligated.
    expected = {key: "0.00" for key in BALANCE_KEYS}
    expected |= {
        "self_funding_pledged": "3000000.00",
        "self_funding_contributed": "1000000.00",
        "self_funding_outstanding": "2000000.00",
        "grant_obligated": "1200000.00",
        "grant_released": "1200000.00",
        "fiscal_spent": "620000.00",
        "clawback_assessed": "580000.00",
        "clawback_collected": "580000.00",
    }
    written = json.loads((where / "demo-out/balances/JM2025-004.json").read_text(encoding="utf-8"))
    assert written == expected
    shown = CliRunner().invoke(
        main, ["--db", str(where / "demo-out/jiebang.db"), "balances", "--project", "JM2025-004", "--format", "json"]
    )
    assert json.loads(shown.output) == written


def test_demo_refuses_an_existing_ledger_unless_forced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "jiebang.db").write_bytes(b"")
    refused = CliRunner().invoke(main, ["demo", "--out", "out"])
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        "error: out/jiebang.db already exists; pass --force to replace it, or choose another --out."
    ]
    assert not (tmp_path / "out" / "beancount").exists()
    forced = CliRunner().invoke(main, ["demo", "--out", "out", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "out" / "jiebang.db").stat().st_size > 0


# --- the status report, on both backends --------------------------------------------------


@pytest.fixture
def programme_ledger(db_url, cli):
    """The demo programme recorded into the test's fresh ledger."""
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        programme().run(session)
    engine.dispose()
    return cli


def _status(cli, party: str, *extra: str) -> dict:
    return json.loads(cli("report", "status", "--party", party, "--format", "json", *extra).output)


def test_status_shows_only_the_partys_projects_and_a_solver_only_its_lane(programme_ledger):
    cli = programme_ledger
    solver = _status(cli, SOLVER)
    assert solver["as_of"] == "2027-03-31"  # the latest entry's value date
    assert [(p["code"], p["roles"], [lane["lane"] for lane in p["lanes"]]) for p in solver["projects"]] == [
        ("JM2024-002", ["solver"], ["L2"]),
        ("UR2025-003", ["solver"], ["L1"]),
    ]
    assert all(p["self_funding"] is None for p in solver["projects"])
    ur_l1 = solver["projects"][1]["lanes"][0]
    assert ur_l1["bid"] == {"contracted": "3000000.00", "paid_cash": "2500000.00", "paid_equity": "0.00",
                            "paid_in_kind": "0.00", "unpaid": "500000.00"}
    assert ur_l1["subsidy"] == {"base": "2500000.00", "earned": "1000000.00", "released": "600000.00", "payable": "400000.00"}
    assert ur_l1["next_tranche"]["name"] == "final"
    assert [w["condition"] for w in ur_l1["next_tranche"]["waits_on"]] == ["acceptance_passed", "audit_report_received"]
    assert [w["code"] for w in solver["warnings"]] == ["period_end_is_near"]  # JM2024-002 ends 2027-04-30

    demand = _status(cli, DEMAND)
    assert [p["code"] for p in demand["projects"]] == ["JM2024-001", "JM2026-005"]
    accepted, racing = demand["projects"]
    assert accepted["status"] == "accepted" and accepted["self_funding"]["arrival_rate"] == "100.00%"
    assert racing["self_funding"] == {"pledged": "2000000.00", "contributed": "800000.00",
                                      "outstanding": "1200000.00", "arrival_rate": "40.00%"}
    assert [lane["lane"] for lane in racing["lanes"]] == ["L1", "L2"]  # the demand side sees every lane
    nxt = racing["lanes"][1]["next_tranche"]
    assert (nxt["lane"], nxt["seq"], nxt["name"], nxt["amount"], nxt["status"]) == ("L2", 2, "midterm", "600000.00", "planned")
    assert [w["condition"] for w in nxt["waits_on"]] == ["stage_passed"]
    assert racing["lanes"][1]["bid"]["paid_in_kind"] == "300000.00"
    assert [w["code"] for w in racing["warnings"]] == ["self_funding_should_be_in_place"]

    # The solver of the eliminated lane sees its clawback; nobody else's report shows JM2024-002 L3.
    loser = _status(cli, USCC["jm_qiaoxiang"])
    assert [w["code"] for w in loser["warnings"]] == ["clawback_is_outstanding"]
    assert loser["projects"][0]["lanes"][0]["clawback"]["outstanding"] == "200000.00"


def test_status_as_of_is_deterministic_and_ignores_later_entries(programme_ledger, db_url, tmp_path):
    cli = programme_ledger
    args = ("report", "status", "--party", DEMAND, "--as-of", "2026-06-30", "--format", "json")
    first, second = cli(*args).output, cli(*args).output
    assert first == second
    out1, out2 = tmp_path / "a", tmp_path / "b"
    cli("report", "status", "--party", DEMAND, "--as-of", "2026-06-30", "--out", str(out1))
    cli("report", "status", "--party", DEMAND, "--as-of", "2026-06-30", "--out", str(out2))
    names = sorted(p.name for p in out1.iterdir())
    assert names == [f"status-{DEMAND}-2026-06-30.json", f"status-{DEMAND}-2026-06-30.xlsx"]
    for name in names:
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes()
    assert (out1 / names[0]).read_text(encoding="utf-8") == first

    # A pledge dated after the as-of date changes nothing as of that date.
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        pledge(session, project="JM2026-005", amount_fen=wan(10), date=dt.date(2027, 6, 1), voucher="LATE-1", actor="t")
    engine.dispose()
    assert cli(*args).output == first
    assert _status(cli, DEMAND)["as_of"] == "2027-06-01"

    report = json.loads(first)
    assert [p["code"] for p in report["projects"]] == ["JM2024-001", "JM2026-005"]
    assert report["projects"][1]["self_funding"]["arrival_rate"] == "25.00%"  # 500,000 of 2,000,000 by 2026-06-30
    # A project approved after the as-of date is left out.
    assert [p["code"] for p in _status(cli, DEMAND, "--as-of", "2025-12-31")["projects"]] == ["JM2024-001"]

    # The workbook: numbers as numbers with a 0.00 format, frozen header rows.
    book = load_workbook(out1 / names[1])
    assert book.sheetnames == ["项目 Projects", "赛道 Lanes", "提示 Warnings", "说明 About"]
    for sheet in ("项目 Projects", "赛道 Lanes", "提示 Warnings"):
        assert book[sheet].freeze_panes == "A2"
    header = [c.value for c in book["项目 Projects"][1]]
    row = dict(zip(header, book["项目 Projects"][3]))
    assert row["项目编号 Project"].value == "JM2026-005"
    assert row["承诺自筹 Pledged"].value == 2_000_000 and row["承诺自筹 Pledged"].number_format == "#,##0.00"
    assert row["实际到位 Contributed"].value == 500_000
    assert row["到位率% Arrival rate"].value == 25
    assert (row["状态 Status"].value, row["组织方式 Mode"].value, row["本单位角色 Role"].value) == ("执行中", "赛马", "需求方")
    header = [c.value for c in book["赛道 Lanes"][1]]
    l2 = {h: c.value for h, c in zip(header, book["赛道 Lanes"][4])}
    assert (l2["赛道 Lane"], l2["已付·实物 Paid in kind"], l2["下一期金额 Next tranche amount"]) == ("L2", 300_000, 600_000)
    assert (l2["下一期款项 Next tranche item"], l2["待满足条件 Waits on"]) == ("中期检查通过后", "赛马阶段考核通过")


def test_status_refuses_an_unknown_party_in_one_line(cli, tmp_path):
    result = cli("report", "status", "--party", "91440703MA4W1A2700", "--out", str(tmp_path / "x"), expect=1)
    assert "jiebang parties" in result.stderr
    assert not (tmp_path / "x").exists()


def test_status_parties_of_the_demo_are_enterprises():
    kinds = {p.key: p.kind for p in PARTIES}
    assert [kinds[k] for k in STATUS_PARTIES] == ["enterprise", "enterprise"]


@pytest.mark.parametrize(
    ("contributed", "pledged", "rate"),
    [(0, 0, "n/a"), (5, 0, "n/a"), (0, 300, "0.00%"), (200, 300, "66.67%"), (1, 300, "0.33%"), (300, 300, "100.00%"),
     (301, 300, "100.33%")],
)
def test_arrival_rate_has_two_decimals_half_up(contributed, pledged, rate):
    assert arrival_rate(contributed, pledged) == rate

