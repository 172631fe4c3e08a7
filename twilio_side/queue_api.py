"""Twilio's Queues resource, as far as caseline uses it: list and create queues
(`Queues.json`, with `FriendlyName` and `MaxSize`), fetch and resize one
(`Queues/{QueueSid}.json`, with `MaxSize`).

The queues are the ones `<Enqueue>` waits in (`twilio_side.queues.QUEUES`, this
process's board): a queue `<Enqueue>` created on demand is listed at its default
size (1000), and one sized here refuses the 1st call past its size (queue-full).
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from twilio_side.account import API_VERSION
from twilio_side.queues import LARGEST_MAX_SIZE, QUEUES, QueueInfo
from twilio_side.rest_api import json_response, twilio_error

# Twilio's codes: an invalid parameter (a MaxSize out of 1..5000), and a second
# queue with a name already taken.
INVALID_PARAMETER = 20001
QUEUE_NAME_TAKEN = 22003


def queue_rules() -> list[Rule]:
    """The Queues resource's URLs, under one account."""
    api = f"/{API_VERSION}/Accounts/<account>"
    return [
        Rule(f"{api}/Queues.json", endpoint="queues", methods=["GET", "POST"]),
        Rule(f"{api}/Queues/<queue>.json", endpoint="queue", methods=["GET", "POST"]),
    ]


def _queue_json(queue: QueueInfo, account: str) -> dict[str, Any]:
    """A queue resource as Twilio shapes it."""
    return {
        "sid": queue.sid,
        "account_sid": account,
        "friendly_name": queue.name,
        "max_size": queue.max_size,
        "current_size": queue.current_size,
        "average_wait_time": queue.average_wait,
        "date_created": format_datetime(queue.created, usegmt=True),
        "date_updated": format_datetime(queue.created, usegmt=True),
        "uri": f"/{API_VERSION}/Accounts/{account}/Queues/{queue.sid}.json",
    }


def _max_size(request: Request) -> int | Response | None:
    """The request's `MaxSize` (None when absent), or Twilio's 400 when it is not 1..5000."""
    raw = request.form.get("MaxSize")
    if raw is None:
        return None
    if not raw.strip().isdigit() or not 1 <= int(raw) <= LARGEST_MAX_SIZE:
        return twilio_error(400, INVALID_PARAMETER,
                            f"MaxSize must be between 1 and {LARGEST_MAX_SIZE}")
    return int(raw)


def _by_sid(sid: str) -> QueueInfo | None:
    """The queue whose sid is `sid`."""
    for name in QUEUES.names():
        queue = QUEUES.info(name)
        if queue is not None and queue.sid == sid:
            return queue
    return None


class QueueResources:
    """The handlers of the Queues resource (mixed into the emulator beside `RestApi`,
    whose dispatch checks credentials and plays planned faults for them too)."""

    def reset(self) -> None:
        """Forget the queues too: each test starts with none, as a new account does."""
        super().reset()  # type: ignore[misc]
        QUEUES.forget()

    def _queues(self, request: Request, account: str) -> Response:
        """`Queues.json`: list every queue (one page), or create one by `FriendlyName`."""
        if request.method == "GET":
            queues = [_queue_json(q, account) for q in map(QUEUES.info, QUEUES.names()) if q]
            uri = f"/{API_VERSION}/Accounts/{account}/Queues.json"
            return json_response({"queues": queues, "page": 0, "page_size": 50,
                                  "start": 0, "end": max(len(queues) - 1, 0), "uri": uri,
                                  "first_page_uri": f"{uri}?PageSize=50&Page=0",
                                  "next_page_uri": None, "previous_page_uri": None})
        name = (request.form.get("FriendlyName") or "").strip()
        if not name or len(name) > 64:
            return twilio_error(400, INVALID_PARAMETER, "FriendlyName must be 1 to 64 characters")
        max_size = _max_size(request)
        if isinstance(max_size, Response):
            return max_size
        if not QUEUES.create(name, max_size):
            return twilio_error(400, QUEUE_NAME_TAKEN, f"A queue named {name} already exists")
        created = QUEUES.info(name)
        assert created is not None
        return json_response(_queue_json(created, account), status=201)

    def _queue(self, request: Request, account: str, queue: str) -> Response:
        """`Queues/{QueueSid}.json`: fetch the queue, or set its `MaxSize`."""
        found = _by_sid(queue)
        if found is None:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if request.method == "POST":
            max_size = _max_size(request)
            if isinstance(max_size, Response):
                return max_size
            if max_size is not None:
                QUEUES.resize(found.name, max_size)
            found = QUEUES.info(found.name) or found
        return json_response(_queue_json(found, account))
