"""The approved budget by source and category (批复预算): given at approval (`project approve
--budget`, the import's projects sheet), recorded in the approval's hashed facts, folded into
its event and checked by `verify`, and used by the audit pack's 三、预算执行.

Both sides of each boundary: the city's lines add up to the grant exactly (one fen either way
is refused); a Urumqi project's city money is a post-subsidy and takes no city lines; a project
approved without a budget says so in words in the pack.
"""

from __future__ import annotations

import json

from openpyxl import load_workbook
from programme_fixtures import (
    JM_DEMAND,
    JM_UNIVERSITY,
    UR_DEMAND,
    UR_SOLVER,
    assert_verified,
    cli_refused,
    jiangmen_world,
    table_counts,
    urumqi_world,
)
from sqlalchemy import text
from test_audit import audit, fen, sheet_rows
from test_import import write_workbook
from test_tamper import disable_guards, raw_engine

from reports.audit import NO_CITY_BUDGET, NO_SELF_BUDGET

JM_ARGS = (
    "project", "approve", "--code", "JM2025-003", "--name", "高端装备运动控制器", "--city", "jiangmen",
    "--category", "技术攻关", "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY,
    "--total-investment", "800万", "--grant", "300万", "--start", "2025-10-01", "--end", "2028-09-30",
    "--date", "2025-09-20",
)
CITY = ("--budget", "市财政:设备费:100万", "--budget", "市财政:业务费:120万", "--budget", "city_fiscal:labour:60万",
        "--budget", "市财政:间接费用:20万")
SELF = ("--budget", "单位自筹:设备费:150万", "--budget", "单位自筹:劳务费:50万")


def _world(session_factory, world) -> None:
    with session_factory() as s:
        world(s)


def _approval_payload(engine, code: str) -> dict:
    with engine.connect() as c:
        facts = c.execute(text("SELECT facts FROM journal_entries WHERE kind = 'approval' AND project_code = :c"), {"c": code}).scalar_one()
        folded = c.execute(text("SELECT payload FROM project_events WHERE kind = 'approval' AND project_code = :c"), {"c": code}).scalar_one()
    recorded = json.loads(facts)["event"]["payload"]
    assert json.loads(folded) == recorded  # the projection holds what the hashed facts say
    return recorded


def test_a_budget_is_recorded_in_the_approval_facts_and_used_by_the_pack(cli, engine, session_factory, tmp_path):
    _world(session_factory, jiangmen_world)
    cli(*JM_ARGS, *CITY, *SELF)
    payload = _approval_payload(engine, "JM2025-003")
    assert payload["budget"] == [  # sorted by source, then the chart's category order
        ["city_fiscal", "equipment", 100_000_000], ["city_fiscal", "business", 120_000_000],
        ["city_fiscal", "labour", 60_000_000], ["city_fiscal", "indirect", 20_000_000],
        ["self_funded", "equipment", 150_000_000], ["self_funded", "labour", 50_000_000],
    ]
    assert_verified(cli)
    cli("stage", "--project", "JM2025-003", "--stage", "contract_signed", "--passed", "--date", "2025-10-10", "--voucher", "HT-1")
    cli("release", "--project", "JM2025-003", "--date", "2025-10-20")
    cli("spend", "--project", "JM2025-003", "--amount", "40万", "--category", "设备费", "--date", "2025-11-01", "--voucher", "PZ-1",
        "--justification", "设备论证")
    files = audit(cli, tmp_path / "out", "JM2025-003", "2026-12-31")
    rows = {(r["资金来源"], r["预算科目"]): r for r in sheet_rows(load_workbook(files["xlsx"])["3 预算执行"])}
    equipment = rows[("市财政", "设备费")]
    assert (fen(equipment["预算数"]), fen(equipment["调整后预算"]), fen(equipment["实际支出"])) == (100_000_000, 100_000_000, 40_000_000)
    assert str(equipment["执行率%"]) == "40"
    assert fen(rows[("市财政", "间接费用")]["预算数"]) == 20_000_000
    assert fen(rows[("单位自筹", "设备费")]["预算数"]) == 150_000_000 and fen(rows[("单位自筹", "业务费")]["预算数"]) == 0
    assert not any(category == "承诺函未分科目部分" for _, category in rows)


def test_a_pack_without_a_budget_says_so_in_words(cli, session_factory, tmp_path):
    _world(session_factory, jiangmen_world)
    cli(*JM_ARGS)
    cli("pledge", "--project", "JM2025-003", "--amount", "500万", "--date", "2025-09-25", "--voucher", "CN-1")
    files = audit(cli, tmp_path / "out", "JM2025-003", "2026-12-31")
    rows = sheet_rows(load_workbook(files["xlsx"])["3 预算执行"])
    assert {r["预算数"] for r in rows if r["资金来源"] == "市财政"} == {NO_CITY_BUDGET}
    assert {r["预算数"] for r in rows if r["资金来源"] == "单位自筹" and r["预算科目"] != "承诺函未分科目部分"} == {NO_SELF_BUDGET}
    unclassified = next(r for r in rows if r["预算科目"] == "承诺函未分科目部分")
    assert fen(unclassified["预算数"]) == 500_000_000 and unclassified["实际支出"] is None
    notes = [r[0].value for r in load_workbook(files["xlsx"])["3 预算执行"].iter_rows() if str(r[0].value or "").startswith("注：")]
    assert any("未列预算科目" in n and "5,000,000.00" in n for n in notes), notes


def test_the_city_lines_add_up_to_the_grant_to_the_fen(cli, engine, session_factory):
    _world(session_factory, jiangmen_world)
    short = (*CITY[:-2], "--budget", "市财政:间接费用:199999.99")
    over = (*CITY[:-2], "--budget", "市财政:间接费用:200000.01")
    cli_refused(cli, engine, *JM_ARGS, *short, says=("2999999.99", "3000000.00", "add up"))
    cli_refused(cli, engine, *JM_ARGS, *over, says=("3000000.01", "3000000.00"))
    cli(*JM_ARGS, *(*CITY[:-2], "--budget", "市财政:间接费用:200000.00"))  # exactly the grant
    assert _approval_payload(engine, "JM2025-003")["budget"][-1] == ["city_fiscal", "indirect", 20_000_000]


def test_malformed_and_repeated_lines_are_refused_in_one_line(cli, engine, session_factory):
    _world(session_factory, jiangmen_world)
    cli_refused(cli, engine, *JM_ARGS, "--budget", "市财政:设备费", says="SOURCE:CATEGORY:AMOUNT")
    cli_refused(cli, engine, *JM_ARGS, "--budget", "省财政:设备费:300万", says="市财政")
    cli_refused(cli, engine, *JM_ARGS, "--budget", "市财政:差旅费:300万", says="差旅费")
    cli_refused(cli, engine, *JM_ARGS, "--budget", "市财政:设备费:100万", "--budget", "市财政:设备费:200万", says="once")
    cli_refused(cli, engine, *JM_ARGS, "--budget", "市财政:设备费:0", "--budget", "市财政:业务费:300万", says="positive")
    assert table_counts(engine)["projects"] == 0


def test_a_post_subsidy_takes_only_self_funded_lines(cli, engine, session_factory):
    _world(session_factory, urumqi_world)
    args = ("project", "approve", "--code", "UR2025-011", "--name", "光伏组件智能运维", "--city", "urumqi", "--category", "成果转化",
            "--mode", "揭榜挂帅", "--demand", UR_DEMAND, "--solver", UR_SOLVER, "--total-investment", "800万", "--bid", "300万",
            "--start", "2025-07-01", "--end", "2027-06-30", "--date", "2025-06-20")
    cli_refused(cli, engine, *args, "--budget", "市财政:设备费:120万", says=("post-subsidy", "单位自筹"))
    cli(*args, "--budget", "单位自筹:设备费:300万")
    assert _approval_payload(engine, "UR2025-011")["budget"] == [["self_funded", "equipment", 300_000_000]]


def test_verify_catches_an_edited_budget_in_the_projection(cli, session_factory, db_url):
    _world(session_factory, jiangmen_world)
    cli(*JM_ARGS, *CITY)
    assert_verified(cli)
    raw = raw_engine(db_url)
    try:
        with raw.begin() as c:
            disable_guards(c)  # past the projection's guards, as someone with the database file would be
            c.execute(text("UPDATE project_events SET payload = :p WHERE kind = 'approval'"),
                      {"p": json.dumps({"budget_year": 2025, "budget": [["city_fiscal", "equipment", 300_000_000]]})})
    finally:
        raw.dispose()
    assert cli("verify", expect=1).stderr.startswith("FAILED")


def test_the_import_takes_budget_lines_on_the_projects_sheet(cli, engine, session_factory, tmp_path):
    _world(session_factory, jiangmen_world)
    path = tmp_path / "projects.xlsx"
    write_workbook(path, {"projects": [
        ["code", "name", "city", "category", "mode", "demand_uscc", "solver_usccs", "total_investment", "grant", "start", "end",
         "budget", "date", "voucher"],
        ["JM2025-003", "高端装备运动控制器", "jiangmen", "技术攻关", "揭榜挂帅", JM_DEMAND, JM_UNIVERSITY, "800万", "300万", "2025-10-01",
         "2028-09-30", "市财政:设备费:100万;市财政:业务费:200万；单位自筹:劳务费:80万", "2025-09-20", "江科〔2025〕88号"],
    ]})
    assert cli("import", str(path)).output.endswith("1 written, 0 already present.\n")
    assert _approval_payload(engine, "JM2025-003")["budget"] == [
        ["city_fiscal", "equipment", 100_000_000], ["city_fiscal", "business", 200_000_000], ["self_funded", "labour", 80_000_000]]
    bad = tmp_path / "bad.xlsx"
    write_workbook(bad, {"projects": [
        ["code", "name", "city", "category", "mode", "demand_uscc", "solver_usccs", "total_investment", "grant", "start", "end",
         "budget", "date", "voucher"],
        ["JM2025-004", "另一项目", "jiangmen", "技术攻关", "揭榜挂帅", JM_DEMAND, JM_UNIVERSITY, "800万", "300万", "2025-10-01",
         "2028-09-30", "市财政:设备费:100万", "2025-09-20", "江科〔2025〕89号"],
    ]})
    before = table_counts(engine)
    result = cli("import", str(bad), expect=1)
    assert "add up" in result.stdout and "nothing was written" in result.stderr and table_counts(engine) == before
