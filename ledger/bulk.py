"""Reading entries from files for the bulk path: CSV postings (ledger-shaped) and JSON entries."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

from ledger.errors import Refusal
from ledger.journal import AccountSpec, EntryDraft, PostingDraft
from ledger.money import AMOUNT_FEN_MAX, parse_fen

CSV_REQUIRED = ("txn_id", "date", "account", "amount")
CSV_OPTIONAL = ("book", "memo", "voucher", "kind", "project", "category", "source")


def decode_text(raw: bytes, path: Path) -> str:
    """Decode UTF-8 (with or without BOM), or GB18030 as Chinese Excel saves CSV."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise Refusal("file_must_be_text", f"{path} is neither UTF-8 nor GBK text; save it as CSV UTF-8 and retry.")


def read_entries_file(path: Path, *, default_kind: str, actor: str) -> tuple[list[EntryDraft], list[AccountSpec]]:
    if path.suffix.lower() != ".json":
        # A CSV is read streaming (a large file never sits in memory as one string):
        # UTF-8 first, then GB18030 as Chinese Excel saves it.
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                with path.open("r", encoding=encoding, newline="") as handle:
                    return _read_csv(handle, path, default_kind, actor)
            except UnicodeDecodeError:
                continue
            except OSError as exc:
                raise Refusal("file_must_be_readable", f"cannot read {path}: {exc.strerror}.") from None
        raise Refusal("file_must_be_text", f"{path} is neither UTF-8 nor GBK text; save it as CSV UTF-8 and retry.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Refusal("file_must_be_readable", f"cannot read {path}: {exc.strerror}.") from None
    text = decode_text(raw, path)
    return _read_json(text, path, default_kind, actor), []


def _date(value: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise Refusal("date_must_be_iso", f"{where}: date {value!r} is not YYYY-MM-DD.") from None


# A plain amount (``-1234.56``, ``1234.5``, ``1234``) is parsed without Decimal; anything
# else (thousands separators, 元, 万, 亿, ¥ …) goes through ``parse_fen``.
_PLAIN_AMOUNT = re.compile(r"(-?)(\d{1,15})(?:\.(\d{1,2}))?")


def _fen(text: str, field: str) -> int:
    match = _PLAIN_AMOUNT.fullmatch(text)
    if match is None:
        return parse_fen(text, allow_negative=True, field=field)
    sign, whole, frac = match.groups()
    fen = int(whole) * 100 + (int(frac.ljust(2, "0")) if frac else 0)
    if abs(fen) > AMOUNT_FEN_MAX:  # the same refusal parse_fen gives
        return parse_fen(text, allow_negative=True, field=field)
    return -fen if sign else fen


def _read_csv(text, path: Path, default_kind: str, actor: str) -> tuple[list[EntryDraft], list[AccountSpec]]:
    """Rows sharing a txn_id make one entry, in the order of each txn_id's first row.

    Rows are read with ``csv.reader`` (no dict per row), dates and account names are
    interned, and plain amounts skip Decimal, so a 700,000-row file reads in about a second
    per 100,000 entries and holds only the drafts.
    """
    reader = csv.reader(io.StringIO(text) if isinstance(text, str) else text)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise Refusal("csv_must_have_columns", f"{path} lacks column(s) {', '.join(missing)}; the header must start txn_id,date,account,amount.")
    unknown = [c for c in header if c not in CSV_REQUIRED + CSV_OPTIONAL]
    if unknown:
        raise Refusal("csv_columns_must_be_known", f"{path} has unknown column(s) {', '.join(unknown)}; allowed: {', '.join(CSV_REQUIRED + CSV_OPTIONAL)}.")
    col = {name: header.index(name) for name in header}
    width = len(header)
    i_txn, i_date, i_account, i_amount = (col[c] for c in CSV_REQUIRED)
    optional = {name: col.get(name) for name in CSV_OPTIONAL}

    def cell(row: list[str], name: str) -> str:
        index = optional[name]
        return row[index] if index is not None and index < len(row) else ""

    dates: dict[str, dt.date] = {}
    names: dict[str, str] = {}
    # txn_id -> [value date, kind, project, voucher, memo, postings]
    groups: dict[str, list] = {}
    first_use: dict[str, AccountSpec] = {}
    has_book, has_project = optional["book"] is not None, optional["project"] is not None
    has_tags = optional["category"] is not None or optional["source"] is not None
    for line_no, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < width:
            row = row + [""] * (width - len(row))
        txn = row[i_txn].strip()
        if not txn:
            raise Refusal("csv_row_must_have_txn_id", f"{path} line {line_no}: txn_id is empty.")
        raw_date = row[i_date]
        value_date = dates.get(raw_date)
        if value_date is None:
            value_date = dates[raw_date] = _date(raw_date, f"{path} line {line_no}")
        group = groups.get(txn)
        if group is None:
            # Only what the entry needs from its first row (not the row itself).
            group = groups[txn] = [
                value_date,
                names.setdefault(kind := (cell(row, "kind") or default_kind).strip(), kind),
                cell(row, "project") or None,
                cell(row, "voucher") or None,
                names.setdefault(memo := cell(row, "memo"), memo),
                [],
            ]
        elif group[0] is not value_date and group[0] != value_date:
            raise Refusal("entry_must_have_one_date", f"{path} line {line_no}: txn {txn} has rows with different dates.")
        account = row[i_account].strip()
        account = names.setdefault(account, account)
        amount = _fen(row[i_amount].strip(), f"{path} line {line_no} amount")
        if has_tags:
            group[5].append(PostingDraft(account, amount, cell(row, "category") or None, cell(row, "source") or None))
        else:
            group[5].append(PostingDraft(account, amount))
        spec = first_use.get(account)
        if spec is None or value_date < spec.opened_on:
            book = (cell(row, "book") or "fiscal").strip() if has_book else "fiscal"
            project = (cell(row, "project") or None) if has_project else None
            first_use[account] = AccountSpec(account, book, value_date, project)
    drafts: list[EntryDraft] = []
    for txn, (value_date, kind, project, voucher, memo, postings) in groups.items():
        drafts.append(
            EntryDraft(
                value_date=value_date,
                kind=kind,
                postings=tuple(postings),
                project_code=project,
                voucher=voucher or txn,
                memo=memo,
                actor=actor,
            )
        )
    groups.clear()
    return drafts, list(first_use.values())


def _read_json(text: str, path: Path, default_kind: str, actor: str) -> list[EntryDraft]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refusal("json_must_be_valid", f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}.") from None
    items = data if isinstance(data, list) else [data]
    drafts = []
    for index, item in enumerate(items, start=1):
        where = f"{path} entry {index}"
        if not isinstance(item, dict) or not isinstance(item.get("postings"), list):
            raise Refusal("json_entry_must_have_postings", f"{where}: an entry is an object with a 'postings' list.")
        postings = []
        for leg in item["postings"]:
            if not isinstance(leg, dict) or "account" not in leg or "amount" not in leg:
                raise Refusal("json_posting_must_have_account_and_amount", f"{where}: each posting needs 'account' and 'amount'.")
            postings.append(
                PostingDraft(
                    str(leg["account"]),
                    parse_fen(leg["amount"], allow_negative=True, field=f"{where} amount"),
                    leg.get("category"),
                    leg.get("source"),
                )
            )
        drafts.append(
            EntryDraft(
                value_date=_date(str(item.get("date", "")), where),
                kind=str(item.get("kind") or default_kind),
                postings=tuple(postings),
                project_code=item.get("project"),
                voucher=item.get("voucher"),
                memo=str(item.get("memo") or ""),
                actor=actor,
            )
        )
    return drafts
