"""The bulk path: ledger-shaped CSV postings read and posted as columns; JSON entries as drafts."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gc
import hashlib
import itertools
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from ledger.core import limits
from ledger.core.errors import Refusal
from ledger.core.journal import AccountSpec, EntryDraft, PostingDraft
from ledger.core.models import BOOKS
from ledger.core.money import AMOUNT_FEN_MAX, format_fen, parse_fen

CSV_REQUIRED = ("txn_id", "date", "account", "amount")
CSV_OPTIONAL = ("book", "memo", "voucher", "kind", "project", "category", "source")


def decode_text(raw: bytes, path: Path) -> str:
    """Decode one encoding for the whole file: UTF-8 (with or without BOM), or, when the file is
    not UTF-8 at all, GB18030 as Chinese Excel saves CSV. A file whose lines mix the two is
    refused naming the first line that does not fit: decoding it whole as GB18030 would turn
    every UTF-8 line into other characters (a voucher 江财-1 became 姹熻储-1) without a word."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    _refuse_mixed(raw.split(b"\n"), path)
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise _not_text(path) from None


def _not_text(path: Path) -> Refusal:
    return Refusal("file_must_be_text", f"{path} is neither UTF-8 nor GBK text; save it as CSV UTF-8 and retry.")


def _refuse_mixed(lines, path: Path) -> None:
    """Given the lines (bytes) of a file that is not valid UTF-8 as a whole: refuse it when some
    line with non-ASCII text is UTF-8 (or the file starts with a UTF-8 BOM) and another is not."""
    first_utf8 = first_other = None
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            first_utf8 = 1
            line = line[3:]
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            if first_other is None:
                first_other = number
        else:
            if first_utf8 is None:
                first_utf8 = number
        if first_utf8 is not None and first_other is not None:
            odd = max(first_utf8, first_other)
            other = "UTF-8" if odd == first_other else "GBK/GB18030"
            raise Refusal(
                "file_must_have_one_encoding",
                f"{path} mixes encodings: line {odd} does not fit the {other} of line {min(first_utf8, first_other)}; "
                "nothing was read. Save the whole file in one encoding (CSV UTF-8) and retry.",
            )


def read_json_entries(path: Path, *, default_kind: str, actor: str) -> list[EntryDraft]:
    """Entries from a JSON file (an object or a list of objects), as drafts for ``post_many``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise Refusal("file_must_be_readable", f"cannot read {path}: {exc.strerror}.") from None
    return _read_json(decode_text(raw, path), path, default_kind, actor)


def _date(value: str, where: str) -> dt.date:
    if not isinstance(value, str):
        raise Refusal("date_must_be_iso", f"{where}: date {value!r} is not a date; write it as {limits.DATE_FORMS}.")
    return limits.read_date(value, f"{where}: date")


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


# --- the ledger-shaped CSV, column by column ----------------------------------------------
#
# A province's file holds millions of rows. They are read with the csv module's C reader in
# slices of CSV_SLICE rows and kept as integer columns (entry, account, amount in fen) plus one
# small table per entry, never as an object per row: that is what lets `post --file` ingest
# 300,000 entries at tens of thousands a second in a few hundred MB.

CSV_SLICE = 50_000
_TWO_DECIMALS = re.compile(r"-?\d{1,13}\.\d\d")  # the usual amount; anything else goes through _fen
_WITHOUT_POINT = operator.methodcaller("replace", ".", "", 1)  # "-1234.56" -> "-123456" fen
BOOK_NAMES = sorted(BOOKS)  # a posting's book as an index into this (fiscal 0, memo 1)
BOOK_INDEX = {name: i for i, name in enumerate(BOOK_NAMES)}


def _factorize(values) -> tuple[np.ndarray, list]:
    """Codes (first appearance order) and the distinct values, as pandas.factorize gives."""
    uniques = list(dict.fromkeys(values))
    index = {v: i for i, v in enumerate(uniques)}
    return np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values)), uniques


@dataclass(slots=True)
class CsvBatch:
    """A ledger-shaped CSV as columns: one entry per txn_id.

    Attributes:
      path: the file, for messages.
      txn / date_ordinal / kind / project / voucher / memo: per entry, in order of each
        txn_id's first row (the entry's fields come from that row; the voucher defaults to
        the txn_id).
      entry / account / amount_fen / category / source: per posting, in file order;
        ``entry`` indexes the entries, ``account`` indexes ``accounts``.
      accounts: the account names, in order of first appearance.
      specs: for --open-accounts, each account's book and project from its earliest-dated row.
    """

    path: Path
    txn: list[str]
    date_ordinal: np.ndarray
    kind: list[str]
    project: list[str | None]
    voucher: list[str]
    memo: list[str]
    entry: np.ndarray
    account: np.ndarray
    amount_fen: np.ndarray
    category: list[str | None] | None
    source: list[str | None] | None
    accounts: list[str]
    specs: list[AccountSpec]

    def __len__(self) -> int:
        return len(self.txn)


def read_csv_batch(path: Path, *, default_kind: str) -> CsvBatch:
    """Read a ledger-shaped CSV (UTF-8, or GB18030 as Chinese Excel saves it) into columns.

    UTF-8 is read as it streams; only a file that is not UTF-8 is scanned line by line, and
    read as GB18030 when no line of it is UTF-8 text (``decode_text`` has the rule).
    """
    try:
        try:
            with no_cyclic_gc():
                return _CsvReader(path, default_kind).read("utf-8-sig")
        except UnicodeDecodeError:
            pass
        with path.open("rb") as handle:
            _refuse_mixed(handle, path)
        try:
            with no_cyclic_gc():
                return _CsvReader(path, default_kind).read("gb18030")
        except UnicodeDecodeError:
            raise _not_text(path) from None
    except OSError as exc:
        raise Refusal("file_must_be_readable", f"cannot read {path}: {exc.strerror}.") from None


@contextlib.contextmanager
def no_cyclic_gc():
    """Pause the cycle collector: the bulk path makes millions of short-lived lists, tuples and
    strings, none in a cycle, and each automatic collection walked every object alive (a third
    of the CSV read, measured). Reference counting still frees them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _CsvReader:
    """Slices of the file folded into global columns; names, dates and txn_ids interned."""

    def __init__(self, path: Path, default_kind: str):
        self.path = path
        self.default_kind = default_kind
        self.txn_index: dict[str, int] = {}
        self.account_index: dict[str, int] = {}
        self.tag_index: dict[str, int] = {}  # category / source values; 0 is "none"
        self.dates: dict[str, int] = {}  # raw date cell -> ordinal
        self.memos: dict[str, str] = {}  # one object per distinct memo (most repeat)
        self.entries: dict[str, list] = {k: [] for k in ("txn", "date", "kind", "project", "voucher", "memo")}
        self.columns: dict[str, list[np.ndarray]] = {k: [] for k in ("entry", "account", "amount", "category", "source")}
        self.spec_rows: dict[int, tuple[int, str, str | None]] = {}  # account -> (ordinal, book, project)

    def read(self, encoding: str) -> CsvBatch:
        with self.path.open("r", encoding=encoding, newline="") as handle:
            reader = csv.reader(handle)
            header = self._header(next(reader, []))
            seen = 0
            try:
                while rows := list(itertools.islice(reader, CSV_SLICE)):
                    self._slice(rows, header, seen + 2)
                    seen += len(rows)
            except csv.Error as exc:
                raise Refusal("csv_must_be_well_formed", f"{self.path} line {reader.line_num} is not well-formed CSV: {exc}.") from None
        return self._batch(header)

    def _header(self, first: list[str]) -> list[str]:
        header = [h.strip() for h in first]
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise Refusal("csv_must_have_columns", f"{self.path} lacks column(s) {', '.join(missing)}; the header must start txn_id,date,account,amount.")
        unknown = [c for c in header if c not in CSV_REQUIRED + CSV_OPTIONAL]
        if unknown:
            raise Refusal("csv_columns_must_be_known", f"{self.path} has unknown column(s) {', '.join(unknown)}; allowed: {', '.join(CSV_REQUIRED + CSV_OPTIONAL)}.")
        if len(set(header)) != len(header):
            raise Refusal("csv_columns_must_be_known", f"{self.path} names a column twice; each column may appear once.")
        return header

    def _slice(self, rows: list[list[str]], header: list[str], first_line: int) -> None:
        """One slice of records: columns by zip, then the same work for every column at once.

        Lines are counted in records (a quoted cell spanning lines counts once), the header
        being line 1.
        """
        width = len(header)
        lines = np.arange(first_line, first_line + len(rows), dtype=np.int64)
        widths = set(map(len, rows))
        if widths != {width}:
            rows, lines = self._fit(rows, lines, width)
            if not rows:
                return
        cells = dict(zip(header, zip(*rows)))  # tuples of str per column; numpy object arrays cost more
        txn = list(map(str.strip, cells["txn_id"]))
        if "" in txn:
            raise Refusal("csv_row_must_have_txn_id", f"{self.path} line {lines[txn.index('')]}: txn_id is empty.")
        date_ord = self._dates(cells["date"], lines)
        entry = self._entries(txn, date_ord, cells, lines)
        mismatch = np.flatnonzero(np.asarray(self.entries["date"], dtype=np.int64)[entry] != date_ord)
        if mismatch.size:
            first = mismatch[0]
            raise Refusal("entry_must_have_one_date", f"{self.path} line {lines[first]}: txn {txn[first]} has rows with different dates.")
        account = self._intern(list(map(str.strip, cells["account"])), self.account_index)
        self.columns["entry"].append(entry)
        self.columns["account"].append(account)
        self.columns["amount"].append(self._amounts(cells["amount"], lines))
        for tag in ("category", "source"):
            if tag in cells:
                self.columns[tag].append(self._intern(cells[tag], self.tag_index, empty_is_none=True))
        self._first_use(account, date_ord, cells)

    def _fit(self, rows: list[list[str]], lines: np.ndarray, width: int):
        """Rows of the header's width: blank lines dropped, short rows padded, long rows refused."""
        keep = [i for i, row in enumerate(rows) if row]  # the csv module reads a blank line as []
        rows, lines = [rows[i] for i in keep], lines[keep]
        long = next((i for i, row in enumerate(rows) if len(row) > width and any(row[width:])), None)
        if long is not None:
            raise Refusal(
                "csv_row_must_fit_header",
                f"{self.path} line {lines[long]} has more cells than the header; quote cells that contain commas, such as \"1,234.00\".",
            )
        return [(row + [""] * width)[:width] for row in rows], lines

    def _dates(self, raw: tuple[str, ...], lines: np.ndarray) -> np.ndarray:
        codes, uniques = _factorize(raw)
        ordinals = np.empty(len(uniques), dtype=np.int64)
        for k, text in enumerate(uniques):
            ordinal = self.dates.get(text)
            if ordinal is None:
                where = f"{self.path} line {lines[np.flatnonzero(codes == k)[0]]}"
                ordinal = self.dates[text] = _date(text, where).toordinal()
            ordinals[k] = ordinal
        return ordinals[codes]

    def _entries(self, txn: list[str], date_ord: np.ndarray, cells: dict, lines: np.ndarray) -> np.ndarray:
        """Global entry index per row; an entry's fields come from its txn_id's first row."""
        codes, uniques = _factorize(txn)
        _, first_rows = np.unique(codes, return_index=True)
        index, e = self.txn_index, self.entries
        ids = np.fromiter(map(index.get, uniques, repeat(-1)), dtype=np.int64, count=len(uniques))
        new = np.flatnonzero(ids < 0)
        if new.size:
            ids[new] = np.arange(len(e["txn"]), len(e["txn"]) + new.size)
            names = [uniques[k] for k in new.tolist()]
            index.update(zip(names, ids[new].tolist()))
            rows = first_rows[new]

            def column(name: str, default: str = "") -> list:
                return list(map(cells[name].__getitem__, rows.tolist())) if name in cells else [default] * len(rows)

            e["txn"].extend(names)
            e["date"].extend(date_ord[rows].tolist())
            e["kind"].extend([(k or self.default_kind).strip() for k in column("kind")])
            e["project"].extend([p or None for p in column("project")])
            e["voucher"].extend([v or name for v, name in zip(column("voucher"), names)])
            e["memo"].extend([self.memos.setdefault(m, m) for m in column("memo")])
        return ids[codes]

    def _intern(self, values, index: dict[str, int], *, empty_is_none: bool = False) -> np.ndarray:
        codes, uniques = _factorize(values)
        offset = 1 if empty_is_none else 0
        ids = np.empty(len(uniques), dtype=np.int64)
        for k, value in enumerate(uniques):
            if empty_is_none and value == "":
                ids[k] = 0
                continue
            known = index.get(value)
            if known is None:
                known = index[value] = len(index) + offset
            ids[k] = known
        return ids[codes]

    def _amounts(self, raw: tuple[str, ...], lines: np.ndarray) -> np.ndarray:
        """Fen per row: ``-1234.56`` without Decimal, anything else (万, 元, 1,234.5 …) by ``_fen``."""
        usual = list(map(_TWO_DECIMALS.fullmatch, raw))
        if all(usual):
            return np.fromiter(map(int, map(_WITHOUT_POINT, raw)), dtype=np.int64, count=len(raw))
        return np.array(
            [int(text.replace(".", "", 1)) if match else _fen(text.strip(), f"{self.path} line {lines[i]} amount")
             for i, (text, match) in enumerate(zip(raw, usual))],
            dtype=np.int64,
        )

    def _first_use(self, account: np.ndarray, date_ord: np.ndarray, cells: dict) -> None:
        """Each account's earliest-dated row (the first of equals): its book and project."""
        order = np.lexsort((np.arange(len(account)), date_ord, account))
        accounts, starts = np.unique(account[order], return_index=True)
        for acc, row in zip(accounts.tolist(), order[starts].tolist()):
            ordinal = int(date_ord[row])
            known = self.spec_rows.get(acc)
            if known is None or ordinal < known[0]:
                book = (cells["book"][row] or "fiscal").strip() if "book" in cells else "fiscal"
                project = (cells["project"][row] or None) if "project" in cells else None
                self.spec_rows[acc] = (ordinal, book, project)

    def _batch(self, header: list[str]) -> CsvBatch:
        def joined(name: str) -> np.ndarray:
            parts = self.columns[name]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        tags = [None] + list(self.tag_index)
        accounts = list(self.account_index)
        e = self.entries
        return CsvBatch(
            path=self.path,
            txn=e["txn"], date_ordinal=np.asarray(e["date"], dtype=np.int64), kind=e["kind"], project=e["project"],
            voucher=e["voucher"], memo=e["memo"],
            entry=joined("entry"), account=joined("account"), amount_fen=joined("amount"),
            category=[tags[i] for i in joined("category").tolist()] if "category" in header else None,
            source=[tags[i] for i in joined("source").tolist()] if "source" in header else None,
            accounts=accounts,
            specs=[
                AccountSpec(name, self.spec_rows[i][1], dt.date.fromordinal(self.spec_rows[i][0]), self.spec_rows[i][2])
                for i, name in enumerate(accounts)
            ],
        )


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


# --- posting a CsvBatch ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What ``post_batch`` did: entries written and entries recognised as already posted."""

    created: int
    present: int


def post_batch(session, batch: CsvBatch, *, actor: str, progress: Callable[[int], None] | None = None) -> BatchResult:
    """Post every entry of ``batch`` in the caller's transaction, all checked before any is written.

    The same rules and the same bytes as ``journal.post_many`` (a file posted either way gets
    the same digests, hashes and refusals), computed over columns: accounts and vouchers are
    read with one query per 500 names, balances per (entry, book) are summed in numpy, and
    rows go to the database in chunks.
    """
    with no_cyclic_gc():
        return _post_batch(session, batch, actor, progress)


def _post_batch(session, batch: CsvBatch, actor: str, progress) -> BatchResult:
    from ledger.core import journal

    if not len(batch):
        return BatchResult(0, 0)
    # The order of refusals is post_many's: malformed entries first, then per entry its
    # accounts and its balance.
    counts = np.bincount(batch.entry, minlength=len(batch))  # postings per entry
    ends = np.cumsum(counts).tolist()  # each entry's postings end here in entry order
    shape = _shape_problem(batch, counts)
    if shape is not None:
        raise shape[2]
    rows = journal._load_accounts(session, batch.accounts)
    account_id = np.array([rows[n].id if n in rows else 0 for n in batch.accounts], dtype=np.int64)
    account_book = np.array([BOOK_INDEX[rows[n].book] if n in rows else 0 for n in batch.accounts], dtype=np.int64)
    posting_book = account_book[batch.account]
    problems = [p for p in (_account_problem(batch, rows), _balance_problem(batch, posting_book), _total_problem(batch)) if p is not None]
    if problems:
        raise min(problems, key=lambda p: p[:2])[2]
    digests = _digests(batch, posting_book, ends)

    head = journal._lock_head(session)
    ids, present = _number(session, batch, digests, head.last_entry_id)
    created = len(batch) - present
    if created:
        _check_totals(session, batch, ids, account_id)
        last_hash = _write_batch(session, batch, ends, digests, ids, head.last_hash, account_id, posting_book, actor, progress)
        journal._advance_head(session, head.last_entry_id + created, last_hash)
    return BatchResult(created, present)


def _shape_problem(batch: CsvBatch, counts: np.ndarray):
    """(entry, 0, refusal) for the first entry whose kind, voucher or postings are malformed."""
    from ledger.core.journal import KIND_RE, VOUCHER_MAX

    found = []
    bad_kinds = {k for k in set(batch.kind) if not KIND_RE.match(k)}
    if bad_kinds:
        i = next(i for i, k in enumerate(batch.kind) if k in bad_kinds)
        found.append((i, 0, Refusal("kind_must_be_a_word", f"entry kind {batch.kind[i]!r} must be a lower-case word such as 'release'.")))
    for i, voucher in enumerate(batch.voucher):
        if not voucher.strip() or len(voucher) > VOUCHER_MAX:
            found.append((i, 1, Refusal("voucher_must_be_short_text", f"voucher {voucher!r} must be 1–{VOUCHER_MAX} characters.")))
            break
    for field, values in (("voucher", batch.voucher), ("memo", batch.memo), ("project", batch.project)):
        if "\x00" in "".join(v or "" for v in values):
            i = next(i for i, v in enumerate(values) if v and "\x00" in v)
            found.append((i, 1, _nul(batch, field, i)))
    bad_account = next((k for k, name in enumerate(batch.accounts) if "\x00" in name), None)
    if bad_account is not None:
        p = int(np.flatnonzero(batch.account == bad_account)[0])
        found.append((int(batch.entry[p]), 1, _nul(batch, "account", int(batch.entry[p]))))
    for field, values in (("category", batch.category), ("source", batch.source)):
        if values is not None and "\x00" in "".join(v or "" for v in set(values)):
            p = next(p for p, v in enumerate(values) if v and "\x00" in v)
            found.append((int(batch.entry[p]), 1, _nul(batch, field, int(batch.entry[p]))))
    single = np.flatnonzero(counts == 1)
    if single.size:
        found.append((int(single[0]), 2, Refusal("entry_must_have_two_postings", "an entry needs at least two postings; got 1.")))
    zero = np.flatnonzero(batch.amount_fen == 0)
    if zero.size:
        p = zero[np.argmin(batch.entry[zero])]
        name = batch.accounts[batch.account[p]]
        found.append((int(batch.entry[p]), 3, Refusal("amount_must_not_be_zero", f"posting to {name} is zero; leave it out.")))
    return min(found, default=None, key=lambda f: f[:2])


def _nul(batch: CsvBatch, field: str, i: int) -> Refusal:
    return limits.nul_refusal(f"{batch.path} txn {batch.txn[i]!r} {field}")


def _total_problem(batch: CsvBatch):
    """(entry, 2, refusal) for the first entry whose absolute amounts pass ``limits.TOTAL_FEN_MAX``."""
    if not len(batch.amount_fen):
        return None
    counts = np.bincount(batch.entry, minlength=len(batch))
    if int(np.abs(batch.amount_fen).max()) * int(counts.max()) <= limits.TOTAL_FEN_MAX:
        return None  # no entry can pass the bound: the common case, one pass over two columns
    totals = np.zeros(len(batch), dtype=object)
    for e, amount in zip(batch.entry.tolist(), batch.amount_fen.tolist()):
        totals[e] += abs(amount)
    bad = np.flatnonzero(totals > limits.TOTAL_FEN_MAX)
    if not bad.size:
        return None
    i = int(bad[0])
    return (i, 2, limits.entry_total_refusal(batch.kind[i], batch.voucher[i], int(totals[i])))


def _check_totals(session, batch: CsvBatch, ids: list[int], account_id: np.ndarray) -> None:
    """The running-total bound for the postings about to be written: their absolute amounts
    summed per account in numpy (as Python ints where int64 could overflow), then one grouped
    query for the accounts touched (``limits.check_account_totals``)."""
    created = np.asarray(ids, dtype=np.int64)[batch.entry] != 0
    accounts, amounts = batch.account[created], np.abs(batch.amount_fen[created])
    if not amounts.size:
        return
    if int(amounts.max()) * int(amounts.size) < 2**63:
        sums = np.zeros(len(batch.accounts), dtype=np.int64)
        np.add.at(sums, accounts, amounts)
    else:
        sums = np.zeros(len(batch.accounts), dtype=object)
        for a, amount in zip(accounts.tolist(), amounts.tolist()):
            sums[a] += amount
    touched = np.flatnonzero(sums)
    incoming = {int(account_id[a]): int(sums[a]) for a in touched.tolist()}
    names = {int(account_id[a]): batch.accounts[a] for a in touched.tolist()}
    limits.check_account_totals(session, incoming, names)


def _account_problem(batch: CsvBatch, rows: dict):
    """(entry, 1, refusal) for the first posting to an account missing, not yet open or closed."""
    names = batch.accounts
    missing = np.array([name not in rows for name in names], dtype=bool)
    never = np.iinfo(np.int64).max
    opened = np.array([rows[n].opened_on.toordinal() if n in rows else never for n in names], dtype=np.int64)
    closed = np.array([rows[n].closed_on.toordinal() if n in rows and rows[n].closed_on else never for n in names], dtype=np.int64)
    when = batch.date_ordinal[batch.entry]
    bad = missing[batch.account] | (when < opened[batch.account]) | (when > closed[batch.account])
    if not bad.any():
        return None
    candidates = np.flatnonzero(bad)
    p = int(candidates[np.lexsort((candidates, batch.entry[candidates]))[0]])
    name, entry = names[batch.account[p]], int(batch.entry[p])
    date = dt.date.fromordinal(int(when[p]))
    if name not in rows:
        refusal = Refusal("account_must_exist", f"account {name} does not exist; open it first (jiebang accounts lists them).")
    elif date < rows[name].opened_on:
        refusal = Refusal(
            "account_must_be_open",
            f"account {name} opens on {rows[name].opened_on}, after the entry's date {date}; date the entry on or after the opening.",
        )
    else:
        refusal = Refusal("account_must_be_open", f"account {name} closed on {rows[name].closed_on}, before the entry's date {date}.")
    return (entry, 1, refusal)


def _balance_problem(batch: CsvBatch, posting_book: np.ndarray):
    """(entry, 2, refusal) for the first entry not summing to zero in a book (exact sums)."""
    key = batch.entry * len(BOOK_NAMES) + posting_book
    if len(batch.amount_fen) and int(np.abs(batch.amount_fen).max()) * int(np.bincount(key).max()) >= 2**63:
        sums = np.zeros(len(batch) * len(BOOK_NAMES), dtype=object)  # beyond int64: Python ints
        for k, amount in zip(key.tolist(), batch.amount_fen.tolist()):
            sums[k] += amount
    else:
        sums = np.zeros(len(batch) * len(BOOK_NAMES), dtype=np.int64)
        np.add.at(sums, key, batch.amount_fen)
    bad = np.flatnonzero(sums != 0)
    if bad.size:
        i, book = divmod(int(bad[0]), len(BOOK_NAMES))
        return (i, 2, Refusal(
            "entry_must_balance_per_book",
            f"entry {batch.kind[i]} {batch.voucher[i]} does not balance in the {BOOK_NAMES[book]} book: "
            f"postings sum to {format_fen(int(sums[bad[0]]))}, not 0.00; fix the amounts so debits equal credits.",
        ))
    return None


def _digests(batch: CsvBatch, posting_book: np.ndarray, ends: list[int]) -> list[bytes]:
    """Each entry's content digest, as ``journal.content_hash`` computes it (raw bytes here:
    300,000 of them as hex text would cost 15 MB more).

    Postings are put in the canonical order (book, account, amount, category, source) with
    one lexsort over integer ranks; names are JSON-encoded once each, not once per posting;
    the legs' text exists for one slice of entries at a time.
    """
    from ledger.core.journal import _enc, canonical_body, canonical_leg

    account_rank = _ranks(batch.accounts)
    keys = [batch.amount_fen, account_rank[batch.account], posting_book, batch.entry]
    tag_json = {}
    for tags in (batch.category, batch.source):  # lexsort: the last key is the primary one
        if tags is not None:
            keys.insert(0, _ranks([t or "" for t in tags]))
            tag_json.update({t: _enc(t) for t in set(tags)})
    order = np.lexsort(keys)
    del keys
    account_json = [_enc(name) for name in batch.accounts]
    book_json = [_enc(name) for name in BOOK_NAMES]
    iso = {o: dt.date.fromordinal(o).isoformat() for o in set(batch.date_ordinal.tolist())}
    digests: list[bytes] = []
    for first in range(0, len(batch), DIGEST_SLICE):
        last = min(first + DIGEST_SLICE, len(batch))
        base = ends[first - 1] if first else 0
        span = order[base : ends[last - 1]]
        none = repeat(None)
        legs = [
            canonical_leg(book_json[b], account_json[a], n, tag_json.get(c, "null"), tag_json.get(f, "null"))
            for b, a, n, c, f in zip(
                posting_book[span].tolist(), batch.account[span].tolist(), batch.amount_fen[span].tolist(),
                _take(batch.category, span) or none, _take(batch.source, span) or none,
            )
        ]
        start = 0
        for i in range(first, last):
            end = ends[i] - base
            body = canonical_body(
                iso[int(batch.date_ordinal[i])], batch.kind[i], batch.project[i], batch.voucher[i], batch.memo[i],
                None, None, None, ",".join(legs[start:end]),
            )
            digests.append(hashlib.sha256(body.encode("utf-8")).digest())
            start = end
    return digests


DIGEST_SLICE = 20_000


def _ranks(values: list[str]) -> np.ndarray:
    """Each value's rank in Python's string order (the order ``canonical_postings`` sorts by)."""
    ordered = {v: r for r, v in enumerate(sorted(set(values)))}
    return np.array([ordered[v] for v in values], dtype=np.int64)


def _number(session, batch: CsvBatch, digests: list[bytes], last_entry_id: int) -> tuple[list[int], int]:
    """Entry ids for the new entries; an entry whose voucher was posted with the same content
    (earlier, or earlier in the file) is recognised (id 0), with other content refused.
    Returns (ids, how many present). Posted vouchers are checked as they stream in.
    """
    from ledger.core.journal import _voucher_conflict, posted_vouchers

    first_of: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(batch.kind, batch.voucher)):
        first_of.setdefault(key, i)
    # Per first entry of a voucher: the id it was posted under before, and whether that
    # entry says something else (arrays, not a tuple per entry: a re-posted file has 300,000).
    posted_id = np.zeros(len(batch), dtype=np.int64)
    differs = np.zeros(len(batch), dtype=bool)
    for kind, voucher, entry_id, digest, _hash in posted_vouchers(session, first_of):
        i = first_of[(kind, voucher)]
        posted_id[i], differs[i] = entry_id, bytes.fromhex(digest) != digests[i]
    ids = [0] * len(batch)
    next_id = last_entry_id + 1
    present = 0
    for i, key in enumerate(zip(batch.kind, batch.voucher)):  # in file order, as post_many refuses
        first = first_of[key]
        if posted_id[first] or first != i:
            if differs[first] or digests[i] != digests[first]:
                raise _voucher_conflict(key[0], key[1], int(posted_id[first]) or ids[first])
            present += 1
            continue
        ids[i] = next_id
        next_id += 1
    return ids, present


def _write_batch(session, batch, ends, digests, ids, prev_hash, account_id, posting_book, actor, progress) -> str:
    """Postings in file order grouped by entry, then their entries, chunk by chunk; the chain
    hashes are computed as the entries are written. Returns the last hash.

    Row tuples are zipped from whole columns turned into Python lists a chunk at a time;
    nothing per row goes back into numpy.
    """
    from ledger.core.journal import BULK_CHUNK, chain_hash, insert_rows

    sqlite = session.get_bind().dialect.name == "sqlite"
    days = {o: dt.date.fromordinal(o) for o in set(batch.date_ordinal.tolist())}
    dates = [days[o].isoformat() if sqlite else days[o] for o in batch.date_ordinal.tolist()]
    order = np.argsort(batch.entry, kind="stable")
    entry_ids = np.asarray(ids, dtype=np.int64)
    new = [i for i in range(len(batch)) if ids[i]]
    with _bulk_indexes(session, sqlite, len(batch.entry)):
        for start in range(0, len(new), BULK_CHUNK):
            chunk = new[start : start + BULK_CHUNK]
            entry_rows = []
            for i in chunk:
                digest = digests[i].hex()
                entry_hash = chain_hash(ids[i], digest, actor, prev_hash)
                entry_rows.append((ids[i], dates[i], batch.kind[i], batch.project[i], batch.voucher[i], batch.memo[i],
                                   actor, None, None, None, digest, prev_hash, entry_hash, None))
                prev_hash = entry_hash
            first, last = chunk[0], chunk[-1]
            span = order[(ends[first - 1] if first else 0) : ends[last]]
            span = span[entry_ids[batch.entry[span]] != 0]  # postings of entries already present are not written
            entry_of = batch.entry[span]
            posting_rows = list(zip(
                entry_ids[entry_of].tolist(), account_id[batch.account[span]].tolist(),
                [dates[i] for i in entry_of.tolist()], [BOOK_NAMES[b] for b in posting_book[span].tolist()],
                batch.amount_fen[span].tolist(), _take(batch.category, span) or repeat(None), _take(batch.source, span) or repeat(None),
            ))
            insert_rows(session, entry_rows, posting_rows)
            if progress is not None:
                progress(len(chunk))
    return prev_hash


def _take(values: list | None, positions: np.ndarray) -> list | None:
    return None if values is None else [values[i] for i in positions.tolist()]


@contextlib.contextmanager
def _bulk_indexes(session, sqlite: bool, incoming_postings: int):
    """On SQLite, rebuild the as-of balance index after a load larger than the ledger so far.

    Inserting 700,000 postings into ``ix_postings_account_date`` in random account order costs
    about a quarter of the load; building it once afterwards is a sort. Inside the caller's
    transaction, so a refusal or a crash leaves the index exactly as it was. Small loads into
    a large ledger keep the index.
    """
    if not sqlite:
        yield
        return
    connection = session.connection()
    have = connection.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM postings").scalar()
    ddl = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'ix_postings_account_date'").scalar()
    if ddl is None or incoming_postings <= have:
        yield
        return
    connection.exec_driver_sql("DROP INDEX ix_postings_account_date")
    yield
    connection.exec_driver_sql(ddl)
