"""GB 32100-2015 USCC validation, with the vectors of domain-facts §7."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funding_rules.uscc import (
    CHARSET,
    check_digit,
    normalize_uscc,
    org_code_warnings,
    uscc_problems,
    validate_uscc,
)
from ledger.core.errors import Refusal

VALID = ["91110000600037341L", "91350100M000100Y43"]
LEGACY_FUJIAN = {  # Real early pilot codes that fail the check (S28), with the computed character.
    "91350100M0001TGQXM": "1",
    "91350211M0000XUF46": "R",
    "91350203M0001FUE2P": "J",
}


@pytest.mark.parametrize("code", VALID)
def test_valid_codes_pass(code):
    assert uscc_problems(code) == []
    result = validate_uscc(code)
    assert (result.code, result.valid, result.overridden, result.warnings) == (
        code,
        True,
        False,
        (),
    )


def test_check_digit_matches_the_worked_examples():
    assert check_digit("91110000600037341") == "L"  # S = 538, 538 mod 31 = 11, 31 - 11 = 20 -> L
    assert check_digit("91350100M000100Y4") == "3"  # S = 1640, mod 31 = 28, 31 - 28 = 3


def test_check_digit_maps_31_to_0():
    # Find a prefix whose weighted sum is a multiple of 31: the outer mod must turn 31 into 0.
    prefix = "9111000060003734" + next(
        c for c in CHARSET if check_digit("9111000060003734" + c) == "0"
    )
    assert check_digit(prefix) == "0"


def test_normalize_strips_spaces_hyphens_and_uppercases():
    assert normalize_uscc(" 9111 0000-6000 3734\u30001l ") == "91110000600037341L"
    assert validate_uscc("9111-0000-6000-3734-1l").code == "91110000600037341L"


def test_gb_worked_negative_example_is_refused_naming_the_expected_character():
    with pytest.raises(Refusal) as refused:
        validate_uscc("91350100M000100Y4Z")
    assert refused.value.code == "uscc_must_be_valid"
    assert "expected check character 3, found Z" in refused.value.message


def test_a_wrong_check_character_in_the_set_is_refused():
    with pytest.raises(Refusal) as refused:
        validate_uscc("91110000600037341M")
    message = refused.value.message
    assert "91110000600037341M" in message and "expected check character L, found M" in message
    assert "--uscc-override-reason" in message and "\n" not in message


@pytest.mark.parametrize("code,expected", LEGACY_FUJIAN.items())
def test_legacy_fujian_codes_fail_without_an_override(code, expected):
    assert [p.code for p in uscc_problems(code)] == ["uscc_check_character_must_match"]
    with pytest.raises(Refusal) as refused:
        validate_uscc(code)
    assert f"expected check character {expected}, found {code[-1]}" in refused.value.message


@pytest.mark.parametrize("code", LEGACY_FUJIAN)
def test_legacy_fujian_codes_pass_with_an_override_reason(code):
    result = validate_uscc(
        code, override_reason="Fujian pilot code on the business licence, checked by phone"
    )
    assert (result.code, result.valid, result.overridden) == (code, False, True)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_blank_override_reason_is_no_override(reason):
    with pytest.raises(Refusal):
        validate_uscc("91350100M0001TGQXM", override_reason=reason)


@pytest.mark.parametrize(
    "text,problem",
    [
        ("91110000600037341", "uscc_must_have_18_characters"),
        ("91110000600037341LL", "uscc_must_have_18_characters"),
        ("9111000060003734IL", "uscc_must_use_gb32100_symbols"),  # I is never used
        ("91110000600O37341L", "uscc_must_use_gb32100_symbols"),  # O is never used
        ("91350100M000100Y4Z", "uscc_must_use_gb32100_symbols"),
        ("91AB0000600037341L", "uscc_division_code_must_be_digits"),
    ],
)
def test_an_override_never_waives_the_format(text, problem):
    assert [p.code for p in uscc_problems(text)] == [problem]
    with pytest.raises(Refusal) as refused:
        validate_uscc(text, override_reason="legacy")
    assert refused.value.code == "uscc_must_be_valid"


@pytest.mark.parametrize("authority", ["A1", "N2", "Y1", "12", "52"])
def test_non_digit_registration_authorities_are_valid(authority):
    # python-stdnum wrongly wants the first 8 characters all digits; A…, N… and Y… are real.
    prefix = authority + "650100" + "MA7800001"
    assert uscc_problems(prefix + check_digit(prefix)) == []


def test_gb11714_org_code_mismatch_is_only_a_warning():
    prefix = "91110000600037342"  # org code 600037342: GB 11714 expects 1 in position 17
    result = validate_uscc(prefix + check_digit(prefix))
    assert result.valid and not result.overridden
    assert [(w.code, w.severity) for w in result.warnings] == [
        ("uscc_org_code_should_pass_gb11714", "warning")
    ]
    assert org_code_warnings("91110000600037341L") == []


well_formed_prefix = st.builds(
    lambda head, division, tail: head + division + tail,
    st.text(CHARSET, min_size=2, max_size=2),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(CHARSET, min_size=9, max_size=9),
)


@given(well_formed_prefix)
def test_any_well_formed_prefix_with_its_check_character_is_valid(prefix):
    assert uscc_problems(prefix + check_digit(prefix)) == []


@given(well_formed_prefix, st.integers(0, 16), st.integers(1, 30))
def test_every_single_character_substitution_is_caught(prefix, position, shift):
    # 31 is prime and no weight is 0 mod 31, so changing one character always moves the check.
    code = prefix + check_digit(prefix)
    changed = CHARSET[(CHARSET.index(code[position]) + shift) % 31]
    mutated = code[:position] + changed + code[position + 1 :]
    assert uscc_problems(mutated) != []
