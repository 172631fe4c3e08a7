"""Who stays signed in to the console: the lockout under guesses sent at once,
sessions that end when their account's password or role changes, a sign-in's
12 hours, and visitors who never sign in and leave nothing in Redis."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError

from caseline import cli
from directory import keys
from directory.accounts import set_password
from ivr.console.web_sessions import COOKIE_NAME, LIFETIME_SECONDS, VISITOR_COOKIE_NAME
from routing import presence
from routing import sign_in as sign_in_module
from routing.announcement import active_announcement
from routing.sign_in import MAX_FAILURES
from tests.test_console import (  # noqa: F401 - accounts: the fixture
    PASSWORD,
    SUPERVISOR_PASSWORD,
    accounts,
    csrf_of,
    sign_in,
)

# Every test here is a story about the console test's accounts: A7 and A2 advisors,
# S1 a supervisor.
pytestmark = pytest.mark.usefixtures("accounts")

WRONG = "Wrong advisor id or password."
LOCKED = "Too many failed sign-ins"
BUSY = "try again in a moment"
NEW_PASSWORD = "a brand new password!"
API = {"Authorization": "Bearer test-api-token"}


def signed_in_browser(app, advisor: str, password: str):
    """A browser (a test client) signed in through the form."""
    browser = app.test_client()
    assert sign_in(browser, advisor, password).status_code == 302
    return browser


def sent_to_sign_in(answer) -> bool:
    """Whether a page answered by sending the browser to the sign-in."""
    return answer.status_code == 302 and "/console/sign-in" in answer.headers["Location"]


def test_guesses_sent_at_once_get_five_passwords_checked_and_no_more(
        app, desk, monkeypatch):
    """Eight guesses arrive together and are held inside the (slow) password check:
    only five get that far, and the right password, sent while they are still being
    checked, is refused as locked. Without a reservation before the check, all nine
    were checked and the right one signed in."""
    checking = threading.Semaphore(0)
    checked: list[str] = []
    let_go = threading.Event()
    real_check = sign_in_module.check_password

    def held_check(session_factory, advisor_id, password):
        checked.append(password)
        checking.release()
        let_go.wait(10)
        return real_check(session_factory, advisor_id, password)

    monkeypatch.setattr(sign_in_module, "check_password", held_check)
    guesses = [f"wrong guess {n}" for n in range(8)] + [PASSWORD]
    browsers = [app.test_client() for _ in guesses]
    tokens = [csrf_of(browser) for browser in browsers]
    answers: dict[int, tuple[int, str]] = {}

    def guess(n: int) -> None:
        answer = browsers[n].post("/console/sign-in", data={
            "csrf_token": tokens[n], "advisor": "A7", "password": guesses[n]})
        answers[n] = (answer.status_code, answer.get_data(as_text=True))

    wrong = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
    for thread in wrong:
        thread.start()
    for _ in range(MAX_FAILURES):
        assert checking.acquire(timeout=10)  # five are being checked (and held)
    # The other three have all arrived, and been refused, before any check ends: on a
    # loaded host a thread may start late, after the five are let go, and take a place
    # one of them gave back when the hasher was busy (an unchecked attempt's place).
    deadline = time.monotonic() + 10
    while len(answers) < len(wrong) - MAX_FAILURES and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(answers) == len(wrong) - MAX_FAILURES
    right = threading.Thread(target=guess, args=(8,))
    right.start()
    right.join(timeout=2)  # refused at once; without the mend it waits in the check
    let_go.set()
    for thread in [*wrong, right]:
        thread.join(timeout=20)

    assert len(checked) == MAX_FAILURES
    status, page = answers[8]
    assert status == 401 and LOCKED in page
    assert browsers[8].get("/console/advisor").status_code == 302  # not signed in
    # The five let go at once reach the hasher one at a time: the others are told to
    # try again (busy), unchecked; no more than four are told "wrong" before the lock.
    pages = [page for _, page in answers.values()]
    assert sum(WRONG in page for page in pages) <= MAX_FAILURES - 1
    assert all(WRONG in page or LOCKED in page or BUSY in page for page in pages)


def test_forty_guesses_at_once_through_gunicorn_cannot_pass_the_lockout(
        live_service):
    """Forty guesses at once against the real service (two processes, four threads
    each): at most four are told "wrong" (the fifth failure locks), every other is
    told it is locked or to try again, and none signs in."""
    url = live_service.url
    browsers = []
    for _ in range(40):
        browser = requests.Session()
        form = browser.get(f"{url}/console/sign-in", timeout=10).text
        browsers.append((browser, re.search(r'name="csrf_token" value="([^"]+)"',
                                            form).group(1)))
    together = threading.Barrier(len(browsers))
    answers: list[str] = [""] * len(browsers)

    def guess(n: int) -> None:
        browser, token = browsers[n]
        together.wait()
        answers[n] = browser.post(f"{url}/console/sign-in", timeout=60, data={
            "csrf_token": token, "advisor": "A7", "password": f"wrong guess {n}"}).text

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(len(browsers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    browser, token = browsers[0]
    right = browser.post(f"{url}/console/sign-in", timeout=10, data={
        "csrf_token": token, "advisor": "A7", "password": PASSWORD})
    for each, _ in browsers:
        each.close()

    # One password is checked at a time per process; a guess arriving meanwhile is told
    # to try again (busy), unchecked and uncounted. However they fall, no more than the
    # lockout's five are ever checked, and none signs in.
    told_wrong = sum(WRONG in page for page in answers)
    locked = sum(LOCKED in page for page in answers)
    busy = sum(BUSY in page for page in answers)
    assert told_wrong <= MAX_FAILURES - 1, f"{told_wrong} passwords were checked and wrong"
    assert told_wrong + locked + busy == len(answers)
    # Afterwards the right password signs in, unless the fifth checked guess locked the
    # id: it is never refused as wrong.
    assert right.ok or (right.status_code == 401 and LOCKED in right.text)


def test_a_sign_in_the_database_could_not_check_gives_its_place_back(desk, monkeypatch):
    """While the database is down no password is checked, so no attempt is counted:
    once it is back the advisor signs in, not locked out by the outage."""
    def database_down(*args):
        raise OperationalError("SELECT", {}, ConnectionError("database down"))

    monkeypatch.setattr(sign_in_module, "check_password", database_down)
    for _ in range(MAX_FAILURES + 1):
        with pytest.raises(OperationalError):
            sign_in_module.sign_in(desk.r, desk.session_factory, "A7", PASSWORD)
    monkeypatch.undo()
    assert sign_in_module.sign_in(desk.r, desk.session_factory, "A7", PASSWORD).outcome == "ok"


def test_a_new_password_ends_every_session_of_the_advisor_at_once(app, desk):
    """The operator sets a new password (the old one leaked): every browser signed in
    with the old one, a thief's or the advisor's own, is signed out at its next
    request, its page, its live part and its event stream alike; its form's token
    went with it; another advisor stays signed in; the new password signs in."""
    paths = ("/console/advisor", "/console/advisor/live", "/console/events")
    stolen = {path: signed_in_browser(app, "A7", PASSWORD) for path in paths}
    switch = signed_in_browser(app, "A7", PASSWORD)
    token = csrf_of(switch, "/console/advisor")
    other = signed_in_browser(app, "A2", PASSWORD)
    sids = [browser.get_cookie(COOKIE_NAME).value for browser in [*stolen.values(), switch]]

    set_password(desk.session_factory, desk.r, "A7", NEW_PASSWORD, supervisor=False)

    for path, browser in stolen.items():
        assert sent_to_sign_in(browser.get(path)), path
    switched = switch.post("/console/advisors/A7/presence",
                           data={"status": "available", "csrf_token": token})
    assert switched.status_code == 400
    assert presence.advisor_state(desk.r, "A7").get("status") != "available"
    assert not any(desk.r.exists(keys.console_session(sid)) for sid in sids)
    assert other.get("/console/advisor/live").status_code == 200
    assert sign_in(app.test_client(), "A7", PASSWORD).status_code == 401
    fresh = signed_in_browser(app, "A7", NEW_PASSWORD)
    assert fresh.get("/console/advisor").status_code == 200


def test_a_demoted_supervisor_cannot_touch_what_callers_hear(app, desk):
    """A supervisor made an advisor again (the same password): the browsers signed in
    as a supervisor can neither set the announcement nor withdraw a maintenance
    window any more, nor read the wallboard; signing in again gives the advisor's
    page, and the wallboard answers 403."""
    app.extensions["caseline.maintenance"] = []
    window = [{"start": "2026-12-12T01:00:00-06:00", "end": "2026-12-12T05:00:00-06:00",
               "outage": True, "note": ""}]
    api = app.test_client()
    assert api.put("/api/maintenance", json=window, headers=API).status_code == 200
    announcing = signed_in_browser(app, "S1", SUPERVISOR_PASSWORD)
    withdrawing = signed_in_browser(app, "S1", SUPERVISOR_PASSWORD)
    watching = signed_in_browser(app, "S1", SUPERVISOR_PASSWORD)
    tokens = [csrf_of(browser, "/console/wallboard") for browser in (announcing, withdrawing)]

    set_password(desk.session_factory, desk.r, "S1", SUPERVISOR_PASSWORD, supervisor=False)

    announced = announcing.post("/console/announcement", data={
        "text": "Demoted, still posting", "active": "1", "csrf_token": tokens[0]})
    assert announced.status_code == 400
    assert active_announcement(desk.r) is None
    withdrawn = withdrawing.post("/console/maintenance/withdraw", data={
        "csrf_token": tokens[1], "start": window[0]["start"]})
    assert withdrawn.status_code == 400
    assert api.get("/api/maintenance", headers=API).get_json() == window
    assert sent_to_sign_in(watching.get("/console/wallboard/live"))
    again = app.test_client()
    assert sign_in(again, "S1", SUPERVISOR_PASSWORD).headers["Location"].endswith(
        "/console/advisor")
    assert again.get("/console/wallboard").status_code == 403


def test_a_new_password_ends_an_open_event_stream(live_service, desk):
    """A page holding its event stream (a wallboard left open) is not kept signed in by
    it: the stream ends within seconds of the new password, and the page's next
    read is sent to the sign-in."""
    url = live_service.url
    page = requests.Session()
    form = page.get(f"{url}/console/sign-in", timeout=5).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    page.post(f"{url}/console/sign-in", timeout=5, data={
        "csrf_token": token, "advisor": "A7", "password": PASSWORD})
    stream = page.get(f"{url}/console/events", stream=True, timeout=5)
    assert stream.status_code == 200
    lines = stream.iter_lines(decode_unicode=True)
    assert next(lines).startswith("retry:")

    set_password(desk.session_factory, desk.r, "A7", NEW_PASSWORD, supervisor=False)
    changed = time.monotonic()
    assert list(lines) == [": connected", ""]  # then the end (else a read timeout)
    assert time.monotonic() - changed < 4
    live = page.get(f"{url}/console/advisor/live", allow_redirects=False, timeout=5)
    assert live.status_code == 302 and "/console/sign-in" in live.headers["Location"]
    page.close()


def test_a_sign_in_checked_against_the_old_password_ends_with_it(app, desk, monkeypatch):
    """The operator's new role lands while a sign-in is being checked against the old
    one: the session that sign-in makes is over at once (it carries the role it was
    checked with), not a supervisor's session that outlives the demotion."""
    real_check = sign_in_module.check_password

    def demoted_meanwhile(session_factory, advisor_id, password):
        account = real_check(session_factory, advisor_id, password)
        set_password(desk.session_factory, desk.r, "S1", SUPERVISOR_PASSWORD,
                     supervisor=False)
        return account

    monkeypatch.setattr(sign_in_module, "check_password", demoted_meanwhile)
    browser = app.test_client()
    sign_in(browser, "S1", SUPERVISOR_PASSWORD)
    assert sent_to_sign_in(browser.get("/console/wallboard"))


def test_a_sign_in_lasts_twelve_hours_however_busy_its_page(app, desk):
    """A page left open polls (and takes a new CSRF secret now and then), yet the
    session ends 12 hours after its sign-in: no request lengthens it. The last two
    seconds of the 12 hours stand in for the whole."""
    browser = signed_in_browser(app, "A7", PASSWORD)
    key = keys.console_session(browser.get_cookie(COOKIE_NAME).value)
    assert browser.get("/console/advisor").status_code == 200  # its form's secret saved
    assert LIFETIME_SECONDS - 5 < desk.r.ttl(key) <= LIFETIME_SECONDS
    desk.r.expire(key, 2)
    for _ in range(3):
        assert browser.get("/console/advisor/live").status_code == 200
    assert 0 < desk.r.pttl(key) <= 2000
    stored = json.loads(desk.r.get(key))
    del stored["csrf_token"]
    desk.r.set(key, json.dumps(stored), keepttl=True)
    assert browser.get("/console/advisor").status_code == 200  # a new secret is saved
    assert "csrf_token" in json.loads(desk.r.get(key))
    assert 0 < desk.r.pttl(key) <= 2000
    time.sleep(desk.r.pttl(key) / 1000 + 0.1)
    assert sent_to_sign_in(browser.get("/console/advisor/live"))
    assert not desk.r.exists(key)


def test_an_operator_signs_an_advisor_out_everywhere(app, settings, desk):
    """`caseline advisors sign-out A7` (a lost laptop): A7's browsers are sent to the
    sign-in, A2's is not, and A7's password still signs in; an id without a console
    account is an error."""
    laptop, desktop = (signed_in_browser(app, "A7", PASSWORD) for _ in range(2))
    other = signed_in_browser(app, "A2", PASSWORD)
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}

    done = CliRunner().invoke(cli.main, ["advisors", "sign-out", "A7"], env=env)
    assert done.exit_code == 0, done.output

    assert sent_to_sign_in(laptop.get("/console/advisor"))
    assert sent_to_sign_in(desktop.get("/console/advisor/live"))
    assert other.get("/console/advisor/live").status_code == 200
    assert signed_in_browser(app, "A7", PASSWORD).get("/console/advisor").status_code == 200
    unknown = CliRunner().invoke(cli.main, ["advisors", "sign-out", "A99"], env=env)
    assert unknown.exit_code == 1


@contextmanager
def a_password_check_held(app, monkeypatch, advisor: str, password: str) -> Iterator[None]:
    """A sign-in of `advisor` with `password`, sent on a thread of its own, held inside
    its password check (argon2's hasher, patched through `monkeypatch`) while the block
    runs; let go, and its thread joined, when the block ends."""
    from directory import accounts as account_store

    checking, let_go = threading.Event(), threading.Event()
    real_verify = account_store._HASHER.verify

    def held_verify(hash_: str, password: str) -> bool:
        checking.set()
        let_go.wait(10)
        return real_verify(hash_, password)

    class HeldHasher:
        """argon2's hasher, its check held until the test lets it go."""

        verify = staticmethod(held_verify)
        check_needs_rehash = staticmethod(account_store._HASHER.check_needs_rehash)
        hash = staticmethod(account_store._HASHER.hash)

    monkeypatch.setattr(account_store, "_HASHER", HeldHasher())
    first = app.test_client()
    token = csrf_of(first)
    held = threading.Thread(target=lambda: first.post("/console/sign-in", data={
        "csrf_token": token, "advisor": advisor, "password": password}))
    held.start()
    try:
        assert checking.wait(10)  # the held sign-in is being checked
        yield
    finally:
        let_go.set()
        held.join(timeout=20)


def test_a_sign_in_sent_while_another_is_checked_is_told_to_retry_at_once(app, desk,
                                                                         monkeypatch):
    """Each password check is Argon2id (a quarter of a second of a core, 64 MiB): a web
    process runs one at a time, and a sign-in that arrives meanwhile is refused as busy
    at once, holding no thread while it waits (a flood of sign-ins, ids changed to dodge
    the lockout, waiting their turn had left Twilio's webhooks seconds behind them).
    Nothing of it is checked or counted, and the next try signs in."""
    with a_password_check_held(app, monkeypatch, "X1", "a guess"):
        browser = app.test_client()
        token_a7 = csrf_of(browser)
        asked = time.monotonic()
        answer = browser.post("/console/sign-in", data={
            "csrf_token": token_a7, "advisor": "A7", "password": PASSWORD})
    assert answer.status_code == 503
    assert BUSY in answer.get_data(as_text=True)
    assert time.monotonic() - asked < 2.0  # at once, not after waiting for its turn
    # The attempt gave its place back: five are left.
    assert int(desk.r.get(keys.sign_in_failures("A7")) or 0) == 0
    monkeypatch.undo()
    assert sign_in(app.test_client(), "A7", PASSWORD).status_code == 302


def console_sessions(desk) -> list[str]:
    """The console sessions Redis holds."""
    return list(desk.r.scan_iter(keys.console_session("*")))


def test_a_thousand_visitors_to_the_sign_in_page_leave_nothing_in_redis(app, desk):
    """Anyone may ask for the sign-in page, as often as they like and with no cookie
    each time (a loop of GETs). Each such visitor used to leave a session in Redis, the
    line's routing store, for 12 hours: a loop could fill it and take the phone line
    down. A thousand leave Redis as it was, and each still gets the form with its
    token. So do the other pages a visitor reaches: those that send them to sign in,
    an unknown page, the stylesheet, forms posted without their token, and the
    sign-in page asked for with a cookie naming a session that is no more."""
    before = set(desk.r.scan_iter())
    for _ in range(1000):
        page = app.test_client().get("/console/sign-in")
        assert page.status_code == 200
        assert 'name="csrf_token" value="' in page.get_data(as_text=True)
    assert set(desk.r.scan_iter()) == before

    reachable = [("get", "/console/", 302), ("get", "/console/advisor", 302),
                 ("get", "/console/advisor/live", 302), ("get", "/console/wallboard", 302),
                 ("get", "/console/wallboard/live", 302), ("get", "/console/events", 302),
                 ("get", "/console/no-such-page", 404),
                 ("get", "/static/console/console.css", 200),
                 ("post", "/console/sign-in", 400), ("post", "/console/sign-out", 400),
                 ("post", "/console/announcement", 400)]
    for _ in range(50):
        for method, path, status in reachable:
            answer = getattr(app.test_client(), method)(path)
            assert answer.status_code == status, (method, path)
            answer.close()
        ended = app.test_client()
        ended.set_cookie(COOKIE_NAME, "x" * 43)  # a session ended or expired meanwhile
        assert ended.get("/console/sign-in").status_code == 200
    assert set(desk.r.scan_iter()) == before


def test_a_visitor_gets_a_session_in_redis_only_by_signing_in_and_it_lasts_12_hours(
        app, desk):
    """A fresh browser opens the sign-in page (nothing in Redis yet) and signs in: only
    then is there a session in Redis, under the id its cookie names, for 12 hours, and
    the visitor's cookie is gone. Signing out removes the session, and the sign-in
    page it lands on leaves nothing behind."""
    browser = app.test_client()
    token = csrf_of(browser)
    assert console_sessions(desk) == []
    assert browser.get_cookie(VISITOR_COOKIE_NAME) is not None

    answer = browser.post("/console/sign-in", data={
        "csrf_token": token, "advisor": "A7", "password": PASSWORD})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/console/advisor")
    key = keys.console_session(browser.get_cookie(COOKIE_NAME).value)
    assert console_sessions(desk) == [key]
    assert LIFETIME_SECONDS - 5 < desk.r.ttl(key) <= LIFETIME_SECONDS
    assert browser.get_cookie(VISITOR_COOKIE_NAME) is None
    assert browser.get("/console/advisor").status_code == 200

    out = browser.post("/console/sign-out", data={"csrf_token": csrf_of(browser,
                                                                        "/console/advisor")})
    assert sent_to_sign_in(out)
    assert browser.get("/console/sign-in").status_code == 200
    assert console_sessions(desk) == []
    assert sent_to_sign_in(browser.get("/console/advisor"))


def test_a_session_that_is_over_is_a_visitor_again_on_the_sign_in_page(app, desk):
    """A browser whose sign-in ended (a new password) opens the sign-in page: its
    session is gone from Redis and not made again, its cookie is cleared, and the form
    it is shown signs in with the new password."""
    browser = signed_in_browser(app, "A7", PASSWORD)
    set_password(desk.session_factory, desk.r, "A7", NEW_PASSWORD, supervisor=False)
    token = csrf_of(browser)
    assert console_sessions(desk) == []
    assert browser.get_cookie(COOKIE_NAME) is None
    assert browser.post("/console/sign-in", data={
        "csrf_token": token, "advisor": "A7", "password": NEW_PASSWORD}).status_code == 302
    assert browser.get("/console/advisor").status_code == 200


def test_a_sign_in_without_its_own_browsers_token_is_still_refused(app, desk):
    """No session in Redis before sign-in, yet the form is as safe: no token, a made-up
    one, another browser's, or a token sent without its browser's cookie (a form
    posted from another site) is refused (400) and signs no one in; the browser's own
    token then signs in."""
    mine, theirs = app.test_client(), app.test_client()
    token, their_token = csrf_of(mine), csrf_of(theirs)
    form = {"advisor": "A7", "password": PASSWORD}
    for browser, posted in [(mine, form), (mine, {**form, "csrf_token": "made-up"}),
                            (mine, {**form, "csrf_token": their_token}),
                            (app.test_client(), {**form, "csrf_token": token})]:
        refused = browser.post("/console/sign-in", data=posted)
        assert refused.status_code == 400, posted
        assert sent_to_sign_in(browser.get("/console/advisor"))
    assert console_sessions(desk) == []
    assert sign_in(mine, "A7", PASSWORD).status_code == 302
    assert mine.get("/console/advisor").status_code == 200


def test_a_visitors_cookie_serves_the_form_and_never_signs_anyone_in(app, desk):
    """A visitor's cookie is signed with the console's key and carries the form's CSRF
    secret and nothing else that is read: one altered by hand is refused with its
    token; one signed with the console's own key (a key that leaked) that says it is
    a supervisor's opens no page, while its CSRF secret still serves the form."""
    browser = app.test_client()
    token = csrf_of(browser)
    cookie = browser.get_cookie(VISITOR_COOKIE_NAME).value
    browser.set_cookie(VISITOR_COOKIE_NAME, cookie[:-2] + ("BB" if cookie.endswith("AA")
                                                           else "AA"))
    refused = browser.post("/console/sign-in", data={
        "csrf_token": token, "advisor": "A7", "password": PASSWORD})
    assert refused.status_code == 400

    serializer = app.session_interface.visitors.get_signing_serializer(app)
    forged = app.test_client()
    forged.set_cookie(VISITOR_COOKIE_NAME, serializer.dumps({
        "advisor": "S1", "name": "Sam Super", "supervisor": True, "version": 0,
        "csrf_token": "0" * 40}))
    for path in ("/console/wallboard", "/console/advisor", "/console/events"):
        assert sent_to_sign_in(forged.get(path)), path
    assert sign_in(forged, "A7", PASSWORD).headers["Location"].endswith("/console/advisor")


def test_sign_ins_refused_as_busy_leave_nothing_in_redis(app, desk, monkeypatch):
    """While a password is being checked, sign-ins that arrive are refused as busy at
    once, unchecked: a flood of them, an id each, leaves no count behind in Redis (each
    used to leave its id's count, at 0, for 15 minutes)."""
    with a_password_check_held(app, monkeypatch, "A7", "a wrong guess"):
        flood = app.test_client()
        token = csrf_of(flood)
        for n in range(200):
            answer = flood.post("/console/sign-in", data={
                "csrf_token": token, "advisor": f"X{n}", "password": "a guess"})
            assert answer.status_code == 503 and BUSY in answer.get_data(as_text=True)
    counted = set(desk.r.scan_iter(keys.sign_in_failures("*")))
    assert counted == {keys.sign_in_failures("A7")}  # the one checked: wrong, counted
    assert desk.r.get(keys.sign_in_failures("A7")) == "1"
