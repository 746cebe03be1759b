"""Concurrency: eight OS processes race for the same money, on PostgreSQL and on SQLite.

Each race starts eight worker processes (multiprocessing, spawn: fresh interpreters, no
shared connections) that wait on one barrier and then run the same `jiebang` verb at once
through the real CLI entry point, each with its own voucher:

* release the same tranche: exactly one release goes through;
* spend the same advance, in amounts that together exceed it: exactly as many as fit;
* approve projects against the same appropriation: exactly as many grants as it holds.

Every loser gets exit 1 and one line naming the rule (never a serialization or deadlock
error), `verify` passes afterwards, the balances are exact, and the whole race is bounded
in time (a hang fails the test instead of blocking CI).

On PostgreSQL every service takes a row lock on the chain head before it reads what its
checks depend on (READ COMMITTED: each later statement sees everything committed before
the lock was granted); on SQLite, BEGIN IMMEDIATE and the busy timeout give the same order.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import time
import traceback

import pytest
from programme_fixtures import JM_DEMAND, JM_UNIVERSITY, cli_balances, spare_uscc, yuan

from ledger.core.money import format_fen

WORKERS = 8
RACE_TIMEOUT = 90  # seconds for one race; a deadlock or a hung lock fails here
PROJECT = "JM2025-701"


# --- the worker processes ---------------------------------------------------------------


def _worker(url: str, barrier, tasks, results) -> None:  # runs in a spawned process
    from click.testing import CliRunner

    import cli
    import ledger.programme  # noqa: F401 - warm the imports before the race starts
    import reports.status  # noqa: F401

    runner = CliRunner()
    runner.invoke(cli.main, ["--db", url, "verify"])  # warm: engine, schema check, rules cache
    results.put(("ready", None, None, None))
    while True:
        task = tasks.get()
        if task is None:
            return
        index, argv = task
        try:
            barrier.wait(timeout=RACE_TIMEOUT)
        except Exception:  # noqa: BLE001 - a broken barrier is reported, not raised
            results.put((index, -2, "", "barrier broken"))
            continue
        started = time.monotonic()
        result = runner.invoke(cli.main, ["--db", url, "--user", f"officer-{index}", *argv], catch_exceptions=True)
        problem = ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problem = "".join(traceback.format_exception(result.exception))
        results.put((index, result.exit_code, result.stdout, result.stderr + problem + f"\n[{time.monotonic() - started:.2f}s]"))


class Racers:
    """Eight warm worker processes, each with its own task queue, sharing one barrier."""

    def __init__(self, url: str):
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(WORKERS)
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(WORKERS)]
        self.processes = [
            context.Process(target=_worker, args=(url, self.barrier, self.tasks[i], self.results), daemon=True)
            for i in range(WORKERS)
        ]
        for process in self.processes:
            process.start()
        for _ in range(WORKERS):
            self._get()

    def _get(self):
        try:
            return self.results.get(timeout=RACE_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"a racer did not answer within {RACE_TIMEOUT}s: deadlock or hang")

    def race(self, argvs: list[list[str]]) -> list[tuple[int, str, str]]:
        """Run argvs[i] in worker i, all released by one barrier; (exit code, stdout, stderr) by i."""
        assert len(argvs) == WORKERS
        for index, argv in enumerate(argvs):
            self.tasks[index].put((index, argv))
        outcomes: dict[int, tuple[int, str, str]] = {}
        for _ in range(WORKERS):
            index, code, out, err = self._get()
            outcomes[index] = (code, out, err)
        return [outcomes[i] for i in range(WORKERS)]

    def close(self) -> None:
        for tasks in self.tasks:
            tasks.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()  # only the processes this test started
                process.join(timeout=5)


def split(outcomes, refusal_phrase: str) -> tuple[list[str], list[str]]:
    """Winners' stdout and losers' one-line refusals; anything else fails the test."""
    winners, losers = [], []
    for code, out, err in outcomes:
        message = err.rsplit("\n[", 1)[0].strip()
        if code == 0:
            winners.append(out.strip())
        elif code == 1:
            lines = [line for line in message.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), f"not a one-line refusal:\n{err}"
            assert refusal_phrase in lines[0], f"a loser was refused for another reason:\n{lines[0]}"
            losers.append(lines[0])
        else:
            pytest.fail(f"a racer exited {code}:\n{out}\n{err}")
    return winners, losers


# --- the races --------------------------------------------------------------------------


def _setup(cli) -> None:
    cli("party", "add", "--uscc", JM_DEMAND, "--name", "江门市某智能装备有限公司", "--revenue", "600,000,000.00",
        "--rnd-ratio", "0.12", "--date", "2025-01-02")
    cli("party", "add", "--uscc", JM_UNIVERSITY, "--name", "五邑某大学", "--kind", "university", "--date", "2025-01-02")
    cli("appropriate", "--year", "2025", "--amount", "50,000,000.00", "--date", "2025-01-10")
    cli("project", "approve", "--code", PROJECT, "--name", "并发测试项目", "--city", "jiangmen", "--category", "技术攻关",
        "--mode", "揭榜挂帅", "--demand", JM_DEMAND, "--solver", JM_UNIVERSITY, "--total-investment", "8,000,000.00",
        "--grant", "3,000,000.00", "--start", "2025-03-01", "--end", "2027-02-28", "--date", "2025-02-01")
    cli("stage", "--project", PROJECT, "--stage", "contract_signed", "--passed", "--date", "2025-02-10")
    # Eight would-be projects for 2026: each its own demand side and solver, all on one appropriation.
    for i in range(WORKERS):
        cli("party", "add", "--uscc", spare_uscc("440700", 700 + i), "--name", f"江门市某需求企业{i}",
            "--revenue", "600,000,000.00", "--date", "2025-01-02")
        cli("party", "add", "--uscc", spare_uscc("440700", 800 + i), "--name", f"江门市某揭榜企业{i}", "--date", "2025-01-02")
    cli("appropriate", "--year", "2026", "--amount", "10,000,000.00", "--date", "2026-01-10")


def _entries(cli) -> int:
    return json.loads(cli("verify", "--format", "json").stdout)["entries"]


def _race_everything(cli, url: str) -> dict[str, float]:
    _setup(cli)
    before = _entries(cli)
    timings: dict[str, float] = {}
    racers = Racers(url)
    try:
        # 1. Eight officers release tranche 1 (1,800,000.00 = 60% of the grant) at once.
        started = time.monotonic()
        outcomes = racers.race([
            ["release", "--project", PROJECT, "--tranche", "1", "--date", "2025-02-15", "--voucher", f"REL-RACE-{i}"]
            for i in range(WORKERS)
        ])
        timings["release"] = time.monotonic() - started
        winners, losers = split(outcomes, "was already released")
        assert len(winners) == 1 and len(losers) == WORKERS - 1, outcomes
        balances = cli_balances(cli, PROJECT)
        assert (balances["grant_released"], balances["advances_outstanding"]) == ("1800000.00", "1800000.00")

        # 2. Eight spending reports of 300,000.00 against the 1,800,000.00 advance: six fit.
        started = time.monotonic()
        outcomes = racers.race([
            ["spend", "--project", PROJECT, "--amount", "300,000.00", "--category", "业务费",
             "--date", f"2025-03-{i + 1:02d}", "--voucher", f"SPEND-RACE-{i}"]
            for i in range(WORKERS)
        ])
        timings["spend"] = time.monotonic() - started
        winners, losers = split(outcomes, "exceeds its advances outstanding")
        assert (len(winners), len(losers)) == (6, 2), outcomes
        balances = cli_balances(cli, PROJECT)
        assert (balances["fiscal_spent"], balances["advances_outstanding"]) == ("1800000.00", "0.00")

        # 3. Eight approvals of 3,000,000.00 each against a 10,000,000.00 appropriation: three fit.
        started = time.monotonic()
        outcomes = racers.race([
            ["project", "approve", "--code", f"JM2026-8{i:02d}", "--name", f"并发立项{i}", "--city", "jiangmen",
             "--category", "技术攻关", "--mode", "揭榜挂帅", "--demand", spare_uscc("440700", 700 + i),
             "--solver", spare_uscc("440700", 800 + i), "--total-investment", "8,000,000.00",
             "--grant", "3,000,000.00", "--start", "2026-03-01", "--end", "2028-02-28", "--budget-year", "2026",
             "--date", "2026-02-01"]
            for i in range(WORKERS)
        ])
        timings["approve"] = time.monotonic() - started
        winners, losers = split(outcomes, "of the appropriation is unobligated")
        assert (len(winners), len(losers)) == (3, 5), outcomes
        projects = json.loads(cli("projects", "--format", "json").stdout)
        assert len([p for p in projects if str(p.get("code", "")).startswith("JM2026-8")]) == 3
        rows = json.loads(cli("balances", "--account", "Assets:Memo:Budget:Available:Y2026", "--format", "json").stdout)
        available = sum(yuan(r["balance"], allow_negative=True) for r in rows if r["account"] == "Assets:Memo:Budget:Available:Y2026")
        assert format_fen(available) == "1000000.00"
    finally:
        racers.close()
    # One release, six spending reports and three approvals: nothing more, nothing twice.
    assert _entries(cli) == before + 1 + 6 + 3
    result = cli("verify")
    assert result.stdout.startswith("OK: ")
    return timings


def test_eight_processes_race_for_the_same_money_and_only_what_is_allowed_goes_through(db_url, cli, backend):
    if backend == "postgresql":
        # Child processes reuse the per-test URL as is: its options=-csearch_path=... pins
        # every connection they open to this test's schema.
        assert "search_path" in db_url
    timings = _race_everything(cli, db_url)
    assert all(seconds < RACE_TIMEOUT for seconds in timings.values()), timings
