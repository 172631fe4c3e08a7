"""The one Twilio REST client: caseline's only way to act on a live call.

Its base URL comes from `TWILIO_API_URL` so tests and the terminal caller
point it at a local emulator.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import partial

from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ConnectTimeout
from requests.utils import get_environ_proxies
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from config.logs import mask_phones
from config.settings import Settings

log = logging.getLogger(__name__)


# Twilio's error code for "Call is not in-progress. Cannot redirect." (HTTP 400).
CALL_NOT_IN_PROGRESS = 21220
# Waits between tries of a request that failed for a reason that says nothing
# about the call (429, 5xx, a reset connection): about 3.5 s in all.
RETRY_DELAYS_SECONDS = (0.25, 0.5, 1.0, 1.75)
# After a failure that may have come after Twilio acted (a 5xx, a cut connection, a
# read timeout), a request given a sign that Twilio carried it out looks for that
# sign (see `_with_retries`) for as long as the request asks: the desk knows how many
# webhooks the sign takes to show and what waits on the request meanwhile
# (`routing.conference`, `routing.availability`). The pause after each read of the
# sign (one Redis read); the look itself ends by the clock (`Telephony._seen`),
# however long the reads take.
CARRIED_OUT_POLL_SECONDS = 0.05


class Outcome(Enum):
    """What a request to act on a live call came to, after any retries."""

    DONE = "done"
    GONE = "gone"  # the call is over: 404, or Twilio's "not in-progress"
    TRANSIENT = "transient"  # 429, 5xx or the network: still failing after retries
    REFUSED = "refused"  # any other 4xx: our request is wrong (credentials, URL)
    UNWANTED = "unwanted"  # not sent (again): the desk no longer wants it (`still_wanted`)

    def __bool__(self) -> bool:
        """True only when the request succeeded."""
        return self is Outcome.DONE


@dataclass(frozen=True)
class CallStatus:
    """A call as Twilio's REST API describes it: its status in Twilio's vocabulary
    (`queued`, `ringing`, `in-progress`, or a final one: `completed`, `busy`, `failed`,
    `no-answer`, `canceled`), its duration (s; 0 while live or when Twilio gives none),
    and when it ended (ms since the epoch, UTC; None while live or when Twilio gives
    no end time)."""

    status: str
    duration: int = 0
    ended_ms: int | None = None


@dataclass(frozen=True)
class LiveLeg:
    """A live call Twilio lists to a number: its CallSid, the call that spawned it
    (`parent_call_sid`: the caller's call for a `<Dial>`'s leg; "" for a call placed
    through the REST API) and its status (`ringing` or `in-progress`)."""

    sid: str
    parent_call_sid: str
    status: str


# The statuses of a call still live that `Telephony.live_calls_to` asks for.
LIVE_STATUSES = ("in-progress", "ringing")


def _call_status(call: object) -> CallStatus:
    """A fetched `CallInstance` as a `CallStatus`; fields Twilio left empty or that do
    not parse are read as unknown, never raised."""
    duration = str(getattr(call, "duration", None) or "")
    end = getattr(call, "end_time", None)
    return CallStatus(
        status=str(getattr(call, "status", None) or ""),
        duration=int(duration) if duration.isdigit() else 0,
        ended_ms=int(end.timestamp() * 1000) if isinstance(end, datetime) else None,
    )


def classify(exc: Exception) -> Outcome:
    """Why a REST request failed: only a 404 or "not in-progress" means the call is over."""
    if isinstance(exc, TwilioRestException):
        if exc.status == 404 or exc.code == CALL_NOT_IN_PROGRESS:
            return Outcome.GONE
        if exc.status == 429 or exc.status >= 500:
            return Outcome.TRANSIENT
        return Outcome.REFUSED
    # Timeouts, resets, refused connections: nothing is known about the call.
    return Outcome.TRANSIENT


def never_acted(exc: Exception) -> bool:
    """Whether a failed request surely did nothing at Twilio: a 429 (refused before
    acting), or a connection that never opened (the request was never sent). A
    5xx, a cut connection or a read timeout may come after Twilio acted."""
    if isinstance(exc, TwilioRestException):
        return exc.status == 429
    if isinstance(exc, ConnectTimeout):
        return True
    if isinstance(exc, RequestsConnectionError) and exc.args:
        return isinstance(getattr(exc.args[0], "reason", None), NewConnectionError)
    return False


def http_client_for(base_url: str, timeout: float) -> TwilioHttpClient:
    """twilio's HTTP client for the API at `base_url`, with the environment's proxy for
    it (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`) and CA bundle (`REQUESTS_CA_BUNDLE`,
    `CURL_CA_BUNDLE`) read now, once. `requests` would read them again on every
    request, scanning the whole environment twice: about 0.3 ms of the ~1.6 ms of CPU
    a redirect costs a web process. `timeout` is seconds per connect and per read."""
    http = TwilioHttpClient(timeout=timeout, proxy=get_environ_proxies(base_url) or None)
    assert http.session is not None  # pooled connections: twilio's default
    http.session.trust_env = False
    http.session.verify = (os.environ.get("REQUESTS_CA_BUNDLE")
                           or os.environ.get("CURL_CA_BUNDLE") or True)
    return http


class Telephony:
    """Redirects, places, hangs up and reads calls through Twilio's REST API.

    With `background=True` (the web service), `redirect_later` runs the REST
    request on a small thread pool so the webhook that freed an advisor
    answers Twilio at once instead of waiting on Twilio's API (~150 ms).
    """

    def __init__(self, settings: Settings, timeout: float = 5.0, *,
                 background: bool = False,
                 retry_delays: Sequence[float] = RETRY_DELAYS_SECONDS,
                 longest_look: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """Build the REST client lazily from settings (no connection, no thread yet).

        `retry_delays` are the waits (seconds) before each retry of a transient
        failure; `longest_look` (seconds) caps how long any request that may have been
        carried out looks for the sign that it was (see `_with_retries`), whatever it
        asks (None: as asked; tests whose Twilio side follows no redirect shorten it);
        `sleep` is how to wait (tests pass their own).
        """
        self._settings = settings
        self._retry_delays = tuple(retry_delays)
        self._longest_look = longest_look
        self._sleep = sleep
        self._timeout = timeout
        self._client: Client | None = None
        self._clients: dict[float, Client] = {}  # by timeout, for requests given one
        self._background = background
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._pending: set[Future[None]] = set()  # background tasks not done yet

    def later(self, task: Callable[[], object]) -> None:
        """Run `task` now, or on the background pool when this client has one."""
        if not self._background:
            task()
            return
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="twilio-rest")
            future = self._pool.submit(_logged, task)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._pool_lock:
            self._pending.discard(future)

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until the background tasks handed to `later` so far, and those they hand
        on (a callback Twilio would not place tries the next caller), are done; False
        when some are still running after `timeout` seconds. For whoever must see
        their effect before going on: the tests' Twilio, which reads what a webhook
        asked of its REST API once the webhook has answered."""
        deadline = time.monotonic() + timeout
        while True:
            with self._pool_lock:
                pending = set(self._pending)
            left = deadline - time.monotonic()
            if not pending:
                return True
            if left <= 0:
                return False
            wait(pending, timeout=left)

    @property
    def client(self) -> Client:
        """The twilio `Client`, pointed at `TWILIO_API_URL`."""
        if self._client is None:
            self._client = self._new_client(self._timeout)
        return self._client

    def _new_client(self, timeout: float) -> Client:
        """A twilio `Client` pointed at `TWILIO_API_URL`, `timeout` s per connect and read."""
        base_url = self._settings.twilio_api_url.rstrip("/")
        client = Client(
            self._settings.twilio_account_sid,
            self._settings.twilio_auth_token or "unset",
            http_client=http_client_for(base_url, timeout),
        )
        client.api.base_url = base_url
        return client

    def _client_for(self, timeout: float | None) -> Client:
        """The client whose requests time out after `timeout` s (None: this one's usual
        timeout). twilio's resources take no timeout per request, so each timeout asked
        for has its own client (and connection pool), built once."""
        if timeout is None or timeout == self._timeout:
            return self.client
        with self._pool_lock:
            if timeout not in self._clients:
                self._clients[timeout] = self._new_client(timeout)
            return self._clients[timeout]

    def warm(self) -> None:
        """Build the REST client and import its resource modules now, without a
        request: twilio loads its ~90 API modules on first use, which would
        otherwise fall on the first call a web process redirects."""
        _ = self.client.api.v2010.account.calls

    def _with_retries(self, what: str, request: Callable[[], object],
                      retry: bool = True, creates: bool = False,
                      carried_out: Callable[[], bool | None] | None = None,
                      look_seconds: float = 0.0,
                      still_wanted: Callable[[], bool | None] | None = None,
                      ) -> tuple[Outcome, object]:
        """Run a REST request, retrying transient failures with backoff (unless not `retry`).

        With `creates` (the request places a call), only a failure that surely did
        nothing at Twilio (`never_acted`) is retried: an outbound call is not
        idempotent (Twilio's error 20500), and a retry after a 5xx or a lost answer
        could ring the same phone twice. Any other failure is final (TRANSIENT).

        `carried_out` is a sign, read from the desk's own state, that Twilio carried
        the request out (for a redirect: Twilio fetched the new TwiML): True, False,
        or None when it cannot be read. After a failure that may have come after
        Twilio acted (not `never_acted`), it is looked for (`_seen`) for `look_seconds`
        (or the backoff's delay, when longer; after the last try too); seen, the
        request is DONE and not sent again. A redirect sent twice makes Twilio stop
        the TwiML the first one started (a `<Dial>` ringing an advisor) and start it
        again. Not seen, or not readable, the request is tried again once the
        backoff's delay has passed (or, after the last try, is TRANSIENT) as any
        transient failure is. A 429 or a connection that never opened did nothing:
        retried after the backoff alone.

        `still_wanted`, when given, is read from the desk's own state before every try
        (the first too): only True sends the request; False, or None (it cannot be
        read: Redis failing), ends it as UNWANTED, nothing sent. For a request that is
        worth less than what it could cut (a waiting caller's redirect to hear the
        voicemail offer, which an advisor's claim may overtake during the backoff:
        `routing.waiting._redirect_to_hold`); a request the desk cannot tell is
        wanted is not sent.
        """
        delays = self._retry_delays if retry else ()
        if self._longest_look is not None:
            look_seconds = min(look_seconds, self._longest_look)
        for attempt, delay in enumerate((*delays, None)):
            if still_wanted is not None and still_wanted() is not True:
                log.info("%s: no longer wanted; not sent (try %d)", what, attempt + 1)
                return Outcome.UNWANTED, None
            try:
                return Outcome.DONE, request()
            except (TwilioException, OSError) as exc:
                outcome = classify(exc)
                maybe_acted = outcome is Outcome.TRANSIENT and not never_acted(exc)
                if creates and maybe_acted:
                    delay = None  # Twilio may have placed it: never place it twice
                if maybe_acted and carried_out is not None:
                    looked_from = time.monotonic()
                    if self._seen(carried_out, max(delay or 0.0, look_seconds)):
                        log.warning("%s: Twilio carried it out despite the failure (%s); "
                                    "not sent again", what, mask_phones(str(exc)))
                        return Outcome.DONE, None
                    if delay is not None:
                        log.warning("%s failed (%s) and Twilio shows no sign of it; "
                                    "retrying", what, mask_phones(str(exc)))
                        # The look was the backoff; one cut short (the sign could not
                        # be read) still waits out the rest before Twilio is asked again.
                        rest = delay - (time.monotonic() - looked_from)
                        if rest > 0:
                            self._sleep(rest)
                        continue
                if outcome is not Outcome.TRANSIENT or delay is None:
                    level = logging.INFO if outcome is Outcome.GONE else logging.ERROR
                    # Twilio's errors quote the number dialed ("Invalid 'To' ...").
                    log.log(level, "%s: %s after %d tries (%s)%s", what, outcome.value,
                            attempt + 1, mask_phones(str(exc)), self._missing_token(outcome))
                    return outcome, None
                log.warning("%s failed (%s); retrying in %.2f s", what, mask_phones(str(exc)),
                            delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _missing_token(self, outcome: Outcome) -> str:
        """What a refusal's log line adds when TWILIO_AUTH_TOKEN is unset: the services
        start without it (`caseline serve` refuses webhooks, the worker checks none), so
        Twilio's 401 is where a missing token shows, and the line names it."""
        if outcome is Outcome.REFUSED and not self._settings.twilio_auth_token:
            return ("; TWILIO_AUTH_TOKEN is not set, so the request carried no credentials")
        return ""

    def _seen(self, sign: Callable[[], bool | None], seconds: float) -> bool:
        """Whether `sign` shows within `seconds` (by the clock) from now: read at once,
        then `CARRIED_OUT_POLL_SECONDS` after each read, and once more at the end.

        Slow reads count against `seconds` (each Redis read may take long: up to the
        socket's timeout under Sentinel), so the look ends at most one read past
        them. A sign that cannot be read (None: Redis failing) ends the look at once,
        as not seen: reading it again would hold this thread (for a waiting caller,
        one of the web's four REST threads) for another timeout each time."""
        deadline = time.monotonic() + seconds
        while True:
            seen = sign()
            if seen is not False:
                return bool(seen)
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._sleep(min(CARRIED_OUT_POLL_SECONDS, left))

    def redirect_call(self, call_sid: str, url: str, *, retry: bool = True,
                      carried_out: Callable[[], bool | None] | None = None,
                      look_seconds: float = 0.0,
                      still_wanted: Callable[[], bool | None] | None = None) -> Outcome:
        """Send a live call to new TwiML at `url`.

        Transient failures (429, 5xx, network) are retried with backoff (a few
        seconds in all), unless `retry` is False (one try: a redirect that is only
        useful now). `carried_out`: the desk's sign that Twilio already followed
        this redirect (None when it cannot be read); after a failure that may have
        come after Twilio acted, the redirect is sent again only when that sign does
        not show within `look_seconds` (or the backoff's delay, when longer): a second
        redirect would cut what the first started (see `_with_retries`). `still_wanted`:
        read before every try, only True sends it (see `_with_retries`). Returns DONE
        (also when the sign showed), GONE (Twilio says the call is over), TRANSIENT
        (still failing), REFUSED (another 4xx) or UNWANTED (not sent: `still_wanted`).
        """
        calls = self.client.api.v2010.account.calls
        outcome, _ = self._with_retries(
            f"redirect of {call_sid}", lambda: calls(call_sid).update(url=url, method="POST"),
            retry, carried_out=carried_out, look_seconds=look_seconds,
            still_wanted=still_wanted)
        return outcome

    def place_call(self, to: str, from_: str, url: str, status_callback: str) -> str | None:
        """Start an outbound call that fetches TwiML at `url`; its CallSid, or None when
        Twilio refused it or failed (only a failure that surely placed nothing, a 429
        or no connection, is retried: see `_with_retries`)."""
        calls = self.client.api.v2010.account.calls
        outcome, call = self._with_retries(
            "outbound call", lambda: calls.create(to=to, from_=from_, url=url,
                                                  status_callback=status_callback,
                                                  # Ring no longer than a Dial rings an
                                                  # advisor: well inside the claim's lease.
                                                  timeout=self._settings.ring_timeout_seconds),
            creates=True)
        return getattr(call, "sid", None) if outcome is Outcome.DONE else None


    def add_participant(self, conference: str, to: str, from_: str,
                        status_callback: str) -> str | None:
        """Dial `to` into the conference named `conference` (Twilio's Participants API
        takes the conference's friendly name and creates the conference if needed);
        the new leg's CallSid, or None when Twilio refused or failed (retried only
        when the failure surely dialed nobody, as `place_call`).

        The participant never ends the conference by leaving
        (`endConferenceOnExit=false`), rings at most the desk's ring timeout, and
        Twilio posts its `answered` and `completed` call-progress events to
        `status_callback`.
        """
        participants = self.client.api.v2010.account.conferences(conference).participants
        outcome, participant = self._with_retries(
            "conference participant",
            lambda: participants.create(
                from_=from_, to=to, label="colleague", end_conference_on_exit=False,
                beep="true", timeout=self._settings.ring_timeout_seconds,
                status_callback=status_callback, status_callback_method="POST",
                status_callback_event=["answered", "completed"]),
            creates=True)
        return getattr(participant, "call_sid", None) if outcome is Outcome.DONE else None

    def fetch_call_status(self, call_sid: str, *, retry: bool = True,
                          timeout: float | None = None) -> CallStatus | Outcome:
        """Ask Twilio how a call is (`GET Calls/{CallSid}.json`): its `CallStatus`, or the
        `Outcome` of a request that failed after the retries of a transient failure
        (429, 5xx, network: about 3.5 s in all; one try when not `retry`): GONE (404:
        Twilio knows no such call), TRANSIENT (still failing) or REFUSED (another
        4xx). `timeout`: seconds per connect and per read (None: the client's own), so
        one try against a Twilio that never answers takes at most twice that. Never
        raises for Twilio's or the network's failures; an answer that is not Twilio's
        JSON (a proxy's page) is TRANSIENT."""
        calls = self._client_for(timeout).api.v2010.account.calls
        try:
            outcome, call = self._with_retries(f"status of {call_sid}",
                                               lambda: calls(call_sid).fetch(), retry)
        except ValueError as exc:  # json's JSONDecodeError: not Twilio answering
            log.error("status of %s: an answer that is not Twilio's (%s)", call_sid, exc)
            return Outcome.TRANSIENT
        return _call_status(call) if outcome is Outcome.DONE else outcome

    def live_calls_to(self, number: str, *, timeout: float | None = None,
                      limit: int = 20) -> list[LiveLeg] | Outcome:
        """The calls to `number` (an advisor's phone) Twilio lists as live, ringing or in
        progress (`GET Calls.json?To=...&Status=...`, one request per status, up to
        `limit` each, one try each: a failure is for the caller's next pass), or the
        `Outcome` of the first request that failed (TRANSIENT: 429, 5xx, network, an
        answer that is not Twilio's JSON; REFUSED: another 4xx). `timeout`: seconds per
        connect and per read (None: the client's own). Never raises for Twilio's or the
        network's failures."""
        calls = self._client_for(timeout).api.v2010.account.calls
        found: list[LiveLeg] = []
        for status in LIVE_STATUSES:
            try:
                outcome, listed = self._with_retries(
                    f"live calls to {mask_phones(number)} ({status})",
                    partial(calls.list, to=number, status=status, limit=limit,
                            page_size=limit), retry=False)
            except ValueError as exc:  # json's JSONDecodeError: not Twilio answering
                log.error("live calls to %s: an answer that is not Twilio's (%s)",
                          mask_phones(number), exc)
                return Outcome.TRANSIENT
            if outcome is not Outcome.DONE:
                return Outcome.TRANSIENT if outcome is Outcome.GONE else outcome
            found.extend(LiveLeg(str(call.sid), str(call.parent_call_sid or ""),
                                 str(call.status or status))
                         for call in listed)  # type: ignore[attr-defined]
        return found

    def hang_up(self, call_sid: str, *, retry: bool = True,
                timeout: float | None = None) -> Outcome:
        """End a live call (`Status=completed`); retried like a redirect (one try when
        not `retry`; `timeout`: seconds per connect and per read, None: the client's
        own). GONE when it was already over."""
        calls = self._client_for(timeout).api.v2010.account.calls
        outcome, _ = self._with_retries(
            f"hang-up of {call_sid}", lambda: calls(call_sid).update(status="completed"),
            retry)
        return outcome

    def size_queues(self, names: Sequence[str], max_size: int, *,
                    timeout: float | None = None,
                    deadline: float | None = None) -> tuple[set[str], bool]:
        """Make each Twilio queue named in `names` (the FriendlyName `<Enqueue>` names)
        hold at least `max_size` calls: list the account's queues, create a missing one
        with `MaxSize`, raise a smaller one's (`Queues/{QueueSid}.json`); one larger is
        left as it is. Returns (the names now sized: already, created or raised;
        whether Twilio failed: a 429, 5xx, the network or an answer not Twilio's).

        One try per request, no retries, and none after Twilio failed or past
        `deadline` (`time.monotonic()`, checked before each request): the caller (the
        reconciler, every 10 s) is the retry. A create that failed may have created
        the queue all the same (a 5xx after Twilio acted): the next pass lists it and
        raises it if it must. `timeout`: seconds per connect and per read (None: the
        client's own)."""
        queues = self._client_for(timeout).api.v2010.account.queues

        def one_try(what: str, request: Callable[[], object]) -> tuple[Outcome, object]:
            try:
                return self._with_retries(what, request, retry=False)
            except ValueError as exc:  # json's JSONDecodeError: not Twilio answering
                log.error("%s: an answer that is not Twilio's (%s)", what, exc)
                return Outcome.TRANSIENT, None

        if deadline is not None and time.monotonic() >= deadline:
            return set(), False  # out of time: the next pass
        outcome, listed = one_try("list of Twilio's queues", queues.list)
        if outcome is not Outcome.DONE:
            return set(), outcome is Outcome.TRANSIENT
        found = {getattr(queue, "friendly_name", None): queue for queue in listed or ()}
        sized: set[str] = set()
        for name in names:
            queue = found.get(name)
            if queue is not None and int(getattr(queue, "max_size", 0) or 0) >= max_size:
                sized.add(name)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                continue  # out of time: the next pass
            if queue is None:
                what = f"creation of Twilio's queue {name} (MaxSize {max_size})"
                request: Callable[[], object] = partial(queues.create, friendly_name=name,
                                                        max_size=max_size)
            else:
                what = (f"MaxSize of Twilio's queue {name} "
                        f"({getattr(queue, 'max_size', '?')} -> {max_size})")
                request = partial(queues(queue.sid).update, max_size=max_size)
            outcome, _ = one_try(what, request)
            if outcome is Outcome.TRANSIENT:
                return sized, True
            if outcome is Outcome.DONE:
                log.info("%s: done", what)
                sized.add(name)
        return sized, False


def _logged(task: Callable[[], object]) -> None:
    """Run a background task; a failure is logged, never lost silently."""
    try:
        task()
    except Exception:
        log.exception("background REST task failed")
