"""The web console: advisors sign in, go available or away and see the call
they ring or talk on; supervisors watch the wallboard. Server-rendered pages
(Jinja), sessions in Redis (`web_sessions`), CSRF on every form (Flask-WTF's
CSRFProtect; Twilio's webhooks and the bearer-token API are exempt), live
updates by server-sent events (`stream`)."""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

import redis
from flask import Flask
from flask_wtf.csrf import CSRFProtect

from config.settings import Settings
from ivr.console import stream  # noqa: F401 - adds /console/events to the blueprint
from ivr.console.pages import bp
from ivr.console.web_sessions import RedisSessionInterface

__all__ = ["bp", "install"]


def secret_key(settings: Settings) -> str:
    """CASELINE_SECRET_KEY, or a random key made once in the instance folder (every web
    process on that folder reads the same one)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.instance_path) / "console-secret-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    for _ in range(50):  # another process may be writing it this instant
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: remove it or set CASELINE_SECRET_KEY")


def install(app: Flask, r: redis.Redis, settings: Settings, *exempt: object) -> None:
    """Sessions in Redis, CSRF on every form except the `exempt` blueprints, the pages."""
    app.secret_key = secret_key(settings)
    app.session_interface = RedisSessionInterface(r)
    # A token lives as long as the sign-in: an advisor page stays open all shift.
    app.config["WTF_CSRF_TIME_LIMIT"] = None
    csrf = CSRFProtect(app)
    for blueprint in exempt:
        csrf.exempt(blueprint)  # type: ignore[arg-type]
    # 0 streams (`caseline.server.streams_for`, or the setting): every page polls.
    app.extensions["caseline.console_streams"] = threading.BoundedSemaphore(
        max(0, settings.console_streams))
    app.register_blueprint(bp)
