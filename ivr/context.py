"""Accessors for what `create_app` built, for use inside requests."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import current_app, request

from config.hours import MaintenanceWindow
from config.prompts import Prompts
from routing.desk import Desk
from routing.maintenance import posted_windows


def desk() -> Desk:
    """The app's Desk (Redis, database, settings, Twilio client)."""
    return current_app.extensions["caseline"]


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
