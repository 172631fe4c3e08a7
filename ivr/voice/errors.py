"""The app-wide error handler: any failure inside a call still answers TwiML that
reaches a human (the fallback number, else an apology with the desk's hours)."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, InternalServerError

from ivr import twiml
from ivr.console.pages import bp as console_bp
from ivr.console.pages import failure_page
from ivr.context import desk, prompts
from ivr.metrics import count_error
from ivr.voice.render import hours_words, xml

log = logging.getLogger(__name__)
CONSOLE = str(console_bp.url_prefix)
# Documents an advisor's leg runs inside the caller's `<Dial>` (`<Number url>`), where
# `<Dial>` is not allowed: a failure there ends the advisor's leg with a word, and the
# caller, never bridged, goes on (their `<Dial>` action: `DialBridged=false`).
WHISPER_LEGS = frozenset({"voice.whisper", "voice.whisper_accept", "voice.oncall_whisper",
                          "voice.oncall_accept"})


def register_error_pages(app: Flask) -> None:
    """Any failure under /voice answers TwiML that still reaches a human."""

    @app.errorhandler(Exception)
    def voice_failure(exc: Exception) -> Response | HTTPException | tuple[str, int]:
        """TwiML that reaches a human for /voice; the console's page for /console (see
        `ivr.console.pages.failure_page`); JSON or the HTTP error elsewhere."""
        # A failure before the view (Redis opening the console's session) comes wrapped.
        cause = (exc.original_exception if isinstance(exc, InternalServerError)
                 and exc.original_exception is not None else exc)
        count_error(cause)
        g.failed = True  # no more Redis after this answer (ivr.voice.hooks)
        if request.path == CONSOLE or request.path.startswith(CONSOLE + "/"):
            return failure_page(cause)  # type: ignore[no-any-return]
        if not request.path.startswith("/voice"):
            if isinstance(exc, HTTPException) and request.path.startswith("/api/"):
                # An unknown API path or method too (no view ran): JSON, as every answer.
                return {"error": exc.description or exc.name}, exc.code or 500  # type: ignore[return-value]
            if isinstance(exc, HTTPException):
                return exc
            log.exception("internal error on %s", request.path)
            return {"error": "internal error"}, 500  # type: ignore[return-value]
        if isinstance(exc, HTTPException) and exc.code and exc.code < 500:
            if request.path == "/voice/status":
                return xml(twiml.empty(), 200)
            log.warning("voice request %s answered %s", request.path, exc.code)
        else:
            log.exception("voice webhook %s failed; caller sent to fallback", request.path)
        if request.path == "/voice/status":
            return xml(twiml.empty(), 200)
        if request.endpoint in WHISPER_LEGS:
            return xml(twiml.goodbye(prompts(), prompts().text("whisper.failed")))
        settings = desk().settings
        return xml(twiml.fallback(prompts(), settings.fallback_number, hours_words()))
