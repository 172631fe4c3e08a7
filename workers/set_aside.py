"""Calls whose log cannot be written for a reason of their own (its data, a case it
would open): which failures are one call's and which the database's, setting such a
call aside (`jobs.queues.CALL_LOGS_SET_ASIDE`), and putting it back among the calls
to log when its next try is due (the reconciler, every 10 s)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import redis
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from directory import keys
from directory.case_numbers import CaseNumberError
from directory.scripts import script
from jobs.queues import (
    CALL_LOG_SET_ASIDE_SECONDS,
    CALL_LOGS_PUT_BACK,
    CALL_LOGS_QUEUED,
    CALL_LOGS_QUEUED_SECONDS,
    CALL_LOGS_SET_ASIDE,
    CALLS_TO_LOG,
    queue_log_calls,
)
from routing.call_state import CALL_TTL_SECONDS

log = logging.getLogger(__name__)


# PostgreSQL's SQLSTATE classes that are one row's fault: 22, data exception (a number
# out of range, text the encoding cannot hold); 23, integrity constraint violation (a key
# the row names that is not there, a duplicate, a missing value).
_ONE_ROWS_SQLSTATE_CLASSES = ("22", "23")


def one_calls_fault(exc: BaseException) -> bool:
    """Whether `exc`, raised writing a batch of call logs, can be one call's own fault:
    then the batch is split to find that call and set it aside. Anything else is the
    database's (or Redis's, or the job's), true of every call alike: it fails the job, RQ
    retries it, every call still waiting, none set aside.

    An allow-list, because the DB-API's classes do not draw that line: psycopg raises for
    each SQLSTATE class the DB-API exception its table gives (psycopg's docs, "errors -
    Package exceptions", and `psycopg.errors`; PostgreSQL's docs, Appendix A "Error
    Codes"), so a standby that takes no write after a failover (25006) and the
    idle-in-transaction timeout (25P03) are `InternalError`, a table missing or a grant
    revoked (42P01, 42501) `ProgrammingError`, where SQLite's driver reports such faults
    as `OperationalError`; SQLAlchemy raises its class of the same name with the driver's
    exception in `.orig` (SQLAlchemy's docs, "Core Exceptions", `DBAPIError`). One
    call's fault, then, is only:

    - on PostgreSQL, SQLSTATE class 22 (data exception) or 23 (integrity constraint
      violation), as psycopg reports it (`exc.orig.sqlstate`);
    - with no SQLSTATE (SQLite's driver; psycopg refusing a value before sending it),
      SQLAlchemy's `DataError` or `IntegrityError`;
    - Python's `OverflowError`, `ValueError` or `TypeError`: a value of the call's state
      that makes no row (a number too large for SQLite's driver, text where a number is
      due), raised building the row or binding it (SQLAlchemy's `StatementError` wraps
      the latter);
    - `directory.case_numbers.CaseNumberError`: the call opens a case, and no case can be
      numbered after the directory's highest number."""
    if isinstance(exc, CaseNumberError):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate:
            return sqlstate[:2] in _ONE_ROWS_SQLSTATE_CLASSES
        return isinstance(exc, (DataError, IntegrityError))
    if isinstance(exc, StatementError):
        exc = exc.orig
    return isinstance(exc, (OverflowError, ValueError, TypeError))


# Set a call aside (ARGV[1]) in one step: off the calls to log (KEYS[2]), into the calls
# set aside (KEYS[1]), due at ARGV[2] (Unix s). Already there (two jobs took the same
# batch, and the other set it aside first): nothing more, and false. Else its state
# (KEYS[3]), if it still exists (an expired call is not made again as a hash holding
# only its failures), counts the failure, keeps when the first was (ARGV[3], ms) and
# lives another ARGV[4] s. Returns the failures and when the first was, 0 and 0 when the
# state is gone.
_SET_ASIDE = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 0 then return false end
if redis.call('EXISTS', KEYS[3]) == 0 then return {0, 0} end
redis.call('HSETNX', KEYS[3], 'log_failed_at', ARGV[3])
local failures = redis.call('HINCRBY', KEYS[3], 'log_failures', 1)
redis.call('EXPIRE', KEYS[3], ARGV[4])
return {failures, redis.call('HGET', KEYS[3], 'log_failed_at')}
"""


def set_aside_call_log(r: redis.Redis, call_sid: str, exc: BaseException) -> None:
    """Set aside a call whose log failed on its own (`exc` says why), in one step: off the
    calls waiting for their log, into `jobs.queues.CALL_LOGS_SET_ASIDE`, due again
    `CALL_LOG_SET_ASIDE_SECONDS` (600 s) from now, its state kept another day
    (`CALL_TTL_SECONDS`: it outlives every try, however long the log stays unwritable).
    Logs an error naming the CallSid and the reason (with the traceback the first time);
    the call's hash counts the failures (`log_failures`) and keeps when the first was
    (`log_failed_at`, ms since the epoch, UTC). A call another job has just set aside
    (the same batch split by two) is counted and named once."""
    now = time.time()
    counted = script(r, _SET_ASIDE)(
        keys=[CALL_LOGS_SET_ASIDE, CALLS_TO_LOG, keys.call(call_sid)],
        args=[call_sid, now + CALL_LOG_SET_ASIDE_SECONDS, int(now * 1000), CALL_TTL_SECONDS],
        client=r)
    if counted is None:
        log.info("call log of %s not written: set aside by another job already", call_sid)
        return
    failures, first_ms = int(counted[0]), int(counted[1])
    # The driver's own words for a database error: SQLAlchemy's add the statement and
    # every value of the row (the traceback, the first time, has them).
    lines = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    if not failures:
        log.error("call log of %s not written (%s): set aside, though its state in Redis "
                  "has expired: its next try has nothing to log", call_sid, reason,
                  exc_info=exc)
        return
    log.error(
        "call log of %s not written (%s): set aside, failure %d since %s; tried again "
        "every %d s until it is written", call_sid, reason, failures,
        datetime.fromtimestamp(first_ms / 1000, tz=UTC).isoformat(timespec="seconds"),
        CALL_LOG_SET_ASIDE_SECONDS, exc_info=exc if failures == 1 else None)


# Move the calls set aside (KEYS[1]) whose next try is due (score <= ARGV[1], Unix s)
# back among the calls to log (KEYS[2], scored ARGV[1]), at most ARGV[2], in one step:
# a job taking a batch meanwhile sees each call in exactly one of the two.
_PUT_BACK = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, sid in ipairs(due) do
  redis.call('ZREM', KEYS[1], sid)
  redis.call('ZADD', KEYS[2], 'NX', ARGV[1], sid)
end
return #due
"""


def retry_set_aside_call_logs(r: redis.Redis, now_s: float) -> int:
    """Put the calls set aside (`CALL_LOGS_SET_ASIDE`) whose next try is due by `now_s`
    (Unix seconds) back among the calls to log, up to `CALL_LOGS_PUT_BACK`, and queue the
    job that writes them unless one is queued or running (it takes them too). Returns how
    many were put back."""
    moved = int(script(r, _PUT_BACK)(
        keys=[CALL_LOGS_SET_ASIDE, CALLS_TO_LOG], args=[now_s, CALL_LOGS_PUT_BACK], client=r))
    if moved and r.set(CALL_LOGS_QUEUED, "set-aside", nx=True, ex=CALL_LOGS_QUEUED_SECONDS):
        queue_log_calls(r, f"retried-{int(now_s)}")
    return moved
