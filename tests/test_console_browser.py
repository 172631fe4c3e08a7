"""The console in a real browser: Debian's chromium driven by Playwright for
Python, against `caseline serve` with two worker processes. Nothing is
reloaded by hand: every change reaches the pages through the event stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from directory import keys
from directory.accounts import set_password
from ivr.console.web_sessions import COOKIE_NAME, LIFETIME_SECONDS, VISITOR_COOKIE_NAME
from tests.conftest import ACCOUNT_SID, API_TOKEN, AUTH_TOKEN
from twilio_side import Caller, HttpTransport, InProcessLink

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
PASSWORD = "correct horse battery"
PAT = "+16125550101"
# How long the console gives a read of its live part before it tries again (console.js).
READ_TIMEOUT_MS = 10_000

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="needs Debian's chromium (`make system-deps`)"),
              pytest.mark.slow]


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless chromium (Debian's, never one Playwright downloads)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def signed_in_page(browser, url: str, advisor: str, fake_clock: bool = False):
    """A fresh browser context, signed in as `advisor` through the form. With
    `fake_clock`, the page's timers run on Playwright's clock: they tick as usual
    until the test jumps it forward (`page.clock.fast_forward`)."""
    context = browser.new_context()
    if fake_clock:
        context.clock.install()
    page = context.new_page()
    page.goto(f"{url}/console/sign-in")
    page.get_by_label("Advisor id").fill(advisor)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return page


def mark_unreloaded(page) -> None:
    """Leave a mark in the page's window: a reload would erase it."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page) -> None:
    """The mark is still there: what changed came in without a reload."""
    assert page.evaluate("window.__notReloaded === true")


def watching_wallboard(browser, url: str, directory, desk, fake_clock: bool = False):
    """A7 (offline) and S1 (a supervisor) on the directory; S1's wallboard open on
    `url`, its event stream up, marked against reloads (`fake_clock`: as in
    `signed_in_page`)."""
    expect = sync_api.expect
    directory.advisor("A7", ["general"])
    directory.advisor("S1", ["general"])
    directory.load()
    set_password(desk.session_factory, desk.r, "S1", PASSWORD, supervisor=True)
    wallboard = signed_in_page(browser, url, "S1", fake_clock=fake_clock)
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("offline")
    expect(wallboard.locator("body")).to_have_attribute("data-live", "stream")
    mark_unreloaded(wallboard)
    return wallboard


def test_an_advisor_goes_available_takes_a_call_and_goes_away_live(
        browser, live_service, directory, desk, emulator):
    expect = sync_api.expect
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone="+16515550199", name="Jordan Smith")
    directory.advisor("S1", ["hosting"], phone="+16515550111", name="Sam Super")
    directory.case("2024117", owner="A7")
    directory.load()
    set_password(desk.session_factory, desk.r, "A7", PASSWORD, supervisor=False)
    set_password(desk.session_factory, desk.r, "S1", PASSWORD, supervisor=True)

    advisor = signed_in_page(browser, live_service.url, "A7")
    wallboard = signed_in_page(browser, live_service.url, "S1")
    assert wallboard.url.endswith("/console/wallboard")
    expect(advisor.locator("#presence")).to_have_text("offline")

    advisor.get_by_role("switch").click()  # the form posts; the page comes back
    expect(advisor.locator("#presence")).to_have_text("available")
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("available", timeout=1000)
    mark_unreloaded(advisor)
    mark_unreloaded(wallboard)

    # Pat calls about case 2024117; A7's phone rings until the test has looked.
    looked = threading.Event()

    def ring_until_looked(number: str, attempt: int) -> str:
        looked.wait(timeout=30)
        return "answer"

    caller = Caller(HttpTransport(live_service.url, auth_token=AUTH_TOKEN), PAT,
                    keys=["1", "2024117#"], advisor_policy=ring_until_looked,
                    account_sid=ACCOUNT_SID, emulator_link=InProcessLink(emulator),
                    max_wait_seconds=30, wait_poll_interval=0.05)
    call = threading.Thread(target=caller.run)
    call.start()
    try:
        expect(advisor.locator("#presence")).to_have_text("ringing", timeout=5000)
        expect(advisor.locator("#card-case")).to_have_text("2024117")
        expect(advisor.locator("#card-district")).to_have_text("Lakeview Public Schools")
        expect(advisor.locator("#card-contact")).to_have_text("Pat Lee")
        expect(advisor.locator("#card-verified")).to_have_text("attested caller ID")
        expect(wallboard.locator("#advisor-A7 .state")).to_have_text("ringing", timeout=1000)
    finally:
        looked.set()
        call.join(timeout=60)
    assert caller.result.outcome == "advisor", caller.result.error
    expect(advisor.locator("#presence")).to_have_text("available", timeout=5000)
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("available", timeout=1000)
    assert_not_reloaded(advisor)
    assert_not_reloaded(wallboard)

    advisor.get_by_role("switch").click()  # go away
    expect(advisor.locator("#presence")).to_have_text("away")
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("away", timeout=1000)
    assert_not_reloaded(wallboard)
    assert wallboard.evaluate("document.body.dataset.live") == "stream"


def test_a_fresh_browser_signs_in_and_out_and_only_its_sign_in_is_kept_in_redis(
        browser, live_service, directory, desk):
    """A browser that has never been here opens the sign-in page: Redis holds nothing of
    it (a visitor's form secret is in its own signed cookie). It signs in: one session
    in Redis, for 12 hours, and the browser holds that session's cookie alone. It signs
    out: the session is gone, and the sign-in page it lands on leaves nothing."""
    expect = sync_api.expect
    directory.advisor("A7", ["general"])
    directory.load()
    set_password(desk.session_factory, desk.r, "A7", PASSWORD, supervisor=False)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_service.url}/console/sign-in")
    assert list(desk.r.scan_iter(keys.console_session("*"))) == []
    assert [cookie["name"] for cookie in context.cookies()] == [VISITOR_COOKIE_NAME]

    page.get_by_label("Advisor id").fill("A7")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#presence")).to_have_text("offline")
    cookies = context.cookies()
    assert [cookie["name"] for cookie in cookies] == [COOKIE_NAME]
    key = keys.console_session(cookies[0]["value"])
    assert list(desk.r.scan_iter(keys.console_session("*"))) == [key]
    assert LIFETIME_SECONDS - 30 < desk.r.ttl(key) <= LIFETIME_SECONDS

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert list(desk.r.scan_iter(keys.console_session("*"))) == []
    assert [cookie["name"] for cookie in context.cookies()] == [VISITOR_COOKIE_NAME]
    context.close()


def test_the_wallboard_polls_while_its_event_stream_is_down(
        browser, live_service, directory, desk):
    expect = sync_api.expect
    directory.advisor("A7", ["general"])
    directory.advisor("S1", ["general"])
    directory.load()
    set_password(desk.session_factory, desk.r, "S1", PASSWORD, supervisor=True)
    page = browser.new_context().new_page()
    page.route("**/console/events", lambda route: route.abort())  # the stream never opens
    page.goto(f"{live_service.url}/console/sign-in")
    page.get_by_label("Advisor id").fill("S1")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#advisor-A7 .state")).to_have_text("offline")
    expect(page.locator("body")).to_have_attribute("data-live", "polling")
    mark_unreloaded(page)

    answer = requests.put(f"{live_service.url}/api/advisors/A7/status",
                          json={"status": "available"},
                          headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    assert answer.status_code == 200
    expect(page.locator("#advisor-A7 .state")).to_have_text("available", timeout=5000)
    expect(page.get_by_role("status")).to_contain_text("checking every 3 seconds")
    assert_not_reloaded(page)


def test_a_presence_change_through_one_instance_shows_on_a_wallboard_served_by_another(
        browser, live_service, second_live_service, directory, desk):
    """Two instances of the line (two hosts' worth: separate gunicorn masters, one
    Redis): the supervisor watches the second; A7 goes available through the first."""
    expect = sync_api.expect
    wallboard = watching_wallboard(browser, second_live_service.url, directory, desk)

    answer = requests.put(f"{live_service.url}/api/advisors/A7/status",
                          json={"status": "available"},
                          headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    assert answer.status_code == 200
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("available", timeout=1000)
    assert_not_reloaded(wallboard)


def count_live_reads(page) -> None:
    """From now on the page notes when it asks for its live part (the browser's
    clock: Playwright's own events reach a busy test thread only later)."""
    page.evaluate("""() => {
        window.__reads = [];
        const original = window.fetch;
        window.fetch = function (url, options) {
            if (String(url).includes("/live")) { window.__reads.push(Date.now()); }
            return original.call(this, url, options);
        };
    }""")


def test_in_a_storm_the_console_keeps_up_and_reads_a_few_times_a_second_at_most(
        browser, live_service, directory, desk):
    """An outage morning: callers join a hundred a second, each a change on the event
    stream. The wallboard keeps up with the count and lists the head of the queue,
    and re-reads its live part at most every 750 ms, not on every change (each read
    costs the line's CPU); an advisor's page, which shows no queue, does not re-read
    at all, and still shows their own change at once (a queued caller is announced
    as a queue change, not a presence change)."""
    import time

    from routing import acd
    from routing.call_state import start_call

    expect = sync_api.expect
    directory.advisor("A7", ["general"])
    directory.advisor("S1", ["general"])
    directory.load()
    set_password(desk.session_factory, desk.r, "S1", PASSWORD, supervisor=True)
    set_password(desk.session_factory, desk.r, "A7", PASSWORD, supervisor=False)
    wallboard = signed_in_page(browser, live_service.url, "S1")
    advisor = signed_in_page(browser, live_service.url, "A7")
    for page in (wallboard, advisor):
        expect(page.locator("body")).to_have_attribute("data-live", "stream")
        count_live_reads(page)

    began = wallboard.evaluate("Date.now()") / 1000  # the browser's clock; this test's travels
    for i in range(300):
        sid = f"CA-storm-{i:03d}"
        now_ms = int(time.time() * 1000)  # the suite's clock, as the service's
        start_call(desk.r, sid, {"caller": PAT, "started_at": now_ms, "team": "general",
                                 "priority": "medium", "menu": "8", "base": live_service.url})
        assert isinstance(acd.route_caller(desk, sid, now_ms), acd.WaitInQueue)
        time.sleep(0.01)
    storm = wallboard.evaluate("Date.now()") / 1000 - began
    queue = wallboard.locator("#queue-general")
    expect(queue.locator(".count")).to_have_text("300 waiting", timeout=5000)
    expect(queue.locator("tr.waiting-caller")).to_have_count(25)
    expect(queue.locator(".more")).to_have_text("and 275 more waiting after them")
    reads = [t / 1000 - began for t in wallboard.evaluate("window.__reads")]
    during = [t for t in reads if 0 <= t <= storm]
    assert 1 <= len(during) <= storm / 0.75 + 2, (storm, reads)  # one per 750 ms at most
    assert advisor.evaluate("window.__reads") == []

    answer = requests.put(f"{live_service.url}/api/advisors/A7/status",
                          json={"status": "available"},
                          headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    assert answer.status_code == 200
    # A7 takes the head of the queue at once: their page and the wallboard say so.
    expect(advisor.locator("#presence")).to_have_text("ringing", timeout=1000)
    expect(wallboard.locator("#advisor-A7 .state")).to_have_text("ringing", timeout=1500)


def test_a_wallboard_read_that_never_answers_does_not_freeze_the_board(
        browser, live_service, directory, desk):
    """A read of the live part lost on the way (a proxy that drops it, a laptop
    waking up on another network): it never answers. The changes after it must
    still reach the wallboard, not wait for a reload that nobody knows to do."""
    expect = sync_api.expect
    wallboard = watching_wallboard(browser, live_service.url, directory, desk,
                                   fake_clock=True)

    lost = []

    def lose_the_first(route) -> None:
        if not lost:
            lost.append(route)  # never answered
        else:
            route.continue_()

    wallboard.route("**/console/wallboard/live", lose_the_first)
    for status in ("available", "offline", "available"):  # the first one's read is lost
        answer = requests.put(f"{live_service.url}/api/advisors/A7/status",
                              json={"status": status},
                              headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
        assert answer.status_code == 200
        if status == "available" and len(lost) == 0:
            asked = time.monotonic() + 5
            while not lost:  # the page's read of this change is on its way, never to answer
                assert time.monotonic() < asked, "the wallboard never read the change"
                wallboard.wait_for_timeout(20)
            # The page gives a read up after 10 s (console.js): jump its clock there.
            wallboard.clock.fast_forward(READ_TIMEOUT_MS)
        expect(wallboard.locator("#advisor-A7 .state")).to_have_text(status, timeout=5000)
    assert lost
    assert_not_reloaded(wallboard)
