"""A colleague on the call, off the happy path: what a reviewer found breaking.

Each test here is a defect a fresh reviewer found while trying to break the
feature, written to fail on the code before its fix. Calls are walked by the
Twilio-side driver against the REST emulator, or driven by hand with signed
webhooks where Twilio's order of events is the point.
"""

from __future__ import annotations

import threading

import pytest

from config.prompts import Prompts
from routing import presence
from routing.call_state import get_call
from tests import test_colleague
from tests.conftest import API_TOKEN, make_available
from tests.test_colleague import COLLEAGUE, _call_in_thread, _talking, _until
from tests.webhooks import post

API = {"Authorization": f"Bearer {API_TOKEN}"}
lakeview = test_colleague.lakeview  # the same directory: Lakeview, Pat, A7, case 2024117


def test_two_adds_at_once_dial_the_colleague_once(phone, desk, lakeview, app, emulator):
    """The advisor double-clicks "add" (or has the console open in two tabs): the
    second request arrives while the first is still moving the legs (Twilio
    answering 429 to the first try). One colleague at a time, says the feature:
    one of the two is refused, and the colleague's phone rings once."""
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 3.0)
    sid = _talking(desk)
    emulator.fail_next(429, 429)  # the first add's advisor redirect is retried (~0.75 s)
    answers: list[int] = []

    def first_tab() -> None:
        answers.append(app.test_client().post(
            "/api/advisors/A7/colleague", json={"phone": COLLEAGUE}, headers=API).status_code)

    first = threading.Thread(target=first_tab, daemon=True)
    first.start()
    _until(lambda: any(r.status == 429 for r in emulator.requests))
    second = app.test_client().post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                                    headers=API)
    answers.append(second.status_code)
    first.join(10)
    thread.join(20)
    room = f"caseline-{sid}"
    dialed = [c for c in emulator.created_calls if c.conference == room]
    assert len(dialed) == 1, f"the colleague was dialed {len(dialed)} times ({answers})"
    assert sorted(answers) == [201, 409]


class SlowTwilio:
    """Twilio's API as the service meets it on a busy day: a proxy in front of the
    emulator that, once a request matching `after` has been answered, makes the
    emulator answer the next requests with `faults` (429s: the client's backoff
    then holds the service for seconds). Nothing of the service is replaced."""

    def __init__(self, emulator, after, faults) -> None:
        import requests
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.emulator, self.after, self.faults, self.armed = emulator, after, faults, False
        session = requests.Session()

        @Request.application
        def forward(request: Request) -> Response:
            answer = session.request(
                request.method, emulator.url.rstrip("/") + request.full_path.rstrip("?"),
                data=request.get_data(), headers={
                    k: v for k, v in request.headers.items() if k.lower() != "host"},
                timeout=10)
            if not self.armed and self.after(request):
                self.armed = True
                emulator.fail_next(*self.faults)
            return Response(answer.content, status=answer.status_code,
                            content_type=answer.headers.get("Content-Type"))

        self.server = make_server("127.0.0.1", 0, forward, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _app_behind(make_app, settings, proxy):
    """The caseline app with Twilio's API reached through `proxy` (closed after the
    test: `make_app`)."""
    import dataclasses

    app = make_app(dataclasses.replace(settings, twilio_api_url=proxy.url))
    app.testing = True
    return app


def _moves(role: str):
    return lambda request: (request.method == "POST" and "/Calls/" in request.path
                            and f"role%3D{role}" in request.get_data(as_text=True))


def test_a_late_redirect_of_the_contact_does_not_end_the_conference(
        settings, desk, lakeview, emulator, make_app):
    """Twilio answers 429 to the first tries of the contact's redirect (~3.5 s of backoff).
    Meanwhile the contact's `<Dial>` action held them 2 s and sent them into the
    conference themselves. The retried redirect then lands on a contact already in
    the conference: with endConferenceOnExit, their leaving ends it, the advisor is
    hung up and freed for the next caller, and the contact is walked into the
    conference again without them."""
    from tests.conftest import Phone

    # (The proxy keeps serving after the test: the app's REST pool may still use it.)
    proxy = SlowTwilio(emulator, after=_moves("advisor"), faults=[429] * 4)
    app = _app_behind(make_app, settings, proxy)
    make_available(desk, "A7")
    caller, thread = _call_in_thread(Phone(app, emulator), 7.0)
    sid = _talking(desk)
    added = app.test_client().post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                                   headers=API)
    assert added.status_code == 201, added.get_json()
    thread.join(30)
    result = caller.result
    kinds = [(e.kind, e.party, e.detail) for e in result.transcript]
    assert get_call(desk.r, sid).get("contact_joined_at")
    # The call ends when Pat hangs up, not before: the advisor stays until then.
    # (Today: "ended: the caller left" while Pat is on the line, the advisor hung up,
    # Pat walked into the conference again and surveyed as if the advisor had left.)
    moves = [k for k in kinds if k[0] in ("conference", "hangup")]
    assert ("hangup", "caller", "") in kinds, moves
    hangup = kinds.index(("hangup", "caller", ""))
    ended = [i for i, k in enumerate(kinds) if k[0] == "conference" and k[2].startswith("ended")]
    advisor_gone = [i for i, k in enumerate(kinds) if k[:2] == ("hangup", "advisor")]
    assert ended and min(ended) > hangup, moves
    assert advisor_gone and min(advisor_gone) > hangup, moves
    assert not any("five quick questions" in text for text in result.heard())


def test_a_call_with_a_colleague_is_logged_with_its_talk_time(
        phone, desk, lakeview, client, emulator):
    """Pat talks with the advisor and the colleague, then hangs up in the conference.
    A bridged call's log carries its talk time (from the `<Dial>` action); once the
    call moved into the conference, nothing sets it: the log says None."""
    from directory.models import CallLog
    from tests.conftest import run_jobs

    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 2.0)
    _talking(desk)
    assert client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                       headers=API).status_code == 201
    thread.join(20)
    assert caller.result.answered_by
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.query(CallLog).all()
    assert log.answered_by == "A7" and log.details["colleagues"]
    assert log.talk_seconds is not None and log.talk_seconds >= 1


# --- Calls driven by hand, as Twilio would post them, where the order of events matters ---

LINE = "+18005550100"
PAT_PHONE = "+16125550101"


def _path(url: str) -> str:
    """A TwiML URL as the test client posts it (the path and query only)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _bridged_by_hand(desk, client, emulator, sid: str = "CA-pat", leg: str = "CA-a7-leg") -> None:
    """Pat calls about case 2024117 and A7 accepts: the legs bridged, both live at the
    emulator (so the REST API can move them), every webhook signed as Twilio's."""
    make_available(desk, "A7")
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT_PHONE, "To": LINE,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    ask = post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "1"})
    dial = post(client, _path(ask.find("Gather").get("action")),
                {"CallSid": sid, "Digits": "2024117"})
    number = dial.find("Dial/Number")
    assert number is not None, dial
    whisper = post(client, _path(number.get("url")),
                   {"CallSid": leg, "ParentCallSid": sid, "From": LINE, "To": number.text})
    accept = whisper.find("Gather")
    bridged = post(client, _path(accept.get("action")),
                   {"CallSid": leg, "ParentCallSid": sid, "Digits": "1"})
    assert len(bridged) == 0  # an empty document: the bridge
    emulator.register_call(sid, from_=PAT_PHONE, to=LINE)
    emulator.register_call(leg, from_=LINE, to="+16515550199", direction="outbound-dial")


def test_the_colleagues_end_reaches_the_log_when_twilio_posts_it_after_the_contacts(
        desk, lakeview, client, emulator):
    """Pat hangs up in the conference: Twilio ends it and posts Pat's status callback
    and the colleague's `completed` independently, in no promised order. The log
    job runs at once on Pat's; the colleague's `completed` a moment later is kept
    in Redis only: the log says the colleague never left (left_at and outcome None)."""
    from directory.models import CallLog
    from tests.conftest import run_jobs

    _bridged_by_hand(desk, client, emulator)
    added = client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE}, headers=API)
    assert added.status_code == 201, added.get_json()
    colleague = added.get_json()["leg"]
    room = post(client, "/voice/conference/join?call=CA-pat&role=advisor",
                {"CallSid": "CA-a7-leg", "CallStatus": "in-progress"})
    assert room.find("Dial/Conference").text == "caseline-CA-pat"
    post(client, "/voice/conference/join?call=CA-pat&role=contact",
         {"CallSid": "CA-pat", "CallStatus": "in-progress"})
    post(client, "/voice/conference/colleague?call=CA-pat",
         {"CallSid": colleague, "CallStatus": "in-progress", "From": LINE, "To": COLLEAGUE})
    # Pat hangs up: the conference ends. Pat's status callback first...
    post(client, "/voice/conference/ended?call=CA-pat&role=contact",
         {"CallSid": "CA-pat", "CallStatus": "completed", "DialCallStatus": "completed"})
    post(client, "/voice/status", {"CallSid": "CA-pat", "CallStatus": "completed",
                                   "CallDuration": "300", "From": PAT_PHONE, "To": LINE})
    run_jobs(desk)  # the worker is quick
    # ...the colleague's a moment later.
    post(client, "/voice/conference/colleague?call=CA-pat",
         {"CallSid": colleague, "CallStatus": "completed", "CallDuration": "200",
          "From": LINE, "To": COLLEAGUE})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.query(CallLog).all()
    [logged] = log.details["colleagues"]
    assert logged["joined_at"]
    assert logged["left_at"] and logged["outcome"] == "completed", logged


def test_a_colleague_dialed_after_the_contact_hung_up_is_hung_up(
        settings, desk, lakeview, emulator, make_app):
    """Both legs moved; Twilio answers 429 to the participant's creation (~1.75 s of
    backoff) and Pat hangs up meanwhile: the conference ends, Pat's status callback
    hangs up the legs it knows (the colleague's is not known yet). The participant
    is then created: on Twilio a new conference of that name with the colleague
    alone in it, on the desk's line, until they give up. Either the add is refused
    (the call is over) or the colleague's leg is hung up."""
    proxy = SlowTwilio(emulator, after=_moves("contact"), faults=[429] * 3)
    app = _app_behind(make_app, settings, proxy)
    client = app.test_client()
    _bridged_by_hand(desk, client, emulator)
    answers: list = []

    def add() -> None:
        answers.append(app.test_client().post(
            "/api/advisors/A7/colleague", json={"phone": COLLEAGUE}, headers=API))

    adding = threading.Thread(target=add, daemon=True)
    adding.start()
    _until(lambda: any(r.status == 429 and "Participants" in r.path for r in emulator.requests))
    # Pat was in the conference and hangs up: it ends, and Twilio says so.
    post(client, "/voice/conference/join?call=CA-pat&role=advisor",
         {"CallSid": "CA-a7-leg", "CallStatus": "in-progress"})
    post(client, "/voice/conference/join?call=CA-pat&role=contact",
         {"CallSid": "CA-pat", "CallStatus": "in-progress"})
    post(client, "/voice/conference/ended?call=CA-pat&role=contact",
         {"CallSid": "CA-pat", "CallStatus": "completed", "DialCallStatus": "completed"})
    emulator.end_call("CA-pat")
    post(client, "/voice/status", {"CallSid": "CA-pat", "CallStatus": "completed",
                                   "CallDuration": "60", "From": PAT_PHONE, "To": LINE})
    adding.join(15)
    [answer] = answers
    if answer.status_code != 201:
        assert answer.get_json()["error"] == "call-over"
        return
    leg = answer.get_json()["leg"]

    def hung_up() -> bool:
        return any(r.call_sid == leg and r.form.get("Status") in ("completed", "canceled")
                   and r.status == 200 for r in emulator.requests)
    _until(hung_up, seconds=6)


def test_an_advisor_gone_before_the_contact_joined_leaves_no_conference_without_them(
        desk, lakeview, client, emulator):
    """A7 adds the colleague; their leg joins the conference and hangs up (a dropped
    mobile, a slip of the thumb) before Pat's leg arrives. The conference ends with
    A7 (endConferenceOnExit), but Pat's join then starts it again, with the
    colleague ringing in and nobody of the desk: the opposite of "the advisor's leg
    ends it too". Pat should hear the end of the call (the survey, as when the
    advisor leaves), and A7 should be free, not "talking" on a call they left."""
    from routing import presence

    _bridged_by_hand(desk, client, emulator)
    assert client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                       headers=API).status_code == 201
    post(client, "/voice/conference/join?call=CA-pat&role=advisor",
         {"CallSid": "CA-a7-leg", "CallStatus": "in-progress"})
    # A7 hangs up in the conference: Twilio requests their <Dial>'s action.
    post(client, "/voice/conference/ended?call=CA-pat&role=advisor",
         {"CallSid": "CA-a7-leg", "CallStatus": "completed", "DialCallStatus": "completed"})
    emulator.end_call("CA-a7-leg")
    joined = post(client, "/voice/conference/join?call=CA-pat&role=contact",
                  {"CallSid": "CA-pat", "CallStatus": "in-progress"})
    assert joined.find("Dial/Conference") is None, "Pat joins a conference without the advisor"
    assert presence.advisor_state(desk.r, "A7").get("hold") != "talking"


def test_an_advisor_hanging_up_while_the_move_is_retried_ends_the_call_as_usual(
        desk, lakeview, client, emulator):
    """A7 clicks "add"; Twilio answers 503 to the first tries of moving A7's leg, and
    A7 hangs up meanwhile. Pat's `<Dial>` ends with the advisor gone, as any bridged
    call whose advisor hangs up: Pat should hear the end of the call (the survey),
    and A7 be released. Today Pat hears "we are bringing your colleague onto the
    call", waits, and is hung up on once the add fails (no survey, no goodbye)."""
    _bridged_by_hand(desk, client, emulator)
    emulator.fail_next(503, 503)
    answers: list = []

    def add() -> None:
        answers.append(client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                                   headers=API))

    adding = threading.Thread(target=add, daemon=True)
    adding.start()
    _until(lambda: any(r.status == 503 for r in emulator.requests))
    emulator.end_call("CA-a7-leg")  # A7 hangs up: the next try hears "not in-progress"
    after = post(client, "/voice/dial-result?advisor=A7",
                 {"CallSid": "CA-pat", "CallStatus": "in-progress",
                  "DialCallStatus": "completed", "DialCallDuration": "95"})
    adding.join(10)
    assert answers[0].status_code == 409 and answers[0].get_json()["error"] == "call-over"
    redirect = after.find("Redirect")
    assert redirect is None or "conference" not in (redirect.text or ""), \
        "Pat is held for a conference the advisor never reached"
    assert after.find("Gather") is not None  # the survey, as after any advisor's hang-up


def test_the_lines_own_number_is_not_a_colleague(desk, lakeview, client, emulator):
    """"Add a colleague" with the support line's own number (a slip, or a copy of the
    caller-ID the advisor sees): the participant is an outbound call from the line
    to the line, which Twilio answers with our own IVR, into the contact's
    conference, billed both ways. Refused like any number that is not a colleague."""
    _bridged_by_hand(desk, client, emulator)
    before = len(emulator.created_calls)
    refused = client.post("/api/advisors/A7/colleague", json={"phone": "1-800-555-0100"},
                          headers=API)
    assert len(emulator.created_calls) == before, "the line dialed itself"
    assert (refused.status_code, refused.get_json()["error"]) == (400, "line-number")


def test_an_advisors_phone_is_not_a_colleague(desk, directory, lakeview, client, emulator):
    """A7 brings in A2's phone as a colleague: A2 would sit in the conference while
    presence, which never saw the call, still offers them the next caller (a double
    booking). Refused, nothing dialed; A2 stays free for the queue."""
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.load()
    _bridged_by_hand(desk, client, emulator)
    make_available(desk, "A2")
    before = len(emulator.created_calls)
    refused = client.post("/api/advisors/A7/colleague", json={"phone": "(651) 555-0102"},
                          headers=API)
    assert (refused.status_code, refused.get_json()["error"]) == (400, "advisor-number")
    assert len(emulator.created_calls) == before, "A2's phone was dialed into the call"
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"


def test_conference_webhooks_about_a_call_that_never_moved_change_nothing(
        desk, lakeview, client, emulator):
    """Found by the webhook fuzz: a conference's end posted for a plain bridged call
    (a stray request, or one for another call's leg) freed the advisor talking on it,
    who could then be rung for the next caller while still on this one."""
    from routing import presence

    _bridged_by_hand(desk, client, emulator)
    for role in ("advisor", "contact"):
        post(client, f"/voice/conference/ended?call=CA-pat&role={role}",
             {"CallSid": "CA-pat", "CallStatus": "in-progress", "DialCallStatus": "completed"})
        post(client, f"/voice/conference/join?call=CA-pat&role={role}",
             {"CallSid": "CA-pat", "CallStatus": "in-progress"})
    state = presence.advisor_state(desk.r, "A7")
    assert (state.get("hold"), state.get("call")) == ("talking", "CA-pat")
    assert not get_call(desk.r, "CA-pat").get("talk_seconds")


def test_a_colleague_twilio_may_have_dialed_is_not_dialed_again(
        settings, desk, lakeview, emulator, make_app):
    """Both legs moved; Twilio dials the colleague into the conference but answers
    500 (its error 20500: creating a call is not idempotent). A second try would
    ring the colleague's phone twice: the add is not tried again and the advisor
    hears that Twilio failed, to try again by hand if nobody rings in."""
    proxy = SlowTwilio(emulator, after=_moves("contact"), faults=["acted:500"])
    app = _app_behind(make_app, settings, proxy)
    client = app.test_client()
    _bridged_by_hand(desk, client, emulator)
    answer = client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE}, headers=API)
    assert answer.get_json()["error"] == "twilio-unavailable"
    dialed = [c for c in emulator.created_calls if c.conference == "caseline-CA-pat"]
    assert len(dialed) == 1, f"the colleague was dialed {len(dialed)} times"


@pytest.mark.parametrize("fault", ["acted:500", "acted:reset"])
def test_a_move_twilio_carried_out_but_failed_keeps_the_advisor_in_the_conference(
        phone, desk, lakeview, client, emulator, fault):
    """A7 adds a colleague; Twilio moves A7's leg into the conference, then answers 500
    or cuts the connection. Sent again, the move took A7's leg out of the conference
    it had just joined: its `<Dial>` action said A7 had left (wrap-up), the conference
    ended with them, A7 was hung up, and Pat, moved in, heard the end of the call
    (the survey) without the advisor or the colleague. Now the desk sees A7's leg
    join and moves it once."""
    make_available(desk, "A7")
    caller, thread = _call_in_thread(phone, 2.0)
    sid = _talking(desk)
    emulator.fail_next(fault)
    added = client.post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE}, headers=API)
    assert added.status_code == 201, added.get_json()
    thread.join(20)
    result = caller.result
    moves = [r for r in emulator.redirects() if "role%3Dadvisor" in r.form["Url"]
             or "role=advisor" in r.form["Url"]]
    assert len(moves) == 1  # A7's leg moved once
    room = f"caseline-{sid}"
    events = [(e.kind, e.party, e.text, e.detail) for e in result.transcript]
    assert ("conference", "advisor", room, "joined") in events
    assert ("conference", "caller", room, "joined") in events
    assert ("colleague", "colleague", COLLEAGUE, "joined") in events
    # The conference ends when Pat hangs up, and A7 stays until then.
    kinds = [(kind, party, detail) for kind, party, _, detail in events]
    hangup = kinds.index(("hangup", "caller", ""))
    ended = [i for i, k in enumerate(kinds) if k[0] == "conference" and k[2].startswith("ended")]
    advisor_left = [i for i, k in enumerate(kinds)
                    if k[:2] == ("hangup", "advisor") or k[1:] == ("advisor", "left: the leg "
                                                                    "was redirected")]
    assert ended and min(ended) > hangup, kinds
    assert not advisor_left or min(advisor_left) > hangup, kinds
    assert Prompts().text("survey.intro") not in result.heard()  # not the call's end
    assert result.error is None
