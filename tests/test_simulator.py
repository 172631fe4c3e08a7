"""The Twilio-side driver and REST emulator, against a tiny IVR defined here.

The tiny app is not caseline: it is the smallest service that uses every verb
the driver must walk (Gather, Dial with a whispered Number, Enqueue with a
waitUrl, Record, Redirect), checks Twilio's signature over its public base
URL, and remembers each form it received, so the tests can assert what a
caller would notice and what the service was told.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response, request
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse
from werkzeug.serving import make_server

from caseline.terminal_caller import run_call
from config.settings import Settings
from twilio_side import (
    AdvisorPolicy,
    Caller,
    CallResult,
    FlaskTransport,
    HttpLink,
    HttpTransport,
    InProcessLink,
    TwilioEmulator,
    format_transcript,
)

TOKEN = "test-auth-token"
ACCOUNT = "AC" + "1" * 32
PUBLIC = "http://ivr.test"
CALLER = "+16125550101"
A7, A8, A9 = "+16515550107", "+16515550108", "+16515550109"


# -- the tiny IVR --------------------------------------------------------------


def xml(response: VoiceResponse, status: int = 200) -> Response:
    """A TwiML response."""
    return Response(str(response), status=status, mimetype="text/xml")


def make_ivr(token: str = TOKEN, advisors: tuple[str, ...] = (A7, A8)) -> Flask:
    """A small IVR: menu, case number, whispered dial, queue, voicemail."""
    app = Flask(__name__)
    app.config["PUBLIC_BASE_URL"] = PUBLIC
    received: list[tuple[str, dict[str, str]]] = []
    app.config["RECEIVED"] = received

    @app.before_request
    def check_signature() -> Response | None:
        query = request.query_string.decode()
        url = app.config["PUBLIC_BASE_URL"] + request.path + (f"?{query}" if query else "")
        params = request.form if request.method == "POST" else {}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(token).validate(url, params, signature):
            return xml(VoiceResponse(), 403)
        received.append((request.path, dict(request.values.items())))
        return None

    @app.route("/voice/incoming", methods=["POST", "GET"])
    def incoming() -> Response:
        attempt = int(request.args.get("attempt", "1"))
        response = VoiceResponse()
        if attempt > 3:
            response.say("Goodbye.")
            response.hangup()
            return xml(response)
        if attempt == 1:
            response.say("Welcome to the support line.")
        gather = Gather(num_digits=1, action="/voice/menu", finish_on_key="")
        gather.say("Press 1 for a case, 2 to wait, 3 for voicemail.")
        response.append(gather)
        response.redirect(f"?attempt={attempt + 1}", method="GET")
        return xml(response)

    @app.post("/voice/menu")
    def menu() -> Response:
        response = VoiceResponse()
        digit = request.form.get("Digits")
        if digit == "1":
            gather = Gather(action="case", timeout=5)  # relative: resolves to /voice/case
            gather.say("Enter your case number, then pound.")
            response.append(gather)
            response.hangup()
        elif digit == "2":
            response.say("All advisors are busy.")
            response.enqueue("general", wait_url="/voice/wait", action="/voice/queue-result")
        elif digit == "3":
            response.say("Leave a message.")
            response.record(
                action="/voice/recorded",
                max_length=120,
                recording_status_callback="/voice/recording-status",
            )
        else:
            response.redirect("/voice/incoming?attempt=2")
        return xml(response)

    def dial(response: VoiceResponse, index: int, case: str) -> None:
        dial_verb = Dial(action=f"/voice/dial-result?case={case}&i={index}", timeout=20)
        dial_verb.number(advisors[index], url=f"/voice/whisper?case={case}")
        response.append(dial_verb)

    @app.post("/voice/case")
    def case() -> Response:
        response = VoiceResponse()
        response.say("Connecting you to your case owner.")
        dial(response, 0, request.form["Digits"])
        return xml(response)

    @app.post("/voice/whisper")
    def whisper() -> Response:
        response = VoiceResponse()
        gather = Gather(num_digits=1, timeout=8, action="/voice/whisper/accept")
        gather.say(f"Case {request.args['case']}. Press any key to accept.")
        response.append(gather)
        response.say("Not accepted.")
        response.hangup()
        return xml(response)

    @app.post("/voice/whisper/accept")
    def whisper_accept() -> Response:
        return xml(VoiceResponse())  # an empty document bridges the call

    @app.post("/voice/dial-result")
    def dial_result() -> Response:
        response = VoiceResponse()
        if request.form.get("DialBridged") == "true":
            response.hangup()
            return xml(response)
        index = int(request.args["i"]) + 1
        if index < len(advisors):
            dial(response, index, request.args["case"])
        else:
            response.say("Please hold.")
            response.enqueue("general", wait_url="/voice/wait", action="/voice/queue-result")
        return xml(response)

    @app.post("/voice/wait")
    def wait() -> Response:
        response = VoiceResponse()
        gather = Gather(num_digits=1, timeout=1, action="/voice/callback")
        gather.say(f"You are number {request.form['QueuePosition']} in line.")
        response.append(gather)
        response.play("http://example.test/hold.mp3")
        return xml(response)

    @app.post("/voice/callback")
    def callback() -> Response:
        response = VoiceResponse()
        response.say("We will call you back.")
        response.leave()
        return xml(response)

    @app.post("/voice/queue-result")
    def queue_result() -> Response:
        response = VoiceResponse()
        if request.form.get("QueueResult") == "leave":
            response.say("Goodbye.")
            response.hangup()
        return xml(response)

    @app.post("/voice/connect")
    def connect() -> Response:
        response = VoiceResponse()
        response.say("An advisor is free.")
        dial_verb = Dial(action="/voice/dial-result?case=none&i=99", timeout=20)
        dial_verb.number(A9, url="/voice/whisper?case=none")
        response.append(dial_verb)
        return xml(response)

    @app.post("/voice/recorded")
    def recorded() -> Response:
        response = VoiceResponse()
        response.say("Thank you.")
        response.hangup()
        return xml(response)

    @app.post("/voice/recording-status")
    def recording_status() -> Response:
        return xml(VoiceResponse())

    @app.post("/voice/spin")
    def spin() -> Response:
        response = VoiceResponse()
        response.redirect("/voice/spin")
        return xml(response)

    @app.post("/voice/status")
    def status() -> Response:
        return xml(VoiceResponse())

    return app


def forms(app: Flask, path: str) -> list[dict[str, str]]:
    """The forms the tiny IVR received on one path, oldest first."""
    return [form for p, form in app.config["RECEIVED"] if p == path]


# -- fixtures ------------------------------------------------------------------


@pytest.fixture
def ivr() -> Flask:
    """The tiny IVR."""
    return make_ivr()


@pytest.fixture
def flask_transport(ivr: Flask) -> FlaskTransport:
    """Webhooks through the test client, signed over the public URL."""
    return FlaskTransport(ivr.test_client(), PUBLIC, auth_token=TOKEN)


@pytest.fixture
def live_ivr(ivr: Flask) -> Iterator[str]:
    """The tiny IVR over real HTTP on 127.0.0.1; its base URL."""
    server = make_server("127.0.0.1", 0, ivr, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    ivr.config["PUBLIC_BASE_URL"] = base
    thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_transport(live_ivr: str) -> Iterator[HttpTransport]:
    """Webhooks over HTTP to the live tiny IVR."""
    with HttpTransport(live_ivr, auth_token=TOKEN) as transport:
        yield transport


@pytest.fixture
def rest_emulator() -> Iterator[TwilioEmulator]:
    """The Twilio REST emulator, checking the account's credentials."""
    with TwilioEmulator(account_sid=ACCOUNT, auth_token=TOKEN) as running:
        yield running


@pytest.fixture
def twilio_client(rest_emulator: TwilioEmulator) -> Iterator[Client]:
    """twilio's real REST client, pointed at the emulator."""
    client = Client(ACCOUNT, TOKEN)
    client.api.base_url = rest_emulator.url
    yield client
    session = getattr(client.http_client, "session", None)
    if session is not None:
        session.close()


def run_in_thread(caller: Caller) -> tuple[threading.Thread, dict[str, CallResult]]:
    """Run a call in the background (it will wait in a queue)."""
    box: dict[str, CallResult] = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", caller.run()), daemon=True)
    thread.start()
    return thread, box


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    """Poll until `condition()` is true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


# -- the walk ------------------------------------------------------------------


@pytest.mark.parametrize("transport_name", ["flask_transport", "http_transport"])
def test_case_number_reaches_the_owner_after_the_whisper(
    transport_name: str, request: pytest.FixtureRequest, ivr: Flask
) -> None:
    transport = request.getfixturevalue(transport_name)
    result = Caller(transport, CALLER, keys=["1", "2024117#"], account_sid=ACCOUNT).run()

    assert result.error is None
    assert result.outcome == "advisor"
    assert result.answered_by == A7
    assert result.dialed == [A7]
    assert result.keys_pressed == ["1", "2024117"]
    assert result.heard("caller")[:2] == [
        "Welcome to the support line.",
        "Press 1 for a case, 2 to wait, 3 for voicemail.",
    ]
    assert result.heard("advisor") == ["Case 2024117. Press any key to accept."]
    # What the service was told, exactly as Twilio would tell it.
    first = forms(ivr, "/voice/incoming")[0]
    assert first["CallStatus"] == "ringing"
    assert first["Direction"] == "inbound"
    assert first["From"] == CALLER and first["AccountSid"] == ACCOUNT
    assert forms(ivr, "/voice/menu")[0]["CallStatus"] == "in-progress"
    assert forms(ivr, "/voice/case")[0]["Digits"] == "2024117"
    whisper = forms(ivr, "/voice/whisper")[0]
    assert whisper["ParentCallSid"] == result.call_sid
    assert whisper["CallSid"] != result.call_sid
    assert whisper["Direction"] == "outbound-dial"
    assert whisper["To"] == A7
    assert forms(ivr, "/voice/whisper/accept")[0]["Digits"] == "1"
    dial_result = forms(ivr, "/voice/dial-result")[0]
    assert dial_result["DialCallStatus"] == "completed"
    assert dial_result["DialBridged"] == "true"
    assert dial_result["DialCallDuration"] == "60"
    assert dial_result["DialCallSid"] == whisper["CallSid"]
    status = forms(ivr, "/voice/status")
    assert [s["CallStatus"] for s in status] == ["completed"]
    assert int(status[0]["CallDuration"]) >= 60


def test_a_pause_in_the_whisper_is_an_error_as_twilio_allows_only_say_play_gather_hangup(
    flask_transport: FlaskTransport, ivr: Flask
) -> None:
    """Twilio's <Number> documentation: the url's TwiML may Play or Say, and Gather or
    Hang up; "the url attribute does not support any other TwiML verbs"."""
    def whisper_with_a_pause() -> Response:
        response = VoiceResponse()
        response.pause(length=1)
        gather = Gather(num_digits=1, timeout=8, action="/voice/whisper/accept")
        gather.say("Press any key to accept.")
        response.append(gather)
        return xml(response)

    ivr.view_functions["whisper"] = whisper_with_a_pause
    result = Caller(flask_transport, CALLER, keys=["1", "2024117#"], account_sid=ACCOUNT).run()

    assert result.error == "<Pause> is not allowed in a <Number url>"


def test_no_answer_moves_on_to_the_next_advisor(
    flask_transport: FlaskTransport, ivr: Flask
) -> None:
    policy = AdvisorPolicy(by_number={A7: "no-answer"})
    result = Caller(flask_transport, CALLER, keys=["1", "2024117#"], advisor_policy=policy).run()

    assert result.outcome == "advisor"
    assert result.dialed == [A7, A8]
    assert result.answered_by == A8
    statuses = [f["DialCallStatus"] for f in forms(ivr, "/voice/dial-result")]
    assert statuses == ["no-answer", "completed"]
    assert len(forms(ivr, "/voice/whisper")) == 1  # A7 never answered


def test_voicemail_pressing_nothing_is_not_bridged(
    flask_transport: FlaskTransport, ivr: Flask
) -> None:
    result = Caller(
        flask_transport, CALLER, keys=["1", "2024117#"], advisor_policy={A7: "voicemail"}
    ).run()

    assert result.answered_by == A8
    assert result.heard("advisor") == [
        "Case 2024117. Press any key to accept.",
        "Not accepted.",
        "Case 2024117. Press any key to accept.",
    ]
    first = forms(ivr, "/voice/dial-result")[0]
    assert (first["DialCallStatus"], first["DialBridged"]) == ("completed", "false")
    assert len(forms(ivr, "/voice/whisper/accept")) == 1  # only A8 accepted


def test_policy_callable_gets_each_numbers_attempt(flask_transport: FlaskTransport) -> None:
    seen: list[tuple[str, int]] = []

    def phone(number: str, attempt: int) -> str:
        seen.append((number, attempt))
        return "busy"

    result = Caller(
        flask_transport, CALLER, keys=["1", "7#"], advisor_policy=phone, max_wait_seconds=0.0
    ).run()

    assert seen == [(A7, 0), (A8, 0)]
    assert result.dial_results == [(A7, "busy"), (A8, "busy")]
    assert result.queued and result.outcome == "queue"


def test_silence_falls_through_to_the_reprompt_then_goodbye(
    flask_transport: FlaskTransport, ivr: Flask
) -> None:
    result = Caller(flask_transport, CALLER, keys=[]).run()

    assert result.outcome == "hangup" and result.error is None
    assert result.heard()[-1] == "Goodbye."
    # The Redirect "?attempt=N" is resolved against the document's URL and fetched with GET.
    attempts = [form.get("attempt") for form in forms(ivr, "/voice/incoming")]
    assert attempts == [None, "2", "3", "4"]
    assert forms(ivr, "/voice/incoming")[1]["CallSid"] == result.call_sid  # GET params in query


def test_a_wrong_token_is_refused_and_ends_the_call_with_an_error(ivr: Flask) -> None:
    transport = FlaskTransport(ivr.test_client(), PUBLIC, auth_token="not-the-token")
    result = Caller(transport, CALLER, keys=["1"]).run()

    assert result.error is not None and "403" in result.error
    assert result.outcome == "hangup"
    assert [e.kind for e in result.transcript][0] == "error"
    assert ivr.config["RECEIVED"] == []


def test_an_endless_redirect_trips_the_loop_guard(flask_transport: FlaskTransport) -> None:
    result = Caller(flask_transport, CALLER, start_url="/voice/spin").run()

    assert result.error is not None and "loop guard" in result.error
    assert len(result.steps) == 50 + 1  # 50 documents, then the status callback


def test_record_leaves_a_voicemail(flask_transport: FlaskTransport, ivr: Flask) -> None:
    result = Caller(flask_transport, CALLER, keys=["3"], record_seconds=12).run()

    assert result.outcome == "voicemail"
    recorded = forms(ivr, "/voice/recorded")[0]
    assert recorded["RecordingUrl"] == result.recording_url
    assert recorded["RecordingDuration"] == "12"
    assert recorded["RecordingSid"].startswith("RE")
    assert forms(ivr, "/voice/recording-status")[0]["RecordingStatus"] == "completed"
    assert result.heard()[-1] == "Thank you."


def test_status_callback_can_be_posted_twice(flask_transport: FlaskTransport, ivr: Flask) -> None:
    Caller(flask_transport, CALLER, keys=["3"], post_status_twice=True).run()

    statuses = forms(ivr, "/voice/status")
    assert len(statuses) == 2 and statuses[0]["CallSid"] == statuses[1]["CallSid"]


# -- queues and the REST emulator ---------------------------------------------------


def test_a_full_queue_refuses_the_caller_until_its_max_size_is_raised(
    ivr: Flask, flask_transport: FlaskTransport, rest_emulator: TwilioEmulator,
    twilio_client: Client,
) -> None:
    from twilio_side.queues import QUEUES  # noqa: PLC0415 - the board <Enqueue> waits on

    rest_emulator.reset()  # this process's queues: none yet
    try:
        queues = twilio_client.api.v2010.account.queues
        created = queues.create(friendly_name="general")
        assert created.max_size == 1000  # Twilio's default
        with pytest.raises(TwilioRestException) as too_big:
            queues(created.sid).update(max_size=5001)
        assert too_big.value.status == 400
        assert queues(created.sid).update(max_size=1).max_size == 1
        rest_emulator.register_call("CA-already-waiting")
        assert QUEUES.enter("general", "CA-already-waiting")

        def call() -> CallResult:
            return Caller(flask_transport, CALLER, keys=["2"], account_sid=ACCOUNT,
                          emulator_link=InProcessLink(rest_emulator),
                          max_wait_seconds=0.5).run()

        refused = call()
        assert not refused.queued
        assert [f["QueueResult"] for f in forms(ivr, "/voice/queue-result")] == ["queue-full"]
        assert queues(created.sid).update(max_size=5000).max_size == 5000
        waited = call()
        assert waited.queued and waited.queues == ["general"]
        wait_form = forms(ivr, "/voice/wait")[0]
        assert wait_form["MaxQueueSize"] == "5000" and wait_form["CurrentQueueSize"] == "2"
        assert [(q.friendly_name, q.max_size) for q in queues.list()] == [("general", 5000)]
    finally:
        rest_emulator.reset()


@pytest.mark.parametrize("transport_name", ["flask_transport", "http_transport"])
def test_a_rest_redirect_takes_the_caller_out_of_the_queue(
    transport_name: str,
    request: pytest.FixtureRequest,
    ivr: Flask,
    rest_emulator: TwilioEmulator,
    twilio_client: Client,
) -> None:
    transport = request.getfixturevalue(transport_name)
    # Over HTTP, the caller reaches the emulator as a separate process would.
    link = InProcessLink(rest_emulator) if transport_name == "flask_transport" else None
    http_link = HttpLink(rest_emulator.url)
    caller = Caller(
        transport,
        CALLER,
        keys=["2"],
        account_sid=ACCOUNT,
        emulator_link=link or http_link,
        max_wait_seconds=10,
    )
    thread, box = run_in_thread(caller)
    wait_for(lambda: len(forms(ivr, "/voice/wait")) >= 2)

    # What caseline does when an advisor frees up: redirect the waiting call.
    base = ivr.config["PUBLIC_BASE_URL"]
    call = twilio_client.api.v2010.account.calls(caller.call_sid).update(
        url=f"{base}/voice/connect", method="POST"
    )
    thread.join(timeout=10)
    http_link.close()
    result = box["result"]

    assert call.sid == caller.call_sid and call.status == "in-progress"
    assert [r.path for r in rest_emulator.redirects()] == [
        f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{caller.call_sid}.json"
    ]
    assert rest_emulator.redirects()[0].username == ACCOUNT
    assert result.error is None
    assert result.queued and result.outcome == "advisor" and result.answered_by == A9
    assert len(result.redirected_at) == 1
    assert "You are number 1 in line." in result.heard()
    wait_form = forms(ivr, "/voice/wait")[0]
    assert wait_form["QueueSid"].startswith("QU") and wait_form["QueuePosition"] == "1"
    # Twilio requests the Enqueue action when a REST redirect dequeues the call.
    assert [f["QueueResult"] for f in forms(ivr, "/voice/queue-result")] == ["redirected"]
    # Once the call is over, the same redirect fails as it does on Twilio.
    with pytest.raises(TwilioRestException) as failure:
        twilio_client.api.v2010.account.calls(caller.call_sid).update(url=f"{base}/voice/connect")
    assert failure.value.status == 400 and failure.value.code == 21220


@pytest.mark.parametrize(
    ("update", "heard_last", "queue_result"),
    [
        (
            {"twiml": "<Response><Say>Closing early.</Say></Response>"},
            "Closing early.",
            "redirected",
        ),
        ({"status": "completed"}, "You are number 1 in line.", "hangup"),
    ],
)
def test_rest_twiml_or_hangup_reaches_a_waiting_caller(
    update: dict[str, str],
    heard_last: str,
    queue_result: str,
    flask_transport: FlaskTransport,
    ivr: Flask,
    rest_emulator: TwilioEmulator,
    twilio_client: Client,
) -> None:
    caller = Caller(flask_transport, CALLER, keys=["2"], emulator_link=InProcessLink(rest_emulator))
    thread, box = run_in_thread(caller)
    wait_for(lambda: len(forms(ivr, "/voice/wait")) >= 1)

    twilio_client.api.v2010.account.calls(caller.call_sid).update(**update)
    thread.join(timeout=10)
    result = box["result"]

    assert result.error is None and result.outcome == "hangup"
    assert result.heard()[-1] == heard_last
    assert [f["QueueResult"] for f in forms(ivr, "/voice/queue-result")] == [queue_result]
    assert not rest_emulator.is_live(caller.call_sid)


def test_a_key_while_waiting_leaves_the_queue(flask_transport: FlaskTransport, ivr: Flask) -> None:
    result = Caller(flask_transport, CALLER, keys=["2", "wait:9"], max_wait_seconds=5).run()

    assert result.outcome == "hangup" and result.error is None
    assert forms(ivr, "/voice/callback")[0]["Digits"] == "9"
    assert forms(ivr, "/voice/queue-result")[0]["QueueResult"] == "leave"
    assert result.heard()[-2:] == ["We will call you back.", "Goodbye."]


def test_giving_up_in_the_queue(flask_transport: FlaskTransport, ivr: Flask) -> None:
    result = Caller(flask_transport, CALLER, keys=["2"], max_wait_seconds=0.2).run()

    assert result.outcome == "queue"
    assert 0.2 <= result.queue_seconds < 2
    queue_result = forms(ivr, "/voice/queue-result")[0]
    assert (queue_result["QueueResult"], queue_result["CallStatus"]) == ("hangup", "completed")


def test_emulator_answers_like_twilio(rest_emulator: TwilioEmulator, twilio_client: Client) -> None:
    calls = twilio_client.api.v2010.account.calls
    with pytest.raises(TwilioRestException) as unknown:
        calls("CA" + "f" * 32).update(url="http://x.test/a")
    assert unknown.value.status == 404 and unknown.value.code == 20404

    rest_emulator.register_call("CA" + "a" * 32)
    member = (
        twilio_client.api.v2010.account.queues("QU" + "b" * 32)
        .members("CA" + "a" * 32)
        .update(url="http://x.test/connect", method="GET")
    )
    assert member.call_sid == "CA" + "a" * 32
    assert rest_emulator.take_redirect("CA" + "a" * 32) == ("http://x.test/connect", "GET")
    assert rest_emulator.take_redirect("CA" + "a" * 32) is None

    created = calls.create(to=CALLER, from_="+18005550100", url="http://x.test/callback")
    assert created.sid.startswith("CA") and created.status == "queued"
    assert rest_emulator.created_calls[0].to == CALLER

    stranger = Client(ACCOUNT, "wrong-token")
    stranger.api.base_url = rest_emulator.url
    with pytest.raises(TwilioRestException) as denied:
        stranger.api.v2010.account.calls("CA" + "a" * 32).update(url="http://x.test/a")
    stranger.http_client.session.close()
    assert denied.value.status == 401


def test_emulator_lists_calls_by_twilios_filters(
        rest_emulator: TwilioEmulator, twilio_client: Client) -> None:
    """`GET Calls.json` filters as Twilio's Call resource documents it (`To`, `From`,
    `ParentCallSid`, `Status`), newest first, paged (the client follows the pages)."""
    advisor, parent = "+16515550102", "CA" + "1" * 32
    rest_emulator.register_call(parent, from_=CALLER, to="+18005550100")
    with HttpLink(rest_emulator.url) as link:  # a `<Dial>`'s leg, from another process
        link.register("CA" + "2" * 32, from_="+18005550100", to=advisor,
                      parent_call_sid=parent)
    for n in range(3, 6):  # three calls placed to the advisor through the REST API
        rest_emulator.register_call("CA" + str(n) * 32, to=advisor)
    rest_emulator.end_call("CA" + "3" * 32)
    calls = twilio_client.api.v2010.account.calls

    live = calls.list(to=advisor, status="in-progress", page_size=2)
    assert [call.sid for call in live] == ["CA" + "5" * 32, "CA" + "4" * 32, "CA" + "2" * 32]
    assert [call.parent_call_sid for call in live] == [None, None, parent]
    assert [call.sid for call in calls.list(parent_call_sid=parent)] == ["CA" + "2" * 32]
    assert [call.sid for call in calls.list(to=advisor, status="completed")] == [
        "CA" + "3" * 32]
    assert calls.list(to=advisor, status="ringing") == []
    assert [call.sid for call in calls.list(from_=CALLER)] == [parent]
    rest_emulator.fail_next_fetch(503)  # a read of the list fails as a call's read does
    with pytest.raises(TwilioException, match="Unable to fetch page") as failed:
        calls.list(to=advisor)  # twilio's pages raise their plain exception
    assert "HTTP 503" in str(failed.value)


def test_http_link_reaches_an_emulator_in_another_process(rest_emulator: TwilioEmulator) -> None:
    with HttpLink(rest_emulator.url) as link:
        link.register("CA" + "c" * 32)
        assert rest_emulator.is_live("CA" + "c" * 32)
        assert link.take_update("CA" + "c" * 32) is None
        twilio = Client(ACCOUNT, TOKEN)
        twilio.api.base_url = rest_emulator.url
        twilio.api.v2010.account.calls("CA" + "c" * 32).update(
            twiml="<Response><Hangup/></Response>"
        )
        twilio.api.v2010.account.calls("CA" + "c" * 32).update(status="completed")
        twilio.http_client.session.close()
        update = link.take_update("CA" + "c" * 32)
        assert update is not None and update.twiml == "<Response><Hangup/></Response>"
        update = link.take_update("CA" + "c" * 32)
        assert update is not None and update.hangup
        link.end("CA" + "c" * 32)
        assert not rest_emulator.is_live("CA" + "c" * 32)


# -- rendering and the terminal caller ---------------------------------------------


def test_transcript_reads_like_the_call(flask_transport: FlaskTransport) -> None:
    result = Caller(
        flask_transport, CALLER, keys=["1", "2024117#"], advisor_policy={A7: "no-answer"}
    ).run()
    lines = format_transcript(result).splitlines()

    assert 'caller hears: "Welcome to the support line."' in lines
    assert "caller presses: 1" in lines
    assert "caller presses: 2024117" in lines
    assert f"ringing {A7} ... no answer" in lines
    assert f"ringing {A8} ... advisor picks up" in lines
    assert "  advisor presses 1 (accept)" in lines
    assert f"connected to {A8} (talking 60s)" in lines
    summary = result.summary()
    assert f"outcome: advisor (answered by {A8})" in summary
    assert "/voice/whisper" in summary


def test_run_call_unattended_exit_status(live_ivr: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(twilio_auth_token=TOKEN, public_base_url=live_ivr)
    options = {"from_number": CALLER, "keys": "1 2024117#", "expect": "advisor"}

    assert run_call(options, settings=settings) == 0
    out = capsys.readouterr().out
    assert "caller presses: 2024117" in out and "outcome: advisor" in out
    assert run_call({**options, "expect": "voicemail"}, settings=settings) == 1
    assert run_call({**options, "token": "wrong"}, settings=settings) == 2


def test_run_call_interactive(live_ivr: str, rest_emulator: TwilioEmulator) -> None:
    settings = Settings(twilio_auth_token=TOKEN, public_base_url=live_ivr)
    typed = io.StringIO("1\n2024117#\nn\nb\n")  # menu, case, A7 no answer, A8 busy
    out = io.StringIO()

    code = run_call(
        {"from_number": CALLER, "emulator": rest_emulator.url, "max_wait": 0.3, "expect": "queue"},
        out=out,
        inp=typed,
        settings=settings,
    )

    text = out.getvalue()
    assert code == 0, text
    assert f"> {A7} is ringing" in text and f"ringing {A8} ... busy" in text
    assert 'waiting in queue "general"' in text
