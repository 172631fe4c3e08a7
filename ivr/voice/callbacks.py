"""A callback's legs: the advisor rung first hears whom it is for, accepts, the
contact is dialed (again, a few times), and the advisor's leg ends.
`routing.callbacks` decides."""

from __future__ import annotations

from flask import Response

from config import webhooks
from ivr import twiml
from ivr.context import desk, now_ms, prompts
from ivr.voice import render
from ivr.voice.form import attempt, call_sid, call_status, form, leg, whole
from ivr.voice.hooks import bp
from ivr.voice.render import answer, xml
from jobs.queues import enqueue_call_log
from routing import callbacks
from routing.whisper import callback_whisper


@bp.post(webhooks.CALLBACK_ADVISOR)
def callback_advisor() -> Response:
    """The advisor picked up a callback: who it is for; any key dials the contact."""
    sid, advisor_id = leg()
    return render.whisper(callback_whisper(desk(), sid, advisor_id, now_ms(), call_sid()),
                          sid, advisor_id, callback=True)


@bp.post("/callback/accept")
def callback_accept() -> Response:
    """The advisor accepted the callback: dial the contact."""
    sid, advisor_id = leg()
    dial = callbacks.accept_callback(desk(), sid, advisor_id, now_ms(), call_sid())
    if dial is None:
        return xml(twiml.goodbye(prompts(), prompts().text("whisper.gone")))
    return answer(dial, sid, advisor_id)


@bp.post("/callback/dial-result")
def callback_dial_result() -> Response:
    """The contact's phone: answered, or ring again a bounded number of times."""
    sid, advisor_id = leg()
    step = callbacks.contact_dial_ended(desk(), sid, advisor_id, form("DialCallStatus"),
                                        whole("DialCallDuration"), attempt(), now_ms(),
                                        call_status())
    return answer(step, sid, advisor_id)


@bp.post(webhooks.CALLBACK_STATUS)
def callback_status() -> Response:
    """The advisor's callback leg's status: at its end (a final `CallStatus`) release
    them and log the call once it is all over; any other status changes nothing."""
    sid, advisor_id = leg()
    if callbacks.end_callback(desk(), sid, advisor_id, form("CallStatus"), now_ms(),
                              call_sid()):
        enqueue_call_log(desk().job_redis, sid)
    return xml(twiml.empty())
