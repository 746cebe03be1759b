"""Shared helpers for the programme tests: parties, approvals, refusals that write nothing.

The helpers talk to the same services and CLI an officer uses; the only independent piece is
``subsidy_fen``, which recomputes Urumqi's 40% in integer arithmetic so the tests do not
borrow the code they check.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from ledger.core.errors import Refusal
from ledger.core.money import format_fen, parse_fen
from ledger.programme import (
    BALANCE_KEYS,
    ApprovalInput,
    PartyInput,
    PartyYearInput,
    appropriate,
    approve_project,
    register_party,
    update_party,
)

D = dt.date
DAY = dt.timedelta(days=1)
FEN = 1
ACTOR = "officer-test"

yuan = parse_fen  # "3,000,000.00" or "300万" -> fen


# --- parties (every code passes the GB 32100-2015 check) ---------------------------------

JM_DEMAND = "91440700MA51A00018"  # 江门 leading firm, revenue above 5亿
JM_UNIVERSITY = "12440700MB2C000120"  # 五邑大学-like public university
JM_FIRM = "91440700MA51A0002B"
JM_INSTITUTE = "52440700MJ00000132"  # private non-profit institute
JM_OTHER = ("91440700MA51A0003E", "91440700MA51A0004H", "91440700MA51A0005L")  # spare demand sides
UR_DEMAND = "91650100MA7B00011L"
UR_SOLVER = "12650100MB1D000220"
UR_SOLVER_2 = "91650100MA7B00023U"
UR_SOLVER_3 = "91650100MA7B00030K"
UR_SOLVER_4 = "91650100MA7B00040L"
LEGACY_FUJIAN = "91350100M0001TGQXM"  # a real early pilot code whose check character is wrong


def spare_uscc(region: str, n: int) -> str:
    """The n-th made-up firm (91…) registered in a region (GB/T 2260 code), with a valid check."""
    from funding_rules.uscc import check_digit

    body = f"91{region}MA{n:07d}"
    return body + check_digit(body)


# --- money ------------------------------------------------------------------------------


def subsidy_fen(cash_fen: int, contracted_fen: int) -> int:
    """Urumqi's subsidy, independently: round_half_up(0.40 × cash), capped at 0.40 × contract.

    0.40 × n fen = 4n/10; adding 5 before the floor division rounds half up for n >= 0.
    """
    return min((4 * cash_fen + 5) // 10, (4 * contracted_fen + 5) // 10)


def zero_balances() -> dict[str, str]:
    """The balances contract with every one of its 20 keys at 0.00."""
    return {key: "0.00" for key in BALANCE_KEYS}


def balances_of(**amounts: str | int) -> dict[str, str]:
    """The full contract: 0.00 everywhere except the amounts given (yuan text or fen)."""
    unknown = set(amounts) - set(BALANCE_KEYS)
    assert not unknown, f"not balance keys: {unknown}"
    return zero_balances() | {k: v if isinstance(v, str) else format_fen(v) for k, v in amounts.items()}


# --- database state ---------------------------------------------------------------------

COUNTED_TABLES = (
    "journal_entries",
    "postings",
    "accounts",
    "project_events",
    "parties",
    "party_relations",
    "projects",
    "lanes",
    "tranches",
)


def table_counts(engine) -> dict[str, int]:
    """Rows in every table an event can write, read with plain SQL."""
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in COUNTED_TABLES}


def entry_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM journal_entries")).scalar_one()


def unbalanced_entries(conn) -> list[tuple]:
    """(entry, book, sum) for every entry that does not balance within a book; [] when sound."""
    return list(
        conn.execute(
            text(
                "SELECT entry_id, book, SUM(amount_fen) FROM postings "
                "GROUP BY entry_id, book HAVING SUM(amount_fen) <> 0 ORDER BY entry_id"
            )
        ).all()
    )


def traces(engine, kind: str, project: str | None = None) -> list[dict]:
    """The calculation traces of one kind of entry, in chain order."""
    query = "SELECT trace FROM journal_entries WHERE kind = :kind"
    params = {"kind": kind}
    if project:
        query += " AND project_code = :project"
        params["project"] = project
    with engine.connect() as conn:
        rows = conn.execute(text(query + " ORDER BY id"), params).scalars().all()
    return [json.loads(row) if row else {} for row in rows]


# --- services: build a world and expect refusals ----------------------------------------


def add_party(session, uscc: str, name: str, **details) -> None:
    """Register a party; with ``above_scale`` its 2024 facts (revenue, R&D ratio, 规模以上) are
    recorded too, as ``party update`` does, for approvals in 2025 to read."""
    above_scale = details.pop("above_scale", None)
    register_party(session, PartyInput(uscc=uscc, name=name, date=D(2025, 1, 2), **details), actor=ACTOR)
    if above_scale is not None:
        update_party(session, PartyYearInput(uscc=uscc, year=2024, revenue_fen=details.get("revenue_fen"),
                                             rnd_intensity=details.get("rnd_intensity"), above_scale=above_scale,
                                             date=D(2025, 1, 3)), actor=ACTOR)


def add_budget(session, amount: str = "50,000,000.00", year: int = 2025) -> None:
    appropriate(session, year=year, amount_fen=yuan(amount), date=D(year, 1, 10), voucher=None, actor=ACTOR)


JM_APPROVAL = ApprovalInput(
    code="JM2025-003",
    name="高端装备运动控制器",
    city="jiangmen",
    category="tech_breakthrough",
    mode="jbgs",
    demand_uscc=JM_DEMAND,
    solver_usccs=(JM_UNIVERSITY,),
    total_investment_fen=yuan("8,000,000.00"),
    approval_date=D(2025, 9, 20),
    start_date=D(2025, 10, 1),
    end_date=D(2028, 9, 30),
    approved_grant_fen=yuan("3,000,000.00"),
)

UR_APPROVAL = ApprovalInput(
    code="UR2025-011",
    name="光伏组件智能运维",
    city="urumqi",
    category="commercialization",
    mode="jbgs",
    demand_uscc=UR_DEMAND,
    solver_usccs=(UR_SOLVER,),
    total_investment_fen=yuan("8,000,000.00"),
    approval_date=D(2025, 6, 20),
    start_date=D(2025, 7, 1),
    end_date=D(2027, 6, 30),
    bid_contract_fen=(yuan("3,000,000.00"),),
)


def jm_approval(**changes) -> ApprovalInput:
    return replace(JM_APPROVAL, **changes)


def ur_approval(**changes) -> ApprovalInput:
    return replace(UR_APPROVAL, **changes)


def jiangmen_world(session) -> None:
    """The Jiangmen parties of most tests and a 5000万 appropriation for 2025."""
    add_party(session, JM_DEMAND, "江门市某智能装备有限公司", revenue_fen=yuan("600,000,000.00"))
    add_party(session, JM_UNIVERSITY, "五邑某大学", kind="university")
    add_party(session, JM_FIRM, "江门市某科技有限公司")
    add_party(session, JM_INSTITUTE, "江门某民办研究院", kind="institute")
    add_budget(session)


def urumqi_world(session) -> None:
    """The Urumqi parties of most tests and a 5000万 appropriation for 2025."""
    add_party(session, UR_DEMAND, "新疆某光伏有限公司")
    add_party(session, UR_SOLVER, "新疆某大学", kind="university")
    add_party(session, UR_SOLVER_2, "乌鲁木齐某科技有限公司")
    add_party(session, UR_SOLVER_3, "乌鲁木齐某软件有限公司")
    add_party(session, UR_SOLVER_4, "乌鲁木齐某自动化有限公司")
    add_budget(session)


def approve(session, spec: ApprovalInput):
    return approve_project(session, spec, actor=ACTOR)


def refuses(engine, session_factory, action: Callable, code: str) -> Refusal:
    """Run ``action(session)``, expect a Refusal with ``code`` in one line, and commit anyway:
    "nothing written" is then a property of the service, not of a rollback."""
    before = table_counts(engine)
    with session_factory() as session, pytest.raises(Refusal) as caught:
        action(session)  # the refusal is caught inside the transaction, which then commits
    refusal = caught.value
    assert refusal.code == code, f"refused with {refusal.code}: {refusal.message}"
    assert refusal.message.strip() and "\n" not in refusal.message, refusal.message
    assert table_counts(engine) == before, "a refused event wrote rows"
    return refusal


def accepts(engine, session_factory, action: Callable, entries: int = 1):
    """Run ``action(session)`` in its own transaction and check it wrote ``entries`` entries."""
    before = entry_count(engine)
    with session_factory() as session:
        result = action(session)
    assert entry_count(engine) == before + entries
    return result


# --- the CLI ----------------------------------------------------------------------------


def cli_refused(cli, engine, *args: str, says: str | tuple[str, ...] = ()) -> str:
    """Run a verb that must be refused: exit 1, one line on stderr naming the rule, nothing written."""
    before = table_counts(engine)
    result = cli(*args, expect=1)  # the Cli fixture also checks: one line, no traceback
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line, result.stderr
    for phrase in (says,) if isinstance(says, str) else says:
        assert phrase in line, f"{phrase!r} not in {line!r}"
    assert table_counts(engine) == before, f"jiebang {' '.join(args)} was refused but wrote rows"
    return line


def cli_balances(cli, code: str, *, lane: str | None = None, as_of: str | None = None) -> dict[str, str]:
    args = ["balances", "--project", code, "--format", "json"]
    if lane:
        args += ["--lane", lane]
    if as_of:
        args += ["--as-of", as_of]
    data = json.loads(cli(*args).stdout)
    assert tuple(data) == BALANCE_KEYS
    return data


def cli_show(cli, code: str) -> dict:
    return json.loads(cli("project", "show", code, "--format", "json").stdout)


def tranche_statuses(shown: dict) -> dict[tuple[str, int], str]:
    return {(t["lane"], t["seq"]): t["status"] for t in shown["tranches"]}


def assert_verified(cli) -> None:
    result = cli("verify")
    assert result.stdout.startswith("OK: "), result.stdout


def bean_check_command() -> list[str]:
    """bean-check as installed with this interpreter (beside it, as in a virtualenv that is
    not activated), else on PATH, else beancount's module."""
    beside = Path(sys.executable).parent / "bean-check"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [shutil.which("bean-check")] if shutil.which("bean-check") else [sys.executable, "-m", "beancount.scripts.check"]


def bean_check(path: Path) -> None:
    """Run bean-check on an exported file; it prints nothing and exits 0 on a sound ledger."""
    done = subprocess.run([*bean_check_command(), str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"bean-check {path.name} failed:\n{done.stdout}{done.stderr}"
    assert done.stdout.strip() == "" and done.stderr.strip() == "", done.stdout + done.stderr


def export_and_bean_check(cli, out_dir: Path) -> list[Path]:
    cli("export", "beancount", "--out", str(out_dir))
    paths = sorted(out_dir.glob("*.beancount"))
    assert [p.name for p in paths] == ["fiscal.beancount", "memo.beancount"]
    for path in paths:
        bean_check(path)
    return paths
