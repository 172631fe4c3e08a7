"""Run a `caseline` command with the test suite's clock: `python -m tests.frozen_clock
ISO-TIME [--spawned=EPOCH] serve ...`.

Tests that start real processes (gunicorn forks its workers from this one, so
they inherit the travel) must not depend on the hour the suite runs at: the
desk is closed at night and on weekends, and its callers would reach voicemail.
The clock ticks from the given instant (UTC, ISO 8601). With `--spawned`, that
instant is what the clock read at the real time EPOCH (seconds since the epoch),
when the test started this process (`tests.conftest.caseline_command`): the
time this interpreter took to start does not put it behind the test.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta

import time_machine

SPAWNED = "--spawned="


def main() -> None:
    """Travel to argv[1] (as of the `--spawned` instant), then run `caseline` with the
    rest of the arguments."""
    at = datetime.fromisoformat(sys.argv[1])
    args = sys.argv[2:]
    if args and args[0].startswith(SPAWNED):
        at += timedelta(seconds=time.time() - float(args.pop(0).removeprefix(SPAWNED)))
    traveller = time_machine.travel(at, tick=True)
    traveller.start()
    # time-machine's clock starts ticking at its first reading, not at `start`: read
    # it now, or this process runs behind the test by however long its imports take
    # (seconds on a busy host), and a wrap-up it ends on time looks seconds late.
    time.time()
    from caseline.cli import main as caseline

    sys.argv = ["caseline", *args]
    caseline()


if __name__ == "__main__":
    main()
