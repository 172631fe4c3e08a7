"""The desk's moving parts bundled once, so routing functions take one argument
for "where things live" and the clock separately."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from routing.telephony import Telephony


@dataclass(frozen=True)
class Desk:
    """Redis, the database, settings and the Twilio client of one process."""

    r: redis.Redis
    settings: Settings
    telephony: Telephony
    session_factory: sessionmaker[Session] | None = None

    @property
    def lease_ms(self) -> int:
        """How long a fresh claim holds an advisor (ring timeout plus margin)."""
        return self.settings.lease_seconds * 1000
