"""Open console pages through a Redis outage, in a real browser (Debian's chromium,
Playwright) against `caseline serve`: a Redis of this module's own, which a test
stops and starts again (its data kept on disk, as a production Redis keeps it) or
freezes. A page says the line's data is unavailable while it is, and shows the
live figures again once it is back, without anyone reloading it: a wallboard on a
screen across the room has nobody to reload it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from caseline.embedded_redis import redis_server_binary, wait_until_up
from directory.accounts import set_password
from tests.conftest import API_TOKEN, free_port
from tests.test_console_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    assert_not_reloaded,
    mark_unreloaded,
    signed_in_page,
    watching_wallboard,
)

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="needs Debian's chromium (`make system-deps`)"),
              pytest.mark.slow]
API = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless chromium (as tests/test_console_browser.py's)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@dataclass
class LineRedis:
    """The line's redis-server, which the test stops, starts and freezes. Every write
    is on disk before it is acknowledged (AOF, fsync always), so the sign-ins and the
    directory's cache outlive a restart."""

    folder: Path
    port: int
    process: subprocess.Popen | None = None
    frozen: bool = False

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again) on its port and folder; back once it answers."""
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until_up(self.url)

    def stop(self) -> None:
        """Stop it (SIGTERM: a restart, a crash-looping container)."""
        assert self.process is not None
        self.thaw()
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: it neither answers nor closes a connection (a hung host, a partition)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT: it answers again, everything as it was."""
        if self.frozen and self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False


@pytest.fixture
def line_redis(tmp_path: Path) -> Iterator[LineRedis]:
    """This test's own Redis, started."""
    server = LineRedis(tmp_path / "line-redis", free_port())
    server.folder.mkdir()
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.stop()


@pytest.fixture
def redis_url(line_redis: LineRedis) -> str:
    """The suite's Redis for this module's tests is the one they stop and start."""
    return line_redis.url


def set_status(url: str, advisor: str, status: str) -> None:
    """An advisor's status through the API, asked again while the line is still
    reconnecting to a Redis that has just come back."""
    for _ in range(50):
        with contextlib.suppress(requests.RequestException):
            if requests.put(f"{url}/api/advisors/{advisor}/status", json={"status": status},
                            headers=API, timeout=10).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"could not set {advisor} {status}")


def test_pages_say_the_data_is_unavailable_while_redis_is_down_and_come_back_by_themselves(
        browser, live_service, directory, desk, line_redis):
    """Redis stops (a restart, a crash) while a wallboard and an advisor's page are
    open, and someone reloads the advisor's page meanwhile. The open wallboard keeps
    its last figures, greyed, and says the data is unavailable (polling every 3
    seconds) instead of turning into an error page; the reloaded page is the
    console's page saying so, which asks for itself again. Redis starts again: both
    show live figures (a presence change made then reaches them) with nobody
    reloading anything, and the wallboard's event stream is back."""
    expect = sync_api.expect
    wallboard = watching_wallboard(browser, live_service.url, directory, desk)
    set_password(desk.session_factory, desk.r, "A7", PASSWORD, supervisor=False)
    advisor = signed_in_page(browser, live_service.url, "A7")
    expect(advisor.locator("#presence")).to_have_text("offline")

    line_redis.stop()
    status = wallboard.get_by_role("status")
    expect(status).to_contain_text("unavailable", timeout=15_000)
    expect(wallboard.locator("body")).to_have_attribute("data-live", "unavailable")
    expect(wallboard.locator("#live")).to_have_class(re.compile("stale"))
    advisor.reload()  # someone reloads a page meanwhile
    expect(advisor.locator("h1")).to_contain_text("unavailable")
    wallboard.wait_for_timeout(4_000)  # more reads fail meanwhile: still the wallboard
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("offline")  # its figures
    expect(status).to_contain_text("unavailable")
    assert_not_reloaded(wallboard)

    line_redis.start()
    set_status(live_service.url, "A7", "available")
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("available", timeout=10_000)
    expect(status).not_to_contain_text("unavailable")
    expect(wallboard.locator("#live")).not_to_have_class(re.compile("stale"))
    expect(advisor.locator("#presence")).to_have_text("available", timeout=10_000)
    expect(wallboard.locator("body")).to_have_attribute("data-live", "stream", timeout=10_000)
    assert_not_reloaded(wallboard)
    # And live again: the next change comes through the event stream.
    set_status(live_service.url, "A7", "offline")
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("offline", timeout=2_000)


def test_a_wallboard_notices_a_frozen_redis_and_comes_back_when_it_thaws(
        browser, live_service, directory, desk, line_redis):
    """A frozen Redis (SIGSTOP: a hung host, a network partition) raises no error and
    closes nothing: the event stream just falls silent. The wallboard notices anyway
    (the stream stops beating), says the data is unavailable, and is live again once
    Redis answers."""
    expect = sync_api.expect
    wallboard = watching_wallboard(browser, live_service.url, directory, desk)

    line_redis.freeze()
    status = wallboard.get_by_role("status")
    expect(status).to_contain_text("unavailable", timeout=30_000)
    expect(wallboard.locator("body")).to_have_attribute("data-live", "unavailable")
    assert_not_reloaded(wallboard)

    line_redis.thaw()
    set_status(live_service.url, "A7", "available")
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("available", timeout=15_000)
    expect(status).not_to_contain_text("unavailable")
    assert_not_reloaded(wallboard)


def test_a_stream_that_never_answers_is_given_up_and_the_page_polls(
        browser, live_service, directory, desk):
    """An event stream whose answer never comes (a proxy holding the connection, a
    frozen server): the page does not wait on it forever. After three heartbeats of
    silence it polls, saying so, and the figures keep coming."""
    expect = sync_api.expect
    directory.advisor("A7", ["general"])
    directory.advisor("S1", ["general"])
    directory.load()
    set_password(desk.session_factory, desk.r, "S1", PASSWORD, supervisor=True)
    context = browser.new_context()
    context.clock.install()
    page = context.new_page()
    held = []
    page.route("**/console/events", lambda route: held.append(route))  # never answered
    page.goto(f"{live_service.url}/console/sign-in")
    page.get_by_label("Advisor id").fill("S1")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#advisor-A7 .state")).to_have_text("offline")
    mark_unreloaded(page)
    while not held:
        page.wait_for_timeout(20)
    page.clock.fast_forward(15_000)  # three heartbeats (console.js STREAM_SILENCE_MS)
    expect(page.locator("body")).to_have_attribute("data-live", "polling")
    expect(page.get_by_role("status")).to_contain_text("checking every 3 seconds")
    set_status(live_service.url, "A7", "available")
    expect(page.locator("#advisor-A7 .state")).to_have_text("available", timeout=5_000)
    assert_not_reloaded(page)
