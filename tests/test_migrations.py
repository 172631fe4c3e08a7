"""Alembic owns the schema: an empty database, an older one, the previous release's
SQLite file, Alembic's own command line, several processes starting at once, and
a database from a newer release (refused, naming its revision)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, inspect, text

from caseline import cli
from caseline.cli import prepare_service
from directory.db import (
    SchemaError,
    alembic_config,
    ensure_schema,
    head_revision,
    make_engine,
    make_session_factory,
    schema_revision,
)
from directory.migrations import ALEMBIC_INI
from directory.models import Base

PREVIOUS_RELEASE_SQL = Path(__file__).parent / "data" / "previous-release.sql"
TABLES = {"districts", "contacts", "advisors", "console_accounts", "cases", "call_logs",
          "audit_entries", "posted_maintenance", "case_number_counter",
          "pending_callbacks"}


# SQLAlchemy cannot reflect an index on expressions from SQLite (it warns and skips
# it), so there it is looked for by name and its SQL instead.
EXPRESSION_INDEXES = {"ix_cases_number_magnitude": "length(ltrim(number, '0'))"}


def _differences(engine: Engine) -> list:
    """What Alembic's autogenerate would change to make the database match the models."""
    opts: dict = {"compare_type": True}
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            return compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
        found = dict(conn.execute(text("SELECT name, sql FROM sqlite_master "
                                       "WHERE type = 'index'")).all())
        missing = [name for name, sql in EXPRESSION_INDEXES.items()
                   if sql not in (found.get(name) or "")]
        with warnings.catch_warnings():  # and Alembic, that it cannot compare it
            warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
            warnings.filterwarnings("ignore", "autogenerate skipping .*expression-based index")
            return missing + compare_metadata(MigrationContext.configure(conn, opts=opts),
                                              Base.metadata)


def _rows(engine: Engine, table: str) -> list[dict]:
    """The table's rows, each as {column: value}, in a stable order."""
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(text(f'SELECT * FROM "{table}"'))]
    return sorted(rows, key=lambda row: repr(sorted(row.items(), key=repr)))


def _kept(before: list[dict], after: list[dict]) -> list[dict]:
    """`after`'s rows cut to `before`'s columns (a migration may add columns)."""
    columns = set(before[0]) if before else set()
    return [{c: v for c, v in row.items() if c in columns} for row in after]


def _alembic(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess:
    """Alembic's own command line with the packaged alembic.ini, on DATABASE_URL."""
    alembic = Path(sys.executable).parent / "alembic"
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([str(alembic), "-c", str(ALEMBIC_INI), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def _previous_release(path: Path) -> str:
    """The previous release's SQLite database (tests/data/README.md), built at `path`."""
    with sqlite3.connect(path) as db:
        db.executescript(PREVIOUS_RELEASE_SQL.read_text(encoding="utf-8"))
    return f"sqlite:///{path}"


@pytest.mark.databases
def test_an_empty_database_gets_every_migration_and_matches_the_models(database_url):
    engine = make_engine(database_url)
    try:
        assert schema_revision(engine) is None
        ensure_schema(engine)
        assert schema_revision(engine) == head_revision() == "0005"
        assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
        assert _differences(engine) == []
        ensure_schema(engine)  # at head: nothing to do, nothing changes
        assert schema_revision(engine) == "0005"
    finally:
        engine.dispose()


@pytest.mark.databases
def test_alembic_upgrade_head_on_its_own_command_line(database_url, tmp_path):
    """What an operator runs by hand on an installed caseline, from any folder."""
    result = _alembic("upgrade", "head", database_url=database_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    engine = make_engine(database_url)
    try:
        assert schema_revision(engine) == head_revision()
        assert _differences(engine) == []
    finally:
        engine.dispose()
    current = _alembic("current", database_url=database_url, cwd=tmp_path)
    assert current.returncode == 0 and "0005 (head)" in current.stdout, current.stderr


def test_alembic_upgrade_head_takes_over_the_previous_releases_database(tmp_path):
    """The previous release's file (schema_version 1, five tables) is upgraded in place:
    its rows stay, the tables it lacked are added, schema_version goes, Alembic is at head."""
    url = _previous_release(tmp_path / "previous.db")
    engine = make_engine(url)
    before = {table: _rows(engine, table) for table in ("cases", "call_logs", "contacts")}
    result = _alembic("upgrade", "head", database_url=url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    try:
        assert schema_revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert tables == TABLES | {"alembic_version"}  # schema_version is gone
        assert {table: _kept(rows, _rows(engine, table)) for table, rows in before.items()} \
            == before
        # The previous release's date may be a call's: it counts as one (0003).
        assert [row["last_verified_call"] for row in _rows(engine, "contacts")] == [
            row["last_active"] for row in before["contacts"]]
        assert len(before["call_logs"]) == 5
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_ensure_schema_takes_over_the_previous_releases_database(tmp_path):
    """What `caseline serve`, `worker` and `directory load` do on that file."""
    url = _previous_release(tmp_path / "previous.db")
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        assert schema_revision(engine) == head_revision()
        assert "schema_version" not in inspect(engine).get_table_names()
        assert _differences(engine) == []
    finally:
        engine.dispose()


def test_a_schema_version_the_first_migration_cannot_adopt_is_refused_and_left_alone(
        tmp_path):
    url = _previous_release(tmp_path / "odd.db")
    with sqlite3.connect(tmp_path / "odd.db") as db:
        db.execute("UPDATE schema_version SET version = 7")
    engine = make_engine(url)
    try:
        with pytest.raises(RuntimeError, match=r"schema_version holds \[\(1, 7\)\]"):
            ensure_schema(engine)
        assert schema_revision(engine) is None
        assert "schema_version" in inspect(engine).get_table_names()
        assert "audit_entries" not in inspect(engine).get_table_names()  # all or nothing
    finally:
        engine.dispose()


@pytest.mark.databases
def test_an_older_database_gets_the_missing_migrations_and_keeps_its_rows(database_url):
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(text("INSERT INTO districts (id, name, hosted) "
                              "VALUES ('D100', 'Lakeview', true)"))
        assert schema_revision(engine) == "0001"
        ensure_schema(engine)
        assert schema_revision(engine) == "0005"
        assert _rows(engine, "districts") == [{"id": "D100", "name": "Lakeview", "hosted": True}]
        assert _rows(engine, "case_number_counter") == [{"id": 1, "last_number": 2_000_000}]
    finally:
        engine.dispose()


@pytest.mark.databases
def test_an_index_an_operator_built_before_the_upgrade_is_left_alone(database_url):
    """docs/deploy.md: on a large PostgreSQL database the operator may build 0005's
    indexes beforehand (CONCURRENTLY); the upgrade then completes around them."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0004")
            conn.execute(text("CREATE INDEX ix_call_logs_started_at ON call_logs (started_at)"))
        ensure_schema(engine)
        assert schema_revision(engine) == "0005"
        assert _differences(engine) == []
    finally:
        engine.dispose()


@pytest.mark.databases
def test_a_database_a_newer_release_migrated_is_refused_naming_its_revision(database_url):
    engine = make_engine(database_url)
    try:
        ensure_schema(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0042'"))
        with pytest.raises(SchemaError, match="at migration 0042.*newest is 0005"):
            ensure_schema(engine)
        assert schema_revision(engine) == "0042"
    finally:
        engine.dispose()


@pytest.mark.databases
def test_processes_starting_together_migrate_once(database_url):
    """Web, worker and `directory load` may start at the same moment on an empty
    database: one migrates, the others wait and find the work done."""
    starters = 4
    engines = [make_engine(database_url) for _ in range(starters)]
    barrier = threading.Barrier(starters)
    errors: list[BaseException] = []

    def start(engine: Engine) -> None:
        barrier.wait()
        try:
            ensure_schema(engine)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert schema_revision(engines[0]) == head_revision()
        assert _rows(engines[0], "case_number_counter") == [{"id": 1, "last_number": 2_000_000}]
        with make_session_factory(engines[0])() as db:
            assert db.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        for engine in engines:
            engine.dispose()


def _at_0001(database_url: str) -> None:
    """Leave the database where the first migration left it: an older caseline's."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
    finally:
        engine.dispose()


def _revision(database_url: str) -> str | None:
    engine = make_engine(database_url)
    try:
        return schema_revision(engine)
    finally:
        engine.dispose()


@pytest.mark.databases
@pytest.mark.parametrize("start", ["empty", "older"])
def test_directory_load_brings_the_database_up_to_date(database_url, redis_url, start):
    if start == "older":
        _at_0001(database_url)
    demo = Path(__file__).resolve().parent.parent / "demo" / "directory.json"
    result = CliRunner().invoke(cli.main, ["directory", "load", str(demo)],
                                env={"DATABASE_URL": database_url, "REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert _revision(database_url) == head_revision()


@pytest.mark.databases
@pytest.mark.parametrize("start", ["empty", "older"])
def test_serve_and_worker_bring_the_database_up_to_date_before_starting(settings, start):
    """`caseline serve` and `caseline worker` both begin with prepare_service."""
    if start == "older":
        _at_0001(settings.database_url)
    prepare_service(settings)
    assert _revision(settings.database_url) == head_revision()


@pytest.mark.databases
def test_a_command_on_a_newer_releases_database_exits_naming_the_revision(database_url,
                                                                          redis_url):
    engine = make_engine(database_url)
    try:
        ensure_schema(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0042'"))
    finally:
        engine.dispose()
    result = CliRunner().invoke(cli.main, ["contacts", "unlock", "5001"],
                                env={"DATABASE_URL": database_url, "REDIS_URL": redis_url})
    assert result.exit_code == 1
    assert "at migration 0042" in result.stderr
    assert "Traceback" not in result.output


def test_directory_load_of_json_nested_too_deeply_is_refused_cleanly(tmp_path):
    """A file no JSON parser can take (nested deeper than Python's recursion) is told as
    an unreadable document (exit 2), not a traceback; nothing is opened or changed."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    result = CliRunner().invoke(cli.main, ["directory", "load", str(deep)])
    assert result.exit_code == 2, result.output
    assert "cannot read a JSON document: nested too deeply" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
