"""Twilio signature checking and the API's bearer token."""

from __future__ import annotations

import functools
import hmac
import logging
from urllib.parse import parse_qs, urlsplit

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


def twilio_body_signature_ok(request: Request, settings: Settings, body: bytes) -> bool:
    """Whether a request whose body is not a form is signed as Twilio signs such bodies
    (or dev mode allows none): the signature over the URL alone, which carries the
    body's SHA-256 in its `bodySHA256` query parameter (twilio's
    `RequestValidator.validate`, given the raw body as a string). A URL without
    `bodySHA256`, or a body that is not UTF-8 (what Twilio hashes), is not signed.
    The body is never parsed."""
    if not settings.twilio_auth_token:
        return settings.insecure_dev
    signature = request.headers.get("X-Twilio-Signature", "")
    url = signed_url(request, settings)
    # The library reads a body string without `bodySHA256` in the URL as form
    # parameters (and fails on it); parse_qs is how it looks for the parameter.
    if not signature or "bodySHA256" not in parse_qs(urlsplit(url).query):
        return False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    tokens = [settings.twilio_auth_token]
    if settings.twilio_previous_auth_token:
        tokens.append(settings.twilio_previous_auth_token)
    return any(_validator(token).validate(url, text, signature) for token in tokens)


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


def foreign_account_sid(request: Request, settings: Settings) -> str:
    """The posted `AccountSid` when it names another account than TWILIO_ACCOUNT_SID,
    else "" (ours, none posted, or no account configured to compare with).

    Only ever asked of a validly signed request: the signature, made with our auth
    token, is what admits a webhook (PRODUCT: 403 only without a valid signature), so
    another sid is served; it says the deployment's settings disagree (a
    TWILIO_ACCOUNT_SID of another account, a test caller's placeholder), which
    `ivr.gate` logs.
    """
    if not settings.account_sid_configured:
        return ""
    posted = request.form.get("AccountSid", "")
    if not posted or hmac.compare_digest(posted.encode(), settings.twilio_account_sid.encode()):
        return ""
    return posted
