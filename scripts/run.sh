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
INSTANCE="${CASELINE_INSTANCE_PATH:-instance}"
# Ctrl-C (SIGINT to the terminal's whole foreground group) stops web and worker by
# itself; the script then waits for them, and stops the embedded Redis last (started
# by `directory load` above in a session of its own, shared by web and worker, so the
# Ctrl-C does not reach it): the next `make run` starts from the demo directory again.
cleanup() {
  trap '' INT TERM  # a second Ctrl-C still reaches the services, never cuts this short
  if [ ${#pids[@]} -gt 0 ]; then
    echo "Stopping the web service, the worker and the Twilio emulator..."
    # SIGTERM too: the emulator ignores SIGINT here (a background job of a script),
    # and a plain `kill` of this script is no Ctrl-C.
    kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true
    echo "Stopped the web service, the worker and the Twilio emulator."
  fi
  if [ -z "${REDIS_URL:-}" ] && [ -f "$INSTANCE/redis.pid" ]; then
    redis_pid="$(cat "$INSTANCE/redis.pid")"
    if kill "$redis_pid" 2>/dev/null; then
      # Not this script's child, so no `wait`: watch it go (a zombie has gone).
      for _ in $(seq 50); do
        state="$(ps -o stat= -p "$redis_pid" 2>/dev/null)" || break
        [[ $state == Z* ]] && break
        sleep 0.1
      done
      echo "Stopped the embedded Redis."
    fi
    rm -f "$INSTANCE/redis.pid"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# The desk's hours are Central time: say what a call gets right now.
if $BIN/python -c 'import sys; from datetime import UTC, datetime; from config.hours import is_open; sys.exit(0 if is_open(datetime.now(UTC)) else 1)'; then
  HOURS="The desk is open now (Mon-Fri 06:00-18:00 Central): options 1, 2 and 6 reach an advisor."
else
  HOURS="The desk is CLOSED now (open Mon-Fri 06:00-18:00 Central): options 1, 2 and 6
  take a voicemail; option 8 (an outage) from a hosted district still reaches the
  hosting team. The README's transcripts were made on a Tuesday at 10:00 Central."
fi

cat <<MSG

  caseline is answering on http://127.0.0.1:$PORT  (Voice URL: /voice/incoming)

  $HOURS

  After a call an advisor wraps up for ${CASELINE_WRAPUP_SECONDS} s here before taking the
  next caller (CASELINE_WRAPUP_SECONDS; the service's default is 30).

  Every advisor starts offline. From another terminal, put some on the line first,
  longest idle first as in the README (or a call waits in the queue):

    for a in A1 A5 A7; do curl -s -X PUT -H "Authorization: Bearer $CASELINE_API_TOKEN" \\
         -H "Content-Type: application/json" -d '{"status": "available"}' \\
         http://127.0.0.1:$PORT/api/advisors/\$a/status; echo; done

  Then place a call (Pat Lee of Lakeview, case 2024117):

    export PORT=$PORT TWILIO_AUTH_TOKEN=$TWILIO_AUTH_TOKEN CASELINE_EMULATOR_URL=$CASELINE_EMULATOR_URL \\
           CASELINE_API_TOKEN=$CASELINE_API_TOKEN
    .venv/bin/caseline call --from "+16125550101" --keys "1 2024117#" --advisor answer

  Ctrl-C stops everything.
MSG
wait
