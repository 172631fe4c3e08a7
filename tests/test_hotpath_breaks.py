"""What a review of the hot path's round-trip savings broke: each test is one input
that went wrong after those commits (see the commit that adds the test)."""

from __future__ import annotations

import dataclasses
import time
import uuid

import redis

from directory import keys
from routing import presence
from tests.test_real_world import lakeview  # noqa: F401  (fixture)


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
