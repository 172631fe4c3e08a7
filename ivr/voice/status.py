"""The call's status callback: a final status ends the call (frees what it held,
queues its log, once); any other status changes nothing."""

from __future__ import annotations

from flask import Response

from ivr import twiml
from ivr.context import desk, now_ms
from ivr.metrics import count_call
from ivr.voice.form import call_sid, form, whole
from ivr.voice.hooks import bp
from ivr.voice.render import xml
from jobs.queues import enqueue_call_log
from routing import acd, conference
from routing.call_state import final_status


@bp.post("/status")
def status() -> Response:
    """The call is over: free what it held and queue its call log (once)."""
    sid = call_sid()
    call = sid and acd.end_call(desk(), sid, form("CallStatus"), whole("CallDuration"),
                                now_ms(), caller=form("From"))
    if call:
        enqueue_call_log(desk().job_redis, sid)
        count_call(call, final_status(call))
        legs = conference.legs_left_behind(call)
        if legs:
            # After Twilio has its answer: the REST requests may take a while.
            d = desk()
            d.telephony.later(lambda: conference.hang_up_legs(d, legs))
    return xml(twiml.empty())
