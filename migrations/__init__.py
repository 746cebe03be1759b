"""alembic migrations for the jiebang ledger; ``HEAD`` is the revision a current database is at.

``HEAD`` is written here so that every command can check the schema without importing
alembic; a test asserts it equals the script directory's head.
"""

from __future__ import annotations

from pathlib import Path

HEAD = "20261123_0003"
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
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
