"""Take the README's screenshots of the console: docs/console-advisor.png and
docs/console-wallboard.png.

Runs caseline in this process as `make transcripts` does (scripts/transcripts.py's
`running_line`: the demo directory, a throwaway Redis and SQLite database, the
Twilio REST emulator, a real HTTP server on a free port of 127.0.0.1) on a fixed
clock, Tuesday 24 November 2026 at 10:20 Central. It gives Jordan Smith (A7) and
Maria Gonzalez (A1, a supervisor) console passwords, and adds call logs for the
morning so far (made-up figures, so the chart by the hour has something to show).
Pat Lee then calls about case 2024117 with the Twilio-side driver while every
advisor is offline: the wallboard is taken with Pat in the general queue. A7 goes
available (through the operators' API), Pat's call rings A7, and A7's page is
taken with the call's card, as it came in over the event stream. The wallboard
is taken whole (the chart is below the fold), the advisor's page at the
viewport. Both in Debian's chromium (`/usr/bin/chromium`, driven by Playwright
for Python; never `playwright install`), 1200x800.

    python scripts/screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import time_machine

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "scripts"):  # run as a script: this checkout, and transcripts.py
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from transcripts import ACCOUNT_SID, CHICAGO, PAT, TOKEN, running_line  # noqa: E402

from directory.accounts import set_password  # noqa: E402
from directory.db import make_engine, make_session_factory  # noqa: E402
from directory.models import CallLog  # noqa: E402
from twilio_side import Caller, HttpTransport, InProcessLink  # noqa: E402

DOCS = ROOT / "docs"
AT = datetime(2026, 11, 24, 10, 20, tzinfo=CHICAGO)  # a Tuesday morning
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
VIEWPORT = {"width": 1200, "height": 800}
PASSWORD = "screenshots-password"
ADVISOR, SUPERVISOR = "A7", "A1"
# The morning so far, hour by hour (Central): (answered waits in seconds, abandoned).
MORNING = {
    6: ([4, 6, 3], 0),
    7: ([5, 9, 12, 7, 4, 8], 1),
    8: ([14, 22, 31, 9, 18, 26, 11, 16], 2),
    9: ([8, 12, 6, 10, 15, 7, 9], 1),
    10: ([5, 3], 0),
}


def prepare(database_url: str, redis_url: str) -> None:
    """Console passwords for A7 and A1, and call logs for the morning (as the worker
    writes them) for the chart by the hour."""
    engine = make_engine(database_url)
    sessions = redis.Redis.from_url(redis_url)
    try:
        with make_session_factory(engine)() as db, db.begin():
            for hour, (waits, abandoned) in MORNING.items():
                calls = [("answered", w) for w in waits] + [("abandoned", 40.0)] * abandoned
                for n, (status, wait) in enumerate(calls):
                    started = AT.replace(hour=hour, minute=(n * 7) % 20) + timedelta(seconds=n)
                    db.add(CallLog(call_sid=f"CA-morning-{hour}-{n}", caller="+16125550100",
                                   menu_path="2", status=status, team="general",
                                   queue_wait_seconds=float(wait),
                                   started_at=started.astimezone(UTC)))
        factory = make_session_factory(engine)
        set_password(factory, sessions, ADVISOR, PASSWORD, supervisor=False)
        set_password(factory, sessions, SUPERVISOR, PASSWORD, supervisor=True)
    finally:
        sessions.close()
        engine.dispose()


def signed_in_page(browser, url: str, advisor: str):
    """A fresh 1200x800 page, signed in as `advisor` through the form."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(f"{url}/console/sign-in")
    page.get_by_label("Advisor id").fill(advisor)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return page


def main() -> int:
    """Take both screenshots."""
    with tempfile.TemporaryDirectory(prefix="caseline-screenshots-") as tmp, \
            time_machine.travel(AT, tick=True), running_line(Path(tmp)) as line, \
            sync_playwright() as playwright:
        prepare(line.settings.database_url, line.settings.redis_url)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            wallboard = signed_in_page(browser, line.url, SUPERVISOR)
            advisor = signed_in_page(browser, line.url, ADVISOR)
            looked = threading.Event()
            caller = Caller(HttpTransport(line.url, auth_token=TOKEN), PAT,
                            keys=["1", "2024117#"],
                            advisor_policy=lambda number, attempt: looked.wait(60) and "answer",
                            account_sid=ACCOUNT_SID, emulator_link=InProcessLink(line.emulator),
                            max_wait_seconds=60, wait_poll_interval=0.1)
            call = threading.Thread(target=caller.run, name="screenshots-call")
            call.start()
            try:
                expect(wallboard.locator(".waiting-caller")).to_have_count(1, timeout=10_000)
                wallboard.wait_for_timeout(1500)  # Pat has waited a moment
                expect(wallboard.locator("body")).to_have_attribute("data-live", "stream")
                # The whole page (the chart by the hour is below the fold).
                wallboard.screenshot(path=str(DOCS / "console-wallboard.png"), full_page=True)
                line.set_status(ADVISOR, "available")  # the page follows, no reload
                expect(advisor.locator("#card-case")).to_have_text("2024117", timeout=10_000)
                expect(advisor.locator("body")).to_have_attribute("data-live", "stream")
                advisor.screenshot(path=str(DOCS / "console-advisor.png"))
            finally:
                looked.set()
                call.join(timeout=60)
        finally:
            browser.close()
    print("docs/console-wallboard.png and docs/console-advisor.png written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
