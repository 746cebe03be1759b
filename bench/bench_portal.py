"""Serve a ledger with `jiebang serve` and measure the portal's pages and API under
concurrent clients: p50 / p95 latency per route.

    python bench/bench_portal.py --db /tmp/bp/ledger.db --clients 20 --rounds 10

It makes three portal accounts on the ledger (an enterprise: the demand side of the first
project; an auditor of two projects; the bureau), follows their invitations once, and shares
each session among the clients. Every client walks the route list in its own shuffled order
``--rounds`` times; the first request of a route (cold: the audit pack and the dashboard are
then built and remembered until the chain head moves) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CODE = ROOT  # the tree whose `jiebang` is served (--code)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants (uvicorn's workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = (Path("/proc") / str(p) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        todo.extend(children.get(p, []))
    return total


def jiebang(db: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "--db", db, *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(CODE)}, cwd=CODE, check=False)
    if done.returncode:
        raise SystemExit(done.stderr)
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signed_in(base: str, link: str) -> httpx.Cookies:
    client = httpx.Client(base_url=base)
    form = client.get(link)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    password = "bench password 1234"
    answer = client.post(link, data={"password": password, "password2": password, "csrf": csrf})
    assert answer.status_code in (200, 303), answer.text
    return client.cookies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="SQLite ledger file")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="jiebang serve --workers (default: serve's own)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the source tree to serve (default: this one), for A/B runs")
    parser.add_argument("--new-entry-after", type=float, default=None, metavar="SECONDS",
                        help="record one journal entry (a `settings --approver` change) this long into the concurrent "
                             "phase: the chain head moves and every answer is built again while the clients go on")
    args = parser.parse_args()
    global CODE
    CODE = args.code.resolve()

    with sqlite3.connect(args.db) as conn:
        entries = conn.execute("SELECT count(*) FROM journal_entries").fetchone()[0]
        projects = conn.execute("SELECT count(*) FROM projects").fetchone()[0]
        code, demand = conn.execute("SELECT code, demand_uscc FROM projects ORDER BY id LIMIT 1").fetchone()
        own = conn.execute("SELECT count(*) FROM projects WHERE demand_uscc = ?", (demand,)).fetchone()[0]
        audited = [r[0] for r in conn.execute("SELECT code FROM projects ORDER BY id LIMIT 2")]
    tag = f"{random.Random().randrange(16**6):06x}"
    links = {
        "enterprise": jiebang(args.db, "portal", "invite", "--party", demand).strip(),
        "auditor": jiebang(args.db, "portal", "invite", "--auditor", f"bench-audit-{tag}", *[arg for c in audited for arg in ("--project", c)]).strip(),
        "bureau": jiebang(args.db, "portal", "invite", "--bureau", f"bench-bureau-{tag}").strip(),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    server = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", "--db", args.db, "--port", str(port),
                               *workers],
                              env={**os.environ, "PYTHONPATH": str(CODE), "JIEBANG_PORTAL_SECRET": "bench"}, cwd=CODE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                httpx.get(base + "/login", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        cookies = {role: signed_in(base, link.split("8000", 1)[1]) for role, link in links.items()}
        routes = [
            ("enterprise", "/projects"), ("enterprise", f"/projects/{code}"), ("enterprise", f"/api/v1/projects/{code}"),
            ("enterprise", "/api/v1/status"), ("enterprise", "/projects/NOT-MINE"),
            ("auditor", "/audit"), ("auditor", f"/audit/{code}"), ("auditor", f"/audit/{code}?section=7"),
            ("auditor", f"/api/v1/audit/{code}"),
            ("bureau", "/dashboard"), ("bureau", "/api/v1/dashboard"),
            (None, "/login"),
        ]
        cold: dict[str, float] = {}
        for role, path in routes:  # first (cold) request of each route, one at a time
            started = time.perf_counter()
            answer = httpx.get(base + path, cookies=cookies.get(role), timeout=600)
            cold[path] = time.perf_counter() - started
            if os.environ.get("BENCH_DUMP"):
                Path(os.environ["BENCH_DUMP"], path.strip("/").replace("/", "_") or "root").write_bytes(answer.content)
            assert answer.status_code in (200, 404), (path, answer.status_code)
        times: dict[str, list[float]] = {path: [] for _role, path in routes}
        statuses: dict[str, set[int]] = {path: set() for _role, path in routes}
        sizes: dict[str, list[int]] = {path: [] for _role, path in routes}
        lock = threading.Lock()

        def client(k: int) -> None:
            rng = random.Random(args.seed * 1000 + k)
            with httpx.Client(base_url=base, timeout=600) as http:
                for _ in range(args.rounds):
                    order = routes[:]
                    rng.shuffle(order)
                    for role, path in order:
                        started = time.perf_counter()
                        answer = http.get(path, cookies=cookies.get(role))
                        elapsed = time.perf_counter() - started
                        assert answer.status_code in (200, 404), (path, answer.status_code)
                        with lock:
                            times[path].append(elapsed)
                            statuses[path].add(answer.status_code)
                            sizes[path].append(len(answer.content))

        load_before = os.getloadavg()
        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        if args.new_entry_after is not None:
            time.sleep(args.new_entry_after)
            jiebang(args.db, "settings", "--approver", f"bench-{tag}")
            print(f"new entry recorded {time.perf_counter() - started:.1f} s into the run")
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
        load_after = os.getloadavg()
    finally:
        server.terminate()
        server.wait(timeout=10)
    total = sum(len(v) for v in times.values())
    print(f"ledger: {entries:,} entries, {projects:,} projects (the enterprise has {own}); "
          f"{args.clients} clients x {args.rounds} rounds x {len(routes)} routes = {total:,} requests "
          f"in {wall:.1f} s ({total / wall:.0f} requests/s); workers: {args.workers or 'serve default'}")
    print(f"CPU per request: server {server_cpu / total * 1000:.1f} ms (all its processes), clients "
          f"{client_cpu / total * 1000:.1f} ms; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          f"(1 min; {os.cpu_count()} cores)")
    print()
    print("| route | role | status | bytes | cold (first) | p50 | p95 | max |")
    print("|---|---|---|---|---|---|---|---|")
    for role, path in routes:
        v = times[path]
        print(f"| `{path}` | {role or '—'} | {', '.join(map(str, sorted(statuses[path])))} | {statistics.median(sizes[path]):,.0f} | {cold[path] * 1000:,.0f} ms | {statistics.median(v) * 1000:,.0f} ms | "
              f"{percentile(v, 0.95) * 1000:,.0f} ms | {max(v) * 1000:,.0f} ms |")


if __name__ == "__main__":
    main()
