"""The voice blueprint and what runs around every webhook: the gate (signature,
account, limits, a live call: `ivr.gate`), a webhook that names no call, and
the replies to webhooks Twilio repeats (same idempotency token: the first
reply, nothing changed)."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, g, request

from config import webhooks
from ivr import gate, twiml
from ivr.context import desk, prompts
from ivr.voice.render import xml
from routing import replies

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix=webhooks.PREFIX)


@bp.before_request
def check_signature() -> Response | None:
    """Refuse, with no side effect, what our Twilio account did not send (see `ivr.gate`):
    oversized or non-form bodies, another AccountSid, a bad signature, an unknown call."""
    return gate.admit(request, desk().settings)


@bp.before_request
def require_a_call() -> Response | None:
    """A webhook that names no call (CallSid, or the `call` of our own URLs) changes nothing."""
    call = request.args.get("call")
    if gate.CALL_SID.fullmatch(request.form.get("CallSid", "")) and (
            call is None or gate.CALL_SID.fullmatch(call)):
        return None
    log.warning("%s names no call; answered without acting", request.path)
    if request.path == "/voice/status":
        return xml(twiml.empty())
    return xml(twiml.goodbye(prompts(), prompts().text("routing.goodbye")))


@bp.before_request
def answer_repeats() -> Response | None:
    """A webhook Twilio repeats (same call, same idempotency token) hears the first
    reply and changes nothing; the first request with a token claims it. The token
    is Twilio's per request; keyed with the CallSid, one call's token can never
    answer for another call."""
    token = gate.repeat_token(request)
    if not token:
        return None
    r = desk().r
    # The gate claimed it already with its live-call check (one round trip for both),
    # except on a call's first webhook and its status callback.
    folded, claimed = g.pop("token_claim", ("", False))
    if folded != token:
        claimed = replies.claim_token(r, token)
    if claimed:
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
