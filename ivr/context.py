"""Accessors for what `create_app` built, for use inside requests."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import current_app, request

from config.hours import MaintenanceWindow
from config.prompts import Prompts
from directory.redis_client import connection_of_its_own
from routing.desk import Desk
from routing.maintenance import posted_windows

_thread = threading.local()


def desk() -> Desk:
    """The app's Desk (Redis, database, settings, Twilio client), as this thread uses it:
    its Redis client keeps one connection of the app's pool for this thread's
    commands (`connection_of_its_own`) instead of checking one out per command. The
    same Redis, database and REST client; RQ's client stays the app's."""
    shared: Desk = current_app.extensions["caseline"]
    mine = getattr(_thread, "desk", None)
    if mine is None or mine[0] is not shared:
        mine = (shared, replace(shared, r=connection_of_its_own(shared.r),
                                jobs=shared.job_redis))
        _thread.desk = mine
    return mine[1]


def prompts() -> Prompts:
    """The app's prompts."""
    return current_app.extensions["caseline.prompts"]


def now_ms() -> int:
    """The clock, read at the edge of the system only."""
    return int(time.time() * 1000)


def now() -> datetime:
    """The clock as an aware datetime."""
    return datetime.now(UTC)


def initial_maintenance_windows() -> list[MaintenanceWindow]:
    """config/maintenance.json's windows, read when the app was built."""
    return current_app.extensions["caseline.maintenance"]


def maintenance_windows() -> list[MaintenanceWindow]:
    """The posted maintenance windows now: the API's (shared by every process),
    else the file's."""
    return posted_windows(desk(), initial_maintenance_windows())


def base_url() -> str:
    """Where Twilio reaches this service (for absolute URLs given to the REST API):
    `PUBLIC_BASE_URL`, else the URL this request came in on."""
    return desk().settings.public_base_url or request.url_root.rstrip("/")


def public_path() -> str:
    """The path Twilio reaches this service under, without its last slash ("" at the
    host's root; "/caseline" for `PUBLIC_BASE_URL=https://host/caseline`): the path of
    `PUBLIC_BASE_URL`, else the script root this request came in with (SCRIPT_NAME).
    Read from the settings, never from Redis: the answer of a failed webhook needs it.
    """
    public = current_app.extensions["caseline"].settings.public_base_url
    return _path_of(public) if public else request.script_root


@functools.lru_cache(maxsize=4)
def _path_of(url: str) -> str:
    """The path of `url`, without its last slash."""
    return urlsplit(url).path.rstrip("/")
