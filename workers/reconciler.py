"""The reconciler's jobs: the end of an advisor's wrap-up (scheduled when it starts), and
the periodic pass that frees holds nobody released and drops callers who are gone."""

from __future__ import annotations

import time

from routing import acd, availability
from workers.context import current_desk


def end_wrapup(advisor_id: str, call_sid: str) -> str:
    """Wrap-up is over: the advisor becomes available or takes the next caller."""
    release = availability.end_wrapup(current_desk(), advisor_id, call_sid, int(time.time() * 1000))
    return release.outcome


def reconcile() -> dict[str, int]:
    """Free advisors whose hold expired and drop waiting callers who are gone."""
    return acd.reconcile(current_desk(), int(time.time() * 1000))
