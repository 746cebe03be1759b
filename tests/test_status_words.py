"""The enterprise's status report in its own words: statuses 执行中/已终止/已结题, and
warnings that say what is missing and by when, never which command to run, and that follow
the project's status (a terminated project has no next tranche to wait for)."""

from __future__ import annotations

import json

from programme_fixtures import JM_DEMAND, JM_UNIVERSITY, jiangmen_world

APPROVE = ("project", "approve", "--code", "JM2025-003", "--name", "高端装备运动控制器", "--city", "jiangmen", "--category", "技术攻关",
           "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", "800万", "--grant", "300万",
           "--start", "2025-10-01", "--end", "2028-09-30", "--date", "2025-09-20")


def _status(cli, party: str, as_of: str) -> dict:
    return json.loads(cli("report", "status", "--party", party, "--as-of", as_of, "--format", "json").stdout)


def test_self_funding_warning_follows_the_projects_status(cli, session_factory, tmp_path):
    with session_factory() as s:
        jiangmen_world(s)
    cli(*APPROVE)
    cli("pledge", "--project", "JM2025-003", "--amount", "100万", "--date", "2025-09-25", "--voucher", "CN-1")
    cli("contribute", "--project", "JM2025-003", "--amount", "20万", "--category", "设备费", "--date", "2025-10-05", "--voucher", "ZC-1")
    cli("stage", "--project", "JM2025-003", "--stage", "contract_signed", "--passed", "--date", "2025-10-10", "--voucher", "HT-1")
    cli("release", "--project", "JM2025-003", "--date", "2025-10-20")

    active = _status(cli, JM_DEMAND, "2025-12-31")
    [project] = active["projects"]
    assert project["status"] == "active"  # the JSON keeps its codes
    [warning] = project["warnings"]
    assert warning["code"] == "self_funding_should_be_in_place"
    message = warning["message"]
    assert "尚缺 800,000.00 元" in message and "到位率 20.00%" in message  # what is missing
    assert "下一期（L1 第2期（中期检查通过后））拨付审核前" in message and "2028-09-30" in message  # by when
    assert "jiebang" not in message and "`" not in message

    cli("terminate", "--project", "JM2025-003", "--reference", "江科〔2026〕9号", "--date", "2026-03-01", "--voucher", "ZZ-1")
    ended = _status(cli, JM_DEMAND, "2026-03-31")
    [project] = ended["projects"]
    assert project["status"] == "terminated"
    warning, clawback = project["warnings"]  # the unspent advances are clawed back at termination
    assert clawback["code"] == "clawback_is_outstanding" and "1,800,000.00" in clawback["message"] and "期限" in clawback["message"]
    message = warning["message"]
    assert "项目已终止" in message and "终止清算" in message and "尚缺 800,000.00 元" in message
    assert "下一期" not in message and "拨付审核" not in message  # no next tranche after a termination

    # The workbook says the status in Chinese, and the warning's matter, not its code.
    out = tmp_path / "out"
    cli("report", "status", "--party", JM_DEMAND, "--as-of", "2026-03-31", "--out", str(out))
    from openpyxl import load_workbook

    book = load_workbook(next(out.glob("*.xlsx")))
    assert book["项目 Projects"]["H2"].value == "已终止"
    assert [c.value for c in book["提示 Warnings"][2]] == ["JM2025-003", "自筹资金未到位", message]
    assert book["提示 Warnings"]["B3"].value == "追回款未退回"
    table = cli("report", "status", "--party", JM_DEMAND, "--as-of", "2026-03-31").stdout
    assert "已终止" in table and "提示：" in table and "jiebang" not in table


def test_each_word_table_of_the_documents_is_defined_once():
    """The balances, release conditions and warnings read the same in the audit pack, the
    status report and the portal: one table each, in ledger/programme/words.py (the portal
    once had its own, with other words for the same figures)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shared = ("BALANCE_ZH", "CONDITION_ZH", "WARNING_ZH")
    defined = {}
    for path in [root / "cli.py", *(p for d in ("ledger", "reports", "portal") for p in (root / d).rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id in shared:
                        defined.setdefault(target.id, []).append(str(path.relative_to(root)))
    assert defined == {name: ["ledger/programme/words.py"] for name in shared}
