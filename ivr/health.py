"""`GET /readyz`: whether this process can serve calls right now, for the load
balancer (`/healthz`, beside it in `ivr`, is liveness only and touches nothing).

Ready means Redis answers PING and the database answers a read of its schema
revision on a new connection. Anything else is 503, naming what is down (the
error's class only: the probe is unauthenticated; the full error goes to the
log), so the balancer stops sending this node calls until both are back.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from directory.db import SchemaError, database_revision, make_probe_engine
from ivr.context import desk, prompts

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


def install(app: Flask, database_url: str) -> None:
    """Register /readyz, probing `database_url` with connections of its own."""
    app.extensions["caseline.probe_engine"] = make_probe_engine(database_url)
    app.register_blueprint(bp)


def _redis() -> str:
    """The text "ok", or why Redis is not usable."""
    try:
        desk().r.ping()
    except redis.RedisError as exc:
        log.warning("readiness: Redis is down: %s", exc)
        return f"down ({type(exc).__name__})"
    return "ok"


def _database() -> tuple[str, str | None]:
    """("ok", revision), or (why the database is not usable, None)."""
    engine: Engine = current_app.extensions["caseline.probe_engine"]
    try:
        return "ok", database_revision(engine)
    except (SQLAlchemyError, SchemaError) as exc:
        log.warning("readiness: the database is down: %s", exc)
        return f"down ({type(exc).__name__})", None


def _prompts() -> str:
    """"ok", or that the prompts file on disk is not in use (the last good prompts are,
    so this node still serves calls: not a reason to be unready; the log names the file,
    the line and the problem)."""
    said = prompts()
    said.text("voice.voice")  # looks at the file, as a call would
    return "ok" if said.problem is None else "file not in use (see the log)"


@bp.get("/readyz")
def readyz() -> tuple[dict[str, str | None], int]:
    """200 `{"status": "ready", "redis": "ok", "database": "ok", "schema": "0002",
    "prompts": "ok"}` when both answer; 503 with `"status": "unready"` and what is down
    otherwise. `prompts` tells whether the prompts file on disk is the one in use."""
    redis_state = _redis()
    database_state, revision = _database()
    ready = redis_state == "ok" and database_state == "ok"
    body = {"status": "ready" if ready else "unready", "redis": redis_state,
            "database": database_state, "schema": revision, "prompts": _prompts()}
    return body, 200 if ready else 503
