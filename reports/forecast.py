"""The budget exposure forecast: the releases the programme will need by fiscal year if every
condition is met on time, the clawbacks expected back, and a seeded Monte Carlo of the same
under a scenario of mid-term failures, terminations, 赛马 eliminations and delays.

The module has three layers, each usable without the next:

1. *Plans* (``ProjectPlan``): what is still to be released on each active project and lane as
   of a date, read from the ledger in a handful of grouped queries (``read_plans``) or from a
   pipeline file of projects not yet approved (``load_pipeline``).
2. *Flows* (``schedule``): pure functions turn plans into dated amounts — a Jiangmen tranche
   on the expected date of its conditions, an Urumqi subsidy spread evenly over the remaining
   period — and into plain numpy arrays (``SimInput``).
3. *Simulation* (``simulate``): vectorised draws of shape (runs, projects) over those arrays;
   no Python loop runs per draw per project. The draws come from one seeded generator in a
   fixed order and blocks of a fixed size, so the same seed gives the same numbers.

Amounts are whole fen throughout. Percentiles are nearest-rank (a value some run produced,
never an interpolation) and means are rounded half up to the fen in integer arithmetic.

Timing assumptions, each a scenario key under ``[schedule]`` (domain-facts §1 J11, §9):
the contract is signed ``contract_offset_days`` (30) after approval unless recorded; the
mid-term check (and the 赛马 stage assessment) falls at the half-way point of the period,
extensions included, unless recorded; acceptance comes ``acceptance_months_after_end`` after
the period ends (default: the project's rules, ``closure.acceptance_apply_within_months``);
a condition whose expected date has passed unrecorded is expected on the as-of date. A
pipeline project given only its round (``round = 2027``) is approved on ``round_approval``
(09-30: J11 puts 立项 in September and 下达计划 in October).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import stat
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from funding_rules import checks
from funding_rules.loader import Rules, get_rules, rules_in_force
from ledger.core.errors import Refusal
from ledger.core.models import Account, JournalEntry, Posting
from ledger.core.money import parse_fen
from ledger.programme import chart, pinned_rules, project_folds
from ledger.programme.fold import ProjectFold
from ledger.programme.models import Lane, Project, Tranche

RUNS_MAX = 100_000
YEARS_MAX = 30
DELAY_DAYS_MAX = 3_650
OFFSET_DAYS_MAX = 3_650
ACCEPTANCE_MONTHS_MAX = 120
# Runs are simulated in blocks of this many; a constant, never derived from the machine, so
# the stream of random numbers (and the result) never depends on where the forecast runs.
BLOCK_RUNS = 100
NEVER = 2**30  # a day offset later than any flow: "this event does not happen"
# Exactness: per-run sums go through float64 bincounts, exact for integers below 2**53.
FLOAT_EXACT_FEN = 2**53
PERCENTILES = (10, 50, 90, 95)

# When a condition is satisfied, in stage order: a flow waiting on a later stage is exposed to
# more risks (a failed mid-term check or stage assessment cancels stage-1 and stage-2 flows).
CONDITION_STAGE = MappingProxyType({
    "approved": 0,
    "contract_signed": 0,
    "first_bid_payment": 0,
    "midterm_passed": 1,
    "stage_passed": 1,
    "acceptance_passed": 2,
    "audit_report_received": 2,
})
MODE_ALIASES = MappingProxyType({"jbgs": "jbgs", "揭榜挂帅": "jbgs", "saima": "saima", "赛马": "saima"})
CATEGORY_ALIASES = MappingProxyType({
    "tech_breakthrough": "tech_breakthrough", "技术攻关": "tech_breakthrough",
    "commercialization": "commercialization", "成果转化": "commercialization",
})
SUBSIDY_RELEASES = ("as_earned", "at_tranches")


# --- the scenario -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Timing assumptions and the probabilities of what goes wrong.

    Attributes:
      name / description: what the scenario is called, printed beside the chart.
      contract_offset_days: days from approval to the contract when it is not recorded.
      acceptance_months_after_end: months from the period end to acceptance; None takes each
        project's rules (closure.acceptance_apply_within_months).
      subsidy_release: "as_earned" (the Urumqi subsidy leaves as the bid is paid, spread
        evenly over the remaining period) or "at_tranches" (it waits for the rules' subsidy
        tranches: what is earned by the interim tranche's date then, the rest at acceptance).
      round_approval: (month, day) a pipeline project given only its round is approved on.
      midterm_failure_rate: probability that a pending mid-term check fails; the project's
        stage-1 and later flows, and its flows after the mid-term date, are cancelled.
      termination_rate: probability that a project is terminated.
      termination_timing: (low, high) fractions of the remaining period (from the later of
        the as-of and approval dates to the period end); the date is drawn uniformly between.
      saima_survivors: lanes in the race -> lanes that pass the stage assessment; a race size
        not listed keeps every lane (the worst case for the budget, domain-facts §8).
      delay_days / delay_probabilities: a discrete distribution of how late a project's
        releases come (one draw per project and run, shifting all its releases).
      collected_share: the share of each outstanding clawback that is collected (each
        clawback is collected whole with this probability).
      source: the file it came from, or None for the default.
    """

    name: str = "on time"
    description: str = "every condition met on its expected date; nothing fails, nothing is late"
    contract_offset_days: int = 30
    acceptance_months_after_end: int | None = None
    subsidy_release: str = "as_earned"
    round_approval: tuple[int, int] = (9, 30)
    midterm_failure_rate: float = 0.0
    termination_rate: float = 0.0
    termination_timing: tuple[float, float] = (0.0, 1.0)
    saima_survivors: Mapping[int, int] = field(default_factory=dict)
    delay_days: tuple[int, ...] = (0,)
    delay_probabilities: tuple[float, ...] = (1.0,)
    collected_share: float = 1.0
    source: str | None = None

    def assumptions_zh(self) -> list[tuple[str, str]]:
        """The assumptions as a reader of the PDF and workbook sees them: Chinese names, the
        modes as 揭榜挂帅/赛马, the scenario file by its name only (never a path on the machine
        that made the report). ``assumptions`` keeps the scenario file's keys for JSON."""
        survivors = "；".join(f"{n} 条赛道保留 {s} 条" for n, s in sorted(self.saima_survivors.items())) or "全部保留"
        delays = "；".join(f"{d} 天：{p:g}" for d, p in zip(self.delay_days, self.delay_probabilities))
        release = {"as_earned": "随计提拨付（在剩余实施期内均匀拨付）", "at_tranches": "按补助期次拨付"}
        return [
            ("情景名称", self.name),
            ("情景说明", self.description),
            ("情景文件", Path(self.source).name if self.source else "无（按期拨付计划）"),
            ("立项至签订合同（天）", str(self.contract_offset_days)),
            ("实施期满至验收（月）",
             "按项目所适用规则" if self.acceptance_months_after_end is None else str(self.acceptance_months_after_end)),
            ("补助拨付方式", release.get(self.subsidy_release, self.subsidy_release)),
            ("按批次立项的储备项目立项日（月-日）", f"{self.round_approval[0]:02d}-{self.round_approval[1]:02d}"),
            ("中期检查未通过的概率", f"{self.midterm_failure_rate:g}"),
            ("项目终止的概率", f"{self.termination_rate:g}"),
            ("终止时点（占剩余实施期）", f"{self.termination_timing[0]:g}–{self.termination_timing[1]:g}"),
            ("赛马阶段考核后保留的赛道", survivors),
            ("拨付延迟（天：概率）", delays),
            ("追回款收回比例", f"{self.collected_share:g}"),
        ]

    def assumptions(self) -> list[tuple[str, str]]:
        """(key, value) pairs an officer reads beside the chart, in file order."""
        survivors = ", ".join(f"{n} lanes → {s}" for n, s in sorted(self.saima_survivors.items())) or "every lane passes"
        delays = ", ".join(f"{d} d: {p:g}" for d, p in zip(self.delay_days, self.delay_probabilities))
        return [
            ("scenario", self.name),
            ("description", self.description),
            ("file", self.source or "(none: the on-time schedule)"),
            ("schedule.contract_offset_days", str(self.contract_offset_days)),
            ("schedule.acceptance_months_after_end",
             "per the project's rules" if self.acceptance_months_after_end is None else str(self.acceptance_months_after_end)),
            ("schedule.subsidy_release", self.subsidy_release),
            ("schedule.round_approval", f"{self.round_approval[0]:02d}-{self.round_approval[1]:02d}"),
            ("midterm.failure_rate", f"{self.midterm_failure_rate:g}"),
            ("termination.rate", f"{self.termination_rate:g}"),
            ("termination.timing", f"{self.termination_timing[0]:g}–{self.termination_timing[1]:g} of the remaining period"),
            ("saima.survivors", survivors),
            ("delay", delays),
            ("recoveries.collected_share", f"{self.collected_share:g}"),
        ]


def _scenario_refusal(path: Path, key: str, reason: str) -> Refusal:
    return Refusal("scenario_must_be_valid", f"scenario {path.name}: {key}: {reason}.")


def _probability(path: Path, key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise _scenario_refusal(path, key, f"{raw!r} is not a probability; write a number from 0 to 1 such as 0.1")
    if not 0 <= raw <= 1:
        raise _scenario_refusal(path, key, f"probability {raw} is outside [0, 1]")
    return float(raw)


def _whole(path: Path, key: str, raw: Any, *, upper: int, unit: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _scenario_refusal(path, key, f"{raw!r} is not a whole number of {unit}")
    if raw < 0:
        raise _scenario_refusal(path, key, f"{raw} {unit} is negative; delays and offsets must be 0 or more")
    if raw > upper:
        raise _scenario_refusal(path, key, f"{raw} {unit} is more than the limit of {upper}")
    return raw


def _month_day(path: Path, key: str, raw: Any) -> tuple[int, int]:
    try:
        month, day = (int(part) for part in str(raw).split("-"))
        dt.date(2001, month, day)  # a common year: 02-29 is refused, it would not exist most years
    except ValueError:
        raise _scenario_refusal(path, key, f"{raw!r} is not a month-day such as \"09-30\"") from None
    return month, day


def _timing(path: Path, key: str, raw: Any) -> tuple[float, float]:
    values = raw if isinstance(raw, list) else [raw, raw]
    if len(values) != 2:
        raise _scenario_refusal(path, key, "give one fraction or [low, high], fractions of the remaining period")
    low, high = (_probability(path, key, v) for v in values)
    if low > high:
        raise _scenario_refusal(path, key, f"low {low} is above high {high}")
    return low, high


def _survivors(path: Path, key: str, raw: Any) -> dict[int, int]:
    if not isinstance(raw, dict):
        raise _scenario_refusal(path, key, "write a table of lanes in the race = lanes that survive, e.g. { 3 = 1 }")
    result = {}
    for lanes_text, survivors in raw.items():
        if not str(lanes_text).isdigit() or int(lanes_text) < 2:
            raise _scenario_refusal(path, f"{key}.{lanes_text}", "a race has 2 or more lanes; key the table by that number")
        lanes = int(lanes_text)
        if isinstance(survivors, bool) or not isinstance(survivors, int) or survivors < 0:
            raise _scenario_refusal(path, f"{key}.{lanes}", f"{survivors!r} is not a count of surviving lanes")
        if survivors > lanes:
            raise _scenario_refusal(path, f"{key}.{lanes}", f"{survivors} surviving lanes is more than the {lanes} lanes in the race")
        result[lanes] = survivors
    return result


SCENARIO_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "scenario": ("name", "description"),
    "schedule": ("contract_offset_days", "acceptance_months_after_end", "subsidy_release", "round_approval"),
    "midterm": ("failure_rate",),
    "termination": ("rate", "timing"),
    "saima": ("survivors",),
    "delay": ("days", "probabilities"),
    "recoveries": ("collected_share",),
})


SCENARIO_BYTES_MAX = 1 << 20  # a scenario is a page of settings
PIPELINE_BYTES_MAX = 16 << 20  # a pipeline lists projects: thousands, not millions


def _read_user_file(path: Path, what: str, missing, refused, limit: int, encoding: str) -> str:
    """A scenario or pipeline file's text, read only when it is a regular file under ``limit``
    bytes: a FIFO named x.toml must not hang the forecast, nor a huge file exhaust it.
    ``missing`` and ``refused`` make the caller's refusals from a message."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise missing(f"{what} file {path} does not exist; check the path.") from None
    if not stat.S_ISREG(info.st_mode):
        raise refused(f"{what} file {path} is not a regular file; give the path of a .toml or .csv file.")
    if info.st_size > limit:
        raise refused(f"{what} file {path} is {info.st_size:,} bytes, over the {limit:,}-byte limit; check the file.")
    with path.open("rb") as handle:  # a regular file: opening cannot block
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise refused(f"{what} file {path} grew past the {limit:,}-byte limit while read; check the file.")
    return raw.decode(encoding)


def _toml(text: str) -> dict:
    """tomllib's parse; a document nested past Python's recursion limit is a decode error too."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError("nested too deeply (a scenario or pipeline nests a few levels)") from None


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file; the first problem is refused in one line."""
    path = Path(path)
    try:
        data = _toml(_read_user_file(
            path, "scenario", lambda m: Refusal("scenario_file_must_exist", m),
            lambda m: Refusal("scenario_file_must_be_a_small_regular_file", m), SCENARIO_BYTES_MAX, "utf-8",
        ))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise Refusal("scenario_must_be_valid", f"scenario {path.name} is not valid TOML: {detail}.") from None
    for section, table in data.items():
        if section not in SCENARIO_KEYS:
            raise _scenario_refusal(path, section, f"unknown section; known sections are {', '.join(SCENARIO_KEYS)}")
        if not isinstance(table, dict):
            raise _scenario_refusal(path, section, "must be a table ([section] with keys)")
        for key in table:
            if key not in SCENARIO_KEYS[section]:
                raise _scenario_refusal(path, f"{section}.{key}", f"unknown key; known keys are {', '.join(SCENARIO_KEYS[section])}")
    get = lambda section, key: data.get(section, {}).get(key)
    values: dict[str, Any] = {"source": str(path), "name": path.stem, "description": ""}
    for key in ("name", "description"):
        if get("scenario", key) is not None:
            if not isinstance(get("scenario", key), str):
                raise _scenario_refusal(path, f"scenario.{key}", "must be text")
            values[key] = get("scenario", key).strip()
    if get("schedule", "contract_offset_days") is not None:
        values["contract_offset_days"] = _whole(path, "schedule.contract_offset_days", get("schedule", "contract_offset_days"),
                                                upper=OFFSET_DAYS_MAX, unit="days")
    if get("schedule", "acceptance_months_after_end") is not None:
        values["acceptance_months_after_end"] = _whole(path, "schedule.acceptance_months_after_end",
                                                       get("schedule", "acceptance_months_after_end"),
                                                       upper=ACCEPTANCE_MONTHS_MAX, unit="months")
    if get("schedule", "subsidy_release") is not None:
        if get("schedule", "subsidy_release") not in SUBSIDY_RELEASES:
            raise _scenario_refusal(path, "schedule.subsidy_release", f"{get('schedule', 'subsidy_release')!r} is not one of {', '.join(SUBSIDY_RELEASES)}")
        values["subsidy_release"] = get("schedule", "subsidy_release")
    if get("schedule", "round_approval") is not None:
        values["round_approval"] = _month_day(path, "schedule.round_approval", get("schedule", "round_approval"))
    if get("midterm", "failure_rate") is not None:
        values["midterm_failure_rate"] = _probability(path, "midterm.failure_rate", get("midterm", "failure_rate"))
    if get("termination", "rate") is not None:
        values["termination_rate"] = _probability(path, "termination.rate", get("termination", "rate"))
    if get("termination", "timing") is not None:
        values["termination_timing"] = _timing(path, "termination.timing", get("termination", "timing"))
    if get("saima", "survivors") is not None:
        values["saima_survivors"] = MappingProxyType(_survivors(path, "saima.survivors", get("saima", "survivors")))
    if get("recoveries", "collected_share") is not None:
        values["collected_share"] = _probability(path, "recoveries.collected_share", get("recoveries", "collected_share"))
    days, probabilities = get("delay", "days"), get("delay", "probabilities")
    if (days is None) != (probabilities is None):
        raise _scenario_refusal(path, "delay", "give both days and probabilities, one probability per delay")
    if days is not None:
        if not isinstance(days, list) or not isinstance(probabilities, list) or not days:
            raise _scenario_refusal(path, "delay", "days and probabilities must be lists, e.g. days = [0, 90], probabilities = [0.7, 0.3]")
        if len(days) != len(probabilities):
            raise _scenario_refusal(path, "delay", f"{len(days)} delays but {len(probabilities)} probabilities")
        parsed_days = tuple(_whole(path, "delay.days", d, upper=DELAY_DAYS_MAX, unit="days") for d in days)
        parsed_p = tuple(_probability(path, "delay.probabilities", p) for p in probabilities)
        if abs(sum(parsed_p) - 1) > 1e-9:
            raise _scenario_refusal(path, "delay.probabilities", f"they add up to {sum(parsed_p):g}, not 1")
        values["delay_days"], values["delay_probabilities"] = parsed_days, parsed_p
    return Scenario(**values)


# --- plans: what is still to be released -------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingTranche:
    """A tranche neither released nor cancelled, with the conditions it still waits on."""

    seq: int
    name: str
    basis: str
    amount_fen: int
    unmet: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LanePlan:
    """One active lane.

    Attributes:
      tranches: its pending tranches in rules order.
      subsidy_payable_fen: subsidy earned and not released (bid-subsidy rules).
      subsidy_future_fen: subsidy still to be earned if the unpaid contracted bid is paid in
        cash: round_half_up(rate × (cash paid + unpaid)) capped at the contract ceiling, less
        what is earned (checks.subsidy_due), and never more than the unreleased obligation.
      unreleased_fen: the lane's obligation not yet released.
    """

    lane_no: int
    tranches: tuple[PendingTranche, ...]
    subsidy_payable_fen: int = 0
    subsidy_future_fen: int = 0
    unreleased_fen: int = 0


@dataclass(frozen=True, slots=True)
class ProjectPlan:
    """A project as the forecast sees it on the as-of date.

    Attributes:
      source: "ledger" or "pipeline".
      end_date: the period end with approved extensions.
      lanes: active lanes (not eliminated); empty once terminated.
      racing: a 赛马 stage assessment is still to come among these lanes.
      clawback_outstanding_fen: clawbacks assessed and not collected or written off.
    """

    code: str
    name: str
    city: str
    category: str
    mode: str
    source: str
    funding_model: str
    approval_date: dt.date
    start_date: dt.date
    end_date: dt.date
    acceptance_months: int
    lanes: tuple[LanePlan, ...]
    racing: bool
    terminated: bool = False
    clawback_outstanding_fen: int = 0


def read_plans(session: Session, as_of: dt.date, *, city: str | None = None) -> list[ProjectPlan]:
    """Every project approved by ``as_of`` (of one city, if given) as of that date, in code
    order, from grouped queries. Events are folded by ``ledger.programme.fold.fold_project``, as for
    every service and report (a reversal counts from its own value date)."""
    projects_q = select(Project.code).where(Project.approval_date <= as_of)
    if city:
        projects_q = projects_q.where(Project.city == city)
    chosen = projects_q
    projects = session.scalars(select(Project).where(Project.code.in_(chosen)).order_by(Project.code)).all()
    if not projects:
        return []
    lanes: dict[str, dict[int, str]] = {}
    for code, lane_no, solver in session.execute(
        select(Lane.project_code, Lane.lane_no, Lane.solver_uscc).where(Lane.project_code.in_(chosen)).order_by(Lane.project_code, Lane.lane_no)
    ):
        lanes.setdefault(code, {})[lane_no] = solver
    tranches: dict[str, list[Tranche]] = {}
    for t in session.scalars(select(Tranche).where(Tranche.project_code.in_(chosen)).order_by(Tranche.project_code, Tranche.lane_no, Tranche.seq)):
        tranches.setdefault(t.project_code, []).append(t)
    folds = project_folds(session, list(projects), as_of)
    sums: dict[tuple[str, str | None], dict[str, int]] = {}
    for code, lane_uscc, name, amount in session.execute(
        select(Account.project_code, Account.lane, Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(Posting, Posting.account_id == Account.id)
        .where(Account.project_code.in_(chosen), Posting.value_date <= as_of)
        .group_by(Account.project_code, Account.lane, Account.name)
    ):
        family = chart.family_of(name)
        if family is not None:
            bucket = sums.setdefault((code, lane_uscc), {})
            bucket[family] = bucket.get(family, 0) + int(amount)
    return [_plan_from_ledger(p, lanes.get(p.code, {}), tranches.get(p.code, []), folds[p.code], sums) for p in projects]


def _plan_from_ledger(project: Project, lanes: dict[int, str], tranches: list[Tranche], fold: ProjectFold, sums) -> ProjectPlan:
    rules = pinned_rules(project)
    clawback = sum(sums.get((project.code, uscc), {}).get("clawback_receivable", 0) for uscc in lanes.values())
    active = [] if fold.terminated_on is not None or fold.closed_on is not None else [n for n in sorted(lanes) if n not in fold.eliminated]
    lane_plans = []
    for n in active:
        met = fold.met(n)
        pending = tuple(
            PendingTranche(t.seq, t.name, t.basis, t.amount_fen, tuple(c for c in json.loads(t.conditions) if c not in met))
            for t in tranches if t.lane_no == n and t.id not in fold.released_tranches
        )
        s = sums.get((project.code, lanes[n]), {})
        unreleased = s.get("grant_unreleased", 0)
        payable = future = 0
        if rules.funding.model == "bid_subsidy" and any(t.basis == "subsidy_earned" for t in pending):
            payable = min(-s.get("subsidy_payable", 0), unreleased)
            cash, unpaid, contracted = s.get("bid_paid_cash", 0), s.get("bid_unpaid", 0), -s.get("bid_contracted", 0)
            due, _trace = checks.subsidy_due(cash + unpaid, contracted, s.get("subsidy_expense", 0), rules)
            future = max(0, min(due, unreleased - payable))
        lane_plans.append(LanePlan(n, pending, max(payable, 0), future, unreleased))
    racing = (
        project.mode == "saima" and len(active) >= 2 and not any("stage_passed" in fold.met(n) for n in active)
    )
    return ProjectPlan(
        code=project.code, name=project.name, city=project.city, category=project.category, mode=project.mode,
        source="ledger", funding_model=rules.funding.model, approval_date=project.approval_date,
        start_date=project.start_date, end_date=checks.add_months(project.end_date, fold.extension_months),
        acceptance_months=rules.closure.acceptance_apply_within_months, lanes=tuple(lane_plans), racing=racing,
        terminated=fold.terminated_on is not None, clawback_outstanding_fen=max(clawback, 0),
    )


# --- plans: the pipeline of projects not yet approved ------------------------------------

PIPELINE_KEYS = ("code", "name", "city", "mode", "category", "approval", "round", "start", "end", "period_months",
                 "grant", "lanes", "bids", "rules_version")


def load_pipeline(path: Path | str, *, as_of: dt.date, scenario: Scenario, taken_codes: Iterable[str] = ()) -> list[ProjectPlan]:
    """Planned projects from a TOML file (``[[project]]`` tables) or a CSV file (one row per
    project; several bids separated by ``;``), validated; the first problem is refused in one
    line naming the file, the project and the key. Nothing is written to the ledger."""
    path = Path(path)
    try:
        text = _read_user_file(
            path, "pipeline", lambda m: Refusal("pipeline_file_must_exist", m),
            lambda m: Refusal("pipeline_file_must_be_a_small_regular_file", m), PIPELINE_BYTES_MAX, "utf-8-sig",
        )
    except UnicodeDecodeError:
        raise Refusal("pipeline_must_be_valid", f"pipeline {path.name} is not UTF-8 text; save it as UTF-8 (CSV UTF-8 in Excel).") from None
    if path.suffix.lower() == ".csv":
        rows = _pipeline_csv(path, text)
    elif path.suffix.lower() == ".toml":
        try:
            data = _toml(text)
        except tomllib.TOMLDecodeError as exc:
            raise Refusal("pipeline_must_be_valid", f"pipeline {path.name} is not valid TOML: {' '.join(str(exc).split())}.") from None
        if set(data) - {"project"} or not isinstance(data.get("project", []), list):
            raise Refusal("pipeline_must_be_valid", f"pipeline {path.name}: write each planned project as a [[project]] table; nothing else is read.")
        rows = data.get("project", [])
    else:
        raise Refusal("pipeline_must_be_valid", f"pipeline {path.name}: give a .toml or .csv file.")
    taken = {c.upper() for c in taken_codes}
    plans = []
    for i, row in enumerate(rows, start=1):
        plan = _pipeline_project(path, i, row, as_of=as_of, scenario=scenario)
        if plan.code in taken:
            raise Refusal("pipeline_must_be_valid", f"pipeline {path.name}: project {i}: code {plan.code} is already used in the ledger or the file; give another code.")
        taken.add(plan.code)
        plans.append(plan)
    return plans


def _pipeline_csv(path: Path, text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    unknown = [c for c in reader.fieldnames or [] if c.strip() not in PIPELINE_KEYS]
    if unknown:
        raise Refusal("pipeline_must_be_valid", f"pipeline {path.name}: unknown column {unknown[0]!r}; columns are {', '.join(PIPELINE_KEYS)}.")
    rows = []
    for raw in reader:
        row: dict[str, Any] = {k.strip(): v.strip() for k, v in raw.items() if k and v is not None and v.strip()}
        if "bids" in row:
            row["bids"] = [b.strip() for b in row["bids"].split(";") if b.strip()]
        for key in ("lanes", "period_months", "round"):
            if key in row:
                row[key] = int(row[key]) if row[key].isdigit() else row[key]
        rows.append(row)
    return rows


def _pipeline_project(path: Path, i: int, row: Any, *, as_of: dt.date, scenario: Scenario) -> ProjectPlan:
    def refuse(key: str, reason: str) -> Refusal:
        return Refusal("pipeline_must_be_valid", f"pipeline {path.name}: project {i}: {key}: {reason}.")

    if not isinstance(row, dict):
        raise refuse("project", "must be a table of keys")
    for key in row:
        if key not in PIPELINE_KEYS:
            raise refuse(key, f"unknown key; known keys are {', '.join(PIPELINE_KEYS)}")

    def date_of(key: str) -> dt.date | None:
        value = row.get(key)
        if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise refuse(key, f"{value!r} is not a date (YYYY-MM-DD)") from None

    def whole(key: str, low: int, high: int) -> int | None:
        value = row.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise refuse(key, f"{value!r} is not a whole number in {low}..{high}")
        return value

    def amount(key: str, value: Any) -> int:
        if isinstance(value, (float, bool)):
            raise refuse(key, f"{value!r} must be written as text such as \"300万\" or \"3,000,000.00\"")
        try:
            fen = parse_fen(str(value) if isinstance(value, int) else value, field=key)
        except Refusal as refusal:
            raise refuse(key, refusal.message.rstrip(".")) from None
        if fen <= 0:
            raise refuse(key, "must be a positive amount")
        return fen

    city = str(row.get("city", "")).strip().lower()
    if not city:
        raise refuse("city", "is required (jiangmen, urumqi, ...)")
    mode = MODE_ALIASES.get(str(row.get("mode", "")).strip())
    if mode is None:
        raise refuse("mode", f"{row.get('mode')!r} is not jbgs (揭榜挂帅) or saima (赛马)")
    category = CATEGORY_ALIASES.get(str(row.get("category", "")).strip())
    if category is None:
        raise refuse("category", f"{row.get('category')!r} is not tech_breakthrough (技术攻关) or commercialization (成果转化)")
    approval, round_year = date_of("approval"), whole("round", 2000, 2100)
    if (approval is None) == (round_year is None):
        raise refuse("approval", "give the expected approval date, or the round year (approval then follows schedule.round_approval)")
    if approval is None:
        approval = dt.date(round_year, *scenario.round_approval)
    if approval < as_of:
        raise refuse("approval", f"{approval} is before the as-of date {as_of}; record an approved project in the ledger, or move the date")
    try:
        rules = get_rules(str(row["rules_version"])) if row.get("rules_version") else rules_in_force(city, approval)
    except Refusal as refusal:
        raise refuse("city", refusal.message.rstrip(".")) from None
    start = date_of("start") or approval
    end, months = date_of("end"), whole("period_months", 1, 12 * 10)
    if (end is None) == (months is None):
        raise refuse("end", "give the period end date or period_months, one of them")
    if end is None:
        end = checks.add_months(start, months) - dt.timedelta(days=1)
    if end <= start:
        raise refuse("end", f"{end} is not after the start {start}")
    try:
        code = chart.check_project_code(str(row.get("code") or f"PIPELINE-{i:03d}"))
    except Refusal as refusal:
        raise refuse("code", refusal.message.rstrip(".")) from None
    bids = row.get("bids", [])
    if not isinstance(bids, list):
        raise refuse("bids", "write a list, one contracted bid per lane")
    lanes = whole("lanes", 1, 20) or (len(bids) if bids else 1 if mode == "jbgs" else None)
    if lanes is None:
        raise refuse("lanes", "a 赛马 project needs the number of lanes (or one bid per lane)")
    a = rules.approval
    if mode == "jbgs" and lanes != a.jbgs_solvers:
        raise refuse("lanes", f"揭榜挂帅 has {a.jbgs_solvers} solver under {rules.version}, not {lanes}")
    if mode == "saima" and (lanes < a.saima_min_racers or (a.saima_max_racers is not None and lanes > a.saima_max_racers)):
        top = a.saima_max_racers if a.saima_max_racers is not None else "any number of"
        raise refuse("lanes", f"赛马 takes {a.saima_min_racers} to {top} lanes under {rules.version}, not {lanes}")
    conditions = lambda t: tuple(t.conditions_for(mode))
    if rules.funding.model == "staged_grant":
        if "grant" not in row:
            raise refuse("grant", f"{rules.version} pays an approved grant in tranches; give grant = \"300万\"")
        if bids:
            raise refuse("bids", f"{rules.version} pays an approved grant, not a bid subsidy; give grant only")
        grant = amount("grant", row["grant"])
        shares = checks.saima_lane_split(grant, lanes) if mode == "saima" else [grant]
        lane_plans = tuple(
            LanePlan(n, tuple(PendingTranche(seq, t.name, t.basis, part, ("approved", *conditions(t)))
                              for seq, (t, part) in enumerate(zip(rules.tranches, checks.tranche_amounts(share, rules)), start=1)),
                     unreleased_fen=share)
            for n, share in enumerate(shares, start=1)
        )
    else:
        if "grant" in row:
            raise refuse("grant", f"{rules.version} pays a subsidy on the cash bid, not a grant; give bids instead")
        if len(bids) != lanes:
            raise refuse("bids", f"{len(bids)} bid(s) for {lanes} lane(s); give one contracted bid per lane")
        lane_plans = []
        for n, bid in enumerate(bids, start=1):
            fen = amount("bids", bid)
            ceiling = checks.subsidy_ceiling_fen([fen], rules)
            future, _trace = checks.subsidy_due(fen, fen, 0, rules)
            pending = tuple(PendingTranche(seq, t.name, t.basis, 0, ("approved", *conditions(t)))
                            for seq, t in enumerate(rules.tranches, start=1))
            lane_plans.append(LanePlan(n, pending, 0, min(future, ceiling), ceiling))
        lane_plans = tuple(lane_plans)
    return ProjectPlan(
        code=code, name=str(row.get("name") or code), city=rules.city, category=category, mode=mode, source="pipeline",
        funding_model=rules.funding.model, approval_date=approval, start_date=start, end_date=end,
        acceptance_months=rules.closure.acceptance_apply_within_months, lanes=lane_plans, racing=mode == "saima",
    )


# --- the window: fiscal years as buckets of day offsets ----------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """The forecast's years. Bucket 0 holds what falls before ``from_year`` (only when the
    forecast starts after the as-of year), buckets 1..years the years, the last bucket what
    falls after them."""

    as_of: dt.date
    from_year: int
    years: int

    @property
    def edges(self) -> np.ndarray:
        """Day offsets from the as-of date of 1 January of each year, and of the year after."""
        return np.array([(dt.date(self.from_year + k, 1, 1) - self.as_of).days for k in range(self.years + 1)], dtype=np.int64)

    @property
    def buckets(self) -> int:
        return self.years + 2

    def label(self, b: int) -> str:
        if b == 0:
            return f"before {self.from_year}"
        if b == self.years + 1:
            return f"after {self.from_year + self.years - 1}"
        return str(self.from_year + b - 1)

    def year(self, b: int) -> int | None:
        return self.from_year + b - 1 if 1 <= b <= self.years else None

    def shown(self) -> list[int]:
        """Buckets a report prints: the years, the tail, and the head only when it can hold anything."""
        head = [0] if self.from_year > self.as_of.year else []
        return [*head, *range(1, self.years + 2)]

    def bucket_of(self, days: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, days, side="right")


def check_window(as_of: dt.date, from_year: int | None, years: int, *, as_of_given: bool, today: dt.date) -> Window:
    """The years to forecast, or a one-line refusal for a range in the past."""
    if not 1 <= years <= YEARS_MAX:
        raise Refusal("forecast_years_must_be_bounded", f"--years {years} is outside 1..{YEARS_MAX}; forecast at most {YEARS_MAX} years.")
    start = as_of.year if from_year is None else from_year
    if not 2000 <= start <= 2100:
        raise Refusal("forecast_years_must_be_plausible", f"--from {start} is outside 2000..2100.")
    if start < as_of.year:
        if as_of_given:
            raise Refusal("forecast_must_not_start_before_as_of",
                          f"--from {start} is before the as-of year {as_of.year}; a forecast as of {as_of} starts in {as_of.year} or later, "
                          f"so give an earlier --as-of to forecast {start}.")
        raise Refusal("forecast_past_years_need_as_of",
                      f"--from {start} is in the past (today is {today}); to see what the ledger forecast for {start}, "
                      f"give --as-of a date in or before {start} (a back-test).")
    return Window(as_of, start, years)


# --- flows: the deterministic schedule -----------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The deterministic schedule and the arrays the simulation draws over.

    Attributes:
      plans: the projects, indexed by the flows' ``project`` column.
      flows: one row per dated amount: project, code, lane_no, lane (global lane index),
        item, stage, t0 and t1 (day offsets from the as-of date; a point when equal, else the
        days [t0, t1) over which the amount is earned evenly), first and last date, amount_fen,
        bucket.
      cells: (city, category, mode) combinations, indexed by ``SimInput.project_cell``.
      sim: the arrays for ``simulate``.
    """

    window: Window
    scenario: Scenario
    plans: tuple[ProjectPlan, ...]
    flows: pd.DataFrame
    cells: tuple[tuple[str, str, str], ...]
    sim: SimInput


@dataclass(frozen=True)
class SimInput:
    """Plain arrays the Monte Carlo needs, and nothing else (the bench builds them directly).

    Flows (length F): flow_project, flow_lane, flow_stage, flow_t0, flow_t1 (day offsets,
    t1 == t0 for a point), flow_amount (fen). Projects (length P): project_cell, term_lo and
    term_hi (the termination window, day offsets), mid_day (the mid-term / stage date),
    midterm_at_risk, recoveries (clawback outstanding, fen). Lanes (length L): lane_project,
    race_size (lanes in its project's race, 0 when no race is pending). ``edges``: bucket
    edges as in ``Window.edges``; ``cells``: the number of cells.
    """

    flow_project: np.ndarray
    flow_lane: np.ndarray
    flow_stage: np.ndarray
    flow_t0: np.ndarray
    flow_t1: np.ndarray
    flow_amount: np.ndarray
    project_cell: np.ndarray
    term_lo: np.ndarray
    term_hi: np.ndarray
    mid_day: np.ndarray
    midterm_at_risk: np.ndarray
    recoveries: np.ndarray
    lane_project: np.ndarray
    race_size: np.ndarray
    edges: np.ndarray
    cells: int

    @property
    def flow_mid(self) -> np.ndarray:
        """The day a flow is bucketed by: the point, or the middle day of its interval."""
        return np.where(self.flow_t1 > self.flow_t0, self.flow_t0 + (self.flow_t1 - self.flow_t0 - 1) // 2, self.flow_t0)


def condition_date(condition: str, plan: ProjectPlan, scenario: Scenario) -> dt.date:
    """When a condition not yet recorded is expected, before clamping to the as-of date."""
    if condition == "approved":
        return plan.approval_date
    if condition in ("contract_signed", "first_bid_payment"):
        return plan.approval_date + dt.timedelta(days=scenario.contract_offset_days)
    if condition in ("midterm_passed", "stage_passed"):
        return midpoint(plan)
    if condition in ("acceptance_passed", "audit_report_received"):
        months = plan.acceptance_months if scenario.acceptance_months_after_end is None else scenario.acceptance_months_after_end
        return checks.add_months(plan.end_date, months)
    raise Refusal("forecast_condition_must_be_known", f"project {plan.code} waits on {condition!r}, which the forecast has no date for.")


def midpoint(plan: ProjectPlan) -> dt.date:
    """The half-way day of the period (extensions included), rounded down."""
    return plan.start_date + dt.timedelta(days=(plan.end_date - plan.start_date).days // 2)


def tranche_date(tranche: PendingTranche, plan: ProjectPlan, scenario: Scenario, as_of: dt.date) -> dt.date:
    """The expected release date: the latest expected date of its unmet conditions, never before as-of."""
    return max([as_of, *(condition_date(c, plan, scenario) for c in tranche.unmet)])


def tranche_stage(tranche: PendingTranche) -> int:
    return max((CONDITION_STAGE[c] for c in tranche.unmet if c in CONDITION_STAGE), default=0)


def schedule(plans: Sequence[ProjectPlan], window: Window, scenario: Scenario) -> Schedule:
    """The dated releases of every plan, bucketed by fiscal year, and the simulation arrays."""
    as_of = window.as_of
    rows: list[tuple] = []
    lane_rows: list[tuple[int, int]] = []
    cell_index: dict[tuple[str, str, str], int] = {}
    project_cols: dict[str, list] = {k: [] for k in ("cell", "term_lo", "term_hi", "mid_day", "midterm_at_risk", "recoveries")}
    day = lambda d: (d - as_of).days
    for p, plan in enumerate(plans):
        key = (plan.city, plan.category, plan.mode)
        cell = cell_index.setdefault(key, len(cell_index))
        lo = max(0, day(plan.approval_date))
        project_cols["cell"].append(cell)
        project_cols["term_lo"].append(lo)
        project_cols["term_hi"].append(max(lo, day(plan.end_date)))
        project_cols["mid_day"].append(max(0, day(midpoint(plan))))
        project_cols["midterm_at_risk"].append(any("midterm_passed" in t.unmet for lane in plan.lanes for t in lane.tranches))
        project_cols["recoveries"].append(plan.clawback_outstanding_fen)
        race = len(plan.lanes) if plan.racing else 0
        for lane in plan.lanes:
            g = len(lane_rows)
            lane_rows.append((p, race))
            for item, stage, start, stop, amount in _lane_flows(plan, lane, scenario, as_of):
                if amount:
                    rows.append((p, plan.code, lane.lane_no, g, item, stage, day(start), day(stop), start, stop, amount))
    columns = ["project", "code", "lane_no", "lane", "item", "stage", "t0", "t1", "first", "last", "amount_fen"]
    flows = pd.DataFrame(rows, columns=columns)
    flows = flows.astype({"project": "int64", "lane_no": "int64", "lane": "int64", "stage": "int64", "t0": "int64", "t1": "int64", "amount_fen": "int64"})
    sim = SimInput(
        flow_project=flows["project"].to_numpy(np.int64),
        flow_lane=flows["lane"].to_numpy(np.int64),
        flow_stage=flows["stage"].to_numpy(np.int8),
        flow_t0=flows["t0"].to_numpy(np.int64),
        flow_t1=flows["t1"].to_numpy(np.int64),
        flow_amount=flows["amount_fen"].to_numpy(np.int64),
        project_cell=np.array(project_cols["cell"], dtype=np.int64),
        term_lo=np.array(project_cols["term_lo"], dtype=np.int64),
        term_hi=np.array(project_cols["term_hi"], dtype=np.int64),
        mid_day=np.array(project_cols["mid_day"], dtype=np.int64),
        midterm_at_risk=np.array(project_cols["midterm_at_risk"], dtype=bool),
        recoveries=np.array(project_cols["recoveries"], dtype=np.int64),
        lane_project=np.array([p for p, _ in lane_rows], dtype=np.int64),
        race_size=np.array([r for _, r in lane_rows], dtype=np.int64),
        edges=window.edges,
        cells=max(1, len(cell_index)),
    )
    flows["bucket"] = window.bucket_of(sim.flow_mid) if len(flows) else pd.Series(dtype="int64")
    return Schedule(window, scenario, tuple(plans), flows, tuple(cell_index), sim)


def _lane_flows(plan: ProjectPlan, lane: LanePlan, scenario: Scenario, as_of: dt.date):
    """(item, stage, first day, day after the last, amount) of one lane; a point has first == after."""
    for t in lane.tranches:
        if t.basis == "grant_share":
            when = tranche_date(t, plan, scenario, as_of)
            yield t.name, tranche_stage(t), when, when, t.amount_fen
    subsidy = [t for t in lane.tranches if t.basis == "subsidy_earned"]
    if not subsidy or not (lane.subsidy_payable_fen or lane.subsidy_future_fen):
        return
    start = max(as_of, plan.start_date)
    after = max(start, plan.end_date + dt.timedelta(days=1))
    if scenario.subsidy_release == "as_earned":
        first = subsidy[0]
        # What is earned now leaves with the interim tranche if that is still pending, else now.
        when = tranche_date(first, plan, scenario, as_of) if first.seq == 1 else as_of
        yield "subsidy payable", tranche_stage(first) if first.seq == 1 else 0, when, when, lane.subsidy_payable_fen
        for piece_start, piece_after, amount in spread_by_year(lane.subsidy_future_fen, start, after):
            yield "subsidy", 0, piece_start, piece_after, amount
        return
    # at_tranches: each pending tranche releases what is earned by its date and not released
    # before; the last one releases the rest (domain-facts §9 rule 6: a final true-up).
    total_days = (after - start).days
    released, previous = 0, as_of
    for k, t in enumerate(subsidy):
        when = max(previous, tranche_date(t, plan, scenario, as_of))
        previous = when
        if k == len(subsidy) - 1 or total_days == 0:
            earned = lane.subsidy_future_fen
        else:
            elapsed = min(max((when - start).days + 1, 0), total_days)
            earned = lane.subsidy_future_fen * elapsed // total_days
        amount = (lane.subsidy_payable_fen if k == 0 else 0) + earned - released
        released = earned
        yield f"subsidy {t.name}", tranche_stage(t), when, when, amount
        if k == len(subsidy) - 1 or total_days == 0:
            break


def spread_by_year(amount_fen: int, start: dt.date, after: dt.date) -> list[tuple[dt.date, dt.date, int]]:
    """An amount earned evenly over the days [start, after), cut at each 1 January: the parts
    are weighted by their days and add up to the fen, odd fen to the earliest (split_fen). An
    empty period puts the whole amount on ``start``."""
    from ledger.core.money import split_fen

    if amount_fen == 0:
        return []
    if after <= start:
        return [(start, start, amount_fen)]
    pieces = []
    cursor = start
    while cursor < after:
        stop = min(after, dt.date(cursor.year + 1, 1, 1))
        pieces.append((cursor, stop))
        cursor = stop
    parts = split_fen(amount_fen, [(b - a).days for a, b in pieces])
    return [(a, b, part) for (a, b), part in zip(pieces, parts)]


# --- the simulation ------------------------------------------------------------------------


@dataclass(frozen=True)
class SimResult:
    """What the runs produced.

    Attributes:
      releases: (runs, cells, buckets) fen released per run.
      recoveries: (runs, cells) fen collected per run (all in the as-of date's bucket).
      project_releases: (projects, buckets) fen released summed over the runs.
      project_recoveries: (projects,) fen collected summed over the runs.
      runs / seed: as given.
    """

    releases: np.ndarray
    recoveries: np.ndarray
    project_releases: np.ndarray
    project_recoveries: np.ndarray
    runs: int
    seed: int


def check_runs(runs: int) -> int:
    if not 1 <= runs <= RUNS_MAX:
        raise Refusal("runs_must_be_bounded", f"--runs {runs} is outside 1..{RUNS_MAX:,}; the simulation is bounded, choose a count in that range.")
    return runs


def simulate(sim: SimInput, scenario: Scenario, *, runs: int, seed: int) -> SimResult:
    """Draw ``runs`` futures of the programme, ``BLOCK_RUNS`` at a time, all projects at once.

    Per run and project: terminated or not and when, mid-term failed or not, the delay; per
    racing 赛马 project, which lanes survive; per clawback, collected or not. A flow survives
    when it falls on or before its project's (and lane's) stop day and no failed stage cancels
    it; an interval flow survives in proportion to its days before the stop. Its delayed
    middle day picks the bucket.
    """
    check_runs(runs)
    buckets = len(sim.edges) + 1
    P, L, F, C = len(sim.project_cell), len(sim.lane_project), len(sim.flow_amount), sim.cells
    biggest = int(np.bincount(sim.flow_project, weights=sim.flow_amount.astype(np.float64), minlength=P).max()) if F else 0
    if int(sim.flow_amount.sum()) >= FLOAT_EXACT_FEN or biggest * BLOCK_RUNS >= FLOAT_EXACT_FEN:
        raise Refusal("forecast_amounts_must_be_simulable", "the programme's amounts exceed what the simulation sums exactly (2^53 fen per block); split the forecast by --city.")
    rng = np.random.default_rng(seed)
    releases = np.zeros((runs, C, buckets), dtype=np.int64)
    recoveries = np.zeros((runs, C), dtype=np.int64)
    project_releases = np.zeros((P, buckets), dtype=np.int64)
    project_recoveries = np.zeros(P, dtype=np.int64)
    delay_cum = np.cumsum(np.array(scenario.delay_probabilities, dtype=np.float64))
    delays = len(scenario.delay_days)
    fp, fl = sim.flow_project, sim.flow_lane
    t0 = sim.flow_t0.astype(np.int32)
    amount = sim.flow_amount.astype(np.float64)
    interval = np.flatnonzero(sim.flow_t1 > sim.flow_t0)
    span = (sim.flow_t1 - sim.flow_t0)[interval].astype(np.float64)
    t1_last = (sim.flow_t1[interval] - 1).astype(np.int32)  # the last day an interval flow earns on
    staged = np.flatnonzero(sim.flow_stage >= 1)
    # Where each flow lands for each delay: (delay, flow) tables of the run-independent part
    # of the two accumulation indexes, so a block only gathers from them.
    landing = np.stack([np.searchsorted(sim.edges, sim.flow_mid + d, side="right") for d in scenario.delay_days])
    cell_index = (sim.project_cell[fp] * buckets + landing).ravel()
    project_index = (fp * buckets + landing).ravel()
    flow_offset = np.arange(F, dtype=np.int32)
    flow_sums = np.zeros(delays * F, dtype=np.int64)  # released per (delay, flow), over the runs
    races = _races(sim, scenario)
    lane_project = sim.lane_project
    lane_mid = sim.mid_day[lane_project].astype(np.int32)
    low, high = scenario.termination_timing
    for first in range(0, runs, BLOCK_RUNS):
        b = min(BLOCK_RUNS, runs - first)
        # One fixed order of draws per block, whatever the probabilities are.
        u_term, u_when, u_mid, u_delay, u_collect = (rng.random((b, P), dtype=np.float32) for _ in range(5))
        eliminated = np.zeros((b, L), dtype=bool)
        for lanes, survivors in races:
            # A random order of each race's lanes; those after the survivors are eliminated.
            order = rng.random((b, *lanes.shape)).argsort(axis=2)
            out = np.zeros((b, *lanes.shape), dtype=bool)
            np.put_along_axis(out, order[:, :, survivors:], True, axis=2)
            eliminated[:, lanes] = out
        stop = np.where(
            u_term < scenario.termination_rate,
            sim.term_lo + np.floor((low + (high - low) * u_when) * (sim.term_hi - sim.term_lo)).astype(np.int64),
            NEVER,
        )
        failed = (u_mid < scenario.midterm_failure_rate) & sim.midterm_at_risk
        stop = np.where(failed, np.minimum(stop, sim.mid_day), stop).astype(np.int32)
        # Per lane first (few), then one gather per flow (many). np.take keeps the result in
        # C order; a[:, index] would come back in Fortran order and every ravel would copy.
        lane_cut = np.minimum(np.take(stop, lane_project, axis=1), np.where(eliminated, lane_mid, np.int32(NEVER)))
        lane_cancelled = np.take(failed, lane_project, axis=1) | eliminated
        cut = np.take(lane_cut, fl, axis=1)
        alive = t0 <= cut
        alive[:, staged] &= ~np.take(lane_cancelled, fl[staged], axis=1)
        weights = alive * amount
        if len(interval):
            # An interval flow cut inside its days keeps the share earned by the cut day.
            runs_cut, which = np.nonzero(cut[:, interval] < t1_last)
            f = interval[which]
            share = (cut[runs_cut, f] + 1 - t0[f]) / span[which]
            weights[runs_cut, f] = np.where(alive[runs_cut, f], np.floor(amount[f] * share + 0.5), 0.0)
        if delays == 1:
            key = np.broadcast_to(flow_offset, (b, F))
        else:
            choice = np.zeros((b, P), dtype=np.int32)
            for edge in delay_cum[:-1]:
                choice += u_delay >= edge
            key = np.take(choice, fp, axis=1) * np.int32(F) + flow_offset
        run_cell = (np.arange(b, dtype=np.int64)[:, None] * (C * buckets) + cell_index[key]).ravel()
        releases[first:first + b] = np.bincount(run_cell, weights=weights.ravel(), minlength=b * C * buckets).reshape(b, C, buckets).astype(np.int64)
        flow_sums += np.bincount(key.ravel(), weights=weights.ravel(), minlength=delays * F).astype(np.int64)
        collected = np.where(u_collect < scenario.collected_share, sim.recoveries, 0)
        run_cell = (np.arange(b, dtype=np.int64)[:, None] * C + sim.project_cell).ravel()
        recoveries[first:first + b] = np.bincount(run_cell, weights=collected.ravel().astype(np.float64), minlength=b * C).reshape(b, C).astype(np.int64)
        project_recoveries += collected.sum(axis=0)
    np.add.at(project_releases.ravel(), project_index, flow_sums)
    return SimResult(releases, recoveries, project_releases, project_recoveries, runs, seed)


def _races(sim: SimInput, scenario: Scenario) -> list[tuple[np.ndarray, int]]:
    """Racing lanes grouped by race size: (lane index matrix (projects, size), survivors)."""
    result = []
    for size in sorted(set(sim.race_size[sim.race_size > 0].tolist())):
        survivors = scenario.saima_survivors.get(size, size)
        lanes = np.flatnonzero(sim.race_size == size)
        if survivors >= size or not len(lanes):
            continue
        # Lanes of one project are adjacent and in lane order (schedule() emits them so).
        result.append((lanes.reshape(-1, size), survivors))
    return result


def nearest_rank(values: np.ndarray, percent: int) -> np.ndarray:
    """The nearest-rank percentile along axis 0: the smallest value with at least ``percent``%
    of the runs at or below it. Exact integers, no interpolation."""
    n = values.shape[0]
    k = max((percent * n + 99) // 100 - 1, 0)
    return np.sort(values, axis=0)[k]


def mean_fen(total: int, runs: int) -> int:
    """total / runs rounded half up to the fen, in integers (totals are never negative)."""
    return (2 * total + runs) // (2 * runs)


# --- the forecast ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    """Everything a report prints, as plain values (fen for amounts).

    Attributes:
      summary: one row per shown bucket and a "total" row: appropriation, schedule,
        expected, p10, p50, p90, p95, recoveries (the schedule's: clawback outstanding),
        recoveries_expected, headroom (appropriation − schedule), headroom_p90
        (appropriation − p90), unreleased_after (the schedule still to come after it).
      groups: by city, category and mode: schedule, expected and percentiles per bucket.
      projects: per project and bucket: schedule, expected; and recoveries.
      back_test: per bucket: the forecast against the releases recorded after the as-of date.
    """

    window: Window
    scenario: Scenario
    runs: int
    seed: int
    city: str | None
    chain_head: tuple[int, str]
    appropriations: Mapping[int, int]
    schedule: Schedule
    summary: pd.DataFrame
    groups: pd.DataFrame
    projects: pd.DataFrame
    back_test: pd.DataFrame | None
    actual_through: dt.date | None
    pipeline_source: str | None


def appropriations_as_of(session: Session, as_of: dt.date) -> dict[int, int]:
    """Budget authority recorded for each year by the as-of date (memo book)."""
    prefix = chart.budget_appropriated(2000).rsplit(":", 1)[0] + ":Y"
    rows = session.execute(
        select(Account.name, func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(Posting, Posting.account_id == Account.id)
        .where(Account.name.like(prefix + "%"), Posting.value_date <= as_of)
        .group_by(Account.name)
    ).all()
    return {int(name.rsplit(":Y", 1)[1]): -int(amount) for name, amount in rows}


def actual_releases(session: Session, as_of: dt.date, *, city: str | None) -> tuple[pd.DataFrame, dt.date | None]:
    """Releases recorded with a value date after ``as_of``, from the gross released-grant
    postings (a release netted against a clawback counts whole), per project and date."""
    released = chart.grant_released("P", 1).split(":P:", 1)[0] + ":"
    query = (
        select(Account.project_code, Project.approval_date, Posting.value_date, func.sum(Posting.amount_fen))
        .join(Posting, Posting.account_id == Account.id)
        .join(Project, Project.code == Account.project_code)
        .where(Account.name.like(released + "%"), Posting.value_date > as_of)
        .group_by(Account.project_code, Project.approval_date, Posting.value_date)
    )
    if city:
        query = query.where(Project.city == city)
    rows = session.execute(query).all()
    through = session.execute(select(func.max(JournalEntry.value_date))).scalar_one()
    frame = pd.DataFrame(rows, columns=["code", "approval_date", "value_date", "amount_fen"]).astype({"amount_fen": "int64"})
    return frame, through


def known_cities(session: Session) -> list[str]:
    return sorted(set(session.scalars(select(Project.city).distinct())) | {r.city for r in _all_rules()})


def _all_rules() -> list[Rules]:
    from funding_rules.loader import available_rules

    return available_rules()


FORECAST_STEPS = 5  # the plans read, the schedule, the simulation, the recoveries and back-test, the tables


def build_forecast(
    session: Session,
    *,
    window: Window,
    scenario: Scenario,
    runs: int,
    seed: int,
    city: str | None = None,
    pipeline: Path | None = None,
    progress=None,
) -> Forecast:
    """Read the ledger as of the window's as-of date, add the pipeline, schedule, simulate,
    and tabulate. Reads only; the caller owns the session. ``progress(1)`` is called after
    each of the FORECAST_STEPS."""
    from ledger.core.journal import chain_head

    step = progress or (lambda n: None)
    check_runs(runs)
    if city is not None:
        city = city.strip().lower()
        cities = known_cities(session)
        if city not in cities:
            raise Refusal("city_must_be_known", f"--city {city!r} is not a city of the ledger or the rules; known: {', '.join(cities)}.")
    plans = read_plans(session, window.as_of, city=city)
    step(1)
    if pipeline is not None:
        taken = session.scalars(select(Project.code)).all()
        extra = load_pipeline(pipeline, as_of=window.as_of, scenario=scenario, taken_codes=taken)
        plans += [p for p in extra if city is None or p.city == city]
    sched = schedule(plans, window, scenario)
    step(1)
    result = simulate(sched.sim, scenario, runs=runs, seed=seed)
    step(1)
    appropriations = appropriations_as_of(session, window.as_of)
    back, through = None, None
    actual, last = actual_releases(session, window.as_of, city=city)
    if len(actual) or (last is not None and last > window.as_of):
        back, through = _back_test(sched, result, actual, window, appropriations), last
    step(1)
    forecast = Forecast(
        window=window, scenario=scenario, runs=runs, seed=seed, city=city, chain_head=chain_head(session),
        appropriations=appropriations, schedule=sched, summary=_summary(sched, result, appropriations),
        groups=_groups(sched, result), projects=_projects(sched, result), back_test=back, actual_through=through,
        pipeline_source=str(pipeline) if pipeline is not None else None,
    )
    step(1)
    return forecast


def _schedule_by_bucket(flows: pd.DataFrame, buckets: int, key: str | None = None) -> dict:
    if key is None:
        series = flows.groupby("bucket")["amount_fen"].sum() if len(flows) else pd.Series(dtype="int64")
        return {b: int(series.get(b, 0)) for b in range(buckets)}
    grouped = flows.groupby([key, "bucket"])["amount_fen"].sum() if len(flows) else pd.Series(dtype="int64")
    return {k: int(v) for k, v in grouped.items()}


def _stats(per_run: np.ndarray) -> dict[str, np.ndarray]:
    """expected and percentiles per column of a (runs, columns) array of fen."""
    runs = per_run.shape[0]
    totals = [sum(column.tolist()) for column in per_run.T]
    out = {"expected": np.array([mean_fen(t, runs) for t in totals], dtype=np.int64)}
    for q in PERCENTILES:
        out[f"p{q}"] = nearest_rank(per_run, q)
    return out


def _summary(sched: Schedule, result: SimResult, appropriations: Mapping[int, int]) -> pd.DataFrame:
    window = sched.window
    nb = window.buckets
    per_run = result.releases.sum(axis=1)  # (runs, buckets)
    stats = _stats(per_run)
    total_stats = _stats(per_run[:, window.shown()].sum(axis=1, keepdims=True))
    planned = _schedule_by_bucket(sched.flows, nb)
    recover_bucket = int(window.bucket_of(np.array([0]))[0])
    recoveries_planned = int(sched.sim.recoveries.sum())
    recoveries_expected = mean_fen(sum(result.recoveries.sum(axis=1).tolist()), result.runs)
    total_planned = sum(planned[b] for b in window.shown())
    rows, cumulative = [], 0
    for b in window.shown():
        year = window.year(b)
        cumulative += planned[b]
        appropriation = appropriations.get(year, 0) if year is not None else None
        rows.append({
            "period": window.label(b), "year": year, "appropriation": appropriation, "schedule": planned[b],
            **{k: int(v[b]) for k, v in stats.items()},
            "recoveries": recoveries_planned if b == recover_bucket else 0,
            "recoveries_expected": recoveries_expected if b == recover_bucket else 0,
            "headroom": None if appropriation is None else appropriation - planned[b],
            "headroom_p90": None if appropriation is None else appropriation - int(stats["p90"][b]),
            "unreleased_after": total_planned - cumulative,
        })
    years = [window.year(b) for b in window.shown() if window.year(b) is not None]
    appropriation_total = sum(appropriations.get(y, 0) for y in years)
    in_years = sum(planned[b] for b in window.shown() if window.year(b) is not None)
    rows.append({
        "period": "total", "year": None, "appropriation": appropriation_total, "schedule": total_planned,
        **{k: int(v[0]) for k, v in total_stats.items()},
        "recoveries": recoveries_planned, "recoveries_expected": recoveries_expected,
        "headroom": appropriation_total - in_years, "headroom_p90": None, "unreleased_after": 0,
    })
    return pd.DataFrame(rows, dtype=object)  # object: exact ints, and None where nothing applies


def _groups(sched: Schedule, result: SimResult) -> pd.DataFrame:
    window = sched.window
    rows = []
    flows = sched.flows.copy()
    cells = sched.cells
    for position, dimension in enumerate(("city", "category", "mode")):
        keys = sorted({cell[position] for cell in cells})
        if len(flows):
            flows[dimension] = [getattr(sched.plans[p], dimension) for p in flows["project"]]
        planned = _schedule_by_bucket(flows, window.buckets, dimension) if len(flows) else {}
        for key in keys:
            members = [i for i, cell in enumerate(cells) if cell[position] == key]
            per_run = result.releases[:, members, :].sum(axis=1)
            stats = _stats(per_run)
            for b in window.shown():
                rows.append({"dimension": dimension, "key": key, "period": window.label(b), "schedule": planned.get((key, b), 0),
                             **{k: int(v[b]) for k, v in stats.items()}})
    return pd.DataFrame(rows, columns=["dimension", "key", "period", "schedule", "expected", *(f"p{q}" for q in PERCENTILES)])


def _projects(sched: Schedule, result: SimResult) -> pd.DataFrame:
    window = sched.window
    planned = _schedule_by_bucket(sched.flows, window.buckets, "project")
    rows = []
    for p, plan in enumerate(sched.plans):
        for b in window.shown():
            rows.append({
                "code": plan.code, "name": plan.name, "city": plan.city, "category": plan.category, "mode": plan.mode,
                "source": plan.source, "period": window.label(b), "schedule": planned.get((p, b), 0),
                "expected": mean_fen(int(result.project_releases[p, b]), result.runs),
                "recoveries": plan.clawback_outstanding_fen if b == int(window.bucket_of(np.array([0]))[0]) else 0,
            })
    return pd.DataFrame(rows, columns=["code", "name", "city", "category", "mode", "source", "period", "schedule", "expected", "recoveries"])


def _back_test(sched: Schedule, result: SimResult, actual: pd.DataFrame, window: Window, appropriations) -> pd.DataFrame:
    """Forecast against the releases recorded after the as-of date, per bucket: those of the
    projects the forecast knew (approved by then) and of every project."""
    planned = _schedule_by_bucket(sched.flows, window.buckets)
    expected = _stats(result.releases.sum(axis=1))["expected"]
    if len(actual):
        days = np.array([(d - window.as_of).days for d in actual["value_date"]], dtype=np.int64)
        actual = actual.assign(bucket=window.bucket_of(days), known=[d <= window.as_of for d in actual["approval_date"]])
    rows = []
    for b in window.shown():
        in_bucket = actual[actual["bucket"] == b] if len(actual) else actual
        known = int(in_bucket.loc[in_bucket["known"], "amount_fen"].sum()) if len(in_bucket) else 0
        every = int(in_bucket["amount_fen"].sum()) if len(in_bucket) else 0
        rows.append({"period": window.label(b), "schedule": planned[b], "expected": int(expected[b]),
                     "actual_known": known, "actual_all": every, "schedule_error": planned[b] - known})
    return pd.DataFrame(rows)
