"""Hostile posts to /voice: refused (403 `<Response/>` unless signed with our auth token)
before anything is parsed, computed or changed."""

from __future__ import annotations

import hashlib
import io
import logging
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


def refused_unsigned(response) -> bool:
    """Whether the answer is the gate's refusal of an unsigned request: 403, `<Response/>`."""
    return (response.status_code == 403 and response.mimetype == "text/xml"
            and list(twiml_root(response)) == [])


def body_signed(path: str, body: bytes) -> tuple[str, str]:
    """The URL (`path` with `bodySHA256`) and signature Twilio sends with a body that is
    not a form: the signature is over the URL alone, which carries the body's hash."""
    url = f"{path}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    return url, RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + url, {})


# --- URLs that are not webhooks ----------------------------------------------


@pytest.mark.parametrize("path", ["/voice/no-such-page", "/voice/", "/voice/menu/extra",
                                  "/voice/incoming/../admin"])
def test_an_unknown_voice_path_is_403_unsigned_404_signed_with_no_fallback_twiml(
        client, r, settings, make_app, path):
    settings_fallback = make_app(settings.with_changes(fallback_number="+16515550000"))
    for app_client in (client, settings_fallback.test_client()):
        for headers in ({}, {"X-Twilio-Signature": "forged"}):
            before = snapshot(r)
            response = app_client.post(path, data=FORM, headers=headers)
            assert refused_unsigned(response), headers
            assert snapshot(r) == before
        response = app_client.post(path, data=FORM,
                                   headers={"X-Twilio-Signature": sign(path, FORM)})
        assert response.status_code == 404
        assert response.data == b""


def test_a_webhook_fetched_with_get_is_403_unsigned_405_signed(client, r):
    path = "/voice/incoming?" + urlencode(FORM)
    assert refused_unsigned(client.get(path))
    response = client.get(path, headers={"X-Twilio-Signature": sign(path, {})})
    assert response.status_code == 405
    assert response.data == b""
    assert not r.exists(keys.call(CALL_SID))


# --- the body's shape -----------------------------------------------------------


def test_a_64_kb_value_still_gets_twiml(client, r):
    form = {**FORM, "Digits": "9" * 64 * 1024}
    response = signed_post(client, "/voice/incoming", form)
    assert response.status_code == 200
    assert twiml_root(response).find("Gather") is not None


def test_a_body_over_128_kib_is_refused_as_unsigned_before_any_hmac(client, r, hmac_calls):
    # Twilio never sends one, so it cannot carry Twilio's signature, even one computed
    # with our token.
    form = {**FORM, "Digits": "9" * (gate.MAX_BODY_BYTES + 1)}
    signature = sign("/voice/incoming", form)
    hmac_calls.clear()
    response = client.post("/voice/incoming", data=form,
                           headers={"X-Twilio-Signature": signature})
    assert refused_unsigned(response)
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
    assert refused_unsigned(response)
    assert hmac_calls == []
    assert not r.exists(keys.call(CALL_SID))


@pytest.mark.parametrize("content_type", ["application/json", "text/plain",
                                          "multipart/form-data; boundary=x", "text/xml"])
def test_a_body_that_is_not_a_form_signed_as_a_form_is_refused_unparsed(
        client, r, hmac_calls, content_type):
    # Twilio signs a body that is not a form over the URL and its bodySHA256: a form's
    # signature (no bodySHA256) is no signature of it, and no HMAC is worth computing.
    body = urlencode(FORM).encode()
    response = client.post("/voice/incoming", data=body, content_type=content_type,
                           headers={"X-Twilio-Signature": sign("/voice/incoming", FORM)})
    assert refused_unsigned(response)
    assert hmac_calls[1:] == []  # only the test's own signing
    assert not r.exists(keys.call(CALL_SID))


def test_a_multipart_form_signed_as_a_form_is_refused(client, r):
    response = client.post("/voice/incoming", data={**FORM, "f": (io.BytesIO(b"x"), "f.txt")},
                           headers={"X-Twilio-Signature": sign("/voice/incoming", FORM)})
    assert refused_unsigned(response)
    assert not r.exists(keys.call(CALL_SID))


def test_more_fields_than_a_64_kib_form_can_hold_are_refused_before_any_hmac(
        client, r, hmac_calls):
    body = urlencode(FORM) + "&x" * gate.MAX_FIELDS  # ~64 KiB of empty fields past FORM
    assert len(body) <= gate.MAX_BODY_BYTES
    response = client.post("/voice/incoming", data=body, content_type=gate.FORM_TYPE,
                           headers={"X-Twilio-Signature": "x"})
    assert refused_unsigned(response)
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


# --- anything unsigned, whatever its body ------------------------------------------

OVERSIZED_FORM = urlencode({**FORM, "Digits": "9" * (gate.MAX_BODY_BYTES + 1)}).encode()
UNSIGNED_BODIES = [
    ("application/json", b"{}"),
    ("application/json", b'{"CallSid": "' + CALL_SID.encode() + b'"}'),
    ("multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="CallSid"\r\n\r\n'
     + CALL_SID.encode() + b"\r\n--x--\r\n"),
    ("text/plain", urlencode(FORM).encode()),
    (gate.FORM_TYPE, OVERSIZED_FORM),
    (gate.FORM_TYPE, urlencode(FORM).encode()),
]


@pytest.mark.parametrize("path", ["/voice/incoming", "/voice/status", "/voice/no-such-page"])
@pytest.mark.parametrize(("content_type", "body"), UNSIGNED_BODIES,
                         ids=[f"{t.split(';')[0]}:{len(b)}" for t, b in UNSIGNED_BODIES])
def test_an_unsigned_request_is_403_response_and_changes_nothing(
        client, r, directory, hmac_calls, path, content_type, body):
    # PRODUCT: every /voice/* request without a valid signature gets 403 and no side
    # effect, whatever its body (as an attacker's curl would post it).
    directory.district()
    directory.contact()
    directory.load()
    before = snapshot(r)
    for headers in ({}, {"X-Twilio-Signature": "forged"}):
        response = client.post(path, data=body, content_type=content_type, headers=headers)
        assert refused_unsigned(response), (headers, response.status_code, response.data)
    if content_type != gate.FORM_TYPE or len(body) > gate.MAX_BODY_BYTES:
        assert hmac_calls == []  # refused unparsed: no HMAC over a body Twilio never signs
    assert snapshot(r) == before  # no call opened, nothing counted


def test_a_request_with_no_signature_is_refused_before_its_body_is_read(client, r):
    class Unreadable(io.BytesIO):
        """A client's body that the service must not read (its size may be asked)."""

        def read(self, *args):
            raise AssertionError("the body of an unsigned request was read")

        read1 = readinto = readline = read

    response = client.post("/voice/incoming", input_stream=Unreadable(b"x" * 1000),
                           content_type=gate.FORM_TYPE,
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert refused_unsigned(response)


def test_a_signed_body_that_is_not_a_form_is_415_with_twiml(client, r, directory):
    # Twilio signs a body that is not a form over the URL with its bodySHA256: it is
    # Twilio's, so it hears TwiML, but no webhook of ours reads such a body.
    directory.district()
    directory.contact()
    directory.load()
    body = b'{"CallSid": "' + CALL_SID.encode() + b'", "From": "+16125550101"}'
    url, signature = body_signed("/voice/incoming", body)
    before = snapshot(r)
    response = client.post(url, data=body, content_type="application/json",
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 415
    assert response.mimetype == "text/xml"
    assert list(twiml_root(response)) == []
    # Another body under the same URL and signature: its hash is not the signed one.
    response = client.post(url, data=body + b" ", content_type="application/json",
                           headers={"X-Twilio-Signature": signature})
    assert refused_unsigned(response)
    # Signed, at a path that is no webhook: 404 (as for a form).
    url, signature = body_signed("/voice/no-such-page", body)
    response = client.post(url, data=body, content_type="application/json",
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 404
    assert snapshot(r) == before


def test_insecure_dev_takes_unsigned_forms_not_oversized_ones(settings, desk, r, directory,
                                                                make_app):
    # Without TWILIO_AUTH_TOKEN, CASELINE_INSECURE_DEV=1 lets unsigned webhooks run; a
    # body Twilio never sends is refused still, and one that is no form hears TwiML.
    directory.district()
    directory.contact()
    directory.load()
    app = make_app(settings.with_changes(twilio_auth_token=None, insecure_dev=True))
    dev = app.test_client()
    response = dev.post("/voice/incoming", data=OVERSIZED_FORM, content_type=gate.FORM_TYPE)
    assert refused_unsigned(response)
    response = dev.post("/voice/incoming", data=b"{}", content_type="application/json")
    assert response.status_code == 415
    assert list(twiml_root(response)) == []
    assert not r.exists(keys.call(CALL_SID))
    response = dev.post("/voice/incoming", data=FORM)
    assert response.status_code == 200
    assert twiml_root(response).find("Gather") is not None


# --- our account ----------------------------------------------------------------


def test_a_signed_post_from_another_account_sid_is_served_and_warned_once(
        client, r, directory, caplog):
    # PRODUCT: 403 only without a valid signature, which only our auth token makes.
    directory.district()
    directory.contact()
    directory.load()
    other = "AC" + "b" * 31 + "1"
    form = {**FORM, "AccountSid": other}
    with caplog.at_level(logging.WARNING, logger="ivr.gate"):
        response = signed_post(client, "/voice/incoming", form)
        assert response.status_code == 200
        assert twiml_root(response).find("Gather") is not None  # the menu
        response = signed_post(client, "/voice/menu?attempt=1", {**form, "Digits": "1"})
        assert response.status_code == 200
        assert twiml_root(response).find("Gather") is not None  # the next question
        response = signed_post(client, "/voice/status", {**form, "CallStatus": "completed"})
        assert response.status_code == 200
    warned = [record.getMessage() for record in caplog.records if other in record.getMessage()]
    assert len(warned) == 1, warned  # once per sid: seen, not flooding the log
    assert "TWILIO_ACCOUNT_SID" in warned[0]


def test_an_unsigned_post_from_another_account_sid_is_refused(client, r):
    form = {**FORM, "AccountSid": "AC" + "b" * 32}
    for headers in ({}, {"X-Twilio-Signature": sign("/voice/incoming", FORM)}):
        assert refused_unsigned(client.post("/voice/incoming", data=form, headers=headers))
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
