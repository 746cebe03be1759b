"""Seeded, reproducible activity for the benchmarks, in two forms.

1. ``services``: N projects in both cities and both modes, with full lifecycles, recorded
   through jiebang's own services (the same calls the verbs make): the demo's nine project
   stories (揭榜挂帅 and 赛马; approvals, pledges, contributions, bid payments in cash,
   equity and in kind, stage results, releases, spending, elimination, termination,
   clawback, collection and remittance, extension) replayed for N projects with their own
   parties, codes and vouchers. The seed picks which story each project follows.

2. ``csv``: a plain-text-ledger-shaped CSV (``txn_id,date,account,amount,book,memo``) of any
   size, for ``jiebang post --file FILE --open-accounts``: grant releases from the city
   treasuries to project advances, spending by budget category, recoveries, and two-book
   releases that also draw down the memo book's obligation (80% two-posting, 20%
   four-posting entries: 2.4 postings per entry on average, as in the issue's ledgers).
   Written streaming, so a 1,000,000-posting file costs no memory.

    python bench/generate.py services --db /tmp/g.db --projects 45 --seed 1
    python bench/generate.py csv --out /tmp/p.csv --transactions 300000 --seed 1
    python bench/generate.py csv --out /tmp/p.csv --postings 1000000
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STORIES = ("_jm2024_001", "_jm2024_002", "_jm2025_003", "_jm2025_004", "_jm2026_005",
           "_ur2024_001", "_ur2025_002", "_ur2025_003", "_ur2026_004")


# --- 1. through the services --------------------------------------------------------------


def _copy_party(party, k: int, index: int):
    from ledger.programme import demo

    registration, division = party.uscc[:2], party.uscc[2:8]
    org8 = f"B{index:02d}{k:05d}"
    return replace(party, uscc=demo.demo_uscc(registration, division, org8), name=f"{party.name}（{k}）")


def services_plan(projects: int, seed: int = 1):
    """A demo ``Plan`` holding ``projects`` projects with their own parties and vouchers.

    Project ``i`` follows story ``seed``-chosen among the nine, with the code
    ``<story code>-<i>`` and vouchers suffixed ``#<i>``; each project brings its own copies
    of the parties it needs and its share of the year's appropriations.
    """
    from ledger.programme import demo

    rng = random.Random(seed)
    order = [STORIES[i % len(STORIES)] for i in range(projects)]
    rng.shuffle(order)

    class CopyPlan(demo.Plan):
        suffix = ""

        def _code(self, code):
            return f"{code}-{self.suffix}" if code else code

        def approve(self, when, story, **spec):
            spec["code"] = self._code(spec["code"])
            spec["voucher"] = f"{spec['voucher']}#{self.suffix}"
            super().approve(when, story, **spec)

        def event(self, when, service, what, **kwargs):
            if "project" in kwargs:
                kwargs["project"] = self._code(kwargs["project"])
            if kwargs.get("voucher"):
                kwargs["voucher"] = f"{kwargs['voucher']}#{self.suffix}"
            if kwargs.get("misused"):
                kwargs["misused"] = [replace(m, spend_voucher=f"{m.spend_voucher}#{self.suffix}") for m in kwargs["misused"]]
            super().event(when, service, f"{what} #{self.suffix}", **kwargs)

    plan = CopyPlan()
    original_p = demo.P
    try:
        for i, story in enumerate(order, start=1):
            plan.suffix = f"{i:05d}"
            parties = {p.key: _copy_party(p, i, n) for n, p in enumerate(demo.PARTIES)}
            demo.P = {key: p.uscc for key, p in parties.items()}
            # Register only the parties this story names (plus nothing else): run the story
            # once into a scratch plan to see which USCCs it uses.
            scratch = CopyPlan()
            scratch.suffix = plan.suffix
            getattr(demo, story)(scratch)
            used = {v for s in scratch.steps for v in _usccs(s)}
            for n, p in enumerate(parties.values()):
                if p.uscc in used:
                    plan.party(p, f"2024-01-{2 + n // 10:02d}")
            getattr(demo, story)(plan)
            # Each project brings the appropriation it draws on, in both cities' patterns.
            for year, day in ((2024, 15), (2025, 10), (2026, 12)):
                plan.appropriate(f"{year}-01-{day}", year, 900, f"BENCH-APPROP-{year}#{plan.suffix}")
    finally:
        demo.P = original_p
    return plan


def _usccs(step) -> list[str]:
    """The USCCs an approval step names (read from its closure)."""
    found = []
    for cell in step.run.__closure__ or ():
        value = cell.cell_contents
        demand = getattr(value, "demand_uscc", None)
        if demand:
            found.append(demand)
            found.extend(value.solver_usccs)
    return found


def build_services(db: str, projects: int, seed: int = 1) -> dict:
    """Create the ledger at ``db`` (a path or URL) and record ``projects`` projects through the services."""
    from sqlalchemy.orm import Session

    from ledger.core.db import make_engine, normalize_url
    from migrations import upgrade_to_head

    started = time.perf_counter()
    engine = make_engine(normalize_url(db), must_exist=False)
    upgrade_to_head(engine)
    plan = services_plan(projects, seed)
    with Session(engine) as session, session.begin():
        events = plan.run(session)
    engine.dispose()
    return {"projects": projects, "events": events, "seconds": time.perf_counter() - started,
            "codes": sorted({c for c in _codes(plan)})}


def _codes(plan) -> list[str]:
    for step in plan.steps:
        if step.what.startswith("approve "):
            yield step.what.split()[1]


# --- 2. the plain-text-ledger-shaped CSV ------------------------------------------------

CATEGORIES = ("Equipment", "Business", "Labour", "Indirect")
CITIES = ("Jiangmen", "Urumqi")
START = dt.date(2024, 1, 1)
DAYS = 4 * 365


def csv_projects(transactions: int) -> int:
    """How many bulk projects a file of this size spreads over (about 100 entries each)."""
    return max(20, transactions // 100)


def write_csv(path: Path, *, transactions: int | None = None, postings: int | None = None, seed: int = 1) -> dict:
    """Write the CSV; give either ``transactions`` or ``postings`` (about 2.4 per transaction)."""
    if transactions is None:
        transactions = max(1, round((postings or 1000) / 2.4))
    rng = random.Random(seed)
    projects = csv_projects(transactions)
    # Dates are non-decreasing through the file, as a journal's are.
    per_day = transactions / DAYS
    count_postings = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(("txn_id", "date", "account", "amount", "book", "memo"))
        rows = []
        for t in range(transactions):
            date = (START + dt.timedelta(days=int(t / per_day))).isoformat()
            p = rng.randrange(projects)
            city = CITIES[p % 2]
            code = f"BK{2024 + p % 3}-{p:05d}"
            amount = rng.randrange(10_000, 500_000_000)  # 100.00 to 5,000,000.00 yuan
            yuan = f"{amount // 100}.{amount % 100:02d}"
            neg = f"-{yuan}"
            txn = f"T{t:07d}"
            u = rng.random()
            if u < 0.35:  # a release: treasury to the project's advance account
                rows += [(txn, date, f"Assets:Bulk:Advances:{code}", yuan, "fiscal", "release"),
                         (txn, date, f"Assets:Bulk:Treasury:{city}", neg, "fiscal", "")]
            elif u < 0.65:  # spending from the advance, by category
                cat = CATEGORIES[rng.randrange(4)]
                rows += [(txn, date, f"Expenses:Bulk:Grant:{code}:{cat}", yuan, "fiscal", f"spend {cat.lower()}"),
                         (txn, date, f"Assets:Bulk:Advances:{code}", neg, "fiscal", "")]
            elif u < 0.72:  # a recovery collected into the treasury
                rows += [(txn, date, f"Assets:Bulk:Treasury:{city}", yuan, "fiscal", "collection"),
                         (txn, date, f"Assets:Bulk:ClawbackReceivable:{code}", neg, "fiscal", "")]
            elif u < 0.80:  # memo: self-funding pledged
                rows += [(txn, date, f"Assets:Memo:Bulk:SelfFunding:{code}", yuan, "memo", "pledge"),
                         (txn, date, f"Equity:Memo:Bulk:Pledged:{code}", neg, "memo", "")]
            else:  # a release that also draws down the obligation in the memo book
                rows += [(txn, date, f"Assets:Bulk:Advances:{code}", yuan, "fiscal", "release with obligation"),
                         (txn, date, f"Assets:Bulk:Treasury:{city}", neg, "fiscal", ""),
                         (txn, date, f"Liabilities:Memo:Bulk:Obligated:{code}", yuan, "memo", ""),
                         (txn, date, f"Assets:Memo:Bulk:Released:{code}", neg, "memo", "")]
            if len(rows) >= 10_000:
                count_postings += len(rows)
                out.writerows(rows)
                rows.clear()
        count_postings += len(rows)
        out.writerows(rows)
    return {"transactions": transactions, "postings": count_postings, "projects": projects,
            "first_date": START.isoformat(), "last_date": (START + dt.timedelta(days=int((transactions - 1) / per_day))).isoformat()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("services", help="record N projects through the services into a new ledger")
    s.add_argument("--db", required=True, help="SQLite path or PostgreSQL URL (created)")
    s.add_argument("--projects", type=int, default=45)
    s.add_argument("--seed", type=int, default=1)
    c = sub.add_parser("csv", help="write a ledger-shaped CSV for jiebang post --file")
    c.add_argument("--out", type=Path, required=True)
    size = c.add_mutually_exclusive_group()
    size.add_argument("--transactions", type=int)
    size.add_argument("--postings", type=int)
    c.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.what == "services":
        result = build_services(args.db, args.projects, args.seed)
        print(f"recorded {result['events']} events for {result['projects']} projects in {result['seconds']:.1f} s")
    else:
        result = write_csv(args.out, transactions=args.transactions, postings=args.postings, seed=args.seed)
        print(f"wrote {args.out}: {result['transactions']:,} entries, {result['postings']:,} postings, "
              f"{result['projects']:,} projects, {result['first_date']}..{result['last_date']}")


if __name__ == "__main__":
    main()
