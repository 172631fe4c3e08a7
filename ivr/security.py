"""Twilio signature checking and the API's bearer token."""

from __future__ import annotations

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


def twilio_signature_ok(request: Request, settings: Settings) -> bool:
    """Whether the request carries a valid X-Twilio-Signature (or dev mode allows none)."""
    if not settings.twilio_auth_token:
        return settings.insecure_dev
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    validator = RequestValidator(settings.twilio_auth_token)
    return bool(validator.validate(signed_url(request, settings), request.form, signature))


def api_token_ok(header: str | None, settings: Settings) -> bool:
    """Whether an Authorization header carries the API's bearer token."""
    if not settings.api_token or not header:
        return False
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), settings.api_token.encode()
    )
