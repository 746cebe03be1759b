"""Test fixtures: every database test runs on a fresh SQLite file and, when JIEBANG_TEST_PG
is set, on a fresh PostgreSQL database cloned from a migrated template.

Nothing is mocked: tests talk to real databases through the same engine code as the CLI.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from ledger.core.db import make_engine
from migrations import upgrade_to_head

# The scenarios are written with fixed dates up to 2029, most of them after the day the suite
# runs: the far-future refusal (DEFAULT 31 days, ledger.core.limits) is lifted for the run,
# and tests/test_dates.py unsets it to test the default.
os.environ.setdefault("JIEBANG_FUTURE_DAYS", "36500")

PG_ENV = "JIEBANG_TEST_PG"
PG_SKIP_REASON = f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it"
_ran = Counter()


def pytest_addoption(parser):
    parser.addoption("--backend", choices=["sqlite", "postgresql", "all"], default="all", help="Which database backends to test.")


def _backends(config) -> list[str]:
    choice = config.getoption("--backend")
    return ["sqlite", "postgresql"] if choice == "all" else [choice]


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}", must_exist=False)
    upgrade_to_head(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def _pg_admin():
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP_REASON)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    template = f"jiebang_tpl_{uuid.uuid4().hex[:10]}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{template}"'))
    template_url = make_url(url).set(database=template)
    template_engine = create_engine(template_url)
    upgrade_to_head(template_engine)
    template_engine.dispose()
    yield engine, url, template
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def _pg_run_database(_pg_admin):
    """One database for this test run; each test gets its own schema in it."""
    admin, url, _template = _pg_admin
    name = f"jiebang_run_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(url).set(database=name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pytest_generate_tests(metafunc):
    if "db_url" in metafunc.fixturenames or "demo_engine" in metafunc.fixturenames:
        metafunc.parametrize("backend", _backends(metafunc.config), indirect=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Count the tests that ran on each backend: their body ran (passed or failed), not
    merely a fixture set up and then skipped."""
    outcome = yield
    report = outcome.get_result()
    backend = getattr(item, "callspec", None) and item.callspec.params.get("backend")
    if backend and report.when == "call" and report.outcome in ("passed", "failed"):
        _ran[backend] += 1


@pytest.fixture
def db_url(request, backend, tmp_path) -> str:
    """The URL of a fresh, migrated, empty ledger database for this test."""
    if backend == "sqlite":
        template = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "ledger.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    # A fresh schema per test, migrated from scratch: DDL in a schema costs a fraction of a
    # second, where cloning a database costs a checkpoint. search_path pins every connection
    # of the test (and of the CLI it runs) to that schema.
    run_url = request.getfixturevalue("_pg_run_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(run_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = run_url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    migrate = create_engine(url)
    upgrade_to_head(migrate)
    migrate.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


_ENGINES: dict[str, object] = {}


def migrated_ledger_url(request, backend: str, tmp_path_factory, name: str) -> str:
    """A fresh, migrated, empty ledger that lives as long as the run (module- or run-scoped
    fixtures): a copy of the SQLite template, or a new schema in the run's PostgreSQL database."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp(name) / "ledger.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    run_url = request.getfixturevalue("_pg_run_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(run_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = run_url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    migrate = create_engine(url)
    upgrade_to_head(migrate)
    migrate.dispose()
    return url


@pytest.fixture
def demo_engine(backend, request, tmp_path_factory):
    """The demo ledger (nine projects of two cities) plus a party relation, a setting and two
    maker–checker requests (one pending, one rejected), built once per backend and run;
    tests that use it must not commit (tampering tests roll back)."""
    if backend not in _ENGINES:
        engine = make_engine(migrated_ledger_url(request, backend, tmp_path_factory, "projection"))
        from ledger.programme import PartyInput, register_party
        from ledger.programme.approvals import change_setting
        from ledger.programme.demo import programme

        with Session(engine) as session, session.begin():
            programme().run(session)
            register_party(
                session,
                PartyInput(uscc="91440700MA51A0003E", name="关联测试企业", related=("91440703MA4W1A276P",),
                           date=dt.date(2024, 2, 1)),
                actor="officer-test",
            )
        with Session(engine) as session, session.begin():
            change_setting(session, "require_approval", "on", user="officer-test")
        _demo_requests(engine, backend)
        from ledger.programme.projection import verify_ledger

        with Session(engine) as session:
            assert verify_ledger(session).ok
        _ENGINES[backend] = engine
    return _ENGINES[backend]


def _demo_requests(engine, backend: str) -> None:
    """Two requests to terminate UR2026-004 by maker-test; checker-test rejects the second.

    The fixture speaks for both users through the services. On PostgreSQL the requests
    trigger ties each name to the database login, so it is lifted for this one transaction
    (tests/test_approvals.py exercises it with real logins); on SQLite checker-test is
    named an approver in the settings, the honour system.
    """
    from ledger.programme.approvals import add_approver, record_request, reject

    arguments = {"project": "UR2026-004", "reference": "乌科〔2026〕99号", "date": dt.date(2026, 12, 31),
                 "misused": [], "voucher": None}
    with Session(engine) as session, session.begin():
        if backend == "postgresql":
            session.execute(text("ALTER TABLE requests DISABLE TRIGGER requests_guard"))
        else:
            add_approver(session, "checker-test", user="officer-test")
        record_request(session, "termination", arguments, user="maker-test")
        second = record_request(session, "termination", arguments, user="maker-test")
        reject(session, second, user="checker-test", reason="材料不全")
        if backend == "postgresql":
            # The deferred foreign keys are checked now: a table with pending checks cannot be altered.
            session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
            session.execute(text("ALTER TABLE requests ENABLE TRIGGER requests_guard"))


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine):
    """Call it to get a ``Session`` in a transaction: ``with session_factory() as s: ...``."""
    import contextlib

    @contextlib.contextmanager
    def factory():
        with Session(engine) as session, session.begin():
            yield session

    return factory


class Cli:
    """Runs ``jiebang`` in-process against one database and checks for tracebacks."""

    def __init__(self, db_url: str, user: str = "officer-a"):
        self.db_url = db_url
        self.user = user
        self.runner = CliRunner()

    def __call__(self, *args: str, expect: int | None = 0, input: str | None = None):
        from cli import main

        result = self.runner.invoke(main, ["--db", self.db_url, "--user", self.user, *args], input=input, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            raise AssertionError(
                f"jiebang {' '.join(args)} raised {result.exception!r}\n"
                + "".join(traceback.format_exception(result.exception))
                + result.output
            )
        if expect is not None:
            assert result.exit_code == expect, f"jiebang {' '.join(args)} exited {result.exit_code}: {result.output}"
        if result.exit_code == 1:
            # A refusal is one line on stderr, never a traceback.
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith(("error:", "FAILED")), result.stderr
        return result


@pytest.fixture
def cli(db_url) -> Cli:
    return Cli(db_url)


def pytest_terminal_summary(terminalreporter):
    """One line per skip reason with its count (the default options print no line per
    skipped test), then the tests that ran on each database backend."""
    reasons = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        terminalreporter.write_line(f"skipped {count}: {reason}")
    if _ran:
        parts = ", ".join(f"{name}: {count} test(s) ran" for name, count in sorted(_ran.items()))
        terminalreporter.write_line(f"jiebang backends exercised -> {parts}")


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory) -> Path:
    """The demo ledger as a SQLite file, built once per run; tests copy it or only read it."""
    from ledger.programme.demo import programme

    path = tmp_path_factory.mktemp("demo") / "jiebang.db"
    engine = make_engine(f"sqlite:///{path}", must_exist=False)
    upgrade_to_head(engine)
    with Session(engine) as session, session.begin():
        programme().run(session)
    engine.dispose()  # the last connection closed checkpoints the -wal into the file
    assert not Path(f"{path}-wal").exists()
    return path

