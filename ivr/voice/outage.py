"""The outage line after its notices: routing to hosting, and the on-call
engineer's ring at night. `routing.outage` decides."""

from __future__ import annotations

from flask import Response

from ivr.context import desk, now, now_ms
from ivr.voice.form import call_sid, call_status, form, whole
from ivr.voice.hooks import bp
from ivr.voice.render import answer
from routing import outage


@bp.post("/outage/route")
def outage_route() -> Response:
    """After the announcement: the caller stayed (or pressed a key) to reach someone."""
    sid = call_sid()
    return answer(outage.route(desk(), sid, now(), now_ms()), sid)


@bp.post("/oncall-result")
def oncall_result() -> Response:
    """The on-call engineer's ring ended: done if answered, else wait for hosting."""
    sid = call_sid()
    decision = outage.after_oncall(desk(), sid, form("DialCallStatus"),
                                   whole("DialCallDuration"), now_ms(), call_status=call_status())
    return answer(decision, sid)
