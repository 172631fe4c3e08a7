"""The Desk a worker process uses, built once per process.

`caseline worker` (and tests) call `configure()`; a job run without it builds
the Desk from the environment the first time it needs it.
"""

from __future__ import annotations

from config.settings import Settings
from directory.db import make_engine, make_session_factory
from directory.redis_client import connect_redis
from routing.desk import Desk
from telephony import Telephony

_desk: Desk | None = None


def build_desk(settings: Settings, redis_url: str) -> Desk:
    """A Desk for background work from settings and a Redis URL."""
    return Desk(
        r=connect_redis(redis_url),
        settings=settings,
        telephony=Telephony(settings),
        session_factory=make_session_factory(make_engine(settings.database_url)),
    )


def configure(desk: Desk | None) -> None:
    """Set (or clear, with None) the Desk jobs in this process use."""
    global _desk
    _desk = desk


def current_desk() -> Desk:
    """The configured Desk, built from the environment on first use."""
    global _desk
    if _desk is None:
        settings = Settings.from_env()
        if settings.redis_url is None:
            # `caseline worker` resolves the embedded Redis and calls `configure`.
            raise RuntimeError("no Desk configured and REDIS_URL unset: run `caseline worker`")
        _desk = build_desk(settings, settings.redis_url)
    return _desk
