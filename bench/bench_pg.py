#!/usr/bin/env python3
"""jiebang on PostgreSQL: the bulk path, the whole-ledger reads, and 8 concurrent writers.

1. Creates a fresh PostgreSQL database, `jiebang init`, records a few projects through the
   services (for the one-project read), then ingests the ledger-shaped CSV of
   ``bench/generate.py csv`` with ``jiebang post --file --open-accounts`` and times, as whole
   processes (wall, CPU and peak RSS from /usr/bin/time), ``--reps`` times: ingest (each rep
   into its own fresh database), ``balances --as-of``, ``verify``, ``export beancount``,
   ``balances --project``, and ``project_balances()`` as a service call in the process.
2. Starts ``--writers`` processes (spawn) that wait on one barrier and then, for
   ``--duration`` seconds, post small balanced two-posting entries through
   ``ledger.core.journal.post_many``: mode ``single`` posts one entry per transaction (an officer
   recording events), mode ``batch`` posts ``--batch`` entries per transaction (an import).
   Reports entries/s, then runs ``jiebang verify`` and checks in SQL that every entry and
   every book sums to zero and that the entry count is what the writers reported.
The databases are dropped at the end (``--keep`` keeps the last one).

    python bench/bench_pg.py --transactions 100000 --reps 3 --duration 20
    python bench/bench_pg.py --transactions 2000 --reps 1 --duration 3      # smoke
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
BIN = Path(sys.executable).parent
JIEBANG = str(BIN / "jiebang") if (BIN / "jiebang").exists() else "jiebang"
AS_OF = "2025-12-31"
COMMANDS: list[str] = []


def admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def create_db(name: str) -> str:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{name}"')
    return f"{SERVER}/{name}"


def drop_db(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(argv: list[str], *, record: bool = True) -> dict:
    """Run a whole process under /usr/bin/time: wall, CPU, peak RSS (MB)."""
    if record:
        COMMANDS.append(" ".join(argv))
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        started = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", tf.name, *argv],
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        user, system, rss = tf.read().split()[-3:]
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"wall": wall, "cpu": float(user) + float(system), "rss": int(rss) / 1024, "out": proc.stdout}


def summary(runs: list[dict]) -> dict:
    walls = [r["wall"] for r in runs]
    return {"median": statistics.median(walls), "min": min(walls), "max": max(walls),
            "cpu": statistics.median(r["cpu"] for r in runs), "rss": max(r["rss"] for r in runs), "n": len(runs)}


SERVICE_CALL = r'''
import sys, time, datetime as dt
sys.path.insert(0, sys.argv[3])
from sqlalchemy.orm import Session
from ledger.core.db import make_engine, read_only
from ledger.programme import project_balances
engine = read_only(make_engine(sys.argv[1]))
as_of = dt.date.fromisoformat(sys.argv[4])
with Session(engine) as session, session.begin():
    project_balances(session, sys.argv[2], as_of=as_of)  # warm: connection, statement
    times = []
    for _ in range(20):
        t = time.perf_counter(); project_balances(session, sys.argv[2], as_of=as_of); times.append(time.perf_counter() - t)
times.sort()
print(times[len(times) // 2] * 1000, times[0] * 1000, times[-1] * 1000)
'''


# --- part 1: ingest and whole-ledger reads ------------------------------------------------


def part1(args, base: str) -> tuple[dict, str, dict]:
    import generate

    work = Path(args.workdir or tempfile.mkdtemp(prefix="jbpg"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / f"postings-{args.transactions}.csv"
    if not csv_path.exists():
        info = generate.write_csv(csv_path, transactions=args.transactions, seed=1)
        print(f"wrote {csv_path}: {info['transactions']:,} entries, {info['postings']:,} postings", flush=True)
    results: dict[str, list[dict]] = {k: [] for k in ("ingest", "tb", "verify", "export", "project")}
    service: list[tuple[float, float, float]] = []
    code = None
    last_db = None
    for rep in range(args.reps):
        name = f"{base}_{rep}"
        url = create_db(name)
        init = timed([JIEBANG, "--db", url, "init"], record=rep == 0)
        print(f"[rep {rep + 1}] init {init['wall']:.2f} s", flush=True)
        if args.projects:
            import generate as g

            built = g.build_services(url, args.projects, seed=1)
            code = built["codes"][min(3, len(built["codes"]) - 1)]
            if rep == 0:
                COMMANDS.append(f"python bench/generate.py services --db {url} --projects {args.projects} --seed 1")
            print(f"[rep {rep + 1}] services: {built['events']} events, {args.projects} projects in {built['seconds']:.1f} s", flush=True)
        r = timed([JIEBANG, "--db", url, "post", "--file", str(csv_path), "--open-accounts"], record=rep == 0)
        results["ingest"].append(r)
        print(f"[rep {rep + 1}] ingest {r['wall']:.1f} s, {r['rss']:.0f} MB: {r['out'].strip()}", flush=True)
        if last_db is not None and not args.keep_all:
            drop_db(last_db)
        last_db = name
        # reads on this rep's database (interleaved: one of each per rep)
        ops = [("tb", [JIEBANG, "--db", url, "balances", "--as-of", AS_OF, "--format", "csv"]),
               ("verify", [JIEBANG, "--db", url, "verify"]),
               ("export", [JIEBANG, "--db", url, "export", "beancount", "--out", str(work / f"bean-{rep}")])]
        if code:
            ops.append(("project", [JIEBANG, "--db", url, "balances", "--project", code, "--as-of", AS_OF]))
        for key, argv in ops:
            r = timed(argv, record=rep == 0)
            results[key].append(r)
            print(f"[rep {rep + 1}] {key} {r['wall']:.2f} s, {r['rss']:.0f} MB", flush=True)
        if code:
            out = subprocess.run([sys.executable, "-c", SERVICE_CALL, url, code, str(ROOT), AS_OF],
                                 capture_output=True, text=True, check=True).stdout.split()
            service.append(tuple(float(x) for x in out))
            print(f"[rep {rep + 1}] project_balances() {float(out[0]):.2f} ms", flush=True)
    table = {k: summary(v) for k, v in results.items() if v}
    if service:
        table["service"] = {"median": statistics.median(s[0] for s in service),
                            "min": min(s[1] for s in service), "max": max(s[2] for s in service)}
    entries = int(results["ingest"][0]["out"].split()[1])
    table["ingest"]["entries"] = entries
    return table, last_db, {"csv": str(csv_path)}


# --- part 2: concurrent writers -----------------------------------------------------------


def _writer(url: str, index: int, mode: str, batch: int, duration: float, barrier, results) -> None:
    from sqlalchemy.orm import Session

    from ledger.core.db import make_engine
    from ledger.core.journal import EntryDraft, PostingDraft, post_many

    engine = make_engine(url)
    debit, credit = f"Assets:Bench:W{index}:Advance", f"Assets:Bench:W{index}:Treasury"
    day = dt.date(2026, 1, 5)
    per_txn = 1 if mode == "single" else batch
    n = 0
    latencies: list[float] = []

    def drafts(k: int):
        out = []
        for j in range(k):
            fen = 100 + (n + j) % 9_900
            out.append(EntryDraft(value_date=day, kind="manual", voucher=f"BENCH-{mode}-W{index}-{n + j:07d}",
                                  memo="bench writer", actor=f"writer-{index}",
                                  postings=(PostingDraft(debit, fen), PostingDraft(credit, -fen))))
        return out

    # warm: the connection pool, the statements' compiled cache
    with Session(engine) as session, session.begin():
        session.connection()
    barrier.wait(timeout=60)
    started = time.perf_counter()
    deadline = started + duration
    while time.perf_counter() < deadline:
        batch_drafts = drafts(per_txn)
        t = time.perf_counter()
        with Session(engine) as session, session.begin():
            post_many(session, batch_drafts)
        latencies.append(time.perf_counter() - t)
        n += per_txn
    elapsed = time.perf_counter() - started
    engine.dispose()
    latencies.sort()
    results.put((index, n, elapsed, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)],
                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def part2(args, name: str, mode: str) -> dict:
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from ledger.core.db import make_engine
    from ledger.core.journal import AccountSpec, open_accounts

    url = create_db(name)
    timed([JIEBANG, "--db", url, "init"], record=False)
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        specs = []
        for i in range(args.writers):
            specs += [AccountSpec(f"Assets:Bench:W{i}:Advance", "fiscal", dt.date(2026, 1, 1)),
                      AccountSpec(f"Assets:Bench:W{i}:Treasury", "fiscal", dt.date(2026, 1, 1))]
        open_accounts(session, specs)
    if args.seed_entries:
        # An existing ledger, its statistics current (as autovacuum / an operator leaves it
        # after a load): without ANALYZE the plans made on empty tables make every
        # transaction's statements slower as the tables grow (see bench/README.md).
        from ledger.core.journal import EntryDraft, PostingDraft, post_many

        seed = [EntryDraft(value_date=dt.date(2026, 1, 2), kind="manual", voucher=f"SEED-{k:07d}", actor="seed",
                           postings=(PostingDraft("Assets:Bench:W0:Advance", 100 + k % 900),
                                     PostingDraft("Assets:Bench:W0:Treasury", -(100 + k % 900))))
                for k in range(args.seed_entries)]
        with Session(engine) as session, session.begin():
            post_many(session, seed)
    if args.analyze:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(args.writers + 1)
    results = context.Queue()
    procs = [context.Process(target=_writer, args=(url, i, mode, args.batch, args.duration, barrier, results))
             for i in range(args.writers)]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    started = time.perf_counter()
    rows = [results.get(timeout=args.duration + 120) for _ in procs]
    wall = time.perf_counter() - started
    for p in procs:
        p.join(timeout=30)
    total = sum(r[1] for r in rows)
    out = {"mode": mode, "entries": total, "wall": wall, "rate": total / wall,
           "median_txn_ms": statistics.median(r[3] for r in rows) * 1000,
           "p99_txn_ms": max(r[4] for r in rows) * 1000, "rss": max(r[5] for r in rows),
           "per_writer": sorted(r[1] for r in rows)}
    # invariants
    v = timed([JIEBANG, "--db", url, "verify"], record=False)
    out["verify"] = v["out"].strip().splitlines()[-1] if v["out"].strip() else ""
    out["verify_wall"] = v["wall"]
    with engine.connect() as conn:
        out["entries_in_db"] = conn.execute(text("select count(*) from journal_entries where voucher like 'BENCH-%'")).scalar_one()
        out["unbalanced_entries"] = conn.execute(text(
            "select count(*) from (select entry_id, book from postings group by entry_id, book "
            "having sum(amount_fen) <> 0) x")).scalar_one()
        out["book_totals"] = dict(conn.execute(text("select book, sum(amount_fen) from postings group by book")).all())
        out["chain_gaps"] = conn.execute(text(
            "select (select max(id) from journal_entries) - (select count(*) from journal_entries)")).scalar_one()
        head = conn.execute(text("select last_entry_id from chain_head where id = 1")).scalar_one()
        out["head_matches"] = head == conn.execute(text("select max(id) from journal_entries")).scalar_one()
    engine.dispose()
    out["ok"] = (out["verify"].startswith("OK") and out["entries_in_db"] == total and out["unbalanced_entries"] == 0
                 and all(int(s) == 0 for s in out["book_totals"].values()) and out["chain_gaps"] == 0 and out["head_matches"])
    print(f"[writers {mode}{'' if args.analyze else ', no ANALYZE'}, {args.seed_entries} seed entries] {total:,} entries in {wall:.1f} s = {out['rate']:,.0f} entries/s; "
          f"txn median {out['median_txn_ms']:.1f} ms, p99 {out['p99_txn_ms']:.1f} ms; per writer {out['per_writer']}; "
          f"verify: {out['verify']}; book totals {out['book_totals']}; invariants {'OK' if out['ok'] else 'BROKEN'}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=9, help="projects recorded through the services first (0: none)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--modes", default="single,batch")
    parser.add_argument("--seed-entries", type=int, default=20_000, help="entries in the writers' ledger before they start")
    parser.add_argument("--no-analyze", dest="analyze", action="store_false", help="skip VACUUM ANALYZE before the writers")
    parser.add_argument("--skip", default="", help="comma list: ingest,writers")
    parser.add_argument("--workdir")
    parser.add_argument("--keep", action="store_true", help="keep the last databases")
    parser.add_argument("--keep-all", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    base = f"jb_benchpg_{os.getpid()}"
    skip = set(filter(None, args.skip.split(",")))
    made: list[str] = []
    try:
        if "ingest" not in skip:
            table, last_db, _ = part1(args, base)
            made.append(last_db)
            e = table["ingest"]["entries"]
            print("\n| operation | median wall | min–max | CPU | peak RSS |\n|---|---|---|---|---|")
            for key, label in (("ingest", f"ingest {e:,} entries"), ("tb", "balances --as-of"), ("verify", "verify"),
                               ("export", "export beancount"), ("project", "balances --project (process)")):
                s = table.get(key)
                if s:
                    extra = f" ({e / s['median']:,.0f} entries/s)" if key in ("ingest", "verify") else ""
                    print(f"| {label} | {s['median']:.2f} s{extra} | {s['min']:.2f}–{s['max']:.2f} s | {s['cpu']:.2f} s | {s['rss']:.0f} MB |")
            if "service" in table:
                s = table["service"]
                print(f"| project_balances() service call | {s['median']:.2f} ms | {s['min']:.2f}–{s['max']:.2f} ms | — | — |")
        if "writers" not in skip:
            for mode in args.modes.split(","):
                name = f"{base}_w_{mode}"
                made.append(name)
                part2(args, name, mode)
        print("\ncommands:\n" + "\n".join(f"  {c}" for c in COMMANDS))
    finally:
        if not args.keep:
            for name in made:
                if name:
                    drop_db(name)
            for rep in range(args.reps):
                drop_db(f"{base}_{rep}")


if __name__ == "__main__":
    main()
