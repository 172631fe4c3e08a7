"""A number that places too many calls in a short while (a dialer, traffic pumping,
a flood from one spoofed number) is refused politely at the front door, in TwiML,
never with a 429 or a 5xx; everyone else's calls go on as before.

The limit counts the calls the line took from a number in a rolling window
(`CASELINE_CALLS_PER_NUMBER` in `CASELINE_CALLS_PER_NUMBER_WINDOW_SECONDS`), in the
same Redis step that opens the call: a repeat of the first webhook never counts
twice, and callers arriving together are admitted exactly up to the limit."""

from __future__ import annotations

import logging
import threading
import uuid
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
import time_machine
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from caseline.embedded_redis import start_server, wait_until_up
from config.prompts import Prompts
from config.settings import Settings, SettingsError
from directory import keys
from directory.models import CallLog, Contact
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, NOW, free_port, run_jobs
from tests.webhooks import post  # a 200 asserted: never a 429 or a 5xx
from twilio_side import HttpTransport

FLOOD = "+19525550123"  # one number, calling again and again
OTHER = "+19525550188"
LINE = "+18005550100"
FALLBACK = "+16515550000"
DEFAULT_LIMIT = 100  # calls per number in DEFAULT_WINDOW seconds, unless set otherwise
DEFAULT_WINDOW = 600
LIMIT = 3  # a small limit for the stories below
WINDOW = 60
PAT = "+16125550101"  # an authorized contact's number
ATTESTED = "TN-Validation-Passed-A"


def call(client, sid: str, caller: str = FLOOD, token: str | None = None,
         verstat: str | None = None) -> ET.Element:
    """Twilio's first webhook of a call from `caller` (`verstat`: its StirVerstat)."""
    form = {"CallSid": sid, "From": caller, "To": LINE}
    if verstat:
        form["StirVerstat"] = verstat
    return post(client, "/voice/incoming", form, token=token)


def hang_up(client, sid: str, caller: str = FLOOD) -> None:
    """Twilio's status callback: the call is over."""
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "6", "From": caller})


def refused(answer: ET.Element) -> bool:
    """Whether the caller heard the polite refusal and the call ended."""
    said = [s.text for s in answer.iter("Say")]
    return (said == [Prompts().text("greeting.too_many_calls")]
            and answer.find("Hangup") is not None and answer.find("Gather") is None)


def greeted(answer: ET.Element) -> bool:
    """Whether the caller was greeted and asked the menu."""
    return answer.find("Gather") is not None and not refused(answer)


@pytest.fixture
def limited(settings, desk, make_app):
    """A test client of a line limited to LIMIT calls per number per WINDOW seconds."""
    app = make_app(settings.with_changes(calls_per_number=LIMIT,
                                         calls_per_number_window_seconds=WINDOW))
    app.testing = True
    return app.test_client()


def test_a_flood_from_one_number_is_refused_politely_after_the_default_limit(
        client, desk, caplog):
    # Generous: a storm of outage calls from one district's shared PBX number, or an
    # acceptance or load test placing many calls from a few numbers, stays under it; a
    # dialer does not.
    assert desk.settings.calls_per_number == DEFAULT_LIMIT
    assert desk.settings.calls_per_number_window_seconds == DEFAULT_WINDOW
    assert Settings().calls_per_number == DEFAULT_LIMIT
    for n in range(DEFAULT_LIMIT):
        assert greeted(call(client, f"CA-flood-{n}")), n
    with caplog.at_level(logging.WARNING, logger="routing.menu"):
        assert refused(call(client, "CA-flood-over"))
    # Operators read why, with the number masked as every log line masks it.
    [line] = [r.getMessage() for r in caplog.records if "CA-flood-over" in r.getMessage()]
    assert "+1952***0123" in line and FLOOD not in line
    assert refused(call(client, "CA-flood-over-again"))


def test_other_numbers_are_not_affected_by_one_numbers_flood(limited):
    for n in range(LIMIT + 2):
        call(limited, f"CA-flood-{n}")
    assert refused(call(limited, "CA-flood-again"))
    assert greeted(call(limited, "CA-other", caller=OTHER))
    assert greeted(call(limited, "CA-pat", caller="+16125550101"))


def test_the_window_rolls_and_the_number_is_let_in_again(limited):
    for n in range(LIMIT):
        assert greeted(call(limited, f"CA-early-{n}"))
    assert refused(call(limited, "CA-early-refused"))
    with time_machine.travel(NOW + timedelta(seconds=WINDOW // 2), tick=False):
        assert refused(call(limited, "CA-half-way"))  # still within the window
    with time_machine.travel(NOW + timedelta(seconds=WINDOW + 1), tick=False):
        # The first calls are a window old: as many new ones get in, and no more
        # (the refused calls never counted).
        for n in range(LIMIT):
            assert greeted(call(limited, f"CA-later-{n}")), n
        assert refused(call(limited, "CA-later-refused"))


def test_a_repeated_first_webhook_counts_once_and_hears_the_same_answer(limited):
    # Twilio retries the first webhook with its token, or without one.
    token = str(uuid.uuid4())
    for _ in range(4):
        assert greeted(call(limited, "CA-first", token=token))
        assert greeted(call(limited, "CA-first"))
    for n in range(1, LIMIT):
        assert greeted(call(limited, f"CA-next-{n}")), n  # the repeats took no place
    assert refused(call(limited, "CA-over"))
    # A refused call's repeat is refused again, and takes no place either.
    assert refused(call(limited, "CA-over"))
    with time_machine.travel(NOW + timedelta(seconds=WINDOW + 1), tick=False):
        assert refused(call(limited, "CA-over"))  # the same call: the same answer
        for n in range(LIMIT):
            assert greeted(call(limited, f"CA-after-{n}")), n


def test_a_withheld_number_is_counted_like_any_other_and_its_calls_go_on(limited, desk):
    # Twilio's placeholders for a withheld caller ID: the line takes such calls (the
    # menu included) until that one "number" has placed too many.
    for n in range(LIMIT - 1):
        assert greeted(call(limited, f"CA-anon-{n}", caller="anonymous"))
    key_0 = post(limited, "/voice/menu?attempt=1", {"CallSid": "CA-anon-0", "Digits": "0"})
    p = Prompts()
    assert [s.text for s in key_0.iter("Say")] == [p.text("menu.invalid"), p.text("menu.main")]
    assert greeted(call(limited, "CA-lesotho", caller="+266696687"))
    assert greeted(call(limited, f"CA-anon-{LIMIT}", caller="anonymous"))
    assert refused(call(limited, "CA-anon-over", caller="anonymous"))
    assert greeted(call(limited, "CA-lesotho-2", caller="+266696687"))


def refusals_counted(client) -> float:
    """The refused calls /metrics counts (this process's counter: read a difference)."""
    return sum(sample.value
               for family in text_string_to_metric_families(
                   client.get("/metrics").get_data(as_text=True))
               for sample in family.samples
               if sample.name == "caseline_calls_refused_too_many_total")


def test_operators_see_refused_calls_in_metrics_each_counted_once(limited):
    before = refusals_counted(limited)
    for n in range(LIMIT):
        call(limited, f"CA-ok-{n}")
    assert refusals_counted(limited) == before
    assert refused(call(limited, "CA-over"))
    assert refused(call(limited, "CA-over"))  # Twilio's repeat: the same refusal
    assert refused(call(limited, "CA-over-2"))
    assert refusals_counted(limited) == before + 2


def test_a_refused_call_leaves_one_call_log_that_says_refused(limited, desk):
    for n in range(LIMIT):
        call(limited, f"CA-ok-{n}")
    assert refused(call(limited, "CA-refused"))
    for _ in range(2):  # Twilio may repeat the status callback
        post(limited, "/voice/status", {"CallSid": "CA-refused", "CallStatus": "completed",
                                        "CallDuration": "6", "From": FLOOD})
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog).where(CallLog.call_sid == "CA-refused")).all()
    assert log.status == "refused"
    assert log.details["too_many_calls"] is True
    assert log.caller == FLOOD and log.case_number is None and log.menu_path == ""


def test_a_flood_of_refused_calls_leaves_no_call_state_once_logged(limited, desk):
    # Each refused call keeps only what its log reads, and only until the log is
    # written: a dialer's day of refusals no longer leaves a day of call hashes. Its
    # status callback, twice or late (after the log), still ends and logs it once.
    for n in range(LIMIT):
        call(limited, f"CA-ok-{n}")
    flood = [f"CA-refused-{n}" for n in range(5)]
    for sid in flood:
        assert refused(call(limited, sid))
    assert set(desk.r.hgetall(keys.call(flood[0]))) <= {
        "call_sid", "caller", "started_at", "stir_verstat", "refused"}
    for sid in flood:
        hang_up(limited, sid)
        hang_up(limited, sid)  # Twilio may repeat the status callback
    run_jobs(desk)
    assert [sid for sid in flood if desk.r.exists(keys.call(sid))] == []
    for sid in flood:
        hang_up(limited, sid)  # late, after the log: ends nothing, opens no hash
    run_jobs(desk)
    assert [sid for sid in flood if desk.r.exists(keys.call(sid))] == []
    assert desk.r.zscore(keys.open_calls(), flood[0]) is None
    with desk.session_factory() as db:
        logs = db.scalars(select(CallLog).where(CallLog.call_sid.in_(flood))).all()
    assert sorted(log.call_sid for log in logs) == sorted(flood)  # each once
    assert {(log.status, log.details["too_many_calls"], log.caller, log.menu_path)
            for log in logs} == {("refused", True, FLOOD, "")}


def test_a_refused_call_from_a_contacts_number_is_neither_verified_nor_their_activity(
        limited, desk, directory):
    # The number is looked up before the limit is known; a call refused at the front door
    # never got past it: it is logged unverified (the number kept) and is no activity of
    # the contact's for the 180-day rule.
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468", last_active="2026-10-01")
    directory.load()
    for n in range(LIMIT):
        assert greeted(call(limited, f"CA-pat-{n}", caller=PAT)), n  # not attested
    assert refused(call(limited, "CA-pat-refused", caller=PAT, verstat=ATTESTED))
    for sid in [*(f"CA-pat-{n}" for n in range(LIMIT)), "CA-pat-refused"]:
        hang_up(limited, sid, caller=PAT)
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog).where(CallLog.call_sid == "CA-pat-refused")).all()
        assert log.status == "refused"
        assert log.details["too_many_calls"] is True
        assert log.details["verified"] is False and log.details["verified_by"] == ""
        assert log.caller == PAT and log.contact_id is None
        assert db.get(Contact, "5001").last_activity == date(2026, 10, 1)


def test_callers_at_the_limit_together_are_admitted_exactly_up_to_it(live_service):
    callers = DEFAULT_LIMIT + 10  # against the default limit, on two web processes
    start = threading.Barrier(callers)
    answers: dict[int, ET.Element] = {}

    def place(n: int) -> None:
        twilio = HttpTransport(live_service.url, auth_token=AUTH_TOKEN)
        start.wait()
        answer = twilio.post("/voice/incoming", {
            "AccountSid": ACCOUNT_SID, "CallSid": f"CA-together-{n:02d}",
            "From": FLOOD, "To": LINE})
        assert answer.status == 200
        answers[n] = ET.fromstring(answer.text)

    threads = [threading.Thread(target=place, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == callers
    assert sum(greeted(a) for a in answers.values()) == DEFAULT_LIMIT
    assert sum(refused(a) for a in answers.values()) == callers - DEFAULT_LIMIT


def test_with_redis_down_a_flooding_number_still_reaches_a_human(settings, make_app, tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_server(tmp_path / "flood-redis", port=port)
    try:
        wait_until_up(url)
        app = make_app(settings.with_changes(
            redis_url=url, fallback_number=FALLBACK, calls_per_number=LIMIT,
            calls_per_number_window_seconds=WINDOW))
        client = app.test_client()
        for n in range(LIMIT):
            call(client, f"CA-ok-{n}")
        assert refused(call(client, "CA-refused"))
    finally:
        server.terminate()
        server.wait(timeout=10)
    # Redis is gone: the limit cannot be read, and it never refuses anyone then.
    answer = call(client, "CA-during")
    assert [d.text for d in answer.iter("Dial")] == [FALLBACK]


def test_the_limit_is_set_from_the_environment_and_0_turns_it_off(
        tmp_path, settings, desk, make_app):
    env = {"CASELINE_CALLS_PER_NUMBER": "5", "CASELINE_CALLS_PER_NUMBER_WINDOW_SECONDS": "120"}
    chosen = Settings.from_env(env, dotenv=tmp_path / ".env")
    assert (chosen.calls_per_number, chosen.calls_per_number_window_seconds) == (5, 120)
    unset = Settings.from_env({}, dotenv=tmp_path / ".env")
    assert (unset.calls_per_number, unset.calls_per_number_window_seconds) == (
        DEFAULT_LIMIT, DEFAULT_WINDOW)
    app = make_app(settings.with_changes(calls_per_number=0))
    client = app.test_client()
    for n in range(DEFAULT_LIMIT + 5):
        assert greeted(call(client, f"CA-unlimited-{n}")), n


@pytest.mark.parametrize(("variable", "value"), [
    ("CASELINE_CALLS_PER_NUMBER_WINDOW_SECONDS", str(10**16)),  # PEXPIRE out of range
    ("CASELINE_CALLS_PER_NUMBER_WINDOW_SECONDS", str(7 * 24 * 3600 + 1)),
    ("CASELINE_CALLS_PER_NUMBER_WINDOW_SECONDS", "-600"),
    ("CASELINE_CALLS_PER_NUMBER", "-1")])
def test_a_window_past_a_week_or_a_negative_setting_is_a_settings_error(
        tmp_path, variable, value):
    # A window Redis cannot expire a key by (>= ~9.2e15 s) made the opening script fail
    # on every call, and every caller heard the fallback number: a silent outage. It is
    # refused where the settings are read, naming the variable and its value.
    with pytest.raises(SettingsError) as refused_setting:
        Settings.from_env({variable: value}, dotenv=tmp_path / ".env")
    assert variable in str(refused_setting.value) and repr(value) in str(refused_setting.value)


def test_the_longest_window_allowed_takes_calls_as_usual(tmp_path, settings, make_app):
    week = Settings.from_env({"CASELINE_CALLS_PER_NUMBER_WINDOW_SECONDS": str(7 * 24 * 3600)},
                             dotenv=tmp_path / ".env")
    app = make_app(settings.with_changes(
        fallback_number=FALLBACK, calls_per_number=LIMIT,
        calls_per_number_window_seconds=week.calls_per_number_window_seconds))
    client = app.test_client()
    for n in range(LIMIT):
        assert greeted(call(client, f"CA-week-{n}")), n
    assert refused(call(client, "CA-week-over"))
