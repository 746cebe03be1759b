"""Property: importing a file posts exactly what recording its rows one by one through the
services (what each verb calls) posts, entry for entry and hash for hash, and refuses the
same rows with the same messages. On SQLite and PostgreSQL.

The import keeps each project's state in a cache advanced by the fold of every entry it
posts (``ledger.programme.cache``); the one-by-one route has no cache and reloads the
project for every row, as a verb does. Both start from the same committed base (parties,
an appropriation, three projects of both cities), each in a transaction rolled back at
the end, so one database serves every example.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import programme
from ledger.core.errors import Refusal
from ledger.core.models import JournalEntry
from ledger.programme import importer

DEMAND = "91440700MA4UJ00013"
UR_DEMAND = "91650100MA7B00011L"  # Urumqi's demand side is registered in Urumqi (division 6501)
FIRM = "91110000600037341L"
UNIVERSITY = "12440000455858018R"
INSTITUTE = "12100000400010001P"
PROJECTS = ("JM2025-001", "UR2025-001", "UR2025-002", "UR2099-999")  # the last does not exist
CATEGORIES = ("设备费", "业务费", "劳务费", "间接费用", "材料费", "设备费", "业务费", "nonsense")
START = dt.date(2025, 1, 20)  # the approvals are dated 2025-02-01: some rows come before


def _base(session: Session) -> None:
    for uscc, name in ((DEMAND, "江门某家电有限公司"), (UR_DEMAND, "新疆某光伏有限公司"), (FIRM, "某科技公司"),
                       (UNIVERSITY, "某大学"), (INSTITUTE, "某研究所")):
        programme.register_party(session, programme.PartyInput(
            uscc=uscc, name=name, revenue_fen=600_000_000_00 if uscc in (DEMAND, UR_DEMAND) else None, date=dt.date(2025, 1, 2),
        ), actor="base")
    programme.appropriate(session, year=2025, amount_fen=50_000_000_00, date=dt.date(2025, 1, 10), voucher="江财预〔2025〕3号", actor="base")
    approvals = (
        ("JM2025-001", "jiangmen", "jbgs", (UNIVERSITY,), 8_000_000_00, 3_000_000_00, ()),
        ("UR2025-001", "urumqi", "jbgs", (FIRM,), 25_000_000_00, None, (20_000_000_00,)),
        ("UR2025-002", "urumqi", "saima", (UNIVERSITY, INSTITUTE), 15_000_000_00, None, (6_000_000_00, 6_000_000_00)),
    )
    for code, city, mode, solvers, total, grant, bids in approvals:
        programme.approve_project(session, programme.ApprovalInput(
            code=code, name="项目", city=city, category="tech_breakthrough", mode=mode,
            demand_uscc=DEMAND if city == "jiangmen" else UR_DEMAND,
            solver_usccs=solvers, total_investment_fen=total, approval_date=dt.date(2025, 2, 1),
            start_date=dt.date(2025, 3, 1), end_date=dt.date(2027, 12, 31), approved_grant_fen=grant,
            bid_contract_fen=bids, voucher=f"APPROVAL-{code}",
        ), actor="base")


# --- random rows -------------------------------------------------------------------------

# Mostly rows that pass, some that each rule refuses: a date before the approval, an unknown
# project or lane, an amount past a contract or the advances, a category that is not one.
days = st.one_of(st.integers(40, 400), st.integers(40, 400), st.integers(0, 40)).map(lambda n: START + dt.timedelta(days=n))
projects = st.sampled_from(PROJECTS[:3] * 3 + PROJECTS[3:])
lanes = st.sampled_from((None, None, None, "L1", "L2", "L3"))
amounts = st.sampled_from((1, 100_00, 50_000_00, 50_000_00, 200_000_00, 3_000_000_00, 30_000_000_00))


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


MOST = st.one_of(
    st.tuples(st.just("pledges"), st.fixed_dictionaries({"project": projects, "amount": amounts, "date": days})),
    st.tuples(st.just("contributions"), st.fixed_dictionaries(
        {"project": projects, "amount": amounts, "category": st.sampled_from(CATEGORIES), "date": days})),
    st.tuples(st.just("bid_contracts"), st.fixed_dictionaries({"project": projects, "lane": lanes, "amount": amounts, "date": days})),
    st.tuples(st.just("bid_payments"), st.fixed_dictionaries(
        {"project": projects, "lane": lanes, "amount": amounts, "form": st.sampled_from(("cash", "equity", "in_kind")), "date": days})),
    st.tuples(st.just("stages"), st.fixed_dictionaries({
        "project": projects, "stage": st.sampled_from(("contract_signed",) * 3 + ("midterm", "stage_assessment", "acceptance")),
        "passed": st.sampled_from((True, True, True, False)), "lane": lanes, "date": days})),
    st.tuples(st.just("releases"), st.fixed_dictionaries({"project": projects, "lane": lanes, "date": days})),
    st.tuples(st.just("spending"), st.fixed_dictionaries(
        {"project": projects, "lane": lanes, "amount": amounts, "category": st.sampled_from(CATEGORIES), "date": days})),
    st.tuples(st.just("extensions"), st.fixed_dictionaries({"project": projects, "months": st.integers(0, 14), "date": days})),
    st.tuples(st.just("collections"), st.fixed_dictionaries({"project": projects, "lane": lanes, "amount": amounts, "date": days})),
)
# A termination ends its project's story: drawn for one row in eight, late in the year.
ROWS = st.one_of(*[MOST] * 7, st.tuples(st.just("terminations"), st.fixed_dictionaries(
    {"project": projects, "revoke": st.booleans(), "date": days.filter(lambda d: d.month >= 10)})))


def _on(month: int, day: int) -> dt.date:
    return dt.date(2025, month, day)


# Two stories each row of which depends on the state the rows before it leave: conditions
# met, tranches released, advances spent, a lane eliminated, a termination and its clawback.
STORY_JIANGMEN = [
    ("stages", {"project": "JM2025-001", "stage": "contract_signed", "passed": True, "lane": None, "date": _on(3, 5)}),
    ("releases", {"project": "JM2025-001", "lane": None, "date": _on(3, 10)}),
    ("spending", {"project": "JM2025-001", "lane": "L1", "amount": 200_000_00, "category": "设备费", "date": _on(4, 1)}),
    ("spending", {"project": "JM2025-001", "lane": None, "amount": 50_000_00, "category": "业务费", "date": _on(4, 2)}),
    ("spending", {"project": "JM2025-001", "lane": None, "amount": 30_000_000_00, "category": "业务费", "date": _on(4, 3)}),
    ("releases", {"project": "JM2025-001", "lane": None, "date": _on(4, 5)}),
    ("stages", {"project": "JM2025-001", "stage": "midterm", "passed": True, "lane": None, "date": _on(6, 1)}),
    ("releases", {"project": "JM2025-001", "lane": None, "date": _on(6, 5)}),
    ("terminations", {"project": "JM2025-001", "revoke": False, "date": _on(10, 1)}),
    ("collections", {"project": "JM2025-001", "lane": None, "amount": 100_00, "date": _on(10, 5)}),
    ("contributions", {"project": "JM2025-001", "amount": 100_00, "category": "设备费", "date": _on(10, 6)}),
]
STORY_URUMQI = [
    ("bid_payments", {"project": "UR2025-001", "lane": None, "amount": 3_000_000_00, "form": "cash", "date": _on(3, 2)}),
    ("stages", {"project": "UR2025-001", "stage": "contract_signed", "passed": True, "lane": None, "date": _on(3, 5)}),
    ("releases", {"project": "UR2025-001", "lane": None, "date": _on(3, 10)}),
    ("spending", {"project": "UR2025-001", "lane": None, "amount": 200_000_00, "category": "设备费", "date": _on(4, 1)}),
    ("bid_payments", {"project": "UR2025-002", "lane": "L2", "amount": 50_000_00, "form": "cash", "date": _on(3, 2)}),
    ("stages", {"project": "UR2025-002", "stage": "stage_assessment", "passed": False, "lane": "L1", "date": _on(5, 1)}),
    ("bid_payments", {"project": "UR2025-002", "lane": "L1", "amount": 50_000_00, "form": "cash", "date": _on(5, 2)}),
    ("extensions", {"project": "UR2025-002", "months": 6, "date": _on(6, 1)}),
    ("extensions", {"project": "UR2025-002", "months": 6, "date": _on(6, 2)}),
    ("terminations", {"project": "UR2025-001", "revoke": True, "date": _on(11, 1)}),
    ("collections", {"project": "UR2025-001", "lane": None, "amount": 100_00, "date": _on(11, 5)}),
    ("terminations", {"project": "UR2025-001", "revoke": False, "date": _on(11, 6)}),
]


def _numbered(rows: list[tuple[str, dict]]) -> list[tuple[str, int, dict]]:
    """Each row with its voucher and its row number on its sheet (row 1 is the header)."""
    counts: dict[str, int] = {}
    out = []
    for index, (sheet, values) in enumerate(rows):
        counts[sheet] = counts.get(sheet, 1) + 1
        out.append((sheet, counts[sheet], values | {"voucher": f"V-{index:03d}"}))
    return out


def _write(path: Path, rows: list[tuple[str, int, dict]]) -> None:
    workbook = openpyxl.Workbook(write_only=True)
    by_sheet: dict[str, list] = {}
    for sheet, _, values in rows:
        by_sheet.setdefault(sheet, []).append(values)
    for sheet, items in by_sheet.items():
        ws = workbook.create_sheet(sheet)
        keys = [k for k in importer.SHEETS[sheet].names if k in items[0] or k in ("reference", "voucher", "reason")]
        ws.append(keys)
        for values in items:
            cells = {**values, "reference": f"REF-{values['voucher']}", "reason": f"REASON-{values['voucher']}"}
            if "amount" in cells:
                cells["amount"] = _yuan(cells["amount"])
            if "passed" in cells:
                cells["passed"] = "yes" if cells["passed"] else "no"
            if "revoke" in cells:
                cells["revoke"] = "yes" if cells["revoke"] else "no"
            ws.append([cells.get(k) for k in keys])
    workbook.save(path)


def _one_by_one(session: Session, sheet: str, v: dict):
    """What the verb of the sheet calls, with the same arguments the import gives it."""
    common = {"voucher": v["voucher"], "actor": "officer"}
    if sheet == "pledges":
        return programme.pledge(session, project=v["project"], amount_fen=v["amount"], date=v["date"], category=None, **common)
    if sheet == "contributions":
        return programme.contribute(session, project=v["project"], amount_fen=v["amount"], category=v["category"], date=v["date"], memo="", **common)
    if sheet == "bid_contracts":
        return programme.bid_contract(session, project=v["project"], lane=v["lane"], amount_fen=v["amount"], date=v["date"], **common)
    if sheet == "bid_payments":
        return programme.bid_pay(session, project=v["project"], lane=v["lane"], amount_fen=v["amount"], form=v["form"], date=v["date"], **common)
    if sheet == "stages":
        return programme.record_stage(session, project=v["project"], stage=v["stage"], passed=v["passed"], date=v["date"],
                                      lane=v["lane"], reference=f"REF-{v['voucher']}", **common)
    if sheet == "releases":
        return programme.release(session, project=v["project"], lane=v["lane"], date=v["date"], tranche=None, **common)
    if sheet == "spending":
        return programme.spend(session, project=v["project"], lane=v["lane"], amount_fen=v["amount"], category=v["category"],
                               date=v["date"], counterparty=None, justification=None, memo="", **common)
    if sheet == "extensions":
        return programme.extend(session, project=v["project"], months=v["months"], date=v["date"], reference=f"REF-{v['voucher']}", reason=f"REASON-{v['voucher']}", **common)
    if sheet == "terminations":
        return programme.terminate(session, project=v["project"], date=v["date"], reference=f"REF-{v['voucher']}",
                                   misused=[], revoke=v["revoke"], **common)
    if sheet == "collections":
        return programme.collect(session, project=v["project"], lane=v["lane"], amount_fen=v["amount"], date=v["date"], **common)
    raise AssertionError(sheet)


def _journal(session: Session, after: int) -> list[tuple]:
    return [tuple(r) for r in session.execute(
        select(JournalEntry.id, JournalEntry.kind, JournalEntry.voucher, JournalEntry.content_hash, JournalEntry.hash,
               JournalEntry.facts, JournalEntry.trace)
        .where(JournalEntry.id > after).order_by(JournalEntry.id)
    )]


def _both_ways(engine, batch, base_last: int, calls) -> tuple:
    """Import the batch, then make the ``calls`` ((sheet, row number), call) one by one, each
    in its own savepoint as a verb's own transaction; both rolled back. Returns the import's
    report and journal, and the calls' refusals and journal."""
    with Session(engine) as session:
        report = importer.run_rows(session, batch, actor="officer")
        imported = _journal(session, base_last)
        session.rollback()
    refused = []
    with Session(engine) as session:
        for (sheet, number), call in calls:
            try:
                with session.begin_nested():
                    call(session)
            except Refusal as refusal:
                refused.append((sheet, number, refusal.message))
        one_by_one = _journal(session, base_last)
        session.rollback()
    return report, imported, refused, one_by_one


def test_import_equals_the_services_one_by_one(engine, tmp_path):
    with Session(engine) as session, session.begin():
        _base(session)
    with Session(engine) as session:
        base_last = session.execute(select(JournalEntry.id).order_by(JournalEntry.id.desc()).limit(1)).scalar_one()
    examples = {"refused": 0, "clean": 0, "entries": 0}

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(ROWS, min_size=1, max_size=20))
    @example(STORY_JIANGMEN)
    @example(STORY_URUMQI)
    def check(drawn):
        rows = _numbered(drawn)
        path = tmp_path / "random.xlsx"
        _write(path, rows)
        batch = importer.read_file(path)
        assert not batch.problems, batch.problems

        order = sorted(rows, key=lambda r: (r[2]["date"], importer.SHEET_ORDER[r[0]], r[1]))
        report, imported, refused, one_by_one = _both_ways(
            engine, batch, base_last, [((sheet, number), lambda s, sheet=sheet, v=values: _one_by_one(s, sheet, v))
                                       for sheet, number, values in order])

        assert imported == one_by_one
        assert sorted((p.sheet, p.row, p.reason) for p in report.problems) == sorted(refused)
        examples["refused" if refused else "clean"] += 1
        examples["entries"] += len(imported)

    check()
    # Both sides of the property were exercised: files with refusals and files without.
    assert examples["refused"] and examples["clean"] and examples["entries"], examples


def test_a_cached_fold_handed_out_is_a_copy_of_every_field():
    """``cache.snapshot`` copies each field of the fold, so a new field cannot be forgotten and
    a state a service holds does not move when the cache advances."""
    import dataclasses

    from ledger.programme import cache, fold

    folded = fold.fold_project(dt.date(2025, 2, 1), [
        fold.ProjectEvent(1, dt.date(2025, 3, 1), "stage", None, "contract_signed", True, None, {}),
        fold.ProjectEvent(2, dt.date(2025, 3, 2), "bid_payment", 1, None, None, None, {}),
        fold.ProjectEvent(3, dt.date(2025, 3, 3), "release", 1, None, None, 7, {}),
        fold.ProjectEvent(4, dt.date(2025, 3, 4), "stage", 2, "stage_assessment", False, None, {}),
        fold.ProjectEvent(5, dt.date(2025, 3, 5), "extension", None, None, None, None, {"months": 6}),
        fold.ProjectEvent(6, dt.date(2025, 3, 6), "termination", None, None, None, None, {}),
        fold.ProjectEvent(7, dt.date(2025, 3, 7), "closure", None, None, None, None, {}),
        # Issue 14 point 8: a failed acceptance left to the bureau, an audited cash total, a
        # retained balance recovered.
        fold.ProjectEvent(10, dt.date(2025, 3, 7), "stage", None, "acceptance", False, None, {"consequence": "officer"}),
        fold.ProjectEvent(11, dt.date(2025, 3, 7), "stage", None, "audit_report", True, None, {"audited_cash": {"L1": "250000000"}}),
        fold.ProjectEvent(12, dt.date(2025, 3, 7), "balance_recovery", None, None, None, None, {}),
    ], {})
    copied = cache.snapshot(folded)
    for f in dataclasses.fields(fold.ProjectFold):
        assert getattr(copied, f.name) == getattr(folded, f.name), f.name
        assert getattr(folded, f.name) not in (None, 0, {}, set()), f.name  # the example sets every field
    fold.apply_event(folded, fold.ProjectEvent(8, dt.date(2025, 3, 8), "stage", 1, "midterm", True, None, {}))
    fold.apply_event(folded, fold.ProjectEvent(9, dt.date(2025, 3, 9), "release", 1, None, None, 8, {}))
    assert "midterm_passed" not in copied.met(1) and copied.released_tranches == {7}


def test_parties_and_approvals_in_a_file_equal_the_services_one_by_one(engine, tmp_path):
    """What the import keeps for parties and approvals (the parties, their relations, a year's
    available budget, the rules pins) gives the journal and refusals the services give one row
    at a time, through refusals that roll a run of rows back: a relation declared in the file
    refuses a later approval, a budget the file's first approval used refuses the next and fits
    the last."""
    from ledger.programme.demo import demo_uscc

    with Session(engine) as session, session.begin():
        _base(session)
    with Session(engine) as session:
        base_last = session.execute(select(JournalEntry.id).order_by(JournalEntry.id.desc()).limit(1)).scalar_one()
    newco, related_uni, unknown = (demo_uscc("91", "440700", "MA000101"), demo_uscc("12", "440700", "QB000102"),
                                   demo_uscc("91", "440700", "MA000103"))
    fourth, fifth = demo_uscc("91", "440700", "MA000104"), demo_uscc("91", "440700", "MA000105")
    parties = [["uscc", "name", "kind", "related", "date"]] + [
        [newco, "新公司", "enterprise", None, "2026-01-02"],
        # Registered after the first approval has read the relations, declaring one to Urumqi's demand side.
        [related_uni, "关联大学", "university", UR_DEMAND, "2026-02-01"],
        [fourth, "第四公司", "enterprise", None, "2026-01-02"],
        [fifth, "第五公司", "enterprise", None, "2026-01-02"],
    ]
    appropriations = [["year", "amount", "date", "voucher"], [2026, "5,000,000.00", "2026-01-05", "江财预〔2026〕1号"]]
    projects = [["code", "name", "city", "category", "mode", "demand_uscc", "solver_usccs", "total_investment", "grant",
                 "bids", "start", "end", "budget_year", "date", "voucher"]]
    for n, solver, grant in ((101, newco, "3,000,000.00"), (102, fourth, "3,000,000.00"), (103, related_uni, None),
                             (104, unknown, "1,000,000.00"), (105, fifth, "2,000,000.00")):
        city = "urumqi" if grant is None else "jiangmen"  # Urumqi's rules ban a related solver
        projects.append([f"{'UR' if grant is None else 'JM'}2026-{n}", "项目", city, "tech_breakthrough", "jbgs",
                         UR_DEMAND if grant is None else DEMAND, solver, "8,000,000.00", grant,
                         "1,000,000.00" if grant is None else None, "2026-03-01", "2027-12-31", 2026,
                         "2026-01-20" if n == 101 else "2026-02-01", f"APPROVE-{n}"])
    path = tmp_path / "parties.xlsx"
    workbook = openpyxl.Workbook(write_only=True)
    for name, rows in (("parties", parties), ("appropriations", appropriations), ("projects", projects)):
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    batch = importer.read_file(path)
    assert not batch.problems, batch.problems

    # Each row through the import's own adapter to its service, one by one with no import cache.
    order = sorted(batch.rows, key=lambda r: (r.date, importer.SHEET_ORDER[r.sheet], r.number))
    report, imported, refused, one_by_one = _both_ways(
        engine, batch, base_last,
        [((r.sheet, r.number), lambda s, r=r: importer.SERVICES[r.sheet](s, r.values, "officer")) for r in order])

    assert imported == one_by_one
    assert sorted((p.sheet, p.row, p.reason) for p in report.problems) == sorted(refused)
    # The refusals the story is about: the relation declared in the file, the unregistered
    # solver and the budget the file's approvals used up (3,000,000.00 of 5,000,000.00).
    assert [(sheet, number) for sheet, number, _ in sorted(refused)] == [("projects", 3), ("projects", 4), ("projects", 5)]
    assert "2,000,000.00" in refused[0][2] and "related" in refused[1][2] and "not registered" in refused[2][2], refused
    assert report.written == {"parties": 4, "appropriations": 1, "projects": 2}
