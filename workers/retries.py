"""Counting the jobs RQ retries, for `GET /metrics` (which reads the count from Redis:
the worker may run on another host than the web service that is scraped)."""

from __future__ import annotations

from typing import Any

from directory import keys


def count_retry(job: Any, *_exc_info: Any) -> bool:
    """RQ exception handler: a failed job with retries left is about to be retried; count it.

    RQ calls its exception handlers before it decides, so `retries_left` is still
    the count before this retry. Returns True: RQ's own handling goes on.
    """
    if job.retries_left:
        job.connection.incr(keys.jobs_retried(job.origin))
    return True
