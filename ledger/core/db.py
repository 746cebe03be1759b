"""Opening a ledger database: engines for SQLite files and PostgreSQL URLs, and the head check."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session

from ledger.core.errors import Refusal

# Resolving --db needs no SQLAlchemy, so it lives with the CLI's SQLite read path.
from ledger.core.reads import (  # noqa: F401
    DEFAULT_DB,
    PSYCOPG_MISSING,
    folder_missing,
    normalize_url,
    pg_problem,
    read_only_uri,
    require_revision_at_head,
    require_sqlite_file,
    storage_read_only,
)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def make_engine(url: str, *, must_exist: bool = True) -> Engine:
    """Create an engine; for a SQLite file that must exist, refuse a missing or unreadable one.

    A ledger file on read-only storage (a read-only file system, or the file or its folder
    without write permission) is opened read-only (``reads.read_only_uri``): every read works,
    and a write session is refused in one line (``write_session``).
    """
    path = sqlite_path(url)
    if path is not None and must_exist:
        require_sqlite_file(path)
    elif path is not None and not path.absolute().parent.is_dir():
        raise folder_missing(path)
    elif path is not None and path.exists() and storage_read_only(path):
        raise storage_refusal(str(path))  # `jiebang init` on a ledger that can only be read
    read_only_storage = path is not None and must_exist and storage_read_only(path)
    try:
        if read_only_storage:
            uri = read_only_uri(path)
            engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))
        else:
            engine = create_engine(url, **_engine_options(url))
    except ImportError as exc:
        if "psycopg" in str(exc):
            raise Refusal("database_driver_must_be_installed", PSYCOPG_MISSING + ".") from None
        raise Refusal("database_url_must_be_valid", f"cannot open database URL {display_url(url)!r}: {exc}") from None
    except ArgumentError as exc:
        raise Refusal("database_url_must_be_valid", f"cannot open database URL {display_url(url)!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, read_only_storage=read_only_storage)
        _name_the_file_on_storage_errors(engine, path)
    else:
        _name_the_server_on_storage_errors(engine)
    _refuse_nul_parameters(engine)
    if read_only_storage:
        engine = engine.execution_options(jiebang_storage_read_only=str(path))
    return engine


def storage_refusal(path: str) -> Refusal:
    return Refusal(
        "database_storage_must_be_writable",
        f"the ledger {path} is on read-only storage (the file or its folder cannot be written): it can be read, "
        "not written; nothing was written. Copy it to a writable folder to record events.",
    )


def _refuse_nul_parameters(engine: Engine) -> None:
    """No text parameter holds a NUL character, on either backend: SQLite stored one and
    PostgreSQL refused it with a driver error. The journal checks every field it writes; this
    catches the rest at the driver (a voucher looked up by a service before its entry is built,
    a setting, a request) in the same one line. Single statements only: the bulk paths'
    executemany rows were checked as columns before they were built."""
    from ledger.core.limits import nul_refusal

    @event.listens_for(engine, "before_cursor_execute")
    def _no_nul(_conn, _cursor, _statement, parameters, _context, executemany):
        if executemany or not parameters:
            return
        values = parameters.values() if isinstance(parameters, dict) else parameters
        if any(type(v) is str and "\x00" in v for v in values):
            raise nul_refusal("a text value given (a voucher, memo, name or reference)")


def _name_the_file_on_storage_errors(engine: Engine, path: Path | None) -> None:
    """A full disk or a read-only file or folder under a SQLite ledger: one line naming the file
    and the fix, instead of the driver's bare "disk I/O error"."""
    from ledger.core.reads import storage_hint

    @event.listens_for(engine, "handle_error")
    def _on_error(context):  # pragma: no cover - exercised by tests/test_hostile_files.py
        original = context.original_exception
        detail = (str(original).strip().splitlines() or [type(original).__name__])[0]
        hint = storage_hint(detail)
        if hint is not None and path is not None:
            raise Refusal("database_must_be_writable", f"cannot use the ledger {path}: {detail}; {hint}; nothing was written.")


def _name_the_server_on_storage_errors(engine: Engine) -> None:
    """A PostgreSQL server out of disk space or accepting reads only: one line naming the server
    (never its password) and the fix, instead of the driver's message."""
    from ledger.core.reads import server_storage_hint

    @event.listens_for(engine, "handle_error")
    def _on_error(context):
        original = context.original_exception
        detail = (str(original).strip().splitlines() or [type(original).__name__])[0]
        hint = server_storage_hint(detail)
        if hint is not None:
            server = engine.url.set(password=None).render_as_string(hide_password=True)
            raise Refusal("database_must_be_writable", f"cannot use the ledger {server}: {detail}; {hint}; nothing was written.")


def _engine_options(url: str) -> dict:
    """psycopg prepares a statement after its fifth run, and PostgreSQL may then switch to a
    generic plan: for the 500-name ``IN`` look-ups of accounts and vouchers that plan scanned
    every account per name (85 ms a query, measured with auto_explain; a 300,000-entry load
    47.6 s -> 21.3 s without it). Planning each statement for its parameters is cheaper."""
    if make_url(url).get_backend_name() == "postgresql":
        return {"connect_args": {"prepare_threshold": None}}
    return {}


def _configure_sqlite(engine: Engine, *, read_only_storage: bool = False) -> None:
    """Foreign keys on, WAL, a busy timeout, and BEGIN IMMEDIATE so writers serialise up front.

    pysqlite's own transaction handling defers BEGIN until the first write; we take control
    of it (the SQLAlchemy documented recipe) so a transaction that reads the chain head and
    then writes cannot interleave with another writer.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every test
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        if not read_only_storage:  # nothing may be written beside a ledger on read-only storage
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # pragma: no cover - exercised by every test
        # Read-only work (reports, verify) takes no write lock, so it never blocks officers.
        read_only = connection.get_execution_options().get("jiebang_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def read_only(engine: Engine) -> Engine:
    """The same engine for reading: SQLite transactions start without a write lock (a read
    transaction there is one snapshot already); PostgreSQL ones are REPEATABLE READ, so a
    report or ``verify`` sees one snapshot of the ledger across all its statements, not the
    commits that land while it reads."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(jiebang_read_only=True, isolation_level="REPEATABLE READ")
    return engine.execution_options(jiebang_read_only=True)


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        message = " ".join((str(exc.orig) if exc.orig is not None else str(exc)).split())
        # Only a missing alembic_version table means "no schema"; a missing PostgreSQL
        # database also "does not exist", but `jiebang init` cannot create that.
        if "no such table" in message or ("alembic_version" in message and "does not exist" in message):
            return None
        fix = pg_problem(message, engine.url.render_as_string(hide_password=False))
        if fix is not None:
            raise Refusal("database_must_exist", f"{fix}.") from None
        raise Refusal("database_must_be_reachable", f"cannot read the ledger database: {message}") from None
    except Exception as exc:  # psycopg raises ProgrammingError for a missing table
        if "alembic_version" in str(exc):
            return None
        raise


def require_head(engine: Engine, head: str) -> None:
    """Refuse politely unless the schema is at the migrations' head."""
    where = engine.get_execution_options().get("jiebang_storage_read_only")
    url = f"sqlite:///{where}" if where else engine.url.render_as_string(hide_password=False)
    require_revision_at_head(current_revision(engine), head, url)


# --- sessions and URLs for the command line (cli.py names no SQLAlchemy) ---------------------


@contextlib.contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session in one transaction that commits when the block ends without error."""
    if (where := engine.get_execution_options().get("jiebang_storage_read_only")) is not None:
        raise storage_refusal(where)
    with Session(engine) as session, session.begin():
        yield session


@contextlib.contextmanager
def trial_session(engine: Engine) -> Iterator[Session]:
    """A session in one transaction that is always rolled back: a dry run writes nothing.

    Everything runs as for real (locks, rules, triggers, the posting itself), so the entry it
    would post can be read back before the rollback.
    """
    if (where := engine.get_execution_options().get("jiebang_storage_read_only")) is not None:
        raise storage_refusal(where)
    with Session(engine) as session:
        transaction = session.begin()
        try:
            yield session
        finally:
            transaction.rollback()


@contextlib.contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session in one read-only transaction (``read_only``): one snapshot, no write lock."""
    with Session(read_only(engine)) as session, session.begin():
        yield session


def open_session(engine: Engine) -> Session:
    """A plain session (it begins on first use); the caller commits or rolls back."""
    return Session(engine)


def display_url(url: str) -> str:
    """The URL as a user may see it: any password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def backend_name(url: str) -> str:
    """``sqlite`` or ``postgresql`` (or another dialect SQLAlchemy knows)."""
    return make_url(url).get_backend_name()
