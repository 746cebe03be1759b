"""Every hint that names a command is a command that works when pasted.

Each test provokes a message, extracts the command between backticks, runs it as a user
would (``jiebang ...`` through the CLI, ``createdb`` as a program) and checks that the verb
that failed then works. Also: a missing driver names the install command, an unknown URL
scheme names the supported ones, a missing folder is named in one line, and every command
``jiebang due`` prints runs on the demo ledger.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PG_ENV, Cli
from sqlalchemy import create_engine, make_url, text

from cli import main


def jiebang(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)


def commands_in(message: str) -> list[str]:
    return re.findall(r"`([^`]+)`", message)


def paste(command: str, *, cwd: Path | None = None):
    """Run a hinted command as pasted into a shell (jiebang in-process, other programs as such)."""
    words = shlex.split(command)
    if words[0] == "jiebang":
        return jiebang(*words[1:])
    return subprocess.run(words, capture_output=True, text=True, cwd=cwd, check=False, timeout=60)


def test_a_missing_ledger_names_the_init_that_creates_it(tmp_path, monkeypatch):
    monkeypatch.delenv("JIEBANG_DB", raising=False)
    for db in (tmp_path / "ledger.db", tmp_path / "with space" / "帐本.db"):
        db.parent.mkdir(exist_ok=True)
        refused = jiebang("--db", str(db), "balances")
        assert refused.exit_code == 1
        [command] = commands_in(refused.stderr)
        assert command == f"jiebang --db {shlex.quote(str(db))} init"
        assert paste(command).exit_code == 0
        assert jiebang("--db", str(db), "balances").exit_code == 0
    monkeypatch.chdir(tmp_path)
    assert commands_in(jiebang("projects").stderr) == ["jiebang init"]  # the default ./jiebang.db
    assert paste("jiebang init").exit_code == 0
    assert jiebang("projects").exit_code == 0


def test_a_file_without_the_schema_names_the_init_that_upgrades_it(tmp_path):
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    for verb in (["balances"], ["projects"]):  # the stdlib read path and the SQLAlchemy one
        refused = jiebang("--db", str(db), *verb)
        assert refused.exit_code == 1 and "has no jiebang schema" in refused.stderr
        assert commands_in(refused.stderr) == [f"jiebang --db {db} init"]
    assert paste(f"jiebang --db {db} init").exit_code == 0
    assert jiebang("--db", str(db), "projects").exit_code == 0


def test_a_missing_folder_is_named_in_one_line(tmp_path):
    for verb in (["init"], ["balances"], ["projects"]):
        result = jiebang("--db", str(tmp_path / "no" / "such" / "jiebang.db"), *verb)
        assert result.exit_code == 1
        assert result.stderr == (f"error: folder {tmp_path / 'no' / 'such'} does not exist; create it first or give --db "
                                 "a path in an existing folder.\n")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "oracle+cx://x", "http://example.org/jiebang.db", "file:///tmp/x.db"])
def test_an_unknown_url_scheme_names_the_supported_ones(url):
    for verb in (["balances"], ["projects"], ["init"]):
        result = jiebang("--db", url, *verb)
        assert result.exit_code == 1
        scheme = url.split("://", 1)[0]
        assert result.stderr == (
            f"error: --db {scheme}://… is not a database jiebang can use; give a SQLite file path (jiebang.db or "
            "sqlite:///PATH) or a PostgreSQL URL (postgresql://USER@HOST:PORT/DATABASE).\n"
        )


def test_a_missing_psycopg_names_the_install_command(tmp_path):
    """psycopg is installed here, so the driver is hidden from a fresh interpreter."""
    hide = "import sys; sys.modules['psycopg'] = None; sys.argv[0] = 'jiebang'; from cli import main; main()"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for verb in ("balances", "projects"):
        done = subprocess.run([sys.executable, "-c", hide, "--db", "postgresql://nobody@127.0.0.1:1/none", verb],
                              capture_output=True, text=True, env=env, check=False, timeout=60)
        assert done.returncode == 1, done.stderr
        assert done.stderr == ('error: the PostgreSQL driver psycopg is not installed; install it with '
                               '`python -m pip install "psycopg[binary]"` (or `pip install "jiebang-ledger[postgres]"`).\n')
        assert shlex.split(commands_in(done.stderr)[0]) == ["python", "-m", "pip", "install", "psycopg[binary]"]


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="needs PostgreSQL (JIEBANG_TEST_PG)")
def test_a_missing_postgres_database_names_createdb_and_then_init():
    if shutil.which("createdb") is None:
        pytest.skip("createdb is not installed beside PostgreSQL here")
    base = make_url(os.environ[PG_ENV])
    name = f"jiebang_hint_{uuid.uuid4().hex[:8]}"
    url = base.set(database=name, drivername="postgresql").render_as_string(hide_password=False)
    try:
        refused = jiebang("--db", url, "projects")
        assert refused.exit_code == 1
        createdb, init = commands_in(refused.stderr)
        assert createdb.startswith("createdb ") and createdb.endswith(f" {name}")
        assert init == f"jiebang --db {url} init"
        assert refused.stderr == jiebang("--db", url, "balances").stderr  # the psycopg read path says the same
        assert paste(createdb).returncode == 0
        assert paste(init).exit_code == 0
        assert jiebang("--db", url, "projects").exit_code == 0
    finally:
        admin = create_engine(os.environ[PG_ENV], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_every_command_due_prints_runs_on_the_demo_ledger(demo_engine, backend):
    """Each item's command, pasted, records what resolves it, and nothing is due after. The
    demo fixture is shared, so this runs on a copy of its SQLite file."""
    if backend != "sqlite":
        pytest.skip("the commands are run on a copy of the SQLite demo ledger")
    original = Path(make_url(demo_engine.url).database)
    copy = original.with_name(f"hints-{uuid.uuid4().hex[:6]}.db")
    with sqlite3.connect(original) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # the pages still in the -wal too
    cli = Cli(f"sqlite:///{copy}", user="officer-test")
    cli("settings", "--require-approval", "off")
    # After the demo's last entry (2027-02-26): a clawback, self-funding behind, periods ending.
    items = json.loads(cli("due", "--as-of", "2027-03-01", "--within", "120", "--format", "json").stdout)
    assert {i["kind"] for i in items} == {"clawback_outstanding", "pledge_behind", "period_ending", "extension_ending"}
    for item in items:
        words = shlex.split(item["command"])
        assert words[0] == "jiebang"
        result = cli(*words[1:], "--allow-future", expect=None)
        assert result.exit_code == 0, (item, result.stderr)
    left = json.loads(cli("due", "--as-of", "2027-03-01", "--within", "120", "--format", "json").stdout)
    assert left == [], left


def _hinted_commands() -> list[tuple[str, str]]:
    """Every `jiebang ...` between backticks in the code's messages, with its file."""
    root = Path(__file__).resolve().parents[1]
    files = [root / "cli.py", *(p for d in ("ledger", "funding_rules", "reports", "migrations") for p in (root / d).rglob("*.py"))]
    found = []
    for path in files:
        for command in re.findall(r"`(jiebang(?: [^`\n]*)?)`", path.read_text(encoding="utf-8")):
            found.append((path.name, re.sub(r"\{[^}]*\}", "X", command)))
    return found


def test_every_command_named_in_a_message_has_its_options_where_they_belong():
    """The options of every command a message names are options of that command (``--db``
    before the verb, never after it), and its verbs exist."""
    import click

    commands = _hinted_commands()
    assert len(commands) > 30
    for where, command in commands:
        words = shlex.split(command)[1:]
        current: click.Command = main
        while words and not words[0].startswith("-") and isinstance(current, click.Group) and words[0] in current.commands:
            current = current.commands[words.pop(0)]
        if words and words[0].startswith("--") and current is main:
            # options of the group itself, then the verb
            while words and words[0] in ("--db", "--user"):
                words = words[2:]
            while words and not words[0].startswith("-") and isinstance(current, click.Group) and words[0] in current.commands:
                current = current.commands[words.pop(0)]
        names = {opt for param in current.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
        for word in words:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in names, f"{where}: `{command}`: {word} is not an option of `{current.name}`"


def test_the_command_a_refused_release_names_records_what_it_waits_on(demo_file, tmp_path):
    """A release refused for a stage not yet passed names the stage command with the project,
    the lane and the date; pasted as printed (the ledger named by JIEBANG_DB), it records
    the stage and the release then goes through."""
    copy = tmp_path / "ledger.db"
    with sqlite3.connect(demo_file) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    env = {"JIEBANG_DB": str(copy), "JIEBANG_USER": "officer-test"}
    release = ["release", "--project", "JM2026-005", "--lane", "L1", "--date", "2026-06-30", "--allow-future"]
    refused = CliRunner(env=env).invoke(main, release)
    assert refused.exit_code == 1
    (command,) = commands_in(refused.stderr)
    assert command == "jiebang stage --project JM2026-005 --stage stage_assessment --lane L1 --passed --date 2026-06-30"
    words = shlex.split(command)
    assert CliRunner(env=env).invoke(main, words[1:]).exit_code == 0
    done = CliRunner(env=env).invoke(main, release)
    assert done.exit_code == 0, done.output
    assert "JM2026-005 L1 第2期" in done.stdout
