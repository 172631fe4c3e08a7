"""Webhooks posted to a test app the way Twilio posts them: from our account, signed
over `PUBLIC_BASE_URL` + path with the auth token, with or without Twilio's
idempotency token. One copy for every test module that plays Twilio by hand."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL


def signed_post(client: FlaskClient, path: str, form: dict[str, str],
                headers: dict[str, str] | None = None) -> TestResponse:
    """Post `form` (with our AccountSid first, as Twilio always sends) to `path`, signed
    as Twilio signs, with `headers` besides; the response, whatever it is."""
    form = {"AccountSid": ACCOUNT_SID, **form}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE_URL + path, form)
    return client.post(path, data=form,
                       headers={"X-Twilio-Signature": signature, **(headers or {})})


def twiml_of(response: TestResponse) -> ET.Element:
    """The TwiML a webhook answered, which must be a 200."""
    assert response.status_code == 200, (response.status_code, response.data)
    return ET.fromstring(response.data)


def post(client: FlaskClient, path: str, form: dict[str, str],
         token: str | None = None) -> ET.Element:
    """Post a webhook exactly as Twilio does: signed, from our account, with an
    idempotency token (`token`, or a fresh one); the TwiML answered (a 200)."""
    return twiml_of(signed_post(client, path, form, {
        "I-Twilio-Idempotency-Token": token or str(uuid.uuid4())}))


def post_without_token(client: FlaskClient, path: str, form: dict[str, str]) -> ET.Element:
    """Post a webhook signed, as Twilio repeats one after a timeout: no idempotency
    token; the TwiML answered (a 200)."""
    return twiml_of(signed_post(client, path, form))
