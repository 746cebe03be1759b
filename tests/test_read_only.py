"""A ledger on read-only storage, as an auditor receives a copy: every read verb works, and
every write verb says the storage is read-only in one line, writing nothing.

The copy has no write permission on the file or its folder. Root ignores permission bits
(``os.access`` says root may write anything, and SQLite would write its -wal and -shm files),
so when the tests run as root the copy is also put on a file system mounted read-only (a
tmpfs remounted ``ro``); where root cannot mount, the test is skipped with that reason. Run
as another user, the permission bits alone make the storage read-only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main

READS = [
    ["accounts"],
    ["balances"],
    ["balances", "--as-of", "2025/12/31", "--book", "fiscal"],
    ["balances", "--project", "JM2025-003", "--as-of", "20260630"],
    ["balances", "--project", "JM2024-002", "--accounts"],
    ["journal", "--project", "JM2025-004"],
    ["verify"],
    ["parties"],
    ["projects"],
    ["project", "show", "JM2025-003", "--as-of", "2026年6月30日"],
    ["due", "--as-of", "2026-05-09"],
    ["settings"],
    ["requests"],
    ["report", "status", "--party", "91440704MA4W5E623A", "--as-of", "2025-12-31"],
]
# Reads that write their output elsewhere (into OUT, a writable folder).
READS_TO_FILES = [
    ["report", "status", "--party", "91440704MA4W5E623A", "--as-of", "2025-12-31", "--out", "{out}/status"],
    ["report", "audit", "--project", "JM2025-004", "--out", "{out}/audit"],
    ["report", "forecast", "--runs", "200", "--seed", "1", "--as-of", "2026-06-30", "--out", "{out}/forecast"],
    ["export", "beancount", "--out", "{out}/beancount"],
    ["export", "ledger", "--out", "{out}/ledger"],
    ["anchor", "--out", "{out}/anchor.json"],
    ["backup", "{out}/backup.db"],
]
WRITES = [
    ["pledge", "--project", "JM2025-003", "--amount", "1万", "--date", "2026-01-05"],
    ["pledge", "--project", "JM2025-003", "--amount", "1万", "--date", "2026-01-05", "--dry-run"],
    ["release", "--project", "JM2025-003", "--date", "2026-01-05"],
    ["settings", "--require-approval", "on"],
    ["init"],
]


@pytest.fixture
def read_only_copy(demo_file, tmp_path):
    """The demo ledger in a folder where neither it nor the folder can be written."""
    folder = tmp_path / "received"
    mounted = False
    if os.geteuid() == 0:
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip("running as root, which ignores permission bits, and a read-only file system cannot be mounted here")
        mounted = True
    else:
        folder.mkdir()
    shutil.copyfile(demo_file, folder / "jiebang.db")
    (folder / "jiebang.db").chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    try:
        yield folder / "jiebang.db"
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)  # the CLI ran in this process
        else:
            folder.chmod(0o755)


def _run(path: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(path), *args], catch_exceptions=False)


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_copy_cannot_be_written(read_only_copy):
    with pytest.raises(OSError):
        (read_only_copy.parent / "probe").write_text("x")
    with pytest.raises(OSError):
        read_only_copy.open("ab").close()


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a))
def test_every_read_verb_works_on_read_only_storage(read_only_copy, args):
    before = _fingerprint(read_only_copy.parent)
    result = _run(read_only_copy, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert _fingerprint(read_only_copy.parent) == before == {"jiebang.db": before["jiebang.db"]}


def test_the_reads_agree_with_the_writable_original(read_only_copy, demo_file):
    for args in READS:
        if args[0] == "settings":
            continue
        if args[0] == "due":
            # `due` repeats the --db it was given in each command it prints, and the two
            # paths differ (so would the table's column widths): compared as JSON.
            args = [*args, "--format", "json"]
        copy = _run(read_only_copy, *args).stdout.replace(str(read_only_copy), "LEDGER")
        assert copy == _run(demo_file, *args).stdout.replace(str(demo_file), "LEDGER"), args


@pytest.mark.parametrize("args", READS_TO_FILES, ids=lambda a: " ".join(a[:2]))
def test_reads_that_write_elsewhere_work_on_read_only_storage(read_only_copy, tmp_path, args):
    out = tmp_path / "out"
    out.mkdir()
    result = _run(read_only_copy, *[a.format(out=out) for a in args])
    assert result.exit_code == 0, result.output
    assert any(out.rglob("*")), result.output


@pytest.mark.parametrize("args", WRITES, ids=lambda a: " ".join(a))
def test_write_verbs_say_the_storage_is_read_only(read_only_copy, args):
    before = _fingerprint(read_only_copy.parent)
    result = _run(read_only_copy, *args)
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"error: the ledger {read_only_copy} is on read-only storage (the file or its folder cannot be written): it can "
        "be read, not written; nothing was written. Copy it to a writable folder to record events.\n"
    )
    assert _fingerprint(read_only_copy.parent) == before
