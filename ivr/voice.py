"""Twilio's webhooks: thin views that parse the form, ask `routing`, and
answer TwiML built in `ivr.twiml`.

Every request is signature-checked first (403, no side effect), and any
failure inside a call becomes TwiML that still reaches a human.
"""

from __future__ import annotations

import logging
import re

import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import HTTPException

from config import hours
from ivr import gate, twiml
from ivr.context import desk, now, now_ms, prompts
from jobs.queues import enqueue_call_log, enqueue_recording
from routing import auth, menu, replies, router
from routing.announcement import active_announcement
from routing.call_session import get_session, update_session

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix="/voice")

# How many times a callback rings a contact who does not answer.
CALLBACK_ATTEMPTS = 3

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
    """Refuse, with no side effect, what our Twilio account did not send (see `ivr.gate`):
    oversized or non-form bodies, another AccountSid, a bad signature, an unknown call."""
    return gate.admit(request, desk().settings)


# Twilio's CallSids are 34 letters and digits. Anything else (missing, odd
# characters, oversized) names no call, and must never become a Redis key, a
# presence script's key or an RQ job id.
_CALL_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@bp.before_request
def require_a_call() -> Response | None:
    """A webhook that names no call (CallSid, or the `call` of our own URLs) changes nothing."""
    call = request.args.get("call")
    if _CALL_SID.fullmatch(request.form.get("CallSid", "")) and (
            call is None or _CALL_SID.fullmatch(call)):
        return None
    log.warning("%s names no call; answered without acting", request.path)
    if request.path == "/voice/status":
        return xml(twiml.empty())
    return xml(twiml.goodbye(prompts(), prompts().text("routing.goodbye")))


@bp.before_request
def answer_repeats() -> Response | None:
    """A webhook Twilio repeats (same idempotency token) hears the first reply and
    changes nothing; the first request with a token claims it."""
    token = request.headers.get("I-Twilio-Idempotency-Token", "")[:128]
    if not token:
        return None
    r = desk().r
    if replies.claim_token(r, token):
        g.reply_token = token
        return None
    earlier = replies.earlier_reply(r, token)
    if earlier is None:
        log.warning("repeat of %s (token %s) with no reply kept; handled anew",
                    request.path, token)
        return None
    status, body = earlier
    return Response(body, status=status, mimetype="text/xml")


@bp.after_request
def keep_reply(response: Response) -> Response:
    """Remember the reply for a token this request claimed."""
    token = g.pop("reply_token", None)
    if token:
        try:
            replies.keep_reply(desk().r, token, response.status_code,
                               response.get_data(as_text=True))
        except redis.RedisError:
            log.exception("could not keep the reply of %s", request.path)
    return response


@bp.post("/incoming")
def incoming() -> Response:
    """A new call: identify the caller, greet them, play any announcement, ask the menu."""
    sid = form("CallSid")
    p = prompts()
    session = menu.identify_caller(desk(), sid, form("From"), form("To"), base_url(), now(),
                                   stir_verstat=form("StirVerstat"))
    name = session.get("contact_name") if auth.is_authorized(session) else None
    greeting = p.text("greeting.known", name=name) if name else p.text("greeting.unknown")
    return xml(twiml.main_menu(p, [greeting, *_announcement()], attempt=1))


def _announcement() -> list[str]:
    """The known-incident announcement, with the policy's advice, while it is active."""
    text = active_announcement(desk().r)
    if not text:
        return []
    p = prompts()
    return [p.text("outage.announcement_intro"), text, p.text("outage.announcement_advice")]


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
    session = menu.record_step(desk(), sid, key)
    if key == "8":
        return _outage(sid, session)
    if not auth.is_authorized(session):
        return _verify_or_refuse(sid, session, key)
    return _option(sid, key)


def _option(sid: str, key: str) -> Response:
    """An authorized caller's option 1, 2 or 6 (after hours: hours and voicemail)."""
    p = prompts()
    if not hours.is_open(now()):
        return _after_hours(sid, key)
    if key == "1":
        return xml(twiml.ask(p, [p.text("case.ask")], twiml.url("/voice/case"), timeout=10))
    if key == "6":
        return xml(_product_menu(attempt=1))
    menu.send_to_team(desk(), sid, "general", new_case="1")
    return _route(sid)


def _attempt() -> int:
    """Which try of the current question this is (from the action URL)."""
    try:
        return max(1, min(int(request.args.get("attempt", "1")), 10))
    except ValueError:
        return 1


def _option_arg() -> str:
    """The menu option a verification step is for (from the action URL)."""
    option = request.args.get("option", "1")[:1]
    return option if option in ("1", "2", "6", "8") else "1"


# --- authorization --------------------------------------------------------


def _verify_or_refuse(sid: str, session: dict[str, str], option: str) -> Response:
    """Ask an unrecognised caller for contact ID then PIN (unless their number is locked)."""
    if auth.is_locked(desk(), session.get("caller", ""), now()):
        return _unverified(sid, session, option, [prompts().text("auth.locked")])
    return xml(_ask_contact_id(option, []))


def _ask_contact_id(option: str, before: list[str], attempt: int = 1) -> VoiceResponse:
    """The contact-ID question."""
    p = prompts()
    return twiml.ask(p, [*before, p.text("auth.ask_contact")],
                     twiml.url("/voice/verify/contact", option=option, attempt=attempt),
                     timeout=10)


@bp.post("/verify/contact")
def verify_contact() -> Response:
    """The contact ID: remember it, ask the PIN."""
    sid, digits, option, p = form("CallSid"), form("Digits", 32), _option_arg(), prompts()
    if not digits:
        if _attempt() >= menu.MAX_TRIES:
            return _unverified(sid, get_session(desk().r, sid), option, [])
        return xml(_ask_contact_id(option, [], _attempt() + 1))
    update_session(desk().r, sid, pending_contact=digits[:20])
    return xml(twiml.ask(p, [p.text("auth.ask_pin")],
                         twiml.url("/voice/verify/pin", option=option), timeout=10))


@bp.post("/verify/pin")
def verify_pin() -> Response:
    """The PIN: verified callers go on with their option; three failures lock the number."""
    sid, option, p = form("CallSid"), _option_arg(), prompts()
    session = get_session(desk().r, sid)
    result = auth.verify(desk(), sid, session.get("pending_contact", ""), form("Digits", 32),
                         now())
    if result.verified:
        if option == "8":
            return _outage(sid, get_session(desk().r, sid), verified_now=True)
        return _option(sid, option)
    session = get_session(desk().r, sid)
    if result.inactive:
        return _unverified(sid, session, option, [p.text("auth.inactive_pin")])
    if result.locked:
        return _unverified(sid, session, option, [p.text("auth.failed"), p.text("auth.locked")])
    return xml(_ask_contact_id(option, [p.text("auth.failed")]))


def _unverified(sid: str, session: dict[str, str], option: str, before: list[str]) -> Response:
    """Not verified: outage callers may still leave a message; others hear whom to ask."""
    p = prompts()
    if option == "8":
        return _outage_voicemail(sid, before)
    update_session(desk().r, sid, refused="1")
    # Never whom: naming a district's contacts would tell any caller who to impersonate.
    return xml(twiml.goodbye_all(p, [*before, p.text("auth.refused_generic")]))


# --- after hours ----------------------------------------------------------


def _after_hours(sid: str, key: str) -> Response:
    """Outside business hours: the hours, then a voicemail (after the case number for 1)."""
    p = prompts()
    closed = p.text("hours.closed", hours=_hours_words())
    if key == "1":
        return xml(twiml.ask(p, [closed, p.text("case.ask")],
                             twiml.url("/voice/after-hours/case"), timeout=10))
    # Options 2 and 6: the message opens a new case for the caller's district.
    menu.send_to_team(desk(), sid, "general", new_case="1", after_hours="1")
    return xml(twiml.voicemail(p, [closed, p.text("hours.voicemail")]))


@bp.post("/after-hours/case")
def after_hours_case() -> Response:
    """After hours, option 1: the case number, then the voicemail for that case."""
    sid, p = form("CallSid"), prompts()
    lookup = menu.choose_case(desk(), sid, form("Digits"))
    if lookup.found:
        update_session(desk().r, sid, after_hours="1")
        return xml(twiml.voicemail(p, [p.text("hours.voicemail")]))
    if lookup.tries >= menu.MAX_TRIES:
        menu.send_to_team(desk(), sid, "general", new_case="1", after_hours="1")
        return xml(twiml.voicemail(p, [p.text("case.not_found"), p.text("hours.voicemail")]))
    return xml(twiml.ask(p, [p.text("case.not_found"), p.text("case.ask")],
                         twiml.url("/voice/after-hours/case"), timeout=10))


@bp.post("/recorded")
def recorded() -> Response:
    """The voicemail is recorded: the worker attaches it to the case."""
    sid, p = form("CallSid"), prompts()
    recording = form("RecordingUrl", 512)
    if recording and router.note_recording(desk(), sid, recording,
                                           form("RecordingDuration", 8) or "0"):
        # Posted after the call's end (Twilio's order): the log may already exist.
        enqueue_recording(desk().job_redis, sid)
    return xml(twiml.goodbye(p, p.text("hours.voicemail_thanks")))


# --- outages --------------------------------------------------------------


def _outage(sid: str, session: dict[str, str], *, verified_now: bool = False) -> Response:
    """Option 8: notices, then hosting at Critical priority (24/7 for hosted districts)."""
    p = prompts()
    open_now = hours.is_open(now())
    authorized = verified_now or auth.is_authorized(session)
    if not open_now:
        if not authorized:
            # After hours an unrecognised (or untrusted) number must prove it is a
            # hosted district's contact: contact ID and PIN.
            return _verify_or_refuse(sid, session, "8")
        if session.get("hosted") != "1":
            return _outage_voicemail(sid, [])
    handover = "" if authorized else "1"
    # Exception basis: an unverified report waits behind verified ones (High).
    menu.send_to_team(desk(), sid, "hosting", priority="critical" if authorized else "high",
                      outage="1", handover=handover, after_hours="" if open_now else "1")
    notices = _announcement()
    notice = hours.maintenance_notice(now(), current_app.extensions["caseline.maintenance"])
    if notice:
        notices.append(notice)
    if handover:
        notices.append(p.text("outage.handover"))
    if _announcement():
        return xml(twiml.ask(p, notices, twiml.url("/voice/outage/route"), num_digits=1,
                             finish_on_key="", timeout=3))
    return _route_outage(sid, notices)


@bp.post("/outage/route")
def outage_route() -> Response:
    """After the announcement: the caller stayed (or pressed a key) to reach someone."""
    return _route_outage(form("CallSid"), [])


def _route_outage(sid: str, before: list[str]) -> Response:
    """Hosting now; at night a free hosting advisor, else the on-call engineer, else queue."""
    if hours.is_open(now()):
        return _route(sid, before)
    decision = router.route_outage_after_hours(desk(), sid, now_ms())
    return xml(twiml.route(prompts(), decision, sid, before))


def _outage_voicemail(sid: str, before: list[str]) -> Response:
    """After hours, not a hosted district: how outage support works, and a voicemail."""
    p = prompts()
    menu.send_to_team(desk(), sid, "hosting", priority="critical", outage="1",
                      handover="" if auth.is_authorized(get_session(desk().r, sid)) else "1",
                      after_hours="1")
    return xml(twiml.voicemail(p, [*before, p.text("outage.after_hours_not_hosted")]))


@bp.post("/oncall-result")
def oncall_result() -> Response:
    """The on-call engineer's ring ended: done if answered, else wait for hosting."""
    sid = form("CallSid")
    decision = router.after_oncall(desk(), sid, form("DialCallStatus"),
                                   _int(form("DialCallDuration")), now_ms(),
                                   call_status=form("CallStatus") or "in-progress")
    return xml(twiml.route(prompts(), decision, sid, []))


def _int(value: str) -> int:
    """A posted whole number, 0 when missing or malformed."""
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


# --- option 1 and 6 -------------------------------------------------------


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
    decision = router.after_dial(desk(), sid, advisor_id, form("DialCallStatus"),
                                 _int(form("DialCallDuration")), now_ms(),
                                 call_status=form("CallStatus") or "in-progress")
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


def _whisper_values(session: dict[str, str]) -> dict[str, str]:
    """What the advisor is told about a call: case digits, district, caller, priority."""
    return {
        "case": " ".join(session.get("case", "")) or _menu_words(session),
        "district": session.get("district_name") or "Unknown district",
        "caller": _caller_words(session),
        "priority": session.get("priority") or "medium",
        "menu": _menu_words(session),
    }


def _caller_words(session: dict[str, str]) -> str:
    """Who the caller is and how they were verified, for the advisor."""
    p, how = prompts(), auth.how_verified(session)
    if not how:
        return p.text("whisper.not_verified")
    key = {"pin": "whisper.verified_pin",
           "caller-id-attested": "whisper.verified_caller_id_attested",
           "caller-id": "whisper.verified_caller_id"}[how]
    return p.text(key, name=session.get("contact_name") or "a contact")


def _whisper_text(session: dict[str, str]) -> str:
    """Case number (as digits), district, caller and priority for the advisor."""
    values = _whisper_values(session)
    return prompts().text("whisper.intro" if session.get("case") else "whisper.no_case",
                          **values)


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
    """One hold cycle: leave for a free advisor, else position, estimate, music."""
    sid, p = form("CallSid"), prompts()
    cycle = router.hold_cycle(desk(), sid, now_ms())
    if cycle.leave:
        return xml(twiml.leave())
    texts = []
    if cycle.position:
        texts.append(p.text("routing.queued", position=cycle.position))
        if cycle.estimate_seconds is not None:
            texts.append(_estimate_words(cycle.estimate_seconds))
    return xml(twiml.wait_music(p, texts, offer_callback=cycle.offer_callback,
                                offer_voicemail=cycle.offer_voicemail))


@bp.post("/callback")
def callback() -> Response:
    """A waiting caller pressed a key: 1 keeps their place for a callback (when the
    policy allows it), 2 leaves the queue for a voicemail on their case."""
    sid, p, key = form("CallSid"), prompts(), form("Digits")[:1]
    if key == "2" and router.leave_for_voicemail(desk(), sid):
        return xml(twiml.leave())  # the Enqueue action records the message
    if key == "1":
        if router.request_callback(desk(), sid, now()):
            return xml(twiml.goodbye(p, p.text("routing.callback_confirmed")))
        return xml(twiml.say_only(p, [p.text("routing.callback_unavailable")]))
    return xml(twiml.empty())  # back to the hold music


@bp.post("/callback/advisor")
def callback_advisor() -> Response:
    """The advisor picked up a callback: who it is for; any key dials the contact."""
    call_sid, advisor_id = request.args.get("call", "")[:64], request.args.get("advisor", "")[:64]
    p = prompts()
    session = get_session(desk().r, call_sid)
    if session.get("callback_state") != "ringing-advisor" or session.get("ringing") != advisor_id:
        return xml(twiml.goodbye(p, p.text("whisper.gone")))
    text = p.text("whisper.callback", **_whisper_values(session))
    return xml(twiml.whisper(p, text, call_sid, advisor_id,
                             action="/voice/callback/accept"))


@bp.post("/callback/accept")
def callback_accept() -> Response:
    """The advisor accepted the callback: dial the contact."""
    call_sid, advisor_id = request.args.get("call", "")[:64], request.args.get("advisor", "")[:64]
    number = router.accept_callback(desk(), call_sid, advisor_id, now_ms())
    if number is None:
        return xml(twiml.goodbye(prompts(), prompts().text("whisper.gone")))
    return xml(twiml.callback_dial(prompts(), number, call_sid, advisor_id, attempt=1))


@bp.post("/callback/dial-result")
def callback_dial_result() -> Response:
    """The contact's phone: answered, or ring again a bounded number of times."""
    call_sid, advisor_id = request.args.get("call", "")[:64], request.args.get("advisor", "")[:64]
    p, attempt = prompts(), _attempt()
    if form("DialCallStatus") in router.ANSWERED_DIAL_STATUSES:
        router.callback_answered(desk(), call_sid, advisor_id, _int(form("DialCallDuration")))
        return xml(twiml.empty())
    number = get_session(desk().r, call_sid).get("callback_number", "")
    if attempt >= CALLBACK_ATTEMPTS or not number:
        return xml(twiml.goodbye(p, p.text("routing.callback_unreached")))
    return xml(twiml.callback_dial(p, number, call_sid, advisor_id, attempt=attempt + 1,
                                   before=[p.text("routing.callback_retry")]))


@bp.post("/callback/status")
def callback_status() -> Response:
    """The advisor's callback leg ended: release them; log the call once it is all over."""
    call_sid, advisor_id = request.args.get("call", "")[:64], request.args.get("advisor", "")[:64]
    if router.end_callback(desk(), call_sid, advisor_id, form("CallStatus"), now_ms()):
        enqueue_call_log(desk().job_redis, call_sid)
    return xml(twiml.empty())


def _estimate_words(seconds: float) -> str:
    """An estimated wait, as a caller would like to hear it."""
    p = prompts()
    minutes = round(seconds / 60)
    if minutes < 1:
        return p.text("routing.estimate_short")
    return p.text("routing.estimate", minutes="1 minute" if minutes == 1 else f"{minutes} minutes")


@bp.post("/queue-result")
def queue_result() -> Response:
    """The caller left the queue: route again if they were asked to leave.

    When Twilio could not queue them at all (`queue-full`, `error`,
    `system-error`), they still reach someone: another try, then the fallback
    number, else a voicemail on their case. Never a silent hang-up.
    """
    sid, result = form("CallSid"), form("QueueResult")
    caller_gone = router.is_final(form("CallStatus"))
    if result == "leave" and not caller_gone:
        if router.wants_voicemail(get_session(desk().r, sid)):
            p = prompts()
            return xml(twiml.voicemail(p, [p.text("hours.voicemail")]))
        return _route(sid)
    if result not in router.QUEUE_FAILURES or caller_gone:
        return xml(twiml.empty())
    attempt = _attempt()
    log.error("Twilio could not queue call %s (QueueResult=%s, try %d)", sid, result, attempt)
    if attempt < router.QUEUE_ATTEMPTS:
        decision = router.route_caller(desk(), sid, now_ms())
        return xml(twiml.route(prompts(), decision, sid, [], queue_attempt=attempt + 1))
    router.leave_queue(desk(), sid)
    p, fallback_number = prompts(), desk().settings.fallback_number
    if fallback_number:
        return xml(twiml.fallback(p, fallback_number, _hours_words()))
    return xml(twiml.voicemail(p, [p.text("errors.queue_failed_voicemail")]))


@bp.post("/connect")
def connect() -> Response:
    """A waiting caller redirected by the REST API: dial the advisor claimed for them."""
    sid = form("CallSid")
    decision = router.connect_claimed(desk(), sid, now_ms(),
                                      call_status=form("CallStatus") or "in-progress")
    return xml(twiml.route(prompts(), decision, sid, [prompts().text("routing.connecting")]))


@bp.post("/status")
def status() -> Response:
    """The call is over: free what it held and queue its call log (once)."""
    sid = form("CallSid")
    if sid:
        duration = _int(form("CallDuration"))
        if router.end_call(desk(), sid, form("CallStatus"), duration, now_ms(),
                           caller=form("From")):
            enqueue_call_log(desk().job_redis, sid)
    return xml(twiml.empty())


def register_error_pages(app: Flask) -> None:
    """Any failure under /voice answers TwiML that still reaches a human."""

    @app.errorhandler(Exception)
    def voice_failure(exc: Exception) -> Response | HTTPException | tuple[str, int]:
        """TwiML that reaches a human for /voice; JSON or the HTTP error elsewhere."""
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
        return xml(twiml.fallback(prompts(), settings.fallback_number, _hours_words()))


def _hours_words() -> str:
    """The desk's hours, to be spoken inside a sentence."""
    return hours.hours_sentence().rstrip(".")
