"""Posting balanced entries: one at a time or in bulk, idempotent by voucher, hash-chained.

Services take a session and never commit: the caller owns the transaction, so an event that
writes several rows commits once or not at all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ledger.core import limits
from ledger.core.errors import Refusal
from ledger.core.models import ACCOUNT_TYPES, BOOKS, Account, ChainHead, JournalEntry, Posting
from ledger.core.money import format_fen

ACCOUNT_NAME_RE = re.compile(r"^(Assets|Liabilities|Equity|Income|Expenses)(:[A-Z0-9][A-Za-z0-9\-]*)+$")
VOUCHER_MAX = 120
KIND_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,39}$")
BULK_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class PostingDraft:
    """One leg of an entry not yet posted.

    Attributes:
      account: the account name.
      amount_fen: positive debit, negative credit; never zero.
      budget_category / fund_source: tags for 专账 reporting.
    """

    account: str
    amount_fen: int
    budget_category: str | None = None
    fund_source: str | None = None


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry not yet posted.

    Attributes:
      value_date: the business date of the event.
      kind: the event kind (lower-case predicate-like word, e.g. ``release``).
      postings: the legs; they must balance within each book.
      voucher: the external reference; with ``kind`` it is the idempotency key.
      trace: the calculation (inputs, formula, result), JSON-serialisable.
      fact: True for an event that moves no money (a stage result); it may have no postings.
      facts: the business facts of the event (a party, an approval with its lanes and
        tranches, a stage result, the accounts it opens ...), JSON-serialisable; hashed with
        the entry, and the programme tables are folded from them (``ledger.programme.projection``).
    """

    value_date: dt.date
    kind: str
    postings: tuple[PostingDraft, ...]
    project_code: str | None = None
    voucher: str | None = None
    memo: str = ""
    actor: str = "system"
    rules_version: str | None = None
    trace: dict | None = None
    reverses_id: int | None = None
    fact: bool = False
    facts: dict | None = None


@dataclass(frozen=True, slots=True)
class Posted:
    """The result of posting a draft.

    Attributes:
      entry_id: the entry's id (its place in the chain).
      hash: the entry's chain hash.
      created: False when the voucher had already been posted with the same content.
    """

    entry_id: int
    hash: str
    created: bool = True


@dataclass(frozen=True, slots=True)
class AccountSpec:
    name: str
    book: str
    opened_on: dt.date
    project_code: str | None = None
    lane: str | None = None


# --- canonical content and hashing ------------------------------------------------------


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical_postings(postings: Iterable[tuple[str, str, int, str | None, str | None]]) -> list[list]:
    """Postings as (book, account, amount_fen, category, source) lists in one fixed order."""
    return sorted([list(p) for p in postings], key=lambda p: (p[0], p[1], p[2], p[3] or "", p[4] or ""))


def content_hash(
    *,
    value_date: dt.date | str,
    kind: str,
    project_code: str | None,
    voucher: str | None,
    memo: str,
    rules_version: str | None,
    trace_text: str | None,
    reverses_id: int | None,
    postings: Iterable[tuple[str, str, int, str | None, str | None]],
    facts_text: str | None = None,
) -> str:
    """Digest of what an entry says, without who posted it or where it sits in the chain.

    The body is ``canonical_json`` of a dict with the keys below; it is assembled directly
    (keys already in sorted order, strings through json's own C encoder), which gives the
    same bytes as ``json.dumps(..., sort_keys=True, ensure_ascii=False, separators=(",", ":"))``
    at a quarter of the cost. Values of any other type take the json.dumps path. ``value_date``
    may be the ISO text SQLite stores, so a verifier reading raw rows need not parse it.
    """
    iso_date = value_date if type(value_date) is str else value_date.isoformat()
    ordered = canonical_postings(postings)
    try:
        legs = ",".join(canonical_leg(_enc(b), _enc(a), n, _enc(c), _enc(f)) for b, a, n, c, f in ordered)
        body = canonical_body(iso_date, kind, project_code, voucher, memo, rules_version, trace_text, reverses_id, legs, facts_text)
    except _NotPlain:
        fields = {"facts": facts_text} if facts_text is not None else {}
        body = canonical_json(
            fields | {
                "value_date": iso_date,
                "kind": kind,
                "project_code": project_code,
                "voucher": voucher,
                "memo": memo,
                "rules_version": rules_version,
                "trace": trace_text,
                "reverses_id": reverses_id,
                "postings": ordered,
            }
        )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def canonical_leg(book_json: str, account_json: str, amount_fen: int, category_json: str, source_json: str) -> str:
    """One posting of the canonical body; the text arguments are already JSON-encoded."""
    return f"[{book_json},{account_json},{_enc_int(amount_fen)},{category_json},{source_json}]"


def canonical_body(
    iso_date, kind, project_code, voucher, memo, rules_version, trace_text, reverses_id, legs: str, facts_text=None
) -> str:
    """The canonical JSON of an entry whose postings are already encoded and ordered (``legs``).

    The one place the body's bytes are written, for single entries and the bulk CSV path alike;
    raises ``_NotPlain`` for a value that is not a str, int or None. An entry without facts
    has no ``facts`` key at all, so entries posted before facts existed keep their digests.
    """
    facts = "" if facts_text is None else f'"facts":{_enc(facts_text)},'
    return (
        f'{{{facts}"kind":{_enc(kind)},"memo":{_enc(memo)},"postings":[{legs}],'
        f'"project_code":{_enc(project_code)},"reverses_id":{_enc_int(reverses_id)},'
        f'"rules_version":{_enc(rules_version)},"trace":{_enc(trace_text)},'
        f'"value_date":{_enc(iso_date)},"voucher":{_enc(voucher)}}}'
    )


class _NotPlain(Exception):
    """A value the direct canonical encoder does not handle; json.dumps does."""


_encode_str = json.encoder.encode_basestring  # the C encoder json.dumps uses with ensure_ascii=False


def _enc(value) -> str:
    if value is None:
        return "null"
    if type(value) is str:
        return _encode_str(value)
    raise _NotPlain


def _enc_int(value) -> str:
    if value is None:
        return "null"
    if type(value) is int:
        return int.__repr__(value)
    raise _NotPlain


def chain_hash(entry_id: int, content: str, actor: str, prev_hash: str) -> str:
    body = f"{prev_hash}\n{entry_id}\n{content}\n{actor}"
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def trace_text(trace: dict | None) -> str | None:
    return None if trace is None else canonical_json(trace)


def facts_text(facts: dict | None) -> str | None:
    return None if facts is None else canonical_json(facts)


# --- accounts ---------------------------------------------------------------------------


def account_name_problem(name: str) -> str | None:
    if not ACCOUNT_NAME_RE.match(name):
        return (
            f"account name {name!r} is not a valid beancount name: it must start with one of "
            f"{', '.join(ACCOUNT_TYPES)} and each ':'-separated part must start with a capital letter or digit"
        )
    return None


def open_new_accounts(session: Session, specs: Sequence[AccountSpec]) -> list[AccountSpec]:
    """Open the accounts that do not exist yet and return the specs opened: per name the
    last spec given, in first-seen order (a business event records them in its facts).

    An account that exists already keeps its book and open date; asking for it in another
    book is refused, since one name means one account.
    """
    wanted = {spec.name: spec for spec in specs}
    for spec in wanted.values():
        limits.check_text((spec.project_code, spec.lane), f"account {spec.name!r} project or lane")
        problem = account_name_problem(spec.name)
        if problem:
            raise Refusal("account_name_must_be_valid", problem)
        if spec.book not in BOOKS:
            raise Refusal("book_must_be_known", f"book {spec.book!r} is not one of {', '.join(BOOKS)}.")
    existing = _load_accounts(session, list(wanted))
    for name, row in existing.items():
        if row.book != wanted[name].book:
            raise Refusal(
                "account_must_stay_in_its_book",
                f"account {name} is in the {row.book} book; it cannot be used in the {wanted[name].book} book.",
            )
    missing = [spec for name, spec in wanted.items() if name not in existing]
    for spec in missing:
        limits.check_date(spec.opened_on, f"account {spec.name} opening date")
    if missing:
        rows = [
            {
                "name": spec.name,
                "book": spec.book,
                "type": spec.name.split(":", 1)[0],
                "project_code": spec.project_code,
                "lane": spec.lane,
                "opened_on": spec.opened_on,
            }
            for spec in missing
        ]
        known = session.info.get(ACCOUNTS_SESSION_KEY)
        if known is None:
            session.execute(insert(Account.__table__), rows)
        else:  # a run that keeps the account rows keeps the new ones, and knows they hold nothing yet
            table = Account.__table__
            opened = {spec.name: spec for spec in missing}
            totals = session.info.get(limits.TOTALS_SESSION_KEY)
            for account_id, name in session.execute(insert(table).returning(table.c.id, table.c.name), rows):
                spec = opened[name]
                known[name] = _AccountRow(account_id, name, spec.book, spec.opened_on, None)
                if totals is not None:
                    totals[account_id] = 0
    return missing


def open_accounts(session: Session, specs: Sequence[AccountSpec]) -> dict[str, int]:
    """Open the accounts that do not exist yet (``open_new_accounts``); return every spec's
    account id by name."""
    open_new_accounts(session, specs)
    return {name: row.id for name, row in _load_accounts(session, [spec.name for spec in specs]).items()}


def close_account(session: Session, name: str, closed_on: dt.date) -> None:
    """Close an account from a date on: the one change an account row allows (the database
    refuses any other), once; ``verify`` checks that no posting falls outside its dates."""
    row = _load_accounts(session, [name]).get(name)
    if row is None:
        raise Refusal("account_must_exist", f"account {name} does not exist.")
    limits.check_date(closed_on, f"account {name} closing date")
    if row.closed_on is not None:
        raise Refusal("account_must_close_once", f"account {name} was already closed on {row.closed_on}.")
    if closed_on < row.opened_on:
        raise Refusal("account_must_close_after_opening", f"account {name} opened on {row.opened_on}, after {closed_on}.")
    session.execute(update(Account).where(Account.id == row.id).values(closed_on=closed_on))
    known = session.info.get(ACCOUNTS_SESSION_KEY)
    if known is not None:
        known.pop(name, None)


@dataclass(frozen=True, slots=True)
class _AccountRow:
    id: int
    name: str
    book: str
    opened_on: dt.date
    closed_on: dt.date | None


# A run of many posts in one transaction (an import) may keep the account rows it has read in
# a dict under this session key (``cache_accounts``): account rows never change but for their
# closing date, which ``close_account`` keeps up to date. Whoever sets the key must clear the
# dict when a write is rolled back (an account opened by the rolled-back write is gone).
ACCOUNTS_SESSION_KEY = "jiebang.accounts"


def _load_accounts(session: Session, names: Sequence[str]) -> dict[str, _AccountRow]:
    known = session.info.get(ACCOUNTS_SESSION_KEY)
    if known is None:
        return _query_accounts(session, names)
    unknown = [name for name in names if name not in known]
    if unknown:
        known.update(_query_accounts(session, unknown))
    return {name: known[name] for name in names if name in known}


def _query_accounts(session: Session, names: Sequence[str]) -> dict[str, _AccountRow]:
    found: dict[str, _AccountRow] = {}
    unique = sorted(set(names))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        for row in session.connection().execute(_ACCOUNTS, {"names": chunk}):
            found[row.name] = _AccountRow(row.id, row.name, row.book, row.opened_on, row.closed_on)
    return found


# --- validation -------------------------------------------------------------------------


def _check_shape(draft: EntryDraft) -> tuple[str | None, str | None]:
    """Refuse a draft that is malformed in itself; returns its trace and facts as canonical
    JSON text (``trace_text``, ``facts_text``), which the NUL check reads."""
    limits.check_date(draft.value_date, f"entry {draft.kind} {draft.voucher or ''} date".replace("  ", " "))
    for field, value in (("voucher", draft.voucher), ("memo", draft.memo), ("project", draft.project_code),
                         ("kind", draft.kind), ("actor", draft.actor), ("rules version", draft.rules_version)):
        limits.check_text(value, f"entry {field}")
    facts = _json_text(draft.facts, "entry facts (a name, reference or other text)")
    text = _json_text(draft.trace, "entry trace")
    if not KIND_RE.match(draft.kind):
        raise Refusal("kind_must_be_a_word", f"entry kind {draft.kind!r} must be a lower-case word such as 'release'.")
    if draft.voucher is not None and (not draft.voucher.strip() or len(draft.voucher) > VOUCHER_MAX):
        raise Refusal("voucher_must_be_short_text", f"voucher {draft.voucher!r} must be 1–{VOUCHER_MAX} characters.")
    if len(draft.postings) == 1 or (not draft.postings and not draft.fact):
        raise Refusal("entry_must_have_two_postings", f"an entry needs at least two postings; got {len(draft.postings)}.")
    for posting in draft.postings:
        if isinstance(posting.amount_fen, bool) or not isinstance(posting.amount_fen, int):
            raise Refusal("amount_must_be_whole_fen", f"posting to {posting.account} must be whole fen, got {posting.amount_fen!r}.")
        if posting.amount_fen == 0:
            raise Refusal("amount_must_not_be_zero", f"posting to {posting.account} is zero; leave it out.")
        limits.check_text((posting.account, posting.budget_category, posting.fund_source), f"posting to {posting.account!r}: account, category or source")
    total = sum(abs(p.amount_fen) for p in draft.postings)
    if total > limits.TOTAL_FEN_MAX:
        raise limits.entry_total_refusal(draft.kind, draft.voucher, total)
    return text, facts


_JSON_NUL = "\\u0000"  # how canonical_json writes a NUL character


def _json_text(value: dict | None, field: str) -> str | None:
    """``value`` as canonical JSON, refused (``limits.check_text``) when any text in it holds a
    NUL: JSON writes a NUL as an escape, so text without that escape holds none, and only
    text with it (a NUL, or a backslash followed by "u0000") is walked."""
    text = None if value is None else canonical_json(value)
    if text is not None and _JSON_NUL in text:
        limits.check_text(value, field)
    return text


def _check_against_accounts(draft: EntryDraft, accounts: dict[str, _AccountRow]) -> None:
    sums: dict[str, int] = defaultdict(int)
    for posting in draft.postings:
        row = accounts.get(posting.account)
        if row is None:
            raise Refusal(
                "account_must_exist",
                f"account {posting.account} does not exist; open it first (jiebang accounts lists them).",
            )
        if draft.value_date < row.opened_on:
            raise Refusal(
                "account_must_be_open",
                f"account {posting.account} opens on {row.opened_on}, after the entry's date {draft.value_date}; "
                "date the entry on or after the opening.",
            )
        if row.closed_on is not None and draft.value_date > row.closed_on:
            raise Refusal(
                "account_must_be_open",
                f"account {posting.account} closed on {row.closed_on}, before the entry's date {draft.value_date}.",
            )
        sums[row.book] += posting.amount_fen
    for book, amount in sorted(sums.items()):
        if amount != 0:
            raise Refusal(
                "entry_must_balance_per_book",
                f"entry {draft.kind} {draft.voucher or ''} does not balance in the {book} book: "
                f"postings sum to {format_fen(amount)}, not 0.00; fix the amounts so debits equal credits.".replace("  ", " "),
            )


def _draft_content(
    draft: EntryDraft, accounts: dict[str, _AccountRow], texts: tuple[str | None, str | None] | None = None
) -> tuple[str, str | None, str | None]:
    text, facts = texts if texts is not None else (trace_text(draft.trace), facts_text(draft.facts))
    digest = content_hash(
        value_date=draft.value_date,
        kind=draft.kind,
        project_code=draft.project_code,
        voucher=draft.voucher,
        memo=draft.memo,
        rules_version=draft.rules_version,
        trace_text=text,
        reverses_id=draft.reverses_id,
        postings=[
            (accounts[p.account].book, p.account, p.amount_fen, p.budget_category, p.fund_source)
            for p in draft.postings
        ],
        facts_text=facts,
    )
    return digest, text, facts


# --- posting ----------------------------------------------------------------------------


# Statements built once and run on the session's connection (nothing here reads ORM
# objects, and every write is a Core statement): a service posts one entry at a time, and an
# import thousands of them, where building a statement and the ORM layer cost more than
# running it.
_HEAD = ChainHead.__table__
_LOCK_HEAD = select(_HEAD.c.last_entry_id, _HEAD.c.last_hash).where(_HEAD.c.id == 1).with_for_update()
_ADVANCE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(
    last_entry_id=bindparam("new_last_entry_id"), last_hash=bindparam("new_last_hash"))
_ACCOUNTS = select(Account.id, Account.name, Account.book, Account.opened_on, Account.closed_on).where(
    Account.name.in_(bindparam("names", expanding=True)))
_VOUCHERS = select(JournalEntry.voucher, JournalEntry.id, JournalEntry.content_hash, JournalEntry.hash).where(
    JournalEntry.kind == bindparam("kind"), JournalEntry.voucher.is_not(None),
    JournalEntry.voucher.in_(bindparam("vouchers", expanding=True)))


# A run of many posts in one transaction (an import) may hold the chain head in memory under
# this session key: read and locked once by ``hold_head``, advanced by each post, written
# once by ``write_held_head`` before the commit. Updating the one head row for every entry of
# a long transaction leaves PostgreSQL a chain of row versions it cannot prune until the end,
# which every later read of the row walks: quadratic. The holder restores the held head when
# it rolls a post back (``held_head`` / ``restore_held_head``).
HEAD_SESSION_KEY = "jiebang.chain_head"


@dataclass(frozen=True, slots=True)
class _Head:
    last_entry_id: int
    last_hash: str


def hold_head(session: Session) -> None:
    """Lock the chain head for the rest of the transaction and keep it in memory."""
    row = session.connection().execute(_LOCK_HEAD).one()
    session.info[HEAD_SESSION_KEY] = {"head": _Head(row.last_entry_id, row.last_hash), "written": row.last_entry_id}


def held_head(session: Session) -> _Head | None:
    held = session.info.get(HEAD_SESSION_KEY)
    return None if held is None else held["head"]


def restore_held_head(session: Session, head: _Head) -> None:
    session.info[HEAD_SESSION_KEY]["head"] = head


def write_held_head(session: Session) -> None:
    """Write the held head to its row if posts advanced it, and stop holding it."""
    held = session.info.pop(HEAD_SESSION_KEY, None)
    if held is not None and held["head"].last_entry_id != held["written"]:
        session.connection().execute(
            _ADVANCE_HEAD, {"new_last_entry_id": held["head"].last_entry_id, "new_last_hash": held["head"].last_hash})


def _lock_head(session: Session):
    """The chain head (last_entry_id, last_hash), locked until the transaction ends."""
    held = session.info.get(HEAD_SESSION_KEY)
    if held is not None:
        return held["head"]
    return session.connection().execute(_LOCK_HEAD).one()


# A caller that has looked a run's vouchers up in bulk (an import) may keep the (kind,
# voucher) keys it knows are not posted in a set under this session key, and must remove each
# key it posts; those are then not looked up again entry by entry.
ABSENT_VOUCHERS_KEY = "jiebang.absent_vouchers"


def _existing_vouchers(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str, str]]:
    """Map (kind, voucher) to (entry id, content hash, hash) for those already posted."""
    absent = session.info.get(ABSENT_VOUCHERS_KEY)
    if absent is not None:
        keys = [key for key in keys if key not in absent]
        if not keys:
            return {}
    return {(kind, voucher): (entry_id, digest, chained) for kind, voucher, entry_id, digest, chained in posted_vouchers(session, keys)}


def posted_vouchers(session: Session, keys: Iterable[tuple[str, str]]):
    """Yield (kind, voucher, entry id, content hash, hash) of the given keys already posted.

    A query per 500 vouchers; for a file larger than what the ledger holds of its kind (a
    first load), one pass over the kind's vouchers instead. Rows stream, so a caller that
    checks them as they come holds none of them.
    """
    by_kind: dict[str, set[str]] = defaultdict(set)
    for kind, voucher in keys:
        by_kind[kind].add(voucher)
    columns = (JournalEntry.voucher, JournalEntry.id, JournalEntry.content_hash, JournalEntry.hash)
    for kind, wanted in by_kind.items():
        of_kind = select(JournalEntry.id).where(JournalEntry.kind == kind, JournalEntry.voucher.is_not(None))
        # Only for a large file; the count stops past the file's size.
        if len(wanted) > 500 and session.execute(
            select(func.count()).select_from(of_kind.limit(len(wanted) + 1).subquery())
        ).scalar_one() <= len(wanted):
            stream = session.connection().execute(of_kind.with_only_columns(*columns), execution_options={"yield_per": 10_000})
            for voucher, entry_id, digest, chained in stream:
                if voucher in wanted:
                    yield kind, voucher, entry_id, digest, chained
            continue
        unique = sorted(wanted)
        for start in range(0, len(unique), 500):
            rows = session.connection().execute(_VOUCHERS, {"kind": kind, "vouchers": unique[start : start + 500]})
            for voucher, entry_id, digest, chained in rows:
                yield kind, voucher, entry_id, digest, chained


def _voucher_conflict(kind: str, voucher: str, entry_id: int) -> Refusal:
    return Refusal(
        "voucher_must_match_first_use",
        f"voucher {voucher} was already used for {kind} entry {entry_id} with different content; "
        f"use a new voucher, or reverse entry {entry_id} first if it was wrong.",
    )


def post(session: Session, draft: EntryDraft) -> Posted:
    """Post one balanced entry, or return the first one if its voucher was already posted."""
    return post_many(session, [draft])[0]


def post_many(
    session: Session,
    drafts: Sequence[EntryDraft],
    *,
    progress: Callable[[int], None] | None = None,
) -> list[Posted]:
    """Post many drafts in the caller's transaction, all checked before any is written.

    Accounts and vouchers are read with one query per 500 names, the chain head is locked
    once, and entries and postings are written with executemany in chunks: no per-row round
    trips. Either every draft is accepted (or recognised as already posted) or a Refusal is
    raised before anything is written.
    """
    shaped: dict[int, tuple[str | None, str | None]] = {}  # trace and facts texts, of the drafts that have either
    for index, draft in enumerate(drafts):
        both = _check_shape(draft)
        if both != _NO_TEXTS:
            shaped[index] = both
    accounts = _load_accounts(session, [p.account for d in drafts for p in d.postings])
    # One digest per draft; trace texts (rare in bulk files) by draft index. Nothing else is
    # kept per draft, so a 300,000-entry file costs the drafts and little more.
    digests: list[str] = []
    texts: dict[int, tuple[str | None, str | None]] = {}
    for index, draft in enumerate(drafts):
        _check_against_accounts(draft, accounts)
        digest, text, facts = _draft_content(draft, accounts, shaped.pop(index, _NO_TEXTS))
        digests.append(digest)
        if text is not None or facts is not None:
            texts[index] = (text, facts)

    # Lock the head before looking at vouchers: a concurrent writer of the same voucher then
    # commits first and we see its entry, instead of both writing it.
    head = _lock_head(session)
    existing = _existing_vouchers(session, [(d.kind, d.voucher) for d in drafts if d.voucher is not None])

    results: list[Posted] = []
    seen_in_batch: dict[str, dict[str, int]] = defaultdict(dict)  # kind -> voucher -> draft index
    next_id = head.last_entry_id + 1
    prev_hash = head.last_hash
    for index, draft in enumerate(drafts):
        digest = digests[index]
        if draft.voucher is not None:
            prior = existing.get((draft.kind, draft.voucher))
            if prior is None:
                earlier = seen_in_batch[draft.kind].get(draft.voucher)
                if earlier is not None:
                    prior = (results[earlier].entry_id, digests[earlier], results[earlier].hash)
            if prior is not None:
                if prior[1] != digest:
                    raise _voucher_conflict(draft.kind, draft.voucher, prior[0])
                results.append(Posted(prior[0], prior[2], created=False))
                continue
            seen_in_batch[draft.kind][draft.voucher] = index
        entry_id = next_id
        next_id += 1
        prev_hash = chain_hash(entry_id, digest, draft.actor, prev_hash)
        results.append(Posted(entry_id, prev_hash, created=True))
    del seen_in_batch, existing

    if next_id > head.last_entry_id + 1:
        _check_totals(session, drafts, results, accounts)
        _write(session, drafts, digests, texts, results, head.last_hash, accounts, progress)
        _advance_head(session, next_id - 1, prev_hash)
        absent = session.info.get(ABSENT_VOUCHERS_KEY)
        if absent is not None:
            absent.difference_update((d.kind, d.voucher) for d, r in zip(drafts, results) if r.created and d.voucher)
    return results


def _check_totals(session: Session, drafts, results, accounts: dict[str, _AccountRow]) -> None:
    """The running-total bound (``limits.TOTAL_FEN_MAX``) for the entries about to be written."""
    incoming: dict[int, int] = defaultdict(int)
    for draft, result in zip(drafts, results):
        if result.created:
            for p in draft.postings:
                incoming[accounts[p.account].id] += abs(p.amount_fen)
    limits.check_account_totals(session, incoming, {row.id: name for name, row in accounts.items()})


_ENTRY_COLUMNS = (
    "id", "value_date", "kind", "project_code", "voucher", "memo", "actor", "rules_version", "trace",
    "reverses_id", "content_hash", "prev_hash", "hash", "facts",
)
_POSTING_COLUMNS = ("entry_id", "account_id", "value_date", "book", "amount_fen", "budget_category", "fund_source")


_NO_TEXTS = (None, None)


def _write(session: Session, drafts, digests, texts, results, prev_hash: str, accounts: dict[str, _AccountRow], progress) -> None:
    """Write postings, then their entries (which seals them), chunk by chunk.

    Rows are built per chunk from the drafts and their results, so memory never holds every
    row at once.
    """
    raw = session.get_bind().dialect.name == "sqlite"
    for start in range(0, len(drafts), BULK_CHUNK):
        entry_rows: list = []
        posting_rows: list = []
        for index in range(start, min(start + BULK_CHUNK, len(drafts))):
            result = results[index]
            if not result.created:
                continue
            draft = drafts[index]
            entry_id = result.entry_id
            value_date = draft.value_date.isoformat() if raw else draft.value_date
            text, facts = texts.get(index, _NO_TEXTS)
            entry_rows.append((
                entry_id, value_date, draft.kind, draft.project_code, draft.voucher, draft.memo, draft.actor,
                draft.rules_version, text, draft.reverses_id, digests[index], prev_hash, result.hash, facts,
            ))
            prev_hash = result.hash
            for p in draft.postings:
                row = accounts[p.account]
                posting_rows.append((entry_id, row.id, value_date, row.book, p.amount_fen, p.budget_category, p.fund_source))
        if not entry_rows:
            continue
        insert_rows(session, entry_rows, posting_rows)
        if progress is not None:
            progress(len(entry_rows))


def insert_rows(session: Session, entry_rows: Sequence[tuple], posting_rows: Sequence[tuple]) -> None:
    """Insert postings, then the entries that seal them: tuples in the ``_*_COLUMNS`` orders.

    On SQLite the tuples go to the driver's executemany (dates as ISO text, which is how
    SQLAlchemy stores a Date there): SQLAlchemy's per-row parameter processing cost more
    than the inserts' Python side. On PostgreSQL they go through COPY. While the session
    buffers its writes (``buffering``) the rows are kept until the next statement.
    """
    if posting_rows:
        insert_tuples(session, Posting.__tablename__, _POSTING_COLUMNS, posting_rows)
    insert_tuples(session, JournalEntry.__tablename__, _ENTRY_COLUMNS, entry_rows)


def insert_tuples(session: Session, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """Insert rows (tuples in ``columns`` order; dates as ISO text on SQLite) into ``table``,
    now, or at the next statement while the session buffers its writes (``buffering``)."""
    buffer = session.info.get(BUFFER_SESSION_KEY)
    if buffer is not None:
        held = buffer.tables.get(table)
        if held is None:
            buffer.tables[table] = (tuple(columns), list(rows))
        else:
            assert held[0] == tuple(columns), (table, columns)
            held[1].extend(rows)
        return
    _insert_now(session, table, columns, rows)


def _insert_now(session: Session, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    if session.get_bind().dialect.name == "sqlite":
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        session.connection().exec_driver_sql(statement, list(rows))
        return
    from ledger.core.pg_write import copy_rows  # psycopg is an optional dependency

    copy_rows(session, table, columns, rows)


# A run of many posts in one transaction (an import) may buffer the rows it inserts under this
# session key (``buffering``): entries, postings and whatever else a caller passes to
# ``insert_tuples`` wait in memory and go to the database in one executemany (or COPY) per
# table just before the next statement the session's connection runs, whatever it is (a
# read that might see them, a SAVEPOINT, a RELEASE, the commit's head update), so nobody
# ever reads the tables without them. ROLLBACK TO SAVEPOINT drops them instead: they were
# written after the last statement, so inside the savepoint being rolled back.
BUFFER_SESSION_KEY = "jiebang.write_buffer"
_FIRST_TABLES = (Posting.__tablename__, JournalEntry.__tablename__)  # postings, then the entries that seal them


@dataclass
class _Buffer:
    tables: dict[str, tuple[tuple[str, ...], list[tuple]]]
    driver: object  # the driver's connection under the session's
    sqlite: bool
    secured: dict[str, bool]  # PostgreSQL: whether row-level security applies, by table (pg_write.copy_on)


def flush_writes(session: Session) -> None:
    """Write the rows buffered so far (``buffering``); nothing when none are."""
    buffer = session.info.get(BUFFER_SESSION_KEY)
    if buffer is None or not buffer.tables:
        return
    tables, buffer.tables = buffer.tables, {}
    order = [t for t in _FIRST_TABLES if t in tables] + [t for t in tables if t not in _FIRST_TABLES]
    for table in order:
        columns, rows = tables[table]
        _insert_on_driver(buffer.driver, buffer.sqlite, table, columns, rows, buffer.secured)


def _insert_on_driver(
    driver, sqlite: bool, table: str, columns: Sequence[str], rows: Sequence[tuple], secured: dict[str, bool]
) -> None:
    """Insert on the driver's connection, past SQLAlchemy (which may be in the middle of
    beginning or releasing a savepoint when the buffer is flushed); a database error is
    wrapped as SQLAlchemy wraps it, so callers see a DBAPIError as for any statement."""
    if not sqlite:
        from ledger.core.pg_write import copy_on  # psycopg is an optional dependency

        copy_on(driver, table, columns, rows, secured)
        return
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    try:
        driver.executemany(statement, rows)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc


@contextlib.contextmanager
def buffering(session: Session):
    """While inside, ``insert_tuples`` (so every entry posted) buffers its rows, written just
    before the next statement on the session's connection and on leaving without an error."""
    from sqlalchemy import event
    from sqlalchemy.sql.elements import RollbackToSavepointClause

    connection = session.connection()
    session.flush()  # pending ORM rows go first, as they would before a Core insert
    buffer = _Buffer({}, connection.connection.driver_connection, connection.dialect.name == "sqlite", {})

    def before_execute(_conn, clause, *_args):
        if not buffer.tables:
            return
        if isinstance(clause, RollbackToSavepointClause):
            buffer.tables = {}
        else:
            flush_writes(session)

    session.info[BUFFER_SESSION_KEY] = buffer
    event.listen(connection, "before_execute", before_execute)
    try:
        yield buffer
        flush_writes(session)
    finally:
        event.remove(connection, "before_execute", before_execute)
        session.info.pop(BUFFER_SESSION_KEY, None)


def _advance_head(session: Session, last_entry_id: int, last_hash: str) -> None:
    held = session.info.get(HEAD_SESSION_KEY)
    if held is not None:
        held["head"] = _Head(last_entry_id, last_hash)
        return
    session.connection().execute(_ADVANCE_HEAD, {"new_last_entry_id": last_entry_id, "new_last_hash": last_hash})


# --- reversal ---------------------------------------------------------------------------


def reverse(
    session: Session,
    entry_id: int,
    *,
    reason: str,
    actor: str = "system",
    value_date: dt.date | None = None,
) -> Posted:
    """Post the mirror of an entry, linked to it; an entry is reversed at most once.

    A reversal cannot itself be reversed (that would re-post the original silently); post
    the original event again instead, with a new voucher.
    """
    if not reason or not reason.strip():
        raise Refusal("reversal_must_have_reason", "a reversal needs a reason; give it with --reason.")
    original = session.get(JournalEntry, entry_id)
    if original is None:
        raise Refusal("entry_must_exist", f"entry {entry_id} does not exist; `jiebang journal` lists entries.")
    if original.reverses_id is not None:
        raise Refusal(
            "reversal_must_not_be_reversed",
            f"entry {entry_id} is itself the reversal of entry {original.reverses_id}; "
            "to restore the original, record the event again with a new voucher.",
        )
    already = session.execute(select(JournalEntry.id).where(JournalEntry.reverses_id == entry_id)).scalar()
    if already is not None:
        raise Refusal(
            "entry_must_be_reversed_at_most_once",
            f"entry {entry_id} was already reversed by entry {already}; nothing more to undo.",
        )
    when = value_date or original.value_date
    if when < original.value_date:
        raise Refusal(
            "reversal_must_not_predate_original",
            f"reversal date {when} is before entry {entry_id}'s date {original.value_date}.",
        )
    rows = session.execute(
        select(Account.name, Posting.amount_fen, Posting.budget_category, Posting.fund_source)
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.entry_id == entry_id)
        .order_by(Posting.id)
    ).all()
    draft = EntryDraft(
        value_date=when,
        kind="reversal",
        postings=tuple(PostingDraft(r.name, -r.amount_fen, r.budget_category, r.fund_source) for r in rows),
        project_code=original.project_code,
        voucher=f"reverses-{entry_id}",
        memo=reason.strip(),
        actor=actor,
        rules_version=original.rules_version,
        trace={"reverses": entry_id, "reversed_kind": original.kind, "reversed_voucher": original.voucher},
        reverses_id=entry_id,
        fact=not rows,
    )
    return post(session, draft)


def chain_head(session: Session) -> tuple[int, str]:
    held = held_head(session)
    if held is not None:
        return held.last_entry_id, held.last_hash
    head = session.execute(select(ChainHead.last_entry_id, ChainHead.last_hash).where(ChainHead.id == 1)).one()
    return head.last_entry_id, head.last_hash
