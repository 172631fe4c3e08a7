"""The app-wide error handler: any failure inside a call answers TwiML that fits where
the request came from (`FAILURE_REPLIES`, the one table of it): the caller's own call
still reaches a human (the fallback number, else an apology with the desk's hours), a
caller on hold keeps their place, a caller who just left a voicemail hears its thanks,
an advisor's leg ends, a status callback hears `<Response/>`, a caller right after a
conversation `<Hangup/>`."""

from __future__ import annotations

import logging
import threading
from enum import Enum

from flask import Flask, Response, current_app, g, request
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import HTTPException, InternalServerError

from ivr import twiml
from ivr.console.pages import bp as console_bp
from ivr.console.pages import failure_page
from ivr.context import desk, now_ms, prompts
from ivr.gate import conversation_just_ended
from ivr.metrics import count_error
from ivr.voice.after_hours import keep_voicemail, voicemail_thanks
from ivr.voice.fallback import record_fallback_given
from ivr.voice.render import hours_words, xml

log = logging.getLogger(__name__)
CONSOLE = str(console_bp.url_prefix)


class Reply(Enum):
    """Which failure reply a webhook gets: what Twilio may do with its TwiML there."""

    # The caller's own call, outside a queue: the fallback number's `<Dial>`, else an
    # apology with the desk's hours (PRODUCT.md: "the caller still reaches a human").
    CALLER = "caller"
    # The caller's waitUrl TwiML (a hold cycle, a key pressed on hold): Twilio allows
    # no `<Dial>` there, and a `<Hangup>` loses the caller their place. They stay on
    # hold and Twilio asks the waitUrl again (`hold_on`).
    HOLD = "hold"
    # An advisor's (or the on-call engineer's) leg: never the fallback from their phone.
    # A short apology and `<Hangup/>` of that leg; the caller's side goes on by its
    # `<Dial>` action (the next advisor, the queue, or the caller's own failure reply).
    LEG = "leg"
    # A status callback (or a transcription's): Twilio does not play its answer.
    CALLBACK = "callback"
    # The survey, after the conversation: a thank-you and goodbye, not a new call.
    AFTER_TALK = "after-talk"
    # A conference leg: the advisor's is a LEG, the contact's the CALLER's (its `role`).
    BY_ROLE = "by-role"
    # A voicemail's `<Record>` action: the message is recorded at Twilio (not lost; its
    # recording kept when Redis is unreachable, `keep_voicemail`): the caller still on
    # the line hears the voicemail's thanks and goodbye, not the fallback right after
    # leaving it; no fallback is given, none is marked.
    RECORDED = "recorded"
    # The fallback number's `<Dial>` action: the caller was with the fallback number
    # (or it did not answer); `<Hangup/>`, never the fallback dialed a second time.
    # Also the caller's own call right after a conversation (`gate.
    # conversation_just_ended`: an advisor hung up first): their problem was handled,
    # so `<Hangup/>` as the gate answers it, never the fallback (a second conversation,
    # or "call again"); the call's end (its status callback) then frees the advisor.
    OVER = "over"


# Every /voice webhook's failure reply, by endpoint (a test holds every route of the
# app to this table). A path that is no webhook (no endpoint) is treated as CALLER.
FAILURE_REPLIES: dict[str, Reply] = {
    "voice.incoming": Reply.CALLER,
    "voice.main_menu": Reply.CALLER,
    "voice.product": Reply.CALLER,
    "voice.case": Reply.CALLER,
    "voice.verify_contact": Reply.CALLER,
    "voice.verify_pin": Reply.CALLER,
    "voice.after_hours_case": Reply.CALLER,
    "voice.outage_route": Reply.CALLER,
    "voice.oncall_result": Reply.CALLER,
    "voice.dial_result": Reply.CALLER,
    "voice.connect": Reply.CALLER,
    # Redirected out of the queue to be put back in it: `<Dial>` is allowed there.
    "voice.hold_again": Reply.CALLER,
    # Out of the queue (a `<Leave/>`, Twilio unable to queue): `<Dial>` is allowed again.
    "voice.queue_result": Reply.CALLER,
    "voice.wait": Reply.HOLD,
    "voice.callback": Reply.HOLD,
    "voice.whisper": Reply.LEG,
    "voice.whisper_accept": Reply.LEG,
    "voice.callback_advisor": Reply.LEG,
    "voice.callback_accept": Reply.LEG,
    "voice.callback_dial_result": Reply.LEG,
    "voice.oncall_whisper": Reply.LEG,
    "voice.oncall_accept": Reply.LEG,
    "voice.conference_join": Reply.BY_ROLE,
    "voice.conference_ended": Reply.BY_ROLE,
    "voice.status": Reply.CALLBACK,
    "voice.callback_status": Reply.CALLBACK,
    "voice.colleague_progress": Reply.CALLBACK,
    "voice.transcribed": Reply.CALLBACK,
    "voice.survey_key": Reply.AFTER_TALK,
    "voice.recorded": Reply.RECORDED,
    "voice.fallback_over": Reply.OVER,
}

# A caller's hold cycles failing for this long (s) in this web process, with a fallback
# number set: they leave the queue (`<Leave/>`), and the Enqueue action's own failure
# reply dials the fallback number (or, Redis back, routes them again). Long enough for
# a Redis restart or a Sentinel failover (a few seconds); without a fallback number
# they hold on until the queue's own limit (`CASELINE_MAX_WAIT_SECONDS`).
HOLD_THROUGH_SECONDS = 30
# How long (s) a failed hold cycle's silence lasts before Twilio asks the waitUrl again.
HOLD_PAUSE_SECONDS = 5
# Failures further apart than this (s) are not one outage: the count starts again.
FAILURES_APART_SECONDS = 60


class HoldFailures:
    """Since when this web process's hold cycles have been failing (wall clock, ms):
    Twilio asks the same waitUrl each cycle, so the outage's length cannot ride on the
    URL. A hold cycle served clears it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: int | None = None
        self._last = 0

    def failed(self, at_ms: int) -> int:
        """Count a failed hold cycle at `at_ms`; how long (ms) they have been failing."""
        with self._lock:
            if self._since is None or at_ms - self._last > FAILURES_APART_SECONDS * 1000:
                self._since = at_ms
            self._last = at_ms
            return at_ms - self._since

    def served(self) -> None:
        """A hold cycle was served: the outage, if any, is over."""
        with self._lock:
            self._since = None


def failure_reply(endpoint: str | None, role: str, after_talk: bool = False) -> Reply:
    """The failure reply of a webhook (`FAILURE_REPLIES`), a conference leg's by `role`;
    `after_talk`: the post says the caller's conversation just ended
    (`gate.conversation_just_ended`), so the caller's own reply is OVER."""
    reply = FAILURE_REPLIES.get(endpoint or "", Reply.CALLER)
    if reply is Reply.BY_ROLE:
        reply = Reply.LEG if role == "advisor" else Reply.CALLER
    if reply is Reply.CALLER and after_talk:
        return Reply.OVER
    return reply


def register_error_pages(app: Flask) -> None:
    """Any failure under /voice answers TwiML that fits where the request came from."""
    app.extensions["caseline.hold_failures"] = HoldFailures()

    @app.after_request
    def hold_served(response: Response) -> Response:
        """A hold cycle answered without a failure ends the count of failed ones."""
        if request.endpoint == "voice.wait" and not g.get("failed"):
            app.extensions["caseline.hold_failures"].served()
        return response

    @app.errorhandler(Exception)
    def voice_failure(exc: Exception) -> Response | HTTPException | tuple[str, int]:
        """TwiML for /voice (`FAILURE_REPLIES`); the console's page for /console (see
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
        reply = failure_reply(request.endpoint, request.args.get("role", ""),
                              after_talk=conversation_just_ended(request))
        if isinstance(exc, HTTPException) and exc.code and exc.code < 500:
            log.warning("voice request %s answered %s", request.path, exc.code)
        elif reply is not Reply.CALLBACK:
            log.exception("voice webhook %s failed; answered as %s", request.path,
                          reply.value)
        if reply is Reply.CALLER:
            record_fallback_given(cause)  # the call log's `fallback`
        if reply is Reply.RECORDED:
            keep_voicemail(cause)
        return xml(_failure_twiml(reply))


def _failure_twiml(reply: Reply) -> VoiceResponse:
    """The TwiML of a failure reply."""
    p = prompts()
    if reply is Reply.CALLBACK:
        return twiml.empty()
    if reply is Reply.LEG:
        return twiml.goodbye(p, p.text("errors.advisor_leg"))
    if reply is Reply.OVER:
        return twiml.hang_up()
    if reply is Reply.RECORDED:
        return voicemail_thanks()
    if reply is Reply.AFTER_TALK:
        return twiml.goodbye(p, p.text("survey.thanks"))
    if reply is Reply.HOLD:
        return _on_hold()
    return twiml.fallback(p, desk().settings.fallback_number, hours_words())


def _on_hold() -> VoiceResponse:
    """A caller on hold whose hold cycle (or key) failed: they keep their place and hear
    the next cycle after a pause; they leave the queue only past its limits (see
    `HOLD_THROUGH_SECONDS`), so the Enqueue action routes them."""
    settings = desk().settings
    failing_ms = current_app.extensions["caseline.hold_failures"].failed(now_ms())
    queue_time = request.form.get("QueueTime", "")  # s, posted by Twilio on hold
    whole = queue_time.isascii() and queue_time.isdecimal() and len(queue_time) < 10
    waited = int(queue_time) if whole else 0
    if settings.fallback_number and failing_ms >= HOLD_THROUGH_SECONDS * 1000:
        log.error("hold cycles failing for %d s: the caller leaves the queue for the "
                  "fallback number", failing_ms // 1000)
        return twiml.leave()
    if waited >= settings.max_wait_seconds:
        log.error("hold cycle failed past the longest wait (%d s): the caller leaves the "
                  "queue", waited)
        return twiml.leave()
    p = prompts()
    return twiml.hold_on(p, p.text("errors.hold"), HOLD_PAUSE_SECONDS)
