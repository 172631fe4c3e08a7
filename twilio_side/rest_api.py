"""The REST resources of Twilio's API that caseline uses, answered as Twilio answers them.

JSON resources, and Twilio's error bodies so `twilio`'s client raises
`TwilioRestException`: fetch or update (redirect, new TwiML, hang up) a call or
a queue member, and create an outbound call. Every request is recorded; the
next ones can be made to fail on purpose (`fail_next`).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from twilio_side.account import API_VERSION, new_sid
from twilio_side.registry import (
    ENDED,
    CallRegistry,
    CallUpdate,
    CreatedCall,
    LiveCall,
    RecordedRequest,
)

# A planned fault with this prefix ("acted:500", "acted:reset") comes after Twilio
# carried the request out: the call was placed or moved, the answer says otherwise.
ACTED = "acted:"


def twilio_error(status: int, code: int, message: str) -> Response:
    """An error in Twilio's legacy JSON shape (what `TwilioRestException` parses)."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(json.dumps(body), status=status, mimetype="application/json")


def json_response(data: object, status: int = 200) -> Response:
    """A JSON response."""
    return Response(json.dumps(data), status=status, mimetype="application/json")


def api_rules() -> list[Rule]:
    """The REST resources the emulator serves, under one account."""
    api = f"/{API_VERSION}/Accounts/<account>"
    return [
        Rule(f"{api}/Calls.json", endpoint="create_call", methods=["POST"]),
        Rule(f"{api}/Calls.json", endpoint="list_calls", methods=["GET"]),
        Rule(f"{api}/Calls/<sid>.json", endpoint="call", methods=["GET", "POST"]),
        Rule(
            f"{api}/Conferences/<conference>/Participants.json",
            endpoint="create_participant",
            methods=["POST"],
        ),
        Rule(
            f"{api}/Queues/<queue>/Members/<sid>.json",
            endpoint="member",
            methods=["GET", "POST"],
        ),
    ]


class RestApi(CallRegistry):
    """Routes requests to Twilio's resources (and the emulator's own `/_emulator/*`)."""

    account_sid: str | None
    auth_token: str | None
    _routes: Map

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
            response: Response = twilio_error(405, 20004, f"Method not allowed: {exc}")
            self._record(request, response.status_code, None)
            return response
        except NotFound:
            response = twilio_error(
                404, 20404, f"The requested resource {request.path} was not found"
            )
            self._record(request, 404, None)
            return response
        except HTTPException as exc:  # pragma: no cover - werkzeug's other routing errors
            return twilio_error(exc.code or 400, 20001, exc.description or "bad request")
        handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
        if endpoint.startswith("link_"):
            return handler(request, **args)
        denied = self._check_auth(request, args["account"])
        if denied is not None:
            self._record(request, denied.status_code, args.get("sid"))
            return denied
        planned = self._take_fault(request)
        if planned is not None and str(planned).startswith(ACTED):
            # Twilio carried the request out, then its answer was lost or an error.
            handler(request, **args)
            planned = str(planned)[len(ACTED):]
        if planned is not None:
            fault = self._fault_response(request, planned)
            self._record(request, fault.status_code, args.get("sid"))
            return fault
        response = handler(request, **args)
        self._record(request, response.status_code, args.get("sid"))
        return response

    def _take_fault(self, request: Request) -> int | str | None:
        """The next planned fault: for a POST (an action on a call) from `fail_next`, for
        a GET (reading a call) from `fail_next_fetch`; None when there is none."""
        faults = self._faults if request.method == "POST" else self._fetch_faults
        with self._lock:
            if not faults:
                return None
            return faults.popleft()

    def _fault_response(self, request: Request, fault: int | str) -> Response:
        """The answer of a planned fault: its HTTP status, or a cut connection."""
        if fault == "reset":
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                # SO_LINGER 0: close with a TCP reset, as a dropped connection looks.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            return twilio_error(502, 0, "connection reset")
        status = int(fault)
        return twilio_error(status, 20429 if status == 429 else 20500,
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
            return twilio_error(401, 20003, "Authenticate")
        if account != self.account_sid:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        return None

    def _call_json(self, call: LiveCall, account: str) -> dict[str, Any]:
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
            "start_time": format_datetime(call.created, usegmt=True),
            "end_time": format_datetime(call.ended, usegmt=True) if call.ended else None,
            # Twilio's duration is a string of seconds, empty while live or unanswered.
            "duration": None if call.duration is None else str(call.duration),
            "parent_call_sid": call.parent_call_sid or None,
            "uri": f"/{API_VERSION}/Accounts/{account}/Calls/{call.sid}.json",
        }

    def _update(self, request: Request, call: LiveCall) -> None:
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
                return twilio_error(404, 20404, f"The requested resource {path} was not found")
            if request.method == "POST":
                if call.status in ENDED:
                    return twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
                self._update(request, call)
            return json_response(self._call_json(call, account))

    def _member(self, request: Request, account: str, queue: str, sid: str) -> Response:
        """`Queues/{queue}/Members/{sid}.json`: fetch, or redirect a live member out."""
        path = request.path
        with self._lock:
            call = self._calls.get(sid)
            if call is None or call.status in ENDED:
                return twilio_error(404, 20404, f"The requested resource {path} was not found")
            if request.method == "POST":
                self._update(request, call)
            waited = int((datetime.now(UTC) - call.created).total_seconds())
            return json_response(
                {
                    "call_sid": sid,
                    "queue_sid": queue,
                    "position": 1,
                    "wait_time": waited,
                    "date_enqueued": format_datetime(call.created, usegmt=True),
                    "uri": f"/{API_VERSION}/Accounts/{account}/Queues/{queue}/Members/{sid}.json",
                }
            )

    def _list_calls(self, request: Request, account: str) -> Response:
        """`Calls.json` (GET): the account's calls, newest first, filtered as Twilio's
        Call resource documents its list: `To`, `From`, `ParentCallSid` and `Status`
        (exact matches; the `StartTime`/`EndTime` filters are not served), paged by
        `PageSize` (default 50, at most 1000) and `Page` (from 0)."""
        wanted = {"to": request.args.get("To"), "from_": request.args.get("From"),
                  "parent_call_sid": request.args.get("ParentCallSid"),
                  "status": request.args.get("Status")}
        try:
            size = min(1000, max(1, int(request.args.get("PageSize", "50"))))
            page = max(0, int(request.args.get("Page", "0")))
        except ValueError:
            return twilio_error(400, 20001, "Invalid PageSize or Page")
        with self._lock:
            matching = [call for call in self._calls.values()
                        if all(value is None or (getattr(call, field) or "") == value
                               for field, value in wanted.items())]
            matching.sort(key=lambda call: call.created, reverse=True)
            shown = [self._call_json(call, account)
                     for call in matching[page * size:(page + 1) * size]]
        uri = f"/{API_VERSION}/Accounts/{account}/Calls.json"
        query = urlencode([(name, value) for name, value in request.args.items()
                           if name not in ("Page", "PageSize", "PageToken")]
                          + [("PageSize", str(size))])
        base = f"{uri}?{query}"
        more = (page + 1) * size < len(matching)
        return json_response({
            "calls": shown,
            "page": page,
            "page_size": size,
            "start": page * size,
            "end": page * size + max(0, len(shown) - 1),
            "uri": f"{base}&Page={page}",
            "first_page_uri": f"{base}&Page=0",
            "previous_page_uri": f"{base}&Page={page - 1}" if page else None,
            "next_page_uri": f"{base}&Page={page + 1}" if more else None,
        })

    def _create_call(self, request: Request, account: str) -> Response:
        """`Calls.json`: an outbound call, recorded ('queued' until a simulator runs it)."""
        form = request.form
        if not form.get("To") or not form.get("From"):
            return twilio_error(400, 21201, "No 'To' or 'From' number is specified")
        if not form.get("Url") and not form.get("Twiml") and not form.get("ApplicationSid"):
            return twilio_error(400, 21205, "Url parameter is required.")
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
        call = LiveCall(
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
        if self.before_answering_create is not None:
            self.before_answering_create(created)
        return json_response(body, status=201)

    def _create_participant(self, request: Request, account: str, conference: str) -> Response:
        """`Conferences/{name or CF sid}/Participants.json`: dial a number into a
        conference (Twilio creates the conference by friendly name when needed)."""
        form = request.form
        if not form.get("To") or not form.get("From"):
            return twilio_error(400, 21201, "No 'To' or 'From' number is specified")
        created = CreatedCall(
            sid=new_sid("CA"),
            to=form["To"],
            from_=form["From"],
            url=None,
            method="POST",
            twiml=None,
            status_callback=form.get("StatusCallback"),
            form=dict(form.items()),
            conference=conference,
        )
        call = LiveCall(created.sid, status="queued", to=created.to, from_=created.from_,
                        direction="outbound-api")
        with self._lock:
            self._calls[created.sid] = call
            self._created.append(created)
            self._joining.setdefault(conference, deque()).append(created)
        body = {
            "account_sid": account,
            "call_sid": created.sid,
            "conference_sid": "CF" + created.sid[2:],
            "label": form.get("Label"),
            "status": "queued",
            "end_conference_on_exit": form.get("EndConferenceOnExit", "false") == "true",
            "start_conference_on_enter": form.get("StartConferenceOnEnter", "true") == "true",
            "muted": False,
            "hold": False,
            "coaching": False,
            "date_created": format_datetime(datetime.now(UTC), usegmt=True),
            "date_updated": format_datetime(datetime.now(UTC), usegmt=True),
            "uri": f"/{API_VERSION}/Accounts/{account}/Conferences/{conference}"
                   f"/Participants/{created.sid}.json",
        }
        return json_response(body, status=201)
