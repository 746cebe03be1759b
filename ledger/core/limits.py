"""Limits on what a file or a user can put into the ledger: dates, text, running totals.

* Dates are written one of four ways everywhere (every verb, the import, posted files):
  ``2026-03-05``, ``2026/3/5``, ``20260305`` or ``2026年3月5日`` (``parse_date``).
* Value dates lie in a window, 2000-01-01..2099-12-31 unless the environment variables
  ``JIEBANG_DATE_MIN`` / ``JIEBANG_DATE_MAX`` (YYYY-MM-DD) say otherwise: a date of year 9999
  or year 1 was accepted and then broke the exports (``OverflowError``).
* A value date an officer types lies at most ``JIEBANG_FUTURE_DAYS`` days after today
  (DEFAULT 31: a voucher dated at the end of the month or a payment scheduled within it),
  unless the verb is given ``--allow-future`` (``check_not_future``).
* Text fields never hold a NUL character: SQLite stored it, PostgreSQL refused it with a driver
  error, so the two backends disagreed; it is refused at the input on both.
* The sum of the absolute amounts posted to one account, and within one entry, stays at or
  below ``TOTAL_FEN_MAX`` (2**62 fen): every balance, debit total or credit total of an account
  (any date, any subset of its postings) then fits a 64-bit integer with room to spare, where
  100 postings of 1,000,000,000,000,000.00 made SQLite's SUM fail with "integer overflow".
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from collections.abc import Iterable

from ledger.core.errors import Refusal
from ledger.core.money import format_fen

DATE_MIN_DEFAULT = dt.date(2000, 1, 1)
DATE_MAX_DEFAULT = dt.date(2099, 12, 31)
TOTAL_FEN_MAX = 2**62
FUTURE_DAYS_DEFAULT = 31
DATE_FORMS = "2026-03-05, 2026/3/5, 20260305 or 2026年3月5日"
_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m1>\d{1,2})-(?P<d1>\d{1,2})|/(?P<m2>\d{1,2})/(?P<d2>\d{1,2})"
    r"|(?P<m3>\d{2})(?P<d3>\d{2})|年(?P<m4>\d{1,2})月(?P<d4>\d{1,2})日)"
)


def parse_date(value, where: str = "date") -> dt.date:
    """A date written ``2026-03-05``, ``2026/3/5``, ``20260305`` or ``2026年3月5日`` (full-width
    digits too), or a date object; anything else is the one-line refusal. No window check:
    ``read_date`` adds it."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = unicodedata.normalize("NFKC", str(value)).strip().replace(" ", "")
    match = _DATE.fullmatch(text)
    if match is not None:
        parts = match.groupdict()
        month = next(parts[k] for k in ("m1", "m2", "m3", "m4") if parts[k] is not None)
        day = next(parts[k] for k in ("d1", "d2", "d3", "d4") if parts[k] is not None)
        try:
            return dt.date(int(parts["y"]), int(month), int(day))
        except ValueError:
            pass
    raise Refusal("date_must_be_iso", f"{where} {str(value)!r} is not a date; write it as {DATE_FORMS}.")


def read_date(value, where: str = "date") -> dt.date:
    """``parse_date`` and then the window of ``check_date``."""
    return check_date(parse_date(value, where), where)


def future_days() -> int:
    """How many days after today a value date may lie (``JIEBANG_FUTURE_DAYS``, DEFAULT 31)."""
    text = os.environ.get("JIEBANG_FUTURE_DAYS", "").strip()
    if not text:
        return FUTURE_DAYS_DEFAULT
    if not text.isdigit():
        raise Refusal("date_window_must_be_valid", f"JIEBANG_FUTURE_DAYS={text!r} is not a number of days; write e.g. 31 or unset it.")
    return int(text)


def check_not_future(value: dt.date, where: str = "date", *, today: dt.date | None = None) -> dt.date:
    """``value`` unless it lies more than ``future_days()`` days after today."""
    today = today or dt.date.today()
    allowed = future_days()
    if (value - today).days > allowed:
        raise Refusal(
            "date_must_not_be_far_future",
            f"{where} {value.isoformat()} is {(value - today).days} days after today ({today.isoformat()}), more than the "
            f"{allowed} allowed (JIEBANG_FUTURE_DAYS); correct the date, or add --allow-future if it is right.",
        )
    return value


TOTALS_SESSION_KEY = "jiebang.account_totals"


def _env_date(name: str, default: dt.date) -> dt.date:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise Refusal("date_window_must_be_valid", f"{name}={text!r} is not a date; write it as YYYY-MM-DD or unset it.") from None


def date_window() -> tuple[dt.date, dt.date]:
    """The accepted value dates, inclusive (read from the environment each time)."""
    low, high = _env_date("JIEBANG_DATE_MIN", DATE_MIN_DEFAULT), _env_date("JIEBANG_DATE_MAX", DATE_MAX_DEFAULT)
    if low > high:
        raise Refusal("date_window_must_be_valid", f"JIEBANG_DATE_MIN {low} is after JIEBANG_DATE_MAX {high}; fix or unset them.")
    return low, high


def check_date(value: dt.date, where: str = "date") -> dt.date:
    """``value`` if it lies in the window, else the one-line refusal."""
    low, high = date_window()
    if not low <= value <= high:
        raise Refusal(
            "date_must_be_in_window",
            f"{where} {value.isoformat()} is outside the ledger's dates {low}..{high}; "
            "correct the date (the window is set by JIEBANG_DATE_MIN / JIEBANG_DATE_MAX).",
        )
    return value


def check_ordinals(ordinals: Iterable[int], where) -> None:
    """Refuse the first date ordinal outside the window; ``where(ordinal)`` names its place."""
    low, high = (d.toordinal() for d in date_window())
    for ordinal in ordinals:
        if not low <= ordinal <= high:
            check_date(dt.date.fromordinal(ordinal), where(ordinal))


def check_text(value, field: str):
    """``value`` unless it is text holding a NUL character (anywhere, nested in dicts and lists)."""
    if _has_nul(value):
        raise nul_refusal(field)
    return value


def nul_refusal(field: str) -> Refusal:
    return Refusal(
        "text_must_not_contain_nul",
        f"{field} contains a NUL character (\\x00); remove it (it is never part of a name, voucher or memo).",
    )


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def total_refusal(account: str, posted: int, incoming: int) -> Refusal:
    return Refusal(
        "account_total_must_fit",
        f"account {account} would reach {format_fen(posted + incoming)} in absolute amounts posted "
        f"({format_fen(posted)} before, {format_fen(incoming)} now), past the bound {format_fen(TOTAL_FEN_MAX)} "
        f"that keeps every sum inside 64-bit integers; split the amounts across accounts or correct them.",
    )


def entry_total_refusal(kind: str, voucher: str | None, total: int) -> Refusal:
    return Refusal(
        "entry_total_must_fit",
        f"entry {kind} {voucher or ''} moves {format_fen(total)} in absolute amounts, past the bound "
        f"{format_fen(TOTAL_FEN_MAX)} that keeps every sum inside 64-bit integers; correct the amounts.".replace("  ", " "),
    )


def check_account_totals(session, incoming: dict[int, int], names: dict[int, str]) -> None:
    """Refuse when an account's absolute amounts posted so far plus ``incoming`` (account id ->
    sum of absolute amounts about to be written) would pass ``TOTAL_FEN_MAX``.

    One grouped query for the accounts touched, 500 ids at a time; skipped entirely when the
    incoming amounts are zero.
    """
    from sqlalchemy import func, select

    from ledger.core.models import Posting

    ids = sorted(a for a, amount in incoming.items() if amount)
    if not ids:
        return
    bound = TOTAL_FEN_MAX
    for account_id in ids:  # no query can save an account whose incoming amounts alone pass it
        if incoming[account_id] > bound:
            raise total_refusal(names[account_id], 0, incoming[account_id])
    # A run of many entries in one transaction (an import) keeps the totals it has read and
    # adds what it writes, under this session key, instead of summing an account again for
    # every entry; whoever sets the key must clear it when a write is rolled back.
    known = session.info.get(TOTALS_SESSION_KEY)
    unknown = ids if known is None else [a for a in ids if a not in known]
    posted_by_id: dict[int, int] = {}
    for start in range(0, len(unknown), 500):
        chunk = unknown[start : start + 500]
        rows = session.execute(
            select(Posting.account_id, func.sum(func.abs(Posting.amount_fen))).where(Posting.account_id.in_(chunk)).group_by(Posting.account_id)
        )
        for account_id, posted in rows:
            posted_by_id[account_id] = int(posted or 0)
    if known is not None:
        known.update({a: posted_by_id.get(a, 0) for a in unknown})
        posted_by_id = {a: known[a] for a in ids}
    for account_id in ids:
        posted = posted_by_id.get(account_id, 0)
        if posted + incoming[account_id] > bound:
            raise total_refusal(names[account_id], posted, incoming[account_id])
    if known is not None:
        for account_id in ids:
            known[account_id] += incoming[account_id]
