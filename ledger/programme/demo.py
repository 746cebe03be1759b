"""The demo ledger: a fresh SQLite ledger holding a realistic two-city programme, recorded
through the services only (``reports.demo`` then verifies, exports and reports on it).

Everything is fixed: parties, dates (2024–2027), amounts and vouchers, so two runs give the
same journal (and the same chain head) and nothing touches the network. The parties are
fictional; their USCCs are generated with valid GB 32100 and GB 11714 check characters.
If a rule refuses one of the events below, the demo data is wrong, never the rule.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy.orm import Session

from funding_rules.uscc import check_digit
from ledger.core.errors import Refusal
from ledger.programme import (
    ApprovalInput,
    Misuse,
    PartyInput,
    PartyYearInput,
    appropriate,
    approve_project,
    bid_contract,
    bid_pay,
    collect,
    contribute,
    extend,
    pledge,
    record_stage,
    register_party,
    release,
    remit,
    spend,
    terminate,
    update_party,
)

ACTOR = "demo"
DB_NAME = "jiebang.db"
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_VALUES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def wan(amount: int | str) -> int:
    """万元 (10,000 yuan) to fen, exactly: ``wan(58) == 58_000_000``, ``wan("7.5") == 7_500_000``."""
    return int(Decimal(str(amount)) * 1_000_000)


def demo_uscc(registration: str, division: str, org8: str) -> str:
    """A well-formed USCC: registration authority + division + GB 11714 organisation code + check."""
    total = sum(_ORG_VALUES.index(c) * w for c, w in zip(org8, _ORG_WEIGHTS, strict=True))
    r = 11 - total % 11
    org = org8 + ("X" if r == 10 else "0" if r == 11 else str(r))
    first17 = registration + division + org
    return first17 + check_digit(first17)


# --- the parties ------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoParty:
    key: str
    uscc: str
    name: str
    kind: str = "enterprise"
    revenue_wan: int | None = None
    rnd_intensity: str | None = None
    innovation_star: bool = False


PARTIES = (
    # Jiangmen demand sides, each passing one eligibility test of 工作方案 二(一)1.
    DemoParty("jm_yuehai", demo_uscc("91", "440703", "MA4W1A27"), "江门市粤海精密装备股份有限公司", revenue_wan=86_000, rnd_intensity="0.045"),
    DemoParty("jm_pengjiang", demo_uscc("91", "440703", "MA4W2B38"), "江门市蓬江新材料科技有限公司", revenue_wan=32_000, rnd_intensity="0.12"),
    DemoParty("jm_chenpi", demo_uscc("91", "440705", "MA4W3C49"), "江门市新会陈皮生物科技有限公司", revenue_wan=18_000, innovation_star=True),
    DemoParty("jm_huaguang", demo_uscc("91", "440784", "MA4W4D51"), "鹤山市华光照明电器有限公司", revenue_wan=62_000),
    # Jiangmen solvers.
    DemoParty("jm_yida", demo_uscc("12", "440700", "45512301"), "江门邑大先进制造研究院", kind="institute"),
    DemoParty("jm_zhilian", demo_uscc("91", "440704", "MA4W5E62"), "江门市智联传感科技有限公司"),
    DemoParty("jm_qiaoxiang", demo_uscc("91", "440705", "MA4W6F73"), "广东侨乡新材料有限公司"),
    DemoParty("jm_gaofenzi", demo_uscc("12", "440700", "45512402"), "江门市高分子材料研究所", kind="institute"),
    DemoParty("jm_wuyi_bio", demo_uscc("12", "440700", "45512503"), "江门五邑生物技术研究所", kind="institute"),
    DemoParty("jm_nanyue", demo_uscc("12", "440700", "45512604"), "广东南粤照明技术研究院", kind="institute"),
    DemoParty("jm_jianghai", demo_uscc("91", "440704", "MA4W7G84"), "江门市江海智能装备有限公司"),
    # Urumqi demand sides (no eligibility test beyond the investment floor, 工作指引 二(一)).
    DemoParty("ur_tianshan", demo_uscc("91", "650106", "MA7N1A21"), "新疆天山风电装备股份有限公司", revenue_wan=54_000),
    DemoParty("ur_silu", demo_uscc("91", "650104", "MA7N2B32"), "新疆丝路生物制药有限公司", revenue_wan=21_000),
    DemoParty("ur_zhundong", demo_uscc("91", "650102", "MA7N3C43"), "新疆准东清洁能源化工有限公司", revenue_wan=130_000),
    # Urumqi solvers, none related to its demand side (工作指引 二(三)).
    DemoParty("ur_xiyu", demo_uscc("12", "650100", "45800101"), "乌鲁木齐西域能源技术研究院", kind="institute"),
    DemoParty("ur_tianchi", demo_uscc("12", "650100", "45800202"), "新疆天池药物研究所", kind="institute"),
    DemoParty("ur_gongyan", demo_uscc("12", "650100", "45800303"), "新疆天山工业技术研究院", kind="institute"),
    DemoParty("ur_gaoxin", demo_uscc("91", "650106", "MA7N4D54"), "乌鲁木齐高新智能控制有限公司"),
    DemoParty("ur_gobi", demo_uscc("91", "650104", "MA7N5E65"), "新疆戈壁储能科技有限公司"),
)
P = {p.key: p.uscc for p in PARTIES}

# The two enterprises whose status reports the demo writes: a demand side with an accepted
# 揭榜挂帅 project and a 赛马 project short of self-funding, and a solver racing in both cities.
STATUS_PARTIES = ("jm_yuehai", "jm_zhilian")


# --- the plan: events with fixed dates, run in date order -------------------------------


@dataclass(frozen=True)
class Step:
    date: dt.date
    order: int
    what: str
    run: Callable[[Session], object]


@dataclass
class Plan:
    """Events to record; ``run`` posts them in (date, order of declaration) order."""

    steps: list[Step] = field(default_factory=list)
    stories: dict[str, str] = field(default_factory=dict)

    def _add(self, when: str, what: str, run: Callable[[Session], object]) -> None:
        self.steps.append(Step(dt.date.fromisoformat(when), len(self.steps), what, run))

    def party(self, p: DemoParty, when: str) -> None:
        spec = PartyInput(
            uscc=p.uscc, name=p.name, kind=p.kind,
            revenue_fen=wan(p.revenue_wan) if p.revenue_wan else None,
            rnd_intensity=Decimal(p.rnd_intensity) if p.rnd_intensity else None,
            innovation_star=p.innovation_star, date=dt.date.fromisoformat(when),
        )
        self._add(when, f"register {p.name}", lambda s: register_party(s, spec, actor=ACTOR))

    def appropriate(self, when: str, year: int, amount_wan: int, voucher: str) -> None:
        d = dt.date.fromisoformat(when)
        self._add(when, f"appropriation {year} {voucher}",
                  lambda s: appropriate(s, year=year, amount_fen=wan(amount_wan), date=d, voucher=voucher, actor=ACTOR))

    def approve(self, when: str, story: str, **spec) -> None:
        spec.setdefault("approval_date", dt.date.fromisoformat(when))
        for key in ("start_date", "end_date"):
            spec[key] = dt.date.fromisoformat(spec[key])
        approval = ApprovalInput(**spec)
        self.stories[approval.code] = story
        self._add(when, f"approve {approval.code}", lambda s: approve_project(s, approval, actor=ACTOR))

    def event(self, when: str, service, what: str, **kwargs) -> None:
        d = dt.date.fromisoformat(when)
        self._add(when, what, lambda s: service(s, date=d, actor=ACTOR, **kwargs))

    # Short forms for the events the programme uses most.
    def pledge(self, when, code, amount_wan, voucher):
        self.event(when, pledge, f"pledge {code}", project=code, amount_fen=wan(amount_wan), voucher=voucher)

    def contribute(self, when, code, amount_wan, category, voucher):
        self.event(when, contribute, f"contribution {code} {category}", project=code, amount_fen=wan(amount_wan),
                   category=category, voucher=voucher)

    def stage(self, when, code, stage, voucher, *, passed=True, lane=None, reference=None, **recorded):
        self.event(when, record_stage, f"{stage} {code} {lane or ''}", project=code, stage=stage, passed=passed,
                   lane=lane, reference=reference, voucher=voucher, **recorded)

    def release(self, when, code, voucher, lane=None):
        self.event(when, release, f"release {code} {lane or ''}", project=code, lane=lane, voucher=voucher)

    def spend(self, when, code, amount_wan, category, voucher, *, lane=None, counterparty=None, justification=None):
        self.event(when, spend, f"spend {code} {voucher}", project=code, lane=lane, amount_fen=wan(amount_wan),
                   category=category, voucher=voucher, counterparty=counterparty, justification=justification)

    def bid_contract(self, when, code, amount_wan, voucher, lane=None):
        self.event(when, bid_contract, f"bid contract {code} {lane or ''}", project=code, lane=lane,
                   amount_fen=wan(amount_wan), voucher=voucher)

    def bid_pay(self, when, code, amount_wan, form, voucher, lane=None):
        self.event(when, bid_pay, f"bid payment {code} {lane or ''} {form}", project=code, lane=lane,
                   amount_fen=wan(amount_wan), form=form, voucher=voucher)

    def run(self, session: Session) -> int:
        for step in sorted(self.steps, key=lambda s: (s.date, s.order)):
            try:
                step.run(session)
            except Refusal as refusal:
                raise Refusal(
                    "demo_event_must_be_accepted",
                    f"demo event on {step.date} ({step.what}) was refused: {refusal.message} "
                    "This is a bug in the demo data (reports/demo.py); please report it.",
                ) from refusal
        return len(self.steps)


def programme() -> Plan:
    """The two-city programme: 19 parties, 2024–2026 appropriations, 9 projects, 170 events."""
    plan = Plan()
    for i, p in enumerate(PARTIES):
        plan.party(p, f"2024-01-{2 + i // 10:02d}")

    # Budget authority. The chart keeps one pool per budget year, so both cities'
    # appropriations land in the same year account (see the README).
    for year, jm, ur, day in ((2024, 2500, 1500, 15), (2025, 2000, 1500, 10), (2026, 1800, 1200, 12)):
        plan.appropriate(f"{year}-01-{day}", year, jm, f"江财预〔{year}〕{day - 7}号")
        plan.appropriate(f"{year}-01-{day + 5}", year, ur, f"乌财预〔{year}〕{day - 4}号")

    _jm2024_001(plan)
    _jm2024_002(plan)
    _jm2025_003(plan)
    _jm2025_004(plan)
    _jm2026_005(plan)
    _ur2024_001(plan)
    _ur2025_002(plan)
    _ur2025_003(plan)
    _ur2026_004(plan)
    return plan


def _jm2024_001(plan: Plan) -> None:
    code = "JM2024-001"
    plan.approve(
        "2024-02-26", "揭榜挂帅 技术攻关 with an approved budget by category: contract, 60% release, spending in four categories (equipment ≥ 500,000 justified), "
        "mid-term passed, 40% release, acceptance and audit report",
        code=code, name="高精度五轴数控系统关键技术攻关", city="jiangmen", category="tech_breakthrough", mode="jbgs",
        demand_uscc=P["jm_yuehai"], solver_usccs=(P["jm_yida"],), total_investment_fen=wan(1200),
        start_date="2024-03-01", end_date="2027-02-28", approved_grant_fen=wan(500), voucher="江科〔2024〕11号",
        # The approved budget by source and category (批复预算); the city's lines add up to the grant.
        budget=(("city_fiscal", "equipment", wan(90)), ("city_fiscal", "business", wan(200)), ("city_fiscal", "labour", wan(160)),
                ("city_fiscal", "indirect", wan(50)), ("self_funded", "equipment", wan(200)), ("self_funded", "business", wan(250)),
                ("self_funded", "labour", wan(200)), ("self_funded", "indirect", wan(50))),
    )
    plan.pledge("2024-03-05", code, 700, "CN-JM2024-001")
    plan.stage("2024-03-18", code, "contract_signed", "HT-JM2024-001", reference="江科合〔2024〕001号")
    plan.bid_contract("2024-03-18", code, 400, "JBXY-JM2024-001")
    plan.release("2024-03-28", code, "江科拨〔2024〕21号")
    plan.bid_pay("2024-04-10", code, 200, "cash", "YH-FK-2024-0410")
    for when, amount, cat in (("2024-04-15", 200, "equipment"), ("2024-06-30", 150, "business"), ("2024-12-31", 120, "labour"),
                              ("2025-06-30", 100, "business"), ("2026-06-30", 80, "labour"), ("2027-01-31", 50, "indirect")):
        plan.contribute(when, code, amount, cat, f"YH-ZC-{when}")
    plan.spend("2024-05-20", code, 58, "equipment", "JM1-PZ-2024-015", counterparty="沈阳某数控机床有限公司",
               justification="五轴联动加工中心 1 台，单价 58 万元：联动插补算法验证必需，院内无同类设备（设备购置论证 JM1-SB-01）")
    plan.spend("2024-07-10", code, 42, "business", "JM1-PZ-2024-031", counterparty="伺服电机与光栅尺采购")
    plan.spend("2024-09-30", code, 36, "labour", "JM1-PZ-2024-058")
    plan.spend("2024-12-20", code, 31, "business", "JM1-PZ-2024-090", counterparty="第三方检测 精度测试")
    plan.spend("2025-03-31", code, 28, "labour", "JM1-PZ-2025-012")
    plan.bid_pay("2025-04-10", code, 150, "cash", "YH-FK-2025-0410")
    plan.spend("2025-06-30", code, 15, "indirect", "JM1-PZ-2025-040")
    plan.stage("2025-09-10", code, "midterm", "ZQ-JM2024-001", reference="江科〔2025〕66号")
    plan.release("2025-09-25", code, "江科拨〔2025〕58号")
    plan.spend("2025-11-15", code, 26, "equipment", "JM1-PZ-2025-077", counterparty="激光干涉仪")
    plan.spend("2026-01-20", code, 65, "business", "JM1-PZ-2026-004")
    plan.spend("2026-05-30", code, 54, "labour", "JM1-PZ-2026-033")
    plan.spend("2026-09-30", code, 48, "business", "JM1-PZ-2026-061")
    plan.spend("2026-12-15", code, 20, "indirect", "JM1-PZ-2026-090")
    plan.stage("2027-03-20", code, "acceptance", "YS-JM2024-001", reference="江科验〔2027〕5号")
    plan.stage("2027-03-31", code, "audit_report", "SJ-JM2024-001", reference="江会审字〔2027〕第0331号")


def _party_year(session: Session, *, date: dt.date, actor: str, **facts):
    """``update_party`` as a plan event (so that a plan that renames vouchers renames this one too)."""
    return update_party(session, PartyYearInput(date=date, **facts), actor=actor)


def _jm2024_002(plan: Plan) -> None:
    code = "JM2024-002"
    # The demand side qualifies by the R&D-ratio route, which needs a 规模以上 enterprise: its
    # 2023 facts are recorded before the 2024 approval reads them (“上一年度”).
    plan.event("2024-03-15", _party_year, "party facts 2023 jm_pengjiang", uscc=P["jm_pengjiang"], year=2023,
               revenue_fen=wan(32000), rnd_intensity=Decimal("0.12"), above_scale=True, voucher="PF-JM-PENGJIANG-2023")
    plan.approve(
        "2024-04-20", "赛马 技术攻关, 3 lanes: equal 60% releases; L3 fails the stage assessment (eliminated, unspent "
        "advance assessed, 40% deobligated, part collected); L1 and L2 get the 40% tranche",
        code=code, name="高性能碳纤维复合材料赛马攻关", city="jiangmen", category="tech_breakthrough", mode="saima",
        demand_uscc=P["jm_pengjiang"], solver_usccs=(P["jm_gaofenzi"], P["jm_zhilian"], P["jm_qiaoxiang"]),
        total_investment_fen=wan(1500), start_date="2024-05-01", end_date="2027-04-30", approved_grant_fen=wan(600),
        voucher="江科〔2024〕27号",
    )
    plan.pledge("2024-04-28", code, 900, "CN-JM2024-002")
    for when, amount, cat in (("2024-06-30", 300, "equipment"), ("2024-12-31", 250, "business"), ("2025-06-30", 200, "labour")):
        plan.contribute(when, code, amount, cat, f"PJ-ZC-{when}")
    plan.stage("2024-05-10", code, "contract_signed", "HT-JM2024-002", reference="江科合〔2024〕007号")
    for n in (1, 2, 3):
        plan.release("2024-05-20", code, f"江科拨〔2024〕35-{n}号", lane=f"L{n}")
    for when, lane, amount, cat, voucher in (
        ("2024-07-15", "L1", 35, "business", "JM2-L1-PZ-001"), ("2024-07-20", "L2", 45, "equipment", "JM2-L2-PZ-001"),
        ("2024-08-05", "L3", 40, "business", "JM2-L3-PZ-001"), ("2024-10-31", "L1", 28, "labour", "JM2-L1-PZ-002"),
        ("2024-11-15", "L2", 30, "business", "JM2-L2-PZ-002"), ("2024-12-10", "L3", 30, "labour", "JM2-L3-PZ-002"),
        ("2025-03-20", "L1", 22, "business", "JM2-L1-PZ-003"), ("2025-04-10", "L2", 26, "labour", "JM2-L2-PZ-003"),
        ("2025-09-30", "L1", 40, "labour", "JM2-L1-PZ-004"), ("2025-10-20", "L2", 35, "business", "JM2-L2-PZ-004"),
        ("2026-03-31", "L1", 38, "business", "JM2-L1-PZ-005"), ("2026-04-30", "L2", 30, "labour", "JM2-L2-PZ-005"),
    ):
        plan.spend(when, code, amount, cat, voucher, lane=lane)
    for lane, passed in (("L1", True), ("L2", True), ("L3", False)):
        plan.stage("2025-06-15", code, "stage_assessment", f"KH-JM2024-002-{lane}", passed=passed, lane=lane,
                   reference="江科〔2025〕48号")
    for n in (1, 2):
        plan.release("2025-07-01", code, f"江科拨〔2025〕41-{n}号", lane=f"L{n}")
    plan.event("2025-08-20", collect, "collection JM2024-002 L3", project=code, lane="L3", amount_fen=wan(30),
               voucher="江科缴〔2025〕12号")
    plan.event("2025-08-31", remit, "remittance 2025", amount_fen=wan(30), voucher="江财缴〔2025〕31号")


def _jm2025_003(plan: Plan) -> None:
    code = "JM2025-003"
    plan.approve(
        "2025-03-20", "揭榜挂帅 成果转化: both tranches, then a 5-month extension; spending continues in the extended period",
        code=code, name="新会陈皮功能成分提取中试转化", city="jiangmen", category="commercialization", mode="jbgs",
        demand_uscc=P["jm_chenpi"], solver_usccs=(P["jm_wuyi_bio"],), total_investment_fen=wan(600),
        start_date="2025-04-01", end_date="2026-12-31", approved_grant_fen=wan(250), voucher="江科〔2025〕19号",
    )
    plan.pledge("2025-03-28", code, 350, "CN-JM2025-003")
    for when, amount, cat in (("2025-05-30", 100, "business"), ("2025-11-30", 120, "equipment"), ("2026-06-30", 80, "labour")):
        plan.contribute(when, code, amount, cat, f"CP-ZC-{when}")
    plan.stage("2025-04-25", code, "contract_signed", "HT-JM2025-003", reference="江科合〔2025〕003号")
    plan.release("2025-05-08", code, "江科拨〔2025〕26号")
    plan.spend("2025-06-20", code, 38, "business", "JM3-PZ-2025-010")
    plan.spend("2025-09-15", code, 52, "equipment", "JM3-PZ-2025-036", counterparty="超临界CO2萃取中试装置",
               justification="超临界 CO2 萃取中试装置 1 套，单价 52 万元：中试放大必需，租用成本高于购置（论证 JM3-SB-01）")
    plan.spend("2025-12-20", code, 25, "labour", "JM3-PZ-2025-070")
    plan.stage("2026-04-15", code, "midterm", "ZQ-JM2025-003", reference="江科〔2026〕31号")
    plan.release("2026-05-10", code, "江科拨〔2026〕33号")
    plan.spend("2026-07-20", code, 30, "business", "JM3-PZ-2026-021")
    plan.spend("2026-10-30", code, 22, "labour", "JM3-PZ-2026-048")
    plan.event("2026-11-20", extend, "extension JM2025-003", project=code, months=5, reference="江科〔2026〕102号",
               reason="中试装置主机受不可抗力（产地停产）影响延迟到货", voucher="YQ-JM2025-003")
    plan.spend("2027-02-26", code, 18, "business", "JM3-PZ-2027-005")


def _jm2025_004(plan: Plan) -> None:
    code = "JM2025-004"
    plan.approve(
        "2025-05-12", "揭榜挂帅 技术攻关, terminated: 60% released, spent in three categories, 80,000 misused; "
        "clawback 580,000 assessed, 40% deobligated, collected and remitted",
        code=code, name="Micro-LED 车用照明驱动芯片攻关", city="jiangmen", category="tech_breakthrough", mode="jbgs",
        demand_uscc=P["jm_huaguang"], solver_usccs=(P["jm_nanyue"],), total_investment_fen=wan(500),
        start_date="2025-06-01", end_date="2028-05-31", approved_grant_fen=wan(200), voucher="江科〔2025〕37号",
    )
    plan.pledge("2025-05-20", code, 300, "CN-JM2025-004")
    plan.contribute("2025-07-31", code, 60, "business", "HG-ZC-2025-07")
    plan.contribute("2025-12-31", code, 40, "labour", "HG-ZC-2025-12")
    plan.stage("2025-06-10", code, "contract_signed", "HT-JM2025-004", reference="江科合〔2025〕011号")
    plan.release("2025-06-20", code, "江科拨〔2025〕39号")
    plan.spend("2025-07-15", code, 30, "equipment", "JM4-PZ-2025-003", counterparty="探针台")
    plan.spend("2025-08-20", code, 25, "business", "JM4-PZ-2025-007", counterparty="流片加工")
    plan.spend("2025-10-31", code, 15, "labour", "JM4-PZ-2025-012")
    plan.event("2026-03-16", terminate, "termination JM2025-004", project=code, reference="江科〔2026〕19号",
               voucher="ZZ-JM2025-004", misused=[Misuse("JM4-PZ-2025-007", wan(8))])
    plan.event("2026-04-20", collect, "collection JM2025-004", project=code, lane=None, amount_fen=wan(58),
               voucher="江科缴〔2026〕7号")
    plan.event("2026-04-30", remit, "remittance 2026", amount_fen=wan(58), voucher="江财缴〔2026〕18号")


def _jm2026_005(plan: Plan) -> None:
    code = "JM2026-005"
    plan.approve(
        "2026-02-20", "赛马 成果转化, 2 lanes: 60% released to both, cash and in-kind bid payments; self-funding at 40% "
        "(a status-report warning); the 40% tranche waits on the stage assessment",
        code=code, name="精密减速器产业化赛马", city="jiangmen", category="commercialization", mode="saima",
        demand_uscc=P["jm_yuehai"], solver_usccs=(P["jm_jianghai"], P["jm_yida"]), total_investment_fen=wan(800),
        start_date="2026-03-01", end_date="2028-02-29", approved_grant_fen=wan(300), voucher="江科〔2026〕08号",
    )
    plan.pledge("2026-02-26", code, 200, "CN-JM2026-005")
    plan.contribute("2026-04-30", code, 50, "equipment", "YH-ZC-2026-04")
    plan.contribute("2026-09-30", code, 30, "business", "YH-ZC-2026-09")
    plan.stage("2026-03-10", code, "contract_signed", "HT-JM2026-005", reference="江科合〔2026〕002号")
    plan.bid_contract("2026-03-10", code, 100, "JBXY-JM2026-005-L1", lane="L1")
    plan.bid_contract("2026-03-10", code, 100, "JBXY-JM2026-005-L2", lane="L2")
    plan.release("2026-03-25", code, "江科拨〔2026〕15-1号", lane="L1")
    plan.release("2026-03-25", code, "江科拨〔2026〕15-2号", lane="L2")
    plan.bid_pay("2026-03-31", code, 50, "cash", "YH-FK-2026-0331", lane="L1")
    plan.bid_pay("2026-04-15", code, 30, "in_kind", "YH-SW-2026-0415", lane="L2")
    plan.bid_pay("2026-06-30", code, 40, "cash", "YH-FK-2026-0630", lane="L2")
    plan.spend("2026-05-15", code, 28, "business", "JM5-L1-PZ-001", lane="L1")
    plan.spend("2026-06-10", code, 20, "labour", "JM5-L2-PZ-001", lane="L2")
    plan.spend("2026-10-20", code, 25, "labour", "JM5-L1-PZ-002", lane="L1")


def _ur2024_001(plan: Plan) -> None:
    code = "UR2024-001"
    plan.approve(
        "2024-04-08", "揭榜挂帅 技术攻关: cash and equity bid payments (equity earns nothing), interim subsidy release, "
        "acceptance and audit report, final release",
        code=code, name="大兆瓦风电主轴承国产化攻关", city="urumqi", category="tech_breakthrough", mode="jbgs",
        demand_uscc=P["ur_tianshan"], solver_usccs=(P["ur_xiyu"],), total_investment_fen=wan(1500),
        start_date="2024-05-01", end_date="2027-04-30", bid_contract_fen=(wan(1000),), voucher="乌科〔2024〕15号",
        pi="王建疆", indicators=("5MW 主轴承样机 1 套，通过台架试验", "申请发明专利 2 项"), project_manager="李天山",
        owner_letter="TS-YZ-2024-01", owner_letter_date=dt.date(2024, 4, 20),
    )
    plan.pledge("2024-04-15", code, 500, "CN-UR2024-001")
    for when, amount, cat in (("2024-08-31", 200, "equipment"), ("2025-03-31", 150, "business"),
                              ("2025-12-31", 100, "labour"), ("2026-06-30", 50, "business")):
        plan.contribute(when, code, amount, cat, f"TS-ZC-{when}")
    plan.stage("2024-05-06", code, "contract_signed", "XY-UR2024-001", reference="揭榜协议 UR-XY-2024-001")
    plan.bid_pay("2024-06-10", code, 400, "cash", "TS-FK-2024-0610")
    plan.release("2024-07-02", code, "乌科拨〔2024〕17号")
    plan.bid_pay("2024-09-02", code, 200, "equity", "TS-GQ-2024-0902")
    plan.bid_pay("2025-03-15", code, 300, "cash", "TS-FK-2025-0315")
    plan.bid_pay("2026-04-10", code, 100, "cash", "TS-FK-2026-0410")
    plan.stage("2026-05-12", code, "acceptance", "YS-UR2024-001", reference="乌科验〔2026〕9号",
               accepted_by="乌鲁木齐市科学技术局（委托第三方评估机构）")
    plan.stage("2026-06-18", code, "audit_report", "SJ-UR2024-001", reference="新天审字〔2026〕第0611号",
               audit_firm="新疆天山会计师事务所", audit_fee_fen=wan(3))
    plan.release("2026-07-01", code, "乌科拨〔2026〕44号")


def _ur2025_002(plan: Plan) -> None:
    code = "UR2025-002"
    plan.approve(
        "2025-04-10", "揭榜挂帅 成果转化: an in-kind bid payment (earns nothing), cash payments, interim release; "
        "the final tranche waits on acceptance and the audit report",
        code=code, name="民族药复方制剂中试及产业化", city="urumqi", category="commercialization", mode="jbgs",
        demand_uscc=P["ur_silu"], solver_usccs=(P["ur_tianchi"],), total_investment_fen=wan(800),
        start_date="2025-05-01", end_date="2027-10-31", bid_contract_fen=(wan(600),), voucher="乌科〔2025〕21号",
    )
    plan.pledge("2025-04-18", code, 200, "CN-UR2025-002")
    plan.contribute("2025-08-31", code, 80, "business", "SL-ZC-2025-08")
    plan.contribute("2026-02-28", code, 60, "labour", "SL-ZC-2026-02")
    plan.stage("2025-04-28", code, "contract_signed", "XY-UR2025-002", reference="揭榜协议 UR-XY-2025-002")
    plan.bid_pay("2025-05-15", code, 100, "in_kind", "SL-SW-2025-0515")
    plan.bid_pay("2025-06-16", code, 250, "cash", "SL-FK-2025-0616")
    plan.release("2025-07-21", code, "乌科拨〔2025〕36号")
    plan.bid_pay("2026-03-20", code, 100, "cash", "SL-FK-2026-0320")


def _ur2025_003(plan: Plan) -> None:
    code = "UR2025-003"
    plan.approve(
        "2025-06-05", "赛马 技术攻关, 3 lanes (the Urumqi maximum): cash bid payments and interim releases per lane; "
        "L3 fails the stage assessment (obligation deobligated, unpaid subsidy forfeited, nothing to recover)",
        code=code, name="煤化工过程智能感知与控制赛马", city="urumqi", category="tech_breakthrough", mode="saima",
        demand_uscc=P["ur_zhundong"], solver_usccs=(P["jm_zhilian"], P["ur_gongyan"], P["ur_gaoxin"]),
        total_investment_fen=wan(1200), start_date="2025-07-01", end_date="2028-06-30",
        bid_contract_fen=(wan(300), wan(300), wan(300)), voucher="乌科〔2025〕40号",
    )
    plan.pledge("2025-06-12", code, 300, "CN-UR2025-003")
    plan.contribute("2025-09-30", code, 150, "equipment", "ZD-ZC-2025-09")
    plan.contribute("2026-03-31", code, 100, "business", "ZD-ZC-2026-03")
    plan.stage("2025-06-25", code, "contract_signed", "XY-UR2025-003", reference="揭榜协议 UR-XY-2025-003")
    plan.bid_pay("2025-07-15", code, 150, "cash", "ZD-FK-2025-0715", lane="L1")
    plan.bid_pay("2025-07-20", code, 150, "cash", "ZD-FK-2025-0720", lane="L2")
    plan.bid_pay("2025-08-01", code, 100, "cash", "ZD-FK-2025-0801", lane="L3")
    for n in (1, 2, 3):
        plan.release("2025-08-20", code, f"乌科拨〔2025〕52-{n}号", lane=f"L{n}")
    plan.bid_pay("2026-02-10", code, 50, "cash", "ZD-FK-2026-0210", lane="L3")
    for lane, passed in (("L1", True), ("L2", True), ("L3", False)):
        plan.stage("2026-06-20", code, "stage_assessment", f"KH-UR2025-003-{lane}", passed=passed, lane=lane,
                   reference="乌科〔2026〕57号")
    plan.bid_pay("2026-08-15", code, 100, "cash", "ZD-FK-2026-0815", lane="L1")
    plan.bid_pay("2026-09-10", code, 100, "cash", "ZD-FK-2026-0910", lane="L2")


def _ur2026_004(plan: Plan) -> None:
    code = "UR2026-004"
    plan.approve(
        "2026-03-16", "揭榜挂帅 成果转化: contract signed, only an equity bid payment so far, so the interim tranche is "
        "open but has nothing to pay",
        code=code, name="风储一体化控制系统成果转化", city="urumqi", category="commercialization", mode="jbgs",
        demand_uscc=P["ur_tianshan"], solver_usccs=(P["ur_gobi"],), total_investment_fen=wan(700),
        start_date="2026-04-01", end_date="2028-03-31", bid_contract_fen=(wan(500),), voucher="乌科〔2026〕12号",
    )
    plan.pledge("2026-03-25", code, 200, "CN-UR2026-004")
    plan.contribute("2026-06-30", code, 40, "business", "TS-ZC-2026-06-UR4")
    plan.stage("2026-04-20", code, "contract_signed", "XY-UR2026-004", reference="揭榜协议 UR-XY-2026-004")
    plan.bid_pay("2026-09-30", code, 150, "equity", "TS-GQ-2026-0930")


# --- running the demo -------------------------------------------------------------------


def prepare(out_dir: Path, *, force: bool) -> Path:
    """Refuse an existing ledger unless ``force``, which deletes it; return the ledger path."""
    db_path = out_dir / DB_NAME
    if db_path.exists() and not force:
        raise Refusal(
            "demo_ledger_must_be_fresh",
            f"{db_path} already exists; pass --force to replace it, or choose another --out.",
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Refusal("output_directory_must_be_writable", f"cannot create {out_dir}: {exc.strerror}.") from None
    if not os.access(out_dir, os.W_OK):
        raise Refusal("output_directory_must_be_writable", f"cannot write into {out_dir}; choose another --out.")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    return db_path



@dataclass(frozen=True)
class DemoLedger:
    """A demo ledger just recorded: its file, how many events, the projects and their stories."""

    out_dir: Path
    db_path: Path
    events: int
    stories: dict[str, str]
    started: float


def build_ledger(out_dir: Path, *, force: bool = False) -> DemoLedger:
    """Create the ledger at ``out_dir/jiebang.db`` and record the programme in one transaction."""
    from ledger.core.db import make_engine
    from migrations import upgrade_to_head

    started = time.perf_counter()
    db_path = prepare(out_dir, force=force)
    engine = make_engine(f"sqlite:///{db_path}", must_exist=False)
    try:
        upgrade_to_head(engine)
        plan = programme()
        with Session(engine) as session, session.begin():
            events = plan.run(session)
    finally:
        engine.dispose()
    return DemoLedger(out_dir, db_path, events, dict(plan.stories), started)
