"""The line off the happy path: Twilio's API failing, callbacks late, out of
order or repeated, advisors' own choices, and what a restart finds.

Each test is one input that used to go wrong, named for what a caller or
advisor notices now.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import redis
import time_machine
from flask.testing import FlaskClient
from sqlalchemy import select

from config.prompts import Prompts
from directory import cache_directory, keys
from directory.models import CallLog, Case
from jobs.queues import enqueue_call_log
from routing import acd, availability, call_state, callbacks, presence
from routing.call_state import get_call, start_call
from routing.waiting import request_callback
from telephony import Telephony
from tests.conftest import API_TOKEN, BASE_URL, make_available, run_jobs
from tests.webhooks import post

PAT = "+16125550101"
STRANGER = "+19525550177"
A2_PHONE = "+16515550102"
API = {"Authorization": f"Bearer {API_TOKEN}"}
CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture
def quick(desk):
    """The desk with REST retries a few milliseconds apart (same classification), and
    as short a look for the sign that Twilio carried out a failed redirect (no Twilio
    side follows these tests' redirects)."""
    fast = Telephony(desk.settings, retry_delays=(0.01, 0.01, 0.01, 0.01),
                     longest_look=0.01)
    return dataclasses.replace(desk, telephony=fast)


def queue_caller(desk, sid: str, at_ms: int, team: str = "general") -> None:
    """A caller waiting in a team's queue, live on Twilio's side."""
    start_call(desk.r, sid, {"caller": PAT, "base": BASE_URL, "started_at": at_ms,
                                "team": team, "priority": "medium", "menu": "2"})
    assert presence.claim_for_caller(desk.r, sid, team=team, owner_id=None, now_ms=at_ms,
                                     lease_ms=35_000).outcome == "queued"


def waiting(desk, team: str = "general") -> list[str]:
    """Who waits for a team, in the order they will be served."""
    return desk.r.zrange(keys.team_waiting(team), 0, -1)


def dialed(twiml: ET.Element) -> list[str]:
    """The numbers a TwiML document dials."""
    return [number.text or "" for number in twiml.iter("Number")] + [
        (dial.text or "").strip() for dial in twiml.iter("Dial") if (dial.text or "").strip()]


# --- 1. a REST redirect that fails for a reason other than the caller leaving ----


@pytest.mark.parametrize("fault", [429, 500, 503, "reset"])
def test_a_waiting_caller_keeps_their_place_when_twilios_api_keeps_failing(
        quick, lakeview, emulator, client, fault):
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    queue_caller(quick, "CA-first", now - 60_000)
    score = quick.r.zscore(keys.team_waiting("general"), "CA-first")
    emulator.fail_next(*[fault] * 5)  # every try of the redirect fails

    availability.free_advisor(quick, "A2", now, explicit=True)

    assert len(emulator.redirects("CA-first")) == 5  # tried, with backoff
    # Still waiting, with the same place; the advisor is free again.
    assert waiting(quick) == ["CA-first"]
    assert quick.r.zscore(keys.team_waiting("general"), "CA-first") == score
    assert presence.advisor_state(quick.r, "A2")["status"] == "available"
    # The caller's next hold cycle takes the free advisor without the REST API.
    assert [el.tag for el in post(client, "/voice/wait", {"CallSid": "CA-first"})] == ["Leave"]
    answer = post(client, "/voice/queue-result", {"CallSid": "CA-first", "QueueResult": "leave",
                                                   "CallStatus": "in-progress"})
    assert dialed(answer) == [A2_PHONE]


def test_a_redirect_that_fails_twice_then_succeeds_connects_the_caller(
        quick, lakeview, emulator):
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    queue_caller(quick, "CA-first", now - 60_000)
    emulator.fail_next(429, "reset")
    release = availability.free_advisor(quick, "A2", now, explicit=True)
    assert release.call_sid == "CA-first"
    assert [r.status for r in emulator.redirects("CA-first")] == [429, 502, 200]
    assert emulator.take_redirect("CA-first") is not None
    assert presence.advisor_state(quick.r, "A2")["call"] == "CA-first"


def test_a_caller_who_hung_up_is_dropped_and_the_advisor_takes_the_next(
        quick, lakeview, emulator):
    now = int(time.time() * 1000)
    emulator.register_call("CA-gone")
    emulator.end_call("CA-gone")  # Twilio: "Call is not in-progress"
    emulator.register_call("CA-next")
    queue_caller(quick, "CA-gone", now - 60_000)
    queue_caller(quick, "CA-next", now - 30_000)
    availability.free_advisor(quick, "A2", now, explicit=True)
    assert len(emulator.redirects("CA-gone")) == 1  # not retried: the caller is gone
    assert waiting(quick) == []
    assert presence.advisor_state(quick.r, "A2")["call"] == "CA-next"


class LateWebhooks:
    """The Twilio side's transport with the webhooks to `paths` made `seconds` late:
    Twilio slow to call the desk back, as it may be while its API answers 5xx."""

    def __init__(self, transport, paths: set[str], seconds: float) -> None:
        """Wrap `transport`; everything but the delay is its own."""
        self.transport, self.paths, self.seconds = transport, paths, seconds

    def request(self, method: str, url: str, params):
        """Wait first when the webhook is one of `paths`, then send it."""
        if urlsplit(url).path in self.paths:
            time.sleep(self.seconds)
        return self.transport.request(method, url, params)

    def __getattr__(self, name: str):
        return getattr(self.transport, name)


def _pat_waiting(phone, desk, webhooks_late: float = 0.0):
    """Pat calls about case 2024117 (its owner A7 is offline, nobody is free) and waits
    in the general queue. A dialed phone rings a second of real time before it is
    answered, so a redirect of Pat's call that lands meanwhile cuts the ring, as on
    Twilio. Twilio's webhooks as Pat's call leaves the queue (the `<Enqueue>` action,
    then /voice/connect) come `webhooks_late` seconds late. The running call
    (`caller.result` once `thread` is over) and its thread."""
    caller = phone.caller(PAT, "1 2024117#", max_wait_seconds=8, ring_seconds=1.0)
    caller.transport = LateWebhooks(caller.transport, {"/voice/queue-result", "/voice/connect"},
                                    webhooks_late)
    thread = threading.Thread(target=caller.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while desk.r.zscore(keys.team_waiting("general"), caller.call_sid) is None:
        assert time.monotonic() < deadline, "Pat never reached the queue"
        time.sleep(0.01)
    return caller, thread


def _logged(desk, client) -> tuple[str, str | None, list[str]]:
    """The status, answerer and advisors tried of the one call logged on case 2024117."""
    run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    return log["status"], log["answered_by"], log["advisors_tried"]


def _a2_frees_up_for_pat(phone, desk, emulator, client, fault, **waiting):
    """Pat waits (`_pat_waiting`); A2 becomes available, and Twilio's answer to the
    redirect that brings Pat over is `fault`. Pat's call and how it went. Twilio goes
    on with Pat's call while the desk's redirect still waits on its answer: plain
    clients, which never wait for the web's background REST requests."""
    phone.app.test_client_class = FlaskClient
    client = phone.app.test_client()
    caller, thread = _pat_waiting(phone, desk, **waiting)
    emulator.fail_next(fault)
    assert client.put("/api/advisors/A2/status", json={"status": "available"},
                      headers=API).status_code == 200
    thread.join(20)
    return caller, caller.result


@pytest.mark.parametrize("fault", ["acted:500", "acted:reset"])
def test_a_redirect_twilio_carried_out_but_failed_rings_the_advisor_once(
        phone, desk, lakeview, emulator, client, fault):
    """A2 frees up for Pat, who waits. Twilio moves Pat's call to /voice/connect, then
    answers 500 or cuts the connection. Sent again, the redirect cut A2's ring a
    quarter of a second in (Twilio stops the `<Dial>` the first one started); the cut
    ring's `<Dial>` action freed A2, and Pat, at /voice/connect again, was queued
    again, with A2 idle and not offered Pat for a minute: Pat hung up, abandoned.
    Now the desk sees that Twilio fetched /voice/connect and sends nothing more."""
    caller, result = _a2_frees_up_for_pat(phone, desk, emulator, client, fault)
    assert result.dialed == [A2_PHONE]  # A2's phone rang once, and nobody else's
    assert result.dial_results == [(A2_PHONE, "answer")]  # never cut
    assert len(result.redirected_at) == 1
    assert len(emulator.redirects(caller.call_sid)) == 1  # not sent again
    assert (result.outcome, result.answered_by) == ("advisor", A2_PHONE)
    assert _logged(desk, client) == ("answered", "A2", ["A2"])


def test_a_redirect_twilio_carried_out_but_failed_rings_the_advisor_once_however_slow(
        phone, desk, lakeview, emulator, client):
    """As above, with Twilio slow to call the desk back while its API fails: the
    `<Enqueue>` action and /voice/connect each come 0.375 s late, so the sign that
    Twilio moved Pat's call (Pat at /voice/connect) shows some 0.75 s after the 500.
    The look lasted half a second for every redirect (the conference move's limit):
    sent again, the redirect cut A2's ring and Pat was abandoned. A waiting caller's
    redirect, which no answer waits for, now looks for a second."""
    caller, result = _a2_frees_up_for_pat(phone, desk, emulator, client, "acted:500",
                                          webhooks_late=0.375)
    assert len(emulator.redirects(caller.call_sid)) == 1  # not sent again
    assert result.dial_results == [(A2_PHONE, "answer")]  # A2's ring never cut
    assert (result.outcome, result.answered_by) == ("advisor", A2_PHONE)
    assert _logged(desk, client) == ("answered", "A2", ["A2"])


@pytest.mark.parametrize(("fault", "answered"), [(500, 500), ("reset", 502)])
def test_a_redirect_that_failed_without_effect_is_sent_again_and_connects_the_caller(
        phone, desk, lakeview, emulator, client, fault, answered):
    """A 500 or a cut connection with nothing done at Twilio: Pat's call never reaches
    /voice/connect, so once the desk has looked for that a moment the redirect is sent
    again, and Pat reaches A2."""
    caller, result = _a2_frees_up_for_pat(phone, desk, emulator, client, fault)
    assert [r.status for r in emulator.redirects(caller.call_sid)] == [answered, 200]
    assert result.dialed == [A2_PHONE]
    assert (result.outcome, result.answered_by) == ("advisor", A2_PHONE)
    assert _logged(desk, client) == ("answered", "A2", ["A2"])


class TwilioAnsweringLate:
    """Twilio's API answering the desk late: a proxy in front of the emulator that,
    when the emulator has carried out a redirect and then failed it (`acted:`), does
    what Twilio does with the moved call (`meanwhile(call_sid)`) before the desk hears
    the failure; with `stalled`, it holds every request until that event is set (an
    incident at Twilio, a stuck proxy: `recover()`). Nothing of the service is
    replaced."""

    def __init__(self, emulator, meanwhile=lambda call_sid: None,
                 stalled: threading.Event | None = None) -> None:
        """Listen on a free port of 127.0.0.1 (`self.url`) until `close()`."""
        import requests
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.session = session = requests.Session()
        self.stalled = stalled

        @Request.application
        def forward(request: Request) -> Response:
            if stalled is not None:
                stalled.wait(30)
            before = len(emulator.requests)
            answer = session.request(
                request.method, emulator.url.rstrip("/") + request.full_path.rstrip("?"),
                data=request.get_data(), headers={
                    k: v for k, v in request.headers.items() if k.lower() != "host"},
                timeout=10)
            moved = [r for r in emulator.requests[before:]
                     if r.status >= 500 and r.call_sid and emulator.take_redirect(r.call_sid)]
            for carried_out in moved:
                meanwhile(carried_out.call_sid)
            return Response(answer.content, status=answer.status_code,
                            content_type=answer.headers.get("Content-Type"))

        self.server = make_server("127.0.0.1", 0, forward, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def recover(self) -> None:
        """Twilio answers again: the requests held go on."""
        if self.stalled is not None:
            self.stalled.set()

    def close(self) -> None:
        """Stop listening (the requests held let go), and close the connections to the
        emulator."""
        self.recover()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.session.close()


def test_a_redirect_twilio_carried_out_on_its_last_try_keeps_the_advisor_ringing(
        desk, lakeview, emulator, client, request):
    """Twilio fails four tries of the redirect outright; on the fifth it moves Pat's
    call, fetches /voice/connect (A2's phone rings for Pat), and only then answers
    500. Given up as failed, the redirect put Pat back in the queue and released A2
    (available, or handed the next caller) while A2's phone rang for Pat; answering,
    A2 would have heard that the caller was gone. Now the desk sees Pat at
    /voice/connect: done, A2 keeps Pat."""
    rings: list[ET.Element] = []
    proxy = TwilioAnsweringLate(emulator, lambda sid: rings.append(post(
        client, "/voice/connect", {"CallSid": sid, "CallStatus": "in-progress"})))
    request.addfinalizer(proxy.close)
    late = dataclasses.replace(desk, telephony=Telephony(
        desk.settings.with_changes(twilio_api_url=proxy.url),
        retry_delays=(0.01,) * 4, longest_look=0.01))
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    queue_caller(late, "CA-first", now - 60_000)
    emulator.fail_next(500, 500, 500, 500, "acted:500")

    availability.free_advisor(late, "A2", now, explicit=True)

    assert [r.status for r in emulator.redirects("CA-first")] == [500] * 5
    assert [dialed(twiml) for twiml in rings] == [[A2_PHONE]]  # A2's phone rings for Pat
    assert waiting(late) == []  # Pat is not waiting too
    state = presence.advisor_state(late.r, "A2")
    assert (state["call"], state["hold"]) == ("CA-first", "ringing")


class SlowReads(redis.Redis):
    """The test Redis answering each `HGET` `seconds` late (a busy server, or one failing
    over: under Sentinel a read may block for seconds), and with a timeout instead
    when it `fails`; the fields read are kept in `reads`. Every other command is
    answered at once."""

    def __init__(self, r: redis.Redis, seconds: float, fails: bool = False) -> None:
        """On `r`'s connections."""
        super().__init__(connection_pool=r.connection_pool)
        self.seconds, self.fails, self.reads = seconds, fails, []

    def hget(self, name, key):
        """`HGET`, late (or failing)."""
        self.reads.append(key)
        time.sleep(self.seconds)
        if self.fails:
            raise redis.TimeoutError("Timeout reading from socket")
        return super().hget(name, key)


def _redirect_failing_once(desk, lakeview, emulator, reads: SlowReads):
    """A2 frees up for Pat, who waits; Twilio answers 500 to the first try of the
    redirect, having done nothing, and the desk reads Redis through `reads`. The two
    tries Twilio received."""
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    queue_caller(desk, "CA-first", now - 60_000)
    emulator.fail_next(500)
    availability.free_advisor(dataclasses.replace(desk, r=reads), "A2", now, explicit=True)
    tries = emulator.redirects("CA-first")
    assert [r.status for r in tries] == [500, 200]
    assert presence.advisor_state(desk.r, "A2")["call"] == "CA-first"
    return tries


def test_a_slow_redis_does_not_stretch_the_look_for_a_redirects_sign(
        desk, lakeview, emulator):
    """Redis answers each read of Pat's state (the sign that Twilio moved Pat's call)
    0.2 s late. The look for that sign counted reads, not time: each of its 50 ms
    pauses took a quarter of a second, so the look lasted five times its length
    (one redirect failing every time held A2, and one of the web's four REST threads,
    for over 20 s instead of ~4). Now the look ends by the clock, at most one read
    past it, and the redirect is sent again."""
    reads = SlowReads(desk.r, 0.2)
    first, second = _redirect_failing_once(desk, lakeview, emulator, reads)
    # A look of at most a second and one slow read past it, not five seconds.
    assert second.at - first.at < 2.0
    assert len(reads.reads) <= 6


def test_a_sign_redis_cannot_read_ends_the_look_at_once(desk, lakeview, emulator):
    """Redis, failing over, blocks 0.2 s on each read of Pat's state and then fails.
    The look read it again every 50 ms for its whole length, each read blocking the
    REST thread anew (under Sentinel, up to 10 s). Now the first read that fails ends
    the look: nothing can be told, so the redirect is sent again, as before there was
    a sign, once the backoff's quarter of a second has passed."""
    reads = SlowReads(desk.r, 0.2, fails=True)
    first, second = _redirect_failing_once(desk, lakeview, emulator, reads)
    assert reads.reads == ["state"]  # one read
    assert 0.25 <= second.at - first.at < 0.8


def _callback_asked(quick) -> tuple[int, float]:
    """Pat (verified) waited a minute and asked for a callback: now (Unix ms) and
    Pat's place in the queue (their score)."""
    now = int(time.time() * 1000)
    queue_caller(quick, "CA-cb", now - 60_000)
    quick.r.hset(keys.call("CA-cb"), mapping={"contact": "5001", "verified": "1"})
    assert request_callback(quick, "CA-cb")
    return now, quick.r.zscore(keys.team_waiting("general"), "CA-cb")


def test_a_callback_that_twilio_will_not_place_keeps_the_contacts_place(
        quick, lakeview, emulator):
    now, score = _callback_asked(quick)
    emulator.fail_next(*[503] * 5)
    availability.free_advisor(quick, "A2", now, explicit=True)
    assert quick.r.zscore(keys.team_waiting("general"), "CA-cb") == score
    assert presence.advisor_state(quick.r, "A2")["status"] == "available"
    assert emulator.created_calls == []


@pytest.mark.parametrize("fault", ["acted:500", "acted:reset"])
def test_a_callback_twilio_may_have_placed_is_not_placed_again(
        quick, lakeview, emulator, fault):
    """Twilio places the callback's call to the advisor, but answers 500 or the
    connection is cut: an outbound call is not idempotent (Twilio's error 20500),
    so trying again would ring the advisor twice. It is not tried again; the
    contact keeps their place, and the advisor's phone rings once (Twilio's call,
    which hears the callback is stale and hangs up)."""
    now, score = _callback_asked(quick)
    emulator.fail_next(fault)
    availability.free_advisor(quick, "A2", now, explicit=True)
    assert [c.to for c in emulator.created_calls] == [A2_PHONE]
    assert quick.r.zscore(keys.team_waiting("general"), "CA-cb") == score
    assert presence.advisor_state(quick.r, "A2")["status"] == "available"


def test_a_callback_twilio_refused_with_429_is_placed_on_the_next_try(
        quick, lakeview, emulator):
    """429: Twilio refused before doing anything, so the call is placed on a retry."""
    now, _ = _callback_asked(quick)
    emulator.fail_next(429)
    availability.free_advisor(quick, "A2", now, explicit=True)
    assert [c.to for c in emulator.created_calls] == [A2_PHONE]
    assert presence.advisor_state(quick.r, "A2")["call"] == "CA-cb"


def test_a_leg_twilio_placed_unbeknown_to_the_desk_never_stands_for_the_callback(
        quick, lakeview, emulator, client):
    """Two contacts wait for a callback; A2 frees up while Twilio answers 500s after
    placing each call. Pat-1's leg is placed (the desk thinks it failed), then Pat-2's,
    then Pat-1 is offered to A2 again and Twilio answers: A2's phone rings twice for
    Pat-1. Only the leg the desk placed is Pat-1's callback: the other, answered,
    hears it is stale, and its end does not release A2 talking on the real one."""
    now = int(time.time() * 1000)
    for n, sid in enumerate(("CA-cb1", "CA-cb2")):
        queue_caller(quick, sid, now - 60_000 + n)
        quick.r.hset(keys.call(sid), mapping={"contact": "5001", "verified": "1"})
        assert request_callback(quick, sid)
    emulator.fail_next("acted:500", "acted:500")
    availability.free_advisor(quick, "A2", now, explicit=True)
    legs = [c for c in emulator.created_calls if "call=CA-cb1" in (c.url or "")]
    assert len(legs) == 2  # Twilio's phantom, then the leg the desk placed
    phantom, placed = legs
    assert get_call(quick.r, "CA-cb1")["callback_leg"] == placed.sid

    def leg_post(leg, path_of_url: str, form: dict[str, str]):
        return post(client, path_of_url.removeprefix(BASE_URL), {"CallSid": leg.sid, **form})

    # A2 picks up the phantom first: it is no callback of the desk's.
    heard = leg_post(phantom, phantom.url, {"CallStatus": "in-progress"})
    assert heard.find("Gather") is None, ET.tostring(heard)
    leg_post(phantom, phantom.status_callback, {"CallStatus": "completed"})
    assert presence.advisor_state(quick.r, "A2")["call"] == "CA-cb1"
    # Then the placed leg: the whisper, accepted, the contact dialed.
    gather = leg_post(placed, placed.url, {"CallStatus": "in-progress"}).find("Gather")
    assert gather is not None
    dial = leg_post(placed, BASE_URL + gather.get("action"),
                    {"CallStatus": "in-progress", "Digits": "1"}).find("Dial")
    assert dial is not None
    # A late end of the phantom (Twilio repeats it) releases nobody.
    leg_post(phantom, phantom.status_callback, {"CallStatus": "no-answer"})
    state = presence.advisor_state(quick.r, "A2")
    assert (state["call"], state["hold"]) == ("CA-cb1", "talking")
    assert get_call(quick.r, "CA-cb1")["callback_state"] == "dialing-contact"


# --- 2. an advisor's own status --------------------------------------------------


def _on_call(desk, advisor: str, sid: str, now: int) -> None:
    """`advisor` answered caller `sid`."""
    start_call(desk.r, sid, {"caller": PAT, "base": BASE_URL, "started_at": now,
                                "team": "general", "priority": "medium", "menu": "2"})
    decision = acd.route_caller(desk, sid, now)
    assert isinstance(decision, acd.DialAdvisor) and decision.advisor_id == advisor
    assert acd.accept_call(desk, sid, advisor, now)


@pytest.mark.parametrize("chosen", ["busy", "offline"])
def test_an_advisor_who_chose_busy_during_a_call_stays_so_when_it_ends(
        desk, lakeview, emulator, client, chosen):
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    _on_call(desk, "A2", "CA-talk", now)
    assert client.put("/api/advisors/A2/status", json={"status": chosen},
                      headers=API).status_code == 200
    emulator.register_call("CA-next")
    queue_caller(desk, "CA-next", now + 1_000)

    acd.end_call(desk, "CA-talk", "completed", 60, now + 60_000)

    assert presence.advisor_state(desk.r, "A2")["status"] == chosen
    assert waiting(desk) == ["CA-next"]  # nobody rang A2 for the next caller
    assert emulator.redirects("CA-next") == []
    # Their next choice is theirs too: available serves the queue at once.
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    assert presence.advisor_state(desk.r, "A2")["call"] == "CA-next"
    deadline = time.monotonic() + 5  # the web service redirects in the background
    while not emulator.redirects("CA-next"):
        assert time.monotonic() < deadline, "the waiting caller was never redirected"
        time.sleep(0.01)


def test_an_advisor_who_chose_busy_while_ringing_stays_busy_after_no_answer(
        desk, lakeview, emulator, client):
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    start_call(desk.r, "CA-ring", {"caller": PAT, "base": BASE_URL, "started_at": now,
                                      "team": "general", "menu": "2"})
    assert isinstance(acd.route_caller(desk, "CA-ring", now), acd.DialAdvisor)
    client.put("/api/advisors/A2/status", json={"status": "busy"}, headers=API)
    emulator.register_call("CA-next")
    queue_caller(desk, "CA-next", now + 1_000)
    acd.after_dial(desk, "CA-ring", "A2", "no-answer", 0, now + 20_000)
    assert presence.advisor_state(desk.r, "A2")["status"] == "busy"
    assert emulator.redirects("CA-next") == []


def test_an_advisor_who_chose_busy_during_wrap_up_stays_busy_after_it(
        desk, lakeview, emulator, client):
    now = int(time.time() * 1000)
    wrapping = dataclasses.replace(desk, settings=desk.settings.with_changes(wrapup_seconds=30))
    make_available(desk, "A2")
    _on_call(wrapping, "A2", "CA-talk", now)
    acd.end_call(wrapping, "CA-talk", "completed", 60, now + 60_000)
    client.put("/api/advisors/A2/status", json={"status": "busy"}, headers=API)
    emulator.register_call("CA-next")
    queue_caller(desk, "CA-next", now + 61_000)
    availability.end_wrapup(wrapping, "A2", "CA-talk", now + 90_000)
    assert presence.advisor_state(desk.r, "A2")["status"] == "busy"
    assert emulator.redirects("CA-next") == []


# --- 3. the Dial action posted after the caller hung up ------------------------------


@pytest.mark.parametrize("dial_status", ["no-answer", "canceled"])
def test_a_dial_action_after_the_caller_hung_up_rings_nobody_else(
        desk, lakeview, client, dial_status):
    now = int(time.time() * 1000)
    make_available(desk, "A7", "A2")
    start_call(desk.r, "CA-gone", {"caller": PAT, "base": BASE_URL, "started_at": now,
                                      "team": "general", "menu": "2"})
    ringing = acd.route_caller(desk, "CA-gone", now)
    assert isinstance(ringing, acd.DialAdvisor) and ringing.advisor_id == "A7"

    answer = post(client, "/voice/dial-result?advisor=A7",
                  {"CallSid": "CA-gone", "DialCallStatus": dial_status,
                   "CallStatus": "completed"})

    assert dialed(answer) == [] and answer.find("Enqueue") is None
    for advisor in ("A7", "A2"):
        assert presence.advisor_state(desk.r, advisor)["status"] == "available", advisor
    assert get_call(desk.r, "CA-gone")["tried"] == "A7"  # A2 never tried
    # The status callback that follows ends the call as usual: one log.
    post(client, "/voice/status", {"CallSid": "CA-gone", "CallStatus": "completed",
                                   "CallDuration": "25"})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
    assert log.advisors_tried == ["A7"] and log.answered_by is None


# --- 4. non-final status callbacks ------------------------------------------------------


@pytest.mark.parametrize("status", ["ringing", "in-progress", "queued", "initiated", ""])
def test_a_status_callback_that_is_not_final_changes_nothing(
        desk, lakeview, client, status):
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    _on_call(desk, "A2", "CA-talk", now)
    post(client, "/voice/status", {"CallSid": "CA-talk", "CallStatus": status})
    run_jobs(desk)
    assert presence.advisor_state(desk.r, "A2")["call"] == "CA-talk"  # still talking
    assert not call_state.is_ended(desk.r, "CA-talk")
    with desk.session_factory() as db:
        assert db.scalars(select(CallLog)).all() == []
    post(client, "/voice/status", {"CallSid": "CA-talk", "CallStatus": "completed",
                                   "CallDuration": "60"})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
    assert log.answered_by == "A2"


# --- 5. Twilio cannot queue the caller ------------------------------------------------------


def _queued_by_webhooks(client) -> None:
    """Pat calls, option 2, nobody is free: the answer is an <Enqueue>."""
    post(client, "/voice/incoming", {"CallSid": "CA-q", "From": PAT, "To": "+18005550100",
                                      "StirVerstat": "TN-Validation-Passed-A"})
    answer = post(client, "/voice/menu?attempt=1", {"CallSid": "CA-q", "Digits": "2"})
    assert answer.find("Enqueue") is not None


@pytest.mark.parametrize("result", ["queue-full", "error", "system-error"])
def test_a_caller_twilio_cannot_queue_is_queued_again_then_reaches_the_fallback(
        desk, lakeview, client, app, result):
    app.extensions["caseline"] = dataclasses.replace(
        desk, settings=desk.settings.with_changes(fallback_number="+16125559999"))
    _queued_by_webhooks(client)
    again = post(client, "/voice/queue-result", {"CallSid": "CA-q", "QueueResult": result,
                                                 "CallStatus": "in-progress"})
    enqueue = again.find("Enqueue")
    assert enqueue is not None and "attempt=2" in enqueue.get("action", "")
    last = post(client, "/voice/queue-result?attempt=2",
                {"CallSid": "CA-q", "QueueResult": result, "CallStatus": "in-progress"})
    assert dialed(last) == ["+16125559999"]
    assert waiting(desk) == []  # the fallback has them: nobody will redirect them
    post(client, "/voice/status", {"CallSid": "CA-q", "CallStatus": "completed",
                                   "CallDuration": "90"})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
    assert log.status == "fallback"  # sent to the fallback number, logged so


def test_a_caller_twilio_cannot_queue_without_a_fallback_leaves_a_voicemail_on_the_case(
        desk, lakeview, client):
    _queued_by_webhooks(client)
    last = post(client, "/voice/queue-result?attempt=2",
                {"CallSid": "CA-q", "QueueResult": "queue-full", "CallStatus": "in-progress"})
    assert last.find("Record") is not None
    post(client, "/voice/recorded", {"CallSid": "CA-q", "RecordingUrl": "https://rec/RE1",
                                     "RecordingDuration": "12"})
    post(client, "/voice/status", {"CallSid": "CA-q", "CallStatus": "completed",
                                   "CallDuration": "40"})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
    assert log.recording_url == "https://rec/RE1" and log.status == "voicemail"
    assert log.case_number is not None
    # Pat was in the desk's queue (a moment) before Twilio said it could not queue them:
    # the log has that wait, as it has every waiting caller's.
    assert log.queue_wait_seconds is not None and log.queue_wait_seconds < 30


def test_the_1001st_caller_waiting_for_a_team_is_queued_once_the_reconciler_sized_its_queue(
        desk, lakeview, phone, emulator):
    """Twilio's queue holds 1000 calls unless sized: the reconciler sizes each team's."""
    from twilio_side.queues import QUEUES  # noqa: PLC0415 - Twilio's side, as the phone is
    from workers.reconciler import reconcile  # noqa: PLC0415

    # A thousand callers already wait for the general team at Twilio.
    for index in range(1000):
        emulator.register_call(f"CA-waiting-{index:04d}")
        assert QUEUES.enter("general", f"CA-waiting-{index:04d}")
    refused = phone.call(PAT, "2", max_wait_seconds=0.3)
    # Twilio refused them twice (queue-full), so they left a voicemail instead of a place.
    assert not refused.queued and refused.events("record")
    assert reconcile()["twilio_queues_sized"] > 0
    queued = phone.call(PAT, "2", max_wait_seconds=0.3)
    assert queued.queued and queued.queues == ["general"]
    assert not queued.events("record")


# --- 6. the recording posted after the status callback --------------------------------------


@pytest.mark.databases
def test_a_voicemail_posted_after_the_call_ended_reaches_the_case(desk, lakeview, client):
    evening = datetime(2026, 11, 24, 19, 30, tzinfo=CHICAGO)
    with time_machine.travel(evening, tick=True):
        post(client, "/voice/incoming", {"CallSid": "CA-vm", "From": PAT,
                                         "To": "+18005550100",
                                         "StirVerstat": "TN-Validation-Passed-A"})
        answer = post(client, "/voice/menu?attempt=1", {"CallSid": "CA-vm", "Digits": "2"})
        assert answer.find("Record") is not None
        post(client, "/voice/status", {"CallSid": "CA-vm", "CallStatus": "completed",
                                       "CallDuration": "50"})
        run_jobs(desk)  # the log is written before Twilio posts the recording
        post(client, "/voice/recorded", {"CallSid": "CA-vm", "RecordingUrl": "https://rec/RE2",
                                         "RecordingDuration": "31"})
        run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
        assert log.recording_url == "https://rec/RE2" and log.status == "voicemail"
        assert db.get(Case, log.case_number) is not None


# --- 7. a webhook Twilio repeats --------------------------------------------------------------


def test_a_repeated_wrong_pin_counts_once_toward_the_lockout(desk, lakeview, client):
    post(client, "/voice/incoming", {"CallSid": "CA-pin", "From": STRANGER,
                                     "To": "+18005550100"})
    post(client, "/voice/menu?attempt=1", {"CallSid": "CA-pin", "Digits": "2"})
    post(client, "/voice/verify/contact?option=2", {"CallSid": "CA-pin", "Digits": "5001"})
    token = str(uuid.uuid4())
    first = post(client, "/voice/verify/pin?option=2", {"CallSid": "CA-pin", "Digits": "0000"},
                 token=token)
    repeat = post(client, "/voice/verify/pin?option=2", {"CallSid": "CA-pin", "Digits": "0000"},
                  token=token)
    assert ET.tostring(repeat) == ET.tostring(first)
    assert desk.r.zcard(keys.verify_failures(STRANGER)) == 1


def test_a_repeated_menu_key_is_recorded_once(desk, lakeview, client):
    make_available(desk, "A2")
    post(client, "/voice/incoming", {"CallSid": "CA-key", "From": PAT, "To": "+18005550100",
                                     "StirVerstat": "TN-Validation-Passed-A"})
    token = str(uuid.uuid4())
    first = post(client, "/voice/menu?attempt=1", {"CallSid": "CA-key", "Digits": "2"},
                 token=token)
    repeat = post(client, "/voice/menu?attempt=1", {"CallSid": "CA-key", "Digits": "2"},
                  token=token)
    assert dialed(first) == dialed(repeat) == [A2_PHONE]
    assert get_call(desk.r, "CA-key")["menu"] == "2"
    assert get_call(desk.r, "CA-key")["tried"] == "A2"


def test_a_repeated_first_webhook_greets_the_same_and_changes_nothing(desk, lakeview, client):
    """Twilio repeats the call's first webhook with the same token, while the first is
    still running and again after: the same greeting, and the call opened once."""
    import threading

    form = {"CallSid": "CA-first", "From": PAT, "To": "+18005550100",
            "StirVerstat": "TN-Validation-Passed-A"}
    token, replies, start = str(uuid.uuid4()), [], threading.Barrier(2)

    def first_webhook() -> None:
        start.wait()
        replies.append(ET.tostring(post(client, "/voice/incoming", form, token=token)))

    threads = [threading.Thread(target=first_webhook) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    opened = get_call(desk.r, "CA-first")
    time.sleep(0.01)  # a repeat that opened the call again would note a later start
    replies.append(ET.tostring(post(client, "/voice/incoming", form, token=token)))
    assert len(set(replies)) == 1 and b"Gather" in replies[0]
    assert get_call(desk.r, "CA-first") == opened


def test_a_repeated_status_callback_ends_the_call_once(desk, lakeview, client):
    """Twilio repeats the status callback with the same token, here while the first is
    still running: both hear the empty reply, the call is counted once and has one
    log, and its advisor is free for the next caller."""
    import threading

    from tests.test_metrics import samples

    def calls_counted() -> float:
        scrape = samples(client.get("/metrics").get_data(as_text=True))
        return sum(value for (name, _), value in scrape.items()
                   if name == "caseline_calls_total")

    counted = calls_counted()
    make_available(desk, "A2")
    post(client, "/voice/incoming", {"CallSid": "CA-end", "From": PAT, "To": "+18005550100",
                                     "StirVerstat": "TN-Validation-Passed-A"})
    assert dialed(post(client, "/voice/menu?attempt=1", {"CallSid": "CA-end",
                                                         "Digits": "2"})) == [A2_PHONE]
    token, replies, start = str(uuid.uuid4()), [], threading.Barrier(2)

    def end() -> None:
        start.wait()
        replies.append(ET.tostring(post(client, "/voice/status", {
            "CallSid": "CA-end", "CallStatus": "completed", "CallDuration": "60"},
            token=token)))

    threads = [threading.Thread(target=end) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert replies == [b"<Response />"] * 2
    assert calls_counted() == counted + 1
    run_jobs(desk)
    with desk.session_factory() as db:
        assert [log.call_sid for log in db.scalars(select(CallLog))] == ["CA-end"]
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"
    post(client, "/voice/incoming", {"CallSid": "CA-after", "From": PAT, "To": "+18005550100",
                                     "StirVerstat": "TN-Validation-Passed-A"})
    assert dialed(post(client, "/voice/menu?attempt=1", {"CallSid": "CA-after",
                                                         "Digits": "2"})) == [A2_PHONE]


# --- restart after the calls of a day -----------------------------------------------------------


@pytest.mark.databases
def test_the_cache_rebuilds_after_an_unknown_callers_outage_case(desk, lakeview, phone, client):
    make_available(desk, "A7")
    result = phone.call(STRANGER, "8")  # exception basis: a case with no district
    assert result.outcome == "advisor"
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
        case = db.get(Case, log.case_number)
        assert case is not None and case.district_id is None
    desk.r.flushdb()  # as after a restart of Redis
    cache_directory(desk.session_factory, desk.r, datetime.now(CHICAGO))
    # Pat keys that case's number: it is not found (never "an error").
    make_available(desk, "A7")
    heard = phone.call(PAT, f"1 {log.case_number}# 2024117#")
    assert heard.outcome == "advisor"
    assert Prompts().text("case.not_found") in heard.heard()  # then 2024117 was found
    assert heard.dialed == ["+16515550199"]


def test_a_caller_whose_redirect_was_lost_with_its_process_gets_their_place_back(
        desk, lakeview, emulator, client):
    """The web process that was to redirect a claimed caller died (SIGKILL, OOM):
    when the advisor's hold expires the caller is back at the head of the queue."""
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    queue_caller(desk, "CA-first", now - 60_000)
    emulator.register_call("CA-later")
    queue_caller(desk, "CA-later", now - 30_000)
    score = desk.r.zscore(keys.team_waiting("general"), "CA-first")
    # A2 is claimed for the first caller, and the redirect is never sent.
    released = presence.make_available(desk.r, "A2", now_ms=now, lease_ms=desk.lease_ms,
                                       explicit=True)
    assert released.call_sid == "CA-first"
    desk.r.hset(keys.call("CA-first"), "state", "connecting")
    acd.reconcile(desk, now + desk.lease_ms + 1)
    assert desk.r.zscore(keys.team_waiting("general"), "CA-first") == score
    # A2 went on to the next caller; the first is served by the next free advisor.
    assert presence.advisor_state(desk.r, "A2")["call"] == "CA-later"
    assert [el.tag for el in post(client, "/voice/wait", {"CallSid": "CA-first"})] != ["Leave"]
    make_available(desk, "A7")
    assert presence.advisor_state(desk.r, "A7")["call"] == "CA-first"


def _callback_waiting(desk, now: int) -> float:
    """A verified contact asked for a callback and hung up: their place (waiting score)."""
    queue_caller(desk, "CA-cb", now - 60_000)
    desk.r.hset(keys.call("CA-cb"), mapping={"contact": "5001", "verified": "1"})
    assert request_callback(desk, "CA-cb")
    acd.end_call(desk, "CA-cb", "completed", 30, now)  # the contact hangs up
    return desk.r.zscore(keys.team_waiting("general"), "CA-cb")


def _callback_ringing_advisor(desk, emulator, client) -> tuple[str, str, float]:
    """A verified contact waits for a callback; A2 frees up and their leg rings.
    The leg's status callback path, its CallSid, and the contact's place (waiting score)."""
    now = int(time.time() * 1000)
    score = _callback_waiting(desk, now)
    availability.free_advisor(desk, "A2", now, explicit=True)
    [leg] = emulator.created_calls
    return leg.status_callback.removeprefix(BASE_URL), leg.sid, score


def test_a_repeated_end_of_a_missed_callback_leg_keeps_the_contact_waiting(
        desk, lakeview, emulator, client):
    status_path, leg, score = _callback_ringing_advisor(desk, emulator, client)
    for _ in range(2):  # Twilio posts the leg's end twice (different tokens)
        post(client, status_path, {"CallSid": leg, "CallStatus": "no-answer"})
    assert waiting(desk) == ["CA-cb"]
    assert desk.r.zscore(keys.team_waiting("general"), "CA-cb") == score  # same place
    assert get_call(desk.r, "CA-cb")["callback_state"] == "waiting"
    run_jobs(desk)
    with desk.session_factory() as db:
        assert db.scalars(select(CallLog)).all() == []  # not logged: still to be called


def test_a_missed_callback_leg_ending_after_its_hold_expired_keeps_the_contacts_place(
        desk, lakeview, emulator, client):
    status_path, leg, score = _callback_ringing_advisor(desk, emulator, client)
    later = int(time.time() * 1000) + desk.lease_ms + 1
    acd.reconcile(desk, later)  # the hold expired while the leg still rang
    post(client, status_path, {"CallSid": leg, "CallStatus": "no-answer"})
    assert waiting(desk) == ["CA-cb"]
    assert desk.r.zscore(keys.team_waiting("general"), "CA-cb") == score
    assert get_call(desk.r, "CA-cb")["callback_state"] == "waiting"


def test_a_callback_legs_end_that_overtakes_twilios_answer_still_gives_the_contact_back_their_place(
        desk, lakeview, emulator, client):
    """Twilio posts the advisor's leg's end (busy at once) before its API has answered
    the request that placed the leg: the desk does not know the leg yet and cannot
    take that end as its own. The contact must not be lost: once the advisor's hold
    expires, the contact is back in their place and the advisor is free."""
    ended: list[str] = []

    def leg_ends_at_once(created) -> None:  # runs while the desk waits for the API
        post(client, created.status_callback.removeprefix(BASE_URL),
             {"CallSid": created.sid, "CallStatus": "busy"})
        ended.append(created.sid)

    emulator.before_answering_create = leg_ends_at_once
    status_path, leg, score = _callback_ringing_advisor(desk, emulator, client)
    assert ended == [leg]
    assert waiting(desk) == []  # the end went unrecognised: the contact is nowhere yet

    acd.reconcile(desk, int(time.time() * 1000) + desk.lease_ms + 1)
    assert waiting(desk) == ["CA-cb"]
    assert desk.r.zscore(keys.team_waiting("general"), "CA-cb") == score  # same place
    assert get_call(desk.r, "CA-cb")["callback_state"] == "waiting"
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"
    # The overtaken end, repeated late by Twilio, changes nothing more.
    post(client, status_path, {"CallSid": leg, "CallStatus": "busy"})
    assert waiting(desk) == ["CA-cb"]
    run_jobs(desk)
    with desk.session_factory() as db:
        assert db.scalars(select(CallLog)).all() == []  # not logged: still to be called


def test_a_late_end_of_a_missed_callback_leg_never_passes_for_the_next_leg(
        desk, lakeview, emulator, client):
    """The first leg's end comes late, while the desk is placing the next leg to the same
    advisor: it must not undo that ring (the contact queued again while A2's phone
    rings, A2 shown available)."""
    status_path, first_leg, _ = _callback_ringing_advisor(desk, emulator, client)
    now = int(time.time() * 1000) + desk.lease_ms + 1
    acd.reconcile(desk, now)  # the first leg's end has not come: the contact waits again
    assert waiting(desk) == ["CA-cb"]

    def first_legs_end_arrives(created) -> None:  # while the second leg is being placed
        post(client, status_path, {"CallSid": first_leg, "CallStatus": "no-answer"})

    emulator.before_answering_create = first_legs_end_arrives
    presence.make_unavailable(desk.r, "A2", "busy", now_ms=now)
    availability.free_advisor(desk, "A2", now, explicit=True)
    second_leg = emulator.created_calls[-1].sid
    assert second_leg != first_leg
    call = get_call(desk.r, "CA-cb")
    assert (call["callback_state"], call["ringing"], call["callback_leg"]) == (
        "ringing-advisor", "A2", second_leg)
    assert waiting(desk) == []
    assert presence.on_call(desk.r, "A2", "CA-cb")


def test_a_callback_whose_leg_ends_unheard_three_times_is_done_and_logged(
        desk, lakeview, emulator, client):
    """A leg's end that never reaches the desk counts as an unanswered offer: after the
    third, the callback is over and its call is logged, as after three missed legs."""
    _callback_ringing_advisor(desk, emulator, client)
    now = int(time.time() * 1000)
    for offer in range(1, 4):
        now += desk.lease_ms + 1
        acd.reconcile(desk, now)  # the hold expires; the leg's end never came
        if offer < 3:
            assert waiting(desk) == ["CA-cb"]
            # A2 steps away and comes back: the contact's leg rings them again.
            presence.make_unavailable(desk.r, "A2", "busy", now_ms=now)
            availability.free_advisor(desk, "A2", now, explicit=True)
            assert get_call(desk.r, "CA-cb")["callback_state"] == "ringing-advisor"
    assert waiting(desk) == []
    assert get_call(desk.r, "CA-cb")["callback_state"] == "done"
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"
    run_jobs(desk)
    with desk.session_factory() as db:
        assert [log.call_sid for log in db.scalars(select(CallLog))] == ["CA-cb"]


def test_an_advisor_who_takes_a_callback_as_their_ring_runs_out_keeps_it(
        desk, lakeview, emulator, client):
    """A2 presses 1 on the callback's whisper just as the ring's hold runs out, while
    the reconciler, which has found that hold expired, goes on to release it: A2 is
    talking with the contact now. A2 must not be shown available (another caller
    would be put through to them), nor the contact queued again (called twice)."""
    _callback_ringing_advisor(desk, emulator, client)
    [leg] = emulator.created_calls
    expired = int(time.time() * 1000) + desk.lease_ms + 1
    found = presence.advisor_state(desk.r, "A2")  # the reconciler's read: hold expired
    assert int(found["lease"]) <= expired and found["hold"] == "ringing"

    accept = urlsplit(leg.url)._replace(path="/voice/callback/accept").geturl()
    answer = post(client, accept.removeprefix(BASE_URL), {"CallSid": leg.sid, "Digits": "1"})
    assert dialed(answer)  # the contact's phone rings
    acd._release_expired_hold(desk, "A2", found, expired)  # then the reconciler acts

    assert presence.advisor_state(desk.r, "A2")["hold"] == "talking"
    assert presence.advisor_state(desk.r, "A2")["status"] == "busy"
    assert waiting(desk) == []
    assert get_call(desk.r, "CA-cb")["callback_state"] == "dialing-contact"
    # Its next pass finds no expired hold: the talk's lease runs for hours.
    assert acd.reconcile(desk, expired)["freed"] == 0


def test_a_caller_whose_advisor_answers_as_the_hold_runs_out_is_never_queued_again(
        desk, lakeview, emulator):
    """A waiting caller brought to A2, who accepts just as the ring's hold runs out,
    while the reconciler goes on to give that caller their place back (it read them
    as not yet connected): they talk with A2 and must not wait again, to be put
    through to a second advisor."""
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    queue_caller(desk, "CA-first", now - 60_000)
    availability.free_advisor(desk, "A2", now, explicit=True)
    assert emulator.redirects("CA-first")  # brought over: A2's phone rings
    expired = now + desk.lease_ms + 1
    found = presence.advisor_state(desk.r, "A2")  # the reconciler's read: hold expired
    assert int(found["lease"]) <= expired and found["call"] == "CA-first"

    assert acd.accept_call(desk, "CA-first", "A2", now + 30_000)  # A2 presses 1
    # The reconciler goes on, on what it read before A2 answered:
    assert not acd._release_expired_hold(desk, "A2", found, expired)

    assert waiting(desk) == []
    assert presence.advisor_state(desk.r, "A2")["hold"] == "talking"


def test_a_caller_is_never_both_waiting_and_talking_however_an_answer_meets_the_reconciler(
        desk, lakeview, emulator, monkeypatch):
    """The reconciler has found A2's ring hold expired, with the caller brought to A2 not
    yet connected. Then, just before its first write to Redis, Twilio rings A2 for the
    caller, and A2 presses 1 just after it, before any other: whichever wins, the
    caller ends up either talking with A2 or left to be routed again, never both (a
    second advisor would be put through to a caller already talking)."""
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    queue_caller(desk, "CA-first", now - 60_000)
    availability.free_advisor(desk, "A2", now, explicit=True)
    expired = now + desk.lease_ms + 1
    found = presence.advisor_state(desk.r, "A2")  # the reconciler's read: hold expired

    writes = desk.r.evalsha  # the desk's writes are scripts (routing.presence)
    rang: list[object] = []
    answered: list[bool] = []
    webhook: list[str] = []  # its own writes go straight through

    def around_the_first_write(*args):
        if answered or webhook:
            return writes(*args)
        if not rang:  # Twilio rings A2 for the caller
            webhook.append("connect")
            rang.append(acd.connect_claimed(desk, "CA-first", expired))
            webhook.clear()
        # (Not loaded yet, the script fails; redis-py loads it and comes back here.)
        result = writes(*args)
        webhook.append("accept")
        answered.append(acd.accept_call(desk, "CA-first", "A2", expired + 5))  # A2: 1
        webhook.clear()
        return result

    monkeypatch.setattr(desk.r, "evalsha", around_the_first_write)
    freed = acd._release_expired_hold(desk, "A2", found, expired)

    a2 = presence.advisor_state(desk.r, "A2")
    talking = a2.get("hold") == "talking"
    assert answered == [talking]
    if talking:  # A2's answer won: the caller is theirs alone
        assert not freed and waiting(desk) == []
        make_available(desk, "A7")  # the next advisor frees up
        assert presence.advisor_state(desk.r, "A7").get("call") != "CA-first"
    else:  # the reconciler won: A2's answer found nothing to take (the caller, still
        # in Twilio's ring to A2, is routed afresh when it ends)
        assert freed and a2.get("call") != "CA-first"


def test_a_callback_contact_keeps_their_place_when_the_worker_loses_redis_after_freeing_the_advisor(
        desk, lakeview, emulator, client, monkeypatch):
    """The reconciler frees A2 from a callback ring whose end never came, and loses
    Redis right after that write: the contact must still be back in their place (once
    A2 is freed, no later pass finds the ring again)."""
    _callback_ringing_advisor(desk, emulator, client)
    score = desk.r.hget(keys.call("CA-cb"), "wait_score")
    expired = int(time.time() * 1000) + desk.lease_ms + 1
    commands, scripts, lost = desk.r.execute_command, desk.r.evalsha, []

    def redis_lost_after_a_write(*args, **options):
        if lost:
            raise redis.ConnectionError("Connection reset by peer")
        return commands(*args, **options)

    def write_then_lose_redis(*args):
        result = scripts(*args)
        lost.append(True)
        return result

    monkeypatch.setattr(desk.r, "execute_command", redis_lost_after_a_write)
    monkeypatch.setattr(desk.r, "evalsha", write_then_lose_redis)
    with contextlib.suppress(redis.ConnectionError):
        acd.reconcile(desk, expired)
    monkeypatch.undo()

    assert lost and presence.advisor_state(desk.r, "A2")["status"] == "available"
    assert waiting(desk) == ["CA-cb"]
    assert desk.r.zscore(keys.team_waiting("general"), "CA-cb") == float(score)
    assert get_call(desk.r, "CA-cb")["callback_state"] == "waiting"


def test_a_callback_claimed_by_a_process_that_died_keeps_the_contacts_place(
        desk, lakeview, emulator, client):
    """The process that freed A2 dies right after the claim handed A2 a callback, before
    it placed A2's leg: when A2's hold runs out, the contact is back in their place,
    with no offer counted (none was made)."""
    now = int(time.time() * 1000)
    score = _callback_waiting(desk, now)
    claim = presence.make_available(desk.r, "A2", now_ms=now, lease_ms=desk.lease_ms,
                                    explicit=True)
    assert claim.call_sid == "CA-cb"  # ...and the process dies here

    acd.reconcile(desk, now + desk.lease_ms + 1)
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"
    assert desk.r.zscore(keys.team_waiting("general"), "CA-cb") == score
    assert get_call(desk.r, "CA-cb").get("callback_offers", "0") == "0"
    assert emulator.created_calls == []  # nobody was rung for it


def test_a_waiting_caller_claimed_by_a_process_that_died_keeps_their_place(
        desk, lakeview, emulator, client):
    """The process that freed A2 dies right after the claim handed A2 a waiting caller,
    before it noted the claim on the call: when A2's hold runs out, the caller is back
    in their place (else they would hear hold music with a free advisor, in no queue)."""
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    queue_caller(desk, "CA-first", now - 60_000)
    score = desk.r.zscore(keys.team_waiting("general"), "CA-first")
    claim = presence.make_available(desk.r, "A2", now_ms=now, lease_ms=desk.lease_ms,
                                    explicit=True)
    assert claim.call_sid == "CA-first"  # ...and the process dies here

    acd.reconcile(desk, now + desk.lease_ms + 1)
    assert desk.r.zscore(keys.team_waiting("general"), "CA-first") == score
    # The next hold cycle brings them to A2, free again.
    post(client, "/voice/wait", {"CallSid": "CA-first"})
    assert presence.advisor_state(desk.r, "A2").get("call") == "CA-first"


def test_a_callback_legs_end_meeting_the_reconciler_never_undoes_the_next_ring(
        desk, lakeview, emulator, client, monkeypatch):
    """A2's leg ends unanswered just as A2's hold runs out: the reconciler releases A2,
    and A7, freed, is rung for the callback, before the leg's end is written. That
    end must not queue the contact again while A7's phone rings for them."""
    status_path, leg, _ = _callback_ringing_advisor(desk, emulator, client)
    expired = int(time.time() * 1000) + desk.lease_ms + 1
    writes, met = desk.r.evalsha, []

    def the_reconciler_first(*args):
        if not met:
            met.append(True)
            acd.reconcile(desk, expired)  # A2 released, the contact back in place
            availability.free_advisor(desk, "A7", expired, explicit=True)  # A7 rings
        return writes(*args)

    monkeypatch.setattr(desk.r, "evalsha", the_reconciler_first)
    assert not callbacks.end_callback(desk, "CA-cb", "A2", "no-answer", expired, leg)
    monkeypatch.undo()

    assert met and waiting(desk) == []
    call = get_call(desk.r, "CA-cb")
    assert (call["callback_state"], call["ringing"]) == ("ringing-advisor", "A7")
    assert call["callback_leg"] == emulator.created_calls[-1].sid != leg
    assert call["callback_offers"] == "1"  # A2's leg: one offer, counted once


def _between_the_legs_end_reads(desk, monkeypatch, meanwhile) -> None:
    """Run `meanwhile` once, as the end of A2's callback leg has read the call and goes
    to read A2's hold (the next read it makes)."""
    reads = desk.r.hmget

    def hold_read(*args, **kwargs):
        monkeypatch.undo()
        meanwhile()
        return reads(*args, **kwargs)

    monkeypatch.setattr(desk.r, "hmget", hold_read)


def test_a_callback_taken_as_its_leg_ends_is_done_and_logged(
        desk, lakeview, emulator, client, monkeypatch):
    """A2 presses 1 on the callback's whisper and hangs up at once: Twilio posts the
    accept and the leg's end together, and the accept lands while the end is being
    handled. The callback was taken: it is over (logged), not lost in between."""
    _, leg, _ = _callback_ringing_advisor(desk, emulator, client)
    now = int(time.time() * 1000)
    _between_the_legs_end_reads(desk, monkeypatch, lambda: callbacks.accept_callback(
        desk, "CA-cb", "A2", now, leg))
    assert callbacks.end_callback(desk, "CA-cb", "A2", "completed", now + 1, leg)
    assert get_call(desk.r, "CA-cb")["callback_state"] == "done"
    assert waiting(desk) == []
    assert not presence.on_call(desk.r, "A2", "CA-cb")


def test_a_callback_whose_leg_ends_as_it_is_taken_is_done_and_logged_once(
        desk, lakeview, emulator, client, monkeypatch):
    """A2 presses 1 and hangs up at once, and the leg's end is handled right after the
    accept's first write to Redis: the callback was taken, and is over (logged once),
    never left half taken (the contact in no queue, A2 held for the talk's hours)."""
    _, leg, _ = _callback_ringing_advisor(desk, emulator, client)
    now = int(time.time() * 1000)
    accepting = redis.Redis(connection_pool=desk.r.connection_pool)  # another process
    writes, ended = accepting.evalsha, []

    def then_the_legs_end(*args):
        result = writes(*args)
        if not ended:
            ended.append(callbacks.end_callback(desk, "CA-cb", "A2", "completed", now + 1,
                                                leg))
        return result

    monkeypatch.setattr(accepting, "evalsha", then_the_legs_end)
    callbacks.accept_callback(dataclasses.replace(desk, r=accepting), "CA-cb", "A2", now,
                              leg)
    monkeypatch.undo()

    assert ended == [True]  # its log is to be written now
    assert get_call(desk.r, "CA-cb")["callback_state"] == "done"
    assert waiting(desk) == [] and not presence.on_call(desk.r, "A2", "CA-cb")
    enqueue_call_log(desk.job_redis, "CA-cb")  # what the webhook does with that answer
    run_jobs(desk)
    with desk.session_factory() as db:
        assert [log.call_sid for log in db.scalars(select(CallLog))] == ["CA-cb"]


def test_a_taken_callback_whose_legs_end_is_lost_is_logged_when_its_talk_hold_runs_out(
        desk, lakeview, emulator, client):
    """A2 took the callback; the leg's end never reaches the desk (Twilio's status
    callback lost). When the talk's hold runs out, A2 is free and the call is logged,
    once: no call goes unlogged."""
    _, leg, _ = _callback_ringing_advisor(desk, emulator, client)
    now = int(time.time() * 1000)
    assert callbacks.accept_callback(desk, "CA-cb", "A2", now, leg)
    later = now + desk.settings.talk_lease_seconds * 1000 + 1
    assert acd.reconcile(desk, later)["freed"] == 1
    assert acd.reconcile(desk, later + 10_000)["freed"] == 0
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"
    assert get_call(desk.r, "CA-cb")["callback_state"] == "done"
    run_jobs(desk)
    with desk.session_factory() as db:
        assert [log.call_sid for log in db.scalars(select(CallLog))] == ["CA-cb"]


def test_a_callback_talk_whose_legs_end_comes_before_its_dial_result_is_logged_answered(
        desk, lakeview, emulator, client):
    """A2 takes the callback and talks with the contact; when A2 hangs up, Twilio posts
    the leg's end before the `<Dial>`'s action. The call is logged once, as answered
    by A2, and the leg's end repeated later changes nothing."""
    status_path, leg, _ = _callback_ringing_advisor(desk, emulator, client)
    now = int(time.time() * 1000)
    assert callbacks.accept_callback(desk, "CA-cb", "A2", now, leg)
    assert callbacks.end_callback(desk, "CA-cb", "A2", "completed", now + 90_000, leg)
    enqueue_call_log(desk.job_redis, "CA-cb")  # what the webhook does with that answer
    callbacks.contact_dial_ended(desk, "CA-cb", "A2", "completed", 80,
                                 attempt=1, now_ms=now + 91_000)
    assert not callbacks.end_callback(desk, "CA-cb", "A2", "completed", now + 95_000, leg)
    assert get_call(desk.r, "CA-cb")["callback_state"] == "done"
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
    assert (log.call_sid, log.answered_by, log.status) == ("CA-cb", "A2", "answered")


def test_a_repeated_accept_of_a_callback_dials_the_contact_again(
        desk, lakeview, emulator, client):
    """Twilio asks the accept again (its first request timed out, so the first answer
    is lost): the repeat must dial the contact as the first did, never hang up on A2."""
    _, leg, _ = _callback_ringing_advisor(desk, emulator, client)
    [placed] = emulator.created_calls
    accept = urlsplit(placed.url)._replace(path="/voice/callback/accept").geturl()
    for token in ("first", "again"):  # each handled anew
        answer = post(client, accept.removeprefix(BASE_URL), {"CallSid": leg, "Digits": "1"},
                      token=token)
        assert dialed(answer) == [PAT], token
    assert get_call(desk.r, "CA-cb")["callback_state"] == "dialing-contact"
    assert presence.advisor_state(desk.r, "A2")["hold"] == "talking"


def test_a_callback_talk_as_long_as_twilio_allows_is_not_cut_short_by_the_reconciler(
        desk, lakeview, emulator, client):
    """A2 takes the callback and talks for the four hours Twilio's `<Dial>` allows,
    counted from the dial, which starts after the accept: A2's hold still holds then."""
    _, leg, _ = _callback_ringing_advisor(desk, emulator, client)
    accepted = int(time.time() * 1000)
    assert callbacks.accept_callback(desk, "CA-cb", "A2", accepted, leg)
    dial_ends = accepted + 60_000 + 4 * 3600 * 1000  # a minute's whisper and ringing
    assert acd.reconcile(desk, dial_ends)["freed"] == 0
    assert get_call(desk.r, "CA-cb")["callback_state"] == "dialing-contact"


def test_a_legs_end_read_before_the_reconciler_gave_the_callback_to_another_changes_nothing(
        desk, lakeview, emulator, client, monkeypatch):
    """A2's leg's end has read the callback as ringing A2 when the reconciler releases A2
    (their hold ran out) and A7, freed, is rung for the callback: the end must not
    queue the contact again while A7's phone rings for them."""
    _, leg, _ = _callback_ringing_advisor(desk, emulator, client)
    expired = int(time.time() * 1000) + desk.lease_ms + 1

    def reconciler_then_a7() -> None:
        acd.reconcile(desk, expired)
        availability.free_advisor(desk, "A7", expired, explicit=True)

    _between_the_legs_end_reads(desk, monkeypatch, reconciler_then_a7)
    assert not callbacks.end_callback(desk, "CA-cb", "A2", "no-answer", expired, leg)
    assert waiting(desk) == []
    call = get_call(desk.r, "CA-cb")
    assert (call["callback_state"], call["ringing"]) == ("ringing-advisor", "A7")
    assert call["callback_leg"] == emulator.created_calls[-1].sid != leg
    assert call["callback_offers"] == "1"


# --- the ring timeout, one setting ------------------------------------------------------


def test_an_advisor_rings_as_long_as_the_desk_says(desk, lakeview):
    """The `<Dial>` of an advisor rings for the desk's ring timeout, not a literal."""
    from ivr import twiml

    slow = dataclasses.replace(desk, settings=dataclasses.replace(
        desk.settings, ring_timeout_seconds=35))
    make_available(desk, "A2")
    now = int(time.time() * 1000)
    start_call(desk.r, "CA-slow", {"caller": PAT, "base": BASE_URL, "started_at": now,
                                   "team": "general", "priority": "medium", "menu": "2"})
    decision = acd.route_caller(slow, "CA-slow", now)
    assert isinstance(decision, acd.DialAdvisor)
    dial = ET.fromstring(str(twiml.route(Prompts(), decision, "CA-slow", []))).find("Dial")
    assert dial is not None and dial.get("timeout") == "35"


# --- an upgrade finds the previous release's wrap-ups -----------------------------------


def _previous_release_wrapup(desk, advisor: str, sid: str, until_ms: int) -> str:
    """What the previous release left for an advisor wrapping up after `sid`: the
    `wrapup-` token in `call` (no `hold` field), and the wrap-up's end scheduled
    under its job path and id. Returns that job's id."""
    from jobs.queues import Queues, queue

    desk.r.hset(keys.advisor(advisor), mapping={
        "status": "busy", "since": until_ms - 60_000, "call": f"wrapup-{sid}",
        "lease": until_ms})
    desk.r.zadd(keys.leases(), {advisor: until_ms})
    job_id = f"end-wrapup-{advisor}-wrapup-{sid}"
    queue(Queues.PRESENCE, desk.job_redis).enqueue_at(
        datetime.fromtimestamp(until_ms / 1000, tz=CHICAGO), "workers.presence.end_wrapup",
        advisor, f"wrapup-{sid}", job_id=job_id)
    return job_id


def _scheduled(desk) -> set[str]:
    from rq.registry import ScheduledJobRegistry

    from jobs.queues import SERIALIZER, Queues, queue

    registry = ScheduledJobRegistry(queue=queue(Queues.PRESENCE, desk.job_redis),
                                    serializer=SERIALIZER)
    return set(registry.get_job_ids())


def test_after_an_upgrade_an_advisor_in_wrapup_can_end_it_and_is_freed_on_time(
        desk, lakeview, client, settings):
    from caseline.cli import prepare_service

    until = int(time.time() * 1000) + 30_000
    old_job = _previous_release_wrapup(desk, "A2", "CA-talk", until)
    prepare_service(settings)  # what `caseline serve` and `caseline worker` do first
    prepare_service(settings)  # twice: nothing more changes

    [a2] = [a for a in client.get("/api/advisors", headers=API).get_json() if a["id"] == "A2"]
    assert (a2["status"], a2["wrap_up"], a2["call_sid"]) == ("busy", True, None)
    # The wrap-up still ends on time, by this release's wrap-up clock; the old job is gone.
    from jobs.queues import WRAPUP_ENDS, wrapup_end

    assert desk.r.zrange(WRAPUP_ENDS, 0, -1, withscores=True) == [
        (wrapup_end("A2", "CA-talk"), until)]
    assert old_job not in _scheduled(desk)
    # And the advisor can end it themselves, as before the upgrade.
    answer = client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    assert answer.get_json() == {"id": "A2", "status": "available", "call": None}
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"


def test_the_status_answer_during_wrapup_names_no_call(desk, lakeview, client):
    """PUT /api/advisors/<id>/status answers `call` as GET /api/advisors does: the call
    they ring or talk on, never the one they are wrapping up."""
    wrapping = dataclasses.replace(desk, settings=desk.settings.with_changes(wrapup_seconds=30))
    now = int(time.time() * 1000)
    make_available(desk, "A2")
    _on_call(wrapping, "A2", "CA-talk", now)
    talking = client.put("/api/advisors/A2/status", json={"status": "busy"}, headers=API)
    assert talking.get_json()["call"] == "CA-talk"
    acd.end_call(wrapping, "CA-talk", "completed", 60, now + 60_000)
    wrapup = client.put("/api/advisors/A2/status", json={"status": "busy"}, headers=API)
    assert wrapup.get_json() == {"id": "A2", "status": "busy", "call": None}


# --- 1b. Twilio's API not reachable at all (the network, not an HTTP answer) -------------


@pytest.fixture
def resetting_port():
    """A port whose server reads each request, then resets its connection (TCP RST)
    instead of answering: the request reached the server. (A reset before the request
    was read could beat the client's own connect, when the request never left it.)"""
    import socket
    import struct
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.mark.parametrize("network", ["connection refused", "connection reset"])
def test_a_waiting_caller_keeps_their_place_when_twilio_cannot_be_reached(
        desk, lakeview, network, resetting_port):
    from tests.conftest import free_port

    port = resetting_port if network == "connection reset" else free_port()
    settings = desk.settings.with_changes(twilio_api_url=f"http://127.0.0.1:{port}")
    cut_off = dataclasses.replace(desk, telephony=Telephony(settings, retry_delays=(0.01,) * 4,
                                                            longest_look=0.01))
    now = int(time.time() * 1000)
    queue_caller(cut_off, "CA-first", now - 60_000)
    score = cut_off.r.zscore(keys.team_waiting("general"), "CA-first")

    availability.free_advisor(cut_off, "A2", now, explicit=True)

    # Nothing is known about the caller: they keep their place; the advisor is free.
    assert waiting(cut_off) == ["CA-first"]
    assert cut_off.r.zscore(keys.team_waiting("general"), "CA-first") == score
    assert presence.advisor_state(cut_off.r, "A2")["status"] == "available"


def test_a_stray_update_of_an_unknown_call_leaves_no_key_behind(desk):
    """A late webhook for a call whose hash is gone (or never was) must not create a
    hash without an expiry (it would never leave Redis)."""
    assert call_state.update_call(desk.r, "CA-unknown", state="ended") is False
    assert not desk.r.exists(keys.call("CA-unknown"))


def test_one_calls_idempotency_token_never_answers_for_another_call(desk, lakeview, client):
    """A repeat is the same call with the same token: another call that happens to
    carry that token is handled as itself."""
    token = str(uuid.uuid4())
    post(client, "/voice/incoming", {"CallSid": "CA-one", "From": PAT, "To": "+18005550100",
                                      "StirVerstat": "TN-Validation-Passed-A"}, token=token)
    post(client, "/voice/incoming", {"CallSid": "CA-two", "From": STRANGER,
                                      "To": "+18005550100"}, token=token)
    assert get_call(desk.r, "CA-two").get("caller") == STRANGER


@pytest.mark.parametrize("network, tries", [("connection refused", 5), ("connection reset", 1)])
def test_a_call_is_placed_again_only_when_the_request_never_reached_twilio(
        desk, network, tries, resetting_port):
    """A refused connection sent nothing: placing the call is tried again. A reset
    one may have reached Twilio, which may have placed the call: not tried again."""
    from tests.conftest import free_port

    port = resetting_port if network == "connection reset" else free_port()
    settings = desk.settings.with_changes(twilio_api_url=f"http://127.0.0.1:{port}")
    waits: list[float] = []
    telephony = Telephony(settings, retry_delays=(0.01,) * 4, sleep=waits.append)
    assert telephony.place_call(to=A2_PHONE, from_="+18005550100", url=f"{BASE_URL}/x",
                                status_callback=f"{BASE_URL}/y") is None
    assert len(waits) + 1 == tries


@pytest.mark.parametrize("bypassed", [False, True])
def test_twilios_api_is_reached_through_the_environments_proxy(
        settings, emulator, monkeypatch, request, bypassed):
    """A line behind an outbound proxy (`HTTP_PROXY`/`HTTPS_PROXY`, `NO_PROXY`) reaches
    Twilio's API through it: the REST client reads them once, when it is built."""
    for name in ("HTTPS_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    # The only way to Twilio's (unresolvable) address is the proxy: the emulator, which
    # serves a proxied request as its own.
    monkeypatch.setenv("HTTP_PROXY", emulator.url)
    if bypassed:
        monkeypatch.setenv("NO_PROXY", "api.twilio.invalid")
    telephony = Telephony(settings.with_changes(twilio_api_url="http://api.twilio.invalid"),
                          retry_delays=())
    request.addfinalizer(lambda: telephony.client.http_client.session.close())
    sid = telephony.place_call(to=A2_PHONE, from_="+18005550100", url=f"{BASE_URL}/x",
                               status_callback=f"{BASE_URL}/y")
    if bypassed:
        assert sid is None  # straight to an address that does not resolve
    else:
        assert sid is not None and sid.startswith("CA")
        assert telephony.redirect_call(sid, f"{BASE_URL}/z")


@pytest.mark.parametrize("chosen", ["busy", "offline"])
def test_an_advisor_who_goes_away_while_their_caller_is_brought_over_is_not_rung(
        quick, lakeview, emulator, client, chosen):
    now = int(time.time() * 1000)
    emulator.register_call("CA-first")
    emulator.register_call("CA-second")
    queue_caller(quick, "CA-first", now - 60_000)
    queue_caller(quick, "CA-second", now - 30_000)
    assert availability.free_advisor(quick, "A2", now, explicit=True).call_sid == "CA-first"
    url, _method = emulator.take_redirect("CA-first")
    # A2 walks away before Twilio fetches the redirect's TwiML.
    assert client.put("/api/advisors/A2/status", json={"status": chosen},
                      headers=API).status_code == 200

    answer = post(client, url.removeprefix(BASE_URL), {"CallSid": "CA-first",
                                                       "CallStatus": "in-progress"})

    assert A2_PHONE not in dialed(answer)
    assert answer.find("Enqueue") is not None  # waiting again...
    assert waiting(quick) == ["CA-first", "CA-second"]  # ...at the head, where they were
    state = presence.advisor_state(quick.r, "A2")
    assert (state["status"], state["call"]) == (chosen, "")
    # The next advisor to come on takes them.
    assert availability.free_advisor(quick, "A7", now + 1_000, explicit=True).call_sid \
        == "CA-first"
