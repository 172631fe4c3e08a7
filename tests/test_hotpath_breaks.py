"""What a review of the hot path's round-trip savings broke: each test is one input
that went wrong after those commits (see the commit that adds the test)."""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET

import redis

from directory import keys
from routing import presence
from tests.conftest import API_TOKEN
from tests.test_real_world import PAT
from tests.webhooks import post

API = {"Authorization": f"Bearer {API_TOKEN}"}


# --- presence scripts announce their change: best effort, as before --------------------------

def test_a_change_the_redis_user_may_not_announce_still_claims_and_releases(desk, lakeview,
                                                                           redis_url):
    """Announcing a change on the console's channel is best effort (routing.changes): a
    Redis user that may not PUBLISH there (Redis 7's ACL default for a new user is no
    channel at all) cost a page its live update, never a call. With the PUBLISH inside
    the transition's script, the script raised after its writes: the advisor's release
    and the caller's claim failed (the webhook answered the fallback) with the advisor
    left held."""
    user, password = "caseline-no-channels", "pw-" + uuid.uuid4().hex
    desk.r.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                       commands=["+@all"], reset_channels=True)
    try:
        restricted = redis.Redis.from_url(redis_url, username=user, password=password,
                                          decode_responses=True)
        now_ms = int(time.time() * 1000)
        released = presence.make_available(restricted, "A2", now_ms=now_ms, lease_ms=50_000,
                                           explicit=True)
        assert released.outcome == "available"
        desk.r.hset(keys.call("CA-acl"), mapping={"call_sid": "CA-acl", "team": "general"})
        claim = presence.claim_for_caller(restricted, "CA-acl", team="general", owner_id=None,
                                          now_ms=now_ms, lease_ms=50_000)
        assert claim.outcome == "advisor"
        assert claim.advisor_id in ("A2", "A7")
        restricted.close()
    finally:
        desk.r.acl_deluser(user)


# --- a repeated first webhook hears the same greeting ----------------------------------------

def test_a_repeated_first_webhook_after_an_announcement_hears_the_first_greeting(
        desk, lakeview, client):
    """Twilio repeats the call's first webhook (same token) after the desk posted a
    known-incident announcement: the repeat must hear what the first answered (the
    kept reply's promise, docs/design.md "Idempotency"), not a greeting made anew."""
    form = {"CallSid": "CA-ann", "From": PAT, "To": "+18005550100",
            "StirVerstat": "TN-Validation-Passed-A"}
    token = str(uuid.uuid4())
    first = ET.tostring(post(client, "/voice/incoming", form, token=token))
    response = client.put("/api/announcement", headers=API,
                          json={"text": "Campus sign-in is down in the north region.",
                                "active": True})
    assert response.status_code == 200, response.data
    repeat = ET.tostring(post(client, "/voice/incoming", form, token=token))
    assert repeat == first
    # A new call hears the announcement.
    other = ET.tostring(post(client, "/voice/incoming", {**form, "CallSid": "CA-ann-2"}))
    assert b"north region" in other


def test_a_repeated_first_webhook_after_the_caller_verified_hears_the_first_greeting(
        desk, lakeview, client):
    """The caller was not known by number (no attestation), chose 1 and gave their
    contact ID and PIN; a late repeat of the first webhook (same token) must not greet
    them by name now: it hears what the first answered."""
    form = {"CallSid": "CA-pin", "From": PAT, "To": "+18005550100"}
    token = str(uuid.uuid4())
    first = ET.tostring(post(client, "/voice/incoming", form, token=token))
    post(client, "/voice/menu?attempt=1", {"CallSid": "CA-pin", "Digits": "1"})
    post(client, "/voice/verify/contact?option=1&attempt=1", {"CallSid": "CA-pin",
                                                              "Digits": "5001"})
    post(client, "/voice/verify/pin?option=1", {"CallSid": "CA-pin", "Digits": "2468"})
    assert desk.r.hget(keys.call("CA-pin"), "verified") == "1"
    repeat = ET.tostring(post(client, "/voice/incoming", form, token=token))
    assert repeat == first
