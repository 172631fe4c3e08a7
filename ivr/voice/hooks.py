"""The voice blueprint and what runs around every webhook: the gate (signature and
limits, the body's type, a live call: `ivr.gate`), a webhook that names no call, and
the replies to webhooks Twilio repeats (same idempotency token: the first
reply, nothing changed)."""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, Response, current_app, g, request

from config import webhooks
from directory.redis_client import REPLICA_WAIT_MS, wait_for_replicas
from ivr import gate, twiml
from ivr.context import desk, prompts
from ivr.voice.render import xml
from routing import replies

log = logging.getLogger(__name__)

bp = Blueprint("voice", __name__, url_prefix=webhooks.PREFIX)


@bp.before_request
def check_signature() -> Response | None:
    """Refuse, with no side effect, what our Twilio account did not send (see `ivr.gate`):
    anything not signed with our auth token (oversized bodies included), a signed body
    that is no form, a webhook about an unknown call."""
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


# Webhooks whose repeat changes nothing by itself and hears the same reply, so they
# skip the token's claim and the kept reply (two Redis round trips each, on two
# webhooks in seven): the call's first webhook opens its hash only if it does not
# exist (`routing.menu.identify_caller`, which also counts it among its number's calls
# only then) and greets (or refuses) from that hash; the status
# callback ends the call once (`routing.acd.end_call`: the first to mark
# the end wins) and always answers an empty `<Response/>`; the fallback number's
# `<Dial>` action writes one mark and answers by what Twilio posted.
SAFE_TO_REPEAT = frozenset({"voice.incoming", "voice.status", "voice.fallback_over"})


@bp.before_request
def answer_repeats() -> Response | None:
    """A webhook Twilio repeats (same call, same idempotency token; or, for one that
    names its try, the same try with or without the token: `gate.TRY_KEYED`) hears the
    first reply and changes nothing; the first request with that key claims it. The
    token is Twilio's per request; keyed with the CallSid, one call's key can never
    answer for another call."""
    token = gate.repeat_token(request)
    if not token or request.endpoint in SAFE_TO_REPEAT:
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


# When no replica acknowledged in time (one is down, or a new primary has none yet),
# answers stop waiting for one for this long: one slow answer, not every answer.
REPLICA_PAUSE_SECONDS = 10.0


@bp.after_request
def keep_through_a_failover(response: Response) -> Response:
    """With Redis Sentinel, Twilio hears an answer only once a replica holds what led
    to it (a claim, a place in a queue, a call-log job), so that a failover cannot
    lose what Twilio was told. It waits at most `REPLICA_WAIT_MS` ms; when no replica
    answers in time, this web process stops waiting for `REPLICA_PAUSE_SECONDS` s
    (logged). Runs after the other hooks (Flask calls them last-registered first), so
    the kept reply is covered too; never after a failure (Redis may be down)."""
    paused = current_app.extensions.get("caseline.replica_pause")
    if paused is None:
        return response  # a single Redis server: no replica to wait for
    if response.status_code != 200 or g.get("failed") or time.monotonic() < paused["until"]:
        return response
    try:
        replicas = wait_for_replicas(desk().r)
    except redis.RedisError:
        log.exception("waiting for a Redis replica after %s failed", request.path)
        return response
    if replicas == 0:
        paused["until"] = time.monotonic() + REPLICA_PAUSE_SECONDS
        log.warning("no Redis replica acknowledged within %d ms; answers stop waiting for one "
                    "for %.0f s (a failover meanwhile may lose the last writes)",
                    REPLICA_WAIT_MS, REPLICA_PAUSE_SECONDS)
    return response


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
