"""Portal accounts: invitations, passwords (argon2id), sign-in throttling and the append-only log.

These tables are not money facts: nothing here is a journal entry (docs/access.md).
Times are UTC, taken from Python so both backends compare them the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from funding_rules.uscc import normalize_uscc
from ledger.core.errors import Refusal
from ledger.programme.models import (
    EnterpriseLogin,
    Party,
    PortalAuditorProject,
    PortalInvite,
    PortalLog,
    PortalUser,
    Project,
)

KINDS = ("enterprise", "auditor", "bureau")
INVITE_HOURS = 72
MIN_PASSWORD = 12
# Failed sign-ins: the first FREE_FAILURES in the window cost nothing; each one after that
# doubles the wait before the next try (per account and per address), up to MAX_WAIT.
WINDOW = dt.timedelta(minutes=15)
FREE_FAILURES = 3
MAX_WAIT = 300

# argon2id (argon2-cffi's default type) with its RFC 9106 "low memory" parameters.
HASHER = PasswordHasher()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is signed in, as every request sees it."""

    id: int
    login: str
    kind: str
    display_name: str
    party_uscc: str | None
    db_role: str | None
    projects: tuple[str, ...]
    epoch: int


def record(session: Session, login: str, event: str, detail: str = "", address: str = "") -> None:
    session.add(PortalLog(at=now(), login=login[:80], event=event, detail=detail, address=address[:64]))


def invite(
    session: Session,
    *,
    party: str | None = None,
    auditor: str | None = None,
    projects: tuple[str, ...] = (),
    bureau: str | None = None,
    hours: int = INVITE_HOURS,
    actor: str,
) -> tuple[PortalUser, str]:
    """Create (or re-invite) an account and return it with a fresh single-use token."""
    chosen = [k for k, v in (("enterprise", party), ("auditor", auditor), ("bureau", bureau)) if v]
    if len(chosen) != 1:
        raise Refusal("portal_invite_needs_one_role", "name exactly one of --party USCC, --auditor NAME or --bureau NAME.")
    if not 1 <= hours <= 24 * 30:
        raise Refusal("portal_invite_hours_in_range", f"--hours {hours} must be 1 to 720 (30 days).")
    kind = chosen[0]
    postgres = session.get_bind().dialect.name == "postgresql"
    party_uscc = db_role = None
    if kind == "enterprise":
        party_uscc = normalize_uscc(party)
        row = session.scalars(select(Party).where(Party.uscc == party_uscc)).one_or_none()
        if row is None:
            raise Refusal("party_must_be_registered", f"no party {party_uscc} is registered; `jiebang parties` lists them.")
        login, display = party_uscc, row.name
        if postgres:
            db_role = session.scalars(
                select(EnterpriseLogin.login).where(EnterpriseLogin.party_uscc == party_uscc).order_by(EnterpriseLogin.login)
            ).first()
            if db_role is None:
                raise Refusal(
                    "portal_party_needs_db_login",
                    f"party {party_uscc} has no database login, so its pages could not run under row-level security; "
                    f"create one first: jiebang db grant enterprise LOGIN --party {party_uscc}.",
                )
    elif kind == "auditor":
        if not projects:
            raise Refusal("portal_auditor_needs_projects", "an auditor needs at least one --project CODE to audit.")
        known = set(session.scalars(select(Project.code).where(Project.code.in_(projects))))
        missing = sorted(set(projects) - known)
        if missing:
            raise Refusal("project_must_exist", f"no project {', '.join(missing)}; `jiebang projects` lists them.")
        login = display = auditor.strip()
    else:
        login = display = bureau.strip()
    if kind != "auditor" and projects:
        raise Refusal("portal_projects_only_for_auditor", "--project applies to --auditor invitations only.")
    if not login or len(login) > 80 or any(ch.isspace() or ord(ch) < 32 for ch in login):
        raise Refusal("portal_login_must_be_plain", f"account name {login!r} must be 1-80 characters without spaces.")
    user = session.scalars(select(PortalUser).where(PortalUser.login == login)).one_or_none()
    if user is not None and user.kind != kind:
        raise Refusal("portal_login_taken", f"account {login} already exists as {user.kind}; choose another name.")
    if user is None:
        user = PortalUser(login=login, kind=kind, display_name=display, party_uscc=party_uscc, db_role=db_role,
                          epoch=0, created_by=actor, created_at=now())
        session.add(user)
        session.flush()
    else:
        user.revoked_at = None
        user.db_role = db_role
        user.epoch += 1  # a re-invitation signs out the old sessions
    for code in sorted(set(projects)):
        if session.get(PortalAuditorProject, (user.id, code)) is None:
            session.add(PortalAuditorProject(user_id=user.id, project_code=code))
    token = secrets.token_urlsafe(32)
    session.add(PortalInvite(user_id=user.id, token_sha256=token_digest(token), created_at=now(),
                             expires_at=now() + dt.timedelta(hours=hours)))
    record(session, login, "invite", f"by {actor}, expires in {hours} h" + (f", projects {', '.join(sorted(set(projects)))}" if projects else ""))
    return user, token


def revoke(session: Session, login: str, *, actor: str) -> PortalUser:
    user = session.scalars(select(PortalUser).where(PortalUser.login == login)).one_or_none()
    if user is None:
        raise Refusal("portal_account_must_exist", f"no portal account {login}; `jiebang portal log` lists the accounts seen.")
    user.revoked_at = now()
    user.epoch += 1
    user.password_hash = None
    for pending in session.scalars(select(PortalInvite).where(PortalInvite.user_id == user.id, PortalInvite.used_at.is_(None))):
        pending.used_at = now()
    record(session, login, "revoke", f"by {actor}")
    return user


def log_rows(session: Session, *, login: str | None = None, limit: int | None = None) -> list[dict]:
    query = select(PortalLog).order_by(PortalLog.id.desc())
    if login:
        query = query.where(PortalLog.login == login)
    if limit:
        query = query.limit(limit)
    rows = list(session.scalars(query))
    rows.reverse()
    return [{"id": r.id, "at": _aware(r.at).strftime("%Y-%m-%d %H:%M:%S UTC"), "login": r.login, "event": r.event,
             "detail": r.detail, "address": r.address} for r in rows]


def open_invite(session: Session, token: str) -> PortalUser | None:
    """The account an unused, unexpired invitation is for, or None."""
    found = session.scalars(select(PortalInvite).where(PortalInvite.token_sha256 == token_digest(token))).one_or_none()
    if found is None or found.used_at is not None or _aware(found.expires_at) <= now():
        return None
    user = session.get(PortalUser, found.user_id)
    return None if user is None or user.revoked_at is not None else user


def accept_invite(session: Session, token: str, password: str, repeat: str, address: str) -> PortalUser:
    user = open_invite(session, token)
    if user is None:
        raise Refusal("portal_invite_invalid", "该邀请链接无效、已使用或已过期，请联系科技局重新发送。")
    if password != repeat:
        raise Refusal("portal_password_mismatch", "两次输入的密码不一致。")
    if len(password) < MIN_PASSWORD:
        raise Refusal("portal_password_too_short", f"密码至少 {MIN_PASSWORD} 个字符。")
    invite_row = session.scalars(select(PortalInvite).where(PortalInvite.token_sha256 == token_digest(token))).one()
    invite_row.used_at = now()
    user.password_hash = HASHER.hash(password)
    user.epoch += 1
    record(session, user.login, "invite_accepted", "password set", address)
    return user


def wait_seconds(session: Session, login: str, address: str) -> int:
    """How long the next sign-in try for this account or from this address must wait."""
    since = now() - WINDOW
    wait = 0
    for column, value in ((PortalLog.login, login), (PortalLog.address, address)):
        count, last = session.execute(
            select(func.count(), func.max(PortalLog.at)).where(
                PortalLog.event == "signin_failed", column == value, PortalLog.at > since)
        ).one()
        if count > FREE_FAILURES and last is not None:
            needed = min(MAX_WAIT, 2 ** (count - FREE_FAILURES))
            wait = max(wait, needed - int((now() - _aware(last)).total_seconds()))
    return max(0, wait)


def authenticate(session: Session, login: str, password: str, address: str) -> PortalUser:
    """The account, or a refusal; failures are logged (and slow the next try)."""
    login = (login or "").strip()[:80]
    wait = wait_seconds(session, login, address)
    if wait > 0:
        raise Refusal("portal_signin_throttled", f"登录失败次数过多，请 {wait} 秒后再试。")
    user = session.scalars(select(PortalUser).where(PortalUser.login == login)).one_or_none()
    ok = False
    if user is not None and user.revoked_at is None and user.password_hash:
        try:
            ok = HASHER.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            ok = False
    else:
        # Spend the same time as a real check, so timing does not tell which accounts exist.
        try:
            HASHER.verify(_dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            pass
    if not ok:
        record(session, login, "signin_failed", "", address)
        raise Refusal("portal_signin_failed", "账号或密码不正确。")
    record(session, login, "signin", "", address)
    return user


_DUMMIES: dict[int, str] = {}


def _dummy_hash() -> str:
    """A hash with the hasher's parameters, for the accounts that do not exist."""
    return _DUMMIES.setdefault(id(HASHER), HASHER.hash(secrets.token_hex(16)))


def viewer(session: Session, user_id: int, epoch: int) -> Viewer | None:
    user = session.get(PortalUser, user_id)
    if user is None or user.revoked_at is not None or user.epoch != epoch or not user.password_hash:
        return None
    projects: tuple[str, ...] = ()
    if user.kind == "auditor":
        projects = tuple(session.scalars(
            select(PortalAuditorProject.project_code).where(PortalAuditorProject.user_id == user.id)
            .order_by(PortalAuditorProject.project_code)))
    return Viewer(id=user.id, login=user.login, kind=user.kind, display_name=user.display_name,
                  party_uscc=user.party_uscc, db_role=user.db_role, projects=projects, epoch=user.epoch)


def viewer_and_head(conn, user_id: int, epoch: int) -> tuple[Viewer | None, tuple[int, str] | None]:
    """What every signed-in request asks first, in one statement (two for an auditor) on a
    plain connection: the account as ``viewer`` gives it, and the chain head."""
    from sqlalchemy import text

    row = conn.execute(text(
        "SELECT u.login, u.kind, u.display_name, u.party_uscc, u.db_role, u.epoch, u.revoked_at, "
        "u.password_hash IS NOT NULL, h.last_entry_id, h.last_hash "
        "FROM portal_users u, chain_head h WHERE u.id = :id AND h.id = 1"), {"id": user_id}).first()
    if row is None or row[6] is not None or row[5] != epoch or not row[7]:
        return None, None
    projects: tuple[str, ...] = ()
    if row[1] == "auditor":
        projects = tuple(conn.execute(text(
            "SELECT project_code FROM portal_auditor_projects WHERE user_id = :id ORDER BY project_code"),
            {"id": user_id}).scalars())
    return (Viewer(id=user_id, login=row[0], kind=row[1], display_name=row[2], party_uscc=row[3], db_role=row[4],
                   projects=projects, epoch=row[5]), (row[8], row[9]))


def principal(viewer: Viewer) -> tuple:
    """Everything that tells one account's view from another's: the key of what is remembered
    for it (``portal.cache``)."""
    return (viewer.id, viewer.login, viewer.kind, viewer.party_uscc, viewer.db_role, list(viewer.projects), viewer.epoch)
