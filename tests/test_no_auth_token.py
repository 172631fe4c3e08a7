"""A line started without TWILIO_AUTH_TOKEN: it runs, and refuses every webhook.

PRODUCT.md: with no token "webhooks refuse to run unsigned unless
`CASELINE_INSECURE_DEV=1`". So `caseline serve` starts (the API, /metrics,
/healthz and the console work), says at start that every webhook will be
refused, and answers each `/voice/*` request 403 with nothing done; the worker,
which checks no signature, starts too; a REST request made without the token
fails at the request, its log line naming the variable.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import requests

from config.settings import PROJECT_ROOT
from telephony.client import Outcome, Telephony
from tests.conftest import API_TOKEN, caseline_command, free_port, line_env, stop_process

CALL_SID = "CA" + "7" * 32


def serve_without_token(settings, tmp_path: Path, **extra: str):
    """`caseline serve` on a free port with no TWILIO_AUTH_TOKEN; (process, url, log path)."""
    port = free_port()
    # Run from an empty folder (no `.env` of the checkout's), on this checkout's code.
    env = line_env(settings, tmp_path / "instance", port, PYTHONPATH=str(PROJECT_ROOT))
    del env["TWILIO_AUTH_TOKEN"]
    env.update(extra)  # after line_env, which drops CASELINE_INSECURE_DEV
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(caseline_command("serve", "--workers", "1", "--threads", "4"),
                                   env=env, cwd=tmp_path, stdout=log_file, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).ok:
                return process, url, log_path
        except requests.RequestException:  # not listening yet
            pass
        time.sleep(0.1)
    stop_process(process)
    raise AssertionError(f"caseline serve did not start (exit {process.returncode}):\n"
                         f"{log_path.read_text()}")


def test_serve_starts_without_a_token_and_refuses_every_webhook(settings, desk, r, tmp_path):
    process, url, log_path = serve_without_token(settings, tmp_path)
    try:
        log = log_path.read_text()
        assert "WARNING" in log and "TWILIO_AUTH_TOKEN is not set" in log
        assert "every webhook (/voice/*) will be refused" in log
        bearer = {"Authorization": f"Bearer {API_TOKEN}"}
        assert requests.get(f"{url}/api/advisors", headers=bearer, timeout=10).status_code == 200
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200
        keys_before = set(r.keys("*"))
        form = {"CallSid": CALL_SID, "From": "+16125550101", "To": "+18005550100",
                "AccountSid": settings.twilio_account_sid, "CallStatus": "ringing"}
        for path in ("/voice/incoming", "/voice/status"):
            answer = requests.post(f"{url}{path}", data=form, timeout=10,
                                   headers={"X-Twilio-Signature": "anything"})
            assert answer.status_code == 403, path
        assert set(r.keys("*")) == keys_before  # no side effect
        assert not r.keys(f"*{CALL_SID}*")
    finally:
        stop_process(process)


def test_insecure_dev_without_a_token_still_takes_unsigned_webhooks(settings, desk, r, tmp_path):
    process, url, log_path = serve_without_token(settings, tmp_path, CASELINE_INSECURE_DEV="1")
    try:
        assert "INSECURE DEV MODE" in log_path.read_text()
        form = {"CallSid": CALL_SID, "From": "+16125550101", "To": "+18005550100",
                "AccountSid": settings.twilio_account_sid, "CallStatus": "ringing"}
        answer = requests.post(f"{url}/voice/incoming", data=form, timeout=10)
        assert answer.status_code == 200
        assert answer.text.startswith("<?xml")
    finally:
        stop_process(process)


def test_the_worker_starts_without_a_token_and_says_what_will_fail(settings, desk, tmp_path):
    env = line_env(settings, tmp_path / "instance", free_port(),
                   TWILIO_API_URL="https://api.twilio.com", PYTHONPATH=str(PROJECT_ROOT))
    del env["TWILIO_AUTH_TOKEN"]
    done = subprocess.run(caseline_command("worker", "--burst", "--nice", "0"), env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "TWILIO_AUTH_TOKEN is not set" in done.stderr
    assert "REST API" in done.stderr


def test_a_rest_request_without_a_token_fails_naming_the_variable(settings, emulator, caplog):
    # The test emulator checks credentials as Twilio does: no token, 401.
    telephony = Telephony(settings.with_changes(twilio_auth_token=None),
                          retry_delays=(0.01,), longest_look=0.01)
    with caplog.at_level(logging.ERROR, logger="telephony.client"):
        outcome = telephony.redirect_call(CALL_SID, "http://127.0.0.1:9/voice/wait")
    assert outcome is Outcome.REFUSED
    assert any("TWILIO_AUTH_TOKEN is not set" in record.getMessage()
               for record in caplog.records)
