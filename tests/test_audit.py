"""The 专项审计资料包 (audit pack): `jiebang report audit` on a small ledger built through the
services, on both backends.

Two projects: JM2025-003 (Jiangmen, staged grant) with a release, spending in three
categories, an extension, a termination with a named misuse, a collection and a write-off;
UR2025-011 (Urumqi, bid subsidy) with cash, equity and in-kind bid payments, an interim
release and self-funding. The checks read the files as a reader would: pdftotext for the
PDF's words, pdftoppm for its pages, openpyxl for the workbook, and compare them with
`jiebang balances --format json` and with rates recomputed here from the workbook's cells.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import subprocess
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from ledger.money import format_fen_grouped
from ledger.programme import (
    Misuse,
    bid_pay,
    collect,
    contribute,
    extend,
    pledge,
    record_stage,
    release,
    spend,
    terminate,
    write_off,
)
from programme_fixtures import (
    ACTOR,
    JM_APPROVAL,
    UR_APPROVAL,
    D,
    approve,
    cli_balances,
    cli_refused,
    jiangmen_world,
    urumqi_world,
    yuan,
)

JM = "JM2025-003"
UR = "UR2025-011"
JM_AS_OF = "2026-12-31"
UR_AS_OF = "2026-06-30"
HEADINGS = ("一、项目基本情况", "二、资金到位情况", "三、预算执行情况", "四、外拨资金", "五、补助计算及拨付记录",
            "六、结余及追回", "七、专账明细", "八、科目余额表", "九、完整性")
AMOUNT = re.compile(r"(?<![\d,.])-?\d{1,3}(?:,\d{3})*\.\d{2}(?![\d%])")

needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed; apt-get install poppler-utils")
needs_pdftoppm = pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) is not installed; apt-get install poppler-utils")


# --- the ledger ---------------------------------------------------------------------------


def build_jiangmen(session_factory) -> None:
    """JM2025-003: grant 300万 at 60/40; released 180万, spent 105万, extended, terminated
    with 5万 misused (clawback 75万 advances + 5万), 50万 collected, 2万 written off."""
    with session_factory() as s:
        jiangmen_world(s)
        approve(s, JM_APPROVAL)
    steps = [
        lambda s: pledge(s, project=JM, amount_fen=yuan("300万"), category="business", date=D(2025, 9, 25), voucher="CN-JM-1", actor=ACTOR),
        lambda s: pledge(s, project=JM, amount_fen=yuan("200万"), date=D(2025, 9, 25), voucher="CN-JM-2", actor=ACTOR),
        lambda s: record_stage(s, project=JM, stage="contract_signed", passed=True, date=D(2025, 10, 10), voucher="HT-JM2025-003",
                               actor=ACTOR, reference="江科合〔2025〕003号"),
        lambda s: release(s, project=JM, lane=None, date=D(2025, 10, 20), voucher="BK-2025-101", actor=ACTOR),
        lambda s: contribute(s, project=JM, amount_fen=yuan("1,200,000.00"), category="equipment", date=D(2025, 11, 1), voucher="ZC-001", actor=ACTOR),
        lambda s: spend(s, project=JM, lane=None, amount_fen=yuan("600,000.00"), category="equipment", date=D(2025, 12, 1), voucher="PZ-0001",
                        actor=ACTOR, counterparty="某精密仪器公司", justification="五轴运动控制测试台，指标见论证报告"),
        lambda s: contribute(s, project=JM, amount_fen=yuan("800,000.00"), category="business", date=D(2026, 1, 10), voucher="ZC-002", actor=ACTOR),
        lambda s: spend(s, project=JM, lane=None, amount_fen=yuan("300,000.00"), category="business", date=D(2026, 2, 1), voucher="PZ-0002",
                        actor=ACTOR, counterparty="某材料公司"),
        lambda s: contribute(s, project=JM, amount_fen=yuan("500,000.00"), category="labour", date=D(2026, 3, 1), voucher="ZC-003", actor=ACTOR),
        lambda s: spend(s, project=JM, lane=None, amount_fen=yuan("150,000.00"), category="labour", date=D(2026, 4, 1), voucher="PZ-0003",
                        actor=ACTOR, counterparty="项目组劳务"),
        lambda s: extend(s, project=JM, months=12, date=D(2026, 5, 1), reference="江科〔2026〕12号", voucher="EXT-JM-1", actor=ACTOR),
        lambda s: terminate(s, project=JM, date=D(2026, 9, 1), reference="江科〔2026〕88号", voucher="ZZ-JM-1", actor=ACTOR,
                            misused=[Misuse("PZ-0002", yuan("50,000.00"))]),
        lambda s: collect(s, project=JM, lane=None, amount_fen=yuan("500,000.00"), date=D(2026, 10, 15), voucher="JK-2026-31", actor=ACTOR),
        lambda s: write_off(s, project=JM, lane=None, amount_fen=yuan("20,000.00"), date=D(2026, 12, 1), reason="部分款项无法收回",
                            approval="江财〔2026〕7号", voucher="HX-JM-1", actor=ACTOR),
    ]
    for step in steps:
        with session_factory() as s:
            step(s)


def build_urumqi(session_factory) -> None:
    """UR2025-011: contract 300万 (ceiling 120万); cash 100万 + 80万0.01 + 30万, equity 50万,
    in kind 20万; the interim tranche releases what is payable then."""
    with session_factory() as s:
        urumqi_world(s)
        approve(s, UR_APPROVAL)
    steps = [
        lambda s: pledge(s, project=UR, amount_fen=yuan("200万"), date=D(2025, 6, 25), voucher="CN-UR-1", actor=ACTOR),
        lambda s: contribute(s, project=UR, amount_fen=yuan("1,000,000.00"), category="equipment", date=D(2025, 8, 15), voucher="ZC-UR-1", actor=ACTOR),
        lambda s: record_stage(s, project=UR, stage="contract_signed", passed=True, date=D(2025, 7, 5), voucher="HT-UR2025-011", actor=ACTOR,
                               reference="乌科合〔2025〕011号"),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("1,000,000.00"), form="cash", date=D(2025, 7, 10), voucher="FK-UR-1", actor=ACTOR),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("500,000.00"), form="equity", date=D(2025, 8, 1), voucher="GQ-UR-1", actor=ACTOR),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("200,000.00"), form="in_kind", date=D(2025, 9, 1), voucher="SW-UR-1", actor=ACTOR),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("800,000.01"), form="cash", date=D(2025, 10, 1), voucher="FK-UR-2", actor=ACTOR),
        lambda s: release(s, project=UR, lane=None, date=D(2025, 11, 1), voucher="BK-UR-1", actor=ACTOR),
        lambda s: bid_pay(s, project=UR, lane=None, amount_fen=yuan("300,000.00"), form="cash", date=D(2026, 1, 15), voucher="FK-UR-3", actor=ACTOR),
    ]
    for step in steps:
        with session_factory() as s:
            step(s)


def build_ledger(session_factory) -> None:
    build_jiangmen(session_factory)
    build_urumqi(session_factory)
