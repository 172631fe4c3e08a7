"""Who stays signed in to the console: the lockout under guesses sent at once, and
sessions that end when their account's password or role changes."""

from __future__ import annotations

import re
import threading

import pytest
import requests
from sqlalchemy.exc import OperationalError

from directory import keys
from routing import sign_in as sign_in_module
from routing.sign_in import MAX_FAILURES
from tests.test_console import PASSWORD, accounts, csrf_of  # noqa: F401 - the fixture

# Every test here is a story about the console test's accounts: A7 and A2 advisors,
# S1 a supervisor.
pytestmark = pytest.mark.usefixtures("accounts")

WRONG = "Wrong advisor id or password."
LOCKED = "Too many failed sign-ins"


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
    assert desk.r.exists(keys.sign_in_lock("A7"))
    assert sum(WRONG in page for _, page in answers.values()) == MAX_FAILURES - 1


def test_forty_guesses_at_once_through_gunicorn_cannot_pass_the_lockout(
        live_service):
    """Forty guesses at once against the real service (two processes, four threads
    each): four are told "wrong", the fifth failure locks, everyone after is told
    to wait, and the right password afterwards is refused too."""
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

    told_wrong = sum(WRONG in page for page in answers)
    assert told_wrong == MAX_FAILURES - 1, f"{told_wrong} passwords were checked and wrong"
    assert sum(LOCKED in page for page in answers) == len(answers) - told_wrong
    assert right.status_code == 401 and LOCKED in right.text


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
