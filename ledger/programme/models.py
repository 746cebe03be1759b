"""The programme's tables: parties, projects, lanes, tranches, project events, settings,
maker-checker requests and enterprise logins, on the journal's one ``Base.metadata``.

Every one of them but ``requests`` and ``enterprise_logins`` is a projection of the journal:
its rows are folded from the facts of hashed entries (``ledger.programme.fold``) and
``verify`` rebuilds and compares them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from ledger.core.models import Base

# --- the programme: parties, projects, lanes, tranches and the events recorded on them ----
#
# These rows describe who and what the money is for. They are insert-only like the journal
# (triggers refuse UPDATE and DELETE): a change is a new event, never an edit. Every amount
# a user asks about is computed from postings; these tables hold no running totals.


class Party(Base):
    """An enterprise, university, institute or other unit, identified by its USCC.

    Attributes:
      uscc: the Unified Social Credit Code (GB 32100-2015), validated on registration.
      uscc_override_reason: why a code that fails the check digit was accepted (legacy codes).
      revenue_fen / rnd_intensity / innovation_star / bad_credit: eligibility facts declared
        at registration (Jiangmen demand-side tests).
    """

    __tablename__ = "parties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    revenue_fen: Mapped[int | None] = mapped_column(BigInteger)
    rnd_intensity: Mapped[str | None] = mapped_column(String(20))
    innovation_star: Mapped[bool] = mapped_column(default=False)
    bad_credit: Mapped[bool] = mapped_column(default=False)
    uscc_override_reason: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(80))
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("kind IN ('enterprise', 'university', 'institute', 'other')", name="kind_known"),
    )


class PartyRelation(Base):
    """A declared related-party relationship (关联关系) between two parties, stored both ways."""

    __tablename__ = "party_relations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    party_uscc: Mapped[str] = mapped_column(String(18), ForeignKey("parties.uscc"), index=True)
    related_uscc: Mapped[str] = mapped_column(String(18))

    __table_args__ = (UniqueConstraint("party_uscc", "related_uscc", name="uq_party_relations_pair"),)


class Project(Base):
    """A 揭榜挂帅 / 赛马 project as approved (立项), pinned to its rules version.

    Attributes:
      code: the project code, e.g. ``JM2025-003``; used in account names.
      rules_version: the city rules file in force at approval; later policy never applies.
      mode: ``jbgs`` (揭榜挂帅, one solver) or ``saima`` (赛马, several racing lanes).
      category: ``tech_breakthrough`` (技术攻关) or ``commercialization`` (成果转化).
      budget_year: the appropriation year the obligation draws on.
      approved_grant_fen: Jiangmen's approved grant; for Urumqi the subsidy ceiling.
      entry_id: the approval journal entry.
    """

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(40))
    rules_version: Mapped[str] = mapped_column(String(60))
    # SHA-256 of the rules file's canonical content at approval; NULL only for a project
    # approved before fingerprints whose file could not be found at the upgrade.
    rules_fingerprint: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(30))
    mode: Mapped[str] = mapped_column(String(10))
    demand_uscc: Mapped[str] = mapped_column(String(18), ForeignKey("parties.uscc"), index=True)
    total_investment_fen: Mapped[int] = mapped_column(BigInteger)
    approved_grant_fen: Mapped[int] = mapped_column(BigInteger)
    budget_year: Mapped[int] = mapped_column(Integer)
    approval_date: Mapped[dt.date] = mapped_column(Date)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    # Indexed: SQLite settles an entry's deferred foreign keys by looking up this column
    # (migration 20261206_0013).
    entry_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("journal_entries.id", deferrable=True, initially="DEFERRED"), index=True)

    __table_args__ = (
        CheckConstraint("mode IN ('jbgs', 'saima')", name="mode_known"),
        CheckConstraint("category IN ('tech_breakthrough', 'commercialization')", name="category_known"),
        CheckConstraint("end_date > start_date", name="period_positive"),
        CheckConstraint("approved_grant_fen >= 0", name="grant_not_negative"),
    )


class Lane(Base):
    """One solver (揭榜方) in a project; a 揭榜挂帅 project has exactly one.

    Attributes:
      lane_no: 1, 2, 3 ... in the order given at approval; used in account names (``L1``).
      solver_uscc: the solver; locked after approval (no UPDATE exists).
    """

    __tablename__ = "lanes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_code: Mapped[str] = mapped_column(String(40), ForeignKey("projects.code"))
    lane_no: Mapped[int] = mapped_column(Integer)
    solver_uscc: Mapped[str] = mapped_column(String(18), ForeignKey("parties.uscc"), index=True)

    __table_args__ = (
        UniqueConstraint("project_code", "lane_no", name="uq_lanes_project_lane"),
        UniqueConstraint("project_code", "solver_uscc", name="uq_lanes_project_solver"),
    )


class Tranche(Base):
    """A scheduled slice of a lane's funding and the conditions its release waits on.

    Attributes:
      seq: order within the lane (1 first).
      basis: ``grant_share`` (a fixed amount of the approved grant) or ``subsidy_earned``
        (whatever subsidy is earned and unpaid when released).
      amount_fen: the scheduled amount for ``grant_share``; the ceiling for ``subsidy_earned``.
      conditions: JSON list of stage events that must have passed.
    """

    __tablename__ = "tranches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_code: Mapped[str] = mapped_column(String(40), ForeignKey("projects.code"))
    lane_no: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(40))
    basis: Mapped[str] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    conditions: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (UniqueConstraint("project_code", "lane_no", "seq", name="uq_tranches_slot"),)


class ProjectEvent(Base):
    """The structured facts of a business event, tied to the journal entry that records it.

    Attributes:
      entry_id: the journal entry (it carries the date, voucher, actor and hash).
      kind: the event kind, equal to the entry's kind.
      lane_no: the lane concerned, if any.
      stage: for stage events: contract_signed, midterm, stage_assessment, acceptance,
        audit_report, first_bid_payment ...
      passed: for stage events, whether it passed.
      tranche_id: for releases, the tranche released.
      reference: an approval or document reference (extensions, terminations, write-offs).
      payload: JSON of the remaining facts (payment form, months extended, ...).
    """

    __tablename__ = "project_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("journal_entries.id", deferrable=True, initially="DEFERRED"), unique=True
    )
    project_code: Mapped[str] = mapped_column(String(40), index=True)
    value_date: Mapped[dt.date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(40))
    lane_no: Mapped[int | None] = mapped_column(Integer)
    stage: Mapped[str | None] = mapped_column(String(40))
    passed: Mapped[bool | None] = mapped_column()
    tranche_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("tranches.id"))
    reference: Mapped[str | None] = mapped_column(String(120))
    payload: Mapped[str | None] = mapped_column(Text)


# --- access: settings, maker-checker requests and enterprise logins ----------------------
#
# Created by migration 20261123_0003, which also installs their guard triggers; the services
# in ledger/approvals.py and ledger/roles.py read and write them.


class Setting(Base):
    """One value of a ledger setting; insert-only, the newest row of a name is current.

    Attributes:
      name / value: e.g. ``require_approval`` = ``on``.
      set_by / set_at: who changed it and when (the database's clock).
      entry_id: the fact journal entry of kind ``setting`` that records the change.
    """

    __tablename__ = "settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(80))
    set_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    entry_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("journal_entries.id", deferrable=True, initially="DEFERRED")
    )

    __table_args__ = (Index("ix_settings_name_id", "name", "id"),)


class Request(Base):
    """A money-out event waiting for (or given) an approver's decision.

    Attributes:
      kind: the journal entry kind it will post: release, write_off, termination, revocation.
      arguments: the service's keyword arguments as JSON; approval runs the service with them.
      status: pending, then approved or rejected once, by someone other than the requester.
      decision_entry_id: the entry the approval posted, or the rejection's fact entry.
      entry_id: the fact entry that recorded the request (its facts hold every column but
        the timestamps; see ``ledger.programme.fold``). None for a request recorded before
        schema 20261205_0006, which the upgrade's snapshot entry covers.
    """

    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    project_code: Mapped[str | None] = mapped_column(String(40))
    arguments: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(80))
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    status: Mapped[str] = mapped_column(String(10), server_default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decision_entry_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("journal_entries.id", deferrable=True, initially="DEFERRED"), index=True
    )
    entry_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("journal_entries.id", deferrable=True, initially="DEFERRED")
    )

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status_known"),
        Index("ix_requests_entry_id", "entry_id", unique=True),
        CheckConstraint("kind IN ('release', 'write_off', 'termination', 'revocation')", name="kind_money_out"),
        Index("ix_requests_status", "status"),
    )


class EnterpriseLogin(Base):
    """A PostgreSQL login of an enterprise and the party whose projects it may see (row-level security)."""

    __tablename__ = "enterprise_logins"

    login: Mapped[str] = mapped_column(String(63), primary_key=True)
    party_uscc: Mapped[str] = mapped_column(String(18), ForeignKey("parties.uscc"))
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- the portal's sign-in tables (not money facts: not in the journal, not folded) --------
#
# Who may sign in to the web portal (``jiebang serve``), the single-use invitations that set
# a password, the auditors' project assignments, and the append-only log of sign-ins and
# downloads. None of them moves money, so none is a journal fact or a projection; the log is
# append-only by trigger on both backends (migration 20261205_0010).


class PortalUser(Base):
    """One portal account: an enterprise (a party), an auditor (assigned projects) or the bureau."""

    __tablename__ = "portal_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(12))
    display_name: Mapped[str] = mapped_column(String(200))
    party_uscc: Mapped[str | None] = mapped_column(String(18), ForeignKey("parties.uscc"))
    db_role: Mapped[str | None] = mapped_column(String(63))
    password_hash: Mapped[str | None] = mapped_column(Text)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("kind IN ('enterprise', 'auditor', 'bureau')", name="kind_known"),)


class PortalAuditorProject(Base):
    """A project an auditor account may see."""

    __tablename__ = "portal_auditor_projects"

    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("portal_users.id"), primary_key=True)
    project_code: Mapped[str] = mapped_column(String(40), ForeignKey("projects.code"), primary_key=True)


class PortalInvite(Base):
    """A single-use sign-in link: only the SHA-256 of its token is kept."""

    __tablename__ = "portal_invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("portal_users.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class PortalLog(Base):
    """Append-only: every sign-in (and failed one), invitation, revocation and download."""

    __tablename__ = "portal_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    login: Mapped[str] = mapped_column(String(80))
    event: Mapped[str] = mapped_column(String(30))
    detail: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(64), default="")

    __table_args__ = (Index("ix_portal_log_login_at", "login", "at"), Index("ix_portal_log_address_at", "address", "at"))
