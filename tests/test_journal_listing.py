"""`jiebang journal` lists every entry of the record, those that move no money included,
and closes quietly when its reader goes away (`| head`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli import main
from ledger.core.db import make_engine


def _journal(path: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(main, ["--db", str(path), "journal", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_limit_one_shows_the_last_entry_even_when_it_moves_no_money(demo_file):
    # The demo ends with a stage result (the audit report received): an entry with no
    # postings. It used to vanish from the listing, and `--limit 1` printed "(nothing)".
    everything = _journal(demo_file)
    last = max(row["entry"] for row in everything)
    rows = _journal(demo_file, "--limit", "1")
    assert [(row["entry"], row["kind"], row["account"], row["amount"]) for row in rows] == [(last, "stage", None, None)]
    assert rows[0]["memo"] == "收到专项审计报告"
    # Every entry of the chain appears, with or without postings.
    engine = make_engine(f"sqlite:///{demo_file}")
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM journal_entries").scalar_one()
    engine.dispose()
    assert len({row["entry"] for row in everything}) == count


def test_limit_keeps_the_last_n_entries_with_all_their_postings_within_since(demo_file):
    everything = _journal(demo_file)
    entries = sorted({row["entry"] for row in everything})
    two = _journal(demo_file, "--limit", "2")
    assert sorted({row["entry"] for row in two}) == entries[-2:]
    assert len(two) == sum(1 for row in everything if row["entry"] in entries[-2:])
    # --limit counts within --since: the last 3 spends on or after a date, not the last 3
    # entries of the ledger filtered afterwards.
    spends = [row for row in everything if row["kind"] == "spend"]
    since = spends[0]["date"]
    limited = _journal(demo_file, "--kind", "spend", "--since", since, "--limit", "3")
    expected = sorted({row["entry"] for row in spends if row["date"] >= since})[-3:]
    assert sorted({row["entry"] for row in limited}) == expected


def test_piping_into_a_reader_that_stops_early_ends_quietly(demo_file):
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "--db", str(demo_file), "journal"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout.readline().startswith(b"entry")
    # The listing (about 84 KB) is larger than a pipe holds (64 KB): the writer is still
    # writing when the reader goes away.
    process.stdout.close()  # what `| head -1` does after its line
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "Broken pipe" not in stderr and "Traceback" not in stderr
    assert stderr == ""
