"""The reconciler's pass over the waiting callers: those whose call is over or unknown
are dropped (never one waiting for a callback), each drop announced, however long the
queue (it is checked a slice at a time)."""

from __future__ import annotations

import time

import time_machine
from twilio.rest import Client

from directory import keys
from directory.catalog import ALL_TEAMS
from routing import acd, presence
from routing.acd import GONE_SCAN_CHUNK
from routing.call_state import update_call
from workers.reconciler import reconcile


def test_a_long_queue_drops_exactly_the_callers_who_are_gone(desk, directory):
    directory.district()
    directory.advisor("A7", ["general"])
    directory.load()
    now = int(time.time() * 1000)
    waiting = [f"CA{index:032d}" for index in range(2 * GONE_SCAN_CHUNK + 137)]
    gone, kept = set(), set()
    for index, sid in enumerate(waiting):
        desk.r.hset(keys.call(sid), mapping={"base": "http://caseline.test"})
        presence.claim_for_caller(desk.r, sid, team="general", owner_id=None,
                                  now_ms=now + index, lease_ms=desk.lease_ms)
        if index % 5 == 0:
            desk.r.set(keys.call_ended(sid), "1")  # its status callback ran, but the queue kept it
            gone.add(sid)
        elif index % 7 == 0:
            desk.r.delete(keys.call(sid))  # unknown: its hash is gone
            gone.add(sid)
        elif index % 9 == 0:
            update_call(desk.r, sid, callback="1")  # keeps their place for a callback
            desk.r.set(keys.call_ended(sid), "1")
            kept.add(sid)
        else:
            kept.add(sid)
    # Runs of gone callers straddle the slices' edges.
    for sid in waiting[GONE_SCAN_CHUNK - 3: GONE_SCAN_CHUNK + 3]:
        desk.r.delete(keys.call(sid))
        gone.add(sid)
        kept.discard(sid)
    changes = desk.r.pubsub(ignore_subscribe_messages=True)
    changes.subscribe(keys.desk_changes())
    changes.get_message(timeout=1)

    assert acd.reconcile(desk, now) == {"freed": 0, "dropped": len(gone)}
    assert set(desk.r.zrange(keys.team_waiting("general"), 0, -1)) == kept
    announced = 0
    while changes.get_message(timeout=0.5) is not None:
        announced += 1
    assert announced == len(gone)  # each drop announced
    assert acd.reconcile(desk, now)["dropped"] == 0
    changes.close()


def _twilio_queues(desk) -> dict[str, int]:
    """Twilio's queues, as its REST API lists them: FriendlyName -> MaxSize."""
    settings = desk.settings
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token)
    client.api.base_url = settings.twilio_api_url
    return {queue.friendly_name: queue.max_size for queue in client.api.v2010.account.queues.list()}


def _queue_requests(emulator) -> list:
    return [request for request in emulator.requests if "/Queues" in request.path]


def test_every_teams_twilio_queue_is_made_to_hold_5000_calls(desk, directory, emulator):
    directory.advisor("A7", ["general"])
    directory.load()
    # `<Enqueue>` made general's queue on demand (1000); another is larger by hand.
    client_queues = Client(desk.settings.twilio_account_sid,
                           desk.settings.twilio_auth_token)
    client_queues.api.base_url = desk.settings.twilio_api_url
    client_queues.api.v2010.account.queues.create(friendly_name="general")
    assert _twilio_queues(desk) == {"general": 1000}
    desk.r.sadd(keys.teams(), "night-shift")  # a team the directory brought

    assert reconcile()["twilio_queues_sized"] == len(ALL_TEAMS) + 1
    assert _twilio_queues(desk) == dict.fromkeys([*ALL_TEAMS, "night-shift"], 5000)
    # Sized, they are not asked about again on the next passes (within the hour).
    asked = len(_queue_requests(emulator))
    assert reconcile()["twilio_queues_sized"] == 0
    assert len(_queue_requests(emulator)) == asked


def test_twilio_failing_to_size_the_queues_lets_it_be_a_minute_then_asks_again(
        desk, directory, emulator, caplog):
    """As with the open calls (`routing.call_end`), a 429 or 5xx is the account's: Twilio
    is let be for a minute, then the teams not sized yet are asked about again."""
    directory.advisor("A7", ["general"])
    directory.load()
    emulator.fail_next_fetch(503)  # the list of queues
    first = _pass(0)
    assert first["twilio_queues_sized"] == 0 and "voicemail_offers" in first  # the rest ran
    assert "not known to hold 5000 calls" in caplog.text
    asked = len(_queue_requests(emulator))
    assert _pass(10_000)["twilio_queues_sized"] == 0
    assert len(_queue_requests(emulator)) == asked  # let be
    emulator.fail_next(429)  # the first creation
    assert _pass(61_000)["twilio_queues_sized"] == 0
    assert _twilio_queues(desk) == {}
    assert _pass(122_000)["twilio_queues_sized"] == len(ALL_TEAMS)
    assert _twilio_queues(desk) == dict.fromkeys(ALL_TEAMS, 5000)


def _pass(after_ms: int) -> dict[str, int]:
    """The worker's reconciler job, run `after_ms` (ms) from now."""
    with time_machine.travel(time.time() + after_ms / 1000, tick=False):
        return reconcile()
