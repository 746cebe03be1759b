"""A project is pinned to its rules file's content, not just its version name.

Issue 12's attack: editing ``urumqi-2024-33.toml`` in place (0.40 -> 0.90) made the next bid
payment of a project pinned to that version earn 900,000.00 on 1,000,000.00. Now the edit
is refused in one line when the project is next touched, and ``verify`` names it; a change
of policy published as a new version file is used by new projects while old projects keep
theirs. Both backends, through the CLI an officer uses.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from programme_fixtures import (
    UR_DEMAND,
    UR_SOLVER,
    add_budget,
    add_party,
    approve,
    cli_balances,
    ur_approval,
)

from funding_rules.loader import RULES_DIR

D = dt.date
PINNED = "urumqi-2026-pin"


def _rules_file(folder: Path, version: str, effective_from: str, rate: str) -> Path:
    text = (RULES_DIR / "urumqi-2024-33.toml").read_text(encoding="utf-8")
    text = text.replace('version = "urumqi-2024-33"', f'version = "{version}"', 1)
    text = text.replace("effective_from = 2024-01-01", f"effective_from = {effective_from}", 1)
    text = text.replace('subsidy_rate = { value = "0.40"', f'subsidy_rate = {{ value = "{rate}"', 1)
    path = folder / f"{version}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def pinned_world(tmp_path, monkeypatch, session_factory):
    folder = tmp_path / "rules"
    folder.mkdir()
    path = _rules_file(folder, PINNED, "2026-01-01", "0.40")
    monkeypatch.setenv("JIEBANG_RULES_PATH", str(folder))
    with session_factory() as s:
        add_party(s, UR_DEMAND, "新疆某光伏有限公司")
        add_party(s, UR_SOLVER, "新疆某大学", kind="university")
        add_budget(s, year=2026)
        approve(s, ur_approval(code="UR2026-004", approval_date=D(2026, 3, 16), start_date=D(2026, 4, 1),
                               end_date=D(2028, 3, 31)))
    return folder, path


def test_a_pinned_rules_file_edited_in_place_is_refused_and_named_by_verify(cli, pinned_world):
    _folder, path = pinned_world
    shown = json.loads(cli("project", "show", "UR2026-004", "--format", "json").stdout)
    assert shown["rules_version"] == PINNED
    path.write_text(path.read_text(encoding="utf-8").replace('value = "0.40"', 'value = "0.90"', 1), encoding="utf-8")

    refused = cli("bid", "pay", "--project", "UR2026-004", "--amount", "100万", "--form", "cash", "--date", "2026-05-01",
                  expect=1)
    assert refused.stderr.strip() == (
        f"error: rules file {path} changed since project UR2026-004 pinned it on 2026-03-16; "
        "publish the change as a new version (a new file with a new `version`)"
    )
    assert cli_balances(cli, "UR2026-004")["subsidy_earned"] == "0.00"
    failed = cli("verify", expect=1)
    assert "changed since project UR2026-004 pinned it on 2026-03-16" in failed.stderr

    # Put the text back: the fingerprint is of the content, so the pin holds again.
    path.write_text(path.read_text(encoding="utf-8").replace('value = "0.90"', 'value = "0.40"', 1), encoding="utf-8")
    cli("bid", "pay", "--project", "UR2026-004", "--amount", "100万", "--form", "cash", "--date", "2026-05-01")
    assert cli_balances(cli, "UR2026-004")["subsidy_earned"] == "400000.00"
    cli("verify")


def test_a_new_version_serves_new_projects_while_old_ones_keep_theirs(cli, pinned_world, session_factory):
    folder, _ = pinned_world
    _rules_file(folder, "urumqi-2026-pin2", "2026-06-01", "0.45")
    with session_factory() as s:
        approve(s, ur_approval(code="UR2026-005", approval_date=D(2026, 7, 1), start_date=D(2026, 7, 1),
                               end_date=D(2028, 6, 30)))
    new = json.loads(cli("project", "show", "UR2026-005", "--format", "json").stdout)
    assert new["rules_version"] == "urumqi-2026-pin2"
    for code in ("UR2026-004", "UR2026-005"):
        cli("bid", "pay", "--project", code, "--amount", "100万", "--form", "cash", "--date", "2026-08-01")
    assert cli_balances(cli, "UR2026-004")["subsidy_earned"] == "400000.00"
    assert cli_balances(cli, "UR2026-005")["subsidy_earned"] == "450000.00"
    cli("verify")


def test_a_new_approval_under_an_edited_version_is_refused(engine, pinned_world, session_factory):
    """The file changed after UR2026-004 pinned it: approving another project under it is
    refused too, naming the first project that pinned the old content."""
    from programme_fixtures import refuses

    _folder, path = pinned_world
    path.write_text(path.read_text(encoding="utf-8").replace('value = "0.40"', 'value = "0.90"', 1), encoding="utf-8")
    refusal = refuses(
        engine, session_factory,
        lambda s: approve(s, ur_approval(code="UR2026-006", approval_date=D(2026, 4, 1), start_date=D(2026, 4, 1),
                                         end_date=D(2028, 3, 31))),
        "rules_file_must_match_pinned_fingerprint",
    )
    assert "changed since project UR2026-004 pinned it on 2026-03-16" in refusal.message
