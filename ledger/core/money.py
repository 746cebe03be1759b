"""Exact CNY amounts in whole fen, parsing of what officers type, rounding and splits.

Decimal policy: an amount is an ``int`` number of fen (0.01 yuan) everywhere it is stored or
summed. Rates are ``Decimal``. Every multiplication by a rate names its rounding mode at the
call (ROUND_HALF_UP, as Chinese accounting practice expects). Floats are refused on input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from ledger.core.errors import Refusal

FEN_PER_YUAN = 100
AMOUNT_FEN_MAX = 10**17  # one quadrillion yuan: far beyond any budget, inside a 64-bit integer.

_UNITS = {"": Decimal(1), "万": Decimal(10_000), "亿": Decimal(100_000_000)}
# Digits with optional thousands separators, an optional decimal part, an optional 万/亿 unit
# and an optional trailing 元. Exponents, NaN, infinity and anything else never match.
_AMOUNT_RE = re.compile(
    r"^(?P<sign>[-+]?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?"
    r"(?P<unit>万|亿)?(?:元)?$"
)


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An exact CNY amount in fen (0.01 yuan).

    Attributes:
      fen: the amount as a whole number of fen; negative for credits or refunds.
    """

    fen: int

    def __post_init__(self) -> None:
        if isinstance(self.fen, bool) or not isinstance(self.fen, int):
            raise TypeError(f"Money.fen must be an int, got {type(self.fen).__name__}")

    @classmethod
    def zero(cls) -> Money:
        return cls(0)

    @classmethod
    def of(cls, text: str | int | Decimal, *, allow_negative: bool = False) -> Money:
        return cls(parse_fen(text, allow_negative=allow_negative))

    def __add__(self, other: Money) -> Money:
        return Money(self.fen + other.fen)

    def __sub__(self, other: Money) -> Money:
        return Money(self.fen - other.fen)

    def __neg__(self) -> Money:
        return Money(-self.fen)

    def __bool__(self) -> bool:
        return self.fen != 0

    def to_decimal(self) -> Decimal:
        return Decimal(self.fen).scaleb(-2)

    def __str__(self) -> str:
        return format_fen(self.fen)


def format_fen(fen: int) -> str:
    """Render fen as yuan with exactly two decimals and no separators: ``-1234.50``."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{part:02d}"


def format_fen_grouped(fen: int) -> str:
    """Render fen as yuan with thousands separators, for tables people read: ``1,234.50``."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole:,}.{part:02d}"


def parse_fen(text: str | int | Decimal, *, allow_negative: bool = False, field: str = "amount") -> int:
    """Parse an amount an officer typed into whole fen, or refuse it in one line.

    Accepts ``1,234,567.89``, ``1234567.89元``, ``300万`` (3,000,000.00), ``1.5亿``, ints
    (taken as yuan) and Decimals. Refuses floats, NaN, exponents, empty text, more than two
    decimals once the unit is applied, and negatives unless ``allow_negative``.
    """
    if isinstance(text, (bool, float)):
        raise Refusal(
            "amount_must_not_be_float",
            f"{field} {text!r} is a binary float; give it as text such as '1234.56' so no fen is lost.",
        )
    if isinstance(text, int):
        value = Decimal(text)
    elif isinstance(text, Decimal):
        if not text.is_finite():
            raise Refusal("amount_must_be_finite", f"{field} {text} is not a finite number.")
        value = text
    elif isinstance(text, str):
        value = _parse_text(text, field)
    else:
        raise Refusal("amount_must_be_text", f"{field} {text!r} is not an amount.")
    if value.adjusted() > 18:  # far beyond AMOUNT_FEN_MAX; refuse before any arithmetic on it
        raise Refusal("amount_must_be_in_range", f"{field} {_show(text)} is beyond any plausible amount.")
    fen_exact = value * FEN_PER_YUAN
    if fen_exact != fen_exact.to_integral_value():
        raise Refusal(
            "amount_must_have_at_most_two_decimals",
            f"{field} {_show(text)} has more than two decimals (fen); round it to 0.01 yuan and retry.",
        )
    fen = int(fen_exact)
    if fen < 0 and not allow_negative:
        raise Refusal(
            "amount_must_not_be_negative",
            f"{field} {_show(text)} is negative; amounts here are positive, corrections are reversals.",
        )
    if abs(fen) > AMOUNT_FEN_MAX:
        raise Refusal("amount_must_be_in_range", f"{field} {_show(text)} is beyond any plausible amount.")
    return fen


def _show(text: object) -> str:
    shown = repr(text) if isinstance(text, str) else str(text)
    return shown if len(shown) <= 60 else f"{shown[:40]}…({len(shown):,} characters)"


def _parse_text(text: str, field: str) -> Decimal:
    cleaned = text.strip().replace("，", ",").replace(" ", "").replace("\u00a0", "")
    cleaned = cleaned.removeprefix("¥").removeprefix("￥").removesuffix("CNY").removesuffix("RMB")
    if not cleaned:
        raise Refusal("amount_must_not_be_empty", f"{field} is empty; give an amount such as 1234.56.")
    match = _AMOUNT_RE.match(cleaned)
    if match is None:
        raise Refusal(
            "amount_must_be_well_formed",
            f"{field} {_show(text)} is not an amount; write e.g. 1,234,567.89 or 1234567.89元 or 300万.",
        )
    digits = match["int"].replace(",", "") + ("." + match["frac"] if match["frac"] else "")
    try:
        value = Decimal(digits) * _UNITS[match["unit"] or ""]
    except InvalidOperation:  # pragma: no cover - the regex admits only digits
        raise Refusal("amount_must_be_well_formed", f"{field} {text!r} is not an amount.") from None
    return -value if match["sign"] == "-" else value


def parse_rate(text: str | Decimal, *, field: str = "rate") -> Decimal:
    """Parse a rate such as ``0.40`` or ``40%`` into a Decimal in [0, 1]."""
    if isinstance(text, float):
        raise Refusal("rate_must_not_be_float", f"{field} {text!r} must be written as text, e.g. '0.40'.")
    raw = str(text).strip()
    percent = raw.endswith("%")
    try:
        value = Decimal(raw.rstrip("%"))
    except InvalidOperation:
        raise Refusal("rate_must_be_well_formed", f"{field} {raw!r} is not a rate such as 0.40 or 40%.") from None
    if not value.is_finite() or "e" in raw.lower():
        raise Refusal("rate_must_be_well_formed", f"{field} {raw!r} is not a rate such as 0.40 or 40%.")
    if percent:
        value = value / 100
    if not (Decimal(0) <= value <= Decimal(1)):
        raise Refusal("rate_must_be_between_0_and_1", f"{field} {raw} is outside 0..1.")
    return value


def apply_rate(base_fen: int, rate: Decimal, *, rounding: str) -> int:
    """Multiply an amount by a rate and round to the fen with the named rounding mode."""
    if not isinstance(rate, Decimal):
        raise TypeError("rate must be a Decimal")
    return int((Decimal(base_fen) * rate).to_integral_value(rounding=rounding))


def round_half_up_fen(value: Decimal) -> int:
    """Round a Decimal number of fen to a whole fen, half away from zero."""
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def split_fen(total_fen: int, weights: Sequence[Decimal | int]) -> list[int]:
    """Split ``total_fen`` by ``weights`` so the parts add up exactly to the total.

    Each part is floored; the leftover fen go one each to the earliest parts, so the first
    tranche (or the first lane) carries any odd fen. ``sum(result) == total_fen`` always.
    """
    if not weights:
        raise ValueError("split needs at least one weight")
    ws = [Decimal(w) for w in weights]
    if any(w < 0 for w in ws) or sum(ws) <= 0:
        raise ValueError("split weights must be non-negative and not all zero")
    whole = sum(ws)
    sign = -1 if total_fen < 0 else 1
    magnitude = abs(total_fen)
    parts = [int((Decimal(magnitude) * w / whole).to_integral_value(rounding="ROUND_FLOOR")) for w in ws]
    leftover = magnitude - sum(parts)
    i = 0
    while leftover > 0:
        if ws[i % len(ws)] > 0:
            parts[i % len(ws)] += 1
            leftover -= 1
        i += 1
    result = [sign * p for p in parts]
    assert sum(result) == total_fen
    return result


def split_equal(total_fen: int, count: int) -> list[int]:
    """Split an amount into ``count`` equal parts; leftover fen go to the earliest parts."""
    return split_fen(total_fen, [1] * count)


def total(amounts: Iterable[int]) -> int:
    return sum(amounts, 0)
