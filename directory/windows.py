"""The posted maintenance windows, stored where every web process sees them.

The database holds them (`PostedMaintenance`, one row) so they survive a Redis
restart; Redis caches them (`keys.posted_maintenance`) so a call reads them
without SQL. Windows here are plain JSON objects (`start`, `end` in ISO 8601
with offset, `kind`, `note`); `routing.maintenance` turns them into the
calendar's `MaintenanceWindow`s and decides what may be posted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import redis
from sqlalchemy.orm import Session, sessionmaker

from directory import keys
from directory.models import AuditEntry, PostedMaintenance

_ROW = 1


def stored_windows(
    session_factory: sessionmaker[Session], r: redis.Redis
) -> list[dict[str, Any]] | None:
    """The windows posted through the API, or None when none ever were."""
    cached = r.get(keys.posted_maintenance())
    if cached is None:
        with session_factory() as db:
            row = db.get(PostedMaintenance, _ROW)
            windows = list(row.windows) if row is not None else None
        # NX: a replacement stored meanwhile (it SETs after its commit) wins.
        r.set(keys.posted_maintenance(), json.dumps(windows), nx=True)
        return windows
    value = json.loads(cached)
    return list(value) if isinstance(value, list) else None


def store_windows(
    session_factory: sessionmaker[Session],
    r: redis.Redis,
    windows: list[dict[str, Any]],
    now: datetime,
    *,
    previous: list[dict[str, Any]],
    actor: str,
) -> None:
    """Replace the posted windows (database, audit, then the cache)."""
    with session_factory() as db, db.begin():
        row = db.get(PostedMaintenance, _ROW)
        if row is None:
            row = PostedMaintenance(id=_ROW)
            db.add(row)
        row.windows = list(windows)
        row.updated_at = now
        if previous != windows:
            db.add(AuditEntry(at=now, actor=actor, kind="maintenance", record_id="posted",
                              action="replaced",
                              changes={"windows": {"old": previous, "new": windows}}))
    r.set(keys.posted_maintenance(), json.dumps(windows))
