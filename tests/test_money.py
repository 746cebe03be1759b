"""Money: parsing what officers type, refusing everything else, rounding and splits."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.errors import Refusal
from ledger.core.money import (
    AMOUNT_FEN_MAX,
    Money,
    apply_rate,
    format_fen,
    format_fen_grouped,
    parse_fen,
    parse_rate,
    split_equal,
    split_fen,
)

# --- what officers type --------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "fen"),
    [
        ("1,234,567.89", 123_456_789),
        ("1234567.89", 123_456_789),
        ("1234567.89元", 123_456_789),
        ("1,234,567.89元", 123_456_789),
        ("300万", 300_000_000),  # 3,000,000.00 yuan
        ("300万元", 300_000_000),
        ("1.5亿", 15_000_000_000),  # 150,000,000.00 yuan
        ("1.234万", 1_234_000),  # 12,340.00 yuan: decimals of 万 are fine while they stay whole fen
        ("1.23456万", 1_234_560),  # 12,345.60 yuan: still whole fen
        ("0.000001亿", 10_000),  # 100.00 yuan
        ("¥1,234.00", 123_400),
        ("￥1,234.00", 123_400),
        ("¥ 5元", 500),
        ("1，234，567.89", 123_456_789),  # full-width commas, as a Chinese IME types them
        ("  42.5 ", 4_250),
        ("12.3", 1_230),
        ("0.01", 1),
        ("00012", 1_200),
        ("+5", 500),
        ("1 234.00", 123_400),
        ("1234.56CNY", 123_456),
        ("１２３", 12_300),  # full-width digits, as a Chinese IME types them, are still digits
    ],
)
def test_parse_fen_accepts_what_officers_type(typed, fen):
    assert parse_fen(typed) == fen


def test_parse_fen_accepts_ints_as_yuan_and_exact_decimals():
    assert parse_fen(300) == 30_000
    assert parse_fen(Decimal("1234.56")) == 123_456
    assert parse_fen(Decimal("1E+2")) == 10_000


def test_negative_amounts_need_allow_negative():
    assert parse_fen("-1,234.50", allow_negative=True) == -123_450
    assert parse_fen("-300万", allow_negative=True) == -300_000_000
    with pytest.raises(Refusal) as refused:
        parse_fen("-1,234.50")
    assert refused.value.code == "amount_must_not_be_negative"
    assert str(refused.value) == (
        "amount '-1,234.50' is negative; amounts here are positive, corrections are reversals."
    )


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        (1.5, "amount_must_not_be_float"),
        (0.1, "amount_must_not_be_float"),
        (True, "amount_must_not_be_float"),
        (float("nan"), "amount_must_not_be_float"),
        (Decimal("NaN"), "amount_must_be_finite"),
        (Decimal("Infinity"), "amount_must_be_finite"),
        (Decimal("-Infinity"), "amount_must_be_finite"),
        ("NaN", "amount_must_be_well_formed"),
        ("nan", "amount_must_be_well_formed"),
        ("inf", "amount_must_be_well_formed"),
        ("Infinity", "amount_must_be_well_formed"),
        ("1e5", "amount_must_be_well_formed"),
        ("1E5", "amount_must_be_well_formed"),
        ("1.5e2", "amount_must_be_well_formed"),
        ("1.234", "amount_must_have_at_most_two_decimals"),
        ("0.001", "amount_must_have_at_most_two_decimals"),
        ("1.2345678万", "amount_must_have_at_most_two_decimals"),
        ("0.00000000001亿", "amount_must_have_at_most_two_decimals"),
        (Decimal("0.001"), "amount_must_have_at_most_two_decimals"),
        ("", "amount_must_not_be_empty"),
        ("   ", "amount_must_not_be_empty"),
        ("元", "amount_must_be_well_formed"),
        ("¥", "amount_must_not_be_empty"),
        ("abc", "amount_must_be_well_formed"),
        ("12,34", "amount_must_be_well_formed"),
        ("1,2345", "amount_must_be_well_formed"),
        ("1.2.3", "amount_must_be_well_formed"),
        ("1.", "amount_must_be_well_formed"),
        (".5", "amount_must_be_well_formed"),
        ("5万万", "amount_must_be_well_formed"),
        ("5千", "amount_must_be_well_formed"),
        ("--5", "amount_must_be_well_formed"),
        ("0x10", "amount_must_be_well_formed"),
        (None, "amount_must_be_text"),
        ([1], "amount_must_be_text"),
        ("2000000000000000", "amount_must_be_in_range"),
    ],
)
def test_parse_fen_refuses(typed, code):
    with pytest.raises(Refusal) as refused:
        parse_fen(typed, allow_negative=True)
    assert refused.value.code == code
    assert "\n" not in str(refused.value)


def test_refusal_messages_name_the_field_and_the_fix():
    with pytest.raises(Refusal) as refused:
        parse_fen(1.5, field="bid payment")
    assert str(refused.value) == (
        "bid payment 1.5 is a binary float; give it as text such as '1234.56' so no fen is lost."
    )
    with pytest.raises(Refusal) as refused:
        parse_fen("1.234")
    assert str(refused.value) == (
        "amount '1.234' has more than two decimals (fen); round it to 0.01 yuan and retry."
    )
    with pytest.raises(Refusal) as refused:
        parse_fen("1e5")
    assert str(refused.value) == (
        "amount '1e5' is not an amount; write e.g. 1,234,567.89 or 1234567.89元 or 300万."
    )
    with pytest.raises(Refusal) as refused:
        parse_fen("")
    assert str(refused.value) == "amount is empty; give an amount such as 1234.56."


def test_range_boundary():
    assert parse_fen(Decimal(AMOUNT_FEN_MAX) / 100) == AMOUNT_FEN_MAX
    with pytest.raises(Refusal):
        parse_fen(Decimal(AMOUNT_FEN_MAX + 1) / 100)


# --- the Money type and formatting ------------------------------------------------------


def test_money_holds_whole_fen_only():
    assert Money.of("300万") == Money(300_000_000)
    assert Money.of("-0.05", allow_negative=True).fen == -5
    assert (Money(150) + Money(-50)).fen == 100
    assert (Money(150) - Money(200)).fen == -50
    assert (-Money(7)).fen == -7
    assert not Money.zero()
    assert Money(12_345).to_decimal() == Decimal("123.45")
    assert str(Money(-123_450)) == "-1234.50"
    for bad in (1.5, Decimal(1), "1", True):
        with pytest.raises(TypeError):
            Money(bad)


@pytest.mark.parametrize(
    ("fen", "plain", "grouped"),
    [
        (0, "0.00", "0.00"),
        (5, "0.05", "0.05"),
        (-5, "-0.05", "-0.05"),
        (123_456_789, "1234567.89", "1,234,567.89"),
        (-300_000_000, "-3000000.00", "-3,000,000.00"),
    ],
)
def test_format_fen(fen, plain, grouped):
    assert format_fen(fen) == plain
    assert format_fen_grouped(fen) == grouped
    assert parse_fen(plain, allow_negative=True) == fen
    assert parse_fen(grouped, allow_negative=True) == fen


@given(st.integers(min_value=-AMOUNT_FEN_MAX, max_value=AMOUNT_FEN_MAX))
def test_format_then_parse_round_trips(fen):
    assert parse_fen(format_fen(fen), allow_negative=True) == fen
    assert parse_fen(format_fen_grouped(fen), allow_negative=True) == fen


# --- rates and rounding -----------------------------------------------------------------


def test_apply_rate_rounds_half_up_at_half_a_fen_in_both_signs():
    # 5 fen * 0.5 = 2.5 fen exactly: half up goes away from zero in both signs.
    assert apply_rate(5, Decimal("0.5"), rounding=ROUND_HALF_UP) == 3
    assert apply_rate(-5, Decimal("0.5"), rounding=ROUND_HALF_UP) == -3
    # Banker's rounding would give 2: the mode named at the call is the one applied.
    assert apply_rate(5, Decimal("0.5"), rounding=ROUND_HALF_EVEN) == 2
    assert apply_rate(-5, Decimal("0.5"), rounding=ROUND_HALF_EVEN) == -2
    # Just under and just over half a fen.
    assert apply_rate(1_249, Decimal("0.002"), rounding=ROUND_HALF_UP) == 2  # 2.498
    assert apply_rate(1_251, Decimal("0.002"), rounding=ROUND_HALF_UP) == 3  # 2.502
    assert apply_rate(-1_249, Decimal("0.002"), rounding=ROUND_HALF_UP) == -2
    assert apply_rate(-1_251, Decimal("0.002"), rounding=ROUND_HALF_UP) == -3


def test_apply_rate_subsidy_example():
    # 40% of 1,234.57 yuan paid in cash = 493.828 yuan -> 493.83 yuan.
    assert apply_rate(123_457, Decimal("0.40"), rounding=ROUND_HALF_UP) == 49_383
    # 40% of 0.05 yuan is exactly 0.02 yuan: no rounding needed.
    assert apply_rate(5, Decimal("0.40"), rounding=ROUND_HALF_UP) == 2
    assert apply_rate(300_000_000, Decimal("0.40"), rounding=ROUND_HALF_UP) == 120_000_000


def test_apply_rate_refuses_a_float_rate():
    with pytest.raises(TypeError):
        apply_rate(100, 0.4, rounding=ROUND_HALF_UP)


@pytest.mark.parametrize(
    ("typed", "rate"),
    [("0.40", Decimal("0.40")), ("40%", Decimal("0.40")), ("0", Decimal(0)), ("1", Decimal(1)), ("100%", Decimal(1))],
)
def test_parse_rate_accepts(typed, rate):
    assert parse_rate(typed) == rate


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        (0.4, "rate_must_not_be_float"),
        ("1e-1", "rate_must_be_well_formed"),
        ("NaN", "rate_must_be_well_formed"),
        ("forty", "rate_must_be_well_formed"),
        ("1.01", "rate_must_be_between_0_and_1"),
        ("101%", "rate_must_be_between_0_and_1"),
        ("-0.1", "rate_must_be_between_0_and_1"),
    ],
)
def test_parse_rate_refuses(typed, code):
    with pytest.raises(Refusal) as refused:
        parse_rate(typed)
    assert refused.value.code == code


# --- splits -----------------------------------------------------------------------------


def test_split_examples():
    # 60/40 of 1,000,000.01 yuan: the odd fen goes to the first tranche.
    assert split_fen(100_000_001, [60, 40]) == [60_000_001, 40_000_000]
    assert split_equal(100, 3) == [34, 33, 33]
    assert split_equal(101, 3) == [34, 34, 33]
    assert split_equal(-100, 3) == [-34, -33, -33]
    assert split_equal(2, 3) == [1, 1, 0]
    assert split_fen(10, [0, 1, 1]) == [0, 5, 5]
    assert split_fen(11, [0, 1, 1]) == [0, 6, 5]  # a zero-weight part never takes a leftover fen
    assert split_fen(0, [1, 2]) == [0, 0]
    assert split_fen(1, [Decimal("0.6"), Decimal("0.4")]) == [1, 0]


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1], [-1]])
def test_split_refuses_meaningless_weights(weights):
    with pytest.raises(ValueError):
        split_fen(100, weights)


_totals = st.integers(min_value=-(10**13), max_value=10**13)


@settings(max_examples=300)
@given(total=_totals, weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12))
def test_split_parts_always_sum_and_leftovers_go_to_the_earliest_parts(total, weights):
    if sum(weights) == 0:
        weights = [*weights[:-1], 1]
    parts = split_fen(total, weights)
    assert sum(parts) == total
    assert len(parts) == len(weights)
    whole = sum(weights)
    magnitude = abs(total)
    sign = -1 if total < 0 else 1
    floors = [magnitude * w // whole for w in weights]
    extras = [sign * part - floor for part, floor in zip(parts, floors)]
    assert all(extra in (0, 1) for extra in extras)
    # Zero-weight parts get nothing; among the others the extra fen form a prefix.
    assert all(extra == 0 for extra, w in zip(extras, weights) if w == 0)
    positive_extras = [extra for extra, w in zip(extras, weights) if w > 0]
    assert positive_extras == sorted(positive_extras, reverse=True)
    assert all(part * sign >= 0 for part in parts)


@settings(max_examples=300)
@given(total=_totals, count=st.integers(min_value=1, max_value=50))
def test_equal_split_parts_differ_by_at_most_one_fen_earliest_largest(total, count):
    parts = split_equal(total, count)
    assert sum(parts) == total
    magnitudes = [abs(part) for part in parts]
    assert max(magnitudes) - min(magnitudes) <= 1
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[0] == -(-abs(total) // count)  # the first part is the ceiling
