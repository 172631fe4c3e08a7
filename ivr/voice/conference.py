"""A colleague on the call: the legs joining the call's conference, the end of a
leg's conference, and the colleague's call-progress events. `routing.conference`
decides."""

from __future__ import annotations

from flask import Response, request

from config import webhooks
from ivr import twiml
from ivr.context import desk, now, now_ms
from ivr.voice.form import call_sid, call_status, form
from ivr.voice.hooks import bp
from ivr.voice.render import answer, xml
from jobs.queues import enqueue_colleagues
from routing import conference, survey


def _call() -> str:
    """The contact's CallSid, from the URL (a leg's own CallSid is in the form)."""
    return request.args.get("call", "")[:64]


def _role() -> str:
    """Which leg this is: "advisor" or "contact" (from the URL)."""
    return request.args.get("role", "")[:16]


@bp.post(webhooks.CONFERENCE_JOIN)
def conference_join() -> Response:
    """A leg redirected into the call's conference (or held there by its `<Dial>` action)."""
    sid = _call()
    step = conference.join(desk(), sid, _role(), call_sid(), call_status(), now_ms())
    if isinstance(step, (conference.JoinConference, conference.LeaveConference)):
        return answer(step, sid)
    # Too late for the conference: the end of an answered call (the survey, maybe).
    return answer(survey.after_the_advisor(desk(), sid, step, call_status(), now()), sid)


@bp.post("/conference/ended")
def conference_ended() -> Response:
    """A leg's `<Dial><Conference>` ended: for a contact still on the line, as an
    answered call's end (the survey when the advisor left first)."""
    sid = _call()
    step = conference.after_conference(desk(), sid, _role(), call_status(), now_ms())
    if isinstance(step, conference.LeaveConference):
        return answer(step, sid)
    return answer(survey.after_the_advisor(desk(), sid, step, call_status(), now()), sid)


@bp.post(webhooks.CONFERENCE_COLLEAGUE)
def colleague_progress() -> Response:
    """The colleague's leg answered, or ended (Twilio's call-progress events)."""
    sid, leg, status = _call(), call_sid(), form("CallStatus")
    if conference.colleague_status(desk(), sid, leg, status, now_ms()):
        enqueue_colleagues(desk().job_redis, sid, leg, status)
    return xml(twiml.empty())
