"""One source of truth for the schema: the models in ledger/models.py describe exactly the
database the migrations build, so ``alembic revision --autogenerate`` proposes nothing.

Autogenerate compares tables, columns (type and nullability), indexes, unique constraints
and foreign keys. It cannot see triggers, check constraints, server defaults (not compared
here) or an index's WHERE clause; the migration tests and the guard tests cover those.
"""

from __future__ import annotations

from pprint import pformat

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import migrations
from ledger.core.models import Base
from ledger.programme import approvals


def test_the_models_match_the_migrated_schema(db_url):
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            drift = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert drift == [], "the models and the migrations disagree; make the models match:\n" + pformat(drift)


def test_alembic_check_through_env_py_finds_nothing_to_generate(db_url):
    # `alembic check` runs migrations/env.py, so this fails if env.py's target_metadata is
    # not the models' metadata (or misses a table), not only if the models drift.
    command.check(migrations.alembic_config(db_url))


def test_every_table_is_on_the_models_metadata():
    assert approvals.SETTINGS.metadata is Base.metadata
    assert approvals.REQUESTS.metadata is Base.metadata
    assert {"settings", "requests", "enterprise_logins"} <= set(Base.metadata.tables)
