"""Rules fingerprints: what a project pins at approval, and the refusal of a file edited since.

A rules version is its ``version`` and the SHA-256 of its parsed content. Comments and layout
are not content; a value or a source clause is. Nothing here touches a database.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from funding_rules.loader import (
    RULES_DIR,
    RulesChangedError,
    available_rules,
    fingerprints,
    get_rules,
    load_rules_file,
    rules_in_force,
)
from ledger.core.errors import Refusal

JIANGMEN = (RULES_DIR / "jiangmen-2023-trial.toml").read_text(encoding="utf-8")
URUMQI = (RULES_DIR / "urumqi-2024-33.toml").read_text(encoding="utf-8")
RATE_LINE = 'subsidy_rate = { value = "0.40", '

# Issue 14 edited both files before any production ledger pinned them (recoveries go back to
# the treasury, the subsidy use register, the eligibility gates of the texts, and the limits
# the texts write “原则上” marked ``principle = true`` for issue 14 point 7); a ledger that
# pinned the earlier content is refused in one line and needs the change published as a
# new version instead.
PACKAGED_FINGERPRINTS = {
    "jiangmen-2023-trial": "52a81d8da163a17ea1f32313ba961fc8a81404ada2cf635a10d48948daf72db8",
    "urumqi-2024-33": "182cebc661cd43285181903785590c50078db91321c21339d736c39f1f553aaa",
}


@pytest.fixture(autouse=True)
def no_rules_path(monkeypatch):
    monkeypatch.delenv("JIEBANG_RULES_PATH", raising=False)


@pytest.fixture
def fingerprint_of(tmp_path_factory):
    """The fingerprint the loader gives a text, loaded from a folder of its own."""

    def load(text: str, name: str = "jiangmen-2023-trial") -> str:
        path = tmp_path_factory.mktemp("rules") / f"{name}.toml"
        path.write_text(text, encoding="utf-8")
        return load_rules_file(path).fingerprint

    return load


@pytest.fixture
def urumqi_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the Urumqi file as version urumqi-copy, in a folder on JIEBANG_RULES_PATH."""
    monkeypatch.setenv("JIEBANG_RULES_PATH", str(tmp_path))
    path = tmp_path / "urumqi-copy.toml"
    path.write_text(URUMQI.replace('"urumqi-2024-33"', '"urumqi-copy"', 1), encoding="utf-8")
    return path


def edit_in_place(path: Path, old: str, new: str, *, keep_mtime: bool) -> None:
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    if keep_mtime:
        # As if the edit landed within the same mtime tick as the load.
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


# --- what the fingerprint is ---------------------------------------------------------------


def test_the_packaged_files_are_never_edited_in_place():
    """The packaged rules files still say exactly what they said when projects pinned them.

    Projects approved under a version are pinned to its fingerprint, and every later payment
    is refused if the file changes. So a packaged file is never edited in place: a change of
    policy (or a corrected number) is a new file with a new ``version`` and its own
    effective_from, and this table gains a line for it. Update an existing line here only for
    a change that carries no policy meaning and only if no database has pinned the old value.
    """
    assert fingerprints() == PACKAGED_FINGERPRINTS
    assert {r.version: r.fingerprint for r in available_rules()} == PACKAGED_FINGERPRINTS


def test_the_fingerprint_is_sha256_of_the_canonical_json_of_the_parsed_document():
    def iso(value):
        if isinstance(value, dict):
            return {k: iso(v) for k, v in value.items()}
        if isinstance(value, list):
            return [iso(v) for v in value]
        return value.isoformat() if isinstance(value, (date, datetime, time)) else value

    for rules in available_rules():
        doc = tomllib.loads(Path(rules.path).read_text(encoding="utf-8"))
        canonical = json.dumps(iso(doc), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert rules.fingerprint == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_the_fingerprint_is_the_same_in_a_fresh_process_with_another_hash_seed():
    script = "from funding_rules.loader import fingerprints; print(sorted(fingerprints().items()))"
    # The checkout under test comes first, ahead of any editable install of another one.
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(RULES_DIR.parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(sorted(PACKAGED_FINGERPRINTS.items()))


def test_comments_whitespace_key_order_and_quoting_do_not_change_it(fingerprint_of):
    original = fingerprint_of(JIANGMEN)
    lines = JIANGMEN.splitlines()
    reordered = "\n".join(lines[:1] + ["# a comment added later", ""] + lines[1:]) + "\n\n"
    reordered = reordered.replace("max_extensions = {", "max_extensions   =   {", 1)
    # Swap two keys within [approval]: a table's key order is not content.
    first = next(line for line in lines if line.startswith("jbgs_solvers = "))
    second = next(line for line in lines if line.startswith("saima_min_racers = "))
    reordered = reordered.replace(first, "\0").replace(second, first).replace("\0", second)
    # A literal string and a basic string with an escape parse to the same text.
    reordered = reordered.replace(
        'version = "jiangmen-2023-trial"', "version = 'jiangmen-2023-trial'"
    )
    reordered = reordered.replace('share = "0.60"', 'share = "\\u0030.60"', 1)
    assert reordered != JIANGMEN
    assert fingerprint_of(reordered) == original


@pytest.mark.parametrize(
    "old, new",
    [
        ('share = "0.60"', 'share = "0.6"'),  # The same number, written differently, is a change.
        ("max_extensions = { value = 1,", "max_extensions = { value = 2,"),
        ("effective_from = 2023-01-01", "effective_from = 2023-01-02"),
        ('source = "S1', 'source = "S1 '),  # The source clause is content too.
    ],
)
def test_a_value_a_date_or_a_source_changes_it(fingerprint_of, old, new):
    assert JIANGMEN.count(old) >= 1, old
    assert fingerprint_of(JIANGMEN.replace(old, new, 1)) != fingerprint_of(JIANGMEN)


# --- pinning -------------------------------------------------------------------------------


def test_a_pinned_version_loads_while_its_file_is_unchanged(urumqi_copy):
    pinned = get_rules("urumqi-copy").fingerprint
    rules = get_rules("urumqi-copy", fingerprint=pinned)
    assert (rules.fingerprint, rules.funding.subsidy_rate) == (pinned, Decimal("0.40"))
    assert rules.path == str(urumqi_copy.resolve())


@pytest.mark.parametrize("new_rate", ["0.90", "0.9"], ids=["same-size", "different-size"])
def test_an_in_place_edit_is_refused_with_the_pinned_and_the_new_fingerprint(
    urumqi_copy, fingerprint_of, new_rate
):
    pinned = get_rules("urumqi-copy").fingerprint
    before = urumqi_copy.stat()
    edit_in_place(urumqi_copy, RATE_LINE, RATE_LINE.replace("0.40", new_rate), keep_mtime=True)
    if new_rate == "0.90":
        # The mtime cache keys on these two, so only the content can tell the edit apart.
        after = urumqi_copy.stat()
        assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    edited = fingerprint_of(urumqi_copy.read_text(encoding="utf-8"), "urumqi-copy")

    with pytest.raises(RulesChangedError) as error:
        get_rules("urumqi-copy", fingerprint=pinned)
    refusal = error.value
    assert isinstance(refusal, Refusal)
    assert refusal.code == "rules_file_must_match_pinned_fingerprint"
    assert (refusal.path, refusal.version, refusal.expected, refusal.actual) == (
        str(urumqi_copy.resolve()),
        "urumqi-copy",
        pinned,
        edited,
    )
    assert refusal.message == (
        f"rules file {urumqi_copy.resolve()} (urumqi-copy) changed since it was pinned "
        f"(fingerprint {pinned[:12]} now {edited[:12]}); publish the change as a new version"
    )
    assert str(refusal) == refusal.message and "\n" not in refusal.message
    # Whoever pins the new content gets the new content, never the cached old one.
    assert get_rules("urumqi-copy", fingerprint=edited).funding.subsidy_rate == Decimal(new_rate)


def test_the_refusal_names_the_project_and_the_pin_date(urumqi_copy):
    pinned = get_rules("urumqi-copy").fingerprint
    edit_in_place(urumqi_copy, RATE_LINE, RATE_LINE.replace("0.40", "0.90"), keep_mtime=True)
    with pytest.raises(RulesChangedError) as error:
        get_rules("urumqi-copy", fingerprint=pinned)
    worded = error.value.for_project("UR2024-007", date(2024, 3, 15))
    assert isinstance(worded, RulesChangedError)
    assert worded.code == "rules_file_must_match_pinned_fingerprint"
    assert (worded.path, worded.version, worded.expected, worded.actual) == (
        error.value.path,
        "urumqi-copy",
        pinned,
        error.value.actual,
    )
    assert (worded.project, worded.pinned_on) == ("UR2024-007", date(2024, 3, 15))
    assert worded.message == (
        f"rules file {urumqi_copy.resolve()} changed since project UR2024-007 pinned it on "
        "2024-03-15; publish the change as a new version (a new file with a new `version`)"
    )


def test_a_new_version_file_loads_next_to_the_pinned_one(urumqi_copy):
    pinned = get_rules("urumqi-copy").fingerprint
    newer = urumqi_copy.read_text(encoding="utf-8").replace('"urumqi-copy"', '"urumqi-copy-2"')
    newer = newer.replace("effective_from = 2024-01-01", "effective_from = 2026-01-01")
    (urumqi_copy.parent / "urumqi-copy-2.toml").write_text(
        newer.replace(RATE_LINE, RATE_LINE.replace("0.40", "0.90")), encoding="utf-8"
    )
    published = fingerprints()["urumqi-copy-2"]

    old = get_rules("urumqi-copy", fingerprint=pinned)
    new = get_rules("urumqi-copy-2", fingerprint=published)
    assert (old.funding.subsidy_rate, new.funding.subsidy_rate) == (
        Decimal("0.40"),
        Decimal("0.90"),
    )
    assert rules_in_force("urumqi", date(2026, 1, 1)).fingerprint == published


def test_fingerprints_see_an_edit_the_mtime_cache_would_miss(urumqi_copy):
    pinned = fingerprints()["urumqi-copy"]
    edit_in_place(urumqi_copy, RATE_LINE, RATE_LINE.replace("0.40", "0.90"), keep_mtime=True)
    assert fingerprints()["urumqi-copy"] != pinned
    assert fingerprints()["urumqi-2024-33"] == PACKAGED_FINGERPRINTS["urumqi-2024-33"]


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, PACKAGED_FINGERPRINTS["urumqi-2024-33"][:63]])
def test_a_malformed_pinned_fingerprint_is_a_programming_error(bad):
    with pytest.raises(ValueError, match="64 lowercase hex"):
        get_rules("urumqi-2024-33", fingerprint=bad)
