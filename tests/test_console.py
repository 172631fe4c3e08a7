"""The web console through Flask's test client: sign-in, sessions in Redis,
CSRF on every form, roles, the lockout, the advisor's card, the event stream."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests
from click.testing import CliRunner
from flask import Response

from caseline import cli
from caseline.embedded_redis import start_server, wait_until_up
from config.hours import MaintenanceWindow
from directory import keys
from directory.accounts import set_password
from directory.models import CallLog
from directory.redis_client import connect_redis
from ivr.console.stream import change_events
from ivr.console.web_sessions import COOKIE_NAME, RedisSessionInterface, WebSession
from routing import availability, presence
from routing.announcement import active_announcement
from routing.sign_in import LOCK_SECONDS, MAX_FAILURES
from routing.stats import hourly
from tests.conftest import card_while_ringing, free_port, make_available, run_jobs

PAT = "+16125550101"
PASSWORD = "correct horse battery"
SUPERVISOR_PASSWORD = "staple of the wallboard"


@pytest.fixture
def accounts(directory, desk):
    """Lakeview, Pat, case 2024117 owned by A7; A7 and A2 advisors, S1 a supervisor."""
    directory.district()
    directory.contact()
    directory.advisor("A7", ["general"], phone="+16515550199", name="Jordan Smith")
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.advisor("S1", ["general"], phone="+16515550111", name="Sam Super")
    directory.case("2024117", owner="A7")
    directory.load()
    set_password(desk.session_factory, desk.r, "A7", PASSWORD, supervisor=False)
    set_password(desk.session_factory, desk.r, "A2", PASSWORD, supervisor=False)
    set_password(desk.session_factory, desk.r, "S1", SUPERVISOR_PASSWORD, supervisor=True)


def csrf_of(client, path: str = "/console/sign-in") -> str:
    """The CSRF token a page's form carries."""
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert match, page.get_data(as_text=True)
    return match.group(1)


def sign_in(client, advisor: str, password: str):
    """Sign in through the form, as a browser does."""
    return client.post("/console/sign-in", data={
        "csrf_token": csrf_of(client), "advisor": advisor, "password": password})


def test_signing_in_needs_the_csrf_token(client, accounts):
    refused = client.post("/console/sign-in", data={"advisor": "A7", "password": PASSWORD})
    assert refused.status_code == 400
    assert client.get("/console/advisor").status_code == 302  # still signed out
    assert sign_in(client, "A7", PASSWORD).status_code == 302
    assert client.get("/console/advisor").status_code == 200


def test_the_presence_switch_refuses_a_missing_csrf_token(client, desk, accounts):
    sign_in(client, "A7", PASSWORD)
    refused = client.post("/console/advisors/A7/presence", data={"status": "available"})
    assert refused.status_code == 400
    assert presence.advisor_state(desk.r, "A7").get("status") != "available"
    token = csrf_of(client, "/console/advisor")
    done = client.post("/console/advisors/A7/presence",
                       data={"status": "available", "csrf_token": token})
    assert done.status_code == 302
    assert presence.advisor_state(desk.r, "A7")["status"] == "available"


def test_webhooks_and_the_bearer_api_need_no_csrf_token(phone, client, desk, accounts):
    make_available(desk, "A7")
    assert phone.call(PAT, "1 2024117#").outcome == "advisor"
    answer = client.put("/api/advisors/A2/status", json={"status": "available"},
                        headers={"Authorization": "Bearer test-api-token"})
    assert answer.status_code == 200


def test_an_advisor_cannot_open_the_wallboard(client, accounts):
    sign_in(client, "A7", PASSWORD)
    assert client.get("/console/wallboard").status_code == 403
    assert client.get("/console/wallboard/live").status_code == 403


def test_a_supervisor_opens_the_wallboard(client, desk, accounts):
    make_available(desk, "A2")
    assert sign_in(client, "S1", SUPERVISOR_PASSWORD).headers["Location"].endswith(
        "/console/wallboard")
    page = client.get("/console/wallboard").get_data(as_text=True)
    row = re.search(r'id="advisor-A2".*?data-state="([^"]+)"', page, re.S)
    assert row and row.group(1) == "available"


def test_an_advisor_cannot_change_another_advisors_presence(client, desk, accounts):
    make_available(desk, "A2")
    sign_in(client, "A7", PASSWORD)
    token = csrf_of(client, "/console/advisor")
    refused = client.post("/console/advisors/A2/presence",
                          data={"status": "busy", "csrf_token": token})
    assert refused.status_code == 403
    assert presence.advisor_state(desk.r, "A2")["status"] == "available"


def test_five_failed_sign_ins_lock_the_account_for_15_minutes(client, desk, accounts):
    for _ in range(MAX_FAILURES):
        assert sign_in(client, "A7", "wrong password").status_code == 401
    locked = sign_in(client, "A7", PASSWORD)  # the right password, too late
    assert locked.status_code == 401
    assert "15 minutes" in locked.get_data(as_text=True)
    assert client.get("/console/advisor").status_code == 302
    assert LOCK_SECONDS - 5 < desk.r.ttl(keys.sign_in_lock("A7")) <= LOCK_SECONDS
    # The lock is the account's own: another advisor still signs in.
    assert sign_in(client, "A2", PASSWORD).status_code == 302


def test_sessions_live_in_redis_behind_an_opaque_cookie(client, desk, accounts):
    answer = sign_in(client, "A7", PASSWORD)
    cookie = next(h for h in answer.headers.getlist("Set-Cookie")
                  if h.startswith(COOKIE_NAME + "="))
    sid = cookie.split(";")[0].split("=", 1)[1]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http on localhost only
    assert desk.r.exists(keys.console_session(sid))
    client.post("/console/sign-out", data={"csrf_token": csrf_of(client, "/console/advisor")})
    assert not desk.r.exists(keys.console_session(sid))
    assert client.get("/console/advisor").status_code == 302


def test_the_cookie_is_secure_off_loopback(app, accounts):
    client = app.test_client()
    page = client.get("/console/sign-in", base_url="https://console.example.org")
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_ringing_call_shows_on_the_advisors_card(app, phone, desk, accounts):
    page = app.test_client()
    sign_in(page, "A7", PASSWORD)
    page.post("/console/advisors/A7/presence",
              data={"status": "available", "csrf_token": csrf_of(page, "/console/advisor")})
    card = card_while_ringing(page, phone, PAT, "1 2024117#")
    assert re.search(r'id="presence"[^>]*>ringing<', card)
    assert re.search(r'id="card-case">2024117<', card)
    assert re.search(r'id="card-district">Lakeview Public Schools<', card)
    assert re.search(r'id="card-contact">Pat Lee<', card)
    assert re.search(r'id="card-verified">attested caller ID<', card)
    assert re.search(r'id="card-priority">medium', card)


def test_a_presence_change_is_announced_on_the_event_stream(desk, accounts):
    stream = change_events(desk.r, seconds=5)
    assert next(stream).startswith("retry:")
    availability.free_advisor(desk, "A7", 1_000, explicit=True)
    assert next(stream) == "event: change\ndata: presence\n\n"
    stream.close()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, which it may freeze (SIGSTOP); a client of it
    with the web service's timeouts."""
    port = free_port()
    process = start_server(tmp_path / "redis", port=port)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until_up(url)
    client = connect_redis(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        yield process, client
    finally:
        os.kill(process.pid, signal.SIGCONT)
        client.connection_pool.disconnect()
        process.terminate()
        process.wait(timeout=10)


def test_the_event_stream_beats_while_redis_answers_and_ends_when_redis_goes_silent(
        own_redis):
    """A frozen Redis (or one cut off by the network) raises no error: it just never
    answers. The stream tells the page it is alive only while Redis answers its pings,
    and ends soon after Redis stops answering, so the page polls and says the data is
    unavailable instead of showing a board that silently stopped changing."""
    process, client = own_redis
    stream = change_events(client, seconds=30, heartbeat=0.5)
    assert next(stream).startswith("retry:")
    began = time.monotonic()
    assert next(stream) == "event: alive\ndata: \n\n"
    assert next(stream) == "event: alive\ndata: \n\n"
    assert time.monotonic() - began < 2.5
    os.kill(process.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    rest = list(stream)  # ends by itself
    assert rest.count("event: alive\ndata: \n\n") <= 1  # the beat already on its way
    assert time.monotonic() - frozen < 4.5  # a beat's wait, then the 2 s socket timeout


def test_a_session_redis_could_not_save_is_refused_once_and_not_saved_again(app):
    """A sign-out whose session Redis could not delete is not done: the save raises,
    and the error page that follows does not try again (Flask saves once more after
    its error handler), nor does a request whose session Redis could not open."""
    cut_off = connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    sessions = RedisSessionInterface(cut_off)
    session = WebSession({"advisor": "A7"}, "x" * 43)
    session.renew()
    with app.test_request_context("/console/sign-out", method="POST"):
        with pytest.raises(redis.ConnectionError):
            sessions.save_session(app, session, Response())
        error_page = Response()
        sessions.save_session(app, session, error_page)
        sessions.save_session(app, None, error_page)  # type: ignore[arg-type]
    assert "Set-Cookie" not in error_page.headers
    cut_off.connection_pool.disconnect()


def test_with_redis_down_a_console_page_says_so_and_asks_for_itself_again(
        settings, client, accounts, make_app, caplog):
    """Redis holds the sign-ins: while it cannot be reached, a console page loaded (a
    wallboard's screen reloaded) is the console's own page saying so, with 503, which
    asks for itself again every 3 seconds, so it comes back with the line; not a bare
    500 that stays. The live part's read and the event stream answer 503 too (the page
    they serve keeps its figures and polls: console.js). A form posted meanwhile is
    told it may not have been done, and is not posted again by itself."""
    sign_in(client, "S1", SUPERVISOR_PASSWORD)
    cut_off = make_app(settings.with_changes(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    down = cut_off.test_client()
    down.set_cookie(COOKIE_NAME, client.get_cookie(COOKIE_NAME).value)
    page = down.get("/console/wallboard")
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "3"
    html = page.get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="3">' in html
    assert "unavailable" in re.search(r"<h1>(.*?)</h1>", html).group(1)
    for path in ("/console/wallboard/live", "/console/events", "/console/advisor"):
        assert down.get(path).status_code == 503, path
    posted = down.post("/console/announcement", data={"text": "Phones down", "active": "1"})
    assert posted.status_code == 503
    assert 'http-equiv="refresh"' not in posted.get_data(as_text=True)
    assert "finalizing failed" not in caplog.text  # the session was not saved, nor tried
    # Redis answers again (the same session, on the Redis that holds it): the page is back.
    assert client.get("/console/wallboard").status_code == 200


def test_with_redis_down_the_sign_in_form_still_opens_and_signing_in_says_why_not(
        settings, accounts, make_app):
    """Before sign-in nothing is kept in Redis, so the sign-in form opens while Redis
    cannot be reached; signing in then (it needs Redis) is the console's page saying
    the data is unavailable, not a refused form."""
    cut_off = make_app(settings.with_changes(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    visitor = cut_off.test_client()
    token = csrf_of(visitor)
    answer = visitor.post("/console/sign-in", data={
        "csrf_token": token, "advisor": "A7", "password": PASSWORD})
    assert answer.status_code == 503
    assert "unavailable" in re.search(r"<h1>(.*?)</h1>", answer.get_data(as_text=True)).group(1)


@pytest.mark.databases
def test_set_password_prompts_twice_without_echo(settings, engine, desk, directory):
    directory.advisor("A7")
    directory.load()
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    result = CliRunner().invoke(cli.main, ["advisors", "set-password", "A7", "--supervisor"],
                                input=f"{PASSWORD}\n{PASSWORD}\n", env=env)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    unknown = CliRunner().invoke(cli.main, ["advisors", "set-password", "A99"],
                                 input=f"{PASSWORD}\n{PASSWORD}\n", env=env)
    assert unknown.exit_code == 1
    # Said before the password is asked for, not after it was typed twice.
    assert unknown.output.startswith("no advisor A99 in the directory"), unknown.output


def test_a_process_holds_few_event_streams_and_the_rest_poll(settings, desk, accounts,
                                                             make_app):
    """Each stream holds a server thread: past the limit a page is told to poll (503),
    and a closed stream frees its place."""
    app = make_app(settings.with_changes(console_streams=1))
    first, second = app.test_client(), app.test_client()
    sign_in(first, "A7", PASSWORD)
    sign_in(second, "A2", PASSWORD)
    stream = first.get("/console/events", buffered=False)
    assert stream.status_code == 200
    assert stream.mimetype == "text/event-stream"
    assert second.get("/console/events", buffered=False).status_code == 503
    stream.close()
    again = second.get("/console/events", buffered=False)
    assert again.status_code == 200
    again.close()


@pytest.mark.parametrize(("threads", "streams"), [(1, 0), (2, 0), (3, 1), (4, 2), (8, 2)])
def test_event_streams_always_leave_two_threads_for_twilios_webhooks(
        settings, desk, accounts, make_app, threads, streams):
    """`caseline serve --threads N` lets pages hold at most N - 2 streams (never more
    than CASELINE_CONSOLE_STREAMS, 2): with 1 or 2 threads every page polls, so open
    pages can never leave Twilio's webhooks waiting past its 15 s timeout."""
    from caseline.server import streams_for

    app = make_app(streams_for(settings.with_changes(console_streams=2), threads))
    pages = [app.test_client() for _ in range(3)]
    held = []
    for page in pages:
        sign_in(page, "A7", PASSWORD)
        answer = page.get("/console/events", buffered=False)
        if answer.status_code == 200:
            held.append(answer)
        else:
            assert answer.status_code == 503  # told to poll
    assert len(held) == streams
    for answer in held:
        answer.close()


def test_a_graceful_stop_ends_open_event_streams_instead_of_waiting_for_them(
        live_service, accounts):
    """A deploy stops `caseline serve` with SIGTERM while wallboards hold their event
    streams (each for minutes): the streams end at once, so the page reconnects
    elsewhere and the stop is not held up for the whole graceful timeout (10 s)."""
    page = requests.Session()
    form = page.get(f"{live_service.url}/console/sign-in", timeout=5).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    page.post(f"{live_service.url}/console/sign-in", timeout=5, data={
        "csrf_token": token, "advisor": "S1", "password": SUPERVISOR_PASSWORD})
    stream = page.get(f"{live_service.url}/console/events", stream=True, timeout=5)
    assert stream.status_code == 200
    lines = stream.iter_lines(decode_unicode=True)
    assert next(lines).startswith("retry:")

    stopping = time.monotonic()
    live_service.process.terminate()
    live_service.process.wait(timeout=15)
    took = time.monotonic() - stopping
    assert list(lines) == [": connected", ""]  # the rest of what was sent, then the end
    # Held by the stream, the stop would wait out gunicorn's whole graceful timeout
    # (10 s, `caseline.server`); a busy CI machine takes a few seconds to stop anyway.
    assert took < 8, f"the stop waited {took:.1f}s for an open event stream"


@pytest.mark.databases
def test_the_card_lists_the_cases_earlier_calls(app, phone, desk, accounts):
    make_available(desk, "A7")
    assert phone.call(PAT, "1 2024117#").outcome == "advisor"
    run_jobs(desk)  # the first call's log is written
    page = app.test_client()
    sign_in(page, "A7", PASSWORD)
    card = card_while_ringing(page, phone, PAT, "1 2024117#")
    earlier = re.search(r'<ul id="card-previous">(.*?)</ul>', card, re.S)
    assert earlier and earlier.group(1).count("<li>") == 1
    # The first call, minutes ago at 10:00 Central: today's, so the time alone.
    assert re.search(r"<li>10:0\d: answered by Jordan Smith\s*</li>", earlier.group(1)), \
        earlier.group(1)


def test_the_cards_earlier_calls_show_central_dates_and_advisor_names(
        app, phone, desk, accounts):
    central = timedelta(hours=6)  # CST in November: 21:30 Central is 03:30 UTC the next day
    today = datetime(2026, 11, 24, tzinfo=UTC) + central  # the suite's Tuesday
    with desk.session_factory() as db, db.begin():
        db.add(CallLog(call_sid="CA-today", caller=PAT, menu_path="1", status="answered",
                       team="general", answered_by="A2", case_number="2024117",
                       started_at=today + timedelta(hours=8, minutes=5)))
        # Yesterday evening in Chicago, already the 24th in UTC.
        db.add(CallLog(call_sid="CA-evening", caller=PAT, menu_path="1", status="answered",
                       team="general", answered_by="A99", case_number="2024117",
                       started_at=today - timedelta(hours=2, minutes=30)))
        db.add(CallLog(call_sid="CA-last-year", caller=PAT, menu_path="1",
                       status="answered", team="general", answered_by="A7",
                       case_number="2024117",
                       started_at=today - timedelta(days=365) + timedelta(hours=16,
                                                                           minutes=30)))
    make_available(desk, "A7")
    page = app.test_client()
    sign_in(page, "A7", PASSWORD)
    card = card_while_ringing(page, phone, PAT, "1 2024117#")
    earlier = re.search(r'<ul id="card-previous">(.*?)</ul>', card, re.S)
    assert earlier, card
    # Newest first; A99 has left the directory, so the id is all there is to show.
    assert [li.strip() for li in re.findall(r"<li>(.*?)</li>", earlier.group(1), re.S)] == [
        "08:05: answered by Advisor A2",
        "Nov 23 21:30: answered by A99",
        "Nov 24, 2025 16:30: answered by Jordan Smith",
    ]
    assert "UTC" not in card


def test_a_supervisor_sets_the_announcement_from_the_wallboard(client, desk, accounts):
    sign_in(client, "S1", SUPERVISOR_PASSWORD)
    form = {"text": "Gradebook is slow this morning.", "active": "1"}
    assert client.post("/console/announcement", data=form).status_code == 400  # no token
    assert active_announcement(desk.r) is None
    token = csrf_of(client, "/console/wallboard")
    assert client.post("/console/announcement",
                       data={**form, "csrf_token": token}).status_code == 302
    assert active_announcement(desk.r) == "Gradebook is slow this morning."
    client.post("/console/announcement", data={"text": form["text"], "csrf_token": token})
    assert active_announcement(desk.r) is None  # unticked: kept, not played


def test_an_advisor_cannot_set_the_announcement(client, desk, accounts):
    sign_in(client, "A7", PASSWORD)
    token = csrf_of(client, "/console/advisor")
    refused = client.post("/console/announcement",
                          data={"text": "Hello", "active": "1", "csrf_token": token})
    assert refused.status_code == 403
    assert active_announcement(desk.r) is None


def test_the_wallboard_lists_maintenance_windows_not_yet_over(app, client, accounts):
    start = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)  # the Saturday after the suite's day
    app.extensions["caseline.maintenance"] = [
        MaintenanceWindow(start - timedelta(days=7), start - timedelta(days=7, hours=-2),
                          "outage-risk"),
        MaintenanceWindow(start, start + timedelta(hours=2), "outage-risk", "database upgrade"),
    ]
    sign_in(client, "S1", SUPERVISOR_PASSWORD)
    page = client.get("/console/wallboard").get_data(as_text=True)
    listed = re.search(r'<ul id="maintenance">(.*?)</ul>', page, re.S)
    assert listed and listed.group(1).count("<li>") == 1
    assert "database upgrade" in listed.group(1)


def _log_call(desk, sid: str, started_at: datetime, status: str, wait: float | None) -> None:
    """A call log of the general team, as the worker writes it."""
    with desk.session_factory() as db, db.begin():
        db.add(CallLog(call_sid=sid, caller=PAT, menu_path="2", status=status, team="general",
                       queue_wait_seconds=wait, started_at=started_at))


def test_todays_figures_by_the_hour_are_counted_in_central_time(app, client, desk, accounts):
    central = timedelta(hours=6)  # CST in November: 08:10 Central is 14:10 UTC
    today = datetime(2026, 11, 24, tzinfo=UTC) + central
    _log_call(desk, "CA-0030", today + timedelta(minutes=30), "answered", 3.0)
    _log_call(desk, "CA-0810", today + timedelta(hours=8, minutes=10), "answered", 10.0)
    _log_call(desk, "CA-0840", today + timedelta(hours=8, minutes=40), "answered", 30.0)
    _log_call(desk, "CA-0905", today + timedelta(hours=9, minutes=5), "abandoned", 50.0)
    _log_call(desk, "CA-0930", today + timedelta(hours=9, minutes=30), "answered", 4.0)
    _log_call(desk, "CA-0959", today + timedelta(hours=9, minutes=59), "voicemail", None)
    # Yesterday in Central time (23:30 on the 23rd is 05:30 UTC on the 24th): not today.
    _log_call(desk, "CA-yday", today - timedelta(minutes=30), "answered", 99.0)

    hours = hourly(desk.session_factory, datetime.now(UTC))
    assert len(hours) == 24 and [h["hour"] for h in hours] == list(range(24))
    assert hours[0] == {"hour": 0, "answered": 1, "abandoned": 0, "asa_seconds": 3.0}
    assert hours[8] == {"hour": 8, "answered": 2, "abandoned": 0, "asa_seconds": 20.0}
    assert hours[9] == {"hour": 9, "answered": 1, "abandoned": 1, "asa_seconds": 4.0}
    assert hours[23] == {"hour": 23, "answered": 0, "abandoned": 0, "asa_seconds": None}
    assert sum(h["answered"] for h in hours) == 4  # yesterday's call is not today's

    sign_in(client, "S1", SUPERVISOR_PASSWORD)
    for path in ("/console/wallboard", "/console/wallboard/live"):
        page = client.get(path).get_data(as_text=True)
        rows = dict(re.findall(r'<tr id="hour-(\d+)">(.*?)</tr>', page, re.S))
        assert sorted(rows, key=int) == ["0", "8", "9"]
        cells = re.findall(r'<td class="\w+">([^<]*)</td>', rows["8"])
        assert cells == ["2", "0", "20.0 s"]
        assert re.findall(r'<td class="\w+">([^<]*)</td>', rows["9"]) == ["1", "1", "4.0 s"]
        chart = re.search(r'<svg id="hourly-asa".*?</svg>', page, re.S)
        assert chart and "<title" in chart.group(0)
        assert "Over 15 seconds in the hour from 08:00." in chart.group(0)
        calls = re.search(r'<svg id="hourly-calls".*?</svg>', page, re.S)
        assert calls and "4 answered and 1 abandoned today" in calls.group(0)
        assert '08:00: 2 answered' in calls.group(0)


def test_todays_calls_show_central_times_and_district_names(client, desk, accounts):
    central = timedelta(hours=6)  # CST in November: 09:41 Central is 15:41 UTC
    today = datetime(2026, 11, 24, tzinfo=UTC) + central
    with desk.session_factory() as db, db.begin():
        db.add(CallLog(call_sid="CA-0941", caller=PAT, menu_path="1", status="answered",
                       team="general", answered_by="A7", district_id="D100",
                       case_number="2024117", talk_seconds=120,
                       started_at=today + timedelta(hours=9, minutes=41)))
        # A district the directory no longer knows: its id is all there is to show.
        db.add(CallLog(call_sid="CA-0805", caller=PAT, menu_path="2", status="answered",
                       team="general", answered_by="A7", district_id="D999",
                       started_at=today + timedelta(hours=8, minutes=5)))

    sign_in(client, "A7", PASSWORD)
    page = client.get("/console/advisor/live").get_data(as_text=True)
    table = re.search(r'<table id="calls-today">(.*?)</table>', page, re.S)
    assert table, page
    rows = [re.findall(r"<td>([^<]*)</td>", row)
            for row in re.findall(r"<tr><td>.*?</tr>", table.group(1), re.S)]
    assert [row[:3] for row in rows] == [["09:41", "2024117", "Lakeview Public Schools"],
                                         ["08:05", "–", "D999"]]
    assert "Started (Central)" in table.group(1)


def test_on_a_call_the_switch_sends_the_advisor_away_once_the_call_ends(
        app, phone, desk, accounts):
    page = app.test_client()
    sign_in(page, "A7", PASSWORD)
    page.post("/console/advisors/A7/presence",
              data={"status": "available", "csrf_token": csrf_of(page, "/console/advisor")})
    seen = {}

    def press_the_switch_then_answer(number: str, attempt: int) -> str:
        live = page.get("/console/advisor/live").get_data(as_text=True)
        seen["before"] = live
        form = re.search(r'name="status" value="(\w+)"', live)
        assert form is not None
        page.post("/console/advisors/A7/presence",
                  data={"status": form.group(1), "csrf_token": csrf_of(page, "/console/advisor")})
        seen["after"] = page.get("/console/advisor/live").get_data(as_text=True)
        return "answer"

    assert phone.call(PAT, "1 2024117#", advisors=press_the_switch_then_answer).outcome == "advisor"
    assert "Go away after this call" in seen["before"]
    assert "Take the next caller after this call" in seen["after"]
    # The call is over: A7 is away, not handed the next caller.
    assert presence.advisor_state(desk.r, "A7")["status"] == "busy"


def test_the_wallboard_shows_who_asked_for_a_callback(client, desk, accounts):
    from routing import acd, waiting
    from routing.call_state import start_call

    now = int(time.time() * 1000)
    for sid in ("CA-waits", "CA-callback"):
        start_call(desk.r, sid, {"caller": PAT, "started_at": now, "team": "general",
                                 "priority": "medium", "menu": "2", "base": "http://x"})
        assert isinstance(acd.route_caller(desk, sid, now), acd.WaitInQueue)
    desk.r.hset(keys.call("CA-callback"), mapping={"contact": "5001", "verified": "1"})
    assert waiting.request_callback(desk, "CA-callback")
    sign_in(client, "S1", SUPERVISOR_PASSWORD)
    page = client.get("/console/wallboard").get_data(as_text=True)
    rows = dict(re.findall(r'data-call="(CA-[a-z]+)".*?class="callback">([a-z]*)<', page, re.S))
    assert rows == {"CA-waits": "", "CA-callback": "requested"}
    # The figures tell the callback apart from the caller on hold, as /api/stats does.
    assert "2 in line: 1 on hold, 1 callback" in page
    [general] = re.findall(r'<th scope="row">general</th><td>(\d+)</td><td>[^<]*</td>\s*'
                           r'<td class="callbacks">(\d+)', page)
    assert general == ("1", "1")


def test_the_advisor_adds_and_removes_a_colleague_from_the_card(app, phone, desk, accounts):
    import threading

    page = app.test_client()
    sign_in(page, "A7", PASSWORD)
    page.post("/console/advisors/A7/presence",
              data={"status": "available", "csrf_token": csrf_of(page, "/console/advisor")})
    caller = phone.caller(PAT, "1 2024117#", on_call_seconds=3.0)
    thread = threading.Thread(target=caller.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while presence.advisor_state(desk.r, "A7").get("hold") != "talking":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    token = csrf_of(page, "/console/advisor")
    abroad = page.post("/console/advisors/A7/colleague",
                       data={"phone": "+44 20 7946 0958", "csrf_token": token})
    assert abroad.status_code == 400
    assert "Only a US or Canada number can be added." in abroad.get_data(as_text=True)
    added = page.post("/console/advisors/A7/colleague",
                      data={"phone": "612 555 0177", "csrf_token": token})
    assert added.status_code == 302
    card = page.get("/console/advisor/live").get_data(as_text=True)
    assert re.search(r'id="colleague">\+16125550177: (ringing|on the call), added by A7<', card)
    # Another advisor cannot act on A7's call.
    assert page.post("/console/advisors/A2/colleague/remove",
                     data={"csrf_token": token}).status_code == 403
    assert page.post("/console/advisors/A7/colleague/remove",
                     data={"csrf_token": token}).status_code == 302
    card = page.get("/console/advisor/live").get_data(as_text=True)
    assert 'id="colleague-phone"' in card  # free to add another
    thread.join(20)
    left = [e for e in caller.result.events("colleague") if e.detail.startswith("left")]
    assert [e.detail for e in left] == ["left: removed through the REST API"]


def test_the_advisor_sees_their_own_survey_figure(app, phone, desk, accounts):
    page = app.test_client()
    sign_in(page, "A7", PASSWORD)
    live = page.get("/console/advisor/live").get_data(as_text=True)
    assert "No survey answers for your calls in the last 30 days." in live
    for overall in ("5", "2"):
        make_available(desk, "A7")
        phone.call(PAT, f"1 2024117# # # # # {overall}", bridged_hangup="advisor")
        run_jobs(desk)
        # The 30-day rule: this test is about counting, so the earlier survey is forgotten.
        with desk.session_factory() as db, db.begin():
            for log in db.query(CallLog):
                log.details = {}
        desk.r.delete(keys.survey_hold("5001"))
    live = page.get("/console/advisor/live").get_data(as_text=True)
    assert re.search(r'id="survey">50.0% rated the overall service 4 or 5 over the last 30 '
                     r'days \(2 answers; the desk.s target is above 95%\)', live)
    other = app.test_client()
    sign_in(other, "A2", PASSWORD)
    assert "No survey answers" in other.get("/console/advisor/live").get_data(as_text=True)


def test_the_wallboard_lists_the_next_four_outage_risk_windows(app, client, accounts):
    central = timedelta(hours=6)
    # The operators posted one window, off the cadence: Saturday 12 December 01:00-05:00.
    moved = datetime(2026, 12, 12, 1, 0, tzinfo=UTC) + central
    app.extensions["caseline.maintenance"] = [
        MaintenanceWindow(moved, moved + timedelta(hours=4), "outage-risk", "moved release")]
    sign_in(client, "S1", SUPERVISOR_PASSWORD)
    page = client.get("/console/wallboard").get_data(as_text=True)
    listed = re.search(r'<ul id="upcoming-maintenance">(.*?)</ul>', page, re.S)
    assert listed is not None
    days = re.findall(r"<li>\w{3} (\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})", listed.group(1))
    # The cadence outside the posted dates (every other Saturday from 6 January 2024),
    # the posted window on its date.
    assert days == [("2026-12-05", "00:00"), ("2026-12-12", "01:00"),
                    ("2026-12-19", "00:00"), ("2027-01-02", "00:00")]


def test_a_supervisor_posts_and_withdraws_a_window_and_a_weekday_is_refused(
        app, client, accounts):
    app.extensions["caseline.maintenance"] = []
    api = app.test_client()
    headers = {"Authorization": "Bearer test-api-token"}
    sign_in(client, "S1", SUPERVISOR_PASSWORD)
    token = csrf_of(client, "/console/wallboard")
    thursday = client.post("/console/maintenance", data={
        "csrf_token": token, "date": "2026-12-10", "start": "00:00", "end": "06:00",
        "outage": "1"})
    assert thursday.status_code == 422
    assert "not a Saturday in Central Time (Thursday 2026-12-10)" in thursday.get_data(
        as_text=True)
    assert api.get("/api/maintenance", headers=headers).get_json() == []
    posted = client.post("/console/maintenance", data={
        "csrf_token": token, "date": "2026-12-12", "start": "01:00", "end": "05:00",
        "outage": "1", "note": "moved release"})
    assert posted.status_code == 302
    assert api.get("/api/maintenance", headers=headers).get_json() == [
        {"start": "2026-12-12T01:00:00-06:00", "end": "2026-12-12T05:00:00-06:00",
         "outage": True, "note": "moved release"}]
    page = client.get("/console/wallboard").get_data(as_text=True)
    assert "moved release" in re.search(r'<ul id="maintenance">(.*?)</ul>', page, re.S).group(1)
    assert client.post("/console/maintenance/withdraw", data={
        "csrf_token": token, "start": "2026-12-12T01:00:00-06:00"}).status_code == 302
    assert api.get("/api/maintenance", headers=headers).get_json() == []
    advisor = app.test_client()
    sign_in(advisor, "A7", PASSWORD)
    assert advisor.post("/console/maintenance", data={
        "csrf_token": csrf_of(advisor, "/console/advisor"), "date": "2026-12-12",
        "start": "01:00", "end": "05:00"}).status_code == 403
