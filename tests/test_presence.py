"""The matching scripts, called directly against a real Redis."""

from __future__ import annotations

import threading

import redis

from directory import keys, update_advisor_teams
from routing import presence

LEASE = 35_000


def add_advisor(r: redis.Redis, advisor_id: str, teams: list[str], *, available_at: int | None):
    """An advisor in the cache; available since `available_at` (ms) if given."""
    r.hset(keys.advisor(advisor_id), mapping={"name": advisor_id, "phone": "+16515550100"})
    update_advisor_teams(r, advisor_id, teams, 0)
    if available_at is not None:
        presence.make_available(r, advisor_id, now_ms=available_at, lease_ms=LEASE, explicit=True)


def test_owner_first_when_available(r):
    add_advisor(r, "A1", ["general"], available_at=1000)
    add_advisor(r, "A7", ["general"], available_at=5000)
    claim = presence.claim_for_caller(r, "CA1", team="general", owner_id="A7", now_ms=9000,
                                      lease_ms=LEASE)
    assert claim.advisor_id == "A7"
    assert presence.advisor_state(r, "A7")["status"] == "busy"


def test_longest_idle_teammate_when_owner_busy(r):
    add_advisor(r, "A7", ["general"], available_at=None)  # offline owner
    add_advisor(r, "A2", ["general"], available_at=3000)
    add_advisor(r, "A1", ["general"], available_at=1000)
    add_advisor(r, "A3", ["fees"], available_at=500)  # idle longest, wrong team
    claim = presence.claim_for_caller(r, "CA1", team="general", owner_id="A7", now_ms=9000,
                                      lease_ms=LEASE)
    assert claim.advisor_id == "A1"


def test_nobody_free_queues_the_caller_in_priority_then_arrival_order(r):
    add_advisor(r, "A1", ["general", "hosting"], available_at=None)
    presence.claim_for_caller(r, "CA-gen", team="general", owner_id=None, now_ms=1000,
                              lease_ms=LEASE)
    presence.claim_for_caller(r, "CA-low", team="general", owner_id=None, now_ms=1500,
                              lease_ms=LEASE, priority="low")
    outage = presence.claim_for_caller(r, "CA-out", team="hosting", owner_id=None, now_ms=2000,
                                       lease_ms=LEASE, priority="critical")
    assert outage.outcome == "queued"
    served = []
    for now in (3000, 4000, 5000):
        # A1 comes back, takes the best waiting caller, and signs off after it.
        release = presence.make_available(r, "A1", now_ms=now, lease_ms=LEASE, explicit=True)
        served.append(release.call_sid)
        presence.make_unavailable(r, "A1", "offline", now_ms=now + 1)
        presence.make_available(r, "A1", now_ms=now + 2, lease_ms=LEASE,
                                expected_call=release.call_sid or "")
        assert presence.advisor_state(r, "A1")["status"] == "offline"
    assert served == ["CA-out", "CA-gen", "CA-low"]


def test_a_repeated_claim_returns_the_same_advisor(r):
    add_advisor(r, "A1", ["general"], available_at=1000)
    add_advisor(r, "A2", ["general"], available_at=2000)
    first = presence.claim_for_caller(r, "CA1", team="general", owner_id=None, now_ms=3000,
                                      lease_ms=LEASE)
    again = presence.claim_for_caller(r, "CA1", team="general", owner_id=None, now_ms=3001,
                                      lease_ms=LEASE)
    assert first.advisor_id == again.advisor_id == "A1"
    assert presence.advisor_state(r, "A2")["status"] == "available"


def test_stale_release_does_not_free_an_advisor_on_another_call(r):
    add_advisor(r, "A1", ["general"], available_at=1000)
    presence.claim_for_caller(r, "CA1", team="general", owner_id=None, now_ms=2000, lease_ms=LEASE)
    presence.make_available(r, "A1", now_ms=3000, lease_ms=LEASE, expected_call="CA1")
    presence.claim_for_caller(r, "CA2", team="general", owner_id=None, now_ms=4000, lease_ms=LEASE)
    # A late duplicate callback for CA1 must not free A1 from CA2.
    late = presence.make_available(r, "A1", now_ms=5000, lease_ms=LEASE, expected_call="CA1")
    assert late.outcome == "stale"
    assert presence.advisor_state(r, "A1")["call"] == "CA2"


def test_idle_time_counts_from_last_change_to_available(r):
    add_advisor(r, "A1", ["general"], available_at=1000)
    add_advisor(r, "A2", ["general"], available_at=2000)
    # A1 says "available" again: no change, so A1 is still the longest idle.
    presence.make_available(r, "A1", now_ms=3000, lease_ms=LEASE, explicit=True)
    claim = presence.claim_for_caller(r, "CA1", team="general", owner_id=None, now_ms=4000,
                                      lease_ms=LEASE)
    assert claim.advisor_id == "A1"


def test_concurrent_claims_never_share_an_advisor(r, redis_url):
    for i in range(10):
        add_advisor(r, f"A{i}", ["general"], available_at=1000 + i)
    results: dict[str, presence.Claim] = {}
    lock = threading.Lock()

    def caller(n: int) -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        claim = presence.claim_for_caller(client, f"CA{n}", team="general", owner_id="A0",
                                          now_ms=5000 + n, lease_ms=LEASE)
        with lock:
            results[f"CA{n}"] = claim

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [c.advisor_id for c in results.values() if c.outcome == "advisor"]
    assert sorted(claimed) == sorted(f"A{i}" for i in range(10))
    assert sum(c.outcome == "queued" for c in results.values()) == 50
    assert r.zcard(keys.team_waiting("general")) == 50


def test_advisor_available_mid_call_is_not_offered_a_second_caller(r):
    add_advisor(r, "A1", ["general"], available_at=1000)
    presence.claim_for_caller(r, "CA1", team="general", owner_id=None, now_ms=2000, lease_ms=LEASE)
    presence.claim_for_caller(r, "CA2", team="general", owner_id=None, now_ms=2100, lease_ms=LEASE)
    presence.make_unavailable(r, "A1", "offline", now_ms=2200)
    during = presence.make_available(r, "A1", now_ms=2300, lease_ms=LEASE, explicit=True)
    assert during.outcome != "claimed"
    assert r.zscore(keys.team_waiting("general"), "CA2") is not None
    # When CA1 ends, A1 (who asked to be available) takes CA2.
    after = presence.make_available(r, "A1", now_ms=2400, lease_ms=LEASE, expected_call="CA1")
    assert after.call_sid == "CA2"


def test_the_advisor_holds_a_call_sid_and_says_how_ringing_talking_wrapup(r):
    add_advisor(r, "A1", ["general"], available_at=1000)
    presence.claim_for_caller(r, "CA1", team="general", owner_id=None, now_ms=2000,
                              lease_ms=LEASE)
    state = presence.advisor_state(r, "A1")
    assert (state["call"], state["hold"]) == ("CA1", "ringing")
    assert presence.hold_for(r, "A1", call_sid="CA1", hold="talking", lease_until_ms=9000)
    assert presence.hold_for(r, "A1", call_sid="CA1", hold="wrapup", lease_until_ms=9000)
    state = presence.advisor_state(r, "A1")
    assert (state["call"], state["hold"]) == ("CA1", "wrapup")
    # The call's late end (ringing or talking) does not cut the wrap-up short...
    assert not presence.on_call(r, "A1", "CA1")
    late = presence.make_available(r, "A1", now_ms=3000, lease_ms=LEASE, expected_call="CA1")
    assert late.outcome == "stale"
    assert not presence.hold_for(r, "A1", call_sid="CA1", hold="wrapup", lease_until_ms=9999)
    # ...the end of the wrap-up does.
    done = presence.make_available(r, "A1", now_ms=4000, lease_ms=LEASE, expected_call="CA1",
                                   ending_wrapup=True)
    assert done.outcome == "available"
    state = presence.advisor_state(r, "A1")
    assert (state["call"], state["hold"]) == ("", "")


def test_an_idle_advisor_offered_the_queue_takes_the_best_caller_or_keeps_their_turn(r):
    """`offer_idle`: an advisor available already, holding nothing, is offered the
    waiting callers as if just available (a Redis restored beside callers queued without
    them); with nobody to take, they stay as they were, their idle-since kept; an
    advisor busy or offline is left alone."""
    add_advisor(r, "A1", ["general"], available_at=1000)
    add_advisor(r, "A2", ["general"], available_at=None)
    nobody = presence.make_available(r, "A1", now_ms=2000, lease_ms=LEASE, offer_idle=True)
    assert nobody == presence.Release("available")
    assert r.zscore(keys.team_available("general"), "A1") == 1000  # their turn kept
    # A caller queued beside A1 (as a restored snapshot may leave them).
    r.zadd(keys.team_waiting("general"), {"CA1": 2 * presence.BAND_WIDTH + 1500})
    r.hset(keys.call("CA1"), mapping={"waiting_team": "general", "state": "queued"})
    assert presence.make_available(r, "A2", now_ms=3000, lease_ms=LEASE,
                                   offer_idle=True).outcome == "stale"  # offline
    assert presence.advisor_state(r, "A2")["status"] == "offline"
    claimed = presence.make_available(r, "A1", now_ms=3000, lease_ms=LEASE, offer_idle=True)
    assert claimed == presence.Release("claimed", "CA1")
    assert presence.advisor_state(r, "A1")["call"] == "CA1"
    assert presence.make_available(r, "A1", now_ms=3001, lease_ms=LEASE,
                                   offer_idle=True).outcome == "stale"  # busy on it
    assert r.zcard(keys.team_waiting("general")) == 0


def test_a_caller_given_the_fallback_after_their_claim_is_not_put_back(r):
    """A caller claimed for A1 whose `/voice/connect` then failed is with the fallback
    number (`fallback_at` after `claimed_at`): neither `return_to_queue` nor the
    reconciler's release of A1 puts them back in their place, from which a freed
    advisor would redirect the call away from the fallback number. A callback's
    contact is put back (a callback is a new call: it cuts nothing), and a call whose
    mark is older than its claim (a reply Twilio did not act on: the call came back to
    the desk since) is routed and put back as any other."""
    add_advisor(r, "A1", ["general"], available_at=1000)
    presence.make_unavailable(r, "A1", "busy", now_ms=9500)
    assert presence.claim_for_caller(r, "CA2", team="general", owner_id=None, now_ms=10_000,
                                     lease_ms=LEASE).outcome == "queued"
    release = presence.make_available(r, "A1", now_ms=11_000, lease_ms=LEASE, explicit=True)
    assert (release.outcome, release.call_sid) == ("claimed", "CA2")
    r.hset(keys.call("CA2"), mapping={"fallback": "number", "fallback_at": 11_500})
    assert not presence.return_to_queue(r, "CA2", "A1")
    expired = 11_000 + LEASE + 1
    release = presence.make_available(r, "A1", now_ms=expired, lease_ms=LEASE,
                                      expected_call="CA2", skip_call="CA2",
                                      expired_by_ms=expired, settle_held_call=True)
    assert release.outcome == "available"
    assert r.zcard(keys.team_waiting("general")) == 0

    # A stale mark: routed again after it, claimed, never brought over: put back.
    r.hset(keys.call("CA3"), mapping={"fallback": "number", "fallback_at": 5_000})
    presence.make_unavailable(r, "A1", "busy", now_ms=expired + 1)
    later = expired + 2
    assert presence.claim_for_caller(r, "CA3", team="general", owner_id=None, now_ms=later,
                                     lease_ms=LEASE).outcome == "queued"
    release = presence.make_available(r, "A1", now_ms=later + 1, lease_ms=LEASE, explicit=True)
    assert (release.outcome, release.call_sid) == ("claimed", "CA3")
    assert presence.return_to_queue(r, "CA3", "A1")
    assert r.zrange(keys.team_waiting("general"), 0, -1) == ["CA3"]
