"""Balances read straight from the database: the one place their SQL and its reading live.

Why a module without SQLAlchemy: ``jiebang balances`` on a 300,000-transaction SQLite ledger
spent a third of its time importing SQLAlchemy. Here every read is a function over ``run``,
a plain ``run(sql, params) -> rows`` executor, so the CLI can drive it with the stdlib
``sqlite3`` (``sqlite_reader``) while the services in ``ledger.core.balances`` and
``ledger.programme`` drive the very same statements through their session
(``session_runner``). Statements are written with ``?`` placeholders; ``_runner`` is the one
place that adapts them to the driver.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

from ledger.core.errors import Refusal, SchemaNotAtHead

Run = Callable[..., Iterable[tuple]]

DEFAULT_DB = "jiebang.db"
BUSY_TIMEOUT_S = 30.0  # the same 30,000 ms busy timeout ledger.core.db gives every SQLite connection



# --- executors ----------------------------------------------------------------------------


def _runner(execute: Callable, paramstyle: str) -> Run:
    """Adapt ``?`` statements to the driver: psycopg wants ``%s``, sqlite3 wants ISO dates.

    No statement here holds a literal ``?`` or ``%``, so the swap is safe.

    SQLAlchemy stores a SQLite ``Date`` as ``YYYY-MM-DD`` text, so that is what a date
    parameter must be there; psycopg binds a ``date`` as a date.
    """
    if paramstyle == "qmark":
        def run(sql: str, params: tuple = ()) -> Iterable[tuple]:
            return execute(sql, tuple(p.isoformat() if isinstance(p, dt.date) else p for p in params))
    else:
        def run(sql: str, params: tuple = ()) -> Iterable[tuple]:
            return execute(sql.replace("?", "%s"), tuple(params))
    return run


def session_runner(session) -> Run:
    """The executor for a SQLAlchemy session: raw driver SQL on the session's own transaction.

    Driver SQL skips the ORM's autoflush, so pending rows are flushed here as
    ``session.execute`` would, and a service reads what it has just added.
    """
    if session.autoflush:
        session.flush()
    connection = session.connection()
    return _runner(connection.exec_driver_sql, connection.dialect.paramstyle)


def normalize_url(db: str | None) -> str:
    """Turn ``--db`` into a SQLAlchemy URL: a bare path means a SQLite file."""
    db = db or os.environ.get("JIEBANG_DB") or DEFAULT_DB
    if "://" in db:
        scheme = db.split("://", 1)[0].lower()
        if scheme in ("postgresql", "postgres"):
            # psycopg 3 is the driver we ship; name it so users can paste libpq URLs.
            db = "postgresql+psycopg://" + db.split("://", 1)[1]
        elif scheme.split("+", 1)[0] not in ("sqlite", "postgresql"):
            raise Refusal(
                "database_url_must_be_supported",
                f"--db {scheme}://… is not a database jiebang can use; give a SQLite file path (jiebang.db or "
                "sqlite:///PATH) or a PostgreSQL URL (postgresql://USER@HOST:PORT/DATABASE).",
            )
        return db
    return f"sqlite:///{db}"


def init_command(url: str) -> str:
    """The `jiebang init` that creates or upgrades the ledger at ``url``, as it can be pasted
    (the --db option goes before the verb); a password in a URL is not repeated."""
    import shlex

    path = sqlite_file(url)
    if path is None and url.startswith("sqlite+") and ":///" in url and "?" not in url:
        path = url.split(":///", 1)[1]  # sqlite+pysqlite:///PATH
    if path == DEFAULT_DB and not os.environ.get("JIEBANG_DB"):
        return "jiebang init"
    if path is not None:
        return f"jiebang --db {shlex.quote(path)} init"
    target = url.replace("postgresql+psycopg://", "postgresql://", 1)
    if "@" in target.split("://", 1)[-1].split("/", 1)[0] and ":" in target.split("://", 1)[-1].split("@", 1)[0]:
        return "jiebang init (with --db or JIEBANG_DB naming this database)"
    return f"jiebang --db {shlex.quote(target)} init"


def storage_read_only(path: Path) -> bool:
    """Whether a ledger file cannot be written where it lies: a read-only file system, or the
    file or its folder without write permission for this user (root has it regardless)."""
    folder = path.absolute().parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        pass
    return not os.access(path, os.W_OK) or not os.access(folder, os.W_OK)


def read_only_uri(path: Path) -> str:
    """The SQLite URI that reads a ledger on read-only storage: ``immutable=1`` (SQLite then
    writes no -wal or -shm file and takes no lock), unless a -wal file with content lies beside
    it, whose pages only a normal read-only open (``mode=ro``) sees."""
    wal = Path(f"{path}-wal")
    fresh = not wal.exists() or wal.stat().st_size == 0
    return path.absolute().as_uri() + ("?immutable=1" if fresh else "?mode=ro")


def pg_problem(detail: str, url: str) -> str | None:
    """The fix for a PostgreSQL connection error a user can act on, else None."""
    import re
    import shlex
    from urllib.parse import urlsplit

    missing = re.search(r'database "([^"]+)" does not exist', detail)
    if missing is None:
        return None
    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    options = [f"-h {shlex.quote(parts.hostname)}"] if parts.hostname else []
    options += [f"-p {parts.port}"] if parts.port else []
    options += [f"-U {shlex.quote(parts.username)}"] if parts.username else []
    command = " ".join(["createdb", *options, shlex.quote(missing.group(1))])
    return f"PostgreSQL has no database {missing.group(1)}; create it with `{command}`, then run `{init_command(url)}`"


PSYCOPG_MISSING = ("the PostgreSQL driver psycopg is not installed; install it with "
                   "`python -m pip install \"psycopg[binary]\"` (or `pip install \"jiebang-ledger[postgres]\"`)")


def sqlite_file(url: str) -> str | None:
    """The file behind a plain ``sqlite:///PATH`` URL; None where SQLAlchemy must interpret it.

    URLs with a query string, ``:memory:`` or no path go the SQLAlchemy way, so this never
    reads a URL differently from ``ledger.core.db.sqlite_path``.
    """
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///")
    return None if "?" in path or path in ("", ":memory:") else path


@contextlib.contextmanager
def sqlite_reader(path: str, *, head: str | None = None) -> Iterator[Run]:
    """A read-only stdlib connection to a ledger file at the migrations' head, in one snapshot.

    Refuses as ``ledger.core.db.make_engine`` and ``require_head`` do, in the same words.
    """
    require_sqlite_file(Path(path))
    uri = read_only_uri(Path(path)) if storage_read_only(Path(path)) else Path(path).absolute().as_uri() + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise _refused(exc, path) from None
    try:
        connection.execute("BEGIN")  # one snapshot for every statement, as a session has
    except sqlite3.Error as exc:
        connection.close()
        raise _refused(exc, path) from None
    with _reading(connection, "qmark", _sqlite_revision, sqlite3.Error, head, path, f"sqlite:///{path}") as run:
        yield run


@contextlib.contextmanager
def _reading(connection, paramstyle: str, revision: Callable[[Run], str | None], errors, head: str | None,
             path: str | None = None, url: str | None = None) -> Iterator[Run]:
    """A read on an open driver connection: the schema checked at head, a driver error as the
    CLI's one line, the connection closed after."""
    try:
        run = _runner(connection.execute, paramstyle)
        if head is not None:
            require_revision_at_head(revision(run), head, url)
        yield run
    except errors as exc:
        raise _refused(exc, path) from None
    finally:
        connection.close()


def postgres_conninfo(url: str) -> str | None:
    """The libpq URI behind a ``postgresql+psycopg://`` URL (the one the CLI makes), or None."""
    prefix = "postgresql+psycopg://"
    if not url.startswith(prefix):
        return None
    # SQLAlchemy writes a space in a query value as "+" (form encoding); libpq's URIs decode
    # percent escapes only, so "-csearch_path=x -cstatement_timeout=5s" must travel as %20.
    base, _, query = url.removeprefix(prefix).partition("?")
    if query:
        base += "?" + urlencode(parse_qsl(query, keep_blank_values=True), quote_via=quote)
    return "postgresql://" + base


@contextlib.contextmanager
def postgres_reader(conninfo: str, *, head: str | None = None) -> Iterator[Run]:
    """A read-only psycopg connection at the migrations' head, REPEATABLE READ (one snapshot).

    psycopg directly, for the same reason as ``sqlite_reader``: importing SQLAlchemy costs
    more than the read. No prepared statements, as ``ledger.core.db`` configures its engines.
    """
    try:
        import psycopg
    except ImportError:
        raise Refusal("database_driver_must_be_installed", PSYCOPG_MISSING + ".") from None

    try:
        connection = psycopg.connect(conninfo, prepare_threshold=None)
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        fix = pg_problem(detail, conninfo)
        if fix is not None:
            raise Refusal("database_must_exist", f"{fix}.") from None
        raise Refusal("database_must_be_reachable", f"cannot read the ledger database: {detail}") from None
    connection.read_only = True
    connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    with _reading(connection, "format", _postgres_revision, psycopg.Error, head, None, conninfo) as run:
        yield run


def _postgres_revision(run: Run) -> str | None:
    import psycopg

    try:
        row = next(iter(run("SELECT version_num FROM alembic_version")), None)
    except psycopg.errors.UndefinedTable:
        return None
    return None if row is None else row[0]


def require_sqlite_file(path: Path) -> None:
    """Refuse a ledger file that is missing, unreadable or not SQLite (one message for both read paths)."""
    if not path.absolute().parent.is_dir():
        raise folder_missing(path)
    if not path.exists():
        raise Refusal(
            "database_must_exist",
            f"no ledger at {path}; create it with `{init_command(f'sqlite:///{path}')}` or point --db at an existing one.",
        )
    if not os.access(path, os.R_OK):
        raise Refusal("database_must_be_readable", f"ledger file {path} is not readable; check its permissions.")
    if not is_sqlite_file(path):
        raise Refusal("database_must_be_sqlite", f"{path} is not a SQLite database; point --db at a jiebang ledger.")


def is_sqlite_file(path: Path, *, empty: bool = True) -> bool:
    """Whether ``path`` is a SQLite database (an empty file counts when ``empty``), asked of
    SQLite itself.

    Never by opening the file in Python: closing any descriptor of a file drops every POSIX
    lock this process holds on it, the SQLite connections' own included (SQLite's unix VFS
    knows this and keeps its descriptors open while a connection of the process holds a
    lock). Another process could then take itself for the last connection, checkpoint and
    delete the WAL under ours: a long-lived server stopped seeing new rows, and a process
    that read the header between writes saw "database disk image is malformed".
    """
    if path.stat().st_size == 0:
        return empty
    connection = sqlite3.connect("file:" + quote(str(path.absolute())) + "?mode=ro", uri=True)
    try:
        connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        # SQLite recognised the file unless it says otherwise; other trouble is named where it is used.
        return "not a database" not in str(exc) and "file is encrypted" not in str(exc)
    finally:
        connection.close()
    return True


def folder_missing(path: Path) -> Refusal:
    folder = path.absolute().parent
    return Refusal("database_folder_must_exist", f"folder {folder} does not exist; create it first or give --db a path in an existing folder.")


def _sqlite_revision(run: Run) -> str | None:
    """The schema revision, or None where the file has no jiebang schema at all."""
    try:
        row = next(iter(run("SELECT version_num FROM alembic_version")), None)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        if storage_hint(str(exc)):
            raise  # the reader names the file and the fix
        raise Refusal("database_must_be_reachable", f"cannot read the ledger database: {exc}") from None
    return None if row is None else row[0]


def require_revision_at_head(revision: str | None, head: str, url: str | None = None) -> None:
    """Refuse a database whose schema revision is not ``head`` (the caller's migrations');
    the hint is the `jiebang init` for ``url`` (the default ledger when None)."""
    if revision != head:
        where = "has no jiebang schema" if revision is None else f"is at schema {revision}, not {head}"
        command = init_command(url) if url else "jiebang init"
        raise SchemaNotAtHead(
            "database_must_be_at_head", f"the ledger database {where}; run `{command}` to create or upgrade it."
        )


def _refused(exc: Exception, path: str | None = None) -> Refusal:
    """The CLI's one line for a database error, as it words SQLAlchemy's; a full disk or a file
    that cannot be written beside the ledger names the file and the fix."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if path is not None and (hint := storage_hint(detail)):
        return Refusal("database_must_accept_reads", f"cannot read the ledger {path}: {detail}; {hint}; nothing was written.")
    return Refusal("database_must_accept_reads", f"the database refused the operation: {detail}; nothing was written.")


def server_storage_hint(detail: str) -> str | None:
    """The fix for PostgreSQL's storage conditions (server disk full, read-only server), else None."""
    lowered = detail.lower()
    if "no space left on device" in lowered or "could not extend file" in lowered or "disk full" in lowered:
        return ("the PostgreSQL server is out of disk space: have its administrator free space on the "
                "database server, then retry")
    if "read-only transaction" in lowered or "recovery is in progress" in lowered:
        return ("the PostgreSQL server accepts reads only (a standby, or default_transaction_read_only is on): "
                "point --db at the primary server to write")
    return None


def storage_hint(detail: str) -> str | None:
    """The fix for SQLite's storage errors (full disk, read-only file or folder), else None."""
    lowered = detail.lower()
    if "disk is full" in lowered or "disk i/o error" in lowered:
        return "the disk holding it is full or failing: free space there (df -h shows it) and retry"
    if "readonly" in lowered or "read-only" in lowered or "unable to open database file" in lowered:
        return ("the file or its folder cannot be written (SQLite writes its -wal and -shm files beside the ledger, "
                "even to read): check the permissions, or copy the ledger to a writable folder")
    return None


# --- account balances ---------------------------------------------------------------------


def account_rows(
    run: Run,
    *,
    as_of: dt.date | None = None,
    book: str | None = None,
    prefix: str | None = None,
    project_code: str | None = None,
    lane: str | None = None,
    include_zero: bool = False,
) -> list[tuple[str, str, str | None, str | None, int]]:
    """(account, book, project, lane, balance in fen) of every matching account, by book and name.

    One GROUP BY driven from the accounts: an account filter then reads only its accounts'
    postings through ix_postings_account_date. Summing the postings first and joining the
    accounts after is no faster for the whole trial balance on SQLite (300,000 transactions),
    and 20 times slower for one project or prefix, so this one shape serves every filter.
    """
    where, params = [], [as_of] if as_of else []
    for clause, value in (("a.book = ?", book), ("a.project_code = ?", project_code), ("a.lane = ?", lane)):
        if value:
            where.append(clause)
            params.append(value)
    if prefix:
        where.append("(a.name = ? OR a.name LIKE ? ESCAPE '\\')")
        params += [prefix, _like_prefix(prefix)]
    total = "COALESCE(SUM(p.amount_fen), 0)"
    sql = (
        f"SELECT a.name, a.book, a.project_code, a.lane, {total} FROM accounts a"
        " LEFT OUTER JOIN postings p ON p.account_id = a.id" + (" AND p.value_date <= ?" if as_of else "")
        + (" WHERE " + " AND ".join(where) if where else "")
        + " GROUP BY a.id"  # the key alone: the other columns depend on it (PostgreSQL agrees)
        + ("" if include_zero else f" HAVING {total} <> 0")
        + " ORDER BY a.book, a.name"
    )
    return [(name, bk, code, ln, int(fen)) for name, bk, code, ln, fen in run(sql, tuple(params))]


def _like_prefix(prefix: str) -> str:
    escaped = prefix.rstrip(":").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + ":%"
