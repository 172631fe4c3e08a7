"""`caseline call`, the caller in the terminal, against a live caseline.

The scripted mode places one call per menu option on `caseline serve`
(gunicorn) and is judged by its transcript and exit status; the interactive
mode runs in a real terminal (a pty, and tmux when installed) and is driven
by typing; `--speak`/`--wav` run espeak-ng (a stand-in here); and the README's
transcripts must be what the command prints today.

The live service runs on the real clock, not the tests' frozen Tuesday: calls
whose answer depends on the desk's hours accept the answer the real clock
calls for (an advisor in hours, a voicemail outside).
"""

from __future__ import annotations

import io
import logging
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from caseline.terminal_caller import CallOptions, run_call, write_wav
from config import hours
from config.settings import PROJECT_ROOT, Settings
from ivr import create_app
from tests.conftest import ACCOUNT_SID, API_TOKEN, AUTH_TOKEN, free_port, make_available

CASELINE = Path(sys.executable).with_name("caseline")
PAT = "+16125550101"  # Pat Lee, Lakeview Public Schools (hosted)
A7_PHONE = "+16515550199"  # Jordan Smith: general, hosting, food-service; owns 2024117


def real_now() -> datetime:
    """The clock the live service runs on: the suite's (see `caseline_command`)."""
    return datetime.now(UTC)


@pytest.fixture
def line(directory) -> None:
    """The demo's caller and case: Pat Lee of a hosted district, case 2024117 owned by A7."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    # Active as of the real clock, which the live service judges the 180-day rule by.
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468",
                      last_active=real_now().date().isoformat())
    directory.advisor("A7", ["general", "hosting", "food-service"], phone=A7_PHONE,
                      name="Jordan Smith")
    directory.case("2024117", "D100", owner="A7")
    directory.load()


def set_status(service_url: str, advisor_id: str, status: str) -> None:
    """An advisor's status through the operators' API (the service's own clock stamps it)."""
    answer = requests.put(f"{service_url}/api/advisors/{advisor_id}/status",
                          json={"status": status},
                          headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    answer.raise_for_status()


def caseline_call(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `caseline call ARGS` (the installed console script) to its end."""
    return subprocess.run([str(CASELINE), "call", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=30)


def run_sh_call_args() -> list[str]:
    """The arguments of the `caseline call` line that `make run` prints."""
    text = (PROJECT_ROOT / "scripts" / "run.sh").read_text(encoding="utf-8")
    match = re.search(r"caseline call (.+)$", text, flags=re.M)
    assert match, "scripts/run.sh should print a `caseline call` line"
    return shlex.split(match.group(1))


# -- scripted mode, one call per menu option ------------------------------------


@pytest.mark.slow
def test_every_menu_option_scripted_against_the_live_service(live_service, line):
    set_status(live_service.url, "A7", "available")
    before = hours.is_open(real_now())
    in_hours = "advisor" if before else "voicemail"
    calls = [
        # (the arguments after `caseline call`, expected outcome, keys the caller presses)
        (run_sh_call_args(), in_hours, ["1", "2024117"]),  # the line `make run` prints
        (["--from", PAT, "--keys", "2", "--advisor", "answer"], in_hours, ["2"]),
        (["--from", PAT, "--keys", "6 1", "--advisor", "answer"], in_hours, ["6"]),
        # A hosted district's outage is routed at any hour.
        (["--from", PAT, "--keys", "8", "--advisor", "answer"], "advisor", ["8"]),
    ]
    for args, outcome, pressed in calls:
        done = caseline_call(live_service.env, *args, "--expect", outcome)
        if hours.is_open(real_now()) != before:
            pytest.skip("the desk opened or closed during the test")
        out = done.stdout
        assert done.returncode == 0, (args, out, done.stderr)
        lines = out.splitlines()
        for key in pressed:
            assert f"caller presses: {key}" in lines, (args, out)
        assert any(line.startswith("caller hears: ") for line in lines), out
        assert "status callback: CallStatus=completed (HTTP 200)" in lines, out
        if outcome == "advisor":
            assert f"ringing {A7_PHONE} ... advisor picks up" in lines, out
            assert "  advisor presses 1 (accept)" in lines, out
            assert f"connected to {A7_PHONE} (talking 60s)" in lines, out
            assert f"outcome: advisor (answered by {A7_PHONE})" in lines, out
        else:
            assert any(line.startswith("caller leaves a voicemail") for line in lines), out
            assert "outcome: voicemail" in lines, out
        # The summary: the path taken and each request with its time.
        assert any(line.startswith("path: pressed ") for line in lines), out
        assert re.search(r"^  call +POST /voice/incoming +200 +\d+\.\d ms", out, re.M), out

    # Exit 1 when the call ends another way than expected, 2 when caseline refuses it.
    done = caseline_call(live_service.env, "--from", PAT, "--keys", "8", "--expect", "hangup")
    assert done.returncode == 1, done.stdout
    assert "expected hangup, the call ended with advisor" in done.stdout
    done = caseline_call({**live_service.env, "TWILIO_AUTH_TOKEN": "not-the-token"},
                         "--from", PAT, "--keys", "8", "--expect", "advisor")
    assert done.returncode == 2, done.stdout
    assert "HTTP 403" in done.stdout


def test_scripted_caller_waits_in_the_queue_then_is_connected(live_service, line, emulator):
    # Nobody is available: the outage caller (routed at any hour) waits for hosting.
    process = subprocess.Popen(
        [str(CASELINE), "call", "--from", PAT, "--keys", "8", "--advisor", "answer",
         "--expect", "advisor", "--emulator", emulator.url, "--max-wait", "20"],
        env=live_service.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    seen: list[str] = []
    queued = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            seen.append(raw.rstrip("\n"))
            if raw.startswith("waiting in queue "):
                queued.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert queued.wait(15), "\n".join(seen)
        set_status(live_service.url, "A7", "available")  # as from another terminal
        assert process.wait(timeout=20) == 0, "\n".join(seen)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        reader.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    out = "\n".join(seen)
    queued_at = next(i for i, s in enumerate(seen) if s.startswith("waiting in queue "))
    redirected = next(i for i, s in enumerate(seen)
                      if s.startswith(f"call redirected by the REST API to {live_service.url}/"))
    assert queued_at < redirected, out
    assert seen.index(f"ringing {A7_PHONE} ... advisor picks up") > redirected, out
    assert f"outcome: advisor (answered by {A7_PHONE})" in seen, out
    assert any(s.startswith("waited in queue: ") for s in seen), out
    assert any(s.startswith("path: ") and "queued in" in s and "-> redirected ->" in s
               for s in seen), out


# -- interactive mode in a real terminal ------------------------------------------


class Terminal:
    """A program running on a pty: type into it, wait for what it shows."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        import pty

        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(args, env=env, cwd=PROJECT_ROOT, stdin=slave,
                                        stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.screen = ""

    def expect(self, text: str, timeout: float = 10) -> None:
        """Read until `text` has been shown (or fail with what was)."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never showed; the terminal shows:\n{self.screen}"
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the program ended and closed the terminal
                chunk = b""
            if not chunk:
                assert text in self.screen, f"{text!r} never showed:\n{self.screen}"
            self.screen += chunk.decode(errors="replace").replace("\r\n", "\n")

    def type(self, keys: str) -> None:
        """Type a line, as a person presses keys and Enter."""
        os.write(self.master, keys.encode() + b"\r")

    def close(self) -> int:
        """Wait for the program to end; its exit status."""
        try:
            return self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self.master)


def test_a_caller_stopped_by_a_signal_hangs_up_and_leaves_the_queue(live_service, line,
                                                                     emulator):
    """`timeout`, a process manager or a closed terminal stops `caseline call` while it
    waits: it hangs up as Ctrl-C does, or the call would stay in the queue and be
    handed the next advisor who goes available."""
    process = subprocess.Popen(
        [str(CASELINE), "call", "--from", PAT, "--keys", "8", "--emulator", emulator.url,
         "--max-wait", "60"],
        env=live_service.env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            if raw.startswith("waiting in queue "):
                break
        queues = f"{live_service.url}/api/queues"
        headers = {"Authorization": f"Bearer {live_service.env['CASELINE_API_TOKEN']}"}
        assert sum(map(len, requests.get(queues, headers=headers, timeout=5).json().values()))
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=20)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "(interrupted: the caller hung up)" in rest, rest
    assert not any(requests.get(queues, headers=headers, timeout=5).json().values())


def test_end_of_input_while_waiting_hangs_up(live_service, line, emulator):
    """Interactive: the user presses 8 and then the input ends (Ctrl-D, a closed
    pipe) while the caller waits. Nobody plays the caller any more: it hangs up and
    leaves the queue, instead of waiting and letting every advisor's ring go
    unanswered."""
    process = subprocess.Popen(
        [str(CASELINE), "call", "--from", PAT, "--emulator", emulator.url, "--max-wait", "60"],
        env=live_service.env, cwd=PROJECT_ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = process.communicate("8\n", timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "waiting in queue " in out and "(end of input: the caller hangs up)" in out, out
    headers = {"Authorization": f"Bearer {live_service.env['CASELINE_API_TOKEN']}"}
    queues = requests.get(f"{live_service.url}/api/queues", headers=headers, timeout=5)
    assert not any(queues.json().values())


def interactive_call(type_keys: Callable[[str], None], expect: Callable[[str], None]) -> None:
    """Play one interactive outage call: press 8, answer as the advisor, accept."""
    expect('caller hears: "')
    expect("> your keys (1 digit(s))")
    type_keys("8")
    expect("caller presses: 8")
    expect(f"> {A7_PHONE} is ringing: [a]nswer, [n]o answer, [b]usy, [v]oicemail")
    type_keys("a")
    expect(f"ringing {A7_PHONE} ... advisor picks up")
    expect("  advisor hears: ")
    expect("> as the advisor: press a key to accept")
    type_keys("1")
    expect("  advisor presses 1 (accept)")
    expect(f"connected to {A7_PHONE}")
    expect(f"outcome: advisor (answered by {A7_PHONE})")


def test_interactive_caller_in_a_pty(live_service, line):
    set_status(live_service.url, "A7", "available")
    terminal = Terminal([str(CASELINE), "call", "--from", PAT, "--expect", "advisor"],
                        {**live_service.env, "TERM": "xterm"})
    try:
        interactive_call(terminal.type, terminal.expect)
    finally:
        status = terminal.close()
    assert status == 0, terminal.screen
    # What was typed shows (the terminal echoes it) right under the question.
    assert re.search(r"> your keys \(1 digit\(s\)\), Enter alone for silence:\n8\n",
                     terminal.screen), terminal.screen


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_interactive_caller_in_tmux(live_service, line, tmp_path):
    set_status(live_service.url, "A7", "available")
    tmux = ["tmux", "-L", f"caseline-test-{os.getpid()}", "-f", "/dev/null"]
    env = {**live_service.env, "TERM": "xterm"}
    exports = " ".join(f"{name}={shlex.quote(env[name])}" for name in (
        "PUBLIC_BASE_URL", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "TWILIO_API_URL", "PORT"))
    command = (f"cd {shlex.quote(str(PROJECT_ROOT))} && env {exports} "
               f"{shlex.quote(str(CASELINE))} call --from {PAT} --expect advisor; "
               'echo "[exit $?]"; sleep 60')
    subprocess.run([*tmux, "new-session", "-d", "-s", "call", "-x", "220", "-y", "60",
                    command], check=True, env=env, timeout=10)
    screen = ""

    def expect(text: str, timeout: float = 10) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while True:
            shown = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-200", "-t",
                                    "call"], capture_output=True, text=True, timeout=10)
            screen = shown.stdout
            if text in screen:
                return
            assert time.monotonic() < deadline, f"{text!r} never showed:\n{screen}"
            time.sleep(0.05)

    def type_keys(keys: str) -> None:
        subprocess.run([*tmux, "send-keys", "-t", "call", keys, "Enter"], check=True,
                       timeout=10)

    try:
        interactive_call(type_keys, expect)
        expect("[exit 0]")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)


# -- speaking the prompts ------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """No log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Say nothing."""


@pytest.fixture
def served_app(settings: Settings, desk) -> Iterator[str]:
    """caseline over real HTTP in this process (on the tests' frozen Tuesday clock)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(settings.with_changes(public_base_url=url))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- behind a reverse proxy, under a path prefix -------------------------------------

PUBLIC = "https://support.example.org"
PREFIXED = f"{PUBLIC}/caseline"


@dataclass(frozen=True)
class Deployment:
    """Where Twilio reaches caseline (PUBLIC_BASE_URL), and where its proxy forwards to."""

    public: str
    url: str


@pytest.fixture(params=["strips", "forwards", "no-prefix"])
def behind_a_proxy(request, settings: Settings, desk) -> Iterator[Deployment]:
    """caseline deployed behind a reverse proxy, served over real HTTP in this process
    (docs/deploy.md): PUBLIC_BASE_URL under a path prefix that the proxy strips (it
    forwards to the host's root) or forwards (to the prefix, which the service is told
    as SCRIPT_NAME, here by werkzeug's dispatcher); or with no prefix at all."""
    from werkzeug.exceptions import NotFound
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    port = free_port()
    public = PUBLIC if request.param == "no-prefix" else PREFIXED
    app = create_app(settings.with_changes(public_base_url=public))
    served = app if request.param != "forwards" else DispatcherMiddleware(
        NotFound(), {"/caseline": app})
    server = make_server("127.0.0.1", port, served, threaded=True,
                         request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Deployment(public, f"http://127.0.0.1:{port}"
                         + ("/caseline" if request.param == "forwards" else ""))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        app.extensions["caseline.engine"].dispose()


@pytest.fixture
def lakeview_line(directory) -> None:
    """Pat Lee of a hosted district; case 2024117 owned by A7 (general and hosting)."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468")
    directory.advisor("A7", ["general", "hosting"], phone=A7_PHONE)
    directory.case("2024117", "D100", owner="A7")
    directory.load()


def deployed_settings(deployment: Deployment) -> Settings:
    """The environment of `caseline call` on the deployment's host: its PUBLIC_BASE_URL."""
    return Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                    public_base_url=deployment.public)


def test_url_behind_a_proxy_signs_over_the_public_prefix(behind_a_proxy, lakeview_line, desk):
    make_available(desk, "A7")
    out, err = io.StringIO(), io.StringIO()
    code = run_call(CallOptions(PAT, keys="1 2024117#", expect="advisor",
                                url=behind_a_proxy.url),
                    out, io.StringIO(), settings=deployed_settings(behind_a_proxy), err=err)
    assert code == 0, out.getvalue() + err.getvalue()
    assert f"outcome: advisor (answered by {A7_PHONE})" in out.getvalue().splitlines()
    assert "HTTP 403" not in out.getvalue()


def test_url_behind_a_proxy_a_waiting_caller_is_redirected_to_the_advisor(
        behind_a_proxy, lakeview_line, desk, emulator):
    # The REST redirect names an absolute URL under PUBLIC_BASE_URL: the caller fetches
    # it through --url, signed over the public URL.
    out, err = io.StringIO(), io.StringIO()
    codes: list[int] = []
    options = CallOptions(PAT, keys="8", advisor="answer", expect="advisor",
                          url=behind_a_proxy.url, emulator=emulator.url, max_wait=20)
    caller = threading.Thread(target=lambda: codes.append(run_call(
        options, out, io.StringIO(), settings=deployed_settings(behind_a_proxy), err=err)))
    caller.start()
    deadline = time.monotonic() + 15
    while "waiting in queue " not in out.getvalue() and caller.is_alive():
        assert time.monotonic() < deadline, out.getvalue() + err.getvalue()
        time.sleep(0.05)
    make_available(desk, "A7")
    caller.join(timeout=30)
    assert codes == [0], out.getvalue() + err.getvalue()
    lines = out.getvalue().splitlines()
    redirected = f"call redirected by the REST API to {behind_a_proxy.public}/voice/"
    assert any(s.startswith(redirected) for s in lines), out.getvalue()
    assert f"outcome: advisor (answered by {A7_PHONE})" in lines


FAKE_ESPEAK = """\
#!{python}
# A stand-in for espeak-ng: logs each text, writes a short WAV with -w.
import sys, wave
args = sys.argv[1:]
out = None
if args[:1] == ["-w"]:
    out, args = args[1], args[2:]
if args[:1] == ["--"]:
    args = args[1:]
text = " ".join(args)
with open({log!r}, "a") as log:
    log.write(("wav " if out else "say ") + text + "\\n")
if out:
    with wave.open(out, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
        w.writeframes(b"\\1\\0" * len(text))
"""


def test_speak_and_wav_speak_every_prompt_heard(served_app, directory, desk, tmp_path,
                                                monkeypatch):
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468")
    directory.advisor("A7", ["general", "hosting"], phone=A7_PHONE)
    directory.case("2024117", "D100", owner="A7")
    directory.load()
    make_available(desk, "A7")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "espeak.log"
    fake = bin_dir / "espeak-ng"
    fake.write_text(FAKE_ESPEAK.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    settings = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                        public_base_url=served_app)
    out, err = io.StringIO(), io.StringIO()
    wav_path = tmp_path / "prompts.wav"

    code = run_call(CallOptions(PAT, keys="1 2024117#", expect="advisor", speak=True,
                                wav=str(wav_path)), out, io.StringIO(), settings=settings,
                    err=err)

    assert code == 0, out.getvalue() + err.getvalue()
    heard = re.findall(r'^\s*(?:caller|advisor) hears: "(.*)"$', out.getvalue(), flags=re.M)
    assert len(heard) >= 4  # greeting, menu, case number question, the whisper
    logged = log.read_text().splitlines()
    assert [entry[len("say "):] for entry in logged if entry.startswith("say ")] == heard
    assert [entry[len("wav "):] for entry in logged if entry.startswith("wav ")] == heard
    with wave.open(str(wav_path), "rb") as spoken:
        gaps = int(0.4 * 8000) * (len(heard) - 1)
        assert spoken.getnframes() == sum(len(text) for text in heard) + gaps
    assert f"wrote {len(heard)} prompt(s) to {wav_path}" in err.getvalue()


def test_without_espeak_the_call_goes_on_with_a_note(served_app, directory, desk, tmp_path,
                                                      monkeypatch):
    directory.district()
    directory.contact(phone=PAT)
    directory.load()
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to speak with
    settings = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                        public_base_url=served_app)
    out, err = io.StringIO(), io.StringIO()

    code = run_call(CallOptions(PAT, keys="9 9 9", speak=True,
                                wav=str(tmp_path / "x.wav"), expect="hangup"),
                    out, io.StringIO(), settings=settings, err=err)

    assert code == 0, out.getvalue() + err.getvalue()
    notes = err.getvalue().splitlines()
    assert notes == [f"caseline call: espeak-ng is not installed: prompts are not spoken and "
                     f"{tmp_path / 'x.wav'} is not written"]
    assert not (tmp_path / "x.wav").exists()


def test_a_caller_without_the_account_sid_reaches_the_menu_of_a_service_with_it(
        served_app, directory, desk, caplog):
    # The service names its account (TWILIO_ACCOUNT_SID, the `settings` fixture's); the
    # terminal's environment does not: the caller's signed webhooks are heard (the
    # signature decides), and it posts no placeholder sid for the service to warn of.
    directory.district()
    directory.contact(phone=PAT)
    directory.load()
    settings = Settings(twilio_auth_token=AUTH_TOKEN, public_base_url=served_app)
    assert not settings.account_sid_configured
    out, err = io.StringIO(), io.StringIO()

    with caplog.at_level(logging.WARNING, logger="ivr.gate"):
        code = run_call(CallOptions(PAT, keys="9 9 9", expect="hangup"), out, io.StringIO(),
                        settings=settings, err=err)

    assert code == 0, out.getvalue() + err.getvalue()
    lines = out.getvalue().splitlines()
    assert "HTTP 403" not in out.getvalue()
    assert lines.count("caller presses: 9") == 3, out.getvalue()  # the menu, asked 3 times
    assert not [record for record in caplog.records if "AccountSid" in record.getMessage()]


def test_a_caller_with_another_account_sid_is_served_and_the_service_warns_once(
        served_app, directory, desk, caplog):
    # The terminal's TWILIO_ACCOUNT_SID names another account than the service's, its
    # auth token is the service's: the signature decides, the service logs the mismatch.
    directory.district()
    directory.contact(phone=PAT)
    directory.load()
    other = "AC" + "f" * 30 + "42"
    settings = Settings(twilio_account_sid=other, twilio_auth_token=AUTH_TOKEN,
                        public_base_url=served_app)
    out, err = io.StringIO(), io.StringIO()

    with caplog.at_level(logging.WARNING, logger="ivr.gate"):
        code = run_call(CallOptions(PAT, keys="9 9 9", expect="hangup"), out, io.StringIO(),
                        settings=settings, err=err)

    assert code == 0, out.getvalue() + err.getvalue()
    assert out.getvalue().splitlines().count("caller presses: 9") == 3, out.getvalue()
    warned = [record for record in caplog.records if other in record.getMessage()]
    assert len(warned) == 1, [record.getMessage() for record in warned]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_write_wav_with_the_real_espeak(tmp_path):
    path = tmp_path / "two.wav"
    write_wav(shutil.which("espeak-ng") or "", ["Thank you for calling.", "Goodbye."], path)
    with wave.open(str(path), "rb") as spoken:
        assert spoken.getnchannels() == 1
        assert spoken.getnframes() > spoken.getframerate()  # more than a second of speech


# -- the README's transcripts ----------------------------------------------------------


def test_readme_transcripts_are_what_the_command_prints_today():
    done = subprocess.run([sys.executable, "scripts/transcripts.py", "--check"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, textwrap.shorten(done.stderr, 2000) + "\n" + done.stdout
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- transcripts:start -->", 1)[1].split(
        "<!-- transcripts:end -->", 1)[0]
    for keys in ("1 2024117#", "2", "6 1", "8"):
        assert f"--keys {shlex.quote(keys)}" in section
