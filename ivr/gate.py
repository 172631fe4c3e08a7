"""What a request to `/voice/*` must pass before any view runs.

In this order, each step cheaper than the next and none with a side effect:

1. Twilio's signature (PRODUCT: every `/voice/*` request without a valid signature
   gets 403 and no side effect), routed or not: 403 with `<Response/>`. Checked
   cheapest first (`unsigned_because`): no `X-Twilio-Signature` at all is refused
   before the body is read; a body over 128 KiB, or a form of more than 32,768
   fields, is one Twilio never sends, so it cannot carry Twilio's signature: refused
   without being parsed or any HMAC computed; then the HMAC, over the form for a
   url-encoded form, over the URL and its `bodySHA256` for any other body (which is
   never parsed);
2. a route: a signed request to an unknown `/voice` path (or method) is 404/405 with
   an empty body (no TwiML: the fallback TwiML would tell anyone the fallback number);
3. the body's shape: a signed body that is not a form
   (`application/x-www-form-urlencoded`) is 415 with `<Response/>`;
4. our account: a signed post whose `AccountSid` is not `TWILIO_ACCOUNT_SID` is
   served (the signature, made with our auth token, is what admits it) and logged as
   a warning, once per sid, so a misconfigured deployment is seen;
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
from ivr.security import foreign_account_sid, twilio_body_signature_ok, twilio_signature_ok
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
    """For a `/voice` URL that matches no webhook: 403 with `<Response/>` when it is not
    signed as Twilio signs (PRODUCT: every `/voice/*` request without a valid
    signature), else an empty 404 (or 405 for a wrong method)."""
    if not request.path.startswith("/voice") or request.routing_exception is None:
        return None
    settings = desk().settings
    unsigned = unsigned_because(request, settings)
    if unsigned:
        log.warning("refused %s %s: no such webhook, and %s (403)", request.method,
                    request.path, unsigned)
        return twiml_response(twiml.empty(), 403)
    status = 405 if isinstance(request.routing_exception, MethodNotAllowed) else 404
    log.warning("refused %s %s: no such webhook (%d)", request.method, request.path, status)
    return Response(b"", status=status, mimetype="text/plain")


def is_form(req: Request) -> bool:
    """Whether the body is a url-encoded form, as Twilio posts its webhooks (a post
    with no type and no body at all is a form with no fields)."""
    bodyless = not (req.mimetype or req.content_length or "Transfer-Encoding" in req.headers)
    return req.mimetype == FORM_TYPE or bodyless


def _body_within_limit(req: Request) -> bytes | None:
    """The raw body (kept for the form parser), or None when it is over MAX_BODY_BYTES
    bytes: then at most one byte past the limit is read, and nothing is parsed."""
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        return None
    # A body of unknown length (chunked) is read one byte past the limit at most.
    req.max_content_length = MAX_BODY_BYTES + 1
    try:
        body = req.get_data(cache=True)
    except RequestEntityTooLarge:
        return None
    return body if len(body) <= MAX_BODY_BYTES else None


def unsigned_because(req: Request, settings: Settings) -> str:
    """Why the request is not signed as Twilio signs ("" when it is, or dev mode lets
    it through unsigned: `ivr.security`), checked cheapest first.

    Twilio's largest webhooks are a few kB, so a body over MAX_BODY_BYTES, or a form of
    more than MAX_FIELDS fields, is none it sent and cannot carry its signature: it is
    refused unparsed, before any HMAC (in dev mode too). Fields are counted on the
    raw bytes: Werkzeug's MAX_FORM_PARTS bounds multipart bodies only, never
    url-encoded ones. A body that is not a form is checked as Twilio signs one (the
    URL with the body's `bodySHA256`), never parsed.
    """
    if not settings.twilio_auth_token:
        if not settings.insecure_dev:
            return "no TWILIO_AUTH_TOKEN to check its signature with"
    elif not req.headers.get("X-Twilio-Signature"):
        return "no X-Twilio-Signature"
    body = _body_within_limit(req)
    if body is None:
        return f"a body over {MAX_BODY_BYTES} bytes ({req.content_length} declared)"
    if not is_form(req):
        signed = twilio_body_signature_ok(req, settings, body)
    elif sum(1 for part in body.split(b"&") if part) > MAX_FIELDS:
        return f"a form of more than {MAX_FIELDS} fields"
    else:
        signed = twilio_signature_ok(req, settings)
    return "" if signed else "a missing or wrong X-Twilio-Signature"


# Other accounts' sids this process has warned about (cleared when full: bounded memory;
# only holders of our auth token get this far).
_WARNED_ACCOUNTS: set[str] = set()
_WARNED_ACCOUNTS_MAX = 32


def _warn_of_another_account(req: Request, settings: Settings) -> None:
    """Log, once per sid and process, a signed webhook posting another `AccountSid`
    than TWILIO_ACCOUNT_SID: it is served (the signature decides), but the
    deployment's settings disagree with what posts to it."""
    sid = foreign_account_sid(req, settings)[:40]
    if not sid or sid in _WARNED_ACCOUNTS:
        return
    if len(_WARNED_ACCOUNTS) >= _WARNED_ACCOUNTS_MAX:
        _WARNED_ACCOUNTS.clear()
    _WARNED_ACCOUNTS.add(sid)
    log.warning("%s %s is signed with our auth token but posts AccountSid %r, not "
                "TWILIO_ACCOUNT_SID: served; check the account's settings (logged once "
                "per sid)", req.method, req.path, sid)


def admit(req: Request, settings: Settings) -> Response | None:
    """None when the webhook may run; else the refusal to answer (TwiML), nothing
    changed: 403 unsigned (`unsigned_because`), 415 for a signed body that is not a
    form, or the reply about a call with no session (`lost_call`)."""
    unsigned = unsigned_because(req, settings)
    if unsigned:
        log.warning("refused %s %s: %s (403)", req.method, req.path, unsigned)
        return twiml_response(twiml.empty(), 403)
    if not is_form(req):
        log.warning("refused %s %s: signed, but %s is no form (415)", req.method, req.path,
                    req.mimetype or "no type")
        return twiml_response(twiml.empty(), 415)
    _warn_of_another_account(req, settings)
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
    over = _dial_talked(req) or _posted_one_of(req, OVER)
    talked = conversation_just_ended(req)
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


def conversation_just_ended(req: Request) -> bool:
    """Whether this post is the caller's own call right after a conversation, the caller
    still on the line: one of the webhooks that follow a talk (`AFTER_THE_TALK`) whose
    result says they talked (`_dial_talked`, or `CONVERSATION_OVER`), or the contact's
    `<Dial><Conference>` over (`DialCallStatus=completed`, posted without
    `DialBridged`): a contact is put in a conference only by the advisor they talk to
    (`routing.conference`), so its end is a conversation's. Such a caller
    hears a bare `<Hangup/>` when the line cannot go on with them: here (no session),
    and when the webhook fails (`ivr.voice.errors`): their problem was handled, and
    the fallback number would start a second conversation about it."""
    if req.endpoint == "voice.conference_ended":
        return (req.args.get("role") == "contact"
                and req.form.get("DialCallStatus", "") == "completed")
    return req.endpoint in AFTER_THE_TALK and (
        _dial_talked(req) or _posted_one_of(req, CONVERSATION_OVER))


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
    # isdecimal, not isdigit: "²" is a digit int() refuses.
    if question and attempt.isascii() and attempt.isdecimal() and len(attempt) <= 3:
        return f"{sid}:{question}-try-{int(attempt)}"
    header = req.headers.get("I-Twilio-Idempotency-Token", "")[:128]
    return f"{sid}:{header}" if header else ""


def twiml_response(response: object, status: int = 200) -> Response:
    """A TwiML HTTP response."""
    return Response(str(response), status=status, mimetype="text/xml")
