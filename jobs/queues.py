"""Queue names and the functions that put caseline's jobs on them.

Job functions are named by dotted path so this module imports no job code:
web processes and `routing` can enqueue without importing workers.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

# Jobs are stored as JSON, never pickle: whoever can write to Redis must not be
# able to make a worker run code. Jobs take ids (strings), so JSON is enough.
SERIALIZER = JSONSerializer


class Queues:
    """Every RQ queue caseline uses."""

    CALL_LOGS = "call-logs"
    PRESENCE = "presence"
    MAINTENANCE = "maintenance"

    ALL = (PRESENCE, CALL_LOGS, MAINTENANCE)


def queue(name: str, r: redis.Redis) -> Queue:
    """One of caseline's queues, with its serializer."""
    return Queue(name, connection=r, serializer=SERIALIZER)


class JSONQueue(Queue):
    """A Queue that serializes with JSON unless told otherwise (for RQ's cron, which
    builds its queues itself and takes no serializer)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        """Queue's own arguments, with SERIALIZER by default."""
        kwargs.setdefault("serializer", SERIALIZER)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


# A database outage of up to ~15 minutes is ridden out by retries. The first
# retry is immediate: a job whose worker died is run again by the next worker
# without waiting for RQ's scheduler (whose lock a dead worker may still hold).
CALL_LOG_RETRY = Retry(max=13, interval=[0, 1, 2, 5, 10, 30, 60, 120, 120, 120, 120, 120, 120])


# Calls whose log is still to be written, a sorted set (CallSid, scored by when the
# call ended), and the mark that a job to write them is scheduled, queued or running
# (it comes off when the job finds no call waiting). RQ's own keys live
# under `rq:`; these two are caseline's (`cl:`, as `directory.keys` names the
# others), kept here beside the jobs that use them.
CALLS_TO_LOG = "cl:call-logs:to-write"
# Calls whose state changed after their end (`requeue_call_log`), a set: a job writing
# their logs takes a call off the calls to log only if it did not change after the job
# read it (`workers.call_log.write_call_logs`). Almost always empty.
CALLS_CHANGED = "cl:call-logs:changed"
CALL_LOGS_QUEUED = "cl:call-logs:queued"
# The mark expires (a running job renews it), so a job lost outright or waiting out a
# database outage between retries holds nothing up for long: the next call to end
# queues another.
CALL_LOGS_QUEUED_SECONDS = 60
# Calls whose log could not be written for a reason of their own (its data, a case it
# opens), not the database being down: taken off the calls to log so they hold no other
# call back, and kept here (CallSid, scored by when to try again, Unix seconds) until a
# try writes the log. The reconciler puts the due ones back among the calls to log.
CALL_LOGS_SET_ASIDE = "cl:call-logs:set-aside"
# How long a call set aside waits for its next try: time for an operator to fix the data
# (the error naming the CallSid says what failed), and at most one failed try of it per
# interval however long it stays unwritable.
CALL_LOG_SET_ASIDE_SECONDS = 600
# A failing batch being split (`workers.call_log.write_or_set_aside`): the size of the
# part the split tries next, and so how many calls the next batch takes, so a job whose
# time is up mid-split (it hands over), or that dies, leaves the next job to go on from
# there rather than from a whole batch again. Gone when a split ends, doubled by each
# batch taken at it and written whole; it expires meanwhile, so a split left unfinished
# costs smaller batches for ten minutes at most.
CALL_LOGS_SPLIT = "cl:call-logs:split"
CALL_LOGS_SPLIT_SECONDS = 600
# Calls put back per reconciler pass at most (one script): the job takes them 200 at a
# time, and any left are due on the next pass, 10 s later.
CALL_LOGS_PUT_BACK = 1000
# The job is queued to run this long after the first call to end (RQ's scheduler, run by
# `caseline worker`, puts it on the queue; its schedule has whole-second resolution and
# it looks every second): calls that end meanwhile ride on it, so in a storm one RQ job
# (some 60 Redis commands of RQ's bookkeeping) writes a second's calls, not each call.
# A call's log is in the database up to ~2 s after the call ended.
CALL_LOG_GATHER_SECONDS = 1


def call_log_job_id(call_sid: str) -> str:
    """The id of the job queued when `call_sid` ended and no job was queued to write the
    calls waiting for their log (it writes them all, this one among them)."""
    return f"log-calls-{call_sid}"


def enqueue_call_log(r: redis.Redis, call_sid: str) -> None:
    """Put the call among the calls to log, and queue the job that writes them unless one
    is queued already, to run `CALL_LOG_GATHER_SECONDS` later: one job writes the logs of
    every call that ended meanwhile."""
    pipe = r.pipeline(transaction=False)
    pipe.zadd(CALLS_TO_LOG, {call_sid: time.time()}, nx=True)
    pipe.set(CALL_LOGS_QUEUED, call_sid, nx=True, ex=CALL_LOGS_QUEUED_SECONDS)
    _, first = pipe.execute()
    if first:
        queue_log_calls(r, call_sid, after_s=CALL_LOG_GATHER_SECONDS)


def requeue_call_log(r: redis.Redis, call_sid: str) -> None:
    """The call changed after its end (a webhook Twilio posted late): put it among the
    calls to log again, so its log, written or about to be, is brought up to date from
    the call's state (`workers.call_log.write_call_logs`).

    It is marked changed first (`CALLS_CHANGED`), then put among the calls to log: a
    job that read the call before this change and commits after the mark leaves it
    among the calls to log; one that commits before the mark has taken it off, and it
    is put back. Either way the next batch reads the change."""
    pipe = r.pipeline(transaction=False)
    pipe.sadd(CALLS_CHANGED, call_sid)
    pipe.zadd(CALLS_TO_LOG, {call_sid: time.time()}, nx=True)
    pipe.set(CALL_LOGS_QUEUED, call_sid, nx=True, ex=CALL_LOGS_QUEUED_SECONDS)
    *_, first = pipe.execute()
    if first:
        queue_log_calls(r, call_sid, after_s=CALL_LOG_GATHER_SECONDS)


def resume_call_logs(r: redis.Redis, now_s: float) -> bool:
    """Queue the job that writes call logs when calls have waited for theirs longer than
    a job's mark lasts (`CALL_LOGS_QUEUED_SECONDS`) and no job is marked: the last job
    failed for good (every retry used while the database was down) and no call has
    ended since to queue another. `now_s`: Unix seconds. True when a job was queued."""
    oldest = r.zrange(CALLS_TO_LOG, 0, 0, withscores=True)
    if not oldest or now_s - float(oldest[0][1]) < CALL_LOGS_QUEUED_SECONDS:
        return False
    if not r.set(CALL_LOGS_QUEUED, "reconciler", nx=True, ex=CALL_LOGS_QUEUED_SECONDS):
        return False
    queue_log_calls(r, f"resumed-{int(now_s)}")
    return True


def queue_log_calls(r: redis.Redis, call_sid: str, after_s: float = 0) -> None:
    """Queue the job that writes the waiting calls' logs, named for the call that queued it;
    with `after_s` (seconds), scheduled to run that much later rather than at once."""
    _enqueue_on_the_log(r, "workers.call_log.log_calls", None, call_log_job_id(call_sid),
                        after_s)


def _enqueue_on_the_log(r: redis.Redis, function: str, call_sid: str | None,
                        job_id: str, after_s: float = 0) -> None:
    """Queue one of the jobs that write a call's log: retried (a database down, a log
    not written yet), one job per id (duplicates collapse), kept a week when failed;
    with `after_s` (seconds), on RQ's schedule that much later."""
    args = () if call_sid is None else (call_sid,)
    options = {"job_id": job_id, "retry": CALL_LOG_RETRY, "result_ttl": 3600,
               "failure_ttl": 7 * 24 * 3600}
    if after_s:
        queue(Queues.CALL_LOGS, r).enqueue_in(timedelta(seconds=after_s), function, *args,
                                              **options)
    else:
        queue(Queues.CALL_LOGS, r).enqueue(function, *args, **options)


def enqueue_transcription(r: redis.Redis, call_sid: str) -> None:
    """Queue the job that puts a voicemail's transcription on the call's log."""
    _enqueue_on_the_log(r, "workers.call_log.attach_transcription", call_sid,
                        f"attach-transcription-{call_sid}")


def enqueue_colleagues(r: redis.Redis, call_sid: str, leg: str, status: str) -> None:
    """Queue the job that brings the colleagues on a call's log up to date (a
    colleague's leg ending after the call's log was written)."""
    _enqueue_on_the_log(r, "workers.call_log.attach_colleagues", call_sid,
                        f"attach-colleagues-{call_sid}-{leg}-{status}")


def enqueue_recording(r: redis.Redis, call_sid: str) -> None:
    """Queue the job that adds a voicemail, posted after the call's end, to its log."""
    _enqueue_on_the_log(r, "workers.call_log.attach_recording", call_sid,
                        f"attach-recording-{call_sid}")


def end_of_wrapup_job_id(advisor_id: str, call_sid: str) -> str:
    """The id of the RQ job that ended `advisor_id`'s wrap-up after `call_sid` (one per
    call) in releases before the wrap-up clock (`WRAPUP_ENDS`): such a job, scheduled
    before an upgrade, still runs (`workers.reconciler.end_wrapup`)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"end-wrapup-{advisor_id}-{call_sid}")


def drop_job(r: redis.Redis, job_id: str) -> bool:
    """Delete a job (queued or scheduled) by id; False when there is none."""
    try:
        job = Job.fetch(job_id, connection=r, serializer=SERIALIZER)
    except NoSuchJobError:
        return False
    job.delete()
    return True


# The ends of advisors' wrap-ups to come: a sorted set of (advisor id, CallSid), as
# `wrapup_end` spells them, scored by when the wrap-up ends (ms since the epoch). The
# wrap-up clock of every `caseline worker` (`workers.wrapups`) takes each one as it
# falls due and ends that wrap-up (`routing.availability.end_wrapup`). RQ's schedule
# could not: whole seconds, and a scheduler that looks once a second, so a wrap-up
# ended 0-2 s late (PRODUCT.md: the waiting caller is connected within a second).
WRAPUP_ENDS = "cl:wrapup:ends"


def wrapup_end(advisor_id: str, call_sid: str) -> str:
    """The member of `WRAPUP_ENDS` for `advisor_id`'s wrap-up after `call_sid` (one per
    call: scheduling it again moves its end, never adds a second)."""
    return json.dumps([advisor_id, call_sid])


def schedule_end_of_wrapup(
    r: redis.Redis, advisor_id: str, call_sid: str, until_ms: int
) -> None:
    """Make the advisor available again once their wrap-up after `call_sid` is over, at
    `until_ms` (ms since the epoch), by the wrap-up clock of `caseline worker`."""
    r.zadd(WRAPUP_ENDS, {wrapup_end(advisor_id, call_sid): until_ms})
