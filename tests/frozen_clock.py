"""Run a `caseline` command with the test suite's clock: `python -m tests.frozen_clock
ISO-TIME serve ...`.

Tests that start real processes (gunicorn forks its workers from this one, so
they inherit the travel) must not depend on the hour the suite runs at: the
desk is closed at night and on weekends, and its callers would reach voicemail.
The clock still ticks from the given instant (UTC, ISO 8601).
"""

from __future__ import annotations

import sys
from datetime import datetime

import time_machine


def main() -> None:
    """Travel to argv[1], then run `caseline` with the rest of the arguments."""
    at = datetime.fromisoformat(sys.argv[1])
    traveller = time_machine.travel(at, tick=True)
    traveller.start()
    from caseline.cli import main as caseline

    sys.argv = ["caseline", *sys.argv[2:]]
    caseline()


if __name__ == "__main__":
    main()
