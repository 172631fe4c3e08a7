"""Twilio's webhooks: thin views that parse the form, ask `routing`, and
answer TwiML built in `ivr.twiml`.

Every request is signature-checked first (403, no side effect), and any
failure inside a call becomes TwiML that still reaches a human.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, request
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import HTTPException

from config import hours
from ivr import twiml
from ivr.context import desk, now_ms, prompts
from ivr.security import twilio_signature_ok
from routing import menu, router
from routing.call_session import get_session, update_session
from routing.queue import waiting_position
from workers.queues import enqueue_call_log

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix="/voice")

PRODUCT_TEAMS = {
    "1": "food-service", "2": "fees", "3": "fram", "4": "online-payments",
    "5": "finance", "6": "school-store", "7": "activity-registration",
}


def xml(response: VoiceResponse, status: int = 200) -> Response:
    """A TwiML HTTP response."""
    return Response(str(response), status=status, mimetype="text/xml")


def form(name: str, limit: int = 64) -> str:
    """A posted field as a bounded string ('' when missing)."""
    return (request.form.get(name) or "")[:limit]


def base_url() -> str:
    """Where Twilio reaches this service (for absolute URLs given to the REST API)."""
    return desk().settings.public_base_url or request.url_root.rstrip("/")


@bp.before_request
def check_signature() -> Response | None:
    """Refuse (403, nothing changed) any request Twilio did not sign."""
    if twilio_signature_ok(request, desk().settings):
        return None
    log.warning("refused unsigned or badly signed %s %s", request.method, request.path)
    return xml(twiml.empty(), 403)


@bp.post("/incoming")
def incoming() -> Response:
    """A new call: identify the caller, greet them, ask the main menu."""
    sid = form("CallSid")
    if not sid:
        return xml(twiml.goodbye(prompts(), prompts().text("routing.goodbye")))
    session = menu.identify_caller(desk(), sid, form("From"), form("To"), base_url(), now_ms())
    p = prompts()
    name = session.get("contact_name")
    greeting = p.text("greeting.known", name=name) if name else p.text("greeting.unknown")
    return xml(twiml.main_menu(p, [greeting], attempt=1))


@bp.post("/menu")
def main_menu() -> Response:
    """The caller's main-menu key: 1 case, 2 new case, 6 add-ons, 8 outage."""
    sid, key, p = form("CallSid"), form("Digits")[:1], prompts()
    attempt = _attempt()
    if key == "*":
        return xml(twiml.main_menu(p, [], attempt=attempt))
    if key not in ("1", "2", "6", "8"):
        if attempt >= menu.MAX_TRIES:
            return xml(twiml.goodbye(p, p.text("menu.goodbye")))
        before = [p.text("menu.invalid")] if key else []
        return xml(twiml.main_menu(p, before, attempt=attempt + 1))
    menu.record_step(desk(), sid, key)
    if key == "1":
        return xml(twiml.ask(p, [p.text("case.ask")], twiml.url("/voice/case"), timeout=10))
    if key == "6":
        return xml(_product_menu(attempt=1))
    if key == "8":
        menu.send_to_team(desk(), sid, "hosting", priority="critical", outage="1")
    else:
        menu.send_to_team(desk(), sid, "general", new_case="1")
    return _route(sid)


def _attempt() -> int:
    """Which try of the current question this is (from the action URL)."""
    try:
        return max(1, min(int(request.args.get("attempt", "1")), 10))
    except ValueError:
        return 1


def _product_menu(attempt: int, before: list[str] | None = None) -> VoiceResponse:
    """The add-on products sub-menu."""
    p = prompts()
    return twiml.ask(
        p, [*(before or []), p.text("menu.addons")], twiml.url("/voice/product", attempt=attempt),
        num_digits=1, finish_on_key="",
    )


@bp.post("/product")
def product() -> Response:
    """The add-on product key: route to that product's team."""
    sid, key, p, attempt = form("CallSid"), form("Digits")[:1], prompts(), _attempt()
    team = PRODUCT_TEAMS.get(key)
    if team is None:
        if key == "*":
            return xml(_product_menu(attempt))
        if attempt >= menu.MAX_TRIES:
            return xml(twiml.goodbye(p, p.text("menu.goodbye")))
        return xml(_product_menu(attempt + 1, [p.text("menu.invalid")] if key else []))
    menu.record_step(desk(), sid, key)
    menu.send_to_team(desk(), sid, team, product=team, new_case="1")
    return _route(sid)


@bp.post("/case")
def case() -> Response:
    """The case number: its owner, else a teammate, else the queue."""
    sid, p = form("CallSid"), prompts()
    lookup = menu.choose_case(desk(), sid, form("Digits"))
    if lookup.found:
        return _route(sid, [p.text("case.closed")] if lookup.closed else [])
    if lookup.tries >= menu.MAX_TRIES:
        # Three misses: a person will still help, rather than hanging up.
        menu.send_to_team(desk(), sid, "general")
        return _route(sid, [p.text("case.not_found"), p.text("case.to_general")])
    before = [p.text("case.not_found"), p.text("case.ask")]
    return xml(twiml.ask(p, before, twiml.url("/voice/case"), timeout=10))


def _route(sid: str, before: list[str] | None = None) -> Response:
    """Ring the next advisor for the caller, or queue them."""
    decision = router.route_caller(desk(), sid, now_ms())
    return xml(twiml.route(prompts(), decision, sid, before or []))


@bp.post("/dial-result")
def dial_result() -> Response:
    """The ring of an advisor ended: done if answered, else the next advisor."""
    sid, advisor_id = form("CallSid"), request.args.get("advisor", "")[:64]
    try:
        talk = int(form("DialCallDuration") or 0)
    except ValueError:
        talk = 0
    decision = router.after_dial(desk(), sid, advisor_id, form("DialCallStatus"), talk, now_ms())
    return xml(twiml.route(prompts(), decision, sid, []))


@bp.post("/whisper")
def whisper() -> Response:
    """What the advisor hears before the caller is bridged."""
    call_sid, advisor_id = request.args.get("call", "")[:64], request.args.get("advisor", "")[:64]
    p = prompts()
    session = get_session(desk().r, call_sid)
    if not session or session.get("ringing") != advisor_id:
        return xml(twiml.goodbye(p, p.text("whisper.gone")))
    if session.get("whisper") != "accepted":
        update_session(desk().r, call_sid, whisper="played")
    return xml(twiml.whisper(p, _whisper_text(session), call_sid, advisor_id))


def _whisper_text(session: dict[str, str]) -> str:
    """Case number (as digits), district, caller and priority for the advisor."""
    p = prompts()
    values = {
        "case": " ".join(session.get("case", "")),
        "district": session.get("district_name") or "Unknown district",
        "caller": session.get("contact_name") or "not verified",
        "priority": session.get("priority") or "medium",
        "menu": _menu_words(session),
    }
    return p.text("whisper.intro" if session.get("case") else "whisper.no_case", **values)


def _menu_words(session: dict[str, str]) -> str:
    """A few words for what the caller chose, when there is no case number."""
    if session.get("outage"):
        return "outage report"
    if session.get("product"):
        return f"{session['product'].replace('-', ' ')} question"
    return "new case"


@bp.post("/whisper/accept")
def whisper_accept() -> Response:
    """The advisor pressed a key: bridge them, if the caller is still there."""
    call_sid, advisor_id = request.args.get("call", "")[:64], request.args.get("advisor", "")[:64]
    if router.accept_call(desk(), call_sid, advisor_id, now_ms()):
        return xml(twiml.bridge())
    return xml(twiml.goodbye(prompts(), prompts().text("whisper.gone")))


@bp.post("/wait")
def wait() -> Response:
    """One cycle of what a waiting caller hears: position, estimate, music."""
    sid, p = form("CallSid"), prompts()
    position, estimate = waiting_position(desk(), sid)
    texts = []
    if position:
        texts.append(p.text("routing.queued", position=position))
        if estimate is not None:
            texts.append(_estimate_words(estimate))
    return xml(twiml.wait_music(p, texts, offer_callback=False))


def _estimate_words(seconds: float) -> str:
    """An estimated wait, as a caller would like to hear it."""
    p = prompts()
    minutes = round(seconds / 60)
    if minutes < 1:
        return p.text("routing.estimate_short")
    return p.text("routing.estimate", minutes="1 minute" if minutes == 1 else f"{minutes} minutes")


@bp.post("/queue-result")
def queue_result() -> Response:
    """The caller left the queue: route again if they were asked to leave."""
    sid = form("CallSid")
    if form("QueueResult") == "leave":
        return _route(sid)
    return xml(twiml.empty())


@bp.post("/connect")
def connect() -> Response:
    """A waiting caller redirected by the REST API: dial the advisor claimed for them."""
    sid = form("CallSid")
    decision = router.connect_claimed(desk(), sid, now_ms())
    return xml(twiml.route(prompts(), decision, sid, [prompts().text("routing.connecting")]))


@bp.post("/status")
def status() -> Response:
    """The call is over: free what it held and queue its call log (once)."""
    sid = form("CallSid")
    if sid:
        try:
            duration = int(form("CallDuration") or 0)
        except ValueError:
            duration = 0
        if router.end_call(desk(), sid, form("CallStatus") or "completed", duration, now_ms()):
            enqueue_call_log(desk().r, sid)
    return xml(twiml.empty())


def register_error_pages(app: Flask) -> None:
    """Any failure under /voice answers TwiML that still reaches a human."""

    @app.errorhandler(Exception)
    def voice_failure(exc: Exception) -> Response | HTTPException | tuple[str, int]:
        if not request.path.startswith("/voice"):
            if isinstance(exc, HTTPException):
                return exc
            log.exception("internal error on %s", request.path)
            return {"error": "internal error"}, 500  # type: ignore[return-value]
        if isinstance(exc, HTTPException) and exc.code and exc.code < 500:
            if request.path == "/voice/status":
                return xml(twiml.empty(), 200)
            log.warning("voice request %s answered %s", request.path, exc.code)
        else:
            log.exception("voice webhook %s failed; caller sent to fallback", request.path)
        if request.path == "/voice/status":
            return xml(twiml.empty(), 200)
        settings = desk().settings
        return xml(twiml.fallback(prompts(), settings.fallback_number, hours.hours_sentence()))
