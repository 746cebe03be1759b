"""Backup and restore of a SQLite ledger with SQLite's online backup API.

``backup`` copies a live ledger into a single self-contained file: the copy is taken in one
step inside one read transaction, so it is a consistent snapshot even while officers keep
writing (WAL lets them). The copy is written beside the target as ``FILE.partial``, checked
(schema at head, ``verify`` passes) and only then renamed onto ``FILE``: a crash leaves either
no backup or a whole one.

``restore`` checks a backup the same way before it touches anything, then writes it into a
new ledger file (renamed into place) or, with ``force``, into an existing one through the
backup API, which replaces its pages in one transaction under SQLite's own locks.

PostgreSQL has its own tools (``pg_dump -Fc`` / ``pg_restore``); both verbs refuse there in
one line that says so (docs/operations.md has the commands).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from ledger.core.db import sqlite_path
from ledger.core.errors import Refusal
from ledger.core.reads import is_sqlite_file

SQLITE_HEADER = b"SQLite format 3\x00"
PG_BACKUP_HINT = (
    "back up a PostgreSQL ledger with pg_dump: `pg_dump -Fc -f FILE DBURL` (add -n SCHEMA for one schema), "
    "and restore it with `pg_restore -d NEWDB FILE`; see docs/operations.md"
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a backup or restore copied: the file, the entry count and the chain head it verified."""

    path: Path
    entries: int
    head_id: int
    head_hash: str
    safety_copy: Path | None = None


def _sqlite_file(url: str) -> Path:
    """The ledger file a backup copies; the codes are literal so the refusal registry sees them."""
    path = sqlite_path(url)
    if path is None:
        if url.startswith("sqlite"):
            raise Refusal("backup_needs_a_file", f"jiebang backup works on a SQLite ledger file, not {url!r}.")
        raise Refusal("backup_is_for_sqlite", f"jiebang backup copies SQLite ledgers; {PG_BACKUP_HINT}.")
    return path


def _looks_like_sqlite(path: Path) -> bool:
    """A non-empty SQLite file (asked of SQLite: reading it in Python would drop this process's locks)."""
    try:
        return is_sqlite_file(path, empty=False)
    except OSError:
        return False


def _check_copy(path: Path, role: str, check, head: str) -> Snapshot:
    """Schema at head and ``check`` (a verify) passing on a standalone SQLite file, read-only."""

    if not _looks_like_sqlite(path):
        raise Refusal("backup_must_be_a_ledger", f"{role} {path} is not a SQLite database; give a file written by `jiebang backup`.")
    engine = create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            try:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except Exception:  # noqa: BLE001 - any failure here means "not a jiebang ledger"
                revision = None
        if revision != head:
            if revision is None:
                raise Refusal("backup_must_be_a_ledger", f"{role} {path} has no jiebang schema; give a file written by `jiebang backup`.")
            raise Refusal(
                "backup_must_be_at_this_schema",
                f"{role} {path} is at schema {revision}, not {head}; if it comes from an older version, upgrade a copy "
                f"of it with `jiebang --db COPY.db init` (cp {path} COPY.db first) and restore COPY.db.",
            )
        with Session(engine) as session:
            result = check(session)
    except sqlite3.DatabaseError as exc:
        raise Refusal("backup_must_be_a_ledger", f"{role} {path} cannot be read as a ledger: {exc}.") from None
    finally:
        engine.dispose()
    if not result.ok:
        raise Refusal(
            "backup_must_verify",
            f"{role} {path} does not verify: at entry {result.first_bad_entry}: {result.problem}.",
        )
    return Snapshot(path, result.entries, result.head_id, result.head_hash)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy(source: Path, target: Path) -> None:
    """Copy ``source`` into a new self-contained file ``target`` in one backup step (a ledger on
    read-only storage is opened read-only, as every read opens it)."""
    from ledger.core.reads import read_only_uri, storage_read_only

    src = sqlite3.connect(read_only_uri(source), uri=True, timeout=30, isolation_level=None) if storage_read_only(source) else _connect(source)
    dst = sqlite3.connect(str(target), isolation_level=None)
    try:
        src.backup(dst)  # pages=-1: everything in one step, under one read transaction
        dst.execute("PRAGMA journal_mode = DELETE")  # one file, no -wal beside it
    finally:
        dst.close()
        src.close()
    _fsync(target)


def backup(url: str, destination: Path, *, head: str, force: bool = False, check=None) -> Snapshot:
    """Write a consistent, verified copy of the SQLite ledger at ``url`` to ``destination``."""
    from ledger.core.db import make_engine, require_head

    source = _sqlite_file(url)
    engine = make_engine(url)  # refuses a missing or non-SQLite file in one line
    try:
        require_head(engine, head)
    finally:
        engine.dispose()
    if destination.exists():
        if _same_file(source, destination):
            raise Refusal("backup_must_be_another_file", f"{destination} is the ledger itself; write the backup to another file.")
        if not force:
            raise Refusal("backup_must_not_overwrite", f"{destination} exists; choose another name or add --force to replace it.")
    partial = destination.with_name(destination.name + ".partial")
    try:
        _unlink_quietly(partial)
        _copy(source, partial)
        snapshot = _check_copy(partial, "the backup copy", check or _verify, head)
        os.replace(partial, destination)
    except OSError as exc:
        _unlink_quietly(partial)
        raise Refusal("backup_must_be_writable", f"cannot write {destination}: {exc.strerror or exc}; nothing was kept.") from None
    except sqlite3.Error as exc:  # a full disk or a read-only folder shows up as the driver's error
        _unlink_quietly(partial)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Refusal(
            "backup_must_be_writable",
            f"cannot write the backup {destination}: {detail}; free space on its disk or choose a writable folder; nothing was kept.",
        ) from None
    except BaseException:
        _unlink_quietly(partial)
        raise
    _fsync(destination.parent)
    return Snapshot(destination, snapshot.entries, snapshot.head_id, snapshot.head_hash)


def restore(
    source: Path, url: str, *, head: str, force: bool = False, check=None, discard_newer: int | None = None
) -> Snapshot:
    """Restore the backup ``source`` into the SQLite ledger file named by ``url``.

    Over an existing ledger (``force``) nothing is lost silently: the entries of the target
    that the backup does not hold (it is behind, or its chain went another way) are counted,
    and the restore is refused unless ``discard_newer`` is exactly that count; and before the
    target is replaced, a safety copy of it is written beside it (``Snapshot.safety_copy``).
    """
    from ledger.core.db import make_engine

    target = sqlite_path(url)
    if target is None:
        if url.startswith("sqlite"):
            raise Refusal("restore_needs_a_file", f"jiebang restore writes a SQLite ledger file, not {url!r}.")
        raise Refusal(
            "restore_is_for_sqlite",
            "jiebang restore writes SQLite ledgers; restore a PostgreSQL dump with `pg_restore -d NEWDB FILE` "
            "(written by `pg_dump -Fc`); see docs/operations.md.",
        )
    if not source.exists():
        raise Refusal("backup_must_exist", f"backup {source} does not exist; check the path.")
    if target.exists() and _same_file(source, target):
        raise Refusal("restore_must_be_another_file", f"{source} is the --db ledger itself; restore into a new --db path.")
    snapshot = _check_copy(source, "backup", check or _verify, head)
    exists = target.exists() and target.stat().st_size > 0
    if exists and not force and discard_newer is None:
        raise Refusal(
            "restore_must_not_overwrite",
            f"{target} already exists; restore into a new --db path, or add --force to replace that ledger with the backup.",
        )
    safety = None
    try:
        if exists:
            _refuse_losing_entries(source, target, snapshot, discard_newer)
            safety = _safety_copy(target)
            src = _connect(source)
            dst = _connect(target)
            try:
                src.backup(dst)  # replaces the target's pages in one transaction, under its locks
            finally:
                dst.close()
                src.close()
        else:
            partial = target.with_name(target.name + ".partial")
            partial.unlink(missing_ok=True)
            for stale in (Path(f"{target}-wal"), Path(f"{target}-shm"), Path(f"{target}-journal")):
                stale.unlink(missing_ok=True)
            try:
                _copy(source, partial)
                os.replace(partial, target)
            finally:
                partial.unlink(missing_ok=True)
            _fsync(target.parent)
    except OSError as exc:
        raise Refusal("restore_must_be_writable", f"cannot write {target}: {exc.strerror or exc}.") from None
    except sqlite3.Error as exc:
        raise Refusal("restore_must_succeed", f"cannot restore into {target}: {exc}; the target is unchanged.") from None
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            result = (check or _verify)(session)
    finally:
        engine.dispose()
    if not result.ok or result.head_hash != snapshot.head_hash:
        raise Refusal("restore_must_verify", f"the restored ledger {target} does not verify at entry {result.first_bad_entry}: {result.problem}.")
    return Snapshot(target, result.entries, result.head_id, result.head_hash, safety)


def _chain(path: Path) -> sqlite3.Connection | None:
    """A read-only connection to a ledger file that has a journal, or None (nothing to lose)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        conn.execute("SELECT id, hash, value_date FROM journal_entries LIMIT 1").fetchall()
    except sqlite3.Error:
        conn.close()
        return None
    return conn


def _hash_at(conn: sqlite3.Connection, entry_id: int) -> str | None:
    row = conn.execute("SELECT hash FROM journal_entries WHERE id = ?", (entry_id,)).fetchone()
    return None if row is None else row[0]


def _refuse_losing_entries(source: Path, target: Path, snapshot: Snapshot, discard_newer: int | None) -> None:
    """Refuse unless every entry of ``target`` is in the backup, or ``discard_newer`` is exactly
    the number that would go.

    The chains share entries 1..k, k the largest id with the same hash in both (a chain hash
    covers every entry before it, so the ids with equal hashes are a prefix: binary search).
    The target's entries after k are lost: newer ones when the backup is behind (k is the
    backup's head), other ones when the two chains went different ways.
    """
    theirs = _chain(target)
    if theirs is None:
        return
    ours = _chain(source)
    try:
        target_head = theirs.execute("SELECT COALESCE(MAX(id), 0) FROM journal_entries").fetchone()[0]
        low, high = 0, min(target_head, snapshot.head_id)
        while low < high:  # the largest k in low..high with equal hashes
            mid = (low + high + 1) // 2
            if ours is not None and _hash_at(theirs, mid) == _hash_at(ours, mid):
                low = mid
            else:
                high = mid - 1
        shared = low
        lost, first, last = theirs.execute(
            "SELECT COUNT(*), MIN(value_date), MAX(value_date) FROM journal_entries WHERE id > ?", (shared,)
        ).fetchone()
    finally:
        theirs.close()
        if ours is not None:
            ours.close()
    if not lost or discard_newer == lost:
        return
    said = "" if discard_newer is None else f" (--discard-newer {discard_newer} does not match)"
    entries = f"{lost} entr{'y' if lost == 1 else 'ies'} (ids {shared + 1}..{target_head}, dated {first} to {last})"
    if shared == snapshot.head_id:
        raise Refusal(
            "restore_must_not_lose_entries",
            f"the backup {source} ends at entry {snapshot.head_id} but {target} goes on to entry {target_head}: restoring would "
            f"lose {entries}{said}; back {target} up first, or add --discard-newer {lost} to discard them.",
        )
    raise Refusal(
        "restore_must_extend_the_chain",
        f"the backup {source} is not an earlier state of {target}: the chains differ from entry {shared + 1}, so restoring "
        f"would replace {entries}{said}; check that it is the right backup, or add --discard-newer {lost} to replace them.",
    )


def _safety_copy(target: Path) -> Path:
    """A copy of the ledger about to be replaced, beside it: ``<db>.before-restore-<UTC time>.db``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safety = target.with_name(f"{target.name}.before-restore-{stamp}.db")
    try:
        if _looks_like_sqlite(target):
            _copy(target, safety)
        else:
            shutil.copyfile(target, safety)
            _fsync(safety)
    except BaseException:
        _unlink_quietly(safety)
        raise
    _fsync(target.parent)
    return safety


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _verify(session):
    """The journal's own verify, for callers that pass no ``check`` (the CLI passes the
    programme's, which also compares the tables folded from the journal)."""
    from ledger.core.verify import verify

    return verify(session)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
