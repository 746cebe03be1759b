"""Chinese names of the programme's codes, for the text people read: journal memos written by
the services, and the documents in ``reports/``. The codes themselves (in facts, JSON and the
command line) stay as they are; these are only how they are written for a reader."""

from __future__ import annotations

CITY_ZH = {"jiangmen": "江门", "urumqi": "乌鲁木齐"}
MODE_ZH = {"jbgs": "揭榜挂帅", "saima": "赛马"}
PROJECT_CATEGORY_ZH = {"tech_breakthrough": "技术攻关", "commercialization": "成果转化"}
BUDGET_CATEGORY_ZH = {"equipment": "设备费", "business": "业务费", "labour": "劳务费", "indirect": "间接费用"}
FORM_ZH = {"cash": "现金", "equity": "技术入股", "in_kind": "实物"}
STAGE_ZH = {"contract_signed": "签订合同", "midterm": "中期检查", "stage_assessment": "赛马阶段考核",
            "acceptance": "验收", "audit_report": "专项审计报告"}
STAGE_RESULT_ZH = {  # (stage, passed) -> memo words
    ("contract_signed", True): "签订合同", ("contract_signed", False): "合同未签订",
    ("midterm", True): "中期检查通过", ("midterm", False): "中期检查未通过",
    ("stage_assessment", True): "赛马阶段考核通过", ("stage_assessment", False): "赛马阶段考核未通过（淘汰）",
    ("acceptance", True): "验收通过", ("acceptance", False): "验收未通过",
    ("audit_report", True): "收到专项审计报告", ("audit_report", False): "专项审计报告未通过",
}
# What a tranche waits for, by the tranche names the rules files use.
TRANCHE_ZH = {"contract": "签订合同后", "midterm": "中期检查通过后", "interim": "过程拨付", "final": "验收通过后"}
ENDING_ZH = {"termination": "终止清算", "revocation": "撤销清算", "elimination": "淘汰清算"}


def zh(names: dict[str, str], code: str | None) -> str:
    """The Chinese name of ``code``, or the code itself when it has none (a rules file's own name)."""
    return names.get(code or "", code or "")


def tranche_memo(seq: int, name: str, lane: int, *, offset: bool = False) -> str:
    """拨付第2期（中期检查通过后）L1."""
    return f"拨付第{seq}期（{zh(TRANCHE_ZH, name)}）L{lane}" + ("，抵扣追回款后净额" if offset else "")
CONDITION_ZH = {"approved": "立项", "contract_signed": "签订合同", "first_bid_payment": "首笔揭榜金额拨付",
                "midterm_passed": "中期检查通过", "stage_passed": "赛马阶段考核通过", "acceptance_passed": "验收通过",
                "audit_report_received": "收到专项审计报告",
                "subsidy_payable": "应付补助（需求方以现金拨付揭榜金额后计提；技术入股、实物不计）"}
PROJECT_STATUS_ZH = {"active": "执行中", "accepted": "已结题", "terminated": "已终止"}
LANE_STATUS_ZH = {"active": "执行中", "eliminated": "已淘汰", "terminated": "已终止"}
ROLE_ZH = {"demand": "需求方", "solver": "揭榜方"}
TRANCHE_STATUS_ZH = {"released": "已拨付", "eligible": "可拨付", "planned": "待条件", "cancelled": "已取消"}
PARTY_KIND_ZH = {"enterprise": "企业", "university": "高校", "institute": "科研院所", "other": "其他"}
