"""Import benchmark: a workbook of mixed rows across many projects of both cities, and a file
of many rows on one project; prints the time per row of each, to show the import is linear.

    python bench/bench_import.py                               # 100,000 mixed rows, 10,000 on one project, SQLite
    python bench/bench_import.py --url postgresql+psycopg://postgres@127.0.0.1:5432/bench
    python bench/bench_import.py --projects 40 --single 1000   # a quick look
    python bench/bench_import.py --profile /tmp/import.prof    # cProfile of the mixed import

Each file is written with openpyxl (write-only), imported into a fresh ledger (``jiebang init``
for SQLite; a fresh schema for PostgreSQL) by the same code as ``jiebang import``
(``importer.read_file`` then ``importer.run_rows`` and a commit) and must import without a
problem. The mixed workbook has, per project, its solver (a party), its approval, a pledge,
twelve contributions, the contract signing and two releases; a Jiangmen project then its
mid-term check and 31 spending rows, an Urumqi one two bid contract additions, 28 bid payments,
acceptance and the audit report (48 rows a project besides its party and approval; one
demand side per ten projects). Jiangmen
and Urumqi projects alternate. The single-project file is one Jiangmen project: its parties,
approval, contract signing and first release, then contributions and spending alternating.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openpyxl

from ledger.programme.demo import demo_uscc

APPROVED = dt.date(2025, 2, 1)
ROWS_PER_PROJECT = 48  # besides its parties and approval


def _uscc(kind: str, n: int, division: str | None = None) -> str:
    """A well-formed USCC, distinct for each (kind, n, division): 91 (enterprise) or 12
    (institution). A demand side is registered in its project's city (Jiangmen 440700,
    Urumqi 650100), as the eligibility gate requires."""
    registration = "91" if kind == "firm" else "12"
    org8 = f"{'MA' if kind == 'firm' else 'QB'}{n:06d}"
    return demo_uscc(registration, division or ("440700" if kind == "firm" else "650100"), org8)


def _day(n: int) -> dt.date:
    return dt.date(2025, 4, 2) + dt.timedelta(days=n)


HEADERS = {
    "parties": ["uscc", "name", "kind", "revenue", "date"],
    "appropriations": ["year", "amount", "date", "voucher"],
    "projects": ["code", "name", "city", "category", "mode", "demand_uscc", "solver_usccs", "total_investment",
                 "grant", "bids", "start", "end", "date", "voucher"],
    "pledges": ["project", "amount", "category", "date", "voucher"],
    "contributions": ["project", "amount", "category", "date", "voucher"],
    "bid_contracts": ["project", "lane", "amount", "date", "voucher"],
    "bid_payments": ["project", "lane", "amount", "form", "date", "voucher"],
    "stages": ["project", "stage", "passed", "date", "voucher"],
    "releases": ["project", "date", "voucher"],
    "spending": ["project", "lane", "amount", "category", "date", "voucher"],
}


def mixed_sheets(projects: int, total: int | None) -> dict[str, list[list]]:
    """Rows by sheet for ``projects`` projects (even: Jiangmen, odd: Urumqi); trimmed to
    ``total`` rows by leaving out spending at the end, if given."""
    sheets: dict[str, list[list]] = {name: [header] for name, header in HEADERS.items()}
    demands = max(1, projects // 10)
    for d in range(demands):
        sheets["parties"].append([_uscc("firm", d), f"发榜企业{d}", "enterprise", "6亿", "2025-01-02"])
        sheets["parties"].append([_uscc("firm", d, "650100"), f"乌鲁木齐发榜企业{d}", "enterprise", "6亿", "2025-01-02"])
    sheets["appropriations"].append([2025, f"{projects * 400}万", "2025-01-10", "江财预〔2025〕1号"])
    for i in range(projects):
        jm = i % 2 == 0
        code = f"{'JM' if jm else 'UR'}2025-{i:05d}"
        solver = _uscc("institute", i)
        sheets["parties"].append([solver, f"揭榜单位{i}", "institute", None, "2025-01-02"])
        sheets["projects"].append([
            code, f"项目{i}", "jiangmen" if jm else "urumqi", "技术攻关", "揭榜挂帅",
            _uscc("firm", i % demands, None if jm else "650100"), solver,
            "800万", "300万" if jm else None, None if jm else "300万", "2025-03-01", "2027-12-31", APPROVED, f"LX-{code}",
        ])
        sheets["pledges"].append([code, "500万", None, "2025-02-15", f"CN-{code}"])
        for n in range(12):
            sheets["contributions"].append([code, "10000.00", "设备费", _day(n * 20), f"ZT-{code}-{n}"])
        sheets["stages"].append([code, "contract_signed", "yes", "2025-03-05", f"HT-{code}"])
        sheets["releases"].append([code, "2025-04-01", f"ZF-{code}-1"])
        if jm:  # the mid-term check opens the second tranche; spending of what was released
            sheets["stages"].append([code, "midterm", "yes", "2026-03-01", f"ZQ-{code}"])
            sheets["releases"].append([code, "2026-03-05", f"ZF-{code}-2"])
            for n in range(31):
                sheets["spending"].append([code, "L1", "5000.00", "业务费", _day(1 + n * 10), f"PZ-{code}-{n}"])
        else:  # bid payments earn the subsidy; acceptance and the audit report open the final tranche
            sheets["bid_contracts"].append([code, "L1", "50万", "2025-06-01", f"BC-{code}-1"])
            sheets["bid_contracts"].append([code, "L1", "50万", "2025-09-01", f"BC-{code}-2"])
            for n in range(28):
                when = dt.date(2025, 3, 2 + n) if n < 14 else _day(40 + n * 5)
                sheets["bid_payments"].append([code, "L1", "10万", "cash", when, f"BF-{code}-{n}"])
            sheets["stages"].append([code, "acceptance", "yes", "2027-06-01", f"YS-{code}"])
            sheets["stages"].append([code, "audit_report", "yes", "2027-06-15", f"SJ-{code}"])
            sheets["releases"].append([code, "2027-07-01", f"ZF-{code}-2"])
    if total is not None:
        extra = sum(len(rows) - 1 for rows in sheets.values()) - total
        if extra > 0:
            del sheets["spending"][-extra:]
    return sheets


def single_sheets(rows: int) -> dict[str, list[list]]:
    """``rows`` rows on one Jiangmen project."""
    code = "JM2025-00001"
    demand, solver = _uscc("firm", 900_001), _uscc("institute", 900_001)
    sheets = {
        "parties": [HEADERS["parties"], [demand, "发榜企业", "enterprise", "6亿", "2025-01-02"],
                    [solver, "揭榜单位", "institute", None, "2025-01-02"]],
        "appropriations": [HEADERS["appropriations"], [2025, "5000万", "2025-01-10", "江财预〔2025〕1号"]],
        "projects": [HEADERS["projects"], [code, "项目", "jiangmen", "技术攻关", "揭榜挂帅", demand, solver, "800万", "300万",
                                           None, "2025-03-01", "2027-12-31", APPROVED, f"LX-{code}"]],
        "stages": [HEADERS["stages"], [code, "contract_signed", "yes", "2025-03-05", f"HT-{code}"]],
        "releases": [HEADERS["releases"], [code, "2025-04-01", f"ZF-{code}-1"]],
        "contributions": [HEADERS["contributions"]],
        "spending": [HEADERS["spending"]],
    }
    left = rows - sum(len(r) - 1 for r in sheets.values())
    for n in range(left):
        when = _day(n % 900)
        if n % 2:
            sheets["spending"].append([code, "L1", "50.00", "业务费", when, f"PZ-{n}"])
        else:
            sheets["contributions"].append([code, "100.00", "设备费", when, f"ZT-{n}"])
    return sheets


def write(path: Path, sheets: dict[str, list[list]]) -> int:
    workbook = openpyxl.Workbook(write_only=True)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return sum(len(rows) - 1 for rows in sheets.values())


def fresh_ledger(url: str | None, workdir: Path) -> str:
    """A fresh, migrated ledger: a SQLite file in ``workdir``, or a schema in the PostgreSQL
    database of ``url`` (dropped by ``drop_ledger``)."""
    if url is None:
        db = workdir / f"ledger-{uuid.uuid4().hex[:8]}.db"
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "--db", str(db), "init"], check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        return f"sqlite:///{db}"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from migrations import upgrade_to_head

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    upgrade_to_head(create_engine(scoped))
    return scoped


def drop_ledger(url: str, scoped: str) -> None:
    if url is None:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = make_url(scoped).query["options"].split("=", 1)[1]
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def run(url: str, path: Path, profile: str | None) -> tuple[float, float, float, int]:
    from sqlalchemy.orm import Session

    from ledger.core.db import make_engine
    from ledger.programme import importer

    started = time.perf_counter()
    batch = importer.read_file(path, allow_future=True)  # the workbook runs into 2027
    read = time.perf_counter() - started
    engine = make_engine(url)
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    with Session(engine) as session:
        if profiler:
            profiler.enable()
        done = [0]

        def advance(n: int) -> None:  # a line every 10,000 rows: the time per row as the ledger grows
            done[0] += n
            if done[0] % 10_000 == 0:
                print(f"  {done[0]:,} rows in {time.perf_counter() - started:.1f} s "
                      f"({time.process_time() - cpu:.1f} s CPU)", file=sys.stderr, flush=True)

        report = importer.run_rows(session, batch, actor="bench", progress=advance)
        if profiler:
            profiler.disable()
        if report.problems:
            for problem in report.problems[:10]:
                print(problem, file=sys.stderr)
            raise SystemExit(f"{len(report.problems)} problems in {path}")
        session.commit()
    ran, cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler:
        profiler.dump_stats(profile)
    engine.dispose()
    return read, ran, cpu, report.written_total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a PostgreSQL URL (a fresh schema is made in it); default: a SQLite file")
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the mixed workbook (0: all the projects make)")
    parser.add_argument("--single", type=int, default=10_000, help="rows of the one-project file (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--profile", help="write a cProfile of the mixed import here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-import-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    files = [("mixed", mixed_sheets(args.projects, args.rows or None))]
    if args.single:
        files.append(("one project", single_sheets(args.single)))
    for label, sheets in files:
        path = workdir / f"{label.replace(' ', '-')}.xlsx"
        rows = write(path, sheets)
        url = fresh_ledger(args.url, workdir)
        try:
            read, ran, cpu, written = run(url, path, args.profile if label == "mixed" else None)
        finally:
            drop_ledger(args.url, url)
        assert written == rows, (written, rows)
        results.append((label, rows, read, ran, cpu))
        print(f"{label}: {rows:,} rows read in {read:.1f} s, imported in {ran:.1f} s ({cpu:.1f} s CPU in this process)", flush=True)
    backend = "PostgreSQL" if args.url else "SQLite"
    print(f"| file ({backend}) | rows | read | import (wall) | import (CPU, this process) | total wall | per row |")
    print("|---|---|---|---|---|---|---|")
    for label, rows, read, ran, cpu in results:
        print(f"| {label} | {rows:,} | {read:.1f} s | {ran:.1f} s | {cpu:.1f} s | {read + ran:.1f} s | {(read + ran) / rows * 1000:.2f} ms |")
    if len(results) == 2:
        (_, r1, a1, b1, _c1), (_, r2, a2, b2, _c2) = results
        print(f"one project / mixed, wall time per row: {((a2 + b2) / r2) / ((a1 + b1) / r1):.2f}")


if __name__ == "__main__":
    main()
