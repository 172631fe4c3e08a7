"""`GET /metrics`: Prometheus's text format, with no token (serve it where only the
monitoring system reaches it).

Counters and the webhook latency histogram live in each web process; under
gunicorn, `caseline serve` sets PROMETHEUS_MULTIPROC_DIR (a folder of its own
under the instance path, `prometheus/<master pid>`, emptied at start; see
`caseline.server.prepare_metrics_dir`) so that one scrape adds up every worker
process of this service, and of no other. What lives in Redis (waiting callers per
team, RQ's queue lengths, jobs retried by the workers, wherever they run) is read at
scrape time; while Redis cannot be read, a scrape still answers, with the process's own counters and
`caseline_redis_reachable 0` instead, so the backend errors that tell why stay in view.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError

from config.prompts import Prompts
from directory import keys
from ivr.context import desk, prompts
from jobs.queues import CALL_LOGS_SET_ASIDE, Queues, queue
from routing.desk import Desk
from routing.stats import queue_kinds
from routing.waiting import team_names

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

CALLS = Counter("caseline_calls", "Calls ended, by the first menu key and how the call ended",
                ["option", "outcome"])
WEBHOOK_SECONDS = Histogram("caseline_webhook_seconds", "Time to answer a Twilio webhook",
                            ["webhook"])
BACKEND_ERRORS = Counter("caseline_backend_errors", "Failures of Redis or the database "
                         "inside a request", ["backend"])

CALLS_REFUSED_TOO_MANY = Counter(
    "caseline_calls_refused_too_many",
    "Calls refused at the front door because their number placed too many calls lately "
    "(CASELINE_CALLS_PER_NUMBER); each counted once, when refused")

_MENU_KEYS = set("0123456789")


def count_call(call: dict[str, str], outcome: str) -> None:
    """Count an ended call by its first menu key (or `none`) and its outcome."""
    first = (call.get("menu") or "").split(">", 1)[0]
    CALLS.labels(option=first if first in _MENU_KEYS else "none", outcome=outcome).inc()


def count_refused_too_many() -> None:
    """Count a call refused for too many calls from its number (not Twilio's repeat)."""
    CALLS_REFUSED_TOO_MANY.inc()


def count_error(exc: BaseException) -> None:
    """Count a failure of Redis or the database (other errors are not counted here)."""
    if isinstance(exc, redis.RedisError):
        BACKEND_ERRORS.labels(backend="redis").inc()
    elif isinstance(exc, SQLAlchemyError):
        BACKEND_ERRORS.labels(backend="database").inc()


class _RedisCollector:
    """What Redis knows, read at scrape time."""

    def __init__(self, d: Desk) -> None:
        """Read from the desk's Redis (decoded) and RQ's (bytes)."""
        self.desk = d

    def collect(self) -> Iterator[Metric]:
        """Waiting callers per team, jobs queued per queue, jobs retried per queue, calls
        whose log is set aside, and whether Redis could be read (1 or 0): when it could
        not, that gauge alone, so the scrape still carries the process's counters."""
        reachable = GaugeMetricFamily(
            "caseline_redis_reachable", "1 when this scrape could read Redis, 0 when not")
        try:
            families = list(self._read())
        except redis.RedisError as exc:
            count_error(exc)
            log.warning("/metrics: Redis could not be read: %s", exc)
            reachable.add_metric([], 0)
            yield reachable
            return
        reachable.add_metric([], 1)
        yield from (*families, reachable)

    def _teams(self) -> list[str]:
        """Every team, rebuilding the directory cache when Redis came back empty; the
        teams Redis still knows when the database cannot rebuild it."""
        try:
            return team_names(self.desk, int(time.time() * 1000))
        except SQLAlchemyError as exc:
            count_error(exc)
            log.warning("/metrics: the directory cache could not be rebuilt: %s", exc)
            return sorted(self.desk.r.smembers(keys.teams()))

    def _read(self) -> Iterator[Metric]:
        """The gauges read from Redis; redis-py's errors when it cannot be read."""
        r, job_redis = self.desk.r, self.desk.job_redis
        waiting = GaugeMetricFamily("caseline_waiting_callers",
                                    "Callers waiting on hold, per team", labels=["team"])
        callbacks = GaugeMetricFamily(
            "caseline_callbacks_pending",
            "Callbacks asked for and not yet placed, per team (keeping a place in line)",
            labels=["team"])
        for team in self._teams():
            # A callback keeps its place overnight: not a caller on hold (the alert's).
            on_hold, _, pending, _ = queue_kinds(self.desk, team)
            waiting.add_metric([team], on_hold)
            callbacks.add_metric([team], pending)
        queued = GaugeMetricFamily("caseline_jobs_queued", "Jobs waiting in an RQ queue",
                                   labels=["queue"])
        retried = CounterMetricFamily("caseline_jobs_retried", "Jobs retried by the workers",
                                      labels=["queue"])
        for name in Queues.ALL:
            queued.add_metric([name], queue(name, job_redis).count)
            retried.add_metric([name], int(r.get(keys.jobs_retried(name)) or 0))
        set_aside = GaugeMetricFamily(
            "caseline_call_logs_set_aside",
            "Calls whose log could not be written, set aside to be tried again")
        set_aside.add_metric([], r.zcard(CALL_LOGS_SET_ASIDE))
        yield from (waiting, callbacks, queued, retried, set_aside)


def _process_metrics() -> bytes:
    """The counters and histograms of every web process (or of this one)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class _PromptsCollector:
    """Whether this process speaks from the prompts file on disk, read at scrape time."""

    def __init__(self, prompts: Prompts) -> None:
        """Read from the app's prompts."""
        self.prompts = prompts

    def collect(self) -> Iterator[Metric]:
        """1 when the prompts file on disk is the one in use, 0 while it cannot be used
        and the last good prompts are said instead (the log says why)."""
        usable = GaugeMetricFamily(
            "caseline_prompts_file_usable",
            "1 when the prompts file on disk is in use, 0 while the last good prompts are")
        self.prompts.text("voice.voice")  # looks at the file, as a call would
        usable.add_metric([], 1 if self.prompts.problem is None else 0)
        yield usable


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus's text format (no token)."""
    live = CollectorRegistry()
    live.register(_RedisCollector(desk()))  # type: ignore[arg-type]
    live.register(_PromptsCollector(prompts()))  # type: ignore[arg-type]
    read = generate_latest(live)  # first: a Redis error it meets is counted below
    body = _process_metrics() + read
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def install(app: Flask) -> None:
    """Time every webhook and serve /metrics."""

    @app.before_request
    def start_timer() -> None:
        """Note when the request began."""
        g.metrics_started = time.perf_counter()

    @app.after_request
    def observe(response: Any) -> Any:
        """A webhook's latency, labelled by its route (never the raw path)."""
        started = g.get("metrics_started")
        if started is not None and request.path.startswith("/voice/"):
            rule = request.url_rule.rule if request.url_rule else "unknown"
            WEBHOOK_SECONDS.labels(webhook=rule).observe(time.perf_counter() - started)
        return response

    app.register_blueprint(bp)
