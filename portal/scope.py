"""Every request's reads go through here: one session per request, scoped to the viewer.

* PostgreSQL: the request's read transaction runs ``SET LOCAL ROLE`` to the viewer's database
  role first: an enterprise's login (row-level security from ``jiebang db grant`` limits every
  table to its projects), ``jiebang_portal_auditor`` for an auditor (its assigned projects,
  named by the account's number in ``jiebang.portal_auditor``; migration 20261206_0012),
  ``jiebang_auditor`` for the bureau (read-only, every row). A query the portal forgot to
  filter still returns only what that role may see. ``whole_ledger`` switches to
  ``jiebang_auditor`` for the reads that verify the chain.
* Both backends: ``visible_projects`` is the one function that says which projects a viewer
  may open; every route asks ``require_project`` / ``require_lane`` and answers 404 for the
  rest, on SQLite (where it is the only guard) and on PostgreSQL alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import or_, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ledger.core.db import read_only
from ledger.core.models import ChainHead
from ledger.programme.models import Lane, Project
from portal.store import Viewer

AUDITOR_ROLE = "jiebang_auditor"
PORTAL_AUDITOR_ROLE = "jiebang_portal_auditor"
WHOLE_LEDGER = "jiebang_portal_whole_ledger"
CHAIN_HEAD = "jiebang_portal_chain_head"


class NotFound(Exception):
    """A page that does not exist for this viewer (another party's project answers the same)."""


def db_role(viewer: Viewer) -> str:
    """The database role of a viewer's requests: an enterprise's own login; for a portal
    auditor, ``jiebang_portal_auditor`` (its policies read the account's assigned projects);
    for the bureau, ``jiebang_auditor`` (every row, read-only)."""
    if viewer.kind == "enterprise":
        if not viewer.db_role:
            raise NotFound("enterprise without a database login")
        return viewer.db_role
    if viewer.kind == "auditor":
        return PORTAL_AUDITOR_ROLE
    return AUDITOR_ROLE


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def scoped_session(engine: Engine, viewer: Viewer) -> Iterator[Session]:
    """A read-only session in one transaction, under the viewer's database role on PostgreSQL.

    The chain head of the transaction's snapshot is read first, with the portal's own login
    (an enterprise's role may not read it), and kept in ``session.info[CHAIN_HEAD]``: what is built
    in this session is remembered under that head (``portal.cache``)."""
    with Session(read_only(engine)) as session, session.begin():
        session.info[CHAIN_HEAD] = tuple(session.execute(
            select(ChainHead.last_entry_id, ChainHead.last_hash).where(ChainHead.id == 1)).one())
        if engine.dialect.name == "postgresql":
            if viewer.kind == "auditor":
                session.execute(text("SELECT pg_catalog.set_config('jiebang.portal_auditor', :id, true)"),
                                {"id": str(viewer.id)})
            role = _ident(db_role(viewer))
            session.execute(text(f"SET LOCAL ROLE {role}"))

            @contextlib.contextmanager
            def whole() -> Iterator[None]:
                session.execute(text(f"SET LOCAL ROLE {AUDITOR_ROLE}"))
                try:
                    yield
                finally:
                    session.execute(text(f"SET LOCAL ROLE {role}"))

            session.info[WHOLE_LEDGER] = whole
        yield session


def whole_ledger(session: Session):
    """A context for the reads that must see the whole ledger: the chain verification and the
    counts of the audit pack's integrity section. On PostgreSQL it switches the request's
    transaction (same snapshot) to ``jiebang_auditor`` and back; what is read there is shown
    only as the verification's result, never as another project's rows."""
    return session.info.get(WHOLE_LEDGER, contextlib.nullcontext)()


def visible_projects(session: Session, viewer: Viewer) -> list[str]:
    """The codes of the projects this viewer may open, sorted. The one scoping function."""
    if viewer.kind == "bureau":
        return list(session.scalars(select(Project.code).order_by(Project.code)))
    if viewer.kind == "auditor":
        return list(session.scalars(select(Project.code).where(Project.code.in_(viewer.projects)).order_by(Project.code)))
    party = viewer.party_uscc
    solver = select(Lane.project_code).where(Lane.solver_uscc == party)
    return list(session.scalars(
        select(Project.code).where(or_(Project.demand_uscc == party, Project.code.in_(solver))).order_by(Project.code)))


def require_project(session: Session, viewer: Viewer, code: str) -> str:
    if code not in visible_projects(session, viewer):
        raise NotFound(code)
    return code


def visible_lanes(session: Session, viewer: Viewer, code: str) -> list[int]:
    """The lanes of a visible project this viewer may open: a solver only its own."""
    require_project(session, viewer, code)
    query = select(Lane.lane_no).where(Lane.project_code == code).order_by(Lane.lane_no)
    if viewer.kind == "enterprise":
        demand = session.scalar(select(Project.demand_uscc).where(Project.code == code))
        if demand != viewer.party_uscc:
            query = query.where(Lane.solver_uscc == viewer.party_uscc)
    return list(session.scalars(query))
