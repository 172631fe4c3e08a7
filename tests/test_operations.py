"""Running the service: no unsigned webhooks by accident, no whole phone numbers in logs."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time

import pytest
import requests
from click.testing import CliRunner

from caseline import cli
from config.logs import PhoneMaskingFilter, mask_phone, mask_phones
from config.settings import PROJECT_ROOT, UNSET_ACCOUNT_SID, Settings
from tests.conftest import caseline_command, free_port, line_env


@pytest.fixture
def serve(monkeypatch, tmp_path):
    """`caseline serve` run in-process; nothing is started, what would start is kept."""
    started: list[Settings] = []
    monkeypatch.chdir(tmp_path)

    def prepare(settings: Settings) -> str:
        started.append(settings)
        return "redis://127.0.0.1:9/0"

    monkeypatch.setattr(cli, "prepare_service", prepare)
    monkeypatch.setattr("caseline.server.run_gunicorn", lambda settings, **_: None)

    def run(*args: str, **env: str):
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("TWILIO_", "CASELINE_", "HOST", "PORT"))}
        monkeypatch.setattr(os, "environ", {**base, **env})
        result = CliRunner().invoke(cli.main, ["serve", *args])
        return result, started

    return run


def test_serve_starts_without_an_auth_token_refusing_webhooks(serve):
    # PRODUCT: with no token webhooks refuse to run unsigned; the service still runs
    # (tests/test_no_auth_token.py: the real command, its warning and its 403s).
    result, started = serve()
    assert result.exit_code == 0, result.output
    assert [(s.twilio_auth_token, s.insecure_dev) for s in started] == [(None, False)]


def test_serve_starts_with_an_auth_token(serve):
    result, started = serve(TWILIO_AUTH_TOKEN="secret")
    assert result.exit_code == 0, result.output
    assert [s.insecure_dev for s in started] == [False]


def test_insecure_dev_flag_starts_on_loopback_only(serve):
    result, started = serve("--insecure-dev")
    assert result.exit_code == 0, result.output
    assert [s.insecure_dev for s in started] == [True]
    for host in ("::1", "localhost", "127.0.0.2"):
        result, _ = serve("--insecure-dev", "--host", host)
        assert result.exit_code == 0, (host, result.output)
    for host in ("0.0.0.0", "::", "10.0.0.5", "caseline.example.com"):
        started.clear()
        result, _ = serve("--insecure-dev", "--host", host)
        assert result.exit_code != 0, host
        assert "loopback" in result.output
        assert started == []


def test_insecure_dev_from_the_real_environment_is_an_alias_of_the_flag(serve):
    result, started = serve(CASELINE_INSECURE_DEV="1")
    assert result.exit_code == 0, result.output
    assert [s.insecure_dev for s in started] == [True]
    started.clear()
    result, _ = serve(CASELINE_INSECURE_DEV="1", HOST="0.0.0.0")
    assert result.exit_code != 0
    assert started == []


def test_insecure_dev_in_a_dotenv_file_counts_as_in_the_environment(serve, tmp_path):
    # PRODUCT: configuration comes from the environment, a `.env` file read if present;
    # the loopback rule still holds (tests/test_dotenv.py runs the real command).
    (tmp_path / ".env").write_text("CASELINE_INSECURE_DEV=1\nPORT=8123\n")
    result, started = serve()
    assert result.exit_code == 0, result.output
    assert [(s.insecure_dev, s.port) for s in started] == [(True, 8123)]
    started.clear()
    result, _ = serve(HOST="0.0.0.0")
    assert result.exit_code != 0
    assert "loopback" in result.output
    assert started == []
    assert not Settings.from_env({"CASELINE_INSECURE_DEV": "0"},
                                 dotenv=tmp_path / ".env").insecure_dev  # the environment wins


@pytest.mark.parametrize(("command", "variable", "value"), [
    (["serve"], "CASELINE_CALLER_ID_TRUST", "bogus"),
    (["serve"], "CASELINE_WRAPUP_SECONDS", "ten"),
    (["worker", "--burst"], "CASELINE_MAX_WAIT_SECONDS", "20 minutes"),
    (["directory", "load", "directory.json"], "CASELINE_OVERFLOW_SECONDS", "2m"),
    (["call", "--from", "+16125550101", "--keys", "2"], "PORT", "eighty"),
    (["serve"], "CASELINE_CALLS_PER_NUMBER_WINDOW_SECONDS", str(10**16)),
    (["worker", "--burst"], "CASELINE_CALLS_PER_NUMBER", "-5"),
    (["serve"], "PUBLIC_BASE_URL", "https://support.example.com/caseline?via=proxy"),
    (["call", "--from", "+16125550101", "--keys", "2"], "PUBLIC_BASE_URL",
     "support.example.com/caseline"),
    (["contacts", "unlock", "5001"], "REDIS_URL", "localhost:6379"),
    (["serve"], "REDIS_URL", "redis://cache:63790x/0"),
    (["serve"], "DATABASE_URL", "garbage"),
    (["contacts", "unlock", "5001"], "DATABASE_URL", "mysqlx://cache/caseline"),
    (["serve"], "PORT", "-1"),
    (["serve"], "PORT", "70000"),
    (["worker", "--burst"], "CASELINE_FALLBACK_NUMBER", "651-555-01OO"),
    (["serve"], "CASELINE_ONCALL_NUMBER", "555-0100")])
def test_a_bad_setting_stops_every_command_naming_it_without_a_traceback(
        tmp_path, command, variable, value):
    done = run_refused(tmp_path, command, **{variable: value})
    assert variable in done.stderr and repr(value) in done.stderr


def run_refused(tmp_path, command: list[str], **settings: str) -> subprocess.CompletedProcess:
    """A real `caseline COMMAND` with `settings` in its environment, checked refused as
    the contract says (Configuration): exit status 2, one line, no traceback, nothing
    created or started."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWILIO_", "CASELINE_", "REDIS_URL", "DATABASE_URL", "PORT"))}
    env |= {"CASELINE_INSTANCE_PATH": str(tmp_path / "instance"),
            "PYTHONPATH": str(PROJECT_ROOT), "TWILIO_AUTH_TOKEN": "secret", **settings}
    (tmp_path / "directory.json").write_text("{}")
    done = subprocess.run([sys.executable, "-m", "caseline.cli", *command], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "instance").exists()  # nothing was created or started
    return done


@pytest.mark.parametrize(("variable", "value"), [
    ("DATABASE_URL", "mysqlx://caseline:s3cret@db.example.com/caseline"),
    ("DATABASE_URL", "postgresql://caseline:s3cret@db.example.com:five432/caseline"),
    ("REDIS_URL", "redis://:s3cret@cache.example.com:63790x/0"),
    ("REDIS_URL", "cache.example.com://:s3cret@host")])
def test_a_refused_url_is_named_without_its_password(tmp_path, variable, value):
    done = run_refused(tmp_path, ["worker", "--burst"], **{variable: value})
    assert variable in done.stderr and "example.com" in done.stderr
    assert "s3cret" not in done.stderr


def test_a_port_option_out_of_range_is_refused_naming_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "caseline.cli", "serve", "--port", "70000"],
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT),
                               "CASELINE_INSTANCE_PATH": str(tmp_path / "instance")},
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "'--port': 70000" in done.stderr
    assert not (tmp_path / "instance").exists()


def test_a_heroku_style_postgres_url_is_postgresql(tmp_path):
    """`postgres://` (Heroku's and many hosts' form) names PostgreSQL, as `postgresql://`
    does: the command tries that server (here, none listens) and says so in one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASELINE_", "REDIS_URL"))}
    env |= {"PYTHONPATH": str(PROJECT_ROOT), "CASELINE_INSTANCE_PATH": str(tmp_path / "i"),
            "DATABASE_URL": f"postgres://caseline:s3cret@127.0.0.1:{free_port()}/caseline"}
    done = subprocess.run([sys.executable, "-m", "caseline.cli", "contacts", "unlock", "5001"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot be brought up to date" in done.stderr
    assert "Connection refused" in done.stderr or "connection refused" in done.stderr
    assert "s3cret" not in done.stderr


def test_a_webhook_needs_a_signature_unless_insecure_dev(settings, desk, r, make_app):

    form = {"CallSid": "CA" + "1" * 32, "From": "+16125550101",
            "AccountSid": settings.twilio_account_sid}
    closed = make_app(settings.with_changes(twilio_auth_token=None))
    assert closed.test_client().post("/voice/incoming", data=form).status_code == 403
    open_ = make_app(settings.with_changes(twilio_auth_token=None, insecure_dev=True))
    assert open_.test_client().post("/voice/incoming", data=form).status_code == 200


def serve_log(settings: Settings, tmp_path, **env: str) -> str:
    """What a real `caseline serve` (one web process, on the test Redis and database)
    logs until it answers /healthz."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            caseline_command("serve", "--workers", "1", "--threads", "2"),
            env=line_env(settings, tmp_path / f"instance-{port}", port, **env),
            cwd=PROJECT_ROOT, stderr=stderr)
        try:
            deadline = time.monotonic() + 30
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.1)
            assert process.poll() is None, log.read_text()
        finally:
            process.terminate()
            process.wait(timeout=10)
    return log.read_text()


def test_a_deployment_without_its_account_sid_is_warned_and_make_run_is_not(
        settings, desk, tmp_path):
    warning = "TWILIO_ACCOUNT_SID is unset or the placeholder"
    # A real deployment: Twilio's own API, the placeholder SID left in place.
    deployed = serve_log(settings, tmp_path, TWILIO_API_URL="https://api.twilio.com",
                         TWILIO_ACCOUNT_SID=UNSET_ACCOUNT_SID)
    assert warning in deployed
    # `make run` (scripts/run.sh): the placeholder, for the local emulator of Twilio's API.
    demo = serve_log(settings, tmp_path, TWILIO_API_URL="http://127.0.0.1:8099",
                     TWILIO_ACCOUNT_SID=UNSET_ACCOUNT_SID)
    assert warning not in demo
    assert "metrics of every web process" in demo  # the log was read, and it is quiet


# --- phone numbers in logs ---------------------------------------------------


def test_mask_phone_keeps_country_area_and_last_four():
    assert mask_phone("+16125550101") == "+1612***0101"
    assert mask_phone("+442079460958") == "+4420***0958"
    assert mask_phone("") == ""
    assert mask_phone("+1612") == "***"
    assert mask_phone("anonymous") == "***"


def test_every_number_in_a_log_line_is_masked(caplog):
    assert mask_phones("from +16125550101 to +18005550100, call CA12") == (
        "from +1612***0101 to +1800***0100, call CA12")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PhoneMaskingFilter())
    logger = logging.getLogger("caseline.test.masking")
    logger.addHandler(handler)
    try:
        logger.warning("caller %s is %s", "+16125550101", "late")
        try:
            raise ValueError("Invalid 'To' Phone Number: +16125550199")
        except ValueError:
            logger.exception("dial failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "+16125550101" not in text and "+16125550199" not in text
    assert "+1612***0101" in text and "+1612***0199" in text


def test_a_refused_webhook_logs_no_whole_number(client, r, caplog):
    caplog.set_level(logging.WARNING)
    from tests.test_webhook_gate import FORM, signed_post

    signed_post(client, "/voice/menu", {**FORM, "CallSid": "CA" + "e" * 32, "Digits": "1"})
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "no session" in text
    assert FORM["From"] not in text
    assert mask_phone(FORM["From"]) in text


def test_the_cli_masks_numbers_in_every_log_line(tmp_path):
    script = ("import logging, sys; from caseline import cli; "
              "cli.main(['twilio-emulator', '--help'], standalone_mode=False); "
              "logging.getLogger('x').warning('dialing %s', '+16125550101')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=60, env={**os.environ,
                                                               "PYTHONPATH": str(PROJECT_ROOT)})
    assert "+1612***0101" in done.stderr, done.stderr
    assert "+16125550101" not in done.stderr


