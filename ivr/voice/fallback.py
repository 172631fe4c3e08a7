"""The fallback reply, recorded: the call log's status `fallback` says exactly that the
caller was given it on this call (`routing.call_state.note_fallback`); and the caller
leaves their queue, any advisor claimed for them released
(`routing.availability.fallback_given`), so no advisor freed later redirects the call
away from the fallback number.

It is recorded where it is given (`ivr.voice.errors`, and `routing.waiting` when Twilio
cannot queue the caller), unless Redis is what failed: then nothing can be written
now: it is kept in this process and written once Redis answers (`ivr.voice.kept_ends`),
and the fallback number's `<Dial>` carries the fact too. Its action (`twiml.FALLBACK_OVER`)
is posted by Twilio from the call itself when the fallback leg is over, to whichever
web process, minutes later as a rule (a conversation at the fallback number), by when
Redis is back; the mark is written then, and a log already written is written again.
"""

from __future__ import annotations

import logging

import redis
from flask import Response, request

from directory.redis_client import redis_unavailable
from ivr import gate, twiml
from ivr.context import desk, now_ms, prompts
from ivr.voice.form import call_sid, call_status, form
from ivr.voice.hooks import bp
from ivr.voice.render import hours_words, xml
from ivr.voice.status import kept_ends
from routing.acd import is_final
from routing.availability import fallback_given

log = logging.getLogger(__name__)


def record_fallback_given(cause: BaseException) -> None:
    """Record that this request's call is given the fallback reply (`fallback`: "number"
    with a fallback number, else "apology"). When Redis is unreachable (the cause, or
    the record's own failure: Redis may go away after the failure it answers), it is
    kept for this process's retry thread (`ivr.voice.kept_ends`) rather than waited
    for (that would delay the caller's reply); the `<Dial>` action records it too.
    Never raises: the reply must go out whatever happens here."""
    sid = ""
    try:
        sid = request.form.get("CallSid", "")
        if not gate.CALL_SID.fullmatch(sid) or is_final(request.form.get("CallStatus", "")) \
                or request.form.get("QueueResult") == "redirected":
            # A post whose reply Twilio ignores, so nobody was given the fallback: made
            # after the caller hung up (a `<Dial>` action after the status callback), or
            # the `<Enqueue>` action of a caller a REST redirect took out of the queue
            # (they are at the redirect's URL already: an advisor's ring, hold-again).
            return
        how = "number" if desk().settings.fallback_number else "apology"
        if not redis_unavailable(cause):
            _note_or_keep(sid, how)
        else:
            kept_ends().keep_fallback(sid, how)
    except Exception:  # noqa: BLE001 - the caller's reply matters more than the record
        log.exception("call %s: could not record that it was given the fallback reply; "
                      "the fallback number's <Dial> action will", sid or "?")


def _note_or_keep(sid: str, how: str) -> None:
    """Write the fallback mark now; kept for the retry thread when Redis is unreachable
    (`redis_unavailable`). Any other failure raises."""
    try:
        fallback_given(desk(), sid, how, now_ms())
    except redis.RedisError as exc:
        if not redis_unavailable(exc):
            raise
        kept_ends().keep_fallback(sid, how)


@bp.post("/fallback/over")
def fallback_over() -> Response:
    """The fallback number's `<Dial>` is over: the call was given the fallback (recorded
    again here, see the module; kept for the retry thread when Redis is unreachable). A
    caller still on the line whom the fallback number did not answer hears the apology
    with the desk's hours, Redis or not (it needs none); the call ends."""
    sid = call_sid()
    try:
        _note_or_keep(sid, "number")
    except redis.RedisError:
        # Not for the caller to pay: the mark is the log's, and their reply needs no Redis.
        log.exception("call %s: could not record that it was given the fallback number", sid)
    if form("DialCallStatus") != "completed" and not is_final(call_status()):
        return xml(twiml.fallback(prompts(), None, hours_words()))
    return xml(twiml.hang_up())
