"""The programme tables as a projection of the journal: written from the fold, checked by it.

``write`` inserts the rows ``ledger.programme.fold.rows_of`` gives for a new event and applies
the decision ``decision_of`` gives to its request: the services write programme rows through
it and nowhere else. ``differences`` folds every entry's facts in chain order and compares
the result with what the tables hold, so a row inserted, changed or deleted behind the
application's back is named by ``verify``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ledger.core import journal
from ledger.core.models import Base
from ledger.programme import cache as state_cache
from ledger.programme import chart
from ledger.programme.fold import COLUMNS, KEYS, TABLES, Event, decision_of, decode, fold, rows_of
from ledger.programme.models import Project, Tranche

_DATE_COLUMNS = {"approval_date", "start_date", "end_date", "value_date", "opened_on", "closed_on"}
_JSON_COLUMNS = {"conditions", "payload", "arguments"}


def _table(name: str):
    return Base.metadata.tables[name]


def _stored(table: str, row: dict) -> dict:
    """A fold row as the table stores it: dates as dates, JSON columns as text."""
    out = {}
    for column, value in row.items():
        if column in _DATE_COLUMNS and value is not None:
            value = dt.date.fromisoformat(value)
        elif column in _JSON_COLUMNS and value is not None:
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        out[column] = value
    return out


def record(session: Session, posted, draft) -> None:
    """Write the programme rows of a draft just posted (nothing when its voucher was a replay)."""
    if posted.created and draft.facts is not None:
        write(session, Event(posted.entry_id, draft.value_date, draft.kind, draft.project_code, draft.actor, draft.facts))


def write(session: Session, event: Event) -> None:
    """Insert the programme rows of one new event (accounts are opened by the journal core)."""
    rows = rows_of(event)
    for table in TABLES:
        if table == "accounts" or not rows.get(table):
            continue
        if table == "project_events" and journal.BUFFER_SESSION_KEY in session.info:
            _buffer_events(session, rows[table])
            continue
        stored = [_stored(table, r) for r in rows[table]]
        if table == "project_events":
            for r in stored:
                r["tranche_id"] = _tranche_id(session, r["project_code"], r.pop("tranche"))
        session.connection().execute(insert(_table(table)), stored)  # Core: no ORM object is written here
    decision = decision_of(event)
    if decision is not None:
        # The decision time is the database's clock, like requested_at (not part of the fold).
        requests = _table("requests")
        done = session.execute(
            update(requests).where(requests.c.id == decision["id"], requests.c.status == "pending")
            .values({k: v for k, v in decision.items() if k != "id"} | {"decided_at": func.now()})
        )
        assert done.rowcount == 1, f"request {decision['id']} was not pending"  # the caller locked and checked it


_EVENT_COLUMNS = ("entry_id", "project_code", "value_date", "kind", "lane_no", "stage", "passed", "tranche_id",
                  "reference", "payload")


def _buffer_events(session: Session, rows: list[dict]) -> None:
    """Project events as tuples for the session's write buffer (``journal.buffering``): the
    values ``_stored`` gives, dates as ISO text on SQLite (as SQLAlchemy stores them there)."""
    raw = session.get_bind().dialect.name == "sqlite"
    tuples = []
    for r in rows:
        stored = _stored("project_events", r)
        stored["tranche_id"] = _tranche_id(session, r["project_code"], r["tranche"])
        if raw:
            stored["value_date"] = r["value_date"]
        tuples.append(tuple(stored.get(c) for c in _EVENT_COLUMNS))
    journal.insert_tuples(session, "project_events", _EVENT_COLUMNS, tuples)


def _tranche_id(session: Session, code: str, slot: tuple[int, int] | None) -> int | None:
    if slot is None:
        return None
    cache = state_cache.active(session)
    cached = cache.projects.get(code) if cache is not None else None
    if cached is not None and tuple(slot) in cached.tranche_ids:
        return cached.tranche_ids[tuple(slot)]
    lane_no, seq = slot
    return session.execute(
        select(Tranche.id).where(Tranche.project_code == code, Tranche.lane_no == lane_no, Tranche.seq == seq)
    ).scalar_one()


# --- upgrading a ledger made before facts existed ---------------------------------------------

SNAPSHOT_KIND = "snapshot"


def needs_snapshot(session: Session) -> bool:
    """True for a ledger whose programme rows predate facts: no entry carries facts yet, but
    the programme tables hold rows (every programme row written since comes with its facts).
    Such a ledger gets one snapshot entry on upgrade; a ledger of hand-opened accounts only
    needs none (their names and books are in every posting's hashed content).

    Also true for a ledger that has facts but holds requests recorded before requests were
    in the chain (schema 20261205_0006: no ``entry_id``) that no snapshot covers yet.
    """
    if session.execute(select_facts().limit(1)).first() is None:
        return any(session.execute(select(_table(t)).limit(1)).first() is not None for t in TABLES if t != "accounts")
    return bool(_uncovered_requests(session))


def _uncovered_requests(session: Session) -> list[dict]:
    """Requests recorded before they had fact entries, when no snapshot entry holds requests."""
    requests = _table("requests")
    if session.execute(select(requests.c.id).where(requests.c.entry_id.is_(None)).limit(1)).first() is None:
        return []
    e = _entries()
    for (facts,) in session.execute(select(e.c.facts).where(e.c.kind == SNAPSHOT_KIND, e.c.facts.is_not(None))):
        if "requests" in decode(facts)["snapshot"]:
            return []
    return [r for r in table_rows(session, "requests").values() if r["entry_id"] is None]


def record_snapshot(session: Session, *, actor: str, revision: str):
    """Post the programme tables and accounts as they are as one hashed fact entry, so that
    from the upgrade on every programme fact is covered by the chain; old entries keep
    their hashes (and old anchors still match). On a ledger that has facts already, only
    the requests recorded before requests were in the chain are posted."""
    from ledger.core.journal import EntryDraft, chain_head, post

    tables = {}
    if session.execute(select_facts().limit(1)).first() is None:
        for table in TABLES:
            rows = sorted(table_rows(session, table).values(), key=lambda r: json.dumps([r[k] for k in KEYS[table]]))
            tables[table] = [_json_row(r) for r in rows]
    else:
        tables["requests"] = [_json_row(r) for r in sorted(_uncovered_requests(session), key=lambda r: r["id"])]
    last_id, _ = chain_head(session)
    value_date = session.execute(
        select(_entries().c.value_date).where(_entries().c.id == last_id)
    ).scalar() or dt.date.today()
    draft = EntryDraft(
        value_date=value_date if isinstance(value_date, dt.date) else dt.date.fromisoformat(value_date),
        kind=SNAPSHOT_KIND,
        postings=(),
        voucher=f"SNAPSHOT-{revision}",
        memo=f"升级时的项目数据快照（schema {revision}）",
        actor=actor,
        fact=True,
        facts={"snapshot": tables},
        trace={"entries_before": last_id, "rows": {t: len(r) for t, r in tables.items()}},
    )
    return post(session, draft)


def _json_row(row: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in row.items()}


# --- the check ------------------------------------------------------------------------------


def verify_ledger(session: Session, *, progress=None):
    """``ledger.core.verify.verify`` with the programme tables checked against the journal's facts."""
    from ledger.core.verify import verify
    from ledger.programme.roles import refuse_if_rows_hidden

    refuse_if_rows_hidden(session)
    return verify(session, progress=progress, projections=differences)


# What the entries after a checkpoint add to the project tables, and how to read just those rows.
SINCE_TABLES = {
    "projects": lambda t, after, codes: t.c.code.in_(codes),
    "lanes": lambda t, after, codes: t.c.project_code.in_(codes),
    "tranches": lambda t, after, codes: t.c.project_code.in_(codes),
    "project_events": lambda t, after, codes: t.c.entry_id > after,
}


def differences_since(session: Session, after_id: int) -> str | None:
    """The first difference between the project tables and the facts of the entries after
    entry ``after_id`` (a verified checkpoint), or None. Each entry's rows come from its own
    facts (``rows_of``), so only the entries after the checkpoint are read: the projects they
    approve (with their lanes and tranches) and every project event after it must be in the
    tables as the facts say, and no project event after it may be in the tables without an
    entry. The rest was compared by the full verification the checkpoint records."""
    want: dict[str, dict[tuple, dict]] = {table: {} for table in SINCE_TABLES}
    e = _entries()
    rows = session.execute(select_facts().where(e.c.id > after_id).order_by(e.c.id))
    for entry_id, value_date, kind, project_code, actor, facts in rows:
        for table, found in rows_of(Event(entry_id, value_date, kind, project_code, actor, decode(facts))).items():
            if table in want:
                for row in found:
                    want[table][tuple(row[k] for k in KEYS[table])] = row
    codes = sorted(key[0] for key in want["projects"])
    for table, where in SINCE_TABLES.items():
        have = table_rows(session, table, lambda t, where=where: where(t, after_id, codes))
        for key, row in want[table].items():
            actual = have.get(key)
            if actual is None:
                return f"table {table} has lost row ({_show(key)}) that the journal records"
            for column in COLUMNS[table]:
                if actual[column] != row[column]:
                    return (f"table {table}, row ({_show(key)}), column {column}: the journal says {row[column]!r}, "
                            f"the table holds {actual[column]!r}")
        for key in have:
            if key not in want[table]:
                return f"table {table} holds row ({_show(key[1:] if key[0] == 'duplicate' else key)}) that no journal entry after the checkpoint records"
    return None


def verify_since_checkpoint(session: Session, checkpoint):
    """``ledger.core.verify.verify_since`` with the project tables of the later entries checked."""
    import dataclasses

    from ledger.core.verify import verify_since
    from ledger.programme.roles import refuse_if_rows_hidden

    refuse_if_rows_hidden(session)
    result = verify_since(session, checkpoint)
    if result.ok:
        problem = differences_since(session, checkpoint.entry_id)
        if problem is not None:
            return dataclasses.replace(result, ok=False, problem=problem)
    return result


def journal_events(session: Session) -> Iterator[Event]:
    """Every entry that carries facts, in chain order."""
    rows = session.execute(select_facts().order_by(_entries().c.id), execution_options={"yield_per": 2_000})
    for entry_id, value_date, kind, project_code, actor, facts in rows:
        yield Event(entry_id, value_date, kind, project_code, actor, decode(facts))


def _entries():
    return _table("journal_entries")


def select_facts():
    e = _entries()
    return select(e.c.id, e.c.value_date, e.c.kind, e.c.project_code, e.c.actor, e.c.facts).where(e.c.facts.is_not(None))


def table_rows(session: Session, table: str, where=None) -> dict[tuple, dict]:
    """What a programme table holds, in the fold's shape, by natural key; ``where(t)``, when
    given, is a condition on the table that limits the rows read."""
    columns = [c for c in COLUMNS[table] if c != "tranche"]
    t = _table(table)
    query = select(*[t.c[c] for c in columns])
    if where is not None:
        query = query.where(where(t))
    if table == "project_events":
        slot = _table("tranches")
        query = query.add_columns(slot.c.lane_no, slot.c.seq).outerjoin(slot, slot.c.id == t.c.tranche_id)
    dates = [i for i, c in enumerate(columns) if c in _DATE_COLUMNS]
    json_columns = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
    flags = [i for i, c in enumerate(columns) if c in ("innovation_star", "bad_credit", "passed")]
    keys = [columns.index(k) for k in KEYS[table]]
    out: dict[tuple, dict] = {}
    for record in session.execute(query).tuples():
        values = list(record[: len(columns)])
        for i in dates:
            if values[i] is not None:
                values[i] = values[i].isoformat()
        for i in json_columns:
            if values[i] is not None:
                values[i] = json.loads(values[i])
        for i in flags:
            if values[i] is not None:
                values[i] = bool(values[i])
        row = dict(zip(columns, values))
        if table == "project_events":
            row["tranche"] = None if record[-2] is None else (record[-2], record[-1])
        key = tuple(values[i] for i in keys)
        if key in out:
            return {**out, ("duplicate",) + key: row}
        out[key] = row
    return out


def _show(key: tuple) -> str:
    return ", ".join(str(k) for k in key)


def differences(session: Session, events: Iterator[Event] | None = None) -> str | None:
    """The first difference between the tables and the fold of the journal, in one sentence,
    or the first rules file changed since a project pinned it, or the first entry after which
    a lane's advances exceeded its releases, or None."""
    from ledger.programme.guards import advances_problem

    return _tables_problem(session, events) or pins_problem(session) or advances_problem(session)


def pins_problem(session: Session) -> str | None:
    """The first project whose pinned rules file is missing or no longer has the pinned content."""
    from funding_rules.loader import RulesChangedError, fingerprints, get_rules, superseded_rules

    current = fingerprints()
    rows = session.execute(
        select(Project.rules_version, Project.rules_fingerprint, Project.code, Project.approval_date)
        .where(Project.rules_fingerprint.is_not(None))
        .order_by(Project.approval_date, Project.code)
    )
    kept: dict[tuple[str, str], bool] = {}  # (version, fingerprint) -> a kept packaged copy holds it
    for version, pinned, code, approved in rows:
        if version not in current:
            return (f"rules version {version}, pinned by project {code} on {approved}, is not found; "
                    "put its file back (or set JIEBANG_RULES_PATH to its folder)")
        if current[version] != pinned and (version, pinned) not in kept:
            kept[version, pinned] = superseded_rules(version, pinned) is not None
        if current[version] != pinned and not kept[version, pinned]:
            path = get_rules(version).path
            return RulesChangedError(path, version, pinned, current[version]).for_project(code, approved).message
    return None


def _tables_problem(session: Session, events: Iterator[Event] | None) -> str | None:
    expected = fold(journal_events(session) if events is None else events)
    for table in TABLES:
        want = expected[table]
        have = table_rows(session, table)
        if table == "accounts":
            problem = _accounts_problem(want, have, expected["lanes"])
            if problem:
                return problem
            continue
        for key, row in want.items():
            actual = have.get(key)
            if actual is None:
                return f"table {table} has lost row ({_show(key)}) that the journal records"
            for column in COLUMNS[table]:
                if actual[column] != row[column]:
                    return (
                        f"table {table}, row ({_show(key)}), column {column}: the journal says {row[column]!r}, "
                        f"the table holds {actual[column]!r}"
                    )
        for key in have:
            if key not in want:
                if key[0] == "duplicate":
                    return f"table {table} holds row ({_show(key[1:])}) twice"
                return f"table {table} holds row ({_show(key)}) that no journal entry records"
    return None


def _accounts_problem(want: dict, have: dict, lanes: dict) -> str | None:
    """Accounts opened by business events must equal their ``opens`` facts; every other
    account (opened by hand or by a ledger-shaped file) must have the type of its name's
    root, and one named by the chart must carry the project and lane its name gives."""
    for key, row in want.items():
        actual = have.get(key)
        if actual is None:
            return f"table accounts has lost account {key[0]} that the journal opened"
        for column in COLUMNS["accounts"]:
            if actual[column] != row[column]:
                return (
                    f"table accounts, account {key[0]}, column {column}: the journal says {row[column]!r}, "
                    f"the table holds {actual[column]!r}"
                )
    for key, actual in have.items():
        if key in want:
            continue
        name = key[0]
        if actual["type"] != name.split(":", 1)[0]:
            return f"table accounts, account {name}, column type: its name says {name.split(':', 1)[0]!r}, the table holds {actual['type']!r}"
        derived = chart.project_and_lane(name)
        if derived is None:
            continue
        code, lane_no = derived
        solver = None if lane_no is None else lanes.get((code, lane_no), {}).get("solver_uscc")
        if actual["project_code"] != code or (lane_no is not None and solver is not None and actual["lane"] != solver):
            return (
                f"table accounts, account {name}: its name gives project {code}"
                + (f" lane L{lane_no} ({solver})" if lane_no is not None else "")
                + f", the table holds project {actual['project_code']!r} lane {actual['lane']!r}"
            )
    return None
