"""Progress for the audit pack, the exports and the forecast: on stderr when it is a
terminal, silent otherwise, and the counts the bars advance by add up to their totals."""

from __future__ import annotations

import datetime as dt
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from cli import main
from ledger.core.export import export_beancount, posting_count
from ledger.core.export_ledger import export_ledger
from ledger.core.progress import counted
from reports.audit import AUDIT_STEPS, write_audit_pack
from reports.forecast import FORECAST_STEPS, Scenario, build_forecast, check_window

ROOT = Path(__file__).resolve().parents[1]


def test_counted_reports_every_row_in_chunks():
    seen = []
    assert list(counted(range(2_500), seen.append, every=1_000)) == list(range(2_500))
    assert seen == [1_000, 1_000, 500]
    assert list(counted([], seen.append)) == [] and seen == [1_000, 1_000, 500]


def test_the_exports_advance_by_every_posting(demo_engine, tmp_path):
    with Session(demo_engine) as session:
        total = posting_count(session)
        assert total == session.execute(__import__("sqlalchemy").text("SELECT count(*) FROM postings")).scalar_one()
        for export in (export_beancount, export_ledger):
            seen: list[int] = []
            export(session, tmp_path / export.__name__, progress=seen.append)
            assert sum(seen) == total, export.__name__
        as_of = dt.date(2025, 12, 31)
        seen = []
        export_beancount(session, tmp_path / "extract", as_of=as_of, project_code="JM2025-004", progress=seen.append)
        assert sum(seen) == posting_count(session, as_of=as_of, project_code="JM2025-004") > 0


def test_the_audit_pack_and_the_forecast_advance_by_their_steps(demo_engine, tmp_path):
    with Session(demo_engine) as session:
        seen: list[int] = []
        write_audit_pack(session, "JM2025-004", tmp_path / "audit", progress=seen.append)
        assert seen == [1] * AUDIT_STEPS
        seen = []
        window = check_window(dt.date(2026, 6, 30), None, 3, as_of_given=True, today=dt.date(2026, 12, 5))
        build_forecast(session, window=window, scenario=Scenario(), runs=50, seed=1, progress=seen.append)
        assert seen == [1] * FORECAST_STEPS


def _ledger(tmp_path) -> Path:
    out = tmp_path / "demo"
    assert CliRunner().invoke(main, ["demo", "--out", str(out)], catch_exceptions=False).exit_code == 0
    return out / "jiebang.db"


VERBS = [
    ["report", "audit", "--project", "JM2025-004", "--out", "{out}/audit"],
    ["report", "forecast", "--as-of", "2026-06-30", "--runs", "100"],
    ["export", "beancount", "--out", "{out}/beancount"],
    ["export", "ledger", "--out", "{out}/ledger"],
]


def test_silent_when_stderr_is_not_a_terminal(tmp_path):
    db = _ledger(tmp_path)
    for args in VERBS:
        result = CliRunner().invoke(main, ["--db", str(db), *[a.format(out=tmp_path) for a in args]], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.stderr == "", args


@pytest.mark.parametrize("args, label", [(VERBS[0], "writing the audit pack of JM2025-004"), (VERBS[1], "forecasting")])
def test_a_bar_on_stderr_when_it_is_a_terminal(tmp_path, args, label):
    db = _ledger(tmp_path)
    controller, terminal = pty.openpty()
    command = [sys.executable, "-c", "import sys; sys.argv[0] = 'jiebang'; from cli import main; main()",
               "--db", str(db), *[a.format(out=tmp_path) for a in args]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal, env=env)
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = process.communicate(timeout=120)
    os.close(controller)
    assert process.returncode == 0, stdout
    assert label.encode() in seen, seen[:400]
    assert label.encode() not in stdout  # the bar is on stderr only
