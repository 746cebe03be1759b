"""Built read models and rendered answers, shared by the workers of one ``jiebang serve``.

An entry is stored under a key made of

* the **chain head** (entry number and hash) of the snapshot it was built from: a new entry
  moves the head, so nothing built before it is ever looked up again;
* the **principal**: the account's number, login, kind, party, database role, assigned
  projects and epoch (which revocation and re-invitation raise): an entry built for one
  account is never served to another;
* what was asked: the read model and its arguments, or the route and its query;
* the **run** (random per ``serve``, shared by its workers): code, templates and the forecast
  scenario of another run never answer.

The entries live in a SQLite file beside the ledger (``<ledger>-portal-cache``, mode 0600;
for PostgreSQL, or a ledger on read-only storage, in the user's cache folder), never in the
ledger itself: they are not journal entries and nothing in them is a fact. A small copy of
the most recent answers is kept in each process. A slow build (an audit pack, the dashboard's
forecast) is made once: the first worker to ask takes a lease on the key, the others wait for
its result instead of building their own.

Like the verification page, nothing here notices rows changed behind the application without
moving the chain head: ``jiebang verify`` finds those, and the verification pages are never
taken from the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, head TEXT NOT NULL, value BLOB NOT NULL, used REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_used ON entries (used)",
    "CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL)",
)
LEASE_SECONDS = 900.0  # longer than any build (a cold audit pack of a 300,000-entry chain: 25 s)
POLL_SECONDS = 0.02
LOCAL_BYTES = 64 * 2**20  # per process
FILE_ROWS = 5_000  # pruned down to this, least recently used first


def key_of(*parts) -> str:
    """A stable digest of the parts (JSON: str, int, None, tuples and lists of them)."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, separators=(",", ":"), default=str).encode()).hexdigest()


def default_path(url: str) -> Path:
    """Beside a SQLite ledger that may be written; otherwise in the user's cache folder."""
    from ledger.core.db import sqlite_path

    path = sqlite_path(url)
    if path is not None:
        path = path.absolute()
        if os.access(path.parent, os.W_OK):
            return path.with_name(path.name + "-portal-cache")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jiebang"
    return base / f"portal-{hashlib.sha256(url.encode()).hexdigest()[:16]}.sqlite"


class SharedCache:
    """Entries shared by processes through one SQLite file (or only in this process when
    ``path`` is None)."""

    def __init__(self, path: Path | None, run: str):
        self.path = path
        self.run = run
        self.local: OrderedDict[str, bytes] = OrderedDict()
        self.local_bytes = 0
        self.lock = threading.Lock()
        self.building: dict[str, threading.Event] = {}
        self.threads = threading.local()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # readable by its owner only
            with contextlib.closing(self._connect()) as conn:
                for statement in SCHEMA:
                    conn.execute(statement)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")  # a lost entry is only built again
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self.threads, "conn", None)
        if conn is None:
            conn = self.threads.conn = self._connect()
        return conn

    def key(self, head: tuple, principal: tuple, *what) -> str:
        return key_of(self.run, list(head), list(principal), *what)

    # --- look-ups -------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        with self.lock:
            value = self.local.get(key)
            if value is not None:
                self.local.move_to_end(key)
                return value
        if self.path is None:
            return None
        row = self._conn().execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self._remember(key, row[0])
        return row[0]

    def put(self, key: str, head: tuple, value: bytes) -> None:
        self._remember(key, value)
        if self.path is None:
            return
        conn = self._conn()
        conn.execute("INSERT OR REPLACE INTO entries (key, head, value, used) VALUES (?, ?, ?, ?)",
                     (key, key_of(list(head)), value, time.time()))
        (count,) = conn.execute("SELECT count(*) FROM entries").fetchone()
        if count > FILE_ROWS:
            conn.execute("DELETE FROM entries WHERE key IN (SELECT key FROM entries ORDER BY used LIMIT ?)",
                         (count - FILE_ROWS,))

    def _remember(self, key: str, value: bytes) -> None:
        with self.lock:
            if key in self.local:
                return
            self.local[key] = value
            self.local_bytes += len(value)
            while self.local_bytes > LOCAL_BYTES and self.local:
                _k, old = self.local.popitem(last=False)
                self.local_bytes -= len(old)

    # --- one build per key ----------------------------------------------------------------

    def get_or_build(self, key: str, build: Callable[[], tuple[tuple, bytes, str | None]]) -> bytes:
        """The entry under ``key``, or ``build()``'s value. ``build`` returns (the chain head it
        was built from, the value, the key to store it under: ``key`` when that head is the
        one ``key`` was made with, another key or None otherwise). Threads of this process and
        the other workers wait for a build under way instead of starting their own."""
        while True:
            value = self.get(key)
            if value is not None:
                return value
            with self.lock:
                event = self.building.get(key)
                mine = event is None
                if mine:
                    event = self.building[key] = threading.Event()
            if not mine:
                event.wait(LEASE_SECONDS)
                continue
            try:
                if self._lease(key):
                    try:
                        head, value, store_as = build()
                        if store_as is not None:
                            self.put(store_as, head, value)
                        return value
                    finally:
                        self._release(key)
                self._wait_for_other_process(key)
            finally:
                with self.lock:
                    self.building.pop(key, None)
                event.set()

    def _drop_dead_lease(self, conn: sqlite3.Connection, key: str) -> None:
        """A lease whose time is up or whose worker is gone (killed while building) is void."""
        row = conn.execute("SELECT owner, until FROM leases WHERE key = ?", (key,)).fetchone()
        if row is not None and (row[1] < time.time() or not _alive(int(row[0]))):
            conn.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, row[0]))

    def _lease(self, key: str) -> bool:
        if self.path is None:
            return True
        conn = self._conn()
        now = time.time()
        self._drop_dead_lease(conn, key)
        taken = conn.execute("INSERT OR IGNORE INTO leases (key, owner, until) VALUES (?, ?, ?)",
                             (key, f"{os.getpid()}", now + LEASE_SECONDS)).rowcount
        return taken == 1

    def _release(self, key: str) -> None:
        if self.path is not None:
            self._conn().execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, f"{os.getpid()}"))

    def _wait_for_other_process(self, key: str) -> None:
        """Until the other worker's entry is there or its lease is gone."""
        conn = self._conn()
        while True:
            if conn.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone() is not None:
                return
            self._drop_dead_lease(conn, key)
            if conn.execute("SELECT 1 FROM leases WHERE key = ?", (key,)).fetchone() is None:
                return
            time.sleep(POLL_SECONDS)

    def prune(self, older_than: float = 3600.0) -> None:
        """Drop entries nobody used for ``older_than`` seconds (other runs' leftovers)."""
        if self.path is not None:
            conn = self._conn()
            conn.execute("DELETE FROM entries WHERE used < ?", (time.time() - older_than,))
            conn.execute("DELETE FROM leases WHERE until < ?", (time.time(),))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
