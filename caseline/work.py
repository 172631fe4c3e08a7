"""`caseline worker`: the RQ worker (with its scheduler, for wrap-up ends)
plus RQ's cron scheduler running the reconciler and the daily 180-day rule."""

from __future__ import annotations

import logging
import multiprocessing

import redis
from rq import SimpleWorker
from rq.cron import CronScheduler

from config.settings import Settings
from workers import context
from workers.queues import Queues

RECONCILE_EVERY_SECONDS = 10
log = logging.getLogger(__name__)


def _run_cron(redis_url: str) -> None:
    """RQ's cron scheduler: enqueue the reconciler every few seconds."""
    from workers.contacts import flag_inactive
    from workers.presence import reconcile

    cron = CronScheduler(connection=redis.Redis.from_url(redis_url), logging_level=logging.WARNING)
    cron.register(reconcile, Queues.PRESENCE, interval=RECONCILE_EVERY_SECONDS,
                  job_timeout=60, result_ttl=60)
    # Daily, early morning (server time), before the desk opens.
    cron.register(flag_inactive, Queues.MAINTENANCE, cron="15 4 * * *", job_timeout=600)
    cron.start()


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
        SimpleWorker(list(Queues.ALL), connection=connection).work(
            with_scheduler=True, burst=burst, logging_level="WARNING"
        )
    finally:
        if cron is not None and cron.is_alive():
            cron.terminate()
