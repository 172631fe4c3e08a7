"""`caseline worker`: the RQ worker (with its scheduler, for the call-log jobs that
gather a second's calls), the wrap-up clock (`workers.wrapups`: a thread ending each
wrap-up on time, to the ms), plus RQ's cron scheduler running the reconciler and the
daily 180-day rule.

Jobs run inside the worker process (`SimpleWorker`), so a worker that dies
(SIGKILL, out of memory, a host restart) dies with its job: RQ finds such a
job only once its execution expires (the job timeout plus a minute) and a
worker next cleans its registries. A starting worker does not wait for that
when the dead worker ran on its own host: it hands that worker's jobs back to
RQ at once, which runs them again while retries are left (call-log jobs are
idempotent: a second run writes nothing twice).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time

import redis
import rq.cron
from rq import SimpleWorker
from rq.cron import CronScheduler
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import JobStatus

from config.settings import Settings
from directory.redis_client import connect_redis
from jobs.queues import SERIALIZER, JSONQueue, Queues
from workers import context
from workers.retries import count_retry
from workers.wrapups import end_due_wrapups, start_clock

RECONCILE_EVERY_SECONDS = 10
# RQ's registry cleanup (abandoned jobs of workers on other hosts) and the
# take-over of a dead scheduler's lock run this often (RQ's default: 10 minutes).
MAINTENANCE_EVERY_SECONDS = 60
log = logging.getLogger(__name__)


# How long the reconciler's schedule waits before it starts again after losing Redis
# (seconds): doubling from the first, up to the last.
CRON_RESTART_DELAYS = (1.0, 10.0)


def _run_cron(redis_url: str, worker_pid: int) -> None:
    """RQ's cron scheduler: enqueue the reconciler every few seconds, until stopped, or
    until its worker (`worker_pid`) is gone (`_stop_with_worker`).

    RQ's scheduler ends at the first Redis error (a restart, a failover, a blip of a
    second): started again here, after `CRON_RESTART_DELAYS`, for the reconciler is
    what repairs what such a blip leaves (calls whose end was lost, logs to write);
    stopped with it, it stayed stopped until the worker was restarted."""
    _stop_with_worker(worker_pid)
    delay, longest = CRON_RESTART_DELAYS
    # Stopped while still starting (Ctrl-C as `make run` comes up), or while waiting
    # to start again: RQ's loop, which handles a stop, was not running.
    with contextlib.suppress(StopRequested):
        while True:
            try:
                _schedule(redis_url).start()
                return
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as error:
                log.warning("the reconciler's schedule lost Redis (%s): starting it again "
                            "in %.0f s", error, delay)
            time.sleep(delay)
            delay = min(delay * 2, longest)


# How often (s) the cron process looks whether its worker is still there.
WORKER_WATCH_SECONDS = 1.0


def _stop_with_worker(worker_pid: int) -> None:
    """Stop this process (SIGTERM to itself: RQ's stop, or the default end) once the
    worker that started it (`worker_pid`) is gone: the reconciler's cron process, and
    RQ's scheduler, which RQ forks (`run_worker` has every fork of the worker call
    this). The worker stops them as it stops, but not when it dies at once: SIGKILL
    (the OOM killer, a process manager that kills only the main process, as
    supervisord does by default) or a stop signal before its handlers are installed.
    Orphaned, they went on for ever (the cron queueing the reconciler on the live
    Redis), one more with every restart."""

    def watch() -> None:
        while os.getppid() == worker_pid:
            time.sleep(WORKER_WATCH_SECONDS)
        log.warning("the worker (pid %d) is gone: process %d stops", worker_pid, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="worker-watch", daemon=True).start()


def _schedule(redis_url: str) -> CronScheduler:
    """The cron scheduler with the desk's jobs registered: the reconciler every
    `RECONCILE_EVERY_SECONDS`, the 180-day rule daily."""
    from workers.contacts import flag_inactive
    from workers.reconciler import reconcile

    cron = json_cron_scheduler(connect_redis(redis_url, decode_responses=False))
    cron.register(reconcile, Queues.PRESENCE, interval=RECONCILE_EVERY_SECONDS,
                  job_timeout=60, result_ttl=60)
    # Daily, early morning (server time), before the desk opens.
    cron.register(flag_inactive, Queues.MAINTENANCE, cron="15 4 * * *", job_timeout=600)
    return cron


# What stops a worker: Ctrl-C at a terminal, SIGTERM from a process manager.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class DeskCron(CronScheduler):
    """RQ's cron scheduler, stopped by the first stop signal only."""

    def _request_stop(self, signum: int, frame: object) -> None:
        """RQ's stop (it raises StopRequested), after which further stop signals are
        ignored: the terminal's Ctrl-C and then the worker's terminate (or a process
        manager signalling the whole group, then the worker) come as two, and the
        second one, raised inside RQ's cleanup, cut it short with a traceback."""
        for stop in STOP_SIGNALS:
            signal.signal(stop, signal.SIG_IGN)
        super()._request_stop(signum, frame)


def json_cron_scheduler(connection: redis.Redis) -> CronScheduler:
    """RQ's cron scheduler, enqueueing JSON jobs like everything else.

    rq 3.0's CronScheduler has no serializer option and builds plain `Queue`s
    (pickle), which the worker (JSON) could not read. Only the cron process
    calls this, so pointing `rq.cron` at a JSON queue there changes nothing else.
    """
    rq.cron.Queue = JSONQueue  # type: ignore[misc]
    return DeskCron(connection=connection, logging_level=logging.WARNING)


# How much lower than the web the worker runs (Linux's nice, 0-19) where both share a
# machine: a webhook keeps a caller waiting, a call log can wait a moment. Measured
# (docs/benchmarks.md): paced at 200 webhooks/s on one core, the web's p99 went from
# 16.6 to 12.5 ms at nice 10, with the same throughput and the logs kept up with.
WORKER_NICE = 10


def lower_priority(nice: int) -> int:
    """Run this process (and what it starts) at least at `nice` (0-19; raising it needs
    no privilege, so it never fails for lack of one); returns the nice it runs at."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, min(nice, 19))
    return os.getpriority(os.PRIO_PROCESS, 0)


class DeskWorker(SimpleWorker):
    """RQ's SimpleWorker, whose stop signals reach the thread that acts on them, and which
    outlives a Redis restart met during its maintenance. `stop_asked`: whether a stop
    signal (or RQ's shutdown command) asked it to stop."""

    stop_asked = False

    def request_stop(self, signum: int, frame: object) -> None:
        """RQ's warm shutdown, noted: a loop that ends without one ended on an error."""
        self.stop_asked = True
        super().request_stop(signum, frame)

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance (cleaning registries, every `MAINTENANCE_EVERY_SECONDS`),
        with Redis unreachable meanwhile logged, not raised. RQ retries a lost Redis
        while it waits for a job, but its work loop ends the worker at an error raised
        here: a Redis restart at that moment (a drill caught one right after the worker
        started) left the line with no worker, so no reconciler pass nor call log,
        until something restarted it. The maintenance stays due and runs once the wait
        for the next job, which waits for Redis, is over."""
        try:
            super().run_maintenance_tasks()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("the worker's maintenance lost Redis (%s): run again once it is "
                        "back", error)

    def subscribe(self) -> None:
        """RQ's listener for worker commands, its thread started with the stop signals
        blocked. Python runs signal handlers in the main thread only, and the kernel may
        hand a signal sent to the process to any thread that does not block it: one
        handed to the listener waited until the main thread's BLPOP returned (up to
        405 s), so a stopped worker sat on. Blocked there, it always reaches the main
        thread, which RQ's handler interrupts at once."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            super().subscribe()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


    def unsubscribe(self) -> None:
        """RQ's listener stopped, then unsubscribed, so that the unsubscribe's reply
        wakes it to find itself stopped. RQ unsubscribes first: the listener takes the
        reply, waits again (up to 60 s), and every worker's end waits out RQ's 1 s join,
        which a burst run (the tests run jobs that way, one after the other) pays each
        time."""
        if self.pubsub_thread:
            self.pubsub_thread.stop()
            self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=1)
            self.pubsub.close()


def run_worker(settings: Settings, *, burst: bool = False, nice: int = WORKER_NICE) -> None:
    """Work the queues until stopped (or until empty with `burst`), at least at `nice`
    (`WORKER_NICE` by default; 0 keeps the priority it was started with)."""
    assert settings.redis_url
    lower_priority(nice)
    context.configure(context.build_desk(settings, settings.redis_url))
    cron = None
    clock = None
    if burst:
        _end_due_wrapups_once()
    else:
        clock = start_clock()
        # RQ forks its scheduler as the worker starts: it stops with the worker too.
        os.register_at_fork(after_in_child=functools.partial(_stop_with_worker, os.getpid()))
        cron = multiprocessing.get_context("spawn").Process(
            target=_run_cron, args=(settings.redis_url, os.getpid()), daemon=True,
            name="caseline-cron"
        )
        cron.start()
    connection = connect_redis(settings.redis_url, decode_responses=False)
    delay, longest = CRON_RESTART_DELAYS
    try:
        while True:
            try:
                worker = _work(connection, burst)
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as error:
                # Lost before RQ's loop began (recovering jobs), or met while waiting below.
                log.warning("the worker lost Redis (%s): starting again in %.0f s", error,
                            delay)
            else:
                if burst or worker.stop_asked:
                    return
                # RQ's loop quits at a Redis error anywhere but its wait for a job (a job
                # under way, its bookkeeping, the heartbeat), returning as if all were
                # well: the line would have no call logs, wrap-up ends nor reconciler
                # until someone restarted the worker.
                log.error("the worker's loop ended on its own (Redis lost under a job?): "
                          "starting it again in %.0f s", delay)
            _sleep_unless_stopped(delay)
            delay = min(delay * 2, longest)
    finally:
        if clock is not None:
            clock.set()
        if cron is not None and cron.is_alive():
            cron.terminate()


def _end_due_wrapups_once() -> None:
    """A burst's share of the wrap-up clock: the wrap-ups due by now ended, once, as
    RQ's scheduler queues the jobs due when a burst starts."""
    try:
        end_due_wrapups(context.current_desk(), lambda end: end())
    except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as error:
        log.warning("the wrap-up ends due could not be read (%s): the next worker ends "
                    "them", error)


def _work(connection: redis.Redis, burst: bool) -> DeskWorker:
    """One RQ worker, working until its loop ends; the worker (`stop_asked` says whether
    a stop signal ended it). Redis's errors before the loop begins are raised."""
    # Jobs are short, ours and idempotent: run them in this process rather
    # than forking a work horse per job (tens of ms each). RQ's per-job INFO
    # lines would log the reconciler every 10 s; jobs log what matters.
    worker = DeskWorker(list(Queues.ALL), connection=connection, serializer=SERIALIZER,
                        maintenance_interval=MAINTENANCE_EVERY_SECONDS,
                        exception_handlers=[count_retry])
    recovered = recover_abandoned_jobs(worker)
    if recovered:
        log.warning("running again %d job(s) left unfinished by a dead worker: %s",
                    len(recovered), ", ".join(recovered))
    worker.work(with_scheduler=True, burst=burst, logging_level="WARNING")
    return worker


def _sleep_unless_stopped(seconds: float) -> None:
    """Wait `seconds` before the worker starts again; a stop signal meanwhile (RQ's
    handlers are gone with the loop that installed them) ends the process at once."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stop)
    time.sleep(seconds)


def recover_abandoned_jobs(worker: SimpleWorker) -> list[str]:
    """Jobs a worker that died on this host had taken, handed back to RQ now: a job
    it had started is abandoned (run again while retries are left), one it had
    only taken off the queue goes back on it; their ids."""
    host = socket.gethostname()
    recovered = []
    for queue in worker.queues:
        registry = queue.started_job_registry
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            execution = Execution(execution_id, job_id, connection=worker.connection)
            try:
                execution.refresh()
            except Exception:  # noqa: BLE001 - gone meanwhile: nothing to recover
                continue
            if not _died_here(worker.connection, execution.worker_name, host, worker.name):
                continue
            job = queue.fetch_job(job_id)
            if job is None:
                continue
            if job.get_status() == JobStatus.STARTED:
                # Expired now: RQ's cleanup below treats it as any abandoned job.
                worker.connection.zadd(registry.key, {execution.composite_key: 0}, xx=True)
            else:
                with worker.connection.pipeline() as pipe:
                    execution.delete(job=job, pipeline=pipe)
                    pipe.execute()
                queue.intermediate_queue.remove(job_id)
                queue.enqueue_job(job)
            recovered.append(job_id)
        registry.cleanup()
    return recovered


def _died_here(connection: redis.Redis, worker_name: str, host: str, own_name: str) -> bool:
    """Whether a worker is known to have run on this host and to be gone now."""
    prefix = SimpleWorker.redis_worker_namespace_prefix
    hostname, pid = connection.hmget(prefix + worker_name, "hostname", "pid")
    if not hostname or not pid or hostname.decode() != host:
        return False  # elsewhere, or unknown: RQ's own expiry will deal with it
    number = int(pid)
    if number == os.getpid():
        return worker_name != own_name  # a restarted container may reuse the pid
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # a live process of another user
    return False
