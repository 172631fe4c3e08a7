"""Twilio signature checking and the API's bearer token."""

from __future__ import annotations

import functools
import hmac
import logging

from flask import Request
from twilio.request_validator import RequestValidator

from config.settings import Settings

log = logging.getLogger(__name__)


def signed_url(request: Request, settings: Settings) -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL + path + query, else the request's URL."""
    if settings.public_base_url:
        query = request.query_string.decode("latin-1")
        return settings.public_base_url.rstrip("/") + request.path + (f"?{query}" if query else "")
    return request.url


@functools.lru_cache(maxsize=4)
def _validator(auth_token: str) -> RequestValidator:
    """One validator per token (it holds the HMAC key)."""
    return RequestValidator(auth_token)


def twilio_signature_ok(request: Request, settings: Settings) -> bool:
    """Whether the request carries a valid X-Twilio-Signature (or dev mode allows none):
    signed with TWILIO_AUTH_TOKEN, or during a rotation with TWILIO_PREVIOUS_AUTH_TOKEN
    (Twilio signs with the account's primary token, which changes only when the new
    one is promoted: docs/deploy.md, "Rotating the Twilio auth token")."""
    if not settings.twilio_auth_token:
        return settings.insecure_dev
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    url = signed_url(request, settings)
    tokens = [settings.twilio_auth_token]
    if settings.twilio_previous_auth_token:
        tokens.append(settings.twilio_previous_auth_token)
    return any(_signed_with(_validator(token), url, request, signature) for token in tokens)


def _signed_with(validator: RequestValidator, url: str, request: Request,
                 signature: str) -> bool:
    """Whether `signature` is the validator's token's over `url` and the form."""
    # The URL exactly as Twilio was given it is the usual case: one HMAC. The
    # library's `validate` (which always computes two, with and without the
    # port) only runs when that does not match.
    expected = validator.compute_signature(url, request.form)
    if hmac.compare_digest(expected.encode(), signature.encode()):
        return True
    return bool(validator.validate(url, request.form, signature))


def api_token_ok(header: str | None, settings: Settings) -> bool:
    """Whether an Authorization header carries the API's bearer token."""
    if not settings.api_token or not header:
        return False
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), settings.api_token.encode()
    )


def account_sid_ok(request: Request, settings: Settings) -> bool:
    """Whether the posted AccountSid is ours.

    Twilio posts `AccountSid` with every webhook, so once TWILIO_ACCOUNT_SID is set
    a different one is refused. A post without one (or with it empty) is left to the
    signature, as PRODUCT's contract is: only Twilio holds the auth token. With no
    account configured (local experiments) there is nothing to compare with.
    """
    if not settings.account_sid_configured:
        return True
    posted = request.form.get("AccountSid", "")
    if not posted:
        return True
    return hmac.compare_digest(posted.encode(), settings.twilio_account_sid.encode())
