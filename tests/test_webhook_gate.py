"""Hostile posts to /voice: refused before anything is parsed, computed or changed."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from directory import keys
from ivr import gate
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL, make_available

CALL_SID = "CA" + "3" * 32
FORM = {"CallSid": CALL_SID, "AccountSid": ACCOUNT_SID, "From": "+16125550101",
        "To": "+18005550100", "CallStatus": "ringing", "Direction": "inbound"}


def sign(path: str, form) -> str:
    """The signature Twilio would send for a post of `form` to `path`."""
    return RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + path, form)


def signed_post(client, path: str, form: dict[str, str], **headers: str):
    """Post `form` to `path` signed as Twilio signs."""
    return client.post(path, data=form, headers={"X-Twilio-Signature": sign(path, form),
                                                  **headers})


def snapshot(r) -> dict[str, bytes | None]:
    """Every key in Redis with its serialized value."""
    raw = r.connection_pool.connection_kwargs
    assert raw.get("decode_responses")
    return {key: r.execute_command("DUMP", key, NEVER_DECODE=True) for key in r.keys("*")}


@pytest.fixture
def hmac_calls(monkeypatch) -> list[str]:
    """Every HMAC the app computes over a request (by the twilio library's validator)."""
    calls: list[str] = []
    original = RequestValidator.compute_signature

    def counting(self, uri, *args, **kwargs):
        calls.append(uri)
        return original(self, uri, *args, **kwargs)

    monkeypatch.setattr(RequestValidator, "compute_signature", counting)
    return calls


def twiml_root(response) -> ET.Element:
    """The TwiML document of a response (it must be one)."""
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    return root


# --- URLs that are not webhooks ----------------------------------------------


@pytest.mark.parametrize("path", ["/voice/no-such-page", "/voice/", "/voice/menu/extra",
                                  "/voice/incoming/../admin"])
def test_an_unknown_voice_path_is_403_unsigned_404_signed_with_no_twiml(
        client, r, settings, make_app, path):
    settings_fallback = make_app(settings.with_changes(fallback_number="+16515550000"))
    for app_client in (client, settings_fallback.test_client()):
        for headers, status in (({}, 403), ({"X-Twilio-Signature": "forged"}, 403),
                                ({"X-Twilio-Signature": sign(path, FORM)}, 404)):
            before = snapshot(r)
            response = app_client.post(path, data=FORM, headers=headers)
            assert response.status_code == status, headers
            assert response.data == b""
            assert snapshot(r) == before


def test_a_webhook_fetched_with_get_is_403_unsigned_405_signed_with_no_twiml(client, r):
    path = "/voice/incoming?" + urlencode(FORM)
    for headers, status in (({}, 403), ({"X-Twilio-Signature": sign(path, {})}, 405)):
        response = client.get(path, headers=headers)
        assert response.status_code == status
        assert response.data == b""
    assert not r.exists(keys.call(CALL_SID))


# --- the body's shape -----------------------------------------------------------


def test_a_64_kb_value_still_gets_twiml(client, r):
    form = {**FORM, "Digits": "9" * 64 * 1024}
    response = signed_post(client, "/voice/incoming", form)
    assert response.status_code == 200
    assert twiml_root(response).find("Gather") is not None


def test_a_body_over_128_kib_is_refused_before_any_hmac(client, r, hmac_calls):
    form = {**FORM, "Digits": "9" * (gate.MAX_BODY_BYTES + 1)}
    signature = sign("/voice/incoming", form)
    hmac_calls.clear()
    response = client.post("/voice/incoming", data=form,
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 413
    assert response.data == b""
    assert hmac_calls == []
    assert not r.exists(keys.call(CALL_SID))


def test_a_body_of_exactly_128_kib_is_heard(client, r):
    base = urlencode({**FORM, "Digits": ""})
    form = {**FORM, "Digits": "9" * (gate.MAX_BODY_BYTES - len(base))}
    assert len(urlencode(form)) == gate.MAX_BODY_BYTES
    response = signed_post(client, "/voice/incoming", form)
    assert response.status_code == 200
    twiml_root(response)


def test_a_chunked_body_without_length_stops_at_128_kib(client, r, hmac_calls):
    body = urlencode({**FORM, "Digits": "9" * (gate.MAX_BODY_BYTES + 10)}).encode()
    response = client.post("/voice/incoming", input_stream=io.BytesIO(body),
                           content_type=gate.FORM_TYPE,
                           headers={"Transfer-Encoding": "chunked", "X-Twilio-Signature": "x"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert hmac_calls == []
    assert not r.exists(keys.call(CALL_SID))


@pytest.mark.parametrize("content_type", ["application/json", "text/plain",
                                          "multipart/form-data; boundary=x", "text/xml"])
def test_a_body_that_is_not_a_url_encoded_form_is_refused(client, r, hmac_calls, content_type):
    body = urlencode(FORM).encode()
    response = client.post("/voice/incoming", data=body, content_type=content_type,
                           headers={"X-Twilio-Signature": sign("/voice/incoming", FORM)})
    assert response.status_code == 415
    assert response.data == b""
    assert hmac_calls[1:] == []  # only the test's own signing
    assert not r.exists(keys.call(CALL_SID))


def test_a_multipart_form_is_refused(client, r):
    response = client.post("/voice/incoming", data={**FORM, "f": (io.BytesIO(b"x"), "f.txt")},
                           headers={"X-Twilio-Signature": sign("/voice/incoming", FORM)})
    assert response.status_code == 415
    assert not r.exists(keys.call(CALL_SID))


def test_more_fields_than_a_64_kib_form_can_hold_are_refused_before_any_hmac(
        client, r, hmac_calls):
    body = urlencode(FORM) + "&x" * gate.MAX_FIELDS  # ~64 KiB of empty fields past FORM
    assert len(body) <= gate.MAX_BODY_BYTES
    response = client.post("/voice/incoming", data=body, content_type=gate.FORM_TYPE,
                           headers={"X-Twilio-Signature": "x"})
    assert response.status_code == 413
    assert response.data == b""
    assert hmac_calls == []
    assert not r.exists(keys.call(CALL_SID))


def test_a_menu_key_repeated_250_times_gets_twiml(client, r):
    # PRODUCT: repeated parameters get valid TwiML (a contract tester's 2.4 kB post).
    assert signed_post(client, "/voice/incoming", FORM).status_code == 200
    form = MultiDict([*FORM.items(), *[("Digits", "9")] * 250])
    response = client.post("/voice/menu?attempt=1", data=form, headers={
        "X-Twilio-Signature": sign("/voice/menu?attempt=1", form)})
    assert response.status_code == 200
    assert twiml_root(response).find("Gather") is not None  # 9 is no option: asked again


def test_a_64_kib_form_of_repeated_fields_gets_twiml(client, r):
    fields = (64 * 1024 - len(urlencode(FORM))) // len("&Digits=9")
    form = MultiDict([*FORM.items(), *[("Digits", "9")] * fields])
    assert len(urlencode(list(form.items(multi=True)))) <= 64 * 1024
    response = client.post("/voice/incoming", data=form,
                           headers={"X-Twilio-Signature": sign("/voice/incoming", form)})
    assert response.status_code == 200
    assert twiml_root(response).find("Gather") is not None


# --- our account ----------------------------------------------------------------


def test_another_account_sid_is_refused_with_no_side_effect(client, r):
    form = {**FORM, "AccountSid": "AC" + "b" * 32}
    for path in ("/voice/incoming", "/voice/status"):
        response = signed_post(client, path, {**form, "CallStatus": "completed"}
                               if path == "/voice/status" else form)
        assert response.status_code == 403
        assert list(twiml_root(response)) == []
    assert r.keys("*") == []


@pytest.mark.parametrize("account", ["", None])
def test_a_signed_post_without_an_account_sid_is_heard(client, r, account):
    # PRODUCT asks only for Twilio's signature, which only Twilio (our token) can make.
    form = {**FORM, "AccountSid": account} if account is not None else {
        k: v for k, v in FORM.items() if k != "AccountSid"}
    response = signed_post(client, "/voice/incoming", form)
    assert response.status_code == 200
    assert twiml_root(response).find("Gather") is not None


def test_without_a_configured_account_any_account_sid_is_heard(settings, desk, r, make_app):
    app = make_app(settings.with_changes(twilio_account_sid="AC" + "0" * 32))
    form = {**FORM, "AccountSid": "AC" + "b" * 32}
    response = signed_post(app.test_client(), "/voice/incoming", form)
    assert response.status_code == 200
    assert twiml_root(response).find("Gather") is not None


# --- calls with no session --------------------------------------------------------

UNKNOWN = "CA" + "e" * 32

# One webhook per family of the call flow, each with the keys that would move it on.
STRAY_WEBHOOKS = [
    ("/voice/menu", {"Digits": "1"}),
    ("/voice/menu", {"Digits": "8"}),
    ("/voice/verify/contact?option=1", {"Digits": "5001"}),
    ("/voice/verify/pin?option=1", {"Digits": "0000"}),
    ("/voice/verify/pin?option=8", {"Digits": "2468"}),
    ("/voice/case", {"Digits": "2024117"}),
    ("/voice/after-hours/case", {"Digits": "2024117"}),
    ("/voice/product", {"Digits": "1"}),
    ("/voice/outage/route", {}),
    ("/voice/oncall-result", {"DialCallStatus": "no-answer"}),
    ("/voice/dial-result?advisor=A7", {"DialCallStatus": "completed", "DialCallDuration": "60"}),
    ("/voice/dial-result?advisor=A7", {"DialCallStatus": "no-answer"}),
    ("/voice/wait", {"QueuePosition": "1"}),
    ("/voice/callback", {"Digits": "1"}),
    ("/voice/queue-result", {"QueueResult": "leave"}),
    ("/voice/queue-result", {"QueueResult": "queue-full"}),
    ("/voice/connect", {}),
    ("/voice/recorded", {"RecordingUrl": "https://api.twilio.com/rec/RE1",
                         "RecordingDuration": "12"}),
    ("/voice/whisper?call=" + UNKNOWN + "&advisor=A7", {}),
    ("/voice/whisper/accept?call=" + UNKNOWN + "&advisor=A7", {"Digits": "1"}),
    ("/voice/callback/advisor?call=" + UNKNOWN + "&advisor=A7", {}),
    ("/voice/callback/accept?call=" + UNKNOWN + "&advisor=A7", {"Digits": "1"}),
    ("/voice/callback/dial-result?call=" + UNKNOWN + "&advisor=A7",
     {"DialCallStatus": "completed", "DialCallDuration": "30"}),
    ("/voice/callback/status?call=" + UNKNOWN + "&advisor=A7", {"CallStatus": "completed"}),
]


@pytest.mark.parametrize(("path", "fields"), STRAY_WEBHOOKS,
                         ids=[f"{p.split('?')[0]}:{'/'.join(f.values())}"
                              for p, f in STRAY_WEBHOOKS])
def test_a_webhook_for_a_call_with_no_session_changes_nothing(
        client, r, directory, path, fields):
    directory.district()
    directory.contact()
    directory.advisor("A7", teams=["general", "hosting", "food-service"])
    directory.case()
    directory.load()
    make_available(directory.desk, "A7")
    before = snapshot(r)
    form = {**FORM, "CallSid": UNKNOWN, "CallStatus": "in-progress", **fields}
    response = signed_post(client, path, form, **{"I-Twilio-Idempotency-Token": "tok-1"})
    assert response.status_code == 200
    root = twiml_root(response)
    assert root.find(".//Dial") is None and root.find(".//Enqueue") is None
    assert snapshot(r) == before


def test_a_known_call_still_goes_on(client, r, directory):
    directory.district()
    directory.contact()
    directory.load()
    assert signed_post(client, "/voice/incoming", FORM).status_code == 200
    response = signed_post(client, "/voice/menu", {**FORM, "Digits": "1"})
    gather = twiml_root(response).find("Gather")
    assert gather is not None
