"""The desk's moving parts bundled once, so routing functions take one argument
for "where things live" and the clock separately."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from directory.redis_client import raw_twin
from telephony import Telephony


@dataclass(frozen=True)
class Desk:
    """Redis, the database, settings and the Twilio client of one process."""

    r: redis.Redis
    settings: Settings
    telephony: Telephony
    session_factory: sessionmaker[Session] | None = None
    # RQ needs raw bytes; `r` decodes to str. Same server, its own pool.
    jobs: redis.Redis | None = None

    @property
    def job_redis(self) -> redis.Redis:
        """The connection RQ queues use (bytes, not decoded)."""
        if self.jobs is not None:
            return self.jobs
        jobs = raw_twin(self.r)
        object.__setattr__(self, "jobs", jobs)
        return jobs

    @property
    def lease_ms(self) -> int:
        """How long a fresh claim holds an advisor (ring timeout plus margin)."""
        return self.settings.lease_seconds * 1000
