"""The portal's cache of answers (portal.cache): one build per key for the threads of a
process and for the processes sharing the file, entries only under their own key, the file
readable by its owner only. The HTTP side (a new entry moves the head, another account never
gets an answer built for someone else, workers share) is in tests/test_portal.py."""

from __future__ import annotations

import stat
import subprocess
import sys
import threading

from portal.cache import SharedCache, default_path, key_of

HEAD = (7, "a" * 64)


def test_threads_asking_for_the_same_key_build_it_once(tmp_path):
    cache = SharedCache(tmp_path / "c.sqlite", "run")
    key = cache.key(HEAD, ("alice",), "dashboard")
    started, release, calls = threading.Event(), threading.Event(), []

    def build():
        calls.append(1)
        started.set()
        release.wait(30)
        return HEAD, b"built", key

    results = []
    first = threading.Thread(target=lambda: results.append(cache.get_or_build(key, build)))
    first.start()
    assert started.wait(30)
    others = [threading.Thread(target=lambda: results.append(cache.get_or_build(key, build))) for _ in range(6)]
    for t in others:
        t.start()
    release.set()
    for t in (first, *others):
        t.join(30)
    assert results == [b"built"] * 7 and len(calls) == 1


def test_a_second_process_waits_for_the_first_ones_build(tmp_path):
    """Two caches on one file stand for two workers: the second does not build what the first
    is building; it gets the first one's value from the file."""
    path = tmp_path / "c.sqlite"
    one, two = SharedCache(path, "run"), SharedCache(path, "run")
    key = one.key(HEAD, ("alice",), "audit", "JM2024-001")
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(30)
        return HEAD, b"pack of the first worker", key

    def never():
        raise AssertionError("the second worker built it too")

    got = {}
    builder = threading.Thread(target=lambda: got.setdefault("one", one.get_or_build(key, slow)))
    builder.start()
    assert started.wait(30)
    waiter = threading.Thread(target=lambda: got.setdefault("two", two.get_or_build(key, never)))
    waiter.start()
    release.set()
    builder.join(30)
    waiter.join(30)
    assert got == {"one": b"pack of the first worker", "two": b"pack of the first worker"}
    # A fresh process (empty memory) reads it from the file too.
    assert SharedCache(path, "run").get(key) == b"pack of the first worker"


def test_an_entry_answers_only_its_own_head_principal_question_and_run(tmp_path):
    cache = SharedCache(tmp_path / "c.sqlite", "run")
    key = cache.key(HEAD, ("alice", 1), "/projects", [])
    cache.put(key, HEAD, b"alice's page")
    fresh = SharedCache(tmp_path / "c.sqlite", "run")
    assert fresh.get(key) == b"alice's page"
    assert fresh.get(fresh.key((8, "b" * 64), ("alice", 1), "/projects", [])) is None  # the head moved
    assert fresh.get(fresh.key(HEAD, ("bob", 2), "/projects", [])) is None  # another account
    assert fresh.get(fresh.key(HEAD, ("alice", 2), "/projects", [])) is None  # re-invited (epoch)
    assert fresh.get(fresh.key(HEAD, ("alice", 1), "/projects", [["as_of", "2026-01-01"]])) is None
    other_run = SharedCache(tmp_path / "c.sqlite", "another run")
    assert other_run.get(other_run.key(HEAD, ("alice", 1), "/projects", [])) is None
    assert key_of("a", 1) != key_of("a", "1")


def test_a_failed_build_is_not_remembered_and_releases_the_key(tmp_path):
    cache = SharedCache(tmp_path / "c.sqlite", "run")
    key = cache.key(HEAD, ("alice",), "x")

    def boom():
        raise RuntimeError("no")

    for _ in range(2):
        try:
            cache.get_or_build(key, boom)
        except RuntimeError:
            pass
    assert cache.get(key) is None
    assert cache.get_or_build(key, lambda: (HEAD, b"ok", key)) == b"ok"


def test_the_file_is_beside_the_ledger_and_readable_by_its_owner_only(tmp_path):
    ledger = tmp_path / "jiebang.db"
    ledger.write_bytes(b"")
    path = default_path(f"sqlite:///{ledger}")
    assert path == tmp_path / "jiebang.db-portal-cache"
    SharedCache(path, "run")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    elsewhere = default_path("postgresql+psycopg://portal@db/ledger")
    assert elsewhere.parent.name == "jiebang" and elsewhere != default_path("postgresql+psycopg://portal@db/other")


def test_a_lease_left_by_a_worker_that_died_is_taken_over(tmp_path):
    cache = SharedCache(tmp_path / "c.sqlite", "run")
    key = cache.key(HEAD, ("alice",), "dashboard")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(gone.stdout)  # a process that has exited
    cache._conn().execute("INSERT INTO leases (key, owner, until) VALUES (?, ?, ?)", (key, str(dead_pid), 4e9))
    assert cache.get_or_build(key, lambda: (HEAD, b"rebuilt", key)) == b"rebuilt"
