#!/usr/bin/env bash
# Run the whole test suite with every process's clock moved to a given moment
# (libfaketime, Debian's `faketime`), to show the suite does not depend on the
# hour it runs at: scripts/test-at.sh "2026-11-29 09:00:00 UTC" (03:00 Sunday
# in Chicago). The offset is relative, so the clock ticks and every process
# (pytest, gunicorn, the worker, redis) agrees on it.
set -euo pipefail
cd "$(dirname "$0")/.."
at=${1:-"next Sunday 09:00 UTC"}
command -v faketime >/dev/null || apt-get install -y -qq faketime >/dev/null
offset=$(( $(date -d "$at" +%s) - $(date +%s) ))
echo "faked clock: $(faketime -f "$offset" date -u) ($(TZ=America/Chicago faketime -f "$offset" date))"
shift || true
# The monotonic clock stays real: timeouts and sleeps measure durations, not dates.
export FAKETIME_DONT_FAKE_MONOTONIC=1
exec faketime -f "$offset" .venv/bin/pytest -q -p no:cacheprovider "$@"
