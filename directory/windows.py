"""The posted maintenance windows, stored where every web process sees them.

The database holds them (`PostedMaintenance`, one row) so they survive a Redis
restart; Redis caches them (`keys.posted_maintenance`) so a call reads them
without SQL. Windows here are plain JSON objects (`start`, `end` in ISO 8601
with offset, `kind`, `note`); `routing.maintenance` turns them into the
calendar's `MaintenanceWindow`s and decides what may be posted. A change runs
alone (a lock in the database), so changes made at the same moment are all kept.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from sqlalchemy.orm import Session, sessionmaker

from directory import keys
from directory.db import take_write_lock
from directory.models import AuditEntry, PostedMaintenance

_ROW = 1
# The lock one change of the posted windows holds at a time (PostgreSQL's advisory
# lock: "windows" in ASCII, as an integer; any number no other lock of caseline's uses).
WINDOWS_LOCK_ID = 0x77_696E_646F_7773


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


def change_windows(
    session_factory: sessionmaker[Session],
    r: redis.Redis,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    now: datetime,
    *,
    initial: list[dict[str, Any]],
    actor: str,
) -> list[dict[str, Any]]:
    """Replace the posted windows with `change(the windows posted now)` (`initial` while
    none was ever stored), in one transaction (the row, its audit, then the cache) that
    runs alone: two changes at once (supervisors posting on two wallboards) each start
    from the other's result, and none is lost. `change` may raise to change nothing.
    The new windows."""
    cached = False
    try:
        with session_factory() as db, db.begin():
            take_write_lock(db.connection(), WINDOWS_LOCK_ID)
            row = db.get(PostedMaintenance, _ROW)
            previous = list(row.windows) if row is not None else list(initial)
            windows = list(change(list(previous)))
            if row is None:
                row = PostedMaintenance(id=_ROW)
                db.add(row)
            row.windows = windows
            row.updated_at = now
            if previous != windows:
                db.add(AuditEntry(at=now, actor=actor, kind="maintenance", record_id="posted",
                                  action="replaced",
                                  changes={"windows": {"old": previous, "new": windows}}))
            db.flush()
            # Cached while the lock is held, so the changes reach the cache in the order
            # they reach the database (a reader filling the cache meanwhile uses NX).
            r.set(keys.posted_maintenance(), json.dumps(windows))
            cached = True
    except BaseException:
        if cached:  # the commit failed after the cache was set: let readers read the row
            with contextlib.suppress(redis.RedisError):
                r.delete(keys.posted_maintenance())
        raise
    return windows
