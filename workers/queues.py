"""Queue names and the functions that put caseline's jobs on them.

Job functions are named by dotted path so this module imports no job code:
web processes and `routing` can enqueue without importing workers.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import redis
from rq import Queue, Retry


class Queues:
    """Every RQ queue caseline uses."""

    CALL_LOGS = "call-logs"
    PRESENCE = "presence"
    MAINTENANCE = "maintenance"

    ALL = (PRESENCE, CALL_LOGS, MAINTENANCE)


# A database outage of up to ~15 minutes is ridden out by retries. The first
# retry is immediate: a job whose worker died is run again by the next worker
# without waiting for RQ's scheduler (whose lock a dead worker may still hold).
CALL_LOG_RETRY = Retry(max=13, interval=[0, 1, 2, 5, 10, 30, 60, 120, 120, 120, 120, 120, 120])


def call_log_job_id(call_sid: str) -> str:
    """The one job id that logs a call: duplicates collapse onto it."""
    return f"log-call-{call_sid}"


def enqueue_call_log(r: redis.Redis, call_sid: str) -> None:
    """Queue the job that writes the call's log on its case."""
    Queue(Queues.CALL_LOGS, connection=r).enqueue(
        "workers.call_log.log_call",
        call_sid,
        job_id=call_log_job_id(call_sid),
        retry=CALL_LOG_RETRY,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
    )


def schedule_end_of_wrapup(
    r: redis.Redis, advisor_id: str, hold: str, until_ms: int
) -> None:
    """Make the advisor available again once their wrap-up time is over."""
    # RQ's schedule has whole-second resolution: round up, never end wrap-up early.
    at = datetime.fromtimestamp(math.ceil(until_ms / 1000), tz=UTC)
    Queue(Queues.PRESENCE, connection=r).enqueue_at(
        at,
        "workers.presence.end_wrapup",
        advisor_id,
        hold,
        job_id=re.sub(r"[^A-Za-z0-9_-]", "_", f"end-wrapup-{advisor_id}-{hold}"),
        retry=Retry(max=3, interval=1),
    )
