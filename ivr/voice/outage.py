"""The outage line after its notices: routing to hosting, and the on-call
engineer's ring at night. `routing.outage` decides."""

from __future__ import annotations

from flask import Response

from ivr import twiml
from ivr.context import desk, now, now_ms, prompts
from ivr.voice.form import call_sid, call_status, dial_bridged, form, leg, whole
from ivr.voice.hooks import bp
from ivr.voice.render import answer, whisper, xml
from routing import oncall, outage


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
                                   whole("DialCallDuration"), now_ms(), call_status=call_status(),
                                   bridged=dial_bridged())
    return answer(decision, sid)


@bp.post("/oncall/whisper")
def oncall_whisper() -> Response:
    """The on-call engineer picked up: who is calling, then a key to take the call."""
    sid, _ = leg()
    return whisper(oncall.play_whisper(desk(), sid), sid, oncall.ONCALL,
                   action="/voice/oncall/accept")


@bp.post("/oncall/accept")
def oncall_accept() -> Response:
    """The on-call engineer pressed a key: bridge them, if the caller is still there."""
    if oncall.take_call(desk(), leg()[0], now_ms()):
        return xml(twiml.bridge())
    return xml(twiml.goodbye(prompts(), prompts().text("whisper.gone")))
