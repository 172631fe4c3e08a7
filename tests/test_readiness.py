"""`/readyz` for the load balancer: 503 while Redis or the database is down, 200 when
both are back; `/healthz` stays 200 throughout (the process is alive).

A Redis server of this test's own is stopped and started again; the database is
made unreachable for real: PostgreSQL's cluster stopped, or the SQLite file
moved away.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from directory.db import head_revision
from ivr import create_app
from tests.conftest import close_app

pytestmark = pytest.mark.databases


def _ready(client) -> tuple[int, dict]:
    response = client.get("/readyz")
    return response.status_code, response.get_json()


def test_readyz_follows_redis_and_the_database_down_and_back(
        settings, engine, own_redis, database_backend, database_url, request):
    app = create_app(settings.with_changes(redis_url=own_redis.url))
    request.addfinalizer(lambda: close_app(app))
    client = app.test_client()
    assert _ready(client) == (200, {"status": "ready", "redis": "ok", "database": "ok",
                                    "schema": head_revision(), "prompts": "ok"})

    own_redis.stop()
    status, body = _ready(client)
    assert status == 503
    assert body["status"] == "unready" and body["redis"].startswith("down")
    assert body["database"] == "ok"
    assert client.get("/healthz").status_code == 200  # alive, only not ready

    own_redis.start()
    assert _ready(client)[0] == 200

    restore = _take_the_database_down(database_backend, database_url, request)
    try:
        status, body = _ready(client)
        assert status == 503
        assert body["database"].startswith("down") and body["redis"] == "ok"
        assert client.get("/healthz").status_code == 200
    finally:
        restore()
    status, body = _ready(client)
    assert (status, body["status"]) == (200, "ready"), body


def _take_the_database_down(backend: str, database_url: str, request):
    """Make the test's database unreachable; return what brings it back."""
    if backend == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        cluster.stop()
        return cluster.start
    path = Path(database_url.removeprefix("sqlite:///"))
    moved = path.with_name(path.name + "-moved")
    path.rename(moved)
    return lambda: moved.rename(path)
