"""Benchmark of the bulk posting path: 100,000 two-posting entries into a fresh SQLite ledger.

Creates a ledger in a temporary directory, opens the accounts, posts every entry through
``post_many`` in one transaction, then times ``verify`` and an as-of ``account_balances``
on the result. Prints one line per phase with wall time, rate and the process's peak RSS.

    python bench/bench_post.py                  # 100,000 entries
    python bench/bench_post.py --entries 20000  # a quicker run
    python bench/bench_post.py --profile        # cProfile of the posting phase, top 25
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.orm import Session

from ledger.core.balances import account_balances
from ledger.core.db import make_engine, read_only
from ledger.core.journal import AccountSpec, EntryDraft, PostingDraft, open_accounts, post_many
from ledger.core.verify import verify
from migrations import upgrade_to_head

PROJECTS = 200
START = dt.date(2025, 1, 1)
AS_OF = dt.date(2025, 6, 30)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drafts(count: int) -> list[EntryDraft]:
    """Tranche releases from the treasury to project advances, spread over one year."""
    return [
        EntryDraft(
            value_date=START + dt.timedelta(days=i % 365),
            kind="release",
            project_code=f"BM2025-{i % PROJECTS:03d}",
            voucher=f"PV-{i:07d}",
            memo="bench release",
            actor="bench",
            postings=(
                PostingDraft(f"Assets:Advances:BM2025-{i % PROJECTS:03d}", 10_000 + i),
                PostingDraft("Assets:Treasury", -(10_000 + i)),
            ),
        )
        for i in range(count)
    ]


class Phase:
    """Wall and CPU time of one phase; CPU time shows how much of the wall a busy machine took."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def report(self, name: str, count: int | None = None) -> None:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        rate = f"{count / wall:>9,.0f}/s" if count else " " * 11
        print(f"{name:<34} wall {wall:6.2f} s  cpu {cpu:6.2f} s  {rate}  peak RSS {peak_rss_mb():6.1f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true", help="profile the posting phase with cProfile")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        engine = make_engine(f"sqlite:///{path}", must_exist=False)
        upgrade_to_head(engine)
        print(f"jiebang bulk-post benchmark: {args.entries:,} two-posting entries, SQLite at {path}")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, baseline peak RSS {peak_rss_mb():.1f} MB")

        with Session(engine) as session, session.begin():
            specs = [AccountSpec("Assets:Treasury", "fiscal", START)]
            specs += [
                AccountSpec(f"Assets:Advances:BM2025-{p:03d}", "fiscal", START, f"BM2025-{p:03d}") for p in range(PROJECTS)
            ]
            open_accounts(session, specs)

        phase = Phase()
        batch = drafts(args.entries)
        phase.report("build drafts", args.entries)

        profiler = cProfile.Profile() if args.profile else None
        phase = Phase()
        if profiler:
            profiler.enable()
        with Session(engine) as session, session.begin():
            results = post_many(session, batch)
        if profiler:
            profiler.disable()
        assert len(results) == args.entries and results[-1].entry_id == args.entries
        phase.report("post_many + commit", args.entries)
        del batch, results

        phase = Phase()
        with Session(read_only(engine)) as session, session.begin():
            result = verify(session)
        assert result.ok, result.problem
        phase.report("verify (chain + balances)", result.entries)

        phase = Phase()
        with Session(read_only(engine)) as session, session.begin():
            balances = account_balances(session, as_of=AS_OF)
        assert sum(b.balance_fen for b in balances) == 0
        phase.report(f"account_balances as of {AS_OF}")

        engine.dispose()  # closing the last connection checkpoints the WAL into the file
        print(f"database file {path.stat().st_size / 1024 / 1024:.1f} MB; chain head {result.head_id} {result.head_hash}")

    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())


if __name__ == "__main__":
    main()
