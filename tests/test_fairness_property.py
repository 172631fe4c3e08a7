"""Property test of the matching scripts against a model of the desk.

Random schedules of arrivals (any team, any priority), hang-ups, advisors
coming and going and calls ending, run against the real Redis scripts: callers
are served in priority-then-arrival order among each advisor's teams, no
advisor ever holds two callers, and no caller is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from directory import keys, update_advisor_teams
from routing import presence

# Every advisor serves two teams, so each release chooses across queues.
TEAMS = {"A1": ["general", "hosting"], "A2": ["general", "fees"], "A3": ["fees", "hosting"],
         "A4": ["hosting"]}
LEASE = 35_000


@dataclass
class Desk:
    """The model: who waits where, who is free, who serves whom."""

    waiting: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # sid: band, t, team
    available: set[str] = field(default_factory=set)
    serving: dict[str, str] = field(default_factory=dict)  # advisor: sid
    served: set[str] = field(default_factory=set)
    abandoned: set[str] = field(default_factory=set)

    def best_for(self, advisor: str) -> str | None:
        """The waiting caller this advisor must take next."""
        eligible = [(band, t, sid) for sid, (band, t, team) in self.waiting.items()
                    if team in TEAMS[advisor]]
        return min(eligible)[2] if eligible else None


class Schedule(RuleBasedStateMachine):
    """One random day on the desk."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__()
        self.r = client
        self.r.flushdb()
        for advisor, teams in TEAMS.items():
            self.r.hset(keys.advisor(advisor), mapping={"name": advisor, "phone": "+1"})
            update_advisor_teams(self.r, advisor, teams, 0)
        self.model = Desk()
        self.now = 1_000
        self.calls = 0

    def tick(self) -> int:
        """Time moves on between events."""
        self.now += 7
        return self.now

    @rule(team=st.sampled_from(["general", "hosting", "fees"]),
          priority=st.sampled_from(["critical", "high", "medium", "low"]))
    def caller_arrives(self, team: str, priority: str) -> None:
        self.calls += 1
        sid = f"CA{self.calls}"
        now = self.tick()
        free = sorted((int(self.r.hget(keys.advisor(a), "since") or 0), a)
                      for a in self.model.available if team in TEAMS[a])
        claim = presence.claim_for_caller(self.r, sid, team=team, owner_id=None, now_ms=now,
                                          lease_ms=LEASE, priority=priority)
        if claim.outcome == "advisor":
            # The longest idle of the team's free advisors.
            assert free and claim.advisor_id == free[0][1]
            self.model.available.discard(claim.advisor_id)
            self.model.serving[claim.advisor_id] = sid
        else:
            assert claim.outcome == "queued"
            assert not free, "a caller queued while an advisor of the team was free"
            self.model.waiting[sid] = (presence.band_of(priority), now, team)

    @precondition(lambda self: self.model.waiting)
    @rule(data=st.data())
    def waiting_caller_hangs_up(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.model.waiting)))
        team = self.model.waiting.pop(sid)[2]
        assert self.r.zrem(keys.team_waiting(team), sid) == 1
        self.model.abandoned.add(sid)

    def _free(self, advisor: str, *, expected: str = "", explicit: bool = False) -> None:
        expected_sid = self.model.best_for(advisor)
        release = presence.make_available(self.r, advisor, now_ms=self.tick(), lease_ms=LEASE,
                                          expected_call=expected, explicit=explicit)
        if expected_sid is None:
            assert release.outcome == "available"
            self.model.available.add(advisor)
        else:
            assert (release.outcome, release.call_sid) == ("claimed", expected_sid)
            del self.model.waiting[expected_sid]
            self.model.serving[advisor] = expected_sid

    @precondition(lambda self: set(TEAMS) - self.model.available - set(self.model.serving))
    @rule(data=st.data())
    def advisor_comes_back(self, data: st.DataObject) -> None:
        idle = sorted(set(TEAMS) - self.model.available - set(self.model.serving))
        self._free(data.draw(st.sampled_from(idle)), explicit=True)

    @precondition(lambda self: self.model.serving)
    @rule(data=st.data())
    def call_ends(self, data: st.DataObject) -> None:
        advisor = data.draw(st.sampled_from(sorted(self.model.serving)))
        sid = self.model.serving.pop(advisor)
        self.model.served.add(sid)
        self._free(advisor, expected=sid)

    @precondition(lambda self: self.model.serving)
    @rule(data=st.data())
    def duplicate_end_callback_changes_nothing(self, data: st.DataObject) -> None:
        if not self.model.served:
            return
        sid = data.draw(st.sampled_from(sorted(self.model.served)))
        for advisor in TEAMS:
            release = presence.make_available(self.r, advisor, now_ms=self.tick(),
                                              lease_ms=LEASE, expected_call=sid)
            if self.model.serving.get(advisor) != sid:
                assert release.outcome in ("stale", "available"), release

    @precondition(lambda self: self.model.available)
    @rule(data=st.data())
    def advisor_signs_off(self, data: st.DataObject) -> None:
        advisor = data.draw(st.sampled_from(sorted(self.model.available)))
        presence.make_unavailable(self.r, advisor, "offline", now_ms=self.tick())
        self.model.available.discard(advisor)

    @invariant()
    def redis_matches_the_model(self) -> None:
        for team in ("general", "hosting", "fees"):
            waiting = self.r.zrange(keys.team_waiting(team), 0, -1)
            expected = sorted((v[0], v[1], sid) for sid, v in self.model.waiting.items()
                              if v[2] == team)
            assert waiting == [sid for _, _, sid in expected]  # served in this order
            free = set(self.r.zrange(keys.team_available(team), 0, -1))
            assert free == {a for a in self.model.available if team in TEAMS[a]}
        holders = {}
        for advisor in TEAMS:
            call = self.r.hget(keys.advisor(advisor), "call") or ""
            assert call == self.model.serving.get(advisor, "")
            if call:
                assert call not in holders, "two advisors on one caller"
                holders[call] = advisor

    @invariant()
    def nobody_lost(self) -> None:
        everyone = {f"CA{n}" for n in range(1, self.calls + 1)}
        states = [set(self.model.waiting), set(self.model.serving.values()),
                  self.model.served, self.model.abandoned]
        assert set().union(*states) == everyone
        assert sum(len(s) for s in states) == len(everyone)


def test_priority_then_arrival_order_no_double_booking_nobody_lost(r):
    run_state_machine_as_test(
        lambda: Schedule(r),
        settings=settings(max_examples=80, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
