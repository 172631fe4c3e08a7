"""The reconciler's pass over the waiting callers: those whose call is over or unknown
are dropped (never one waiting for a callback), each drop announced, however long the
queue (it is checked a slice at a time)."""

from __future__ import annotations

import time

from directory import keys
from routing import acd, presence
from routing.acd import GONE_SCAN_CHUNK
from routing.call_state import update_call


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
