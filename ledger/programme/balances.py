"""One project's balances contract through the service session."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ledger.core.reads import session_runner
from ledger.programme import reads

# --- the balances contract --------------------------------------------------------------

# The keys, the SQL and its reading live in ledger.reads, which the CLI also runs without
# SQLAlchemy; this module keeps the names its callers import.
BALANCE_KEYS = reads.BALANCE_KEYS


def project_balances(session: Session, code: str, *, as_of: dt.date | None = None, lane: str | None = None) -> dict[str, int]:
    """The project's (or one lane's) balances in fen, all from postings, in one grouped query.

    Project-level quantities (self-funding) are the project's; with a lane they are 0.
    """
    return reads.project_balances(session_runner(session), code, as_of=as_of, lane=lane)
