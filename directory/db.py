"""The database connection: engine, sessions, and creating or migrating the schema.

`ensure_schema` runs at `caseline serve`, `caseline worker` and `directory
load`. A fresh database gets today's schema from `Base.metadata.create_all`
and is stamped with `SCHEMA_VERSION`. A database that is behind runs the
missing steps of `MIGRATIONS` in order.

To change the schema later: edit the models, bump `SCHEMA_VERSION` and append
one function to `MIGRATIONS` that brings a database from the previous version
to the new one (ALTER TABLE, data moves). `MIGRATIONS[i]` takes version
`i + 1` to `i + 2`, so `SCHEMA_VERSION == len(MIGRATIONS) + 1` always.
Migrations touch tables that existed at their version; tables that are new
altogether are created by `create_all`, which runs after them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from directory.models import Base, schema_version

SCHEMA_VERSION = 1

# MIGRATIONS[i] migrates a database from version i + 1 to version i + 2.
MIGRATIONS: list[Callable[[Connection], None]] = []


def make_engine(database_url: str) -> Engine:
    """An engine for the URL; SQLite gets foreign keys, WAL and a busy timeout."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings: enforce foreign keys, let readers and a writer overlap."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def ensure_schema(engine: Engine) -> None:
    """Create the schema when the database is empty, migrate it when it is behind."""
    if len(MIGRATIONS) != SCHEMA_VERSION - 1:
        raise RuntimeError("SCHEMA_VERSION must equal len(MIGRATIONS) + 1")
    # Web, worker and `directory load` may start together: a process that
    # loses a create-table race simply tries again and finds the work done.
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                _ensure_schema(conn)
            return
        except (OperationalError, IntegrityError, ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


def schema_version_of(engine: Engine) -> int | None:
    """The version the database is stamped with, or None when it has no schema yet."""
    with engine.connect() as conn:
        return _stored_version(conn)


def _stored_version(conn: Connection) -> int | None:
    """Read the stamped version (None for an empty database)."""
    tables = set(inspect(conn).get_table_names())
    if schema_version.name not in tables:
        # Directory tables without a stamp predate versioning: that is version 1.
        return 1 if "cases" in tables else None
    version = conn.execute(select(schema_version.c.version).where(schema_version.c.id == 1))
    value = version.scalar()
    if value is None:
        return 1 if "cases" in tables else None
    return int(value)


def _ensure_schema(conn: Connection) -> None:
    """Bring one connection's database to SCHEMA_VERSION inside its transaction."""
    current = _stored_version(conn)
    if current is not None and current > SCHEMA_VERSION:
        raise RuntimeError(
            f"the database is at schema version {current}, newer than this caseline "
            f"({SCHEMA_VERSION}): upgrade caseline"
        )
    if current is not None:
        for migrate in MIGRATIONS[current - 1 :]:
            migrate(conn)
    Base.metadata.create_all(conn)
    stamped = conn.execute(
        select(schema_version.c.version).where(schema_version.c.id == 1)
    ).scalar()
    if stamped is None:
        conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION))
    elif stamped != SCHEMA_VERSION:
        conn.execute(
            schema_version.update().where(schema_version.c.id == 1).values(version=SCHEMA_VERSION)
        )
