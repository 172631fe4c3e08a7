"""The size of each team's queue at Twilio: the room `<Enqueue>` puts waiting callers in.

Twilio creates a queue the first time `<Enqueue>` names it, holding at most 1000 calls;
the 1,001st is refused (Twilio's 14207: the Enqueue action hears `queue-full`, which
`routing.waiting` treats as a failure: queued again once, then the fallback number or a
voicemail). An outage morning (PRODUCT.md, "the storm") has thousands waiting for one
team, so the reconciler makes each team's queue hold `TEAM_QUEUE_SIZE` calls, the most
Twilio allows, before anyone needs it: created with that size if missing, raised if
smaller.
"""

from __future__ import annotations

import logging

from directory import keys
from directory.catalog import ALL_TEAMS
from routing.call_end import (
    OPEN_CALL_FETCH_TIMEOUT_SECONDS,
    pause_twilio_reads,
    twilio_reads_paused,
)
from routing.desk import Desk

log = logging.getLogger(__name__)

# The most calls a Twilio queue may hold (twilio's Queue `max_size`: default 1000,
# at most 5000).
TEAM_QUEUE_SIZE = 5000
# How long (ms) a queue seen at that size is trusted before it is checked again (one
# list request): a queue deleted or shrunk by hand in Twilio's console is put back
# within the hour.
SIZED_RECHECK_MS = 3_600_000


def teams_to_size(desk: Desk, now_ms: int) -> list[str]:
    """The teams whose Twilio queue is not known to hold `TEAM_QUEUE_SIZE` calls: every
    team of the catalog and every team an advisor or a caller brought (`keys.teams`),
    unless seen sized within `SIZED_RECHECK_MS`."""
    teams = set(ALL_TEAMS) | set(desk.r.smembers(keys.teams()))
    seen = desk.r.hgetall(keys.twilio_queues_sized())
    return sorted(team for team in teams
                  if not str(seen.get(team, "")).isdigit()
                  or now_ms - int(seen[team]) >= SIZED_RECHECK_MS)


def size_team_queues(desk: Desk, now_ms: int, deadline: float | None = None) -> int:
    """Make each team's Twilio queue (named as `<Enqueue>` names it: the team) hold
    `TEAM_QUEUE_SIZE` calls, checking only those not seen sized lately; how many were
    checked and found or made so. It shares the reconciler's manners with Twilio
    (`routing.call_end`): nothing is asked while Twilio is let be after a failure
    (`twilio_reads_paused`), a failure here (429, 5xx, the network; logged by
    `Telephony`) lets it be for a minute too (`pause_twilio_reads`), each request is
    one try of `OPEN_CALL_FETCH_TIMEOUT_SECONDS` per connect and read, and none starts
    past `deadline` (`time.monotonic()`). A team not sized stays due, for a later pass."""
    due = teams_to_size(desk, now_ms)
    if not due or twilio_reads_paused(desk, now_ms):
        return 0
    sized, failed = desk.telephony.size_queues(
        due, TEAM_QUEUE_SIZE, timeout=OPEN_CALL_FETCH_TIMEOUT_SECONDS, deadline=deadline)
    if sized:
        desk.r.hset(keys.twilio_queues_sized(), mapping=dict.fromkeys(sized, now_ms))
    if failed:
        pause_twilio_reads(desk, now_ms)
    missing = sorted(set(due) - sized)
    if missing:
        log.warning("Twilio's queues for %s are not known to hold %d calls yet; "
                    "tried again on a later pass", ", ".join(missing), TEAM_QUEUE_SIZE)
    return len(sized)
