"""Benchmark of the forecast's Monte Carlo: 10,000 runs over 5,000 synthetic projects.

The arrays are built directly (``reports.forecast.SimInput``), not read from a ledger, so the
figure is the simulation alone. The programme is a plausible province-wide mix, fixed by a
seed: 60% Jiangmen-like staged grants (two tranches per lane; a fifth of them 赛马 with 2–3
lanes), 40% Urumqi-like bid subsidies spread by year over a 2–3 year period (interval flows),
under a scenario where every risk is live (mid-term failure, termination, 赛马 elimination,
a three-point delay distribution, partial clawback collection), so no branch is skipped.

    python bench/bench_forecast.py                         # 10,000 runs x 5,000 projects
    python bench/bench_forecast.py --runs 2000 --projects 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from reports.forecast import Scenario, SimInput, Window, nearest_rank, simulate

AS_OF = dt.date(2026, 1, 1)
YEARS = 6


def synthetic(projects: int, seed: int = 7) -> SimInput:
    """A fixed synthetic programme of ``projects`` projects, as the simulation's arrays."""
    rng = np.random.default_rng(seed)
    window = Window(AS_OF, AS_OF.year, YEARS)
    flow_cols: dict[str, list[np.ndarray]] = {k: [] for k in ("project", "lane", "stage", "t0", "t1", "amount")}
    lane_project, race_size = [], []
    cell = rng.integers(0, 8, projects)
    start = rng.integers(-700, 365, projects)  # period start, days from the as-of date
    length = rng.integers(730, 1096, projects)
    grant = rng.random(projects) < 0.6
    saima = rng.random(projects) < 0.2
    lanes_of = np.where(saima, rng.integers(2, 4, projects), 1)
    lane = 0
    for p in range(projects):
        n = int(lanes_of[p])
        for _ in range(n):
            lane_project.append(p)
            race_size.append(n if saima[p] else 0)
            if grant[p]:
                amount = int(rng.integers(1_000_000, 5_000_000)) * 100 // n
                contract = max(0, int(start[p]) + 30)
                mid = max(0, int(start[p] + length[p] // 2))
                t = np.array([contract, mid])
                flow_cols["t0"].append(t)
                flow_cols["t1"].append(t)
                flow_cols["stage"].append(np.array([0, 1]))
                flow_cols["amount"].append(np.array([amount * 6 // 10, amount - amount * 6 // 10]))
            else:
                first, end = max(0, int(start[p])), max(1, int(start[p] + length[p]))
                cuts = [first, *[d for d in window.edges.tolist() if first < d < end], end]
                t0, t1 = np.array(cuts[:-1]), np.array(cuts[1:])
                total = int(rng.integers(400_000, 4_000_000)) * 100
                parts = total * (t1 - t0) // max(1, end - first)
                parts[0] += total - parts.sum()
                flow_cols["t0"].append(t0)
                flow_cols["t1"].append(t1)
                flow_cols["stage"].append(np.zeros(len(t0), dtype=np.int64))
                flow_cols["amount"].append(parts)
            count = len(flow_cols["t0"][-1])
            flow_cols["project"].append(np.full(count, p))
            flow_cols["lane"].append(np.full(count, lane))
            lane += 1
    cat = lambda k: np.concatenate(flow_cols[k]).astype(np.int64)
    term_lo = np.maximum(0, start)
    return SimInput(
        flow_project=cat("project"), flow_lane=cat("lane"), flow_stage=cat("stage").astype(np.int8),
        flow_t0=cat("t0"), flow_t1=cat("t1"), flow_amount=cat("amount"),
        project_cell=cell.astype(np.int64), term_lo=term_lo.astype(np.int64),
        term_hi=np.maximum(term_lo, start + length).astype(np.int64),
        mid_day=np.maximum(0, start + length // 2).astype(np.int64),
        midterm_at_risk=(grant & ~saima & (start + length // 2 > 0)),
        recoveries=np.where(rng.random(projects) < 0.05, rng.integers(10_000, 500_000, projects) * 100, 0).astype(np.int64),
        lane_project=np.array(lane_project, dtype=np.int64), race_size=np.array(race_size, dtype=np.int64),
        edges=window.edges, cells=8,
    )


SCENARIO = Scenario(
    name="bench",
    midterm_failure_rate=0.1,
    termination_rate=0.05,
    termination_timing=(0.2, 0.8),
    saima_survivors={2: 1, 3: 1},
    delay_days=(0, 90, 180),
    delay_probabilities=(0.6, 0.3, 0.1),
    collected_share=0.7,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    sim = synthetic(args.projects)
    built = time.perf_counter() - started
    print(f"arrays: {args.projects:,} projects, {len(sim.lane_project):,} lanes, {len(sim.flow_amount):,} flows; "
          f"built in {built:.2f} s")
    started, cpu = time.perf_counter(), time.process_time()
    result = simulate(sim, SCENARIO, runs=args.runs, seed=args.seed)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    per_run = result.releases.sum(axis=1)
    p90 = nearest_rank(per_run, 90)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"simulate: {args.runs:,} runs x {args.projects:,} projects in {seconds:.2f} s wall, {cpu:.2f} s CPU "
          f"({args.runs * args.projects / seconds / 1e6:.1f} M project-runs/s); peak RSS {peak_mib:.0f} MiB")
    print(f"first-year P90 {p90[1] / 100:,.2f} yuan; mean over runs {per_run[:, 1].mean() / 100:,.2f} yuan")


if __name__ == "__main__":
    main()
