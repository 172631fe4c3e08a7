"""The database connection: engine, sessions, and bringing the schema to head.

Alembic owns the schema (`directory/migrations`). `ensure_schema` runs at
`caseline serve`, `caseline worker` and `directory load`: an empty database
gets every migration, one that is behind gets the missing ones, and a
database of the scheme before Alembic (the previous release's
`schema_version` table) is adopted in place by the first migration.

To change the schema: edit `directory/models.py`, then write the next
migration beside the others (`alembic -c directory/migrations/alembic.ini
revision --autogenerate --rev-id 0003 -m "..."` drafts it on a database at
head; read and fix the draft), and let `tests/test_migrations.py` prove that
the migrations and the models agree, on SQLite and on PostgreSQL. A migration
must leave the schema usable by the release before it (add first, drop a
release later): web processes of both releases serve side by side while a
deployment rolls.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from directory.migrations import ALEMBIC_INI

# Any 64-bit number shared by every caseline process: PostgreSQL's advisory lock
# that lets one process at a time migrate ("caseline" in ASCII, as an integer).
MIGRATION_LOCK_ID = 0x6361_7365_6C69_6E65
# How long a starting process waits for another one's migration on SQLite (seconds).
SQLITE_BUSY_SECONDS = 5
# How long a readiness check waits for PostgreSQL to answer (seconds).
PROBE_TIMEOUT_SECONDS = 2
# How long a new PostgreSQL connection may take (seconds), unless the URL says
# (`?connect_timeout=`). libpq's default is to wait for ever, so a server gone from the
# network held a caller's callback request, an API request or a call-log job for as
# long as the kernel kept trying (minutes): long past Twilio's 15 s for a webhook.
CONNECT_TIMEOUT_SECONDS = 5


class SchemaError(RuntimeError):
    """The database's schema is one this caseline cannot bring to head (a newer
    release wrote it, or it is not caseline's): the message names the revision."""


class DatabaseUrlError(ValueError):
    """A DATABASE_URL caseline cannot use (the message says why; no password in it)."""


def engine_url(database_url: str) -> URL:
    """The SQLAlchemy URL caseline connects with. `postgres://` (Heroku's and many
    hosts' form) and a bare `postgresql://` are PostgreSQL through psycopg 3, the driver
    of the `postgres` extra. Raises `DatabaseUrlError` for text that is not an
    SQLAlchemy URL, or names a kind of database SQLAlchemy has no dialect for."""
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError):  # not a URL; a port that is not a number
        raise DatabaseUrlError("not a database URL (sqlite:///path or "
                               "postgresql://user:password@host/dbname)") from None
    backend, plus, driver = url.drivername.partition("+")
    if backend == "postgres":
        url = url.set(drivername=f"postgresql{plus}{driver}")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise DatabaseUrlError(f"no database kind {url.drivername!r} (sqlite:///path or "
                               "postgresql://user:password@host/dbname)") from None
    return url


def make_engine(database_url: str) -> Engine:
    """An engine for the URL; SQLite gets foreign keys, WAL and a busy timeout.

    `database_url` is an SQLAlchemy URL: `sqlite:///path` or
    `postgresql+psycopg://user:password@host/dbname` (a bare `postgresql://` or
    `postgres://` is taken to mean psycopg 3: `engine_url`). A PostgreSQL
    connection that is not made within `CONNECT_TIMEOUT_SECONDS` (or the URL's
    `connect_timeout`) raises SQLAlchemy's OperationalError.
    """
    url = engine_url(database_url)
    if url.get_backend_name() == "postgresql":
        connect_args = ({} if "connect_timeout" in url.query
                        else {"connect_timeout": CONNECT_TIMEOUT_SECONDS})
        # A dead pooled connection (the server restarted) is replaced, not handed out.
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_probe_engine(database_url: str) -> Engine:
    """An engine that opens a new connection for every use (no pool), for readiness
    checks: a pooled connection can outlive what makes new ones fail (a SQLite file
    moved away, a PostgreSQL server that refuses new sessions).

    Never creates anything: a SQLite file that is missing is an error, not a new
    empty database. A PostgreSQL server that does not answer fails after
    PROBE_TIMEOUT_SECONDS.
    """
    url = engine_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            path = Path(url.database).expanduser().resolve()
            url = url.set(database=f"file:{path}?mode=rw", query={"uri": "true"})
        return create_engine(url, poolclass=NullPool)
    connect_args = ({"connect_timeout": PROBE_TIMEOUT_SECONDS}
                    if url.get_backend_name() == "postgresql" else {})
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def database_revision(engine: Engine) -> str:
    """The migration the database is at, read through `engine`.

    Raises `SchemaError` when the database has no caseline schema, and
    SQLAlchemy's `DBAPIError` when it cannot be reached or read.
    """
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None:
        raise SchemaError("the database has no caseline schema (no alembic_version)")
    return revision


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings: enforce foreign keys, let readers and a writer overlap."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        _use_wal(cursor)
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so). The switch needs the file to itself, and
    SQLite answers "database is locked" at once, without the busy timeout, while
    another connection is opening it: processes starting together on a new file
    (web, worker, `directory load`). Tried again for up to SQLITE_BUSY_SECONDS."""
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def lock_schema(conn: Connection) -> None:
    """Make `conn`'s transaction the only one migrating until it ends (DDL is
    transactional on PostgreSQL, so a migration is all or nothing there).
    Call it first thing in a fresh transaction (`engine.begin()`)."""
    take_write_lock(conn, MIGRATION_LOCK_ID)


def take_write_lock(conn: Connection, lock_id: int) -> None:
    """Make `conn`'s transaction the only one holding `lock_id` until it ends, across
    every process and host: the others wait for it at this call, so a read, change and
    write inside the transaction loses nobody's change.

    PostgreSQL: a transaction-scoped advisory lock on `lock_id` (a 64-bit number).
    SQLite: the database's write lock, taken now (`BEGIN IMMEDIATE`) rather than at
    the first write, waiting up to SQLITE_BUSY_SECONDS for another writer (SQLite
    has one writer at a time, so `lock_id` does not matter there). Call it first
    thing in a fresh transaction.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _signed(lock_id)})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _signed(value: int) -> int:
    """A 64-bit number as PostgreSQL's signed bigint."""
    return value - (1 << 64) if value >= 1 << 63 else value


def ensure_schema(engine: Engine) -> None:
    """Bring the database to the newest migration (creating it when empty).

    Several processes may start at once: one migrates while the others wait for
    it (`lock_schema`), then find nothing left to do. Raises `SchemaError` when
    the database is at a revision this caseline does not know (a newer release
    migrated it), and the driver's error when the database cannot be reached.
    """
    with engine.begin() as conn:
        lock_schema(conn)
        _upgrade(conn)


def schema_revision(engine: Engine) -> str | None:
    """The migration the database is at ("0002"), or None when Alembic has not
    run on it yet (an empty database, or one from before Alembic)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest migration this caseline ships."""
    head = _script().get_current_head()
    assert head is not None
    return head


def _script() -> ScriptDirectory:
    """Alembic's view of directory/migrations."""
    return ScriptDirectory.from_config(alembic_config())


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for caseline's migrations, on `connection` when given
    (else env.py opens DATABASE_URL, as `alembic` on the command line does)."""
    config = Config(str(ALEMBIC_INI))
    # caseline's own logging stays as it is (env.py would apply alembic.ini's).
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(conn: Connection) -> None:
    """Run the missing migrations on `conn`, inside its transaction."""
    current = MigrationContext.configure(conn).get_current_revision()
    script = _script()
    if current is not None and current not in {s.revision for s in script.walk_revisions()}:
        tables = ", ".join(sorted(inspect(conn).get_table_names()))
        raise SchemaError(
            f"the database is at migration {current}, which this caseline does not know "
            f"(its newest is {script.get_current_head()}; tables: {tables}): a newer "
            "release migrated it, so run that release (or restore the backup taken "
            "before its upgrade)"
        )
    if current == script.get_current_head():
        return
    command.upgrade(alembic_config(conn), "head")
