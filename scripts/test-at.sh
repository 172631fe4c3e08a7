#!/usr/bin/env bash
# Run the whole test suite with every Python process's clock moved to a given
# moment, to show the suite does not depend on the hour it runs at:
#   scripts/test-at.sh "2026-11-29 09:00:00 UTC"    (03:00 on a Sunday in Chicago)
# Every Python process (pytest, gunicorn and its workers, `caseline worker`,
# `caseline call`) starts with its wall clock shifted by the same offset
# (time_machine, from a sitecustomize on PYTHONPATH), so they agree on the
# time and it keeps ticking; monotonic clocks and sleeps stay real. (libfaketime
# was tried first: it breaks Python 3.11's timed sleeps and lock waits.)
set -euo pipefail
cd "$(dirname "$0")/.."
at=${1:?usage: scripts/test-at.sh "YYYY-MM-DD HH:MM:SS UTC" [pytest args]}
shift
offset=$(( $(date -d "$at" +%s) - $(date +%s) ))
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
cat > "$shim/sitecustomize.py" <<'PY'
import os
import time

import time_machine

time_machine.travel(time.time() + float(os.environ["CASELINE_CLOCK_OFFSET"]), tick=True).start()
PY
export CASELINE_CLOCK_OFFSET=$offset
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
.venv/bin/python -c 'from datetime import datetime; from zoneinfo import ZoneInfo as Z;
print("every clock starts at", datetime.now(Z("America/Chicago")).isoformat())'
# time_machine is imported before pytest could rewrite it (it is not under test).
.venv/bin/pytest -q -p no:cacheprovider -W "ignore::pytest.PytestAssertRewriteWarning" "$@"
