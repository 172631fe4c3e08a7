"""PUBLIC_BASE_URL with a path prefix (https://host/caseline behind a reverse proxy):
every URL caseline hands Twilio stays under the prefix, and every webhook there is
signed over the URL Twilio requested (docs/deploy.md, "Behind a reverse proxy")."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import requests
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from config.prompts import Prompts
from config.settings import PROJECT_ROOT, Settings, SettingsError
from directory import keys
from ivr import twiml
from routing import presence
from tests.conftest import (
    ACCOUNT_SID,
    API_TOKEN,
    AUTH_TOKEN,
    caseline_command,
    free_port,
    line_env,
    make_available,
    run_jobs,
    stop_process,
)
from twilio_side import Caller, CallResult, HttpTransport, InProcessLink
from twilio_side.transport import PROXY_FORWARDS, PROXY_STRIPS, FlaskTransport

PREFIXED = "https://support.example.com/caseline"
PAT = "+16125550101"
COLLEAGUE = "+16125550177"
API = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def settings(settings):
    """The test service, reached by Twilio under a path prefix."""
    return settings.with_changes(public_base_url=PREFIXED)


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone="+16515550199")
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.case("2024117", owner="A7")
    directory.load()


def proxied(app, proxy: str) -> FlaskTransport:
    """Twilio's way to the app: through a proxy that serves it under /caseline only."""
    return FlaskTransport(app.test_client(), PREFIXED, auth_token=AUTH_TOKEN, proxy=proxy)


def all_under_the_prefix(result: CallResult) -> None:
    """Every request of the call reached the service under the prefix and was accepted."""
    assert result.error is None, result.summary()
    assert result.steps, result.summary()
    for step in result.steps:
        assert step.url.startswith(PREFIXED + "/voice/"), step.url
        assert step.status == 200, (step.url, step.status)


@pytest.mark.parametrize("proxy", [PROXY_STRIPS, PROXY_FORWARDS])
def test_a_whole_call_reaches_the_owner_under_the_prefix(app, desk, lakeview, client,
                                                          emulator, proxy):
    make_available(desk, "A7")
    result = Caller(proxied(app, proxy), PAT, keys=["1", "2024117#"], advisor_policy="answer",
                    account_sid=ACCOUNT_SID, emulator_link=InProcessLink(emulator),
                    talk_seconds=40).run()
    all_under_the_prefix(result)
    assert result.outcome == "advisor" and result.answered_by == "+16515550199"
    kinds = {step.kind for step in result.steps}
    assert {"call", "gather", "dial-action", "status"} <= kinds, kinds
    run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert log["answered_by"] == "A7" and log["status"] == "answered"
    assert log["talk_seconds"] == 40  # the status callback reached the service


def test_a_waiting_caller_is_redirected_to_the_freed_advisor_under_the_prefix(
        app, desk, lakeview, client, emulator):
    freed = []

    def free_an_advisor_once_waiting(event) -> None:
        if event.kind == "wait" and not freed:
            freed.append(client.put("/api/advisors/A2/status", json={"status": "available"},
                                    headers=API).status_code)

    result = Caller(proxied(app, PROXY_STRIPS), PAT, keys=["2"], advisor_policy="answer",
                    account_sid=ACCOUNT_SID, emulator_link=InProcessLink(emulator),
                    on_event=free_an_advisor_once_waiting, max_wait_seconds=5,
                    wait_poll_interval=0.02).run()
    all_under_the_prefix(result)
    assert freed == [200]
    assert result.queued and result.redirected_at
    assert result.outcome == "advisor" and result.answered_by == "+16515550102"
    # The REST redirect named the connect webhook under the prefix too.
    redirects = [r.form.get("Url", "") for r in emulator.requests if r.form.get("Url")]
    assert redirects and all(url.startswith(PREFIXED + "/voice/") for url in redirects)
    run_jobs(desk)
    assert desk.r.zcard(keys.team_waiting("general")) == 0


def test_a_callback_the_line_places_is_walked_under_the_prefix(app, desk, lakeview, client,
                                                               emulator):
    caller = Caller(proxied(app, PROXY_STRIPS), PAT, keys=["2", "wait:1"],
                    account_sid=ACCOUNT_SID, emulator_link=InProcessLink(emulator),
                    max_wait_seconds=5, wait_poll_interval=0.02)
    waited = caller.run()
    all_under_the_prefix(waited)
    assert waited.queued
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [leg] = emulator.created_calls
    assert leg.url.startswith(PREFIXED + "/voice/")
    assert leg.status_callback.startswith(PREFIXED + "/voice/")
    advisor_leg = Caller(
        proxied(app, PROXY_STRIPS), "+18005550100", "+16515550102", start_url=leg.url,
        direction="outbound-api", call_sid=leg.sid, keys=["1"],
        advisor_policy={PAT: "answer"}, account_sid=ACCOUNT_SID,
        status_path=leg.status_callback, talk_seconds=90)
    callback = advisor_leg.run()
    all_under_the_prefix(callback)
    assert callback.dialed == [PAT] and callback.outcome == "advisor"


def test_unset_public_url_a_colleague_is_brought_in_where_twilio_reached_the_call(
        settings, desk, lakeview, make_app, emulator):
    # PUBLIC_BASE_URL unset, the forwarded kind: Twilio reaches the call under
    # https://support.example.com/caseline, while the advisor's request comes in on the
    # service's own address (a console on the LAN), which Twilio cannot reach.
    app = make_app(settings.with_changes(public_base_url=None))
    make_available(desk, "A7")
    caller = Caller(proxied(app, PROXY_FORWARDS), PAT, keys=["1", "2024117#"],
                    advisor_policy="answer", account_sid=ACCOUNT_SID,
                    emulator_link=InProcessLink(emulator), on_call_seconds=1.5)
    thread = threading.Thread(target=caller.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while presence.advisor_state(desk.r, "A7").get("hold") != "talking":
        assert time.monotonic() < deadline, "the advisor never answered"
        time.sleep(0.02)
    added = app.test_client().post("/api/advisors/A7/colleague", json={"phone": COLLEAGUE},
                                   headers=API, base_url="http://10.0.0.5:8000/caseline")
    thread.join(20)
    assert added.status_code == 201, added.get_json()
    all_under_the_prefix(caller.result)
    moves = [r.form["Url"] for r in emulator.redirects()]
    assert len(moves) == 2 and all(url.startswith(PREFIXED + "/voice/conference/join")
                                   for url in moves), moves
    [colleague] = [leg for leg in emulator.created_calls if leg.conference]
    assert colleague.to == COLLEAGUE
    assert colleague.status_callback.startswith(PREFIXED + "/voice/conference/colleague")


def test_a_url_outside_the_prefix_is_refused_even_if_it_reaches_the_service(client, lakeview):
    # Signed by "Twilio" over the host's root, but checked over PUBLIC_BASE_URL + path:
    # the signature stays exact, so a URL under another path is never accepted.
    form = {"AccountSid": ACCOUNT_SID, "CallSid": "CA" + "1" * 32, "From": PAT}
    root = "https://support.example.com/voice/incoming"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(root, form)
    answer = client.post("/voice/incoming", data=form, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 403
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PREFIXED + "/voice/incoming", form)
    answer = client.post("/voice/incoming", data=form, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 200


def test_only_the_services_own_urls_move_under_the_prefix():
    p = Prompts()
    response = twiml.voicemail(p, ["Leave a message."])
    response.redirect("/voice/menu", method="POST")
    response.play("/hold.mp3")
    response.play("https://music.example.com/hold.mp3")
    response.redirect("//elsewhere.example.com/voice/menu")
    root = ET.fromstring(str(twiml.under("/caseline", response)))
    record = root.find("Record")
    assert record.get("action") == "/caseline/voice/recorded"
    assert record.get("transcribeCallback") == "/caseline/voice/transcribed"
    assert [el.text for el in root.findall("Redirect")] == [
        "/caseline/voice/menu", "//elsewhere.example.com/voice/menu"]
    # A <Play> holds the operator's file, never a route of the service: as written.
    assert [el.text for el in root.findall("Play")] == [
        "/hold.mp3", "https://music.example.com/hold.mp3"]


@pytest.mark.parametrize("hold_music", ["/caseline/media/hold.mp3", "/media/hold.mp3"])
def test_the_hold_music_is_played_where_the_operator_put_it(settings, desk, lakeview, make_app,
                                                            emulator, tmp_path, hold_music):
    # Root-relative, Twilio fetches it from the host it reached: a file the proxy serves
    # under the prefix is already written with it, and one at the host's root has none.
    words = tmp_path / "prompts.toml"
    shipped = (PROJECT_ROOT / "config" / "prompts.toml").read_text()
    words.write_text(re.sub(r"(?m)^hold_music = .*$", f'hold_music = "{hold_music}"', shipped))
    app = make_app(settings, prompts=Prompts(words))
    result = Caller(proxied(app, PROXY_STRIPS), PAT, keys=["2"], account_sid=ACCOUNT_SID,
                    emulator_link=InProcessLink(emulator), max_wait_seconds=1,
                    wait_poll_interval=0.02).run()
    all_under_the_prefix(result)
    assert result.queued
    played = {event.url for event in result.transcript if event.kind == "play"}
    assert played == {hold_music}, result.summary()


@pytest.mark.parametrize("public", [
    "https://support.example.com/caseline?via=proxy",  # a query
    "https://support.example.com/caseline#frag",  # a fragment
    "support.example.com/caseline",  # no scheme: the whole of it a relative path
    "ftp://support.example.com/caseline",
    "https://support.example.com:port/caseline",
    "https:///caseline",  # no host
])
def test_a_public_url_twilio_cannot_be_sent_to_is_refused_at_start(public, tmp_path):
    # Accepted, it started a service whose every webhook answered 403.
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"PUBLIC_BASE_URL": public, "TWILIO_AUTH_TOKEN": "t"},
                          dotenv=tmp_path / ".env")
    assert "PUBLIC_BASE_URL" in str(refused.value) and repr(public) in str(refused.value)


@pytest.mark.parametrize("public", [PREFIXED, PREFIXED + "/", "http://10.0.0.5:8000",
                                    "http://127.0.0.1:8000/caseline/"])
def test_a_public_url_with_or_without_a_prefix_is_taken_as_written(public, tmp_path):
    taken = Settings.from_env({"PUBLIC_BASE_URL": public}, dotenv=tmp_path / ".env")
    assert taken.public_base_url == public


def test_without_a_prefix_the_twiml_is_unchanged():
    p = Prompts()
    before = str(twiml.main_menu(p, [], attempt=1))
    assert str(twiml.under("", twiml.main_menu(p, [], attempt=1))) == before
    assert str(twiml.under("", VoiceResponse())) == str(VoiceResponse())


@pytest.fixture
def served_under_a_prefix(settings, desk, tmp_path) -> Iterator[str]:
    """`caseline serve` (gunicorn) behind a proxy that forwards the /caseline prefix:
    gunicorn is told it with SCRIPT_NAME. Its public URL, which takes the prefix."""
    port = free_port()
    public = f"http://127.0.0.1:{port}/caseline"
    env = line_env(settings, tmp_path / "instance", port, PUBLIC_BASE_URL=public,
                   SCRIPT_NAME="/caseline")
    process = subprocess.Popen(caseline_command("serve", "--workers", "1", "--threads", "4"),
                               env=env, cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(public):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("caseline serve did not start")
            time.sleep(0.1)
        yield public
    finally:
        stop_process(process)


def _healthy(url: str) -> bool:
    """Whether the service at `url` answers its liveness check."""
    try:
        return requests.get(f"{url}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


def test_gunicorn_told_the_forwarded_prefix_serves_a_whole_call(served_under_a_prefix, desk,
                                                                lakeview, emulator, client):
    make_available(desk, "A7")
    with HttpTransport(served_under_a_prefix, auth_token=AUTH_TOKEN) as twilio:
        result = Caller(twilio, PAT, keys=["1", "2024117#"], advisor_policy="answer",
                        account_sid=ACCOUNT_SID, emulator_link=InProcessLink(emulator),
                        talk_seconds=40).run()
    assert result.error is None, result.summary()
    assert all(step.url.startswith(served_under_a_prefix + "/voice/") and step.status == 200
               for step in result.steps), result.summary()
    assert result.outcome == "advisor" and result.answered_by == "+16515550199"
    run_jobs(desk)
    [log] = client.get("/api/cases/2024117/calls", headers=API).get_json()
    assert log["answered_by"] == "A7" and log["talk_seconds"] == 40


def test_a_request_outside_the_prefix_is_not_found_not_a_server_error(served_under_a_prefix):
    """A probe or a webhook URL that lacks the prefix gunicorn was told (SCRIPT_NAME)
    is a 404 naming the prefix, not gunicorn's HTML 500 "Configuration problem"."""
    root = served_under_a_prefix.removesuffix("/caseline")
    for answer in (requests.get(f"{root}/readyz", timeout=10),
                   requests.post(f"{root}/voice/incoming", data={}, timeout=10),
                   requests.get(f"{root}/caselinex/healthz", timeout=10)):
        assert answer.status_code == 404, answer.text
        assert "/caseline" in answer.json()["error"]
    assert requests.get(f"{served_under_a_prefix}/readyz", timeout=10).status_code == 200
