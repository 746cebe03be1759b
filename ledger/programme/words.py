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
# The balances of a project or lane (``ledger.programme.BALANCE_KEYS``), in the words of the
# audit pack; the portal and the status report use the same words for the same figures.
BALANCE_ZH = {
    "self_funding_pledged": "自筹承诺", "self_funding_contributed": "自筹到位", "self_funding_outstanding": "自筹未到位",
    "bid_contracted": "揭榜合同额", "bid_paid_cash": "揭榜已付·现金", "bid_paid_equity": "揭榜已付·技术入股",
    "bid_paid_in_kind": "揭榜已付·实物", "bid_unpaid": "揭榜未付", "subsidy_base": "补助基数（现金）",
    "subsidy_earned": "补助已计提", "subsidy_released": "补助已拨付", "subsidy_payable": "补助应付未付",
    "grant_obligated": "批复（已承诺）", "grant_released": "财政已拨付", "grant_unreleased": "批复未拨付",
    "advances_outstanding": "预拨经费结余", "fiscal_spent": "财政资金支出", "clawback_assessed": "追回核定",
    "clawback_collected": "已收回（含抵扣）", "clawback_outstanding": "未追回",
}
# An enterprise's warnings, in the status report and on its portal pages alike.
WARNING_ZH = {"self_funding_should_be_in_place": "自筹资金未到位", "period_end_is_near": "实施期即将届满",
              "period_has_ended": "实施期已届满", "clawback_is_outstanding": "追回款未退回"}
PROJECT_STATUS_ZH = {"active": "执行中", "accepted": "已结题", "terminated": "已终止"}
LANE_STATUS_ZH = {"active": "执行中", "eliminated": "已淘汰", "terminated": "已终止"}
ROLE_ZH = {"demand": "需求方", "solver": "揭榜方"}
TRANCHE_STATUS_ZH = {"released": "已拨付", "eligible": "可拨付", "planned": "待条件", "cancelled": "已取消"}
PARTY_KIND_ZH = {"enterprise": "企业", "university": "高校", "institute": "科研院所", "other": "其他"}
