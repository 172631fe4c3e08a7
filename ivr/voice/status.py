"""The call's status callback: a final status ends the call (frees what it held,
queues its log, once: `routing.call_end.close_call`, as the reconciler does for a
call whose callback never came); any other status changes nothing. A final status
that Redis failed is kept and applied once Redis answers (`ivr.voice.kept_ends`)."""

from __future__ import annotations

import threading

import redis
from flask import Response, current_app

from directory.redis_client import redis_unavailable
from ivr import twiml
from ivr.context import desk, now_ms
from ivr.metrics import count_call
from ivr.voice.form import call_sid, form, whole
from ivr.voice.hooks import bp
from ivr.voice.kept_ends import KeptEnds
from ivr.voice.render import xml
from routing.acd import is_final
from routing.call_end import close_call
from routing.call_state import final_status

_kept_lock = threading.Lock()


@bp.post("/status")
def status() -> Response:
    """The call is over: free what it held and queue its call log (once)."""
    sid, status_, duration, caller = (call_sid(), form("CallStatus"), whole("CallDuration"),
                                      form("From"))
    came_ms = now_ms()
    try:
        call = sid and close_call(desk(), sid, status_, duration, came_ms, caller=caller)
    except redis.RedisError as exc:
        if sid and is_final(status_) and redis_unavailable(exc):
            kept_ends().keep(sid, status_, duration, caller, came_ms)
        raise  # answered by `ivr.voice.errors`, logged and counted there
    if call:
        count_call(call, final_status(call))
    return xml(twiml.empty())


def kept_ends() -> KeptEnds:
    """This app's kept ends, made when first needed (no thread before that)."""
    with _kept_lock:
        kept = current_app.extensions.get("caseline.kept_ends")
        if kept is None:
            kept = KeptEnds(current_app.extensions["caseline"], now_ms)
            current_app.extensions["caseline.kept_ends"] = kept
        return kept
