"""The one Twilio REST client: caseline's only way to act on a live call.

Its base URL comes from `TWILIO_API_URL` so tests and the terminal caller
point it at a local emulator.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from config.settings import Settings

log = logging.getLogger(__name__)


class Telephony:
    """Redirects live calls through Twilio's REST API.

    With `background=True` (the web service), `redirect_later` runs the REST
    request on a small thread pool so the webhook that freed an advisor
    answers Twilio at once instead of waiting on Twilio's API (~150 ms).
    """

    def __init__(self, settings: Settings, timeout: float = 5.0, *,
                 background: bool = False) -> None:
        """Build the REST client lazily from settings (no connection, no thread yet)."""
        self._settings = settings
        self._timeout = timeout
        self._client: Client | None = None
        self._background = background
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def later(self, task: Callable[[], object]) -> None:
        """Run `task` now, or on the background pool when this client has one."""
        if not self._background:
            task()
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="twilio-rest")
        self._pool.submit(_logged, task)

    @property
    def client(self) -> Client:
        """The twilio `Client`, pointed at `TWILIO_API_URL`."""
        if self._client is None:
            client = Client(
                self._settings.twilio_account_sid,
                self._settings.twilio_auth_token or "unset",
                http_client=TwilioHttpClient(timeout=self._timeout),
            )
            client.api.base_url = self._settings.twilio_api_url.rstrip("/")
            self._client = client
        return self._client

    def redirect_call(self, call_sid: str, url: str) -> bool:
        """Send a live call to new TwiML at `url`; False when the call is gone."""
        try:
            self.client.api.v2010.account.calls(call_sid).update(url=url, method="POST")
            return True
        except TwilioRestException as exc:
            log.warning("redirect of %s refused (%s): %s", call_sid, exc.status, exc.msg)
            return False
        except (TwilioException, OSError) as exc:
            log.error("redirect of %s failed: %s", call_sid, exc)
            return False

    def place_call(self, to: str, from_: str, url: str, status_callback: str) -> str | None:
        """Start an outbound call that fetches TwiML at `url`; its CallSid or None."""
        try:
            # Ring no longer than a Dial rings an advisor: well inside the claim's lease.
            call = self.client.api.v2010.account.calls.create(
                to=to, from_=from_, url=url, status_callback=status_callback,
                timeout=self._settings.ring_timeout_seconds,
            )
            return call.sid
        except (TwilioException, OSError) as exc:
            log.error("outbound call to %s failed: %s", to, exc)
            return None


def _logged(task: Callable[[], object]) -> None:
    """Run a background task; a failure is logged, never lost silently."""
    try:
        task()
    except Exception:
        log.exception("background REST task failed")
