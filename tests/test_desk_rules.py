"""The whole menu and the desk's rules, as a caller experiences them: hours,
holidays, authorization, options 2, 6 and 8, and where each call is logged."""

from __future__ import annotations

import os
import threading
import time
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from config.prompts import Prompts
from directory import keys
from directory.models import CallLog, Case, Contact
from tests.conftest import make_available, run_jobs

CHICAGO = ZoneInfo("America/Chicago")
PAT = "+16125550101"  # Lakeview (hosted)
SAM = "+17635550111"  # Riverside (not hosted)
STRANGER = "+19525550177"


@pytest.fixture
def desk_directory(directory):
    """Two districts, their contacts, advisors of every team needed, a case."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.district("D200", "Riverside Unified", hosted=False)
    # Active through every date these tests travel to.
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468", last_active="2027-11-30")
    directory.contact("5002", "+16125550102", "D100", "Lee Park", "1357")
    directory.contact("5101", SAM, "D200", "Sam Ortiz", "8642")
    directory.contact("5102", "+17635550112", "D200", "Old Timer", "1111",
                      last_active="2026-01-02")
    directory.advisor("A7", ["general", "hosting"], phone="+16515550199")
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.advisor("A5", ["fees"], phone="+16515550105")
    directory.advisor("A6", ["hosting"], phone="+16515550106")
    directory.case("2024117", "D100", owner="A7")
    directory.case("2024200", "D200", owner="A2")
    directory.load()


def at(year: int, month: int, day: int, hour: int, minute: int = 0):
    """Travel to a wall-clock time in Chicago (the clock keeps ticking)."""
    return time_machine.travel(datetime(year, month, day, hour, minute, tzinfo=CHICAGO),
                               tick=True)


def logs(desk) -> list:
    """Every call log, oldest first, with its case."""
    from directory.models import CallLog

    run_jobs(desk)
    with desk.session_factory() as db:
        return list(db.scalars(select(CallLog).order_by(CallLog.id)))


# --- hours and holidays ----------------------------------------------------

OPEN_OR_CLOSED = [
    # (Chicago wall time, open?) — both standard time (January) and DST (July)
    ((2027, 1, 12, 5, 59), False), ((2027, 1, 12, 6, 0), True),
    ((2027, 1, 12, 17, 59), True), ((2027, 1, 12, 18, 0), False),
    ((2026, 7, 14, 5, 59), False), ((2026, 7, 14, 6, 0), True),
    ((2026, 7, 14, 17, 59), True), ((2026, 7, 14, 18, 0), False),
    ((2026, 11, 28, 10, 0), False),  # a Saturday
]


@pytest.mark.parametrize(("when", "is_open"), OPEN_OR_CLOSED)
def test_option_1_is_routed_in_hours_and_voicemail_outside(phone, desk, desk_directory,
                                                          when, is_open):
    with at(*when):
        make_available(desk, "A7")
        result = phone.call(PAT, "1 2024117#")
    if is_open:
        assert result.outcome == "advisor"
    else:
        assert result.outcome == "voicemail"
        assert result.dialed == []


HOLIDAYS = {
    2026: [date(2026, 1, 1), date(2026, 5, 25), date(2026, 6, 19), date(2026, 7, 3),
           date(2026, 9, 7), date(2026, 11, 26), date(2026, 11, 27), date(2026, 12, 24),
           date(2026, 12, 25)],
    2027: [date(2027, 1, 1), date(2027, 5, 31), date(2027, 6, 18), date(2027, 7, 5),
           date(2027, 9, 6), date(2027, 11, 25), date(2027, 11, 26), date(2027, 12, 23),
           date(2027, 12, 24)],
}


@pytest.mark.parametrize("day", [d for days in HOLIDAYS.values() for d in days], ids=str)
def test_holidays_send_option_2_to_voicemail(phone, desk, desk_directory, day):
    with at(day.year, day.month, day.day, 10):
        make_available(desk, "A7", "A2")
        result = phone.call(PAT, "2")
    assert result.outcome == "voicemail"


def test_the_days_around_thanksgiving(phone, desk, desk_directory):
    with at(2026, 11, 25, 10):  # Wednesday before: open
        make_available(desk, "A2")
        assert phone.call(PAT, "2").outcome == "advisor"
    with at(2026, 11, 30, 10):  # Monday after: open
        assert phone.call(PAT, "2").outcome == "advisor"


@pytest.mark.databases
def test_after_hours_option_1_voicemail_lands_on_the_case(phone, desk, desk_directory):
    with at(2026, 11, 24, 20):
        result = phone.call(PAT, "1 2024117#")
    assert result.outcome == "voicemail"
    [log] = logs(desk)
    assert log.case_number == "2024117"
    assert log.recording_url == result.recording_url
    assert log.status == "voicemail"


@pytest.mark.databases
def test_after_hours_option_2_voicemail_opens_a_new_case(phone, desk, desk_directory):
    with at(2026, 11, 24, 20):
        result = phone.call(PAT, "2")
    [log] = logs(desk)
    assert log.recording_url == result.recording_url
    with desk.session_factory() as db:
        case = db.get(Case, log.case_number)
        assert case.district_id == "D100" and case.status == "new"


@pytest.mark.databases
def test_after_hours_option_6_asks_the_product_and_the_voicemail_opens_its_case(
        phone, desk, desk_directory):
    with at(2026, 11, 24, 20):
        fram = phone.call(PAT, "6 3")  # 3: FRAM
        missed = phone.call(PAT, "6 9 9 9")  # three misses: still a message, a general case
    assert fram.outcome == "voicemail" and missed.outcome == "voicemail"
    fram_log, missed_log = logs(desk)
    assert fram_log.menu_path == "6>3" and fram_log.team == "fram"
    assert fram_log.recording_url == fram.recording_url
    assert missed_log.recording_url == missed.recording_url
    with desk.session_factory() as db:
        case = db.get(Case, fram_log.case_number)
        assert (case.district_id, case.product, case.status) == ("D100", "fram", "new")
        assert db.get(Case, missed_log.case_number).product == "campus"  # the general team's


# --- option 8 ---------------------------------------------------------------


def test_outage_from_hosted_district_is_routed_at_night(phone, desk, desk_directory):
    with at(2026, 11, 28, 3):  # Saturday 3 AM
        make_available(desk, "A6")
        result = phone.call(PAT, "8")
    assert result.outcome == "advisor"
    assert result.dialed == ["+16515550106"]


def test_outage_from_non_hosted_district_at_night_gets_voicemail(phone, desk, desk_directory):
    with at(2026, 11, 28, 3):
        make_available(desk, "A6")
        result = phone.call(SAM, "8")
    assert result.outcome == "voicemail"
    assert result.dialed == []


def test_unknown_number_at_night_proves_it_is_hosted(phone, desk, desk_directory):
    with at(2026, 11, 27, 22):  # the day after Thanksgiving, at night
        make_available(desk, "A6")
        result = phone.call(STRANGER, "8 5002# 1357#")
    assert result.outcome == "advisor"
    [log] = logs(desk)
    assert log.outage and log.contact_id == "5002"


def test_unknown_number_in_hours_is_accepted_and_flagged(phone, desk, desk_directory):
    make_available(desk, "A6")
    result = phone.call(STRANGER, "8")
    assert result.outcome == "advisor"
    [log] = logs(desk)
    assert log.outage
    with desk.session_factory() as db:
        case = db.get(Case, log.case_number)
        assert case.needs_handover and case.priority == "critical" and case.outage


def _outage_report_at(phone, desk, when: datetime) -> str:
    """An unknown number reports an outage at `when` (Chicago); the case it is logged on."""
    with time_machine.travel(when, tick=True):
        make_available(desk, "A6")
        assert phone.call(STRANGER, "8").outcome == "advisor"
        return logs(desk)[-1].case_number


def test_one_outage_case_per_calling_number_per_central_date(phone, desk, desk_directory):
    """The desk's "one outage case per calling number per day", with dates in Central
    time: reports at 08:00 and 17:30 on one date share a case; the next morning's at
    07:30, within 24 hours of the case's opening, opens a new one."""
    first = _outage_report_at(phone, desk, datetime(2026, 11, 24, 8, 0, tzinfo=CHICAGO))
    later = _outage_report_at(phone, desk, datetime(2026, 11, 24, 17, 30, tzinfo=CHICAGO))
    next_day = _outage_report_at(phone, desk, datetime(2026, 11, 25, 7, 30, tzinfo=CHICAGO))
    assert first == later
    assert next_day != first


def _ms(when: datetime) -> str:
    return str(int(when.timestamp() * 1000))


def _log_outages_at(desk, written: datetime, *calls: dict[str, str]) -> list[str]:
    """Outage calls' logs written together at `written` (one batch): their case numbers."""
    from routing.cases import cases_for_calls

    with desk.session_factory() as db:
        found = cases_for_calls(db, {f"CA{n}": call for n, call in enumerate(calls)}, written)
        numbers = [found[f"CA{n}"].number for n in range(len(calls))]
        db.commit()
    return numbers


def test_an_outage_report_belongs_to_the_day_it_was_made_however_late_its_log(desk,
                                                                              desk_directory):
    """Lakeview's report at 08:00 opens the day's case; one made at 23:58 whose log is
    written after midnight (a backlog, the database down) joins it; the next morning's
    opens the next day's; an unknown number's calls either side of midnight, logged in
    one batch, go onto two cases."""
    day = datetime(2026, 11, 24, 8, 0, tzinfo=CHICAGO)
    late = datetime(2026, 11, 24, 23, 58, tzinfo=CHICAGO)
    after_midnight = datetime(2026, 11, 25, 0, 0, 20, tzinfo=CHICAGO)
    lakeview = {"outage": "1", "district": "D100", "caller": PAT}
    [first] = _log_outages_at(desk, day, {**lakeview, "started_at": _ms(day)})
    [same] = _log_outages_at(desk, after_midnight, {**lakeview, "started_at": _ms(late)})
    next_morning = datetime(2026, 11, 25, 7, 0, tzinfo=CHICAGO)
    [next_day] = _log_outages_at(desk, next_morning,
                                 {**lakeview, "started_at": _ms(next_morning)})
    assert same == first and next_day != first
    stranger = {"outage": "1", "caller": STRANGER, "handover": "1"}
    before, after = _log_outages_at(
        desk, datetime(2026, 11, 25, 0, 10, tzinfo=CHICAGO),
        {**stranger, "started_at": _ms(datetime(2026, 11, 24, 23, 59, tzinfo=CHICAGO))},
        {**stranger, "started_at": _ms(datetime(2026, 11, 25, 0, 1, tzinfo=CHICAGO))})
    assert before != after


def test_a_late_log_joins_its_days_outage_case_even_once_resolved(desk, desk_directory):
    """Lakeview's 08:00 report opens the day's case, which is resolved at noon; a report
    made that day at 09:00 whose log is written three days later (set aside, then put
    right) joins that day's case: one outage case per district per day. A report made
    today, after today's case was resolved, opens a new one (the outage is back)."""
    day = datetime(2026, 11, 24, 8, 0, tzinfo=CHICAGO)
    lakeview = {"outage": "1", "district": "D100", "caller": PAT}
    [first] = _log_outages_at(desk, day, {**lakeview, "started_at": _ms(day)})
    with desk.session_factory() as db:
        db.get(Case, first).status = "resolved"
        db.commit()
    late = datetime(2026, 11, 24, 9, 0, tzinfo=CHICAGO)
    [written_late] = _log_outages_at(desk, datetime(2026, 11, 27, 10, 0, tzinfo=CHICAGO),
                                     {**lakeview, "started_at": _ms(late)})
    assert written_late == first
    back = datetime(2026, 11, 24, 15, 0, tzinfo=CHICAGO)
    [again] = _log_outages_at(desk, back, {**lakeview, "started_at": _ms(back)})
    assert again != first


@pytest.mark.databases
def test_a_verified_call_logged_days_late_counts_on_the_day_it_was_made(phone, desk,
                                                                        desk_directory):
    """Lee's verified call of 2026-11-24 is logged three days later (its log was set
    aside): Lee's activity is the 24th, the call's date, not the day it was written."""
    from jobs.queues import CALLS_TO_LOG
    from workers.call_log import write_call_logs

    make_available(desk, "A7")
    result = phone.call("+16125550102", "1 2024117#")
    desk.r.zrem(CALLS_TO_LOG, result.call_sid)  # not written by the usual job
    with time_machine.travel(datetime(2026, 11, 27, 10, 0, tzinfo=CHICAGO), tick=True):
        assert write_call_logs(desk, [result.call_sid])[result.call_sid] == "written"
    with desk.session_factory() as db:
        assert db.get(Contact, "5002").last_verified_call == date(2026, 11, 24)


def test_night_outage_with_no_hosting_advisor_rings_on_call(phone, desk, desk_directory, app):
    app.extensions["caseline"] = app.extensions["caseline"].__class__(
        **{**app.extensions["caseline"].__dict__,
           "settings": app.extensions["caseline"].settings.with_changes(
               oncall_number="+16515559999")})
    with at(2026, 11, 28, 3):
        result = phone.call(PAT, "8")
    assert result.dialed == ["+16515559999"]
    assert result.outcome == "advisor"


def test_outage_caller_is_served_before_earlier_general_caller(phone, desk, desk_directory,
                                                               client):
    general = phone.caller(PAT, "2", max_wait_seconds=10)
    outage = phone.caller("+16125550102", "8", max_wait_seconds=10)
    finished: dict[str, object] = {}
    threads = []
    for name, caller, team in (("general", general, "general"), ("outage", outage, "hosting")):
        thread = threading.Thread(target=lambda n=name, c=caller: finished.update({n: c.run()}))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 5
        while desk.r.zscore(keys.team_waiting(team), caller.call_sid) is None:
            assert time.monotonic() < deadline, f"{name} caller never queued"
            time.sleep(0.01)
    # A7 serves both teams: the outage caller, who came second, is connected first.
    client.put("/api/advisors/A7/status", json={"status": "available"},
               headers={"Authorization": "Bearer test-api-token"})
    for thread in threads:
        thread.join(timeout=15)
    assert finished["outage"].outcome == finished["general"].outcome == "advisor"
    assert finished["outage"].redirected_at[0] < finished["general"].redirected_at[0]


def test_outage_announcement_and_maintenance_notice(phone, desk, desk_directory, client):
    client.put("/api/announcement", json={"text": "Gradebook is slow statewide.",
                                          "active": True},
               headers={"Authorization": "Bearer test-api-token"})
    # Saturday 2026-12-05 02:00 is inside the posted 00:00-06:00 window.
    with at(2026, 12, 5, 2):
        make_available(desk, "A6")
        result = phone.call(PAT, "8")
    heard = " ".join(result.heard())
    assert "Gradebook is slow statewide." in heard
    assert "maintenance" in heard.lower()
    assert result.outcome == "advisor"


def test_the_greeting_plays_the_announcement_only_while_it_is_active(phone, desk,
                                                                    desk_directory, client):
    auth = {"Authorization": "Bearer test-api-token"}
    text = "Gradebook is slow statewide."
    client.put("/api/announcement", json={"text": text, "active": False}, headers=auth)
    kept = " ".join(phone.call(PAT, "").heard())  # silence at the menu: goodbye
    client.put("/api/announcement", json={"text": text, "active": True}, headers=auth)
    played = phone.call(PAT, "").heard()

    assert text not in kept and "Pat" in kept
    before_the_menu = " ".join(played[:played.index(next(
        line for line in played if "Press 1" in line or "press 1" in line))])
    assert text in before_the_menu


def test_a_pasted_control_character_never_breaks_a_callers_twiml(phone, desk, directory,
                                                                 desk_directory, client):
    """A supervisor pastes an announcement holding a vertical tab (Word does), and a
    district's name holds a NUL: neither may make a document that is not XML (Twilio
    would hang up on every caller); each is spoken as a pause."""
    auth = {"Authorization": "Bearer test-api-token"}
    client.put("/api/announcement", json={"text": "Gradebook is slow.\x0bWe are on it.",
                                          "active": True}, headers=auth)
    desk.r.hset(keys.district("D100"), "name", "Lakeview\x00Public Schools")
    make_available(desk, "A6")
    result = phone.call(PAT, "8")  # the walker parses every document as XML
    assert result.outcome == "advisor"
    assert "Gradebook is slow. We are on it." in " ".join(result.heard())


def test_option_8_twelve_hours_before_a_posted_window_hears_of_it(phone, desk, desk_directory):
    # Friday 2026-12-04 noon; the posted 00:00-06:00 window opens Saturday at midnight.
    with at(2026, 12, 4, 12):
        make_available(desk, "A6")
        result = phone.call(PAT, "8")
    heard = " ".join(result.heard())
    assert "Scheduled maintenance begins Saturday at midnight" in heard
    assert result.outcome == "advisor"


# --- authorization ---------------------------------------------------------


def test_known_number_goes_straight_to_the_case(phone, desk, desk_directory):
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117#")
    assert result.outcome == "advisor"
    assert len([e for e in result.events("gather") if e.party == "caller"]) == 2


def test_three_wrong_case_numbers_reach_an_advisor_on_a_new_case(phone, desk,
                                                                 desk_directory):
    """PRODUCT: three failures route the caller to the general team, and every call
    that reaches the service is logged on its case: a new one, as option 2's."""
    make_available(desk, "A2")
    result = phone.call(PAT, "1 2024999# 2024999# 2024999#")  # no such case
    assert result.outcome == "advisor" and result.dialed == ["+16515550102"]
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
        case = db.get(Case, log.case_number)
    assert log.answered_by == "A2"
    assert case is not None and (case.district_id, case.status) == ("D100", "new")


@pytest.mark.parametrize(("keys_", "heard"), [("6 0 0 0", "not one of the options"),
                                              ("6", "did not receive a choice")])
def test_three_misses_at_the_product_menu_reach_the_general_team_on_a_new_case(
        phone, desk, desk_directory, keys_, heard):
    """A verified contact who asked for add-on help is not hung up on after three wrong
    keys (or silence) at the product menu: the general team, on a new case."""
    make_available(desk, "A2")
    result = phone.call(PAT, keys_)
    assert result.outcome == "advisor", result.heard()[-2:]
    assert result.dialed == ["+16515550102"]
    assert heard in " ".join(result.heard()).lower()
    run_jobs(desk)
    with desk.session_factory() as db:
        [log] = db.scalars(select(CallLog)).all()
        assert log.case_number is not None and log.answered_by == "A2"


def test_unknown_number_with_right_id_and_pin(phone, desk, desk_directory):
    make_available(desk, "A7")
    result = phone.call(STRANGER, "1 5001# 2468# 2024117#")
    assert result.outcome == "advisor"
    assert result.dialed == ["+16515550199"]


def test_three_failures_lock_the_number_for_fifteen_minutes(phone, desk, desk_directory):
    make_available(desk, "A7")
    with at(2026, 11, 24, 10):
        failed = phone.call(STRANGER, "1 5001# 0000# 5001# 0000# 5001# 0000#")
    assert failed.outcome == "hangup" and failed.dialed == []
    # A new call from the same number, with the right PIN, is still locked out.
    with at(2026, 11, 24, 10, 14):
        again = phone.call(STRANGER, "1 5001# 2468# 2024117#")
    assert again.dialed == [] and again.outcome == "hangup"
    assert Prompts().text("auth.locked") in again.heard()
    # Fifteen minutes after the third failure, on the service's clock.
    with at(2026, 11, 24, 10, 16):
        unlocked = phone.call(STRANGER, "1 5001# 2468# 2024117#")
    assert unlocked.outcome == "advisor"


def test_inactive_contact_is_refused(phone, desk, desk_directory):
    make_available(desk, "A2")
    by_number = phone.call("+17635550112", "1 5102# 1111#")
    assert by_number.dialed == [] and by_number.outcome == "hangup"


def test_unverified_caller_is_told_to_ask_their_contacts_never_whom(phone, desk,
                                                                    desk_directory):
    # Old Timer's number is known (Riverside) but inactive: asked to verify, fails.
    # Naming the district's contacts would tell any caller whom to impersonate.
    result = phone.call("+17635550112", "2 5102# 0000# 5102# 0000# 5102# 0000#")
    assert result.outcome == "hangup" and result.dialed == []
    assert Prompts().text("auth.refused_generic") in result.heard()
    heard = " ".join(result.heard())
    assert "Sam Ortiz" not in heard and "Old Timer" not in heard


def test_pins_are_not_stored_in_clear(desk, desk_directory):
    with desk.session_factory() as db:
        contact = db.get(Contact, "5001")
        assert "2468" not in contact.pin_hash
    assert "2468" not in str(desk.r.hgetall(keys.contact_by_phone(PAT)))


def test_verified_call_counts_as_activity(phone, desk, desk_directory):
    make_available(desk, "A7")
    phone.call("+16125550102", "1 2024117#")  # Lee Park, last active 2026-10-01
    logs(desk)
    with desk.session_factory() as db:
        assert db.get(Contact, "5002").last_activity == date(2026, 11, 24)


def test_reloading_an_older_file_does_not_undo_a_verified_call(phone, desk, directory,
                                                               desk_directory):
    """Lee Park's file says last active 2026-10-01; Lee calls (verified) on 2026-11-24;
    the operator reloads the same file: Lee's activity stays the call's."""
    make_available(desk, "A7")
    phone.call("+16125550102", "1 2024117#")
    logs(desk)
    # The operator loads Lee's record again, as the file has it (last active 2026-10-01).
    directory.contact("5002", "+16125550102", "D100", "Lee Park", "1357")
    directory.load()
    with desk.session_factory() as db:
        assert db.get(Contact, "5002").last_activity == date(2026, 11, 24)
    # 180 days after the file's date, but not after the call: still greeted by name.
    with at(2027, 4, 1, 10):
        make_available(desk, "A7")
        result = phone.call("+16125550102", "1 2024117#")
    assert result.outcome == "advisor"
    assert "Lee" in result.heard()[0]


# --- each option's call log --------------------------------------------------


@pytest.mark.databases
def test_each_option_leaves_one_log_on_the_right_case(phone, desk, desk_directory):
    make_available(desk, "A7", "A2", "A5", "A6")
    phone.call(PAT, "1 2024117#")
    phone.call(PAT, "2")
    phone.call(PAT, "6 2")
    phone.call(PAT, "8")
    one, two, six, eight = logs(desk)
    assert (one.case_number, one.menu_path) == ("2024117", "1>2024117")
    assert two.menu_path == "2" and two.case_number not in (None, "2024117")
    assert six.menu_path == "6>2" and six.product == "fees" and six.answered_by == "A5"
    assert eight.menu_path == "8" and eight.outage
    with desk.session_factory() as db:
        new = db.get(Case, two.case_number)
        assert (new.district_id, new.status, new.owner_id) == ("D100", "new", two.answered_by)
        assert db.get(Case, six.case_number).product == "fees"
        assert db.get(Case, eight.case_number).outage


def test_option_6_menu_order_routes_to_each_team(desk):
    from directory import PRODUCT_TEAMS

    assert [PRODUCT_TEAMS[k] for k in "1234567"] == [
        "food-service", "fees", "fram", "online-payments", "finance", "school-store",
        "activity-registration"]


def test_closed_case_still_reaches_its_owner(phone, desk, directory, desk_directory):
    directory.case("2024118", "D100", owner="A7", status="closed")
    directory.load()
    make_available(desk, "A2", "A7")
    result = phone.call(PAT, "1 2024118#")
    assert result.dialed == ["+16515550199"]
    # Its owner is rung: the caller hears that the owner can reopen it.
    assert Prompts().text("case.closed") in result.heard()


def test_a_closed_case_whose_owner_is_away_promises_no_owner(phone, desk, directory,
                                                            desk_directory):
    directory.case("2024118", "D100", owner="A7", status="closed")
    directory.load()
    make_available(desk, "A2")  # the owner, A7, is offline
    result = phone.call(PAT, "1 2024118#")
    assert result.dialed == ["+16515550102"]
    assert Prompts().text("case.closed") not in result.heard()
    assert Prompts().text("case.closed_to_next") in result.heard()


def test_a_closed_case_that_waits_in_the_queue_promises_no_owner(phone, desk, directory,
                                                                desk_directory):
    directory.case("2024118", "D100", owner="A7", status="closed")
    directory.load()
    result = phone.call(PAT, "1 2024118#", max_wait_seconds=0.3)  # nobody is available
    assert result.queued and result.dialed == []
    assert Prompts().text("case.closed") not in result.heard()
    assert Prompts().text("case.closed_to_next") in result.heard()


def test_bad_keys_reprompt_three_times_then_goodbye(phone, desk, desk_directory):
    result = phone.call(PAT, "9 0 5")
    assert result.outcome == "hangup"
    menus = [e for e in result.events("gather") if e.party == "caller"]
    assert len(menus) == 3


def test_three_wrong_case_numbers_reach_the_general_team(phone, desk, desk_directory):
    make_available(desk, "A2")
    result = phone.call(PAT, "1 1# 2# 3#")
    assert result.dialed == ["+16515550102"]


# --- prompts ---------------------------------------------------------------


def test_editing_the_prompt_file_changes_what_callers_hear(phone, app, desk, tmp_path,
                                                          desk_directory):
    original = Prompts().path.read_text()
    live = tmp_path / "prompts.toml"
    live.write_text(original)
    app.extensions["caseline.prompts"] = Prompts(live)
    before = phone.call(PAT, "")
    assert not any("Welcome to the district help line" in t for t in before.heard())
    # An operator rewords the greeting while the service runs.
    live.write_text(original.replace("Thank you for calling support",
                                     "Welcome to the district help line"))
    os.utime(live, (time.time() + 5, time.time() + 5))
    time.sleep(1.1)
    after = phone.call(PAT, "")
    assert any("Welcome to the district help line" in t for t in after.heard())


def test_a_custom_prompt_file_from_before_a_release_still_says_the_new_prompts(
        phone, app, desk, directory, tmp_path, caplog, desk_directory):
    """An operator's own prompts file (CASELINE_PROMPTS), copied before the release that
    added `case.closed_to_next`: the caller hears the shipped sentence there instead of
    nothing, the operator's own wording still wins (an emptied prompt stays empty), and
    the log says once which key the file lacks."""
    shipped = Prompts().path.read_text()
    lines = shipped.splitlines(keepends=True)
    custom = tmp_path / "our-prompts.toml"
    custom.write_text("".join(line for line in lines if not line.startswith("closed_to_next"))
                      .replace("Thank you for calling support", "Welcome to the help line")
                      .replace('not_found = "Sorry, we could not find that case number."',
                               'not_found = ""'))
    prompts = app.extensions["caseline.prompts"] = Prompts(custom)
    directory.case("2024118", "D100", owner="A7", status="closed")
    directory.load()
    shipped_sentence = Prompts().text("case.closed_to_next")
    assert shipped_sentence

    for _ in range(2):
        make_available(desk, "A2")  # the owner, A7, is offline
        result = phone.call(PAT, "1 2024118#")
        assert result.dialed == ["+16515550102"]
        assert shipped_sentence in result.heard()
        assert any("Welcome to the help line" in said for said in result.heard())
        assert not any("Thank you for calling support" in said for said in result.heard())
    assert prompts.text("case.not_found") == ""

    warnings = [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING" and "case.closed_to_next" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert str(custom) in warnings[0]


def test_daily_job_flags_contacts_inactive_for_180_days(desk, desk_directory):
    from workers.contacts import flag_inactive_contacts

    # Old Timer was last active 2026-01-02: 180 days later is 2026-07-01.
    assert flag_inactive_contacts(desk.session_factory, at_chicago(2026, 6, 30)) == []
    assert flag_inactive_contacts(desk.session_factory, at_chicago(2026, 7, 1)) == ["5102"]
    assert flag_inactive_contacts(desk.session_factory, at_chicago(2026, 7, 2)) == []
    with desk.session_factory() as db:
        assert db.get(Contact, "5102").flagged_inactive_on == date(2026, 7, 1)
        assert db.get(Contact, "5001").flagged_inactive_on is None


def at_chicago(year: int, month: int, day: int) -> datetime:
    """Noon in Chicago on a day."""
    return datetime(year, month, day, 12, tzinfo=CHICAGO)


def test_flag_inactive_command(desk_directory, settings, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from caseline.cli import main

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(main, ["contacts", "flag-inactive"])
    assert result.exit_code == 0, result.output
    assert "contact 5102" in result.output
