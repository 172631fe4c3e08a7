"""Many callers at once against a few advisors, served by two OS processes on
one Redis: nobody double-booked, nobody lost, nobody left busy."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict

import pytest
import requests

from directory import keys
from routing import presence
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, make_available
from twilio_side import Caller, Event, HttpTransport, InProcessLink

ADVISORS = [f"A{n}" for n in range(10, 20)]
CALLERS = 50


class PhoneLedger:
    """The Twilio-side truth: which advisor phone is on which call, right now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.on_call: dict[str, str] = {}
        self.double_booked: list[tuple[str, str, str]] = []
        self.served: dict[str, list[str]] = defaultdict(list)

    def watch(self, call_sid: str):
        """An on_event hook for one caller."""

        def on_event(event: Event) -> None:
            if event.kind == "dial" and event.party == "advisor":
                with self.lock:
                    if event.text in self.on_call:
                        self.double_booked.append((event.text, self.on_call[event.text], call_sid))
                    self.on_call[event.text] = call_sid
                    self.served[event.text].append(call_sid)
            elif event.kind == "connect":
                # Talk long enough that every advisor is on a call while the others
                # arrive, whatever the speed of the machine: most callers must queue.
                time.sleep(random.uniform(0.5, 1.0))
            elif event.kind == "hangup" and event.text == "after talking":
                with self.lock:
                    for number, sid in list(self.on_call.items()):
                        if sid == call_sid:
                            del self.on_call[number]

        return on_event


@pytest.mark.slow
def test_fifty_callers_ten_advisors_two_processes(live_service, directory, desk, emulator):
    directory.district()
    for n in range(CALLERS):
        directory.contact(id=str(6000 + n), phone=f"+1612555{1000 + n:04d}", name=f"Contact {n}")
    for advisor in ADVISORS:
        directory.advisor(advisor, ["general"])
    for n in range(CALLERS):
        directory.case(str(3000000 + n), owner=ADVISORS[n % len(ADVISORS)])
    directory.load()
    make_available(desk, *ADVISORS)

    pids = {requests.get(f"{live_service.url}/healthz", timeout=5).json()["pid"]
            for _ in range(40)}
    assert len(pids) >= 2, "the service should run at least two worker processes"

    ledger = PhoneLedger()
    start = threading.Barrier(CALLERS)
    results = {}

    def place(n: int) -> None:
        transport = HttpTransport(live_service.url, auth_token=AUTH_TOKEN)
        caller = Caller(
            transport, f"+1612555{1000 + n:04d}",
            keys=["1", f"{3000000 + n}#"] if n % 3 else ["2"],
            advisor_policy="answer", account_sid=ACCOUNT_SID,
            emulator_link=InProcessLink(emulator), max_wait_seconds=60,
            wait_poll_interval=0.05,
        )
        caller.on_event = ledger.watch(caller.call_sid)
        start.wait()
        results[n] = caller.run()
        transport.close()

    threads = [threading.Thread(target=place, args=(n,)) for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(results) == CALLERS
    assert ledger.double_booked == []
    for n, result in results.items():
        assert result.error is None, (n, result.error)
        # Every caller rang an advisor or waited in the queue: nobody fell through.
        assert result.dialed or result.queued, n
        assert result.outcome == "advisor", (n, result.outcome)
    assert sum(len(calls) for calls in ledger.served.values()) == CALLERS
    assert sum(r.queued for r in results.values()) >= CALLERS - len(ADVISORS)
    # After every call, no advisor is stuck busy and nobody is left waiting.
    for advisor in ADVISORS:
        assert presence.advisor_state(desk.r, advisor)["status"] == "available", advisor
    assert desk.r.zcard(keys.team_waiting("general")) == 0
