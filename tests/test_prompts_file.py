"""An operator's prompts file (CASELINE_PROMPTS) that cannot be used is never used.

PRODUCT.md: "Any input ... gets valid TwiML, never a 5xx ... the caller still
reaches a human"; docs/contract.md, Configuration: a setting caseline cannot use
stops the command with exit 2 and one line naming it. docs/design.md, "A prompts
file that cannot be used": while the service runs the last good prompts stay in
use and the problem is logged once per change, naming the file and the line; at
start `caseline serve` refuses the file; the fallback never depends on it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from config.prompts import Prompts
from config.settings import PROJECT_ROOT
from tests.conftest import Phone, caseline_command, free_port, line_env, make_available
from tests.webhooks import signed_post

PAT = "+16125550101"
FALLBACK = "+16515550000"
SHIPPED = Prompts().path.read_text()
GOOD = SHIPPED.replace("Thank you for calling support, {name}.",
                       "Welcome to the help line, {name}.")
# An operator's typo: the closing quote of the known caller's greeting left out.
UNCLOSED = GOOD.replace('known = "Welcome to the help line, {name}."',
                        'known = "Thanks for calling, {name}')
MISSPELT = GOOD.replace("Welcome to the help line, {name}.", "Thanks for calling, {nmae}.")


@pytest.fixture
def lakeview(directory):
    """Pat Lee of Lakeview, and a general advisor."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468", last_active="2027-11-30")
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.load()


def edit(path: Path, text: str) -> None:
    """An operator saves `text` into the prompts file; the service looks a second later."""
    path.write_text(text)
    later = time.time() + 5 + len(text) % 7  # a new modification time for each save
    os.utime(path, (later, later))
    time.sleep(1.1)


def greeting(phone: Phone) -> list[str]:
    """What a known caller who chooses 2 hears before the advisor, and whom they reach."""
    result = phone.call(PAT, "2")
    return [*result.heard(), *result.dialed]


@pytest.mark.parametrize(("broken", "line"), [(UNCLOSED, 11), (MISSPELT, 11)])
def test_a_broken_edit_keeps_the_last_good_prompts_and_says_why_once(
        settings, desk, lakeview, emulator, make_app, tmp_path, caplog, broken, line):
    live = tmp_path / "prompts.toml"
    live.write_text(GOOD)
    app = make_app(settings.with_changes(prompts_path=live, fallback_number=FALLBACK))
    phone, client = Phone(app, emulator), app.test_client()
    make_available(desk, "A2")
    heard = greeting(phone)
    assert "Welcome to the help line, Pat Lee." in heard and "+16515550102" in heard

    edit(live, broken)
    for _ in range(2):
        make_available(desk, "A2")
        heard = greeting(phone)
        # The last good greeting, and the advisor: not the fallback number.
        assert "Welcome to the help line, Pat Lee." in heard
        assert "+16515550102" in heard and FALLBACK not in heard
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # once per change, not once per call
    assert str(live) in errors[0] and f"line {line}" in errors[0]
    assert client.get("/readyz").get_json()["prompts"] != "ok"
    assert "caseline_prompts_file_usable 0.0" in client.get("/metrics").text

    edit(live, GOOD.replace("Welcome to the help line", "Hello again"))
    make_available(desk, "A2")
    assert "Hello again, Pat Lee." in greeting(phone)
    assert client.get("/readyz").get_json()["prompts"] == "ok"
    assert "caseline_prompts_file_usable 1.0" in client.get("/metrics").text


@pytest.mark.parametrize("fallback", [FALLBACK, None])
def test_a_prompts_file_broken_from_the_start_never_stops_the_fallback(
        settings, engine, make_app, tmp_path, fallback):
    """A web process built on a file that never read (Redis down as well): the caller
    still hears the fallback's words and reaches the fallback number, or the apology."""
    live = tmp_path / "prompts.toml"
    live.write_text(UNCLOSED)
    app = make_app(settings.with_changes(prompts_path=live, fallback_number=fallback,
                                         redis_url="redis://127.0.0.1:9/0"))
    response = signed_post(app.test_client(), "/voice/incoming",
                           {"CallSid": "CA" + "1" * 32, "From": PAT})
    assert response.status_code == 200
    root = ET.fromstring(response.data)
    said = [element.text for element in root.iter("Say")]
    if fallback:
        assert root.find("Dial").text == FALLBACK
        assert said == [Prompts().text("errors.fallback")]
    else:
        assert root.find("Hangup") is not None and said and said[0]


def test_a_prompts_file_broken_from_the_start_speaks_the_shipped_prompts(
        settings, desk, lakeview, emulator, make_app, tmp_path):
    live = tmp_path / "prompts.toml"
    live.write_text(MISSPELT)
    app = make_app(settings.with_changes(prompts_path=live, fallback_number=FALLBACK))
    make_available(desk, "A2")
    heard = greeting(Phone(app, emulator))
    assert Prompts().text("greeting.known", name="Pat Lee") in heard
    assert "+16515550102" in heard


@pytest.mark.parametrize(("text", "problem"), [
    (UNCLOSED, "line 11"),
    (MISSPELT, "line 11"),
    (SHIPPED.replace('voice = "Polly.Joanna"', "voice = 7"), "line 7"),
    (None, "cannot be read"),
])
def test_serve_refuses_a_prompts_file_it_cannot_use(settings, tmp_path, text, problem):
    prompts = tmp_path / "prompts.toml"
    if text is not None:
        prompts.write_text(text)
    env = line_env(settings, tmp_path / "instance", free_port(),
                   CASELINE_PROMPTS=str(prompts))
    done = subprocess.run(caseline_command("serve", "--workers", "1"), env=env,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(prompts) in lines[0] and problem in lines[0]
    assert not (tmp_path / "instance").exists()  # nothing was started


@pytest.mark.parametrize("custom", [False, True])
def test_the_first_calls_at_once_all_hear_their_prompts(tmp_path, custom):
    """A service's first moment: calls asking for their words together, before the
    file was ever read, all get them (none an empty greeting)."""
    if custom:
        (tmp_path / "prompts.toml").write_text(SHIPPED)
    for _ in range(5):
        prompts = Prompts(tmp_path / "prompts.toml" if custom else None)
        start, heard = threading.Barrier(8), []

        def ask(prompts: Prompts = prompts, start: threading.Barrier = start,
                heard: list[str] = heard) -> None:
            start.wait()
            heard.append(prompts.text("case.ask"))

        callers = [threading.Thread(target=ask) for _ in range(8)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert heard == [Prompts().text("case.ask")] * 8
