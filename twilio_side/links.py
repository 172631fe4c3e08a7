"""The simulator's line to the emulator: how a REST redirect reaches the call it is for.

In one process the simulator reads the emulator's registry directly
(`InProcessLink`); from another it uses the emulator's own routes,
`/_emulator/*` (`HttpLink`), which `LinkRoutes` serves.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import quote

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from twilio_side.registry import CallRegistry, CallUpdate, CreatedCall
from twilio_side.rest_api import json_response


class EmulatorLink(Protocol):
    """The simulator's line to the Twilio REST emulator (see `twilio_side.emulator`)."""

    def register(self, call_sid: str, *, from_: str = "", to: str = "",
                 parent_call_sid: str = "") -> None:
        """The call is live (`parent_call_sid`: the call whose `<Dial>` spawned it)."""
        ...

    def end(self, call_sid: str, duration: int | None = None) -> None:
        """The call is over (completed), after `duration` seconds when given."""
        ...

    def take_update(self, call_sid: str) -> CallUpdate | None:
        """The next pending REST update for the call."""
        ...

    def take_participant(self, conference: str) -> CreatedCall | None:
        """The next participant dialed into the conference through the REST API."""
        ...


def link_rules() -> list[Rule]:
    """The emulator's own routes, for a simulator in another process."""
    return [
        Rule("/_emulator/calls/<sid>", endpoint="link_call", methods=["POST", "DELETE"]),
        Rule("/_emulator/calls/<sid>/redirect", endpoint="link_redirect", methods=["GET"]),
        Rule("/_emulator/conferences/<name>/participant", endpoint="link_participant",
             methods=["GET"]),
        Rule("/_emulator/requests", endpoint="link_requests", methods=["GET"]),
        Rule("/_emulator/reset", endpoint="link_reset", methods=["POST"]),
    ]


class LinkRoutes(CallRegistry):
    """The `/_emulator/*` side of `HttpLink`: register, end and take updates over HTTP."""

    def _link_call(self, request: Request, sid: str) -> Response:
        """`/_emulator/calls/{sid}`: POST registers a live call, DELETE ends it."""
        if request.method == "POST":
            self.register_call(
                sid,
                from_=request.form.get("from", ""),
                to=request.form.get("to", ""),
                direction=request.form.get("direction", "inbound"),
                parent_call_sid=request.form.get("parent", ""),
            )
            return json_response({"sid": sid, "status": "in-progress"})
        duration = request.args.get("duration", "")
        self.end_call(sid, duration=int(duration) if duration.isdigit() else None)
        return Response(status=204)

    def _link_redirect(self, request: Request, sid: str) -> Response:
        """`/_emulator/calls/{sid}/redirect`: pop the pending update (200) or 204."""
        update = self.take_update(sid)
        if update is None:
            return Response(status=204)
        return json_response(update.to_json())

    def _link_participant(self, request: Request, name: str) -> Response:
        """`/_emulator/conferences/{name}/participant`: pop a dialed participant (200) or 204."""
        created = self.take_participant(name)
        if created is None:
            return Response(status=204)
        return json_response({"sid": created.sid, "to": created.to, "from": created.from_,
                              "status_callback": created.status_callback, "form": created.form})

    def _link_requests(self, request: Request) -> Response:
        """`/_emulator/requests`: every recorded API request, as JSON."""
        return json_response(
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

    def __init__(self, emulator: CallRegistry) -> None:
        """Wrap the emulator."""
        self.emulator = emulator

    def register(self, call_sid: str, *, from_: str = "", to: str = "",
                 parent_call_sid: str = "") -> None:
        """The call is live (`parent_call_sid`: the call whose `<Dial>` spawned it)."""
        self.emulator.register_call(call_sid, from_=from_, to=to,
                                    parent_call_sid=parent_call_sid)

    def end(self, call_sid: str, duration: int | None = None) -> None:
        """The call is over (completed), after `duration` seconds when given."""
        self.emulator.end_call(call_sid, duration=duration)

    def take_update(self, call_sid: str) -> CallUpdate | None:
        """The next pending REST update for the call, if any."""
        return self.emulator.take_update(call_sid)

    def take_redirect(self, call_sid: str) -> tuple[str, str] | None:
        """The next pending redirect `(url, method)`, if any."""
        return self.emulator.take_redirect(call_sid)

    def take_participant(self, conference: str) -> CreatedCall | None:
        """The next participant dialed into the conference, if any."""
        return self.emulator.take_participant(conference)


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

    def register(self, call_sid: str, *, from_: str = "", to: str = "",
                 parent_call_sid: str = "") -> None:
        """The call is live (`parent_call_sid`: the call whose `<Dial>` spawned it)."""
        response = self._session.post(
            self._calls_url(call_sid),
            data={"from": from_, "to": to, "parent": parent_call_sid}, timeout=self.timeout
        )
        response.raise_for_status()

    def end(self, call_sid: str, duration: int | None = None) -> None:
        """The call is over (completed), after `duration` seconds when given."""
        params = {} if duration is None else {"duration": str(duration)}
        self._session.delete(self._calls_url(call_sid), params=params,
                             timeout=self.timeout).raise_for_status()

    def take_update(self, call_sid: str) -> CallUpdate | None:
        """The next pending REST update for the call, if any."""
        response = self._session.get(self._calls_url(call_sid) + "/redirect", timeout=self.timeout)
        response.raise_for_status()
        if response.status_code == 204:
            return None
        return CallUpdate.from_json(response.json())

    def take_participant(self, conference: str) -> CreatedCall | None:
        """The next participant dialed into the conference, if any."""
        response = self._session.get(
            f"{self.base_url}/_emulator/conferences/{quote(conference, safe='')}/participant",
            timeout=self.timeout)
        response.raise_for_status()
        if response.status_code == 204:
            return None
        data = response.json()
        return CreatedCall(sid=data["sid"], to=data["to"], from_=data["from"], url=None,
                           method="POST", twiml=None, status_callback=data["status_callback"],
                           form=data["form"], conference=conference)

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
