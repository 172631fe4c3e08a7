"""The whisper breaks as the advisor picks up: nobody talked, so nobody "answered".

A2 picks up for Pat, and the whisper's request meets a Redis blip (it fails) or a
Redis that came back empty (no session). Either way caseline's own reply hangs up
A2's leg, which Twilio reports to the `<Dial>` action as `DialCallStatus=completed`,
`DialBridged=false`. PRODUCT: no key counts as no answer, the caller is not bridged
and goes on; the caller still reaches a human. So Pat goes on (the next advisor, the
queue, or, the session lost, the greeting again), is never surveyed for a talk that
never happened, and the call log does not say A2 answered.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from sqlalchemy import select

from config.prompts import Prompts
from directory.models import CallLog
from directory.redis_client import ThreadClient
from routing import presence
from tests.conftest import make_available, run_jobs
from twilio_side.results import CallResult, Event

PAT = "+16125550101"
A2 = "+16515550102"
FALLBACK = "+16515550000"


@pytest.fixture(params=[None, FALLBACK], ids=["no-fallback", "fallback-number"])
def settings(settings, request):
    """With and without `CASELINE_FALLBACK_NUMBER`: a failure's reply on an advisor's
    leg must never dial it (no `<Dial>` inside a `<Number url>`)."""
    return settings.with_changes(fallback_number=request.param)


class Blip:
    """Redis unreachable for the web's commands (each request thread's client: its
    commands and pipelines), from `down()` to `up()`: a restart from its snapshot, as
    the web process sees it. The test's own client is left alone."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.is_down = False

    @staticmethod
    def _refuse(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("Error 111 connecting: Connection refused")

    def down(self) -> None:
        self.monkeypatch.setattr(ThreadClient, "_execute_command", self._refuse)
        self.monkeypatch.setattr(ThreadClient, "pipeline", self._refuse)
        self.is_down = True

    def up(self) -> None:
        self.monkeypatch.undo()
        self.is_down = False


def pat_calls_for_a_new_case(phone, on_event: Callable[[Event], None]) -> CallResult:
    """Pat (verified by attested caller ID) presses 2; A2 picks up."""
    caller = phone.caller(PAT, "2", advisors="answer", max_wait_seconds=1.0)
    caller.on_event = on_event
    return caller.run()


def call_log(desk, sid: str) -> CallLog:
    """The call's one log, once the worker wrote it."""
    run_jobs(desk)
    with desk.session_factory() as db:
        return db.scalars(select(CallLog).where(CallLog.call_sid == sid)).one()


def test_a_whisper_that_met_a_redis_blip_is_no_answer_and_the_caller_goes_on(
        app, desk, lakeview, phone, monkeypatch):
    make_available(desk, "A2")
    blip = Blip(monkeypatch)

    def on_event(event: Event) -> None:
        if event.kind == "whisper" and event.party == "advisor":
            blip.down()  # A2 picked up; the whisper's request meets the blip
        elif blip.is_down and event.kind == "hangup" and event.party == "advisor":
            blip.up()  # back a moment later, before Twilio posts the <Dial> action

    result = pat_calls_for_a_new_case(phone, on_event)

    p = Prompts()
    assert result.heard("advisor") == [p.text("errors.advisor_leg")]
    assert [e for e in result.transcript if e.kind == "warning"] == []
    assert result.answered_by is None and result.events("connect") == []
    # Pat goes on: nobody else is free, so Pat waits for general (A2, just missed, is
    # not offered Pat again at once), never a survey for a talk that never happened.
    assert result.queues == ["general"]
    assert p.text("survey.intro") not in result.heard()
    log = call_log(desk, result.call_sid)
    assert log.status != "answered" and log.answered_by is None
    assert not (log.details or {}).get("survey_offered")  # Pat's 30 days not used
    # A2 is not left held by the call they never took.
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"


def test_an_advisor_ringing_when_redis_comes_back_empty_sends_the_caller_back_to_the_greeting(
        app, desk, lakeview, phone):
    make_available(desk, "A2")
    flushed = []

    def on_event(event: Event) -> None:
        if event.kind == "dial" and event.party == "advisor" and not flushed:
            desk.r.flushall()  # Redis back empty while A2's phone rings
            flushed.append(event)

    result = pat_calls_for_a_new_case(phone, on_event)

    p = Prompts()
    # A2's whisper finds no session: A2 is told goodbye, and nobody talked.
    assert result.heard("advisor") == [p.text("routing.goodbye")]
    assert result.events("connect") == []
    # Pat is not hung up on: an apology, then the greeting and the menu again.
    heard = result.heard()
    assert p.text("routing.start_over") in heard
    after = heard[heard.index(p.text("routing.start_over")) + 1:]
    assert after[:2] == heard[:2]  # the greeting (by name) and the menu, again
