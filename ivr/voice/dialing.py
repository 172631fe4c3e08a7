"""Ringing advisors: the end of a ring, the whisper and its accept key, a waiting
caller brought to their advisor, and the caller leaving Twilio's queue.
`routing.acd` and `routing.waiting` decide."""

from __future__ import annotations

from flask import Response, request

from config import webhooks
from ivr import twiml
from ivr.context import desk, now, now_ms, prompts
from ivr.voice import render
from ivr.voice.form import (
    attempt,
    call_sid,
    call_status,
    dial_bridged,
    form,
    leg,
    whole,
    whole_arg,
)
from ivr.voice.hooks import bp
from ivr.voice.render import answer, xml
from routing import acd, conference, outage, survey, waiting
from routing.call_state import get_call
from routing.whisper import play_whisper


@bp.post("/dial-result")
def dial_result() -> Response:
    """The ring of an advisor ended: done if answered, else the next advisor."""
    sid, advisor_id = call_sid(), request.args.get("advisor", "")[:64]
    call = get_call(desk().r, sid)
    moving = conference.moved_out_of_dial(desk(), sid, call_status(), call=call)
    if moving is not None:
        return answer(moving, sid)
    decision = acd.after_dial(desk(), sid, advisor_id, form("DialCallStatus"),
                              whole("DialCallDuration"), now_ms(), call_status=call_status(),
                              call=call, bridged=dial_bridged())
    return answer(survey.after_the_advisor(desk(), sid, decision, call_status(), now()), sid)


@bp.post("/survey")
def survey_key() -> Response:
    """A key for one survey question (1-5, # to skip, 9 to opt out); silence skips."""
    sid = call_sid()
    question = whole_arg("q")
    return answer(survey.answer(desk(), sid, question, form("Digits", 4), now()), sid)


@bp.post("/whisper")
def whisper() -> Response:
    """What the advisor hears before the caller is bridged."""
    sid, advisor_id = leg()
    return render.whisper(play_whisper(desk(), sid, advisor_id, now_ms()), sid, advisor_id)


@bp.post("/whisper/accept")
def whisper_accept() -> Response:
    """The advisor pressed a key: bridge them, if the caller is still there."""
    sid, advisor_id = leg()
    if acd.accept_call(desk(), sid, advisor_id, now_ms(), leg_sid=call_sid()):
        return xml(twiml.bridge())
    return xml(twiml.goodbye(prompts(), prompts().text("whisper.gone")))


@bp.post(webhooks.CONNECT)
def connect() -> Response:
    """A waiting caller redirected by the REST API: dial the advisor claimed for them,
    or the on-call engineer whose line was taken for them."""
    sid, p = call_sid(), prompts()
    decision = outage.connect_redirected(desk(), sid, now_ms(), call_status=call_status())
    return xml(twiml.route(p, decision, sid, [p.text("routing.connecting")]))


@bp.post("/queue-result")
def queue_result() -> Response:
    """The caller left the queue: route again if they were asked to leave (Twilio's
    failures to queue them still reach someone: `routing.waiting.after_queue`)."""
    sid = call_sid()
    step = waiting.after_queue(desk(), sid, form("QueueResult"), form("CallStatus"), attempt(),
                               now_ms())
    return answer(step, sid)
