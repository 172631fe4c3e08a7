"""Only Twilio's signed requests reach the call flow."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from twilio.request_validator import RequestValidator

from directory import keys
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL

FORM = {"CallSid": "CA" + "1" * 32, "From": "+16125550101", "To": "+18005550100",
        "AccountSid": ACCOUNT_SID, "CallStatus": "ringing"}


def sign(path: str, form: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """The signature Twilio would send for a post to `path`."""
    return RequestValidator(token).compute_signature(BASE_URL + path, form)


def test_signed_request_gets_the_menu(client, r):
    response = client.post("/voice/incoming", data=FORM,
                           headers={"X-Twilio-Signature": sign("/voice/incoming", FORM)})
    assert response.status_code == 200
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    assert root.find("Gather") is not None
    assert r.exists(keys.call(FORM["CallSid"]))


def test_unsigned_request_is_refused_with_no_side_effect(client, r):
    response = client.post("/voice/incoming", data=FORM)
    assert response.status_code == 403
    assert not r.exists(keys.call(FORM["CallSid"]))


def test_wrongly_signed_request_is_refused(client, r):
    bad = sign("/voice/incoming", FORM, token="not-the-token")
    response = client.post("/voice/incoming", data=FORM, headers={"X-Twilio-Signature": bad})
    assert response.status_code == 403
    assert not r.exists(keys.call(FORM["CallSid"]))


def test_signature_over_other_params_is_refused(client, r):
    signature = sign("/voice/incoming", {**FORM, "From": "+19995550000"})
    response = client.post("/voice/incoming", data=FORM,
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403


def test_status_callback_unsigned_is_refused_and_frees_nothing(client, r):
    response = client.post("/voice/status", data={**FORM, "CallStatus": "completed"})
    assert response.status_code == 403
    assert not r.exists(keys.call_ended(FORM["CallSid"]))


def test_during_a_token_rotation_the_previous_token_is_accepted_too(make_app, settings, desk, r):
    """docs/deploy.md's rotation: the service holds the new token (its REST requests
    use it) and the one Twilio still signs with until the new one is promoted."""
    app = make_app(settings.with_changes(twilio_auth_token="the-new-token",
                                         twilio_previous_auth_token=AUTH_TOKEN))
    client = app.test_client()
    for token, answered in ((AUTH_TOKEN, 200), ("the-new-token", 200), ("another", 403)):
        form = {**FORM, "CallSid": f"CA{token}"}
        response = client.post("/voice/incoming", data=form, headers={
            "X-Twilio-Signature": sign("/voice/incoming", form, token=token)})
        assert response.status_code == answered, token
        assert r.exists(keys.call(form["CallSid"])) == (answered == 200)
