#!/usr/bin/env bash
# `make run`: the whole line on this machine, nothing installed beyond Python.
# Web, worker, an embedded Redis (started by caseline itself) and a local
# emulator of Twilio's REST API, so `caseline call` can play the caller.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

export PORT="${PORT:-8000}"
export TWILIO_AUTH_TOKEN="${TWILIO_AUTH_TOKEN:-dev-auth-token}"
export TWILIO_ACCOUNT_SID="${TWILIO_ACCOUNT_SID:-AC00000000000000000000000000000000}"
export CASELINE_API_TOKEN="${CASELINE_API_TOKEN:-dev-api-token}"
export CASELINE_EMULATOR_URL="${CASELINE_EMULATOR_URL:-http://127.0.0.1:8099}"
export TWILIO_API_URL="${TWILIO_API_URL:-$CASELINE_EMULATOR_URL}"
export CASELINE_WRAPUP_SECONDS="${CASELINE_WRAPUP_SECONDS:-5}"

$BIN/caseline directory load demo/directory.json

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

$BIN/caseline twilio-emulator --port "${CASELINE_EMULATOR_URL##*:}" & pids+=($!)
$BIN/caseline worker & pids+=($!)
$BIN/caseline serve & pids+=($!)

# Wait for the web service (Python, not curl: a fresh machine may have no curl).
$BIN/python - "$PORT" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
PY

cat <<MSG

  caseline is answering on http://127.0.0.1:$PORT  (Voice URL: /voice/incoming)

  Place a call from another terminal (Pat Lee of Lakeview, case 2024117):

    export PORT=$PORT TWILIO_AUTH_TOKEN=$TWILIO_AUTH_TOKEN CASELINE_EMULATOR_URL=$CASELINE_EMULATOR_URL
    .venv/bin/caseline call --from "+16125550101" --keys "1 2024117#" --advisor answer

  Put advisor A7 on the line first (or the call waits in the queue):

    curl -X PUT -H "Authorization: Bearer $CASELINE_API_TOKEN" \\
         -H "Content-Type: application/json" -d '{"status": "available"}' \\
         http://127.0.0.1:$PORT/api/advisors/A7/status

  Ctrl-C stops everything.
MSG
wait
