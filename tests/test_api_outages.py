"""The operators' API while Redis or the database is down: every endpoint answers,
none with a 500; what needs the missing store is a 503 naming it, in the API's
error shape (`{"error": ...}`, plus `unavailable`), with `Retry-After`; and a
write refused so changed nothing, in the database or in the cache. Redis back
empty under the running app: the queues and the stats still list every team.

Both go down for real: a Redis server of the test's own is stopped (or made a
replica of nothing: it answers, but refuses every write), then started again empty;
the SQLite database's folder is moved away (every new connection then fails, as with
a stopped server; see tests/test_drills.py).
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

import directory
from directory import cache_directory, keys, records
from directory.models import AuditEntry, Case, Contact, PostedMaintenance
from ivr import create_app
from tests.conftest import (
    API_TOKEN,
    OwnRedis,
    close_app,
    free_port,
    refusing_writes_after_a_failed_snapshot,
)

API = {"Authorization": f"Bearer {API_TOKEN}"}
NEW_CASE = {"district": "D100", "owner": "A7", "status": "open", "priority": "high",
            "product": "campus"}
PAT = {"name": "Pat Lee", "district": "D100", "phone": "+16125550199", "pin": "1357",
       "last_active": "2026-10-01"}
WINDOW = {"start": "2026-12-12T00:00:00-06:00", "end": "2026-12-12T04:00:00-06:00",
          "outage": True, "note": ""}

READS = [
    ("GET", "/api/advisors", None),
    ("GET", "/api/queues", None),
    ("GET", "/api/stats", None),
    ("GET", "/api/cases/2024117/calls", None),
    ("GET", "/api/announcement", None),
    ("GET", "/api/maintenance", None),
]
WRITES = [
    ("PUT", "/api/advisors/A7/status", {"status": "available"}),
    ("PUT", "/api/advisors/A2/status", {"status": "offline"}),
    ("PUT", "/api/cases/2024117", {**NEW_CASE, "owner": "A2"}),
    ("PUT", "/api/cases/2024555", NEW_CASE),
    ("DELETE", "/api/cases/2024117", None),
    ("PUT", "/api/contacts/5001", PAT),
    ("DELETE", "/api/contacts/5001", None),
    ("POST", "/api/contacts/5001/unlock", None),
    ("PUT", "/api/announcement", {"text": "Gradebook is slow", "active": True}),
    ("PUT", "/api/maintenance", [WINDOW]),
    ("POST", "/api/advisors/A7/colleague", {"phone": "+16515550150"}),
    ("DELETE", "/api/advisors/A7/colleague", None),
]
# What the database alone serves: nothing else can answer them.
NEEDS_THE_DATABASE = {"/api/advisors", "/api/stats", "/api/cases/2024117/calls"}
# The directory's writes (the database is their truth).
DIRECTORY_WRITES = {"/api/cases/2024117", "/api/cases/2024555", "/api/contacts/5001",
                    "/api/maintenance"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The SQLite database in a folder of its own, so the test can take the folder away."""
    return f"sqlite:///{tmp_path / 'db' / 'caseline.db'}"


def send(client, method: str, path: str, body: object):
    """One API request with the bearer token."""
    return client.open(path, method=method, json=body, headers=API)


def assert_unavailable(response, store: str) -> None:
    """A 503 in the API's error shape, naming `store`."""
    assert response.status_code == 503, response.get_data(as_text=True)
    body = response.get_json()
    assert body["unavailable"] == store
    assert isinstance(body["error"], str) and body["error"]
    assert int(response.headers["Retry-After"]) > 0


def directory_state(desk) -> dict[str, object]:
    """What a refused write must leave alone: the cases, the contact, the posted
    maintenance windows, the audit."""
    with desk.session_factory() as db:
        cases = {c.number: (c.owner_id, c.status, c.priority) for c in db.scalars(select(Case))}
        contact = db.get(Contact, "5001")
        return {"cases": cases,
                "contact": (contact.phone, contact.pin_hash, contact.deactivated),
                "maintenance": db.scalars(select(PostedMaintenance.windows)).all(),
                "audit": db.scalars(select(AuditEntry.id)).all()}


def test_database_down_reads_answer_503_and_writes_change_nothing(
        client, app, desk, engine, lakeview, tmp_path):
    before = directory_state(desk)
    cached_case = desk.r.hgetall(keys.case("2024117"))
    # No connection kept open into the old folder: the app's nor the test's.
    app.extensions["caseline.engine"].dispose()
    engine.dispose()
    folder, away = tmp_path / "db", tmp_path / "db-away"
    folder.rename(away)
    try:
        for method, path, body in READS + WRITES:
            response = send(client, method, path, body)
            assert response.status_code != 500, (method, path, response.get_data(as_text=True))
            assert response.is_json, (method, path)
            if path in NEEDS_THE_DATABASE or (method != "GET" and path in DIRECTORY_WRITES):
                assert_unavailable(response, "database")
        # Presence and queues live in Redis: they go on without the database.
        assert send(client, "GET", "/api/queues", None).status_code == 200
        assert not folder.exists()  # nothing recreated an empty database meanwhile
    finally:
        away.rename(folder)
    assert directory_state(desk) == before
    assert desk.r.hgetall(keys.case("2024117")) == cached_case
    assert send(client, "GET", "/api/stats", None).status_code == 200


def serving_on(own_redis: OwnRedis, settings, desk, request):
    """The app on the test's own Redis, with the directory cached there as `caseline
    serve` caches it at its start: (its test client, a client of that Redis)."""
    app = create_app(settings.with_changes(redis_url=own_redis.url))
    request.addfinalizer(lambda: close_app(app))
    cached = redis.Redis.from_url(own_redis.url, decode_responses=True)
    request.addfinalizer(cached.close)
    cache_directory(desk.session_factory, cached, datetime.now(UTC))
    return app.test_client(), cached


def test_redis_down_every_endpoint_answers_503_and_writes_change_nothing(
        settings, desk, lakeview, own_redis, request):
    app = create_app(settings.with_changes(redis_url=own_redis.url))
    request.addfinalizer(lambda: close_app(app))
    client = app.test_client()
    before = directory_state(desk)
    own_redis.stop()

    for method, path, body in READS + WRITES:
        response = send(client, method, path, body)
        if path == "/api/cases/2024117/calls":  # the call logs are the database's alone
            assert response.status_code == 200
            continue
        assert_unavailable(response, "redis")
    # The database is the directory's truth: a case or contact refused is not in it
    # either (the cache the calls read would not have had it).
    assert directory_state(desk) == before


@pytest.fixture
def more_teams(directory) -> None:
    """Lakeview, and a Food Service advisor: three teams in the directory."""
    directory.advisor("A5", ["food-service"], phone="+16515550105")
    directory.load()


def test_redis_back_empty_queues_and_stats_list_every_team_with_zeros(
        client, desk, lakeview, more_teams, r):
    teams = ["food-service", "general", "hosting"]
    assert sorted(send(client, "GET", "/api/queues", None).get_json()) == teams
    r.flushdb()  # Redis back empty (flushed, or restarted without its data)

    assert send(client, "GET", "/api/queues", None).get_json() == dict.fromkeys(teams, [])
    r.flushdb()  # again: the stats rebuild it themselves
    stats = send(client, "GET", "/api/stats", None).get_json()
    assert sorted(stats) == teams
    for figures in stats.values():
        assert (figures["waiting"], figures["longest_wait_seconds"], figures["answered"],
                figures["abandoned"]) == (0, 0.0, 0, 0)
    # The cache is whole again: the advisors back (offline), the directory marked loaded.
    assert r.exists(keys.directory_loaded())
    assert r.hget(keys.advisor("A5"), "status") == "offline"


def test_maintenance_read_while_the_database_is_down_never_answers_the_files_windows(
        client, app, desk, engine, lakeview, tmp_path, r):
    # Posted through the API, then Redis loses its copy (flushed, restarted empty).
    assert send(client, "PUT", "/api/maintenance", [WINDOW]).status_code == 200
    r.delete(keys.posted_maintenance())
    app.extensions["caseline.engine"].dispose()
    engine.dispose()
    folder, away = tmp_path / "db", tmp_path / "db-away"
    folder.rename(away)
    try:
        # The posted windows are in the database alone: not the file's instead.
        assert_unavailable(send(client, "GET", "/api/maintenance", None), "database")
    finally:
        away.rename(folder)
    assert send(client, "GET", "/api/maintenance", None).get_json() == [WINDOW]


def test_redis_restarted_empty_under_the_app_queues_and_stats_list_every_team(
        settings, desk, lakeview, own_redis, request):
    client, _ = serving_on(own_redis, settings, desk, request)
    assert sorted(send(client, "GET", "/api/queues", None).get_json()) == ["general", "hosting"]

    own_redis.stop()
    own_redis.start()  # back, with nothing in it; the app was never restarted

    assert send(client, "GET", "/api/queues", None).get_json() == {"general": [], "hosting": []}
    stats = send(client, "GET", "/api/stats", None).get_json()
    assert sorted(stats) == ["general", "hosting"]
    assert all(figures["waiting"] == 0 for figures in stats.values())


def test_redis_read_only_a_refused_directory_write_changed_nothing(
        settings, desk, lakeview, own_redis, request):
    """Redis answers but takes no write (a primary demoted to a replica mid-failover,
    Redis's own READONLY): each directory write is 503 and neither the database nor the
    cache changed; once Redis takes writes again, the same request goes through."""
    client, cached = serving_on(own_redis, settings, desk, request)
    before, case_before = directory_state(desk), cached.hgetall(keys.case("2024117"))
    # A replica of a primary that is not there: it keeps its data, refuses writes.
    cached.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
    try:
        for method, path, body in WRITES:
            if path in DIRECTORY_WRITES:
                assert_unavailable(send(client, method, path, body), "redis")
        assert directory_state(desk) == before
        assert cached.hgetall(keys.case("2024117")) == case_before
    finally:
        cached.execute_command("REPLICAOF", "NO", "ONE")
    moved = send(client, "PUT", "/api/cases/2024117", {**NEW_CASE, "owner": "A2"})
    assert moved.status_code == 200, moved.get_data(as_text=True)
    assert cached.hget(keys.case("2024117"), "owner") == "A2"


# A Lua script that keeps Redis busy for 1 s: every other client's commands wait behind it.
STALL = ("local t = redis.call('TIME'); local s = t[1] * 1e6 + t[2]; "
         "while true do local n = redis.call('TIME'); "
         "if n[1] * 1e6 + n[2] - s > 1000000 then break end end; return 1")


def test_a_directory_write_that_timed_out_on_redis_is_not_what_calls_read(
        desk, lakeview, redis_url, request):
    """Redis stalls past the client's socket timeout (a fork for a snapshot, a slow
    command) as a case's new owner is written: the change is refused (the API's 503)
    and the database rolls back, but Redis still runs what it had received once the
    stall ends. Calls must not route by a change answered as refused: before the
    commit the cached case is only dropped, so the next lookup reads the database."""
    slow = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=0.3)
    busy = redis.Redis.from_url(redis_url)
    request.addfinalizer(slow.close)
    request.addfinalizer(busy.close)
    stalls: list[threading.Thread] = []

    def stall_first(command):  # the timing only: every command still goes to Redis
        def stalled(*args, **kwargs):
            if not stalls:
                stalls.append(threading.Thread(target=busy.eval, args=(STALL, 0)))
                stalls[-1].start()
                time.sleep(0.05)
            return command(*args, **kwargs)
        return stalled

    # The stall begins at the change's first write to Redis, whichever it is.
    for name in ("delete", "pipeline", "hset"):
        setattr(slow, name, stall_first(getattr(slow, name)))
    try:
        with pytest.raises(redis.TimeoutError):  # the API answers it 503
            records.put_case(desk.session_factory, slow, "2024117",
                             {**NEW_CASE, "owner": "A2"}, datetime.now(UTC))
    finally:
        for stall in stalls:
            stall.join()
    time.sleep(0.2)  # whatever Redis held back has run
    assert directory_state(desk)["cases"]["2024117"][0] == "A7"  # rolled back
    case = directory.find_case(desk.r, desk.session_factory, "2024117")
    assert case is not None and case["owner"] == "A7"  # what the next call routes by


def test_redis_out_of_memory_is_a_503_and_changes_nothing(
        settings, desk, lakeview, own_redis, request):
    """Redis full (`maxmemory`, no eviction) refuses writes: the announcement put then is
    a 503, as with a read-only Redis, and callers hear what they heard before."""
    client, cached = serving_on(own_redis, settings, desk, request)
    before = send(client, "GET", "/api/announcement", None).get_json()
    cached.config_set("maxmemory-policy", "noeviction")
    cached.config_set("maxmemory", "1")
    try:
        assert_unavailable(send(client, "PUT", "/api/announcement",
                                {"text": "Gradebook is slow", "active": True}), "redis")
        assert send(client, "GET", "/api/announcement", None).get_json() == before
    finally:
        cached.config_set("maxmemory", "0")


def test_redis_refusing_writes_after_a_failed_snapshot_is_a_503_and_changes_nothing(
        settings, desk, lakeview, own_redis, request, tmp_path):
    """A Redis whose last snapshot failed refuses writes (MISCONF) until one succeeds:
    the API's writes are a 503 then, as with a read-only or full Redis, not a 500."""
    client, cached = serving_on(own_redis, settings, desk, request)
    before = send(client, "GET", "/api/announcement", None).get_json()
    announcement = {"text": "Gradebook is slow", "active": True}
    with refusing_writes_after_a_failed_snapshot(cached, tmp_path):
        assert_unavailable(send(client, "PUT", "/api/announcement", announcement), "redis")
        assert_unavailable(send(client, "PUT", "/api/advisors/A7/status",
                                {"status": "available"}), "redis")
        assert send(client, "GET", "/api/announcement", None).get_json() == before
        assert cached.hget(keys.advisor("A7"), "status") == "offline"
    assert send(client, "PUT", "/api/announcement", announcement).status_code == 200


def test_a_postgresql_server_that_never_answers_is_a_503_not_a_request_held_for_ever(
        settings, request):
    """A PostgreSQL gone from the network (its address still takes the connection, as a
    load balancer or a dead host's kernel may, and nothing answers) is a 503 once the
    connection's timeout is out: a request that needs the database is not held."""
    silent = socket.socket()
    request.addfinalizer(silent.close)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # taken by the kernel, never answered
    port = silent.getsockname()[1]
    app = create_app(settings.with_changes(
        database_url=f"postgresql://caseline@127.0.0.1:{port}/caseline"))
    request.addfinalizer(lambda: close_app(app))
    answers = []
    asking = threading.Thread(target=lambda: answers.append(
        send(app.test_client(), "GET", "/api/advisors", None)), daemon=True)
    asking.start()
    asking.join(timeout=30)
    assert answers, "GET /api/advisors still waiting on a silent PostgreSQL after 30 s"
    assert_unavailable(answers[0], "database")
