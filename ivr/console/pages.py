"""The console's pages: sign-in and sign-out, the advisor's page and its
presence switch, the supervisors' wallboard. Each page has a `live` twin
that renders only its changing part, which the page's script swaps in when
the event stream (or, without it, polling) says something changed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from flask import Blueprint, abort, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

import directory
from directory.accounts import PasswordChecksBusy
from ivr.context import (
    base_url,
    desk,
    initial_maintenance_windows,
    maintenance_windows,
    now,
    now_ms,
)
from routing import availability, conference, maintenance, presence
from routing.announcement import set_announcement
from routing.boards import advisor_board, wallboard
from routing.sign_in import sign_in

bp = Blueprint("console", __name__, url_prefix="/console")

ANNOUNCEMENT_MAX = 2000  # as PUT /api/announcement
# How soon a console page that could not be shown tries again by itself (seconds).
RETRY_UNREACHABLE_SECONDS = 3  # as the live parts poll while the line's data is down
RETRY_FAILED_SECONDS = 30

log = logging.getLogger(__name__)


def signed_in(supervisor: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Views for signed-in advisors (`supervisor`: supervisors only, others get 403).
    The session is the account's as it is now: one made under an older password or
    role was ended when it was opened (`web_sessions.stands`)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not session.get("advisor"):
                return redirect(url_for("console.sign_in_page", next=request.path))
            if supervisor and not session.get("supervisor"):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorate


@bp.errorhandler(CSRFError)
def csrf_refused(exc: CSRFError) -> tuple[str, int]:
    """A form without its token (or with a stale one) is refused."""
    return render_template("console/refused.html", reason=exc.description), 400


@bp.errorhandler(403)
def forbidden(exc: Any) -> tuple[str, int]:
    """Not yours to see or change."""
    return render_template("console/refused.html", reason="Supervisors only, or not yours."), 403


def failure_page(cause: BaseException) -> Any:
    """What a console request that failed answers (the app-wide error handler calls it
    for every /console URL: Redis failing to open the session happens before the
    blueprint is known). An HTTP error as it is. Redis or the database unreachable:
    503, a page saying so that a GET retries by itself every 3 seconds, so a page
    loaded meanwhile comes back with the line; the live reads and the event stream
    get the same 503, and the page they serve keeps polling (console.js). Any other
    failure: 500, retried every 30 seconds (a bug is not over in 3)."""
    if isinstance(cause, HTTPException):
        return cause
    unreachable = isinstance(cause, (redis.RedisError, SQLAlchemyError))
    if unreachable:
        log.warning("console %s %s: %s unreachable: %s", request.method, request.path,
                    "Redis" if isinstance(cause, redis.RedisError) else "the database", cause)
    else:
        log.error("internal error on %s", request.path, exc_info=cause)
    retry = RETRY_UNREACHABLE_SECONDS if unreachable else RETRY_FAILED_SECONDS
    page = render_template("console/unavailable.html", unreachable=unreachable,
                           retry=retry if request.method in ("GET", "HEAD") else None)
    return page, 503 if unreachable else 500, {"Retry-After": str(retry),
                                               "Cache-Control": "no-store"}


@bp.get("/")
def home() -> Response:
    """Supervisors land on the wallboard, advisors on their page."""
    if not session.get("advisor"):
        return redirect(url_for("console.sign_in_page"))
    return redirect(url_for("console.wallboard_page" if session.get("supervisor")
                            else "console.advisor_page"))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in_page() -> Response | str | tuple[str, int]:
    """The sign-in form; five failures lock the id for 15 minutes."""
    if request.method == "GET":
        return render_template("console/sign_in.html", error=None)
    try:
        outcome = sign_in(desk().r, desk().session_factory, request.form.get("advisor", ""),
                          request.form.get("password", ""))
    except PasswordChecksBusy:  # nothing checked, the attempt not counted
        return render_template("console/sign_in.html",
                               error="Many sign-ins at once: try again in a moment."), 503
    if outcome.account is None:
        error = ("Too many failed sign-ins: try again in 15 minutes."
                 if outcome.outcome == "locked" else "Wrong advisor id or password.")
        return render_template("console/sign_in.html", error=error), 401
    session.renew()  # type: ignore[attr-defined] # a new id at sign-in (no fixation)
    session.update(advisor=outcome.account.advisor_id, name=outcome.account.name,
                   supervisor=outcome.account.supervisor, version=outcome.version)
    return home()


@bp.post("/sign-out")
def sign_out() -> Response:
    """End the sign-in (its session is deleted from Redis)."""
    session.renew()  # type: ignore[attr-defined]
    return redirect(url_for("console.sign_in_page"))


@bp.get("/advisor")
@signed_in()
def advisor_page() -> str:
    """The advisor's own page."""
    return render_template("console/advisor.html", board=_own_board())


@bp.get("/advisor/live")
@signed_in()
def advisor_live() -> str:
    """The changing part of the advisor's page."""
    return render_template("console/_advisor_live.html", board=_own_board())


def _own_board() -> dict[str, Any]:
    """The signed-in advisor's board."""
    return advisor_board(desk(), session["advisor"], now())


@bp.post("/advisors/<advisor_id>/presence")
@signed_in()
def set_presence(advisor_id: str) -> Response:
    """The presence switch: available or away, for one's own presence only."""
    if advisor_id != session["advisor"]:
        abort(403)
    status = request.form.get("status")
    if status not in ("available", "busy"):
        abort(400)
    d = desk()
    directory.advisor_facts(d.r, d.session_factory, advisor_id, now())
    if status == "available":
        availability.free_advisor(d, advisor_id, now_ms(), explicit=True)
    else:
        presence.make_unavailable(d.r, advisor_id, "busy", now_ms=now_ms())
    return redirect(url_for("console.advisor_page"))


# What the advisor reads when a colleague could not be added or removed.
COLLEAGUE_REFUSALS = {
    "invalid-number": "That is not a valid phone number.",
    "outside-us-canada": "Only a US or Canada number can be added.",
    "premium-rate": "Premium-rate numbers cannot be dialed.",
    "line-number": "That is the support line's own number (or the contact's).",
    "advisor-number": "That is an advisor's phone: advisors are reached through the queue.",
    "not-on-a-call": "You are not talking on a call.",
    "callback": "A colleague cannot be added to a callback yet.",
    "colleague-on-call": "A colleague is already on the call: remove them first.",
    "no-colleague": "There is no colleague on the call.",
    "call-over": "The call is over.",
    "twilio-unavailable": "The phone service did not answer; try again.",
}


@bp.post("/advisors/<advisor_id>/colleague")
@signed_in()
def add_colleague(advisor_id: str) -> Response | tuple[str, int]:
    """Bring a colleague into one's own call (`phone`, US or Canada)."""
    if advisor_id != session["advisor"]:
        abort(403)
    outcome = conference.add_colleague(desk(), advisor_id, request.form.get("phone", "")[:40],
                                       base_url(), now_ms())
    if isinstance(outcome, conference.Refused):
        return _refused_colleague(outcome)
    return redirect(url_for("console.advisor_page"))


@bp.post("/advisors/<advisor_id>/colleague/remove")
@signed_in()
def remove_colleague(advisor_id: str) -> Response | tuple[str, int]:
    """Hang up the colleague on one's own call."""
    if advisor_id != session["advisor"]:
        abort(403)
    outcome = conference.remove_colleague(desk(), advisor_id, now_ms())
    if isinstance(outcome, conference.Refused):
        return _refused_colleague(outcome)
    return redirect(url_for("console.advisor_page"))


def _refused_colleague(refused: conference.Refused) -> tuple[str, int]:
    """The advisor's page again, saying why (400 for the number, else 409)."""
    return render_template("console/advisor.html", board=_own_board(),
                           notice=COLLEAGUE_REFUSALS[refused.reason]), (
        400 if refused.bad_request else 409)


@bp.get("/wallboard")
@signed_in(supervisor=True)
def wallboard_page() -> str:
    """The supervisors' wallboard."""
    return render_template("console/wallboard.html",
                           board=wallboard(desk(), now(), maintenance_windows()))


@bp.get("/wallboard/live")
@signed_in(supervisor=True)
def wallboard_live() -> str:
    """The changing part of the wallboard."""
    return render_template("console/_wallboard_live.html", board=wallboard(desk(), now()))


@bp.post("/maintenance")
@signed_in(supervisor=True)
def post_maintenance() -> Response | tuple[str, int]:
    """Post one more maintenance window from the wallboard (validated as the API does)."""
    try:
        item = maintenance.window_from_form(
            request.form.get("date", "")[:20], request.form.get("start", "00:00")[:8],
            request.form.get("end", "06:00")[:8], request.form.get("outage") == "1",
            request.form.get("note", ""))
        maintenance.post_window(desk(), item, initial_maintenance_windows(), now(),
                                actor=f"console:{session['advisor']}")
    except maintenance.WindowsRefused as error:
        return render_template("console/wallboard.html",
                               board=wallboard(desk(), now(), maintenance_windows()),
                               problems=error.problems), 422
    return redirect(url_for("console.wallboard_page"))


@bp.post("/maintenance/withdraw")
@signed_in(supervisor=True)
def withdraw_maintenance() -> Response:
    """Withdraw one posted maintenance window (by its start)."""
    maintenance.withdraw_window(desk(), request.form.get("start", "")[:40],
                                initial_maintenance_windows(), now(),
                                actor=f"console:{session['advisor']}")
    return redirect(url_for("console.wallboard_page"))


@bp.post("/announcement")
@signed_in(supervisor=True)
def edit_announcement() -> Response:
    """The known-incident announcement, set or cleared from the wallboard."""
    text = request.form.get("text", "")
    if len(text) > ANNOUNCEMENT_MAX:
        abort(400)
    set_announcement(desk().r, text, request.form.get("active") == "1")
    return redirect(url_for("console.wallboard_page"))
