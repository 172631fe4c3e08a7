"""Settings in a `.env` file: read like the environment, every one of them.

PRODUCT.md: "Configuration comes from the environment (a `.env` file is read if
present)". The real environment wins over the file; nothing is read from the
real environment alone.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from config.settings import PROJECT_ROOT, Settings
from tests.conftest import caseline_command, free_port, stop_process

CALL_SID = "CA" + "8" * 32


def bare_env(**extra: str) -> dict[str, str]:
    """`env -i PATH=$PATH`, plus this checkout's code on the path."""
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(PROJECT_ROOT), **extra}


def write_dotenv(folder: Path, **values: str) -> None:
    """A `.env` file in `folder` holding `values`."""
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def test_insecure_dev_in_dotenv_lets_the_real_service_take_unsigned_webhooks(
        settings, desk, r, tmp_path):
    port = free_port()
    write_dotenv(tmp_path, CASELINE_INSECURE_DEV="1", PORT=str(port),
                 REDIS_URL=settings.redis_url or "", DATABASE_URL=settings.database_url,
                 CASELINE_INSTANCE_PATH=str(tmp_path / "instance"),
                 TWILIO_API_URL=settings.twilio_api_url,
                 TWILIO_ACCOUNT_SID=settings.twilio_account_sid)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(caseline_command("serve", "--workers", "1"), env=bare_env(),
                                   cwd=tmp_path, stdout=log_file, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet
                pass
            time.sleep(0.1)
        assert "INSECURE DEV MODE" in log_path.read_text()
        form = {"CallSid": CALL_SID, "From": "+16125550101", "To": "+18005550100",
                "AccountSid": settings.twilio_account_sid, "CallStatus": "ringing"}
        answer = requests.post(f"{url}/voice/incoming", data=form, timeout=10)
        assert answer.status_code == 200, answer.text
        assert r.keys(f"*{CALL_SID}*")  # the call was taken
    finally:
        stop_process(process)


def test_insecure_dev_in_dotenv_still_listens_on_loopback_only(tmp_path):
    write_dotenv(tmp_path, CASELINE_INSECURE_DEV="1", HOST="0.0.0.0",
                 CASELINE_INSTANCE_PATH=str(tmp_path / "instance"))
    done = subprocess.run(caseline_command("serve"), env=bare_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "loopback" in done.stderr
    assert not (tmp_path / "instance").exists()  # nothing was created or started


@pytest.mark.parametrize(("variable", "value", "field", "expected"), [
    ("CASELINE_INSECURE_DEV", "1", "insecure_dev", True),
    ("CASELINE_PROMPTS", "/srv/desk/prompts.toml", "prompts_path",
     Path("/srv/desk/prompts.toml")),
    ("CASELINE_EMULATOR_URL", "http://127.0.0.1:8099", "emulator_url",
     "http://127.0.0.1:8099"),
    ("TWILIO_AUTH_TOKEN", "from-the-file", "twilio_auth_token", "from-the-file"),
])
def test_every_setting_is_read_from_dotenv_the_environment_winning(
        tmp_path, variable, value, field, expected):
    write_dotenv(tmp_path, **{variable: value})
    assert getattr(Settings.from_env({}, dotenv=tmp_path / ".env"), field) == expected
    real = "0" if variable == "CASELINE_INSECURE_DEV" else "http://elsewhere"
    overridden = Settings.from_env({variable: real}, dotenv=tmp_path / ".env")
    assert getattr(overridden, field) != expected
