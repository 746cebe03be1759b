"""Benchmark of the audit pack with a verified checkpoint: is it flat in the ledger's size?

For each size it builds a ledger (``--projects`` projects through the services, then N
ledger-shaped entries with ``jiebang post --file --open-accounts``, as ``bench/compare``
does), runs ``jiebang verify`` once (a full verification, which records the checkpoint at
the chain head), then ``--extra`` more entries after it (default 100: a day's work since the
last verify), and times in process, ``--reps`` times each (median, min–max):

- ``integrity``: the pack's 九、完整性 section alone (``reports.audit._integrity``): the
  newest checkpoint, ``verify_since`` from it (entries after it, chain head, projections);
- ``pack``: ``audit_pack`` for one project (every section, no rendering);
- ``pack+render``: ``write_audit_pack`` (PDF, xlsx, beancount extract into a scratch folder);
- ``full verify``: ``verify_ledger`` over the whole chain, what the section ran before.

    python bench/bench_audit.py --sizes 10000,100000,300000 --workdir /tmp/baudit
    python bench/bench_audit.py --sizes 1000 --reps 1                       # the smoke run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import generate


def jiebang(db: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "cli", "--db", str(db), "--user", "bench", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"jiebang {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def timed(fn, reps: int) -> tuple[float, float, float]:
    seconds = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), min(seconds), max(seconds)


def build(work: Path, size: int, projects: int, seed: int, extra: int) -> tuple[Path, str]:
    db = work / f"ledger-{size}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    built = generate.build_services(str(db), projects, seed)
    codes = built["codes"]
    code = next((c for c in codes if c.startswith("JM2024-001")), codes[0])
    csv_path = work / f"postings-{size}.csv"
    generate.write_csv(csv_path, transactions=size, seed=seed)
    jiebang(db, "post", "--file", str(csv_path), "--open-accounts")
    print(jiebang(db, "verify").strip(), flush=True)  # the full verification records the checkpoint
    if extra:
        # The first ``extra`` transactions again under new ids: same accounts and dates, new entries.
        lines = csv_path.read_text(encoding="utf-8").splitlines()
        kept, seen = [lines[0]], set()
        for line in lines[1:]:
            txn = line.split(",", 1)[0]
            if txn not in seen and len(seen) == extra:
                break
            seen.add(txn)
            kept.append(f"L{line}")
        later = work / f"later-{size}.csv"
        later.write_text("\n".join(kept) + "\n", encoding="utf-8")
        jiebang(db, "post", "--file", str(later), "--open-accounts")
    return db, code


def measure(db: Path, code: str, reps: int) -> dict[str, tuple[float, float, float]]:
    from ledger.core.checkpoint import latest_checkpoint
    from ledger.core.db import make_engine, normalize_url, read_session
    from ledger.core.verify import entry_count
    from ledger.programme.projection import verify_ledger, verify_ledger_since
    from reports.audit import _integrity, audit_pack, load_scope, write_audit_pack

    engine = make_engine(normalize_url(str(db)))
    out = {}
    with read_session(engine) as session:
        entries = entry_count(session)
        checkpoint = latest_checkpoint(session)
        assert checkpoint is not None, "no checkpoint: `jiebang verify` should have recorded one"
        assert verify_ledger_since(session, checkpoint).ok
        scope = load_scope(session, code)
        integrity = _integrity(session, scope, 0)
        assert integrity.verify_ok and integrity.checkpoint_entry == checkpoint.entry_id, integrity
        out["integrity"] = timed(lambda: _integrity(session, scope, 0), reps)
        out["pack"] = timed(lambda: audit_pack(session, code), reps)
        scratch = Path(tempfile.mkdtemp(prefix="bench-audit-"))
        out["pack+render"] = timed(lambda: write_audit_pack(session, code, scratch), reps)
        shutil.rmtree(scratch, ignore_errors=True)
        out["full verify"] = timed(lambda: verify_ledger(session), max(1, min(reps, 3)))
    engine.dispose()
    out["_entries"] = entries
    out["_since"] = entries - checkpoint.entry_id
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,300000", help="bulk entries per ledger, comma-separated")
    parser.add_argument("--projects", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--extra", type=int, default=100, help="entries posted after the checkpoint")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-audit-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        started = time.perf_counter()
        db, code = build(work, size, args.projects, args.seed, args.extra)
        print(f"built {size:,} + services in {time.perf_counter() - started:.1f} s: {db}", flush=True)
        m = measure(db, code, args.reps)
        rows.append((size, code, m))
        print(f"{size:,}: " + "; ".join(f"{k} {v[0] * 1000:.0f} ms" for k, v in m.items() if not k.startswith("_")), flush=True)

    def cell(v):
        return f"{v[0] * 1000:,.0f} ms ({v[1] * 1000:,.0f}–{v[2] * 1000:,.0f})"

    print("\n| ledger entries (after the checkpoint) | project | integrity section | audit_pack | pack + render | full verify (before) |")
    print("|---|---|---|---|---|---|")
    for size, code, m in rows:
        print(f"| {m['_entries']:,} ({m['_since']:,}) | {code} | {cell(m['integrity'])} | {cell(m['pack'])} | "
              f"{cell(m['pack+render'])} | {cell(m['full verify'])} |")


if __name__ == "__main__":
    main()
