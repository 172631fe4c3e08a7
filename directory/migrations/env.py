"""Alembic's entry point: run the migrations on a connection caseline hands over
(`directory.db.ensure_schema`), or on `DATABASE_URL` when Alembic's own command
line runs them."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from config.settings import Settings
from directory.db import lock_schema, make_engine
from directory.models import Base


def run_on(connection: Connection) -> None:
    """Upgrade (or whatever the command asked) on one connection, in its transaction."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters a table by copying it: Alembic's batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_from_command_line() -> None:
    """`alembic upgrade head` and friends: caseline's own database and engine settings."""
    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logger", True):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    engine = make_engine(url)
    try:
        # One transaction, migrating alone (as ensure_schema does): all or nothing.
        with engine.begin() as connection:
            lock_schema(connection)
            run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("caseline's migrations run on a live database, not as offline SQL")
handed_over = context.config.attributes.get("connection")
if handed_over is not None:
    run_on(handed_over)
else:
    run_from_command_line()
