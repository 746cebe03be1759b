"""Thousands of random event sequences against the independent model, every balance after every step.

``test_money_out_properties`` gives every example a fresh ledger, which costs a file copy on
SQLite and a schema migrated from scratch on PostgreSQL, so it can afford only tens of
examples. This test reuses its model and its event builders (``Run``) but pays for the
world once per backend: each world (parties, the appropriation, the approved projects and
their signed contracts) is built and committed once, into a SQLite file or a PostgreSQL
schema of its own. Every hypothesis example then runs inside one outer transaction on one
connection that is rolled back at the end, and every event inside a SAVEPOINT of it
(``join_transaction_mode="create_savepoint"``), released when the ledger accepts the event
and rolled back on a refusal, so "a refusal writes nothing" is still checked. The services'
``lock`` (SELECT ... FOR UPDATE on the chain head) and the chain head itself live in the
same transaction, so the rollback restores the chain exactly.

After every event one grouped query over the postings (by account and entry kind) is
compared with the model: every lane account (unreleased, released, advances, spending by
category, clawback receivable, subsidy earned and payable, the bid memo accounts), each
lane's clawback assessed and collected, each project's self-funding contributed, the
budget available, the amount due to finance and the treasury funding. A second statement
counts the entries (an accepted event writes exactly one, a refusal none) and any entry
that does not balance in its book. At the end of each example the services' own
``project_balances`` contract, per project and per lane, must agree with the model too.

Examples per CI run (``python -m pytest`` with JIEBANG_TEST_PG set): see ``EXAMPLES``.
``derandomize=True`` makes every run draw the same sequences, so CI is repeatable.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from test_money_out_properties import (
    WORLDS,
    ProjectSpec,
    Run,
    build_world,
    lane_accounts,
    lane_accounts_expected,
    lane_contract,
)

from ledger.core.db import make_engine
from ledger.programme import project_balances
from migrations import upgrade_to_head

# Examples per backend per CI run: 2,100 event sequences in all, of 1 to 12 events each.
EXAMPLES = {"sqlite": 1700, "postgresql": 400}
MAX_STEPS = 12

STEP_QUERY = text(
    """
    SELECT a.name, e.kind,
           SUM(CASE WHEN p.amount_fen > 0 THEN p.amount_fen ELSE 0 END),
           SUM(CASE WHEN p.amount_fen < 0 THEN -p.amount_fen ELSE 0 END)
    FROM postings p
    JOIN accounts a ON a.id = p.account_id
    JOIN journal_entries e ON e.id = p.entry_id
    GROUP BY a.name, e.kind
    """
)
LEDGER_QUERY = text(
    """
    SELECT (SELECT count(*) FROM journal_entries),
           (SELECT count(*) FROM (SELECT entry_id FROM postings GROUP BY entry_id, book
                                  HAVING SUM(amount_fen) <> 0) AS unbalanced)
    """
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def worlds(request, tmp_path_factory):
    """Per backend, one committed database per world: ``{world: engine}``, with ``.backend``."""
    backend = request.param
    if request.config.getoption("--backend") not in ("all", backend):
        pytest.skip(f"--backend excludes {backend}")
    engines: dict[tuple[ProjectSpec, ...], object] = {}
    cleanup = contextlib.ExitStack()
    if backend == "sqlite":
        migrated = request.getfixturevalue("_sqlite_template")
        directory = tmp_path_factory.mktemp("thousands")
        for n, world in enumerate(WORLDS):
            path = directory / f"world-{n}.db"
            shutil.copyfile(migrated, path)
            engine = make_engine(f"sqlite:///{path}")
            cleanup.callback(engine.dispose)
            build_world(engine, world)
            engines[world] = engine
    else:
        run_url = request.getfixturevalue("_pg_run_database")
        admin = create_engine(run_url, isolation_level="AUTOCOMMIT")
        cleanup.callback(admin.dispose)
        for world in WORLDS:
            schema = f"k_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))

            def drop(schema=schema):
                with admin.connect() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

            cleanup.callback(drop)
            engine = create_engine(run_url.update_query_dict({"options": f"-csearch_path={schema}"}))
            cleanup.callback(engine.dispose)
            upgrade_to_head(engine)
            build_world(engine, world)
            engines[world] = engine
    with cleanup:
        yield backend, engines


class RolledBackRun(Run):
    """``Run`` on one connection whose outer transaction the example rolls back.

    ``self.engine`` is that connection; every session on it works in a SAVEPOINT.
    """

    def session(self) -> Session:
        return Session(bind=self.engine, join_transaction_mode="create_savepoint")

    def check(self) -> None:
        """Every balance against the model, from one grouped query over the postings."""
        rows = self.engine.execute(STEP_QUERY).all()
        self.entry_count, unbalanced = self.engine.execute(LEDGER_QUERY).one()
        assert unbalanced == 0, "an entry does not balance in its book"
        accounts: dict[str, int] = {}
        assessed: dict[str, int] = {}
        collected: dict[str, int] = {}
        for name, kind, debit, credit in rows:
            accounts[name] = accounts.get(name, 0) + int(debit) - int(credit)
            if name.startswith("Assets:Fiscal:ClawbackReceivable:"):
                if kind in ("collection", "release"):  # a release netted against it settles it like a collection
                    collected[name] = collected.get(name, 0) + int(credit)
                elif kind != "reversal":
                    assessed[name] = assessed.get(name, 0) + int(debit)
        accounts = {name: amount for name, amount in accounts.items() if amount}
        for code, project in self.model.projects.items():
            contributed = sum(v for k, v in accounts.items() if k.startswith(f"Assets:Memo:SelfFunding:Contributed:{code}:"))
            assert contributed == project.contributed, f"{code} self-funding contributed"
            for lane in project.lanes:
                assert lane_accounts(accounts, lane) == lane_accounts_expected(lane), f"{code} L{lane.n}"
                receivable = f"Assets:Fiscal:ClawbackReceivable:{code}:L{lane.n}"
                assert (assessed.get(receivable, 0), collected.get(receivable, 0)) == (lane.assessed, lane.collected), (
                    f"{code} L{lane.n} clawback assessed, collected"
                )
                # The invariants, as the model sees them (the ledger equals the model above).
                assert lane.released <= lane.obligated and lane.advances >= 0 and lane.collected <= lane.assessed
        assert accounts.get("Assets:Memo:Budget:Available:Y2025", 0) == self.model.available
        assert accounts.get("Liabilities:Fiscal:DueToFinance", 0) == -self.model.due_to_finance
        assert sum(v for k, v in accounts.items() if k.startswith("Income:Fiscal:Funding:")) == self.model.funding

    def contracts(self) -> None:
        """The services' own reading (``project_balances``), per project and per lane, against the model."""
        with self.session() as s, s.begin():
            for code, project in self.model.projects.items():
                got = project_balances(s, code)
                expected = {key: sum(lane_contract(lane)[key] for lane in project.lanes) for key in lane_contract(project.lanes[0])}
                assert {key: got[key] for key in expected} == expected, code
                assert got["self_funding_contributed"] == project.contributed
                for lane in project.lanes:
                    got = project_balances(s, code, lane=f"L{lane.n}")
                    assert got["grant_released"] <= got["grant_obligated"]
                    assert got["advances_outstanding"] >= 0
                    assert got["clawback_collected"] <= got["clawback_assessed"]
                    assert {key: got[key] for key in lane_contract(lane)} == lane_contract(lane), f"{code} L{lane.n}"


def test_thousands_of_event_sequences_keep_every_balance_with_the_model(worlds):
    backend, engines = worlds

    def entries(engine) -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM journal_entries")).scalar_one()

    built = {world: entries(engine) for world, engine in engines.items()}

    @settings(
        max_examples=EXAMPLES[backend],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def events_keep_every_balance(data):
        world = data.draw(st.sampled_from(WORLDS), label="world")
        steps = data.draw(st.integers(1, MAX_STEPS), label="steps")
        with engines[world].connect() as conn:
            outer = conn.begin()
            try:
                run = RolledBackRun(conn, data, world)
                run.check()
                for _ in range(steps):
                    run.step()
                run.contracts()
            finally:
                outer.rollback()

    events_keep_every_balance()
    # Nothing an example did survives it: each world holds only what build_world committed.
    assert {world: entries(engine) for world, engine in engines.items()} == built
