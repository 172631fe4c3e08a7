"""`caseline` with a few candidate hot-path changes applied at run time.

The bench may not edit caseline's code (other hands own it), so each change
suggested in docs/benchmarks.md is measured first as a patch applied here,
before gunicorn forks its workers:

    python -m bench.patched --patch quiet-twilio-log,wait-pipeline -- serve --port 8000

Patches (a patch is a measurement aid, never production code):

* `quiet-twilio-log`: twilio's HTTP client logs ~12 INFO lines per REST call
  (`caseline` configures the root logger at INFO); raise that logger to WARNING.
* `wait-pipeline`: `routing.waiting._serving_advisors` reads every advisor's
  status with one HMGET each (11 round trips per hold cycle); one pipeline.
* `validator-once`: check the signature once over the URL as signed, not twice
  (twilio's validator also tries the URL with an explicit port).
* `simple-worker`: `caseline worker` runs jobs in its own process (RQ's
  `SimpleWorker`) instead of forking a work horse for every job.
* `lean-redirect`: the redirect as one plain `requests` POST to
  `Calls/{CallSid}.json` instead of through twilio's `Client` (whose
  Version/Domain layers and `CallInstance` building cost about as much as the
  HTTP itself).
* `constant-twiml`: the documents that never change (`<Response/>` for the
  status callback and the queue result, the bridge, `<Leave/>`) rendered once.
* `e164-fast-path`: a `From` that is already E.164 (`+1` and ten digits, what
  Twilio sends for US numbers) skips phonenumbers' parse.
* `no-kept-reply`: the upper bound of folding the kept reply into each webhook's
  last script: the reply's SET skipped.
* `no-admit-trip`: the upper bound of folding the live-call check and the
  token's claim into the routing scripts: admit's round trip skipped.
* `urllib3-transport`: twilio's `Client` over a urllib3 pool (a
  `twilio.http.HttpClient`, Twilio's extension point) instead of `requests`.
* `voice-no-session`: webhooks open no console session.
* `all-folds`: the five above at once (`no-kept-reply`, `no-admit-trip`,
  `urllib3-transport`, `voice-no-session`, `e164-fast-path`): the upper bound of
  every hot-path change still proposed, measured together.
* `switch-1ms`, `switch-0.5ms`: the GIL handed over after 1 or 0.5 ms instead
  of Python's 5 ms.
* `granian`: `caseline serve` under granian (a Rust HTTP server, WSGI in blocking
  threads; `GRANIAN_THREADS`, default `--threads`) instead of gunicorn. granian is
  not a dependency: `bench/explore.py` installs it aside, as hiredis.
* `hiredis` is not a patch: `bench/explore.py` installs the package aside and
  puts it on the web processes' path (redis-py then parses with it).
"""

from __future__ import annotations

import argparse
import logging
import sys


def quiet_twilio_log() -> None:
    """Twilio's per-request INFO lines off."""
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


def wait_pipeline() -> None:
    """One pipelined round trip for the advisors' statuses of a hold cycle."""
    from directory import keys
    from routing import waiting

    def _serving_advisors(desk, team):  # type: ignore[no-untyped-def]
        ids = list(desk.r.smembers(keys.advisors()))
        pipe = desk.r.pipeline(transaction=False)
        for advisor_id in ids:
            pipe.hmget(keys.advisor(advisor_id), "status", "teams")
        return sum(
            1 for status, teams in pipe.execute()
            if status in ("available", "busy") and team in (teams or "").split(",")
        )

    waiting._serving_advisors = _serving_advisors  # type: ignore[assignment]


def validator_once() -> None:
    """Compute the HMAC once over PUBLIC_BASE_URL + path (the URL Twilio signed)."""
    import base64
    import hmac
    from hashlib import sha1

    from ivr import security

    def twilio_signature_ok(request, settings):  # type: ignore[no-untyped-def]
        if not settings.twilio_auth_token:
            return settings.insecure_dev
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature:
            return False
        data = security.signed_url(request, settings)
        form = request.form
        for name in sorted(form.keys()):
            for value in sorted(set(form.getlist(name))):
                data += name + value
        mac = hmac.new(settings.twilio_auth_token.encode(), data.encode(), sha1)
        return hmac.compare_digest(base64.b64encode(mac.digest()).decode(), signature)

    security.twilio_signature_ok = twilio_signature_ok  # type: ignore[assignment]


def simple_worker() -> None:
    """RQ's SimpleWorker: no fork per job."""
    from rq import SimpleWorker

    import caseline.work

    caseline.work.Worker = SimpleWorker  # type: ignore[misc]


def lean_redirect() -> None:
    """One requests.Session POST per redirect, no twilio Client layers."""
    import threading

    import requests

    from telephony import Telephony
    from telephony.client import Outcome

    local = threading.local()

    # caseline's own keywords (retry, carried_out, look_seconds) are taken and ignored:
    # one try, no look for Twilio's sign, as a measurement of the transport alone.
    def redirect_call(self, call_sid, url, **_ignored):  # type: ignore[no-untyped-def]
        settings = self._settings
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        endpoint = (f"{settings.twilio_api_url.rstrip('/')}/2010-04-01/Accounts/"
                    f"{settings.twilio_account_sid}/Calls/{call_sid}.json")
        try:
            answer = session.post(endpoint, data={"Url": url, "Method": "POST"},
                                  auth=(settings.twilio_account_sid,
                                        settings.twilio_auth_token or "unset"),
                                  timeout=self._timeout)
        except requests.RequestException:
            return Outcome.TRANSIENT
        if answer.status_code == 404:
            return Outcome.GONE
        return Outcome.DONE if answer.status_code < 300 else Outcome.TRANSIENT

    Telephony.redirect_call = redirect_call  # type: ignore[method-assign]


def constant_twiml() -> None:
    """The never-changing documents rendered once."""
    from twilio.twiml.voice_response import VoiceResponse

    from ivr import twiml

    class Rendered:
        def __init__(self, response: VoiceResponse) -> None:
            self.text = str(response)

        def __str__(self) -> str:
            return self.text

    empty, bridge, leave = (Rendered(twiml.empty()), Rendered(twiml.bridge()),
                            Rendered(twiml.leave()))
    twiml.empty = lambda: empty  # type: ignore[assignment,return-value]
    twiml.bridge = lambda: bridge  # type: ignore[assignment,return-value]
    twiml.leave = lambda: leave  # type: ignore[assignment,return-value]


def e164_fast_path() -> None:
    """'+1' and ten digits is already what normalize_phone would return."""
    import re

    import directory

    original = directory.normalize_phone
    us = re.compile(r"\+1[2-9]\d{9}")

    def normalize_phone(raw, region="US"):  # type: ignore[no-untyped-def]
        if isinstance(raw, str) and us.fullmatch(raw):
            return raw
        return original(raw, region)

    directory.normalize_phone = normalize_phone  # type: ignore[assignment]


def no_kept_reply() -> None:
    """Upper bound of folding the kept reply into each webhook's last script."""
    from routing import replies

    replies.keep_reply = lambda r, token, status, body: None  # type: ignore[assignment]


def no_admit_trip() -> None:
    """Upper bound of folding admit into the routing scripts (every bench call exists)."""
    from ivr import gate

    gate.admit_call = lambda r, call_sid, token="": (True, True)  # type: ignore[assignment]


def urllib3_transport() -> None:
    """twilio's Client over a urllib3 pool instead of `requests`."""
    from urllib.parse import urlencode

    import urllib3
    from twilio.http import HttpClient
    from twilio.http.response import Response

    from telephony import client as telephony_client

    class Urllib3Client(HttpClient):
        def __init__(self, timeout: float) -> None:
            super().__init__(logging.getLogger("twilio.http_client"), False, timeout)
            self.pool = urllib3.PoolManager(maxsize=8)

        def request(self, method, uri, params=None, data=None,  # type: ignore[no-untyped-def]
                    headers=None, auth=None, timeout=None, allow_redirects=False):
            if params:
                uri = f"{uri}?{urlencode(params, doseq=True)}"
            headers = dict(headers or {})
            if auth:
                headers.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
            body = None
            if data:
                body = urlencode(data, doseq=True)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            answer = self.pool.request(method.upper(), uri, body=body, headers=headers,
                                       timeout=timeout or self.timeout, retries=False,
                                       redirect=allow_redirects)
            return Response(answer.status, answer.data.decode("utf-8"), answer.headers)

    # `http_client_for` tunes a `requests` session (proxy, CA bundle); this transport has none.
    telephony_client.http_client_for = (  # type: ignore[assignment]
        lambda base_url, timeout: Urllib3Client(timeout))


def voice_no_session() -> None:
    """Webhooks open no console session (no cookie parse, no session object)."""
    from ivr.console import web_sessions

    interface = web_sessions.RedisSessionInterface
    opened = interface.open_session

    def open_session(self, app, request):  # type: ignore[no-untyped-def]
        if request.path.startswith("/voice/"):
            return self.make_null_session(app)
        return opened(self, app, request)

    interface.open_session = open_session  # type: ignore[method-assign]


_GRANIAN_SETTINGS = None


def granian_app():  # type: ignore[no-untyped-def]
    """The app, built in granian's worker process (forked: the settings are inherited)."""
    import gc

    from ivr import create_app, warm_up

    app = create_app(_GRANIAN_SETTINGS)
    warm_up(app)
    gc.collect()
    gc.freeze()
    return app


def granian_server() -> None:
    """`caseline serve` under granian (Rust HTTP, WSGI in blocking threads) instead of
    gunicorn: `GRANIAN_THREADS` blocking threads (default 4) per process."""
    import os

    import caseline.server as server

    def run(settings, *, workers, threads):  # type: ignore[no-untyped-def]
        global _GRANIAN_SETTINGS
        from granian.constants import Interfaces
        from granian.server import Server

        _GRANIAN_SETTINGS = server.streams_for(settings, threads)
        Server("bench.patched:granian_app", address=settings.host, port=settings.port,
               interface=Interfaces.WSGI, workers=workers,
               blocking_threads=int(os.environ.get("GRANIAN_THREADS", threads)),
               backpressure=int(os.environ.get("GRANIAN_BACKPRESSURE", 0)) or None,
               factory=True, log_level="warning", websockets=False,
               http="1").serve()

    server.run_gunicorn = run


def all_folds() -> None:
    """Every hot-path change still proposed, at once (their upper bounds)."""
    for name in ALL_FOLDS:
        PATCHES[name]()


ALL_FOLDS = ("no-kept-reply", "no-admit-trip", "urllib3-transport", "voice-no-session",
             "e164-fast-path")

PATCHES = {
    "all-folds": all_folds,
    "granian": granian_server,
    "no-kept-reply": no_kept_reply,
    "no-admit-trip": no_admit_trip,
    "urllib3-transport": urllib3_transport,
    "voice-no-session": voice_no_session,
    "switch-1ms": lambda: sys.setswitchinterval(0.001),
    "switch-0.5ms": lambda: sys.setswitchinterval(0.0005),
    "lean-redirect": lean_redirect,
    "constant-twiml": constant_twiml,
    "e164-fast-path": e164_fast_path,
    "simple-worker": simple_worker,
    "quiet-twilio-log": quiet_twilio_log,
    "wait-pipeline": wait_pipeline,
    "validator-once": validator_once,
}


def main() -> None:
    """Apply the patches, then run the `caseline` command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--patch", default="")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    from caseline.cli import main as caseline_main

    names = [n for n in args.patch.split(",") if n]
    if any(n not in PATCHES for n in names):
        raise SystemExit(f"unknown patch; known: {', '.join(PATCHES)}")

    # `caseline`'s group callback configures logging; patch after it, before serving.
    import caseline.cli as cli

    original = cli._settings

    def settings_then_patch():  # type: ignore[no-untyped-def]
        for name in names:
            PATCHES[name]()
        return original()

    cli._settings = settings_then_patch  # type: ignore[assignment]
    sys.argv = ["caseline", *rest]
    caseline_main()


if __name__ == "__main__":
    main()
