"""The web side of caseline: Twilio's webhooks, the operators' API and the console."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from flask import Flask

from config import hours
from config.prompts import Prompts
from config.settings import Settings
from directory.db import make_engine, make_session_factory
from directory.phones import normalize_phone
from directory.redis_client import connect_redis, has_replicas
from ivr import gate
from routing.desk import Desk
from telephony import Telephony

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, prompts: Prompts | None = None) -> Flask:
    """Build the Flask app: one Redis pool, one database engine; webhooks, API, console."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    # The API's JSON bodies are small; webhooks have their own, tighter limits (ivr.gate).
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = 512 * 1024
    app.config["MAX_FORM_PARTS"] = gate.MAX_FIELDS
    redis_url = settings.redis_url
    if redis_url is None:
        # The composition root (`caseline serve`) resolves REDIS_URL, starting the
        # embedded Redis when it is unset; the web layer only connects.
        raise ValueError("create_app needs settings.redis_url: run `caseline serve`, "
                         "which starts the embedded Redis when REDIS_URL is unset")
    r = connect_redis(redis_url, socket_timeout=2, socket_connect_timeout=2)
    engine = make_engine(settings.database_url)
    app.extensions["caseline"] = Desk(
        r=r,
        settings=settings,
        # Redirects of waiting callers go out after the webhook has answered.
        telephony=Telephony(settings, background=True),
        session_factory=make_session_factory(engine),
    )
    if has_replicas(r):
        # When no replica acknowledges in time, answers stop waiting for one until
        # "until" (monotonic seconds): `ivr.voice.hooks.keep_through_a_failover`.
        app.extensions["caseline.replica_pause"] = {"until": 0.0}
    app.extensions["caseline.prompts"] = prompts or Prompts(settings.prompts_path)
    app.extensions["caseline.engine"] = engine
    windows, problems = hours.load_posted_windows()
    for problem in problems:
        log.warning("maintenance windows: %s", problem)
    app.extensions["caseline.maintenance"] = windows

    from ivr import api, console, health, metrics, voice

    gate.install(app)
    metrics.install(app)
    health.install(app, settings.database_url)
    app.register_blueprint(voice.bp)
    app.register_blueprint(api.bp)
    # After the gate, so an unknown /voice path is still a bare 404 and never a CSRF 400.
    console.install(app, r, settings, voice.bp, api.bp)
    voice.register_error_pages(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str | int]:
        """Liveness for process managers (no Redis or database touched; /readyz checks
        them, in ivr.health)."""
        return {"status": "ok", "pid": os.getpid()}

    if not settings.twilio_auth_token and settings.insecure_dev:
        log.warning("CASELINE_INSECURE_DEV=1: webhooks accept UNSIGNED requests")
    return app


def warm_up(app: Flask) -> None:
    """Load now what a web process would otherwise load on its first calls: the desk's
    holiday calendar for this year and the next (the holidays library imports every
    country's module on first use, ~280 of them), the REST client's modules, the US
    numbering plan. No request is made; Redis and the database are not touched.

    `caseline serve` calls it before `gc.freeze()`, so these live outside the
    collector's sight instead of lengthening every full collection mid-storm."""
    year = hours.central_date(datetime.now(UTC)).year
    for y in (year, year + 1):
        hours.desk_holidays(y)
    normalize_phone("+16125550100")
    app.extensions["caseline"].telephony.warm()
