"""alembic migrations for the jiebang ledger; ``HEAD`` is the revision a current database is at.

``HEAD`` is written here so that every command can check the schema without importing
alembic; a test asserts it equals the script directory's head.
"""

from __future__ import annotations

from pathlib import Path

HEAD = "20261206_0012"
SCRIPT_LOCATION = str(Path(__file__).resolve().parent)


def alembic_config(url: str):
    """An alembic Config pointed at this folder and the given database URL."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    return config


def upgrade_to_head(engine) -> None:
    """Create or upgrade the database behind ``engine`` to ``HEAD`` in one transaction."""
    migrate(engine, "head")


def migrate(engine, target: str) -> None:
    """Upgrade or downgrade the database behind ``engine`` to ``target`` in one transaction."""
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    move = command.upgrade if target == "head" or _is_ahead(config, engine, target) else command.downgrade
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            move(config, target)
        return
    # SQLite rebuilds a table to change its constraints; its documented procedure turns
    # foreign keys off first (the pragma is ignored inside a transaction) and checks them
    # before commit. The connection is discarded afterwards, so none keeps them off.
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        driver.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                move(config, target)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                if broken is not None:
                    raise RuntimeError(f"migration left a dangling reference in table {broken[0]}; rolled back")
        finally:
            connection.invalidate()


def _is_ahead(config, engine, target: str) -> bool:
    """True when ``target`` is after the database's current revision (or it has none)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    # alembic's own context reads the revision: migrations never import the ledger's storage code.
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return True
    newest_first = [rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()]
    return newest_first.index(target) < newest_first.index(current)
