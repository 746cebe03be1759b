"""Maker–checker for money out: ledger settings, requests and their decisions.

When the ledger's ``require_approval`` setting is on, a release, write-off, termination or
revocation is not posted when an officer asks for it: it is recorded as a *request* (the
service's keyword arguments as JSON). A different user with the approver role then approves
it, which runs the same service again with the stored arguments -- so every rule is checked
at approval time against the ledger as it is then -- and posts the entry; or rejects it
with a reason.

The chain holds every request and decision, and the ``requests`` table is their projection
(``ledger.programme.fold``): recording a request posts a fact entry of kind ``request``
whose facts carry it (``{"request": {id, kind, project_code, arguments, requested_by}}``);
an approval's decision (``{"decision": {request, status, decided_by, reason}}``) rides in
the money entry it posts, a rejection's in a fact entry of kind ``request_rejection``. The
table adds only when (the database's clock), which is not a money fact.

Who is acting:

* SQLite: the ``--user`` / ``JIEBANG_USER`` name, and approvers are a list kept in the
  settings (``jiebang settings --approver USER``). This is an honour system: anyone who can
  write the file can claim any name.
* PostgreSQL: the database login (``SELECT current_user``); approvers are members of the
  ``jiebang_approver`` role (``jiebang db grant approver LOGIN``). Triggers make the
  database itself refuse a decision by the requester, by a non-approver or under another
  name, and (while approval is required) any money-out entry that no approved request
  points at -- also for raw SQL and imports.

Settings are insert-only: each change is a new row (the current value is the newest row of
its name) and a fact journal entry of kind ``setting``.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ledger.core.errors import Refusal
from ledger.core.journal import EntryDraft, Posted, post
from ledger.programme import cache as state_cache
from ledger.programme import projection
from ledger.programme.common import requesting
from ledger.programme.models import Request, Setting

# The tables are defined with the others on the one metadata of ledger.models.
SETTINGS = Setting.__table__
REQUESTS = Request.__table__

# Money-out request kinds (equal to the journal entry kinds they post).
MONEY_OUT_KINDS = ("release", "write_off", "termination", "revocation")
STATUSES = ("pending", "approved", "rejected")
APPROVER_ROLE = "jiebang_approver"

# setting name -> (allowed values or None for free JSON, default)
SETTINGS_KNOWN = {"require_approval": (("on", "off"), "off"), "approvers": (None, "[]")}


# --- who is acting ----------------------------------------------------------------------


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def acting_user(session: Session, fallback: str) -> str:
    """The database login on PostgreSQL; the ``--user`` name (honour system) on SQLite."""
    if is_postgres(session):
        return session.execute(text("SELECT current_user")).scalar_one()
    return fallback


def is_approver(session: Session, user: str) -> bool:
    """PostgreSQL: a member of jiebang_approver (or a superuser); SQLite: in the approvers setting."""
    if is_postgres(session):
        return bool(
            session.execute(
                text(
                    "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR "
                    "(EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :role) AND pg_has_role(current_user, :role, 'MEMBER'))"
                ),
                {"role": APPROVER_ROLE},
            ).scalar_one()
        )
    return user in approvers(session)


# --- settings ---------------------------------------------------------------------------


def setting(session: Session, name: str) -> str:
    """The current value of a setting (its newest row), or its default; during an import,
    read once and kept until a setting is posted."""
    cache = state_cache.active(session)
    if cache is not None and name in cache.settings:
        return cache.settings[name]
    value = session.execute(
        select(SETTINGS.c.value).where(SETTINGS.c.name == name).order_by(SETTINGS.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    value = SETTINGS_KNOWN[name][1] if value is None else value
    if cache is not None:
        cache.settings[name] = value
    return value


def requires_approval(session: Session) -> bool:
    return setting(session, "require_approval") == "on"


def approvers(session: Session) -> list[str]:
    return list(json.loads(setting(session, "approvers")))


def all_settings(session: Session) -> list[dict]:
    """Every known setting with its value and who changed it last, when."""
    rows = []
    for name in SETTINGS_KNOWN:
        last = session.execute(
            select(SETTINGS.c.value, SETTINGS.c.set_by, SETTINGS.c.set_at, SETTINGS.c.entry_id)
            .where(SETTINGS.c.name == name).order_by(SETTINGS.c.id.desc()).limit(1)
        ).one_or_none()
        rows.append({
            "setting": name,
            "value": SETTINGS_KNOWN[name][1] if last is None else last.value,
            "set_by": None if last is None else last.set_by,
            "set_at": None if last is None else str(last.set_at),
            "entry": None if last is None else last.entry_id,
        })
    return rows


def change_setting(session: Session, name: str, value: str, *, user: str) -> Posted | None:
    """Record a new value for a setting, as a settings row and a fact journal entry.

    Returns None (and writes nothing) when the value is already current.
    """
    allowed, _default = SETTINGS_KNOWN[name]
    if allowed is not None and value not in allowed:
        raise Refusal("setting_value_must_be_known", f"{name} must be one of {', '.join(allowed)}, not {value!r}.")
    before = setting(session, name)
    if before == value:
        return None
    draft = EntryDraft(
        value_date=dt.date.today(), kind="setting", postings=(), fact=True,
        memo=f"设置 {name} = {value}", actor=user[:80],
        trace={"setting": name, "value": value, "before": before},
        facts={"setting": {"name": name, "value": value, "set_by": user}},
    )
    posted = post(session, draft)
    projection.record(session, posted, draft)
    return posted


def add_approver(session: Session, approver: str, *, user: str) -> Posted | None:
    if is_postgres(session):
        raise Refusal(
            "approver_must_be_a_database_role_on_postgresql",
            f"on PostgreSQL approvers are logins in the {APPROVER_ROLE} role; run `jiebang db grant approver {approver}`.",
        )
    approver = approver.strip()
    if not approver:
        raise Refusal("approver_must_be_named", "give the approver's user name with --approver.")
    names = approvers(session)
    if approver in names:
        return None
    return change_setting(session, "approvers", json.dumps(sorted([*names, approver]), ensure_ascii=False), user=user)


def remove_approver(session: Session, approver: str, *, user: str) -> Posted | None:
    if is_postgres(session):
        raise Refusal(
            "approver_must_be_a_database_role_on_postgresql",
            f"on PostgreSQL approvers are logins in the {APPROVER_ROLE} role; REVOKE {APPROVER_ROLE} FROM {approver}.",
        )
    names = approvers(session)
    if approver not in names:
        return None
    return change_setting(session, "approvers", json.dumps(sorted(n for n in names if n != approver), ensure_ascii=False), user=user)


# --- requests ---------------------------------------------------------------------------


def _plain(arguments: dict) -> dict:
    """The service's keyword arguments (without the actor) as JSON-able values."""
    out = {}
    for key, value in arguments.items():
        if key == "actor":
            continue
        if isinstance(value, dt.date):
            value = value.isoformat()
        elif key == "misused":
            value = [[m.spend_voucher, m.amount_fen] for m in value]
        out[key] = value
    return out


def _revive(kind: str, arguments: dict) -> dict:
    from ledger.programme import Misuse

    kwargs = dict(arguments)
    if "date" in kwargs:
        kwargs["date"] = dt.date.fromisoformat(kwargs["date"])
    if "misused" in kwargs:
        kwargs["misused"] = [Misuse(voucher, int(amount)) for voucher, amount in kwargs["misused"]]
    if kind == "revocation":
        kwargs["revoke"] = True
    return kwargs


def _run_service(session: Session, kind: str, arguments: dict, actor: str) -> Posted:
    from ledger import programme

    service = {
        "release": programme.release,
        "write_off": programme.write_off,
        "termination": programme.terminate,
        "revocation": programme.terminate,
    }[kind]
    return service(session, actor=actor, **_revive(kind, arguments))


class _DryRun(Exception):
    def __init__(self, posted: Posted):
        self.posted = posted


def record_request(session: Session, kind: str, arguments: dict, *, user: str) -> int:
    """Record a money-out request after checking, in a rolled-back savepoint, that it would post now.

    A request the rules refuse today is refused (nothing recorded): the approver should not
    see requests that cannot pass. The rules are checked again at approval.
    """
    if kind not in MONEY_OUT_KINDS:
        raise Refusal("request_kind_must_be_money_out", f"{kind} is not a money-out event ({', '.join(MONEY_OUT_KINDS)}).")
    stored = _plain(arguments)
    savepoint = session.begin_nested()
    try:
        with requesting():
            posted = _run_service(session, kind, stored, actor=user[:80])
        raise _DryRun(posted)
    except _DryRun as dry:
        savepoint.rollback()
        if not dry.posted.created:
            raise Refusal(
                "request_must_be_new",
                f"this {kind} is already recorded as entry {dry.posted.entry_id}; nothing to request.",
            ) from None
    except BaseException:
        if savepoint.is_active:
            savepoint.rollback()
        raise
    request = {
        "id": _next_request_id(session), "kind": kind, "project_code": (stored.get("project") or "").upper() or None,
        "arguments": stored, "requested_by": user,
    }
    draft = EntryDraft(
        value_date=dt.date.today(), kind="request", postings=(), fact=True,
        memo=f"申请 {request['id']}（{request['project_code']} {kind}）待审批", actor=user[:80],
        facts={"request": request},
    )
    posted = post(session, draft)
    projection.record(session, posted, draft)
    return request["id"]


def _next_request_id(session: Session) -> int:
    """The number the next request gets: the table's own sequence on PostgreSQL; on SQLite,
    one more than the highest (this transaction holds SQLite's one write lock)."""
    if is_postgres(session):
        return session.execute(text("SELECT nextval(pg_get_serial_sequence('requests', 'id'))")).scalar_one()
    return session.execute(select(func.coalesce(func.max(REQUESTS.c.id), 0) + 1)).scalar_one()


def list_requests(session: Session, status: str | None = None) -> list[dict]:
    query = select(REQUESTS).order_by(REQUESTS.c.id)
    if status:
        query = query.where(REQUESTS.c.status == status)
    rows = []
    for row in session.execute(query).mappings():
        rows.append({
            "id": row["id"], "kind": row["kind"], "project": row["project_code"],
            "arguments": json.loads(row["arguments"]), "requested_by": row["requested_by"],
            "requested_at": str(row["requested_at"]), "status": row["status"], "decided_by": row["decided_by"],
            "decided_at": None if row["decided_at"] is None else str(row["decided_at"]),
            "reason": row["decision_reason"], "entry": row["decision_entry_id"],
        })
    return rows


def _pending(session: Session, request_id: int, user: str, verb: str):
    # Checked first without a lock (an officer may read requests but not lock them), then
    # locked and checked again so that two approvers cannot both decide the same request.
    for lock in (False, True):
        row = _checked(session, request_id, user, verb, lock)
    return row


def _checked(session: Session, request_id: int, user: str, verb: str, lock: bool):
    query = select(REQUESTS).where(REQUESTS.c.id == request_id)
    row = session.execute(query.with_for_update() if lock else query).mappings().one_or_none()
    if row is None:
        raise Refusal("request_must_exist", f"there is no request {request_id}; `jiebang requests` lists them.")
    if row["status"] != "pending":
        raise Refusal(
            "request_must_be_pending",
            f"request {request_id} was already {row['status']} by {row['decided_by']} at {row['decided_at']}; nothing to {verb}.",
        )
    if row["requested_by"] == user:
        raise Refusal(
            "approver_must_not_be_requester",
            f"request {request_id} was made by {user}; it needs another user with the approver role to {verb} it.",
        )
    if not lock and not is_approver(session, user):
        where = (f"members of the {APPROVER_ROLE} role (jiebang db grant approver LOGIN)" if is_postgres(session)
                 else "the approvers named in the settings (jiebang settings --approver USER)")
        raise Refusal("approver_must_have_the_role", f"{user} is not an approver; only {where} can {verb} requests.")
    return row


def approve(session: Session, request_id: int, *, user: str) -> tuple[dict, Posted]:
    """Approve a pending request: run its service now (every rule re-checked) and post.

    The entry posted carries the decision in its facts, and writing its projection marks
    the request approved.
    """
    from ledger.programme.common import deciding

    row = _pending(session, request_id, user, "approve")
    actor = f"{row['requested_by']} approved by {user}"[:80]
    decision = {"request": request_id, "status": "approved", "decided_by": user, "reason": None}
    try:
        with deciding(row["kind"], decision):
            posted = _run_service(session, row["kind"], json.loads(row["arguments"]), actor)
    except Refusal as refusal:
        raise Refusal(refusal.code, f"request {request_id} stays pending: {refusal.message}") from None
    if not posted.created:
        # Its voucher was posted since the request was made: that entry does not carry
        # this decision, so the request cannot point at it.
        raise Refusal(
            "request_must_be_new",
            f"request {request_id} stays pending: this {row['kind']} is already recorded as entry "
            f"{posted.entry_id}; reject the request.",
        )
    return dict(row), posted


def reject(session: Session, request_id: int, *, user: str, reason: str) -> tuple[dict, Posted]:
    """Reject a pending request with a reason; the rejection is a fact journal entry."""
    if not (reason or "").strip():
        raise Refusal("rejection_must_have_reason", "a rejection needs a reason; give it with --reason.")
    row = _pending(session, request_id, user, "reject")
    draft = EntryDraft(
        value_date=dt.date.today(), kind="request_rejection", postings=(), fact=True,
        memo=f"申请 {request_id}（{row['kind']}）已驳回：{reason.strip()}", actor=user[:80],
        trace={"request_id": request_id, "kind": row["kind"], "arguments": json.loads(row["arguments"]),
               "requested_by": row["requested_by"], "reason": reason.strip()},
        facts={"decision": {"request": request_id, "status": "rejected", "decided_by": user, "reason": reason.strip()}},
    )
    posted = post(session, draft)
    projection.record(session, posted, draft)
    return dict(row), posted
