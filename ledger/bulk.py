"""Reading entries from files for the bulk path: CSV postings (ledger-shaped) and JSON entries."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

from ledger.errors import Refusal
from ledger.journal import AccountSpec, EntryDraft, PostingDraft
from ledger.money import parse_fen

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
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Refusal("file_must_be_readable", f"cannot read {path}: {exc.strerror}.") from None
    text = decode_text(raw, path)
    if path.suffix.lower() == ".json":
        return _read_json(text, path, default_kind, actor), []
    return _read_csv(text, path, default_kind, actor)


def _date(value: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise Refusal("date_must_be_iso", f"{where}: date {value!r} is not YYYY-MM-DD.") from None


def _read_csv(text: str, path: Path, default_kind: str, actor: str) -> tuple[list[EntryDraft], list[AccountSpec]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise Refusal("csv_must_have_columns", f"{path} lacks column(s) {', '.join(missing)}; the header must start txn_id,date,account,amount.")
    unknown = [c for c in header if c not in CSV_REQUIRED + CSV_OPTIONAL]
    if unknown:
        raise Refusal("csv_columns_must_be_known", f"{path} has unknown column(s) {', '.join(unknown)}; allowed: {', '.join(CSV_REQUIRED + CSV_OPTIONAL)}.")
    groups: dict[str, list[tuple[int, dict]]] = {}
    for line_no, row in enumerate(reader, start=2):
        txn = (row.get("txn_id") or "").strip()
        if not txn:
            raise Refusal("csv_row_must_have_txn_id", f"{path} line {line_no}: txn_id is empty.")
        groups.setdefault(txn, []).append((line_no, row))
    drafts: list[EntryDraft] = []
    first_use: dict[str, AccountSpec] = {}
    for txn, rows in groups.items():
        line_no, first = rows[0]
        where = f"{path} line {line_no}"
        value_date = _date(first["date"], where)
        postings = []
        for line, row in rows:
            if _date(row["date"], f"{path} line {line}") != value_date:
                raise Refusal("entry_must_have_one_date", f"{path} line {line}: txn {txn} has rows with different dates.")
            account = (row["account"] or "").strip()
            amount = parse_fen(row["amount"] or "", allow_negative=True, field=f"{path} line {line} amount")
            postings.append(PostingDraft(account, amount, row.get("category") or None, row.get("source") or None))
            book = (row.get("book") or "fiscal").strip()
            spec = first_use.get(account)
            if spec is None or value_date < spec.opened_on:
                first_use[account] = AccountSpec(account, book, value_date, (row.get("project") or None))
        drafts.append(
            EntryDraft(
                value_date=value_date,
                kind=(first.get("kind") or default_kind).strip(),
                postings=tuple(postings),
                project_code=(first.get("project") or None),
                voucher=(first.get("voucher") or None) or txn,
                memo=(first.get("memo") or ""),
                actor=actor,
            )
        )
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
