"""The operators' and console's JSON API, behind a bearer token.

Errors are JSON objects with an `error` text: 400, 401, 404, 409, 422 and 502 as
each view says; 503 with `unavailable` ("redis" or "database") while one of the
two cannot be reached, so an operator's script can wait and retry.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from flask import Blueprint, Response, abort, jsonify, request
from sqlalchemy import exc as database_errors

import directory
from directory import records
from directory.call_logs import calls_on_case
from directory.redis_client import redis_unavailable
from directory.validation import json_object
from ivr.context import (
    base_url,
    desk,
    initial_maintenance_windows,
    now,
    now_ms,
)
from ivr.metrics import count_error
from ivr.security import api_token_ok
from routing import availability, conference, lockout, maintenance, presence
from routing.announcement import current_announcement, set_announcement
from routing.roster import advisor_roster
from routing.stats import team_stats
from routing.waiting import waiting_callers

bp = Blueprint("api", __name__, url_prefix="/api")

log = logging.getLogger(__name__)

# What SQLAlchemy raises while the database cannot be reached, or stays locked past its
# timeout. An IntegrityError or a ProgrammingError is a bug: a 500.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    database_errors.OperationalError, database_errors.InterfaceError,
    database_errors.DisconnectionError, database_errors.TimeoutError)
# How soon (s) a refused request may be tried again: the console's pages poll as often.
RETRY_UNAVAILABLE_SECONDS = 3


@bp.before_request
def check_token() -> tuple[Response, int] | None:
    """Every API request needs `Authorization: Bearer $CASELINE_API_TOKEN`."""
    if api_token_ok(request.headers.get("Authorization"), desk().settings):
        return None
    return jsonify({"error": "missing or wrong bearer token"}), 401


def _json_or_none() -> Any:
    """The request's JSON, or None when it is none (not JSON, unreadable, or nested
    deeper than the parser goes: Python's recursion limit). Objects are read as
    `directory load` reads them (`json_object`): a field named twice is noted, for a
    directory record's validation to name, not silently the last."""
    if not request.is_json:
        return None
    try:
        return json.loads(request.get_data(), object_pairs_hook=json_object)
    except (ValueError, RecursionError):
        return None


def _json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400."""
    body = _json_or_none()
    if not isinstance(body, dict):
        abort(400, description="expected a JSON object")
    return body


@bp.errorhandler(400)
@bp.errorhandler(404)
def client_error(exc: Any) -> tuple[Response, int]:
    """Errors as JSON."""
    return jsonify({"error": getattr(exc, "description", str(exc))}), exc.code


def unavailable(exc: Exception) -> tuple[Response, int, dict[str, str]]:
    """503 `{"error": "...", "unavailable": "redis" | "database"}` with `Retry-After`
    (seconds) when Redis or the database cannot be reached. The error's class only:
    its text may name hosts or files; the log has all of it."""
    store = "redis" if isinstance(exc, redis.RedisError) else "database"
    count_error(exc)
    log.warning("API %s %s: %s unavailable: %s", request.method, request.path, store, exc)
    name = "Redis" if store == "redis" else "the database"
    body = {"error": f"{name} is unavailable ({type(exc).__name__}): try again shortly",
            "unavailable": store}
    return jsonify(body), 503, {"Retry-After": str(RETRY_UNAVAILABLE_SECONDS)}


for _unavailable in DATABASE_UNAVAILABLE:
    bp.register_error_handler(_unavailable, unavailable)


@bp.errorhandler(redis.RedisError)
def redis_failed(exc: redis.RedisError) -> tuple[Response, int, dict[str, str]]:
    """A 503 while Redis is down or refuses writes for now
    (`directory.redis_client.redis_unavailable`); any other Redis error is a bug,
    left to the app's handler (a 500)."""
    if redis_unavailable(exc):
        return unavailable(exc)
    raise exc


def _refused(error: records.RecordError) -> tuple[Response, int]:
    """422 naming every bad field; nothing was changed."""
    return jsonify({"error": "; ".join(error.problems), "problems": error.problems}), 422


def _changed(change: records.Change) -> tuple[Response, int]:
    """The record after the change (201 when it was created), and what moved."""
    body = {**change.record, "changed": sorted(change.changes)}
    return jsonify(body), 201 if change.created else 200


@bp.get("/advisors")
def advisors() -> Response:
    """Every advisor with status and teams."""
    return jsonify(advisor_roster(desk().r, now_ms(), desk().session_factory))


@bp.put("/advisors/<advisor_id>/status")
def advisor_status(advisor_id: str) -> Response | tuple[Response, int]:
    """Set an advisor available, busy or offline; available serves the queue at once."""
    status = _json_body().get("status")
    if status not in presence.STATUSES:
        abort(400, description="status must be one of available, busy, offline")
    d = desk()
    # After a Redis restart the advisor may be known only to the database.
    directory.advisor_facts(d.r, d.session_factory, advisor_id, now())
    if status == "available":
        outcome = availability.free_advisor(d, advisor_id, now_ms(), explicit=True).outcome
    else:
        outcome = presence.make_unavailable(d.r, advisor_id, status, now_ms=now_ms())
    if outcome == "unknown":
        abort(404, description=f"no advisor {advisor_id!r}")
    state = presence.advisor_state(d.r, advisor_id)
    # The call they ring or talk on; a wrap-up holds no call (as GET /api/advisors says).
    call = state.get("call") if state.get("hold") != "wrapup" else None
    return jsonify({"id": advisor_id, "status": state.get("status"), "call": call or None})


@bp.post("/advisors/<advisor_id>/colleague")
def add_colleague(advisor_id: str) -> tuple[Response, int]:
    """Bring a colleague (`{"phone": "..."}`, US or Canada) into the advisor's call."""
    phone = _json_body().get("phone")
    if not isinstance(phone, str):
        abort(400, description="phone must be a string")
    outcome = conference.add_colleague(desk(), advisor_id[:64], phone, base_url(), now_ms())
    if isinstance(outcome, conference.Refused):
        return _colleague_refused(outcome)
    return jsonify({"call": outcome.call_sid, "phone": outcome.phone, "leg": outcome.leg,
                    "added_by": advisor_id}), 201


@bp.delete("/advisors/<advisor_id>/colleague")
def remove_colleague(advisor_id: str) -> tuple[Response, int]:
    """Hang up the colleague on the advisor's call (the call goes on)."""
    outcome = conference.remove_colleague(desk(), advisor_id[:64], now_ms())
    if isinstance(outcome, conference.Refused):
        return _colleague_refused(outcome)
    return jsonify({"call": outcome.call_sid, "leg": outcome.leg, "removed_by": advisor_id}), 200


def _colleague_refused(refused: conference.Refused) -> tuple[Response, int]:
    """400 for a refused number, 502 when Twilio's API did not answer, else 409."""
    status = 400 if refused.bad_request else 502 if refused.reason == "twilio-unavailable" else 409
    return jsonify({"error": refused.reason}), status


@bp.post("/contacts/<contact_id>/unlock")
def unlock_contact(contact_id: str) -> Response:
    """Lift a contact's PIN lockout (five failed PINs within 24 hours)."""
    d = desk()
    # No contact id is longer (directory.validation): a longer one is nobody, never
    # the contact its first digits name.
    was_locked = (None if len(contact_id) > directory.CONTACT_ID_DIGITS else
                  lockout.unlock_contact(d.r, d.session_factory, contact_id, now()))
    if was_locked is None:
        abort(404, description=f"no contact {contact_id!r}")
    return jsonify({"id": contact_id, "locked": False, "was_locked": was_locked})


@bp.get("/queues")
def queues() -> Response:
    """Waiting callers per team, in serving order."""
    return jsonify(waiting_callers(desk(), now_ms()))


@bp.get("/cases/<number>/calls")
def case_calls(number: str) -> Response:
    """The call logs on a case, oldest first."""
    return jsonify(calls_on_case(desk().session_factory, number))


@bp.get("/announcement")
def get_announcement() -> Response:
    """The known-incident announcement, active or not."""
    return jsonify(current_announcement(desk().r))


@bp.put("/announcement")
def announcement() -> Response:
    """Set the known-incident announcement, or turn it on or off (without `text`, the
    stored text is kept)."""
    body = _json_body()
    text = body.get("text")
    if "text" in body and (not isinstance(text, str) or len(text) > 2000):
        abort(400, description="text must be a string of at most 2000 characters")
    active = body.get("active", True)
    if not isinstance(active, bool):
        # "false" (a string) must not switch the announcement on for every caller.
        abort(400, description="active must be true or false")
    return jsonify(set_announcement(desk().r, text, active))


@bp.get("/stats")
def stats() -> Response:
    """Service level per team, live, for today in Central time (and the line's failed
    verifications of the last hour, in every team's figures)."""
    return jsonify(team_stats(desk(), now()))


@bp.put("/cases/<number>")
def put_case(number: str) -> tuple[Response, int]:
    """Create or update one case, validated as `caseline directory load` does."""
    d = desk()
    try:
        change = records.put_case(d.session_factory, d.r, number, _json_body(), now())
    except records.RecordError as error:
        return _refused(error)
    return _changed(change)


@bp.delete("/cases/<number>")
def close_case(number: str) -> tuple[Response, int]:
    """Close a case."""
    d = desk()
    change = records.close_case(d.session_factory, d.r, number, now())
    if change is None:
        abort(404, description=f"no case {number!r}")
    return _changed(change)


@bp.put("/contacts/<contact_id>")
def put_contact(contact_id: str) -> tuple[Response, int]:
    """Create or update one contact, validated as `caseline directory load` does."""
    d = desk()
    try:
        change = records.put_contact(d.session_factory, d.r, contact_id, _json_body(), now(),
                                     pepper=d.settings.pin_pepper)
    except records.RecordError as error:
        return _refused(error)
    return _changed(change)


@bp.delete("/contacts/<contact_id>")
def deactivate_contact(contact_id: str) -> tuple[Response, int]:
    """Deactivate a contact: they are no longer identified by number or PIN."""
    d = desk()
    change = records.deactivate_contact(d.session_factory, d.r, contact_id, now())
    if change is None:
        abort(404, description=f"no contact {contact_id!r}")
    return _changed(change)


@bp.get("/maintenance")
def get_maintenance() -> Response:
    """The posted maintenance windows: start, end (Central, with offset) and outage; a
    503 rather than the file's windows when only the database knows the posted ones."""
    return jsonify(maintenance.as_api(maintenance.posted_windows(
        desk(), initial_maintenance_windows(), file_if_database_down=False)))


@bp.put("/maintenance")
def put_maintenance() -> Response | tuple[Response, int]:
    """Replace the posted windows; one not on a Saturday (Central) refuses them all."""
    body = _json_or_none()
    try:
        windows = maintenance.replace_windows(desk(), body, initial_maintenance_windows(), now(),
                                              actor=records.API_ACTOR)
    except maintenance.WindowsRefused as error:
        return jsonify({"error": "; ".join(error.problems), "problems": error.problems}), 422
    return jsonify(maintenance.as_api(windows))
