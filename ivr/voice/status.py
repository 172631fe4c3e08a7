"""The call's status callback: a final status ends the call (frees what it held,
queues its log, once: `routing.call_end.close_call`, as the reconciler does for a
call whose callback never came); any other status changes nothing."""

from __future__ import annotations

from flask import Response

from ivr import twiml
from ivr.context import desk, now_ms
from ivr.metrics import count_call
from ivr.voice.form import call_sid, form, whole
from ivr.voice.hooks import bp
from ivr.voice.render import xml
from routing.call_end import close_call
from routing.call_state import final_status


@bp.post("/status")
def status() -> Response:
    """The call is over: free what it held and queue its call log (once)."""
    sid = call_sid()
    call = sid and close_call(desk(), sid, form("CallStatus"), whole("CallDuration"),
                              now_ms(), caller=form("From"))
    if call:
        count_call(call, final_status(call))
    return xml(twiml.empty())
