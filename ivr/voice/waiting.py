"""A caller waiting in Twilio's queue: each hold cycle, and the keys they may
press on hold. `routing.waiting` decides."""

from __future__ import annotations

from flask import Response

from config import webhooks
from ivr import twiml
from ivr.context import desk, now, now_ms, prompts
from ivr.voice.form import call_sid, call_status, key
from ivr.voice.hooks import bp
from ivr.voice.render import answer, xml
from routing import waiting


@bp.post("/wait")
def wait() -> Response:
    """One hold cycle: leave for a free advisor, else position, estimate, music."""
    sid = call_sid()
    return answer(waiting.hold_cycle(desk(), sid, now_ms()), sid)


@bp.post("/callback")
def callback() -> Response:
    """A waiting caller pressed a key: 1 keeps their place for a callback (when the
    policy allows it), 2 leaves the queue for a voicemail on their case."""
    sid = call_sid()
    return answer(waiting.press_hold_key(desk(), sid, key(), now()), sid)


@bp.post(webhooks.HOLD_AGAIN)
def hold_again() -> Response:
    """A waiting caller redirected out of Twilio's queue to be put back in it at once
    (`waiting.offer_voicemails`): its waitUrl, asked as they join, offers the voicemail.
    Their place is the desk's queue, untouched."""
    sid = call_sid()
    decision = waiting.hold_again(desk(), sid, now_ms(), call_status())
    return xml(twiml.route(prompts(), decision, sid, []))
