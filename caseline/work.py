"""`caseline worker`: the RQ worker (with its scheduler, for wrap-up ends)
plus RQ's cron scheduler running the reconciler and the daily 180-day rule."""

from __future__ import annotations

import logging
import multiprocessing

import redis
import rq.cron
from rq import SimpleWorker
from rq.cron import CronScheduler

from config.settings import Settings
from workers import context
from workers.queues import SERIALIZER, JSONQueue, Queues

RECONCILE_EVERY_SECONDS = 10
log = logging.getLogger(__name__)


def _run_cron(redis_url: str) -> None:
    """RQ's cron scheduler: enqueue the reconciler every few seconds."""
    from workers.contacts import flag_inactive
    from workers.presence import reconcile

    cron = json_cron_scheduler(redis.Redis.from_url(redis_url))
    cron.register(reconcile, Queues.PRESENCE, interval=RECONCILE_EVERY_SECONDS,
                  job_timeout=60, result_ttl=60)
    # Daily, early morning (server time), before the desk opens.
    cron.register(flag_inactive, Queues.MAINTENANCE, cron="15 4 * * *", job_timeout=600)
    cron.start()


def json_cron_scheduler(connection: redis.Redis) -> CronScheduler:
    """RQ's cron scheduler, enqueueing JSON jobs like everything else.

    rq 3.0's CronScheduler has no serializer option and builds plain `Queue`s
    (pickle), which the worker (JSON) could not read. Only the cron process
    calls this, so pointing `rq.cron` at a JSON queue there changes nothing else.
    """
    rq.cron.Queue = JSONQueue  # type: ignore[misc]
    return CronScheduler(connection=connection, logging_level=logging.WARNING)


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """Work the queues until stopped (or until empty with `burst`)."""
    assert settings.redis_url
    context.configure(context.build_desk(settings, settings.redis_url))
    cron = None
    if not burst:
        cron = multiprocessing.get_context("spawn").Process(
            target=_run_cron, args=(settings.redis_url,), daemon=True, name="caseline-cron"
        )
        cron.start()
    connection = redis.Redis.from_url(settings.redis_url)
    try:
        # Jobs are short, ours and idempotent: run them in this process rather
        # than forking a work horse per job (tens of ms each). RQ's per-job INFO
        # lines would log the reconciler every 10 s; jobs log what matters.
        SimpleWorker(list(Queues.ALL), connection=connection, serializer=SERIALIZER).work(
            with_scheduler=True, burst=burst, logging_level="WARNING"
        )
    finally:
        if cron is not None and cron.is_alive():
            cron.terminate()
