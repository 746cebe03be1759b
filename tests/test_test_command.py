"""The README's test command is quiet and honest: no line per skipped test, one line per skip
reason with its count, and the backends summary counts tests that ran, not fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_skips_are_summarised_by_reason_and_only_tests_that_ran_are_counted():
    env = {k: v for k, v in os.environ.items() if k != "JIEBANG_TEST_PG"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/test_due.py", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("SKIPPED")], out
    assert "skipped 8: PostgreSQL tests need JIEBANG_TEST_PG (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it" in lines
    assert "jiebang backends exercised -> sqlite: 8 test(s) ran" in lines  # the 8 PostgreSQL ones were skipped
    assert lines[-1].startswith("8 passed, 8 skipped")


def test_a_failure_is_listed_in_the_short_summary(tmp_path):
    test = tmp_path / "test_fails.py"
    test.write_text("import pytest\n\ndef test_fails():\n    assert 1 == 2\n\n"
                    "@pytest.mark.skip(reason='not today')\ndef test_skipped():\n    pass\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", str(test), "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                           "-c", str(ROOT / "pyproject.toml"), "--confcutdir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1
    assert "FAILED " in done.stdout and "::test_fails - assert 1 == 2" in done.stdout
    assert "SKIPPED" not in done.stdout
