"""The Redis failover drill: caseline on a Sentinel-watched primary (a primary, a
replica, three sentinels on loopback), two advisors on calls and callers waiting
in the queue when the primary is killed. After the sentinels promote the
replica, the line carries on by itself: every waiting caller is served in the
order they arrived, no advisor is ever on two calls, and every call has exactly
one call log (the worker follows the failover too)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.live import new_line, wait_for
from tests.redis_servers import sentinel_group
from twilio_side import Event

PAT = "+16125550101"
A7, A2 = "+16515550199", "+16515550102"
WAITING = 5


@pytest.fixture
def sentinels(tmp_path: Path):
    """A primary, a replica and three sentinels (Debian's), stopped after the test."""
    with sentinel_group(tmp_path / "sentinel") as group:
        yield group


@pytest.fixture
def desk_line(directory):
    """One district with a contact per caller, and two general advisors."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    for n in range(2 + WAITING):
        directory.contact(str(5001 + n), f"+1612555{101 + n:04d}", "D100", f"Contact {n}")
    directory.advisor("A7", ["general"], phone=A7)
    directory.advisor("A2", ["general"], phone=A2)
    directory.load()


class Advisors:
    """Twilio's side of the advisors' phones: who is on which call, right now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.on_call: dict[str, str] = {}
        self.double_booked: list[tuple[str, str, str]] = []
        self.dialed: list[str] = []  # call SIDs, in the order an advisor was dialed for them

    def watch(self, call_sid: str, hang_up: threading.Event | None = None,
              talk: float = 0.3):
        """An on_event hook: note each advisor dialed; talk until `hang_up` (or `talk` s)."""

        def on_event(event: Event) -> None:
            if event.kind == "dial" and event.party == "advisor":
                with self.lock:
                    if event.text in self.on_call:
                        self.double_booked.append((event.text, self.on_call[event.text],
                                                   call_sid))
                    self.on_call[event.text] = call_sid
                    self.dialed.append(call_sid)
            elif event.kind == "connect":
                if hang_up is not None:
                    assert hang_up.wait(timeout=60)
                else:
                    time.sleep(talk)
            elif event.kind == "hangup" and event.text == "after talking":
                with self.lock:
                    for number, sid in list(self.on_call.items()):
                        if sid == call_sid:
                            del self.on_call[number]

        return on_event


def test_redis_failover_keeps_every_caller_and_call_log(
        settings, emulator, desk_line, desk, sentinels, tmp_path):
    from tests.test_drills import call_logs

    line = new_line(settings.with_changes(redis_url=sentinels.url), emulator, tmp_path)
    advisors = Advisors()
    threads: list[threading.Thread] = []
    results: dict[str, object] = {}

    def place(number: str, **watch) -> str:
        caller = line.caller(number, "2", max_wait_seconds=90)
        caller.on_event = advisors.watch(caller.call_sid, **watch)
        thread = threading.Thread(target=lambda: results.__setitem__(caller.call_sid,
                                                                      caller.run()))
        thread.start()
        threads.append(thread)
        return caller.call_sid

    def waiting() -> list[str]:
        return [c["call_sid"] for c in line.api("GET", "/queues").json().get("general", [])]

    try:
        line.start_web()  # caches the directory in the Sentinel-watched primary
        line.start_worker()
        line.set_status("A7", "available")
        line.set_status("A2", "available")

        # Two calls in flight: each advisor is talking, until told to hang up.
        hang_ups = [threading.Event(), threading.Event()]
        talking = []
        for n in range(2):
            talking.append(place(f"+1612555{101 + n:04d}", hang_up=hang_ups[n]))
            wait_for(f"advisor {n + 1} on a call", lambda: advisors.dialed == talking)
        assert sorted(advisors.on_call) == sorted([A7, A2])

        # Callers queue one after another, so their order is known.
        arrived = []
        for n in range(WAITING):
            arrived.append(place(f"+1612555{103 + n:04d}"))
            wait_for(f"caller {n + 1} to wait", lambda: waiting() == arrived)

        took = sentinels.kill_primary_and_wait_for_failover()
        # The promoted replica holds the queue as it was; the callers' hold cycles kept
        # running through the failover (each webhook waits for the new primary).
        assert waiting() == arrived, f"failover took {took:.1f}s"

        # A7's call ends: A7 takes the waiting callers one after another (one advisor, so
        # the order they are dialed in is the order they were served in). A2's call
        # ends last, with nobody left waiting.
        hang_ups[0].set()
        wait_for("every waiting caller to be served", lambda: waiting() == []
                 and len(advisors.dialed) == len(talking) + WAITING, timeout=30)
        hang_ups[1].set()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)

        assert advisors.double_booked == []
        for result in results.values():
            assert result.error is None, result.summary()
            assert result.answered_by in (A7, A2), result.summary()  # not the fallback
        assert advisors.dialed == talking + arrived  # served in the order they came
        assert {r.answered_by for sid, r in results.items() if sid in arrived} == {A7}
        states = {a["id"]: a["status"] for a in line.api("GET", "/advisors").json()}
        assert states == {"A7": "available", "A2": "available"}

        sids = talking + arrived
        wait_for("every call log", lambda: len(call_logs(desk, sids)) == len(sids), timeout=30)
        assert call_logs(desk, sids) == dict.fromkeys(sids, 1)  # none lost, none doubled
        assert line.web.alive() and line.worker.alive()  # nothing was restarted
    except AssertionError:
        print(line.output())
        print(sentinels.output())
        raise
    finally:
        for event in hang_ups if "hang_ups" in locals() else []:
            event.set()
        for thread in threads:
            thread.join(timeout=30)
        line.stop()
