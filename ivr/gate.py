"""What a request to `/voice/*` must pass before any view runs.

In this order, each step cheaper than the next and none with a side effect:

1. a route: an unknown `/voice` path (or method) is 403 unsigned (PRODUCT: every
   `/voice/*` request without a valid signature), else 404/405, with an empty body
   either way (no TwiML: the fallback TwiML would tell anyone the fallback number);
2. the body's shape: a form (`application/x-www-form-urlencoded`) of at most
   128 KiB and 200 fields, checked on the raw bytes before the form is
   parsed or any HMAC computed (413/415, empty body);
3. our account: the posted `AccountSid` is `TWILIO_ACCOUNT_SID` (403);
4. Twilio's signature (403);
5. a live call: a webhook about a call with no hash in Redis (other than the
   call's first webhook and its status callback) changes nothing (logged as "no
   session", the wording operators search for). A caller still finding their way
   in (`START_OVER`, `LEAVE_QUEUE`) starts again from the greeting; a caller whose
   conversation just ended hears nothing more; anyone else hears a goodbye.
"""

from __future__ import annotations

import logging
import re

from flask import Flask, Request, Response, g, request
from werkzeug.exceptions import MethodNotAllowed, RequestEntityTooLarge

from config.logs import mask_phone
from config.settings import Settings
from ivr import twiml
from ivr.context import desk, prompts, public_path
from ivr.security import account_sid_ok, twilio_signature_ok
from routing.replies import admit_call

log = logging.getLogger(__name__)

# Twilio's largest webhooks are a few kB; 64 kB fields must still get TwiML.
MAX_BODY_BYTES = 128 * 1024
# Twilio posts a few dozen parameters at most, but PRODUCT promises TwiML to any input
# up to 64 kB, repeated parameters included: a 64 KiB form holds at most 32,768
# fields ("x&" each), so no such form is refused. Beyond that (a 128 KiB body of
# empty fields), the parser's and the HMAC's work is bounded.
MAX_FIELDS = 32 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"

# The call's first webhook opens its state; the status callback ends it
# (and logs a call whose first webhook failed); the fallback number's `<Dial>` action
# records the fallback on a call whose first webhook failed: all may meet an unknown call.
OPEN_ENDPOINTS = frozenset({"voice.incoming", "voice.status", "voice.fallback_over"})
# An advisor's (or a colleague's) leg names the caller's call in `?call=`.
LEG_ENDPOINTS = frozenset({
    "voice.whisper", "voice.whisper_accept", "voice.callback_advisor",
    "voice.callback_accept", "voice.callback_dial_result", "voice.callback_status",
    "voice.conference_join", "voice.conference_ended", "voice.colleague_progress",
    "voice.oncall_whisper", "voice.oncall_accept",
})

# Twilio signs what it posts, so a signed webhook with no session is about a call
# the desk has lost track of (Redis came back empty, docs/deploy.md) or a replay,
# which TwiML cannot harm: it acts only when Twilio fetches it for a live call.
# PRODUCT: a caller still reaches a human, never a silent hang-up. So a caller in
# the menu, its questions, a try that found nobody or the queue's result starts
# over: an apology and a `<Redirect>` to the greeting, whose webhook opens the call
# again (its place in a queue is lost with the rest).
START_OVER = frozenset({
    "voice.main_menu", "voice.product", "voice.case", "voice.after_hours_case",
    "voice.outage_route", "voice.verify_contact", "voice.verify_pin", "voice.connect",
    "voice.dial_result", "voice.oncall_result", "voice.queue_result",
})
# The queue's hold document (`waitUrl`) and a key pressed in it run inside
# `<Enqueue>`, where a `<Redirect>` only fetches more hold music: `<Leave/>` moves the
# caller on to the Enqueue's action (`voice.queue_result`), which starts them over.
LEAVE_QUEUE = frozenset({"voice.wait", "voice.callback"})
# Results that say the conversation happened, or the caller is gone: a goodbye. A
# `<Dial>` action says so only with `DialBridged=true` (`_dial_talked`).
OVER = {"QueueResult": frozenset({"bridged", "bridging-in-process", "hangup", "redirected"})}
# Results that say a conversation just ended with the caller still on the line: a
# caller the line lost track of cannot be surveyed, and one not surveyed hears nothing
# more (PRODUCT.md, the survey), so a bare `<Hangup/>`. A `<Dial>` action: only with
# `DialBridged=true` (`_dial_talked`).
CONVERSATION_OVER = {"QueueResult": frozenset({"bridged"})}
# The caller's own webhooks that follow a conversation (an advisor's leg, a callback's
# included, still hears its goodbye).
AFTER_THE_TALK = frozenset({"voice.dial_result", "voice.oncall_result", "voice.queue_result",
                            "voice.conference_ended"})


def install(app: Flask) -> None:
    """Answer unknown `/voice` paths before anything else looks at them."""
    app.before_request(refuse_unrouted)


def refuse_unrouted() -> Response | None:
    """For a `/voice` URL that matches no webhook, an empty 403 when it is not signed as
    Twilio signs (PRODUCT: every `/voice/*` request without a valid signature), else
    an empty 404 (or 405 for a wrong method). A body that is not a small form is
    refused as by `admit` (413/415) before any signature is computed."""
    if not request.path.startswith("/voice") or request.routing_exception is None:
        return None
    status = refuse_body(request)
    if status is None:
        signed = twilio_signature_ok(request, desk().settings)
        status = 405 if isinstance(request.routing_exception, MethodNotAllowed) else 404
        status = status if signed else 403
    log.warning("refused %s %s: no such webhook (%d)", request.method, request.path, status)
    return Response(b"", status=status, mimetype="text/plain")


def refuse_body(req: Request) -> int | None:
    """413 or 415 for a body that is not a small form; None when it may be parsed.

    Reads at most MAX_BODY_BYTES of raw bytes (kept for the form parser) and
    counts fields on them: Werkzeug's MAX_FORM_PARTS bounds multipart bodies
    only, never url-encoded ones.
    """
    length = req.content_length
    # A post with no type and no body at all is a form with no fields.
    bodyless = not (req.mimetype or length or "Transfer-Encoding" in req.headers)
    if req.mimetype != FORM_TYPE and not bodyless:
        return 415
    if length is not None and length > MAX_BODY_BYTES:
        return 413
    # A body of unknown length (chunked) is read one byte past the limit at most.
    req.max_content_length = MAX_BODY_BYTES + 1
    try:
        body = req.get_data(cache=True)
    except RequestEntityTooLarge:
        return 413
    if len(body) > MAX_BODY_BYTES:
        return 413
    if sum(1 for part in body.split(b"&") if part) > MAX_FIELDS:
        return 413
    return None


def admit(req: Request, settings: Settings) -> Response | None:
    """None when the webhook may run; else the refusal to answer, nothing changed."""
    status = refuse_body(req)
    if status is not None:
        log.warning("refused %s %s: %d (%s, %s bytes)", req.method, req.path, status,
                    req.mimetype or "no type", req.content_length)
        return Response(b"", status=status, mimetype="text/plain")
    if not account_sid_ok(req, settings):
        log.warning("refused %s %s: AccountSid %r is not ours", req.method, req.path,
                    req.form.get("AccountSid", "")[:40])
        return twiml_response(twiml.empty(), 403)
    if not twilio_signature_ok(req, settings):
        log.warning("refused unsigned or badly signed %s %s", req.method, req.path)
        return twiml_response(twiml.empty(), 403)
    if req.endpoint in OPEN_ENDPOINTS:
        return None
    if req.endpoint in LEG_ENDPOINTS:
        call_sid = req.args.get("call", "")[:64]
    else:
        call_sid = (req.form.get("CallSid") or "")[:64]
    token = repeat_token(req)
    if call_sid:
        known, claimed = admit_call(desk().r, call_sid, token)
        if known:
            if token:
                g.token_claim = (token, claimed)  # for `answer_repeats`: no second trip
            return None
    return lost_call(req, call_sid)


def lost_call(req: Request, call_sid: str) -> Response:
    """The reply to a webhook about a call with no session: nothing changes. A caller
    still finding their way in starts over (`START_OVER`: an apology, then a
    `<Redirect>` to `/voice/incoming`; `LEAVE_QUEUE`: `<Leave/>`); a caller whose
    conversation just ended (`CONVERSATION_OVER`) hears nothing more (`<Hangup/>`); anyone
    else, or a result that says the call is over (`OVER`), hears a goodbye."""
    talked_on_dial = _dial_talked(req)
    over = talked_on_dial or _posted_one_of(req, OVER)
    talked = req.endpoint in AFTER_THE_TALK and (
        talked_on_dial or _posted_one_of(req, CONVERSATION_OVER))
    p = prompts()
    if req.endpoint in LEAVE_QUEUE:
        reply, what = twiml.leave(), "left the queue to start over"
    elif talked:
        reply, what = twiml.hang_up(), "hung up after the conversation"
    elif req.endpoint in START_OVER and call_sid and not over:
        reply, what = twiml.start_over(p, p.text("routing.start_over")), "started over"
    else:
        reply, what = twiml.goodbye(p, p.text("routing.goodbye")), "answered goodbye"
    log.warning("%s for call %r with no session (from %s): %s, nothing changed",
                req.path, call_sid, mask_phone(req.form.get("From", "")[:40]), what)
    return twiml_response(twiml.under(public_path(), reply))


def _dial_talked(req: Request) -> bool:
    """Whether a `<Dial>` action says the caller talked to whoever it rang: completed
    and bridged (Twilio's `DialBridged=true`). `DialCallStatus=completed` alone says
    only that the dialed leg ended after it picked up: the advisor's leg that the
    whisper hung up (no key, or a whisper that found no session or failed) ends
    `completed` too, with nobody talked to, and that caller must start over, not be
    hung up on (PRODUCT: the caller still reaches a human). Without `DialBridged`
    nothing says they talked, so they start over too: an apology and the greeting
    cost a caller who did talk a moment, a hang-up costs one who did not the call."""
    return (req.form.get("DialCallStatus", "") == "completed"
            and req.form.get("DialBridged", "").lower() == "true")


def _posted_one_of(req: Request, results: dict[str, frozenset[str]]) -> bool:
    """Whether the post's field of a result (`DialCallStatus`, `QueueResult`) holds one
    of the values `results` lists for it."""
    return any(req.form.get(field, "") in values for field, values in results.items())


# Twilio's CallSids are 34 letters and digits. Anything else (missing, odd
# characters, oversized) names no call, and must never become a Redis key, a
# presence script's key or an RQ job id.
CALL_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")


# Webhooks posted once per try of their question, the try named in their URL
# (`?attempt=N`): the call and the try key their repeats, the same with or without
# Twilio's idempotency token (its retry after a timeout may come without one), so the
# repeat hears the first reply. The PIN: one post per attempt of the call (its digits,
# or the silence), whose check runs once and may still be running when the repeat
# comes; answered anew, the repeat could only tell "not verified yet" (asked again, the
# caller would be routed a second time) or route again.
TRY_KEYED = {"voice.verify_pin": "pin"}


def repeat_token(req: Request) -> str:
    """The key of a webhook Twilio may repeat ("" when none): for one that names its try
    (`TRY_KEYED`), its CallSid and that try; else its CallSid and
    `I-Twilio-Idempotency-Token`. Keyed with the CallSid, one call's key never answers
    another's."""
    sid = req.form.get("CallSid", "")
    if not CALL_SID.fullmatch(sid):
        return ""
    question = TRY_KEYED.get(req.endpoint or "")
    attempt = req.args.get("attempt", "")
    if question and attempt.isdigit() and len(attempt) <= 3:
        return f"{sid}:{question}-try-{int(attempt)}"
    header = req.headers.get("I-Twilio-Idempotency-Token", "")[:128]
    return f"{sid}:{header}" if header else ""


def twiml_response(response: object, status: int = 200) -> Response:
    """A TwiML HTTP response."""
    return Response(str(response), status=status, mimetype="text/xml")
