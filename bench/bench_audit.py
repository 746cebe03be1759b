"""The audit pack of one project against the size of the ledger, with and without a verified
checkpoint (`jiebang verify --checkpoint`).

For each size: the base ledger through the services (90 projects, ``generate.build_services``),
then N bulk transactions (``generate.write_csv``, ``jiebang post --file --open-accounts``);
then the pack of one project is written in process (``reports.audit.write_audit_pack``, the
function `jiebang report audit` calls), ``--reps`` times without a checkpoint (the whole chain
verified) and ``--reps`` times after `verify --checkpoint` plus one more entry after the
checkpoint (so the pack verifies something). Prints a Markdown table; the median is taken.

    python bench/bench_audit.py --sizes 10000,100000,300000 --reps 3 --workdir /tmp/ba
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent


def jiebang(db: Path, *args: str) -> str:
    command = [sys.executable, "-m", "cli", "--db", str(db), "--user", "bench", *args]
    return subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def time_pack(db: Path, code: str, out: Path, reps: int) -> list[float]:
    from sqlalchemy.orm import Session

    from ledger.core.db import make_engine, read_only
    from reports.audit import write_audit_pack

    engine = read_only(make_engine(f"sqlite:///{db}"))
    times = []
    try:
        for rep in range(reps):
            target = out / f"rep{rep}"
            started = time.perf_counter()
            with Session(engine) as session, session.begin():
                write_audit_pack(session, code, target)
            times.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    return times


def main(argv: list[str] | None = None) -> None:
    import generate  # bench/generate.py

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,300000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--projects", type=int, default=90)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-audit"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = args.workdir / "base.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{base}{suffix}").unlink(missing_ok=True)
    built = generate.build_services(str(base), args.projects, 1)
    code = next((c for c in built["codes"] if c.startswith("JM2024-001")), built["codes"][0])
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        db = args.workdir / f"ledger-{size}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(base, db)
        csv_path = args.workdir / f"postings-{size}.csv"
        generate.write_csv(csv_path, transactions=size, seed=1)
        jiebang(db, "post", "--file", str(csv_path), "--open-accounts")
        entries = int(jiebang(db, "verify").split()[1])
        full = time_pack(db, code, args.workdir / f"full-{size}", args.reps)
        started = time.perf_counter()
        jiebang(db, "verify", "--checkpoint")
        checkpoint_seconds = time.perf_counter() - started
        # One entry after the checkpoint, so the pack has something of its own to verify.
        jiebang(db, "appropriate", "--year", "2027", "--amount", "1.00", "--date", "2027-01-10", "--voucher", f"BENCH-{size}")
        relied = time_pack(db, code, args.workdir / f"checkpoint-{size}", args.reps)
        rows.append((size, entries, statistics.median(full), statistics.median(relied), min(relied), max(relied), checkpoint_seconds))
        print(f"{size:,} transactions ({entries:,} entries): full {statistics.median(full):.3f} s, "
              f"from checkpoint {statistics.median(relied):.3f} s", flush=True)
    print()
    print("| transactions | entries | pack, whole chain verified | pack, from a checkpoint | min–max | `verify --checkpoint` |")
    print("|---|---|---|---|---|---|")
    for size, entries, full, relied, low, high, checkpoint_seconds in rows:
        print(f"| {size:,} | {entries:,} | {full:.2f} s | **{relied:.3f} s** | {low:.3f}–{high:.3f} s | {checkpoint_seconds:.1f} s |")
    print(f"\nproject {code}; {args.reps} repetitions, median; in process (write_audit_pack: PDF, xlsx and beancount extract).")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
