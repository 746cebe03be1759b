"""A project pinned to packaged rules content that a later jiebang release corrected in place
keeps that content: the release keeps it in ``funding_rules/rules/superseded/<fingerprint
prefix>/<version>.toml``, the project loads it by the fingerprint it pinned, ``verify``
accepts it, and new projects pin the current file. An edited kept copy is refused like an
edited file. (Found when the demo and bench ledgers of the day before were refused after the
principle flags changed both packaged files.) Both backends, through the CLI."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import replace

import pytest
from programme_fixtures import JM_APPROVAL, approve, jiangmen_world

from funding_rules import loader
from funding_rules.loader import RULES_DIR, SUPERSEDED_DIR, load_rules_file

KEPT = sorted((RULES_DIR / SUPERSEDED_DIR).glob("*/*.toml"))
JIANGMEN = "jiangmen-2023-trial"


def test_each_kept_copy_holds_exactly_the_content_its_folder_names():
    assert {p.stem for p in KEPT} >= {JIANGMEN, "urumqi-2024-33"}
    for path in KEPT:
        kept = load_rules_file(path)
        assert kept.version == path.stem
        assert kept.fingerprint.startswith(path.parent.name) and len(path.parent.name) == 16
        assert kept.fingerprint != load_rules_file(RULES_DIR / f"{path.stem}.toml").fingerprint


@pytest.fixture
def upgraded(tmp_path, monkeypatch, session_factory):
    """A project approved under the previous packaged Jiangmen content; then the release of
    today: the current file, with the previous content kept under superseded/."""
    [old] = [p for p in KEPT if p.stem == JIANGMEN]
    before = tmp_path / "before"
    before.mkdir()
    shutil.copy(old, before / f"{JIANGMEN}.toml")
    shutil.copy(RULES_DIR / "urumqi-2024-33.toml", before)
    release = tmp_path / "release"
    shutil.copytree(RULES_DIR, release)
    monkeypatch.setattr(loader, "_PINNED_PATHS", {})
    monkeypatch.setattr(loader, "RULES_DIR", before)
    with session_factory() as s:
        jiangmen_world(s)
        approve(s, JM_APPROVAL)
    monkeypatch.setattr(loader, "_PINNED_PATHS", {})
    monkeypatch.setattr(loader, "RULES_DIR", release)
    return release, load_rules_file(old).fingerprint


def test_a_project_pinned_to_superseded_packaged_content_opens_verifies_and_new_projects_pin_the_current_file(
    cli, session_factory, upgraded
):
    release, old_fingerprint = upgraded
    current = load_rules_file(release / f"{JIANGMEN}.toml").fingerprint
    shown = json.loads(cli("project", "show", "JM2025-003", "--format", "json").stdout)
    assert shown["rules_version"] == JIANGMEN
    cli("stage", "--project", "JM2025-003", "--stage", "contract_signed", "--passed", "--date", "2025-10-10")
    assert "拨付 JM2025-003 L1" in cli("release", "--project", "JM2025-003", "--date", "2025-10-20").stdout
    assert cli("verify").stdout.startswith("OK")
    # A new project is approved under the current file, not the kept copy.
    with session_factory() as s:
        approve(s, replace(JM_APPROVAL, code="JM2025-004", approval_date=dt.date(2025, 9, 21)))
    from sqlalchemy import text

    with session_factory() as s:
        pins = dict(s.execute(text("SELECT code, rules_fingerprint FROM projects ORDER BY code")).all())
    assert pins == {"JM2025-003": old_fingerprint, "JM2025-004": current}
    assert cli("verify").stdout.startswith("OK")


def test_an_edited_kept_copy_is_refused_and_named_by_verify(cli, upgraded):
    release, old_fingerprint = upgraded
    [copy] = (release / SUPERSEDED_DIR).glob(f"*/{JIANGMEN}.toml")
    copy.write_text(copy.read_text(encoding="utf-8").replace('source = "DEFAULT:', 'source = "DEFAULT: edited,', 1), encoding="utf-8")
    assert load_rules_file(copy).fingerprint != old_fingerprint
    refused = cli("project", "show", "JM2025-003", expect=1).stderr
    assert "changed since project JM2025-003 pinned it" in refused
    assert "changed since project JM2025-003 pinned it" in cli("verify", expect=1).output
