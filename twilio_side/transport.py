"""How the simulated Twilio reaches the service: signed webhooks, over HTTP or a test client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import requests
from twilio.request_validator import RequestValidator


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` appended to its query string (how Twilio sends GET)."""
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(list(params.items()))


def signature_headers(
    auth_token: str | None, url: str, params: Mapping[str, str]
) -> dict[str, str]:
    """The headers Twilio sends with a webhook: its signature (if a token) and user agent."""
    headers = {
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
    }
    if auth_token:
        validator = RequestValidator(auth_token)
        headers["X-Twilio-Signature"] = validator.compute_signature(url, dict(params))
    return headers


@dataclass(frozen=True)
class Response:
    """What the service answered to one webhook."""

    status: int
    text: str
    elapsed: float
    content_type: str = ""


class Transport(Protocol):
    """How the simulated Twilio reaches the service."""

    base_url: str

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed webhook (GET puts params in the query string)."""
        ...

    def post(self, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed, form-encoded POST."""
        ...


class _BaseTransport:
    """URL resolution and signing shared by both transports."""

    base_url: str
    auth_token: str | None

    def absolute(self, url_or_path: str) -> str:
        """A full public URL: absolute URLs as they are, paths under `base_url`."""
        if urlsplit(url_or_path).scheme:
            return url_or_path
        return self.base_url.rstrip("/") + "/" + url_or_path.lstrip("/")

    def _prepare(
        self, method: str, url_or_path: str, params: Mapping[str, str]
    ) -> tuple[str, str, dict[str, str] | None, dict[str, str]]:
        """(method, signed URL, form body or None, headers) for one webhook."""
        method = method.upper()
        url = self.absolute(url_or_path)
        if method == "GET":
            url = _with_query(url, params)
            return method, url, None, signature_headers(self.auth_token, url, {})
        form = {k: str(v) for k, v in params.items()}
        return method, url, form, signature_headers(self.auth_token, url, form)

    def post(self, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed, form-encoded POST."""
        return self.request("POST", url, params)

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed webhook."""
        raise NotImplementedError


class HttpTransport(_BaseTransport):
    """Webhooks over real HTTP (a running `caseline serve`, gunicorn, a test server)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10,
        *,
        auth_token: str | None = None,
        public_base_url: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        """Send to `base_url`; sign over `public_base_url` (behind a proxy) or `base_url`."""
        self.base_url = (public_base_url or base_url).rstrip("/")
        self._wire_base = base_url.rstrip("/")
        self.timeout = timeout
        self.auth_token = auth_token
        self._session = session or requests.Session()

    def _wire_url(self, url: str) -> str:
        """Where to send a public URL (the same unless behind a simulated proxy)."""
        if self.base_url != self._wire_base and url.startswith(self.base_url):
            return self._wire_base + url[len(self.base_url) :]
        return url

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed webhook; a network failure is status 0."""
        method, signed_url, form, headers = self._prepare(method, url, params)
        started = time.monotonic()
        try:
            answer = self._session.request(
                method,
                self._wire_url(signed_url),
                data=form,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return Response(0, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        return Response(
            answer.status_code,
            answer.text,
            time.monotonic() - started,
            answer.headers.get("Content-Type", ""),
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> HttpTransport:
        """Use in a `with` block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving a `with` block."""
        self.close()


# How a reverse proxy in front of the service handles the path prefix of its public
# URL (`FlaskTransport`'s `proxy`): it strips the prefix (the service sees "/voice/..."),
# or forwards it and the WSGI server is told it (SCRIPT_NAME, as gunicorn takes it).
PROXY_STRIPS = "strips"
PROXY_FORWARDS = "forwards"


class FlaskTransport(_BaseTransport):
    """Webhooks through a Flask test client; `base_url` is the public URL that is signed.

    With `proxy`, the client stands behind a reverse proxy that serves it under
    `base_url`'s path (`https://host/caseline`): a URL outside that path never
    reaches the service (the proxy answers 404); one inside reaches it with the
    prefix stripped (`PROXY_STRIPS`) or as its SCRIPT_NAME (`PROXY_FORWARDS`)."""

    def __init__(
        self, client: Any, base_url: str = "http://caseline.test", *, auth_token: str | None = None,
        proxy: str | None = None,
    ) -> None:
        """Post through `client` (a `app.test_client()`) as if from `base_url`."""
        if proxy not in (None, PROXY_STRIPS, PROXY_FORWARDS):
            raise ValueError(f"proxy must be {PROXY_STRIPS!r} or {PROXY_FORWARDS!r}")
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.auth_token = auth_token
        self.proxy = proxy
        self._prefix = urlsplit(self.base_url).path if proxy else ""

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send one signed webhook through the test client."""
        method, signed_url, form, headers = self._prepare(method, url, params)
        parts = urlsplit(signed_url)
        path, script_root = parts.path or "/", ""
        if self.proxy:
            if not signed_url.startswith(self.base_url + "/"):
                return Response(404, f"the proxy serves nothing at {signed_url}", 0.0,
                                "text/plain")
            path = path[len(self._prefix):]
            script_root = self._prefix if self.proxy == PROXY_FORWARDS else ""
        started = time.monotonic()
        answer = self.client.open(
            path,
            method=method,
            base_url=f"{parts.scheme}://{parts.netloc}{script_root}",
            query_string=parts.query,
            data=form,
            headers=headers,
        )
        try:
            text = answer.get_data(as_text=True)
        finally:
            answer.close()
        return Response(
            answer.status_code,
            text,
            time.monotonic() - started,
            answer.headers.get("Content-Type", ""),
        )
