"""A local stand-in for the few Twilio REST endpoints caseline calls.

The service connects a waiting caller by redirecting their call through
Twilio's REST API (`Calls/{CallSid}.json` or a queue's
`Members/{CallSid}.json`, with `Url`). In tests, demos and benchmarks that API
is this emulator: a small threaded HTTP server that answers like Twilio (JSON
resources, Twilio's error bodies so `twilio`'s client raises
`TwilioRestException`), records every request, and hands each redirect to the
simulated call it is meant for (`caseline.simulator.Caller`), in this process
(`InProcessLink`) or another one over HTTP (`HttpLink`).

Point twilio's client at it with `client.api.base_url = emulator.url`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import requests
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

API_VERSION = "2010-04-01"
ENDED = ("completed", "canceled", "failed", "busy", "no-answer")


def new_sid(prefix: str) -> str:
    """A Twilio-shaped sid: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received on Twilio's API (not `/_emulator/*`)."""

    method: str
    path: str
    form: dict[str, str]
    at: float
    status: int = 0
    call_sid: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class CallUpdate:
    """A change requested for a live call through the REST API."""

    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    status: str | None = None

    @property
    def hangup(self) -> bool:
        """Whether the update ends the call (`Status=completed|canceled`)."""
        return self.status in ("completed", "canceled")

    def to_json(self) -> dict[str, str | None]:
        """The update as the `/_emulator` endpoint sends it."""
        return {"url": self.url, "method": self.method, "twiml": self.twiml, "status": self.status}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallUpdate:
        """The update from the `/_emulator` endpoint's JSON."""
        return cls(
            url=data.get("url"),
            method=(data.get("method") or "POST").upper(),
            twiml=data.get("twiml"),
            status=data.get("status"),
        )


@dataclass(frozen=True)
class CreatedCall:
    """An outbound call the service asked for (`POST Calls.json`)."""

    sid: str
    to: str
    from_: str
    url: str | None
    method: str
    twiml: str | None
    status_callback: str | None
    form: dict[str, str]


@dataclass
class _Call:
    """What the emulator knows about one call."""

    sid: str
    status: str = "in-progress"
    to: str = ""
    from_: str = ""
    direction: str = "inbound"
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updates: deque[CallUpdate] = field(default_factory=deque)


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without a log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Say nothing: tests and benchmarks poll this server a lot."""


def _twilio_error(status: int, code: int, message: str) -> Response:
    """An error in Twilio's legacy JSON shape (what `TwilioRestException` parses)."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _json(data: object, status: int = 200) -> Response:
    """A JSON response."""
    return Response(json.dumps(data), status=status, mimetype="application/json")


class TwilioEmulator:
    """Twilio's call-control REST endpoints, served locally in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
    ) -> None:
        """Configure; credentials, when given, are required of every API request."""
        self.host = host
        self.port = port
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._calls: dict[str, _Call] = {}
        self._created: list[CreatedCall] = []
        self._faults: deque[int | str] = deque()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        api = f"/{API_VERSION}/Accounts/<account>"
        self._routes = Map(
            [
                Rule(f"{api}/Calls.json", endpoint="create_call", methods=["POST"]),
                Rule(f"{api}/Calls/<sid>.json", endpoint="call", methods=["GET", "POST"]),
                Rule(
                    f"{api}/Queues/<queue>/Members/<sid>.json",
                    endpoint="member",
                    methods=["GET", "POST"],
                ),
                Rule("/_emulator/calls/<sid>", endpoint="link_call", methods=["POST", "DELETE"]),
                Rule("/_emulator/calls/<sid>/redirect", endpoint="link_redirect", methods=["GET"]),
                Rule("/_emulator/requests", endpoint="link_requests", methods=["GET"]),
                Rule("/_emulator/reset", endpoint="link_reset", methods=["POST"]),
            ],
            strict_slashes=False,
        )

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> str:
        """Listen in a background thread; the base URL (`http://127.0.0.1:PORT`)."""
        if self._server is not None:
            return self.url
        self._server = make_server(
            self.host, self.port, self.wsgi_app, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05),
            name="twilio-emulator",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop listening and close the socket."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> TwilioEmulator:
        """Start on entering a `with` block."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving a `with` block."""
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give twilio's client (`client.api.base_url`)."""
        return f"http://{self.host}:{self.port}"

    # -- what tests read ---------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def redirects(self, call_sid: str | None = None) -> list[RecordedRequest]:
        """Requests that tried to redirect a call (`Url` or `Twiml` on a call or member)."""
        return [
            r
            for r in self.requests
            if r.method == "POST"
            and r.call_sid is not None
            and ("Url" in r.form or "Twiml" in r.form)
            and (call_sid is None or r.call_sid == call_sid)
        ]

    @property
    def created_calls(self) -> list[CreatedCall]:
        """Outbound calls created through `POST Calls.json`, oldest first."""
        with self._lock:
            return list(self._created)

    def fail_next(self, *faults: int | str) -> None:
        """Answer the next requests that act on calls (redirects, new calls) with
        these faults, in order: an HTTP status (429, 500, 503...) with Twilio's
        error body, or "reset" (the connection is cut without an answer)."""
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        """Forget every request, call, pending update and planned fault."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._calls.clear()
            self._created.clear()

    # -- the live-call registry (the simulator's side) ---------------------------

    def register_call(
        self, call_sid: str, *, from_: str = "", to: str = "", direction: str = "inbound"
    ) -> None:
        """A simulated call is live: REST updates to it now succeed."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None:
                self._calls[call_sid] = _Call(call_sid, from_=from_, to=to, direction=direction)
            else:
                call.status = "in-progress"

    def end_call(self, call_sid: str) -> None:
        """The simulated call is over: later updates fail as they would on Twilio."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is not None:
                call.status = "completed"
                call.updates.clear()

    def is_live(self, call_sid: str) -> bool:
        """Whether the call is registered and not over."""
        with self._lock:
            call = self._calls.get(call_sid)
            return call is not None and call.status not in ENDED

    def take_update(self, call_sid: str) -> CallUpdate | None:
        """Pop the oldest pending update for the call (redirect, TwiML or hang-up)."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None or not call.updates:
                return None
            return call.updates.popleft()

    def take_redirect(self, call_sid: str) -> tuple[str, str] | None:
        """Pop the pending redirect for the call as `(url, method)`, if the next update is one."""
        with self._lock:
            call = self._calls.get(call_sid)
            if call is None or not call.updates or call.updates[0].url is None:
                return None
            update = call.updates.popleft()
            return (update.url or "", update.method)

    # -- the HTTP side -------------------------------------------------------------

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        """The WSGI application (usable without `start()`, e.g. under another server)."""
        request = Request(environ)
        response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        """Route a request, recording it when it is an API request."""
        adapter = self._routes.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed as exc:
            response: Response = _twilio_error(405, 20004, f"Method not allowed: {exc}")
            self._record(request, response.status_code, None)
            return response
        except NotFound:
            response = _twilio_error(
                404, 20404, f"The requested resource {request.path} was not found"
            )
            self._record(request, 404, None)
            return response
        except HTTPException as exc:  # pragma: no cover - werkzeug's other routing errors
            return _twilio_error(exc.code or 400, 20001, exc.description or "bad request")
        handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
        if endpoint.startswith("link_"):
            return handler(request, **args)
        denied = self._check_auth(request, args["account"])
        if denied is not None:
            self._record(request, denied.status_code, args.get("sid"))
            return denied
        fault = self._take_fault(request)
        if fault is not None:
            self._record(request, fault.status_code, args.get("sid"))
            return fault
        response = handler(request, **args)
        self._record(request, response.status_code, args.get("sid"))
        return response

    def _take_fault(self, request: Request) -> Response | None:
        """The next planned fault, for a POST (an action on a call), if any."""
        if request.method != "POST":
            return None
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults.popleft()
        if fault == "reset":
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                # SO_LINGER 0: close with a TCP reset, as a dropped connection looks.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            return _twilio_error(502, 0, "connection reset")
        status = int(fault)
        return _twilio_error(status, 20429 if status == 429 else 20500,
                             "Too Many Requests" if status == 429 else "Service unavailable")

    def _record(self, request: Request, status: int, call_sid: str | None) -> None:
        """Remember an API request."""
        auth = request.authorization
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            form=dict(request.form.items()),
            at=time.monotonic(),
            status=status,
            call_sid=call_sid if call_sid and call_sid.startswith("CA") else None,
            username=auth.username if auth else None,
        )
        with self._lock:
            self._requests.append(recorded)

    def _check_auth(self, request: Request, account: str) -> Response | None:
        """401 unless the request carries the configured credentials (when any)."""
        if self.account_sid is None or self.auth_token is None:
            return None
        auth = request.authorization
        if (
            auth is None
            or auth.type != "basic"
            or auth.username != self.account_sid
            or auth.password != self.auth_token
        ):
            return _twilio_error(401, 20003, "Authenticate")
        if account != self.account_sid:
            return _twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return None

    def _call_json(self, call: _Call, account: str) -> dict[str, Any]:
        """A call resource as Twilio shapes it (the fields a client reads)."""
        return {
            "sid": call.sid,
            "account_sid": account,
            "to": call.to,
            "from": call.from_,
            "status": call.status,
            "direction": call.direction,
            "api_version": API_VERSION,
            "date_created": format_datetime(call.created, usegmt=True),
            "date_updated": format_datetime(datetime.now(UTC), usegmt=True),
            "parent_call_sid": None,
            "uri": f"/{API_VERSION}/Accounts/{account}/Calls/{call.sid}.json",
        }

    def _update(self, request: Request, call: _Call) -> None:
        """Queue the update a POST asks for (caller holds the lock)."""
        form = request.form
        status = form.get("Status")
        if status in ("completed", "canceled"):
            call.status = "completed"
            call.updates.append(CallUpdate(status=status))
        elif form.get("Twiml"):
            call.updates.append(CallUpdate(twiml=form["Twiml"]))
        elif form.get("Url"):
            method = (form.get("Method") or "POST").upper()
            call.updates.append(CallUpdate(url=form["Url"], method=method))

    def _call(self, request: Request, account: str, sid: str) -> Response:
        """`Calls/{sid}.json`: fetch, or update (redirect / hang up) a live call."""
        path = request.path
        with self._lock:
            call = self._calls.get(sid)
            if call is None:
                return _twilio_error(404, 20404, f"The requested resource {path} was not found")
            if request.method == "POST":
                if call.status in ENDED:
                    return _twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
                self._update(request, call)
            return _json(self._call_json(call, account))

    def _member(self, request: Request, account: str, queue: str, sid: str) -> Response:
        """`Queues/{queue}/Members/{sid}.json`: fetch, or redirect a live member out."""
        path = request.path
        with self._lock:
            call = self._calls.get(sid)
            if call is None or call.status in ENDED:
                return _twilio_error(404, 20404, f"The requested resource {path} was not found")
            if request.method == "POST":
                self._update(request, call)
            waited = int((datetime.now(UTC) - call.created).total_seconds())
            return _json(
                {
                    "call_sid": sid,
                    "queue_sid": queue,
                    "position": 1,
                    "wait_time": waited,
                    "date_enqueued": format_datetime(call.created, usegmt=True),
                    "uri": f"/{API_VERSION}/Accounts/{account}/Queues/{queue}/Members/{sid}.json",
                }
            )

    def _create_call(self, request: Request, account: str) -> Response:
        """`Calls.json`: an outbound call, recorded ('queued' until a simulator runs it)."""
        form = request.form
        if not form.get("To") or not form.get("From"):
            return _twilio_error(400, 21201, "No 'To' or 'From' number is specified")
        if not form.get("Url") and not form.get("Twiml") and not form.get("ApplicationSid"):
            return _twilio_error(400, 21205, "Url parameter is required.")
        created = CreatedCall(
            sid=new_sid("CA"),
            to=form["To"],
            from_=form["From"],
            url=form.get("Url"),
            method=(form.get("Method") or "POST").upper(),
            twiml=form.get("Twiml"),
            status_callback=form.get("StatusCallback"),
            form=dict(form.items()),
        )
        call = _Call(
            created.sid,
            status="queued",
            to=created.to,
            from_=created.from_,
            direction="outbound-api",
        )
        with self._lock:
            self._calls[created.sid] = call
            self._created.append(created)
            body = self._call_json(call, account)
        return _json(body, status=201)

    def _link_call(self, request: Request, sid: str) -> Response:
        """`/_emulator/calls/{sid}`: POST registers a live call, DELETE ends it."""
        if request.method == "POST":
            self.register_call(
                sid,
                from_=request.form.get("from", ""),
                to=request.form.get("to", ""),
                direction=request.form.get("direction", "inbound"),
            )
            return _json({"sid": sid, "status": "in-progress"})
        self.end_call(sid)
        return Response(status=204)

    def _link_redirect(self, request: Request, sid: str) -> Response:
        """`/_emulator/calls/{sid}/redirect`: pop the pending update (200) or 204."""
        update = self.take_update(sid)
        if update is None:
            return Response(status=204)
        return _json(update.to_json())

    def _link_requests(self, request: Request) -> Response:
        """`/_emulator/requests`: every recorded API request, as JSON."""
        return _json(
            [
                {
                    "method": r.method,
                    "path": r.path,
                    "form": r.form,
                    "at": r.at,
                    "status": r.status,
                    "call_sid": r.call_sid,
                }
                for r in self.requests
            ]
        )

    def _link_reset(self, request: Request) -> Response:
        """`/_emulator/reset`: forget everything."""
        self.reset()
        return Response(status=204)


class InProcessLink:
    """The simulator's line to an emulator running in the same process."""

    def __init__(self, emulator: TwilioEmulator) -> None:
        """Wrap the emulator."""
        self.emulator = emulator

    def register(self, call_sid: str, *, from_: str = "", to: str = "") -> None:
        """The call is live."""
        self.emulator.register_call(call_sid, from_=from_, to=to)

    def end(self, call_sid: str) -> None:
        """The call is over."""
        self.emulator.end_call(call_sid)

    def take_update(self, call_sid: str) -> CallUpdate | None:
        """The next pending REST update for the call, if any."""
        return self.emulator.take_update(call_sid)

    def take_redirect(self, call_sid: str) -> tuple[str, str] | None:
        """The next pending redirect `(url, method)`, if any."""
        return self.emulator.take_redirect(call_sid)


class HttpLink:
    """The simulator's line to an emulator in another process (`/_emulator/*`)."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        """Talk to the emulator at `base_url`."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def _calls_url(self, call_sid: str) -> str:
        """The registry URL of one call."""
        return f"{self.base_url}/_emulator/calls/{quote(call_sid, safe='')}"

    def register(self, call_sid: str, *, from_: str = "", to: str = "") -> None:
        """The call is live."""
        response = self._session.post(
            self._calls_url(call_sid), data={"from": from_, "to": to}, timeout=self.timeout
        )
        response.raise_for_status()

    def end(self, call_sid: str) -> None:
        """The call is over."""
        self._session.delete(self._calls_url(call_sid), timeout=self.timeout).raise_for_status()

    def take_update(self, call_sid: str) -> CallUpdate | None:
        """The next pending REST update for the call, if any."""
        response = self._session.get(self._calls_url(call_sid) + "/redirect", timeout=self.timeout)
        response.raise_for_status()
        if response.status_code == 204:
            return None
        return CallUpdate.from_json(response.json())

    def take_redirect(self, call_sid: str) -> tuple[str, str] | None:
        """The next pending update as `(url, method)` when it is a redirect."""
        update = self.take_update(call_sid)
        if update is None or update.url is None:
            return None
        return (update.url, update.method)

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> HttpLink:
        """Use in a `with` block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving a `with` block."""
        self.close()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8099,
    *,
    account_sid: str | None = None,
    auth_token: str | None = None,
) -> None:
    """Run the emulator in the foreground until interrupted (Ctrl-C)."""
    emulator = TwilioEmulator(host, port, account_sid=account_sid, auth_token=auth_token)
    url = emulator.start()
    checks = "checks credentials" if account_sid and auth_token else "accepts any credentials"
    print(f"Twilio REST emulator on {url} ({checks}); Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def _main(argv: Iterator[str] | list[str] | None = None) -> int:
    """`python -m caseline.twilio_emulator [--host H] [--port P]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--account-sid", default=None, help="require this account (Basic auth)")
    parser.add_argument("--auth-token", default=None, help="require this token (Basic auth)")
    args = parser.parse_args(None if argv is None else list(argv))
    serve_forever(args.host, args.port, account_sid=args.account_sid, auth_token=args.auth_token)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
