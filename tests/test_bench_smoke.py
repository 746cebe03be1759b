"""Smoke run of the benchmark tooling at a tiny size: the generator and bench/compare without
peers. No timing is asserted; this only keeps the scripts working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generator_and_compare_run_at_a_tiny_size(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import generate
    finally:
        sys.path.remove(str(ROOT / "bench"))
    shape = generate.write_csv(tmp_path / "p.csv", postings=1_000, seed=3)
    again = generate.write_csv(tmp_path / "q.csv", postings=1_000, seed=3)
    assert shape == again and (tmp_path / "p.csv").read_bytes() == (tmp_path / "q.csv").read_bytes()
    assert 900 <= shape["postings"] <= 1_100

    results = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compare"), "--size", "100", "--reps", "1", "--projects", "3",
         "--no-peers", "--ops", "ingest,tb,project,verify", "--workdir", str(tmp_path / "work"), "--results", str(results)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = results.read_text(encoding="utf-8")
    assert "| ingest | jiebang |" in text and "| verify | jiebang |" in text
    assert "agree to the fen across jiebang" in text


def test_import_bench_runs_at_a_tiny_size(tmp_path):
    """bench/bench_import.py: both files import without a problem (it exits otherwise) and
    every row is written; four projects (both cities, each demand side registered in its city) and a
    120-row one-project file."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_import.py"), "--projects", "4", "--rows", "0", "--single", "120",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| mixed | 203 |" in proc.stdout and "| one project | 120 |" in proc.stdout, proc.stdout


def test_the_services_generator_records_every_story_at_a_tiny_size(tmp_path):
    """bench/generate.py services: every demo story, copied with its own parties and vouchers
    (a story whose voucher escaped the renaming collided on its second copy), verifies."""
    db = tmp_path / "ledger.db"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "generate.py"), "services", "--db", str(db), "--projects", "12", "--seed", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    verified = subprocess.run([sys.executable, "-m", "cli", "--db", str(db), "verify"], capture_output=True, text=True,
                              timeout=120, check=False, cwd=ROOT)
    assert verified.stdout.startswith("OK: "), verified.stdout + verified.stderr
