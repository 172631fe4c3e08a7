"""Shared fixtures: a real Redis server, a fresh database per test, the app."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import time_machine
from flask import Flask
from flask.testing import FlaskClient

from caseline.embedded_redis import start_server, wait_until_up
from config.settings import PROJECT_ROOT, Settings
from directory import load_directory
from directory.db import ensure_schema, make_engine, make_session_factory
from directory.redis_client import raw_twin
from ivr import create_app
from routing import availability
from routing.desk import Desk
from telephony import Telephony
from tests import whole_project
from tests.postgres import PostgresCluster, remove_cluster, start_cluster
from twilio_side import Caller, CallResult, FlaskTransport, InProcessLink, TwilioEmulator
from workers import context


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server for the whole test session."""
    port = free_port()
    process = start_server(tmp_path_factory.mktemp("redis"), port=port)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until_up(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class OwnRedis:
    """A redis-server of a test's own, which it stops and starts again (empty: the
    embedded server persists nothing) on one port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = start_server(self.folder, port=self.port)
        wait_until_up(self.url)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Redis server the test may stop and start (`OwnRedis`), running at the start."""
    server = OwnRedis(tmp_path / "own-redis")
    server.start()
    yield server
    server.stop()


@contextmanager
def refusing_writes_after_a_failed_snapshot(client: redis.Redis, tmp_path: Path) -> Iterator[None]:
    """Redis answering MISCONF to every write, as a server does whose last snapshot
    failed (a full or vanished disk) while `stop-writes-on-bgsave-error` is on, as it
    is by default; reads still answer. Taking the save points away again lets writes
    through at once."""
    gone = tmp_path / "snapshots-gone"
    gone.mkdir()
    before = client.config_get("dir")["dir"]
    client.config_set("dir", str(gone))
    gone.rmdir()  # the snapshot's file cannot be made: the save fails
    client.config_set("save", "3600 1")
    try:
        client.bgsave()
        deadline = time.monotonic() + 10
        while client.info("persistence")["rdb_last_bgsave_status"] != "err":
            assert time.monotonic() < deadline, "the snapshot did not fail"
            time.sleep(0.02)
        yield
    finally:
        client.config_set("save", "")
        client.config_set("dir", before)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the session's Redis, flushed before each test."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


# The database tests (marked `databases`, as a module's `pytestmark` or one test's
# mark) run once per backend: SQLite, and PostgreSQL on a throwaway cluster
# (tests/postgres.py). Every other test runs on SQLite alone.
DATABASES = ("sqlite", "postgresql")


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--databases=sqlite` runs the database tests on SQLite alone (quicker locally)."""
    parser.addoption("--databases", default=",".join(DATABASES),
                     help="backends the database tests run on (comma-separated; default: "
                          "%(default)s)")


def pytest_configure(config: pytest.Config) -> None:
    """Import the whole repository (Hypothesis's constants: `tests.whole_project`),
    declare the `databases` and `slow` marks and check the option."""
    whole_project.import_all()
    config.addinivalue_line(
        "markers", "databases: a database test, run on SQLite and on PostgreSQL")
    config.addinivalue_line(
        "markers", "slow: a test of ten seconds or more, run before the others")
    config.addinivalue_line(
        "markers", "alone: a test that needs the machine to itself (it sets processes' "
                   "cores and priorities): no other test of the run goes on beside it")
    unknown = set(config.getoption("databases").split(",")) - set(DATABASES)
    if unknown:
        raise pytest.UsageError(f"--databases: unknown backend(s) {sorted(unknown)}, "
                                f"choose among {list(DATABASES)}")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`--numprocesses=auto`: one xdist worker more than the cores this run may use.
    With one per core the cores idled a quarter of the run (vmstat), the tests waiting
    on the processes and servers they start; one more keeps them busy (on 2 cores:
    13m11s with 2 workers, 11m38s with 3, side by side on a quiet host)."""
    return len(os.sched_getaffinity(0)) + 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `slow` tests first, then the others, each in their order.

    The suite runs on every core (pytest-xdist, `addopts` in pyproject.toml, with
    `--dist worksteal`): each worker starts on its own stretch of the tests, in this
    order, and one that runs out takes the last tests of another's. The slow ones
    (most of them run the line as real processes, with deadlines) so fall to one
    worker, one after the other, while the others run the quick ones; and none is
    left to the end, to keep one worker busy long after the others are done.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Each test shares the machine with the tests of the other xdist workers, but an
    `alone` test has it to itself (its fixtures included; the wait is no part of any
    test's timeout)."""
    with sharing_the_machine(item):
        yield


@contextmanager
def sharing_the_machine(item: pytest.Item) -> Iterator[None]:
    """Hold the machine for a test, with the tests of the other xdist workers or (an
    `alone` test) without them: a shared or an exclusive flock on a file in the run's
    temporary folder, which the workers share (theirs are inside it). A test takes
    the turnstile's flock on the way in, and an `alone` test keeps it while it waits
    for the tests already running to end, so the tests that arrive meanwhile wait
    behind it instead of keeping it waiting. One process (no xdist) runs one test at
    a time anyway."""
    if not hasattr(item.config, "workerinput"):
        yield
        return
    folder = Path(item.config.option.basetemp).parent
    alone = item.get_closest_marker("alone") is not None
    with (folder / "turnstile.lock").open("a") as turnstile, \
            (folder / "machine.lock").open("a") as machine:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(machine, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield  # closing the files lets both go


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A database test that uses a database runs once per backend."""
    if ("database_url" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("databases") is not None):
        metafunc.parametrize("database_backend",
                             metafunc.config.getoption("databases").split(","))


@pytest.fixture
def database_backend() -> str:
    """The backend of a test's database: SQLite unless the test is a database test."""
    return "sqlite"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster (unix socket only) for the whole session; the
    PostgreSQL runs of the database tests are skipped, saying why, when it is not
    installed (`make system-deps` installs it)."""
    try:
        cluster = start_cluster()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        remove_cluster(cluster)


@pytest.fixture
def database_url(database_backend: str, tmp_path: Path,
                 request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for one test: a SQLite file, or a new PostgreSQL database
    (dropped after the test). Empty, unless the test uses `engine`, which would migrate
    it: then a copy of a database the session migrated (`migrated_sqlite`,
    `migrated_postgres`), which `engine` finds at head."""
    migrated = "engine" in request.fixturenames
    if database_backend == "sqlite":
        path = tmp_path / "caseline.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite:///{path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database(
        template=request.getfixturevalue("migrated_postgres") if migrated else None)
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


# Every migration run on each test's database took ~0.3 s a test on SQLite, ~0.5 s on
# PostgreSQL: each session runs them once per backend, and the tests that use `engine`
# start from a copy (tests/test_migrations.py migrates empty and older databases itself).
@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database every migration ran on, once in the session."""
    path = tmp_path_factory.mktemp("migrated") / "caseline.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        ensure_schema(engine)
    finally:
        engine.dispose()  # its last connection closed, SQLite folds the WAL into the file
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres_cluster: PostgresCluster) -> str:
    """A PostgreSQL database every migration ran on, once in the session: its name."""
    name = postgres_cluster.create_database()
    engine = make_engine(postgres_cluster.url(name))
    try:
        ensure_schema(engine)
    finally:
        engine.dispose()  # PostgreSQL copies no database that has a session open
    return name


AUTH_TOKEN = "test-auth-token"
API_TOKEN = "test-api-token"
BASE_URL = "http://caseline.test"
NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Chicago


ACCOUNT_SID = "AC" + "a" * 32


@pytest.fixture(autouse=True)
def nothing_new_for_hypothesis() -> Iterator[None]:
    """Every Hypothesis test draws from the constants of the same modules, whatever ran
    before it (`tests.whole_project`)."""
    yield
    whole_project.check_nothing_new()


@pytest.fixture(autouse=True)
def office_hours() -> Iterator[None]:
    """Every test runs on a Tuesday at 10:00 in Chicago unless it travels elsewhere."""
    with time_machine.travel(NOW, tick=True):
        yield


@pytest.fixture(scope="session")
def emulator() -> Iterator[TwilioEmulator]:
    """A local emulator of Twilio's REST API, shared by the session."""
    emulator = TwilioEmulator(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def settings(redis_url: str, database_url: str, tmp_path: Path,
             emulator: TwilioEmulator) -> Settings:
    """Settings of a test service: real Redis and SQLite, signed webhooks."""
    emulator.reset()
    return Settings(
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_url=emulator.url,
        public_base_url=BASE_URL,
        redis_url=redis_url,
        database_url=database_url,
        api_token=API_TOKEN,
        wrapup_seconds=0,
        instance_path=tmp_path / "instance",
    )


@pytest.fixture
def engine(database_url: str):
    """The test database, with caseline's schema (every migration run on it, or on the
    database it copies: `database_url`)."""
    engine = make_engine(database_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def desk(r: redis.Redis, settings: Settings, engine) -> Iterator[Desk]:
    """The Desk routing functions and jobs use, on the test Redis and database."""
    # Its RQ client made now, so the desks a test derives from it share it (and
    # `close_redis` closes it).
    desk = Desk(r=r, settings=settings, telephony=Telephony(settings),
                session_factory=make_session_factory(engine), jobs=raw_twin(r))
    context.configure(desk)
    yield desk
    context.configure(None)
    close_redis(desk)


@dataclass
class Directory:
    """Builders for a test's story: districts, contacts, advisors, cases."""

    desk: Desk
    document: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {
        "districts": [], "contacts": [], "advisors": [], "cases": []})

    def load(self) -> None:
        """Load everything built so far (upsert) and clear the pending lists."""
        load_directory(self.document, self.desk.session_factory, self.desk.r, NOW,
                       pepper=self.desk.settings.pin_pepper)
        for records in self.document.values():
            records.clear()

    def district(self, id: str = "D100", name: str = "Lakeview Public Schools",
                 hosted: bool = True) -> str:
        """A district."""
        self.document["districts"].append({"id": id, "name": name, "hosted": hosted})
        return id

    def contact(self, id: str = "5001", phone: str = "+16125550101", district: str = "D100",
                name: str = "Pat Lee", pin: str = "2468", last_active: str = "2026-10-01") -> str:
        """An authorized contact."""
        self.document["contacts"].append({"id": id, "name": name, "district": district,
                                          "phone": phone, "pin": pin,
                                          "last_active": last_active})
        return phone

    def advisor(self, id: str, teams: list[str] | None = None, phone: str | None = None,
                name: str | None = None) -> str:
        """An advisor (offline until made available)."""
        number = phone or f"+1651555{int(''.join(c for c in id if c.isdigit()) or 0):04d}"
        self.document["advisors"].append({"id": id, "name": name or f"Advisor {id}",
                                          "phone": number, "teams": teams or ["general"]})
        return number

    def case(self, number: str = "2024117", district: str = "D100", owner: str | None = "A7",
             status: str = "open", priority: str = "medium", product: str = "campus") -> str:
        """A case."""
        self.document["cases"].append({"number": number, "district": district, "owner": owner,
                                       "status": status, "priority": priority,
                                       "product": product})
        return number


@pytest.fixture
def directory(desk: Desk) -> Directory:
    """Directory builders bound to the test's desk."""
    return Directory(desk)


@pytest.fixture
def lakeview(directory: Directory) -> None:
    """The usual story: a hosted district, its contact Pat (5001, PIN 2468), advisors A7
    (general and hosting, owner of case 2024117) and A2 (general). A module whose story
    differs defines a `lakeview` of its own."""
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general", "hosting"], phone="+16515550199")
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.case("2024117", owner="A7")
    directory.load()


def make_available(desk: Desk, *advisor_ids: str, start_ms: int | None = None) -> None:
    """Advisors go available in the given order (the first is the longest idle)."""
    start = start_ms or int(time.time() * 1000) - 60_000
    for offset, advisor_id in enumerate(advisor_ids):
        availability.free_advisor(desk, advisor_id, start + offset, explicit=True)


def card_while_ringing(page: FlaskClient, phone: Any, caller: str, keys: str) -> str:
    """The advisor's live card (`page`: their signed-in console) as it reads while their
    phone rings for a call from `caller` pressing `keys`; the advisor then answers."""
    seen: dict[str, str] = {}

    def look_then_answer(number: str, attempt: int) -> str:
        seen["card"] = page.get("/console/advisor/live").get_data(as_text=True)
        return "answer"

    assert phone.call(caller, keys, advisors=look_then_answer).outcome == "advisor"
    return seen["card"]


def close_app(app: Flask) -> None:
    """Close the database and Redis connections an app holds: a test's app lives
    shorter than a process (PostgreSQL's driver warns about a connection left open)."""
    app.extensions["caseline.engine"].dispose()
    close_redis(app.extensions["caseline"])


def close_redis(desk: Desk) -> None:
    """Close every Redis connection of `desk`'s pools, those threads keep included.
    Left to the garbage collector, a redis-py connection sits in a reference cycle,
    and its socket may be finalised before the connection closes it: a
    ResourceWarning, which fails whichever test happens to be running then."""
    desk.r.connection_pool.disconnect()
    if desk.jobs is not None:
        desk.jobs.connection_pool.disconnect()


class SettlingClient(FlaskClient):
    """A test client whose every request returns once the REST requests it handed to the
    web process's background pool (a waiting caller's redirect, a callback placed) are
    done: the tests' Twilio sees what a webhook asked of it as soon as it answered, as
    the real one does within a fraction of a second. A test of what happens meanwhile
    uses a plain `FlaskClient` (`app.test_client_class`)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        assert self.application.extensions["caseline"].telephony.settle(), \
            "the web process's background REST requests never ended"
        return response


def _settling(app: Flask) -> Flask:
    app.test_client_class = SettlingClient
    return app


@pytest.fixture
def app(settings: Settings, desk: Desk) -> Iterator[Flask]:
    """The caseline app on the test Redis and database (its clients `SettlingClient`)."""
    app = _settling(create_app(settings))
    app.testing = True
    yield app
    close_app(app)


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """`create_app` for a test that builds apps of its own (other settings, another
    web process; its clients `SettlingClient`): each is closed (`close_app`) after the
    test."""
    apps: list[Flask] = []

    def make(*args: Any, **kwargs: Any) -> Flask:
        app = _settling(create_app(*args, **kwargs))
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app (unsigned: tests sign via the Twilio driver)."""
    return app.test_client()


def run_jobs(desk: Desk) -> None:
    """Run every queued job to the end, for real, in this process. The call-log job,
    scheduled to gather calls for a moment (`CALL_LOG_GATHER_SECONDS`), runs now: the
    test does not wait the second it takes the worker's scheduler to queue it."""
    from caseline.work import DeskWorker
    from jobs.queues import SERIALIZER, Queues

    queue_gathered_call_logs(desk)
    worker = DeskWorker(list(Queues.ALL), connection=desk.job_redis, serializer=SERIALIZER)
    worker.work(burst=True, with_scheduler=False)


def queue_gathered_call_logs(desk: Desk) -> list[str]:
    """Put on their queue the call-log jobs scheduled to gather calls (never run: not a
    failed job's retry), as RQ's scheduler does when they are due (whatever the clock a
    test travelled to when it scheduled them); their ids."""
    from jobs.queues import CALL_LOG_RETRY, Queues, queue

    logs = queue(Queues.CALL_LOGS, desk.job_redis)
    registry = logs.scheduled_job_registry
    moved = []
    for job_id in registry.get_job_ids():
        job = logs.fetch_job(job_id)
        if job is None or not job_id.startswith("log-calls-") \
                or job.retries_left != CALL_LOG_RETRY.max:
            continue
        registry.remove(job_id)
        logs.enqueue_job(job)
        moved.append(job_id)
    return moved


class Phone:
    """Places calls on the app the way Twilio does (signed posts, TwiML walked)."""

    def __init__(self, app: Flask, emulator: TwilioEmulator) -> None:
        """Calls go to `app`; REST redirects arrive through `emulator`."""
        self.app = app
        self.emulator = emulator

    def caller(self, from_number: str, keys: str = "", advisors: Any = "answer",
               **options: Any) -> Caller:
        """A call ready to run (keys separated by spaces, as `caseline call --keys`)."""
        transport = FlaskTransport(self.app.test_client(), BASE_URL, auth_token=AUTH_TOKEN)
        options.setdefault("max_wait_seconds", 2.0)
        options.setdefault("wait_poll_interval", 0.02)
        return Caller(transport, from_number, keys=keys.split(), advisor_policy=advisors,
                      account_sid=ACCOUNT_SID, emulator_link=InProcessLink(self.emulator),
                      **options)

    def call(self, from_number: str, keys: str = "", advisors: Any = "answer",
             **options: Any) -> CallResult:
        """Place a call and walk it to its end."""
        return self.caller(from_number, keys, advisors, **options).run()


@pytest.fixture
def phone(app: Flask, emulator: TwilioEmulator) -> Phone:
    """The Twilio-side driver, pointed at the test app."""
    return Phone(app, emulator)


def caseline_command(*args: str, at: datetime | None = None) -> list[str]:
    """argv of a real `caseline` process on the test's clock (ticking from NOW since the
    test began, or wherever it travelled), or on a clock reading `at` now.

    A service started on the real clock would route by the hour the suite runs
    at (voicemail at night and on weekends), so every process a test starts
    travels in time like the test itself. Each process's clock goes on from the
    test's at the moment it is started: one started at NOW would run behind the
    test, and behind the processes started before it, by however long they took
    to start (seconds on a busy host), and a job one of them schedules would be
    due that much later for another.
    """
    spawned = time_machine.escape_hatch.time.time()  # the real clock, the same in the child
    return [sys.executable, "-m", "tests.frozen_clock", (at or datetime.now(UTC)).isoformat(),
            f"--spawned={spawned!r}", *args]


@dataclass
class LiveService:
    """`caseline serve` running as its own processes, on the test Redis and database."""

    url: str
    process: subprocess.Popen
    env: dict[str, str]


def line_env(settings: Settings, instance: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a caseline deployment on the test's Redis and database."""
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_URL": settings.twilio_api_url,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "REDIS_URL": settings.redis_url or "",
        "DATABASE_URL": settings.database_url,
        "CASELINE_API_TOKEN": API_TOKEN,
        "CASELINE_WRAPUP_SECONDS": "0",
        "CASELINE_INSTANCE_PATH": str(instance),
        "PORT": str(port),
        **extra,
    }
    env.pop("CASELINE_INSECURE_DEV", None)
    return env


@contextmanager
def serving(settings: Settings, tmp_path: Path, instance: str) -> Iterator[LiveService]:
    """`caseline serve` (gunicorn, two worker processes) on a free port, on the test
    Redis and database, with its own instance folder."""
    port = free_port()
    # One secret for every instance of the line, as a deployment sets it.
    env = line_env(settings, tmp_path / instance, port,
                   CASELINE_SECRET_KEY="caseline-tests-secret-key")
    process = subprocess.Popen(
        caseline_command("serve", "--workers", "2", "--threads", "4"), env=env, cwd=PROJECT_ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                break
        except requests.RequestException:  # not listening yet, or a slow first answer
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("caseline serve did not start")
        time.sleep(0.1)
    try:
        yield LiveService(url, process, env)
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process a test started: SIGTERM (a graceful stop), SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def live_service(settings: Settings, desk: Desk, tmp_path: Path) -> Iterator[LiveService]:
    """The real web service (gunicorn, two worker processes) on a free port."""
    with serving(settings, tmp_path, "instance") as service:
        yield service


@pytest.fixture
def second_live_service(settings: Settings, desk: Desk, tmp_path: Path,
                        live_service: LiveService) -> Iterator[LiveService]:
    """Another instance of the line beside `live_service` (its own gunicorn master and
    port, the same Redis and database), as two hosts behind a load balancer."""
    with serving(settings, tmp_path, "instance-2") as service:
        yield service
