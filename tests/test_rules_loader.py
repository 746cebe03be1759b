"""Loading, validating and selecting the city rules files."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from funding_rules import loader
from funding_rules.loader import (
    RULES_DIR,
    RULES_FILE_BYTES_MAX,
    RulesFileError,
    available_rules,
    get_rules,
    load_rules_file,
    rules_in_force,
)
from ledger.core.errors import Refusal

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
JIANGMEN = (RULES_DIR / "jiangmen-2023-trial.toml").read_text(encoding="utf-8")
URUMQI = (RULES_DIR / "urumqi-2024-33.toml").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def no_rules_path(monkeypatch):
    monkeypatch.delenv("JIEBANG_RULES_PATH", raising=False)


def write(tmp_path: Path, text: str, name: str = "jiangmen-2023-trial") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def edit(text: str, key: str, new_line: str | None) -> str:
    """Replace (or with None, delete) the one line that sets ``key``."""
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    assert len(pattern.findall(text)) == 1, key
    return pattern.sub("" if new_line is None else new_line.replace("\\", "\\\\"), text)


def refused(tmp_path: Path, text: str, name: str = "jiangmen-2023-trial") -> str:
    with pytest.raises(RulesFileError) as error:
        load_rules_file(write(tmp_path, text, name))
    assert error.value.code == "rules_file_must_be_valid"
    assert f"{name}.toml" in error.value.message and "\n" not in error.value.message
    return error.value.message


# --- the shipped files ---------------------------------------------------------------------


def test_jiangmen_file_loads_with_amounts_in_fen_and_rates_as_decimal():
    rules = get_rules("jiangmen-2023-trial")
    assert (rules.city, rules.city_name, rules.effective_from, rules.effective_to) == (
        "jiangmen",
        "江门市",
        date(2023, 1, 1),
        None,
    )
    assert rules.approval.min_total_investment_fen == 300_000_000
    assert rules.approval.demand_min_revenue_fen == 50_000_000_000
    assert rules.approval.demand_min_rnd_intensity == Decimal("0.10")
    assert rules.approval.saima_max_racers is None and not rules.approval.related_party_ban
    assert rules.funding.model == "staged_grant" and rules.funding.subsidy_rate is None
    assert [(t.name, t.share, t.conditions, t.saima_conditions) for t in rules.tranches] == [
        ("contract", Decimal("0.60"), ("contract_signed",), ("contract_signed",)),
        ("midterm", Decimal("0.40"), ("midterm_passed",), ("stage_passed",)),
    ]
    assert rules.spending.legacy_category_map["专家咨询费"] == "labour"
    assert rules.closure.termination_recovers == ("unspent", "misused")


def test_urumqi_file_loads_the_bid_subsidy():
    rules = get_rules("urumqi-2024-33")
    assert rules.approval.min_total_investment_fen == 500_000_000
    assert rules.approval.saima_max_racers == 3 and rules.approval.related_party_ban
    assert rules.funding.subsidy_rate == Decimal("0.40")
    assert rules.funding.excluded_payment_forms == ("equity", "in_kind")
    assert [(t.name, t.basis, t.conditions) for t in rules.tranches] == [
        ("interim", "subsidy_earned", ("contract_signed", "first_bid_payment")),
        ("final", "subsidy_earned", ("acceptance_passed", "audit_report_received")),
    ]
    assert rules.approval.subsidy_warn_above_fen == 500_000_000


def test_every_parameter_cites_a_source():
    rules = get_rules("urumqi-2024-33")
    assert rules.sources["funding.subsidy_rate"].startswith("S2 乌鲁木齐 工作指引 二(六)")
    assert rules.sources["funding.subsidy_recipient"].startswith("DEFAULT:")
    assert rules.clause("tranches.final").startswith("S2")
    for rules in available_rules():
        # funding.pledge_at_first_release and closure.failed_acceptance are optional keys: a file
        # that leaves them out still cites their DEFAULT source.
        assert len(rules.sources) == 1 + 24 + 13 + 5 + 7 + len(rules.tranches)
        assert all(text.strip() for text in rules.sources.values())


def test_optional_keys_left_out_take_their_default_and_keep_the_fingerprint(tmp_path):
    """Issue 14 point 8: the new parameters default in the loader, so the packaged files (and
    the projects pinned to their fingerprints) are unchanged; a file that states one is read
    with it, and a bad value is refused like any other."""
    jiangmen, urumqi = get_rules("jiangmen-2023-trial"), get_rules("urumqi-2024-33")
    assert (jiangmen.funding.pledge_at_first_release, urumqi.funding.pledge_at_first_release) == ("warn", "none")
    assert jiangmen.closure.failed_acceptance == urumqi.closure.failed_acceptance == "terminate"
    for rules in (jiangmen, urumqi):
        assert rules.clause("funding.pledge_at_first_release").startswith("DEFAULT:")
        assert rules.clause("closure.failed_acceptance").startswith("DEFAULT:")
    stated = JIANGMEN.replace(
        "[closure]\n",
        '[closure]\nfailed_acceptance = { value = "officer", source = "DEFAULT: test" }\n',
    ).replace(
        "[funding]\n",
        '[funding]\npledge_at_first_release = { value = "refuse", source = "DEFAULT: test" }\n',
    )
    path = tmp_path / "jiangmen-2023-trial.toml"
    path.write_text(stated, encoding="utf-8")
    loaded = load_rules_file(path)
    assert (loaded.funding.pledge_at_first_release, loaded.closure.failed_acceptance) == ("refuse", "officer")
    assert loaded.fingerprint != jiangmen.fingerprint
    path.write_text(stated.replace('value = "officer"', 'value = "ignore"'), encoding="utf-8")
    with pytest.raises(RulesFileError, match="closure.failed_acceptance: 'ignore' is not one of terminate, officer"):
        load_rules_file(path)


def test_both_cities_use_the_same_keys():
    keys = [re.findall(r"^(\w+) = ", text, re.MULTILINE) for text in (JIANGMEN, URUMQI)]
    assert sorted(set(keys[0]) - {"share", "saima_conditions"}) == sorted(
        set(keys[1]) - {"ceiling_rate_of_contract"}
    )


# --- each reason a file is refused ---------------------------------------------------------


def test_unknown_key(tmp_path):
    text = JIANGMEN.replace(
        "[funding]\n", '[funding]\nbonus_rate = { value = "0.10", source = "x" }\n'
    )
    assert "funding.bonus_rate: unknown key" in refused(tmp_path, text)


def test_unknown_section(tmp_path):
    assert "(top).extras: unknown key" in refused(tmp_path, JIANGMEN + "\n[extras]\n")


def test_missing_key(tmp_path):
    assert "approval.max_grant: missing key" in refused(tmp_path, edit(JIANGMEN, "max_grant", None))


def test_missing_source(tmp_path):
    text = edit(JIANGMEN, "max_grant", 'max_grant = { value = "none" }')
    assert "approval.max_grant: missing source" in refused(tmp_path, text)


def test_blank_source(tmp_path):
    text = edit(JIANGMEN, "max_grant", 'max_grant = { value = "none", source = "  " }')
    assert "approval.max_grant: missing source" in refused(tmp_path, text)


def test_bare_value_without_table(tmp_path):
    text = edit(JIANGMEN, "max_grant", 'max_grant = "none"')
    assert "approval.max_grant: expected { value" in refused(tmp_path, text)


@pytest.mark.parametrize(
    "value", ['"3000000.001"', '"three million"', '"-3000000.00"', "3000000.0", "3000000"]
)
def test_bad_amount(tmp_path, value):
    text = edit(
        JIANGMEN,
        "min_total_investment",
        f'min_total_investment = {{ value = {value}, source = "x" }}',
    )
    assert "approval.min_total_investment: bad amount" in refused(tmp_path, text)


@pytest.mark.parametrize("value", ['"1.10"', '"-0.01"', '"110%"'])
def test_rate_outside_0_1(tmp_path, value):
    text = edit(
        JIANGMEN,
        "demand_min_rnd_intensity",
        f'demand_min_rnd_intensity = {{ value = {value}, source = "x" }}',
    )
    assert "approval.demand_min_rnd_intensity: rate" in refused(tmp_path, text)
    assert "outside [0, 1]" in refused(tmp_path, text)


def test_rate_as_toml_float(tmp_path):
    text = edit(
        JIANGMEN,
        "demand_min_rnd_intensity",
        'demand_min_rnd_intensity = { value = 0.1, source = "x" }',
    )
    assert "bad rate 0.1" in refused(tmp_path, text)


def test_tranche_shares_not_summing_to_one(tmp_path):
    text = JIANGMEN.replace('share = "0.40"', 'share = "0.39"')
    assert "tranches: grant shares sum to 0.99, not 1" in refused(tmp_path, text)


def test_unknown_condition(tmp_path):
    text = JIANGMEN.replace('conditions = ["midterm_passed"]', 'conditions = ["midterm_pass"]')
    assert "tranches.midterm.conditions: 'midterm_pass' is not one of" in refused(tmp_path, text)


def test_unknown_basis(tmp_path):
    text = JIANGMEN.replace('basis = "grant_share"', 'basis = "lump_sum"', 1)
    assert "tranches.contract.basis: 'lump_sum' is not one of" in refused(tmp_path, text)


def test_basis_that_does_not_fit_the_model(tmp_path):
    text = URUMQI.replace('basis = "subsidy_earned"', 'basis = "grant_share"\nshare = "1"', 1)
    assert (
        "tranches.interim.basis: basis grant_share does not fit funding model bid_subsidy"
        in refused(tmp_path, text, "urumqi-2024-33")
    )


def test_effective_to_before_effective_from(tmp_path):
    text = JIANGMEN.replace(
        "effective_from = 2023-01-01", "effective_from = 2023-01-01\neffective_to = 2022-12-31"
    )
    assert (
        "rules.effective_to: effective_to 2022-12-31 is before effective_from 2023-01-01"
        in refused(tmp_path, text)
    )


def test_effective_to_equal_to_effective_from_is_a_one_day_version(tmp_path):
    text = JIANGMEN.replace(
        "effective_from = 2023-01-01", "effective_from = 2023-01-01\neffective_to = 2023-01-01"
    )
    assert load_rules_file(write(tmp_path, text)).effective_to == date(2023, 1, 1)


def test_toml_syntax_error_names_the_line(tmp_path):
    text = JIANGMEN.replace("[approval]\n", "[approval]\nmin_total_investment = {\n", 1)
    line = JIANGMEN.splitlines().index("[approval]") + 2
    message = refused(tmp_path, text)
    assert "TOML: syntax error" in message and f"line {line}" in message


def test_version_must_equal_the_file_name(tmp_path):
    assert (
        "rules.version: 'jiangmen-2023-trial' must be lowercase and equal the file name "
        "'jiangmen-copy'" in refused(tmp_path, JIANGMEN, "jiangmen-copy")
    )


def test_bid_subsidy_needs_a_rate(tmp_path):
    text = edit(URUMQI, "subsidy_rate", 'subsidy_rate = { value = "none", source = "x" }')
    assert "funding.subsidy_rate: bid_subsidy needs a value" in refused(
        tmp_path, text, "urumqi-2024-33"
    )


def test_indirect_tiers_must_rise(tmp_path):
    text = JIANGMEN.replace(
        '{ up_to = "10000000.00", cap = "0.25" }', '{ up_to = "4000000.00", cap = "0.25" }', 1
    )
    assert "spending.indirect_tiers[1]: tier edges must rise" in refused(tmp_path, text)


def test_legacy_line_must_map_to_a_category(tmp_path):
    text = JIANGMEN.replace('"材料费" = "business"', '"材料费" = "materials"', 1)
    assert "spending.legacy_category_map: 材料费 maps to unknown category 'materials'" in refused(
        tmp_path, text
    )


def test_eligibility_required_without_any_test(tmp_path):
    text = edit(
        JIANGMEN, "demand_min_revenue", 'demand_min_revenue = { value = "none", source = "x" }'
    )
    text = edit(
        text,
        "demand_min_rnd_intensity",
        'demand_min_rnd_intensity = { value = "none", source = "x" }',
    )
    text = edit(
        text,
        "demand_innovation_star_qualifies",
        'demand_innovation_star_qualifies = { value = false, source = "x" }',
    )
    assert "approval.demand_eligibility_required: true, but no" in refused(tmp_path, text)


def test_unreadable_file(tmp_path):
    with pytest.raises(RulesFileError) as error:
        load_rules_file(tmp_path / "missing.toml")
    assert "cannot be read" in error.value.message


# --- selection -----------------------------------------------------------------------------


def test_rules_in_force_from_the_first_day():
    assert rules_in_force("jiangmen", date(2023, 1, 1)).version == "jiangmen-2023-trial"
    assert rules_in_force("urumqi", date(2024, 1, 1)).version == "urumqi-2024-33"


def test_no_rules_the_day_before_names_city_date_and_versions():
    with pytest.raises(Refusal) as refusal:
        rules_in_force("jiangmen", date(2022, 12, 31))
    assert refusal.value.code == "rules_version_must_exist"
    assert "'jiangmen'" in refusal.value.message and "2022-12-31" in refusal.value.message
    assert "jiangmen-2023-trial (2023-01-01..)" in refusal.value.message


def test_unknown_version_lists_the_known_ones():
    with pytest.raises(Refusal) as refusal:
        get_rules("jiangmen-2030")
    assert refusal.value.code == "rules_version_must_exist"
    assert "jiangmen-2023-trial, urumqi-2024-33" in refusal.value.message


def test_a_third_city_is_a_file_not_code(monkeypatch):
    monkeypatch.setenv("JIEBANG_RULES_PATH", os.pathsep.join(["", str(FIXTURES)]))
    assert [r.version for r in available_rules()] == [
        "jiangmen-2023-trial",
        "shenzhen-example",
        "urumqi-2024-33",
    ]
    rules = rules_in_force("shenzhen", date(2027, 12, 31))
    assert (rules.version, rules.funding.subsidy_rate, rules.approval.project_limit) == (
        "shenzhen-example",
        Decimal("0.5"),
        2,
    )
    with pytest.raises(Refusal, match="2028-01-01"):
        rules_in_force("shenzhen", date(2028, 1, 1))


def test_extra_dirs_argument_works_like_the_environment():
    assert get_rules("shenzhen-example", extra_dirs=[FIXTURES]).city == "shenzhen"


def test_a_newer_version_supersedes_an_open_ended_one(tmp_path):
    newer = JIANGMEN.replace('version = "jiangmen-2023-trial"', 'version = "jiangmen-2026"')
    newer = newer.replace("effective_from = 2023-01-01", "effective_from = 2026-01-01")
    write(tmp_path, newer, "jiangmen-2026")
    assert (
        rules_in_force("jiangmen", date(2025, 12, 31), extra_dirs=[tmp_path]).version
        == "jiangmen-2023-trial"
    )
    assert (
        rules_in_force("jiangmen", date(2026, 1, 1), extra_dirs=[tmp_path]).version
        == "jiangmen-2026"
    )


def test_two_versions_starting_the_same_day_are_refused(tmp_path):
    twin = JIANGMEN.replace('version = "jiangmen-2023-trial"', 'version = "jiangmen-twin"')
    write(tmp_path, twin, "jiangmen-twin")
    with pytest.raises(Refusal) as refusal:
        rules_in_force("jiangmen", date(2024, 1, 1), extra_dirs=[tmp_path])
    assert refusal.value.code == "rules_versions_must_not_overlap"


def test_the_same_version_in_two_directories_is_refused(tmp_path):
    write(tmp_path, JIANGMEN)
    with pytest.raises(RulesFileError, match="also defined in"):
        available_rules([tmp_path])


def test_a_missing_rules_directory_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("JIEBANG_RULES_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(Refusal) as refusal:
        available_rules()
    assert refusal.value.code == "rules_path_must_be_a_directory"


def test_loaded_files_are_cached_until_they_change(tmp_path):
    path = write(tmp_path, JIANGMEN)
    first = load_rules_file(path)
    assert load_rules_file(path) is first
    path.write_text(
        edit(JIANGMEN, "max_extensions", 'max_extensions = { value = 2, source = "x" }'),
        encoding="utf-8",
    )
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_rules_file(path).approval.max_extensions == 2


# --- hostile files -------------------------------------------------------------------------


@contextlib.contextmanager
def must_not_hang(seconds: int = 5):
    """Turn a blocked read into a test failure instead of a hung test run."""

    def hung(signum, frame):
        raise AssertionError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


@needs_fifo
def test_a_fifo_named_like_a_rules_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "jiangmen-2023-trial.toml"
    os.mkfifo(fifo)
    with must_not_hang(), pytest.raises(RulesFileError) as error:
        load_rules_file(fifo)
    assert error.value.message == (
        f"Rules file {fifo}: (file): is a FIFO, not a regular file; point at a .toml file."
    )
    with must_not_hang(), pytest.raises(RulesFileError, match="is a FIFO"):
        available_rules([tmp_path])


@needs_fifo
def test_a_fifo_swapped_in_after_the_stat_is_refused_at_the_read(tmp_path):
    # The read checks the open descriptor again, so losing the race cannot hang the loader.
    fifo = tmp_path / "jiangmen-2023-trial.toml"
    os.mkfifo(fifo)
    with must_not_hang(), pytest.raises(RulesFileError, match="is a FIFO, not a regular file"):
        loader._read(fifo)


def test_a_directory_named_like_a_rules_file_is_refused(tmp_path):
    (tmp_path / "jiangmen-2023-trial.toml").mkdir()
    with pytest.raises(RulesFileError, match=r"\(file\): is a directory, not a regular file"):
        available_rules([tmp_path])


def test_a_file_of_exactly_the_size_limit_loads_and_one_byte_more_is_refused(tmp_path):
    padding = RULES_FILE_BYTES_MAX - len(JIANGMEN.encode("utf-8")) - len("\n#\n")
    at_limit = JIANGMEN + "\n#" + "x" * padding + "\n"
    assert len(at_limit.encode("utf-8")) == RULES_FILE_BYTES_MAX
    assert load_rules_file(write(tmp_path, at_limit)).version == "jiangmen-2023-trial"
    message = refused(tmp_path, at_limit + "\n")
    assert message.endswith(
        "(file): is 1,048,577 bytes, over the 1,048,576-byte limit for a rules file "
        "(the packaged ones are a few KB)."
    )


@pytest.mark.parametrize("nesting", ["[" * 50_000 + "]" * 50_000, "{ a = " * 50_000 + "}" * 50_000])
def test_a_deeply_nested_file_is_refused_in_one_line(tmp_path, nesting):
    message = refused(tmp_path, f"deep = {nesting}\n" + JIANGMEN)
    assert message.endswith("TOML: is nested too deeply to read; a rules file nests a few levels.")
