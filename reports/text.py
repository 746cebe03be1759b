"""Text as it leaves the program for a terminal or a CSV file, made safe against injection.

Names, memos and vouchers are typed by people (or by whoever wrote an import file), so they
may hold anything. Three rules, one per kind of output:

- table (a terminal): control characters, line and paragraph separators and the bidi
  controls are shown as visible escapes (``\\n``, ``\\t``, ``\\r``, ``\\x1b``, ``\\u202e``),
  never printed raw and never dropped, so one value stays on one line of its row and an ANSI
  or OSC escape sequence never reaches the terminal;
- CSV (a spreadsheet): a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
  return is prefixed with a single quote (OWASP's rule for CSV injection) unless the whole
  cell is a number such as ``-1,234.00``, which stays as it is;
- JSON: nothing to do, ``json.dumps`` escapes control characters itself.

Workbook cells have their own rule in ``reports.xlsx`` (text is always a string cell).

This module imports nothing heavy: the CLI uses it on every listing.
"""

from __future__ import annotations

import re
import unicodedata

_CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# A real number: an optional sign, digits with or without thousands separators, an optional
# decimal part. Nothing else (no spaces, no letters, no trailing text) is a number here.
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_PLAIN_AMOUNT = re.compile(r"(-?)(\d+)\.(\d{2})")
# Bidi embeddings, overrides and isolates, and the marks: invisible, yet they reorder what
# the terminal shows ("Trojan Source").
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _needs_escape(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def table_text(value: object) -> str:
    """``value`` as one line for a terminal table: every control character, line separator
    and bidi control written as a visible escape; everything else unchanged."""
    text = "" if value is None else str(value)
    if text.isprintable() and not any(ch in _BIDI for ch in text):  # the common case, fast
        return text
    return "".join(_escape_char(ch) if _needs_escape(ch) else ch for ch in text)


def csv_cell(value: object) -> object:
    """``value`` for a CSV cell: text that a spreadsheet would read as a formula is prefixed
    with a single quote; numbers (and text that is exactly a number) are left as they are."""
    if not isinstance(value, str) or not value.startswith(_CSV_TRIGGERS):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


def csv_row(values) -> list:
    """A row of CSV cells, each through ``csv_cell``."""
    return [csv_cell(v) for v in values]


def grouped_amount(value: object) -> object:
    """A plain amount ``-1234567.50`` (as ``format_fen`` writes it) with thousands separators,
    ``-1,234,567.50``, for a table people read; anything else is returned unchanged."""
    if not isinstance(value, str):
        return value
    match = _PLAIN_AMOUNT.fullmatch(value)
    if match is None:
        return value
    sign, whole, part = match.groups()
    return f"{sign}{int(whole):,}.{part}"
