"""Invariants of money out and back over random sequences of programme events.

Each hypothesis example gets a fresh ledger (a copy of the migrated SQLite template, or a
fresh PostgreSQL schema, migrated, in conftest's database for the run) holding two small
projects whose contracts are signed on approval day: a Jiangmen 赛马 project with two
lanes, and either a Jiangmen 揭榜挂帅 project solved by the second racer (whose clawbacks are
never netted against its later releases: recoveries go back to the treasury) or an Urumqi
揭榜挂帅 project solved by the first racer (a bid subsidy whose use by its recipient is
tracked until reported spent, and recovered on termination). Twelve to twenty random
events follow — bid payments, contributions, stage results (eliminations included),
releases, spending, extensions, termination or revocation, collections, remittances and
write-offs — with amounts drawn at and around the limits that matter.

A small independent model, written from the rules and not from the services, decides
whether each event must be accepted and what every lane's balances become (the tranche
amounts, the 40% subsidy and its use register, the indirect cap, the period with its
extension, a tranche paid in full while the same unit owes a clawback). After every
event the ledger must agree with the model, and hold: every entry balances in every book;
released ≤ obligated; advances never negative; clawback collected ≤ assessed; after
termination no release or spend is accepted. At the end ``verify`` passes and the beancount
export, loaded by beancount, has exactly the database's account balances.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import itertools
import shutil
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from ledger.core.balances import account_balances
from ledger.core.db import make_engine
from ledger.core.errors import Refusal
from ledger.core.export import export_beancount
from ledger.programme import (
    ApprovalInput,
    Misuse,
    PartyInput,
    appropriate,
    approve_project,
    bid_pay,
    collect,
    contribute,
    extend,
    project_balances,
    record_stage,
    register_party,
    release,
    remit,
    spend,
    terminate,
    write_off,
)
from ledger.programme.projection import verify_ledger as verify
from migrations import upgrade_to_head

D = dt.date
ACTOR = "machine"
APPROVED_ON = D(2025, 2, 1)
START, END = D(2025, 3, 1), D(2025, 12, 31)
APPROPRIATION = 50_000_000_00
EQUIPMENT_JUSTIFY_FEN = 500_000_00
CATEGORIES = ("equipment", "business", "labour", "indirect")

JM_DEMAND = "91440700MA51A00018"
SOLVER_1 = "12440700MB2C000120"
SOLVER_2 = "91440700MA51A0002B"
UR_DEMAND = "91650100MA7B00011L"


@dataclass(frozen=True)
class ProjectSpec:
    """A project of the world, with the figures the model expects, computed by hand.

    Attributes:
      tranches: per lane, the grant shares (60/40 of the lane's share); None for a tranche
        that pays the subsidy earned (Urumqi).
      second_condition: what the second tranche waits on, in the model's terms.
      stages: the stage results the events may record for this project.
    """

    code: str
    city: str
    mode: str
    demand: str
    solvers: tuple[str, ...]
    obligation_per_lane: int
    tranches: tuple[int | None, ...]
    second_condition: str
    stages: tuple[str, ...]
    grant_fen: int | None = None
    bid_fen: int = 0


SAIMA = ProjectSpec(  # 1,000,000.00 for two racers: 500,000.00 each, paid 300,000.00 + 200,000.00
    "JM2025-801", "jiangmen", "saima", JM_DEMAND, (SOLVER_1, SOLVER_2), 500_000_00, (300_000_00, 200_000_00),
    "stage_passed", ("contract_signed", "stage_assessment", "stage_assessment"), grant_fen=1_000_000_00,
)
JBGS = ProjectSpec(  # 600,000.00 to the second racer's unit: 360,000.00 at contract, 240,000.00 after the mid-term
    "JM2025-802", "jiangmen", "jbgs", JM_DEMAND, (SOLVER_2,), 600_000_00, (360_000_00, 240_000_00),
    "midterm", ("contract_signed", "midterm", "stage_assessment"), grant_fen=600_000_00, bid_fen=200_000_00,
)
URUMQI = ProjectSpec(  # bid 1,000,000.00: obligation = 40% = 400,000.00, paid as the subsidy is earned
    "UR2025-803", "urumqi", "jbgs", UR_DEMAND, (SOLVER_1,), 400_000_00, (None, None),
    "acceptance+audit_report", ("contract_signed", "acceptance", "audit_report", "stage_assessment"), bid_fen=1_000_000_00,
)
WORLDS = ((SAIMA, JBGS), (SAIMA, URUMQI))

CATEGORY_NAMES = {
    "business": "business", "labour": "labour", "equipment": "equipment", "indirect": "indirect",
    "材料费": "business", "设备费": "equipment", "劳务费": "labour", "间接费用": "indirect", "差旅费": "business",
}


# --- the independent model ---------------------------------------------------------------


def add_months(day: dt.date, months: int) -> dt.date:
    year, month = divmod(day.month - 1 + months, 12)
    year += day.year
    return D(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


@dataclass
class LaneModel:
    spec: ProjectSpec
    n: int
    obligated: int
    released_count: int = 0
    released: int = 0
    advances: int = 0
    spent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    stage_passed: bool = False
    eliminated: bool = False
    assessed: int = 0
    collected: int = 0
    outstanding: int = 0
    paid: dict[str, int] = field(default_factory=lambda: {"cash": 0, "equity": 0, "in_kind": 0})
    earned: int = 0
    payable: int = 0
    unreported: int = 0  # subsidy released, not yet reported spent (Urumqi)
    reported: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    use_recovered: int = 0  # subsidy recovered out of the use register

    @property
    def subsidy(self) -> bool:
        return self.spec.tranches[0] is None

    @property
    def holding(self) -> int:
        """Fiscal money the lane holds and may report spent: its advance, or its subsidy."""
        return self.unreported if self.subsidy else self.advances

    @property
    def used(self) -> dict[str, int]:
        return self.reported if self.subsidy else self.spent

    @property
    def project(self) -> str:
        return self.spec.code

    @property
    def solver(self) -> str:
        return self.spec.solvers[self.n - 1]

    @property
    def contract(self) -> int:
        return self.spec.bid_fen

    @property
    def unreleased(self) -> int:
        return self.obligated - self.released


@dataclass
class ProjectModel:
    spec: ProjectSpec
    lanes: list[LaneModel]
    end: dt.date = END
    extensions: int = 0
    terminated: bool = False
    conditions: set[str] = field(default_factory=lambda: {"contract_signed"})
    contributed: int = 0
    spends: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # voucher -> lane, category, amount

    @property
    def code(self) -> str:
        return self.spec.code


@dataclass
class Model:
    projects: dict[str, ProjectModel]
    available: int
    due_to_finance: int = 0
    funding: int = 0  # treasury money paid out (a credit balance, so <= 0)

    def lanes(self) -> list[LaneModel]:
        return [lane for p in self.projects.values() for lane in p.lanes]

    def owing_lanes(self, lane: LaneModel) -> list[LaneModel]:
        """Other lanes of the same unit that owe a clawback: never netted against a release."""
        return [other for other in self.lanes() if other.solver == lane.solver and other is not lane and other.outstanding]


def new_model(world: tuple[ProjectSpec, ...]) -> Model:
    projects = {
        spec.code: ProjectModel(spec, [LaneModel(spec, n, spec.obligation_per_lane) for n in range(1, len(spec.solvers) + 1)])
        for spec in world
    }
    obligated = sum(spec.obligation_per_lane * len(spec.solvers) for spec in world)
    return Model(projects, available=APPROPRIATION - obligated)


# --- a fresh database per example ---------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_ledger(request, tmp_path_factory):
    """A factory of fresh ledgers holding a world: ``with fresh_ledger(world) as engine: ...``.

    SQLite: each world (parties, budget, approvals, signed contracts) is built once into a
    file of its own, copied from conftest's migrated template; every example starts from a
    copy of that file.
    """
    backend = request.param
    if request.config.getoption("--backend") not in ("all", backend):
        pytest.skip(f"--backend excludes {backend}")
    if backend == "sqlite":
        migrated = request.getfixturevalue("_sqlite_template")
        directory = tmp_path_factory.mktemp("machine")
        numbers = itertools.count()
        built: dict[tuple[ProjectSpec, ...], object] = {}

        def template_of(world):
            if world not in built:
                path = directory / f"world-{len(built)}.db"
                shutil.copyfile(migrated, path)
                engine = make_engine(f"sqlite:///{path}")
                build_world(engine, world)
                engine.dispose()
                built[world] = path
            return built[world]

        @contextlib.contextmanager
        def fresh(world):
            path = directory / f"example-{next(numbers)}.db"
            shutil.copyfile(template_of(world), path)
            engine = make_engine(f"sqlite:///{path}")
            try:
                yield engine
            finally:
                engine.dispose()
                path.unlink()

        fresh.backend = backend
        yield fresh
        return

    # PostgreSQL: a fresh schema per example in conftest's database for this run, migrated
    # from scratch and then given its world (cloning a database would cost a checkpoint).
    run_url = request.getfixturevalue("_pg_run_database")
    admin = create_engine(run_url, isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def fresh(world):
        schema = f"m_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        # Commits need not wait for the disk: the schema is dropped after the example.
        engine = create_engine(run_url.update_query_dict({"options": f"-csearch_path={schema} -csynchronous_commit=off"}))
        try:
            upgrade_to_head(engine)
            build_world(engine, world)
            yield engine
        finally:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    fresh.backend = backend
    try:
        yield fresh
    finally:
        admin.dispose()


def build_world(engine, world: tuple[ProjectSpec, ...]) -> None:
    """Parties, the 2025 appropriation, the projects (in order) and their signed contracts."""
    with Session(engine) as s, s.begin():
        register_party(s, PartyInput(JM_DEMAND, "江门市某智能装备有限公司", revenue_fen=600_000_000_00, date=D(2025, 1, 2)), actor=ACTOR)
        register_party(s, PartyInput(SOLVER_1, "五邑某大学", kind="university", date=D(2025, 1, 2)), actor=ACTOR)
        register_party(s, PartyInput(SOLVER_2, "江门市某科技有限公司", date=D(2025, 1, 2)), actor=ACTOR)
        register_party(s, PartyInput(UR_DEMAND, "新疆某光伏有限公司", date=D(2025, 1, 2)), actor=ACTOR)
        appropriate(s, year=2025, amount_fen=APPROPRIATION, date=D(2025, 1, 10), voucher=None, actor=ACTOR)
        for spec in world:
            approve_project(
                s,
                ApprovalInput(
                    code=spec.code, name="攻关项目", city=spec.city, category="tech_breakthrough", mode=spec.mode,
                    demand_uscc=spec.demand, solver_usccs=spec.solvers, total_investment_fen=8_000_000_00,
                    approval_date=APPROVED_ON, start_date=START, end_date=END, approved_grant_fen=spec.grant_fen,
                    bid_contract_fen=(spec.bid_fen,) * len(spec.solvers) if spec.bid_fen else (),
                ),
                actor=ACTOR,
            )
            record_stage(s, project=spec.code, stage="contract_signed", passed=True, date=APPROVED_ON, voucher=None, actor=ACTOR)


# --- events: each draws its parameters, predicts the outcome and updates the model -------


@dataclass
class Event:
    """One attempted event: what the model expects, the service call, the model update."""

    text: str
    expected: bool
    call: object  # (session) -> Posted
    apply: object  # () -> None, run once the ledger has accepted the event
    money_out_of: str | None = None  # the project a release or spend pays out of


def amount_near(data, limit: int, label: str) -> int:
    """An amount at the limit, one fen over it, or anywhere from one fen to a little over it."""
    return data.draw(
        st.one_of(
            st.just(max(limit, 1)),
            st.just(max(limit + 1, 1)),
            st.integers(1, max(limit, 1)),
            st.integers(1, max(limit, 1) + 100_000_00),
        ),
        label=label,
    )


def lane_contract(lane: LaneModel) -> dict[str, int]:
    """The lane's part of the balances contract, as the model sees it."""
    return {
        "grant_obligated": lane.obligated,
        "grant_released": lane.released,
        "grant_unreleased": lane.unreleased,
        "advances_outstanding": lane.advances,
        "fiscal_spent": sum(lane.spent.values()),
        "clawback_assessed": lane.assessed,
        "clawback_collected": lane.collected,
        "clawback_outstanding": lane.outstanding,
        "subsidy_earned": lane.earned,
        "subsidy_payable": lane.payable,
        "bid_contracted": lane.contract,
        "bid_paid_cash": lane.paid["cash"],
        "bid_paid_equity": lane.paid["equity"],
        "bid_paid_in_kind": lane.paid["in_kind"],
    }


def lane_accounts(accounts: dict[str, int], lane: LaneModel) -> dict[str, int]:
    """The lane's own accounts, from the database's balances (debits positive)."""
    tail = f"{lane.project}:L{lane.n}"
    return {name: amount for name, amount in accounts.items() if name.endswith(tail) or f"{tail}:" in name}


def lane_accounts_expected(lane: LaneModel) -> dict[str, int]:
    """The same accounts as the model sees them; zero balances are absent."""
    tail = f"{lane.project}:L{lane.n}"
    expected = {
        f"Assets:Memo:Grant:Unreleased:{tail}": lane.unreleased,
        f"Assets:Memo:Grant:Released:{tail}": lane.released,
        f"Assets:Fiscal:Advances:{tail}": lane.advances,
        f"Assets:Fiscal:ClawbackReceivable:{tail}": lane.outstanding,
        f"Expenses:Fiscal:Subsidy:{tail}": lane.earned,
        f"Liabilities:Fiscal:SubsidyPayable:{tail}": -lane.payable,
        f"Equity:Memo:Bid:Contracted:{tail}": -lane.contract,
        f"Assets:Memo:Bid:Unpaid:{tail}": lane.contract - sum(lane.paid.values()),
        f"Assets:Memo:Bid:PaidCash:{tail}": lane.paid["cash"],
        f"Assets:Memo:Bid:PaidEquity:{tail}": lane.paid["equity"],
        f"Assets:Memo:Bid:PaidInKind:{tail}": lane.paid["in_kind"],
    }
    for category in CATEGORIES:
        expected[f"Expenses:Fiscal:Grant:{tail}:{category.capitalize()}"] = lane.spent[category]
        expected[f"Assets:Memo:Subsidy:Reported:{tail}:{category.capitalize()}"] = lane.reported[category]
    if lane.subsidy:
        expected[f"Assets:Memo:Subsidy:Unreported:{tail}"] = lane.unreported
        expected[f"Equity:Memo:Subsidy:Released:{tail}"] = -(lane.released - lane.use_recovered)
    return {name: amount for name, amount in expected.items() if amount}


class Run:
    """One example: a fresh ledger, the model beside it, and the events drawn one by one."""

    def __init__(self, engine, data, world: tuple[ProjectSpec, ...]):
        self.engine, self.data = engine, data
        self.model = new_model(world)
        self.today = APPROVED_ON
        self.voucher_numbers = itertools.count(1)
        self.entry_count = 0  # journal entries, as of the last check

    def voucher(self) -> str:
        return f"EV-{next(self.voucher_numbers)}"

    def draw(self, strategy, label):
        return self.data.draw(strategy, label=label)

    def pick_lane(self, prefer=None) -> tuple[ProjectModel, LaneModel]:
        """Any lane, or mostly one where ``prefer(lane)`` holds, so that events have something to act on."""
        lanes = self.model.lanes()
        preferred = [lane for lane in lanes if prefer is not None and prefer(lane)]
        if preferred and self.draw(st.integers(0, 3), "preferred lane?"):
            lanes = preferred
        lane = self.draw(st.sampled_from(lanes), "lane")
        return self.model.projects[lane.project], lane

    # --- event builders -------------------------------------------------------------------

    def bid_payment(self) -> Event:
        project, lane = self.pick_lane(lambda lane: lane.contract > 0)
        form = self.draw(st.sampled_from(["cash", "equity", "cash", "in_kind"]), "form")
        remaining = lane.contract - sum(lane.paid.values())
        amount = amount_near(self.data, remaining, "bid amount")
        # Under Urumqi's rules the subsidy is trued up at acceptance: later payments are refused.
        after_acceptance = project.spec.city == "urumqi" and "acceptance" in project.conditions
        expected = not project.terminated and not lane.eliminated and not after_acceptance and amount <= remaining

        def apply():
            lane.paid[form] += amount
            project.conditions.add("first_bid_payment")
            if project.spec.city == "urumqi":
                # 40% of the cash paid, rounded half up, never above 40% of the contract.
                earned = min((4 * lane.paid["cash"] + 5) // 10, (4 * lane.contract + 5) // 10)
                if earned > lane.earned:
                    lane.payable += earned - lane.earned
                    lane.earned = earned

        when, voucher = self.today, self.voucher()
        return Event(f"bid pay {project.code} L{lane.n} {form} {amount}", expected,
                     lambda s: bid_pay(s, project=project.code, lane=f"L{lane.n}", amount_fen=amount, form=form, date=when,
                                       voucher=voucher, actor=ACTOR),
                     apply)

    def contribution(self) -> Event:
        project, _ = self.pick_lane()
        amount = self.draw(st.integers(1, 2_000_000_00), "contribution")
        category = self.draw(st.sampled_from(CATEGORIES), "category")

        def apply():
            project.contributed += amount

        when, voucher = self.today, self.voucher()
        return Event(f"contribute {project.code} {amount}", not project.terminated,
                     lambda s: contribute(s, project=project.code, amount_fen=amount, category=category, date=when,
                                          voucher=voucher, actor=ACTOR),
                     apply)

    def stage(self) -> Event:
        project, lane = self.pick_lane(lambda lane: not lane.eliminated and lane.advances > 0)
        stage = self.draw(st.sampled_from(project.spec.stages), "stage")
        passed = stage != "stage_assessment" or self.draw(st.booleans(), "passed")
        per_lane = stage == "stage_assessment"
        expected = not project.terminated and not (per_lane and (project.spec.mode != "saima" or lane.eliminated))

        def apply():
            if not per_lane:
                project.conditions.add(stage)
            elif passed:
                lane.stage_passed = True
            else:
                # Elimination: the unspent advance is assessed, the unreleased share freed
                # (Jiangmen: eliminated_racer_recovers_balance = true).
                lane.eliminated = True
                self.assess(lane, lane.advances)
                lane.advances = 0
                self.deobligate(lane)

        when, voucher = self.today, self.voucher()
        lane_arg = f"L{lane.n}" if per_lane else None
        return Event(f"stage {project.code} {stage} {lane_arg} {'passed' if passed else 'failed'}", expected,
                     lambda s: record_stage(s, project=project.code, stage=stage, passed=passed, date=when, voucher=voucher,
                                            actor=ACTOR, lane=lane_arg),
                     apply)

    def next_release(self, lane: LaneModel) -> int | None:
        """The amount the lane's next tranche would release now, or None if it must be refused."""
        project = self.model.projects[lane.project]
        if project.terminated or lane.eliminated or lane.released_count == len(lane.spec.tranches):
            return None
        seq = lane.released_count + 1
        share = lane.spec.tranches[seq - 1]
        if seq == 1:
            met = {"contract_signed", "first_bid_payment"} <= project.conditions if share is None else "contract_signed" in project.conditions
        elif lane.spec.second_condition == "stage_passed":
            met = lane.stage_passed
        else:
            met = set(lane.spec.second_condition.split("+")) <= project.conditions
        amount = min(lane.payable, lane.unreleased) if share is None else share  # Urumqi: the subsidy earned and unpaid
        return amount if met and 0 < amount <= lane.unreleased else None

    def owing_releases(self) -> list[LaneModel]:
        """Lanes whose next release is due now while the same unit owes a clawback elsewhere."""
        return [
            lane for lane in self.model.lanes()
            if self.next_release(lane) is not None
            and lane.spec.tranches[lane.released_count] is not None
            and self.model.owing_lanes(lane)
        ]

    def release_event(self) -> Event:
        owing = self.owing_releases()
        project, lane = self.pick_lane(lambda lane: lane in owing if owing else self.next_release(lane) is not None)
        amount = self.next_release(lane)

        def apply():
            grant = lane.spec.tranches[lane.released_count] is not None
            lane.released_count += 1
            lane.released += amount
            if not grant:
                lane.payable -= amount
                lane.unreported += amount  # tracked at its recipient until reported spent
                self.model.funding -= amount
                return
            lane.advances += amount
            # A clawback the same unit owes is never netted: the treasury pays in full.
            if self.model.owing_lanes(lane):
                event("release: paid in full while the unit owes a clawback")
            self.model.funding -= amount

        when, voucher = self.today, self.voucher()
        return Event(f"release {project.code} L{lane.n} ({amount})", amount is not None,
                     lambda s: release(s, project=project.code, lane=f"L{lane.n}", date=when, voucher=voucher, actor=ACTOR),
                     apply, money_out_of=project.code)

    def spend_event(self) -> Event:
        project, lane = self.pick_lane(lambda lane: lane.holding > 0)
        name = self.draw(st.sampled_from(sorted(CATEGORY_NAMES)), "category")
        category = CATEGORY_NAMES[name]
        used = lane.used
        direct = used["equipment"] + used["business"] + used["labour"]
        cap = (direct - used["equipment"]) * 3 // 10  # the 30% band: the base stays under 5,000,000.00
        limit = min(lane.holding, cap - used["indirect"]) if category == "indirect" else lane.holding
        amount = amount_near(self.data, limit, "spend amount")
        justification = self.draw(st.sampled_from([None, "规格与必要性说明"]), "justification") if category == "equipment" else None
        expected = (
            not project.terminated
            and not lane.eliminated
            and START <= self.today <= project.end
            and amount <= lane.holding
            and not (category == "equipment" and amount >= EQUIPMENT_JUSTIFY_FEN and not justification)
            and not (category == "indirect" and used["indirect"] + amount > cap)
        )
        voucher = self.voucher()

        def apply():
            if lane.subsidy:
                lane.unreported -= amount
            else:
                lane.advances -= amount
            used[category] += amount
            project.spends[voucher] = (lane.n, category, amount)

        when = self.today
        return Event(f"spend {project.code} L{lane.n} {name} {amount} (holding {lane.holding}, period to {project.end})", expected,
                     lambda s: spend(s, project=project.code, lane=f"L{lane.n}", amount_fen=amount, category=name, date=when,
                                     voucher=voucher, actor=ACTOR, justification=justification),
                     apply, money_out_of=project.code)

    def extension(self) -> Event:
        project, _ = self.pick_lane()
        months = self.draw(st.integers(1, 14), "months")
        expected = not project.terminated and project.extensions == 0 and months <= 12 and self.today <= project.end

        def apply():
            project.extensions += 1
            project.end = add_months(project.end, months)

        when, voucher = self.today, self.voucher()
        return Event(f"extend {project.code} {months} months (end {project.end})", expected,
                     lambda s: extend(s, project=project.code, months=months, date=when, reference="延期批复", reason="不可抗力", voucher=voucher,
                                      actor=ACTOR),
                     apply)

    def termination(self) -> Event:
        project, _ = self.pick_lane()
        revoke = self.draw(st.booleans(), "revoke")
        misused: list[Misuse] = []
        if not revoke and project.spends:
            # Misuse is named on any lane's spending, an eliminated racer's included.
            for voucher in self.draw(st.lists(st.sampled_from(sorted(project.spends)), unique=True, max_size=2), "misused vouchers"):
                misused.append(Misuse(voucher, self.draw(st.integers(1, project.spends[voucher][2]), "misused amount")))

        def apply():
            project.terminated = True
            for lane in project.lanes:
                misuse = 0
                if not revoke:
                    for item in misused:
                        n, category, _ = project.spends[item.spend_voucher]
                        if n == lane.n:
                            lane.used[category] -= item.amount_fen  # reclassified out of spending
                            misuse += item.amount_fen
                if lane.eliminated:
                    # Its unspent advance was assessed at the elimination; only misuse is added.
                    self.assess(lane, misuse)
                    continue
                if lane.subsidy and not revoke:
                    # The subsidy not reported spent and the misused part go back.
                    clawback = lane.unreported + misuse
                    lane.earned -= clawback
                    lane.use_recovered += clawback
                    lane.unreported = 0
                    self.assess(lane, clawback)
                else:
                    self.assess(lane, self.recover_everything_released(lane) if revoke else lane.advances + misuse)
                lane.advances = 0
                self.deobligate(lane)
                # Subsidy earned but unpaid is forfeited (both rules files: forfeit).
                lane.earned -= lane.payable
                lane.payable = 0

        when, voucher = self.today, self.voucher()
        return Event(f"{'revoke' if revoke else 'terminate'} {project.code} misused={misused}", not project.terminated,
                     lambda s: terminate(s, project=project.code, date=when, reference="决定书", voucher=voucher, actor=ACTOR,
                                         misused=misused, revoke=revoke),
                     apply)

    def collection(self) -> Event:
        project, lane = self.pick_lane(lambda lane: lane.outstanding > 0)
        amount = amount_near(self.data, lane.outstanding, "collected")

        def apply():
            lane.outstanding -= amount
            lane.collected += amount
            self.model.due_to_finance += amount

        when, voucher = self.today, self.voucher()
        return Event(f"collect {project.code} L{lane.n} {amount} (outstanding {lane.outstanding})", amount <= lane.outstanding,
                     lambda s: collect(s, project=project.code, lane=f"L{lane.n}", amount_fen=amount, date=when, voucher=voucher,
                                       actor=ACTOR),
                     apply)

    def remittance(self) -> Event:
        amount = amount_near(self.data, self.model.due_to_finance, "remitted")

        def apply():
            self.model.due_to_finance -= amount

        when, voucher = self.today, self.voucher()
        return Event(f"remit {amount} (owed {self.model.due_to_finance})", amount <= self.model.due_to_finance,
                     lambda s: remit(s, amount_fen=amount, date=when, voucher=voucher, actor=ACTOR), apply)

    def write_off_event(self) -> Event:
        project, lane = self.pick_lane(lambda lane: lane.outstanding > 0)
        amount = amount_near(self.data, lane.outstanding, "written off")
        reason = self.draw(st.sampled_from(["单位注销", "单位注销", " "]), "reason")

        def apply():
            lane.outstanding -= amount

        when, voucher = self.today, self.voucher()
        return Event(f"write off {project.code} L{lane.n} {amount} reason={reason!r}", amount <= lane.outstanding and bool(reason.strip()),
                     lambda s: write_off(s, project=project.code, lane=f"L{lane.n}", amount_fen=amount, date=when, reason=reason,
                                         approval="核销批复", voucher=voucher, actor=ACTOR),
                     apply)

    # --- model helpers --------------------------------------------------------------------

    def assess(self, lane: LaneModel, amount: int) -> None:
        lane.assessed += amount
        lane.outstanding += amount

    def deobligate(self, lane: LaneModel) -> None:
        self.model.available += lane.unreleased
        lane.obligated = lane.released

    @staticmethod
    def recover_everything_released(lane: LaneModel) -> int:
        """Revocation at rate 1.00: the unspent advance, then the spending by category, then
        the subsidy paid; returns the clawback."""
        target = lane.released
        rest = target - min(lane.advances, target)
        for category in CATEGORIES:
            take = min(rest, lane.spent[category])
            lane.spent[category] -= take
            rest -= take
        take = min(rest, lane.earned - lane.payable)
        lane.earned -= take
        rest -= take
        # The use register gives up what was recovered: the unreported part first, then what
        # was reported spent, category by category.
        left = take
        for bucket, key in [(None, None)] + [(lane.reported, c) for c in CATEGORIES]:
            have = lane.unreported if bucket is None else bucket[key]
            part = min(left, have)
            if bucket is None:
                lane.unreported -= part
            else:
                bucket[key] -= part
            left -= part
        lane.use_recovered += take - left
        assert rest == 0, "the model cannot source the revocation"
        return target

    # --- running and checking -------------------------------------------------------------

    def weights(self) -> dict[str, int]:
        """How often each event is drawn; recovery events come forward once something is owed."""
        lanes = self.model.lanes()
        owed = any(lane.outstanding for lane in lanes)
        advanced = any(lane.advances for lane in lanes)
        # Hypothesis favours the front of a list, so the events that open the way come first.
        return {
            "release_event": 8 if self.owing_releases() else 4, "spend_event": 5, "stage": 3, "collection": 5 if owed else 1,
            "remittance": 3 if self.model.due_to_finance else 1, "write_off_event": 2 if owed else 1,
            "bid_payment": 2, "contribution": 1, "extension": 1, "termination": 2 if advanced else 1,
        }

    def session(self) -> Session:
        """A session for one event, in its own transaction (subclasses may nest it)."""
        return Session(self.engine)

    def step(self) -> None:
        self.today += dt.timedelta(days=self.draw(st.integers(0, 40), "days later"))
        kind = self.draw(st.sampled_from([k for k, weight in self.weights().items() for _ in range(weight)]), "event")
        attempt: Event = getattr(self, kind)()
        note(f"{self.today} {attempt.text}: expected {'accepted' if attempt.expected else 'refused'}")
        refusal = None
        try:
            with self.session() as s, s.begin():
                attempt.call(s)
        except Refusal as caught:
            refusal = caught
        outcome = "accepted" if refusal is None else f"refused: {refusal.message}"
        assert (refusal is None) == attempt.expected, f"{attempt.text} on {self.today}: the ledger {outcome}"
        if attempt.money_out_of and self.model.projects[attempt.money_out_of].terminated:
            assert refusal is not None, f"{attempt.text} accepted after termination"
        event(f"{kind}: {'accepted' if refusal is None else 'refused'}")
        entries_before = self.entry_count
        if refusal is None:
            attempt.apply()
        self.check()
        assert self.entry_count == entries_before + (1 if refusal is None else 0), "an event writes one entry, a refusal none"

    def check(self) -> None:
        """After every event: the books balance, the contract's invariants hold, the model agrees.

        Each project's contract is read once; each lane is compared through its accounts, all
        read in one query, to keep a step cheap. ``finish`` reads every lane's contract too.
        """
        with Session(self.engine) as s, s.begin():
            self.entry_count = s.execute(text("SELECT count(*) FROM journal_entries")).scalar_one()
            unbalanced = s.execute(text(
                "SELECT entry_id, book, SUM(amount_fen) FROM postings GROUP BY entry_id, book HAVING SUM(amount_fen) <> 0"
            )).all()
            contracts = {code: project_balances(s, code) for code in self.model.projects}
            accounts = {b.account: b.balance_fen for b in account_balances(s)}
        assert unbalanced == []
        for code, project in self.model.projects.items():
            got = contracts[code]
            assert got["grant_released"] <= got["grant_obligated"]
            assert got["advances_outstanding"] >= 0
            assert got["clawback_collected"] <= got["clawback_assessed"]
            expected = {key: sum(lane_contract(lane)[key] for lane in project.lanes) for key in lane_contract(project.lanes[0])}
            assert {key: got[key] for key in expected} == expected, code
            assert got["self_funding_contributed"] == project.contributed
            for lane in project.lanes:
                assert lane_accounts(accounts, lane) == lane_accounts_expected(lane), f"{code} L{lane.n}"
        assert accounts.get("Assets:Memo:Budget:Available:Y2025", 0) == self.model.available
        assert accounts.get("Liabilities:Fiscal:DueToFinance", 0) == -self.model.due_to_finance
        assert sum(v for k, v in accounts.items() if k.startswith("Income:Fiscal:Funding:")) == self.model.funding

    def check_lanes(self) -> None:
        with Session(self.engine) as s, s.begin():
            for code, project in self.model.projects.items():
                for lane in project.lanes:
                    got = project_balances(s, code, lane=f"L{lane.n}")
                    assert got["grant_released"] <= got["grant_obligated"]
                    assert got["advances_outstanding"] >= 0
                    assert got["clawback_collected"] <= got["clawback_assessed"]
                    assert {key: got[key] for key in lane_contract(lane)} == lane_contract(lane), f"{code} L{lane.n}"

    def finish(self, out_dir) -> None:
        """Every lane's contract, ``verify``, and the beancount export against the database."""
        from beancount import loader
        from beancount.core.data import Transaction

        self.check_lanes()
        with Session(self.engine) as s, s.begin():
            result = verify(s)
            assert result.ok, result.problem
            paths = export_beancount(s, out_dir)
            database = {book: {b.account: b.balance_fen for b in account_balances(s, book=book)} for book in ("fiscal", "memo")}
        for path in paths:
            entries, errors, _ = loader.load_file(str(path))
            assert errors == [], [e.message for e in errors]
            sums: dict[str, int] = {}
            for entry in entries:
                if isinstance(entry, Transaction):
                    for posting in entry.postings:
                        fen = posting.units.number * 100
                        assert fen == fen.to_integral_value()
                        sums[posting.account] = sums.get(posting.account, 0) + int(fen)
            assert {k: v for k, v in sums.items() if v} == database[path.stem]


# Each example pays for a fresh ledger: a file copy on SQLite, a schema migrated from scratch
# on PostgreSQL (about 0.4 s more), so PostgreSQL runs fewer examples of the same machine.
EXAMPLES = {"sqlite": 30, "postgresql": 10}


def test_money_out_and_back_keeps_the_books_and_the_model_in_step(fresh_ledger, tmp_path_factory):
    @settings(
        max_examples=EXAMPLES[fresh_ledger.backend],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def events_keep_the_books(data):
        world = data.draw(st.sampled_from(WORLDS), label="world")
        steps = data.draw(st.integers(12, 20), label="steps")
        with fresh_ledger(world) as engine:
            run = Run(engine, data, world)
            run.check()
            for _ in range(steps):
                run.step()
            run.finish(tmp_path_factory.mktemp("export"))

    events_keep_the_books()


def test_the_model_starts_where_the_ledger_does():
    """The model's opening figures, by hand: each lane's share splits 60/40."""
    for spec in (SAIMA, JBGS):
        assert sum(spec.tranches) == spec.obligation_per_lane
        assert spec.tranches[0] * 10 == spec.obligation_per_lane * 6
    assert SAIMA.obligation_per_lane * 2 == SAIMA.grant_fen
    assert URUMQI.obligation_per_lane == URUMQI.bid_fen * 4 // 10
    assert new_model(WORLDS[0]).available == 50_000_000_00 - 1_000_000_00 - 600_000_00
    assert add_months(D(2025, 12, 31), 2) == D(2026, 2, 28)
