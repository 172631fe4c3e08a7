"""A callback outlives the desk's close: a contact who asks for one on Friday evening
(or before a holiday) keeps their place until an advisor calls them back, and the
call still leaves exactly one log.

Redis keeps its own clock, which `time_machine` does not move: a weekend is passed by
travelling the desk's clock and letting go every key whose expiry falls within it
(`let_redis_expire`), as Redis would have meanwhile.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from directory import keys
from directory.models import CallLog
from jobs.queues import resume_call_logs
from routing import acd, callbacks
from routing.call_end import check_open_calls
from routing.call_state import update_call
from tests.conftest import BASE_URL, run_jobs
from tests.test_callback_wrap_up import lakeview  # noqa: F401 - the fixture
from tests.test_real_world import API, PAT, post
from workers import reconciler
from workers.set_aside import retry_set_aside_call_logs

CHICAGO = ZoneInfo("America/Chicago")
LINE = "+18005550100"
FRIDAY_EVENING = datetime(2026, 12, 4, 17, 50, tzinfo=CHICAGO)
MONDAY_MORNING = datetime(2026, 12, 7, 8, 0, tzinfo=CHICAGO)

# Every test here is about Pat, a verified contact, and A2 (general), who has gone home.
pytestmark = pytest.mark.usefixtures("lakeview")


def let_redis_expire(r, seconds: float) -> None:
    """What Redis does over `seconds`: every key whose expiry falls within them is gone."""
    for key in r.scan_iter(count=1000):
        ttl = r.pttl(key)
        if 0 <= ttl <= seconds * 1000:
            r.delete(key)


def asks_for_a_callback(client) -> str:
    """Pat calls, presses 2 (a new case), waits for the general team, presses 1 on hold
    for a callback and hangs up; their CallSid."""
    sid = "CA" + uuid.uuid4().hex
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": LINE,
                                     "StirVerstat": "TN-Validation-Passed-A"})
    queued = post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "2"})
    assert queued.find("Enqueue") is not None
    post(client, "/voice/wait", {"CallSid": sid, "QueuePosition": "1"})
    post(client, "/voice/callback", {"CallSid": sid, "Digits": "1"})
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "45"})
    return sid


def a2_talks_with_pat(client, leg) -> None:
    """A2's leg rings: they hear the whisper, press 1, Pat answers, they talk; Twilio
    posts the `<Dial>`'s action (the leg's own status callback is still to come)."""
    form = {"CallSid": leg.sid, "CallStatus": "in-progress"}
    gather = post(client, leg.url.removeprefix(BASE_URL), form).find("Gather")
    dial = post(client, gather.get("action", ""), {**form, "Digits": "1"}).find("Dial")
    assert dial is not None and dial.findtext("Number") == PAT
    post(client, dial.get("action", ""), {**form, "CallStatus": "completed",
                                          "DialCallStatus": "completed",
                                          "DialCallDuration": "300"})


def a2_takes_the_callback_and_pat_answers(client, leg) -> None:
    """A2's leg rings: they hear the whisper, press 1, Pat answers, they talk, hang up."""
    a2_talks_with_pat(client, leg)
    post(client, leg.status_callback.removeprefix(BASE_URL),
         {"CallSid": leg.sid, "CallStatus": "completed", "CallDuration": "320"})


def test_a_callback_asked_for_on_friday_evening_is_placed_on_monday_and_logged_once(
        desk, client, emulator):
    with time_machine.travel(FRIDAY_EVENING, tick=True):
        sid = asks_for_a_callback(client)
        assert desk.r.hget(keys.call(sid), "callback") == "1"
    with time_machine.travel(MONDAY_MORNING, tick=True):
        let_redis_expire(desk.r, (MONDAY_MORNING - FRIDAY_EVENING).total_seconds())
        acd.reconcile(desk, int(time.time() * 1000))
        assert desk.r.zscore(keys.team_waiting("general"), sid) is not None
        # A2 comes in: their phone rings for Pat's callback; they take it, Pat answers.
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        [leg] = emulator.created_calls
        a2_takes_the_callback_and_pat_answers(client, leg)
        run_jobs(desk)
    with desk.session_factory() as db:
        logs = db.scalars(select(CallLog).where(CallLog.call_sid == sid)).all()
    assert [(log.status, log.answered_by) for log in logs] == [("answered", "A2")]
    # Logged: its state goes, in a day, as any call's.
    assert 0 < desk.r.ttl(keys.call(sid)) <= 24 * 3600


def test_a_callback_an_advisor_missed_before_the_weekend_still_waits_on_monday(
        desk, client, emulator):
    with time_machine.travel(FRIDAY_EVENING, tick=True):
        sid = asks_for_a_callback(client)
        # A2, about to leave, is rung for it and does not answer; then goes home.
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        [missed] = emulator.created_calls
        post(client, missed.status_callback.removeprefix(BASE_URL),
             {"CallSid": missed.sid, "CallStatus": "no-answer", "CallDuration": "0"})
        client.put("/api/advisors/A2/status", json={"status": "offline"}, headers=API)
        assert desk.r.zscore(keys.team_waiting("general"), sid) is not None
    with time_machine.travel(MONDAY_MORNING, tick=True):
        let_redis_expire(desk.r, (MONDAY_MORNING - FRIDAY_EVENING).total_seconds())
        acd.reconcile(desk, int(time.time() * 1000))
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        _missed, leg = emulator.created_calls
        a2_takes_the_callback_and_pat_answers(client, leg)
        run_jobs(desk)
    with desk.session_factory() as db:
        logs = db.scalars(select(CallLog).where(CallLog.call_sid == sid)).all()
    assert [(log.status, log.answered_by) for log in logs] == [("answered", "A2")]


def test_the_upgrade_keeps_the_callbacks_the_previous_release_left_to_expire(
        desk, client):
    from routing.upgrade import keep_pending_callbacks

    with time_machine.travel(FRIDAY_EVENING, tick=True):
        sid = asks_for_a_callback(client)
        other = "CA" + uuid.uuid4().hex  # a caller still on the line: left alone
        post(client, "/voice/incoming", {"CallSid": other, "From": PAT, "To": LINE,
                                         "StirVerstat": "TN-Validation-Passed-A"})
        post(client, "/voice/menu?attempt=1", {"CallSid": other, "Digits": "2"})
    for key in (keys.call(sid), keys.call_ended(sid)):  # as the previous release left them
        desk.r.expire(key, 24 * 3600)
    assert keep_pending_callbacks(desk.r) == 1
    assert desk.r.ttl(keys.call(sid)) == desk.r.ttl(keys.call_ended(sid)) == -1
    assert 0 < desk.r.ttl(keys.call(other)) <= 24 * 3600
    assert keep_pending_callbacks(desk.r) == 0


def logs_of(desk, sid: str) -> list[tuple[str, str | None]]:
    """The call's logs, as (status, answered by)."""
    with desk.session_factory() as db:
        logs = db.scalars(select(CallLog).where(CallLog.call_sid == sid)).all()
        return [(log.status, log.answered_by) for log in logs]


def expiries(desk, sid: str) -> tuple[int, int]:
    """The TTLs (s) of the call's hash and of its end's mark (-1: never expires)."""
    return desk.r.ttl(keys.call(sid)), desk.r.ttl(keys.call_ended(sid))


def go_in_a_day(ttls: tuple[int, int]) -> bool:
    """Whether both go within a day, as any call's state does."""
    return all(0 < ttl <= 24 * 3600 for ttl in ttls)


def test_a_callback_over_is_logged_even_when_its_log_job_was_never_queued(
        desk, client, emulator):
    """The callback's leg ends: `/voice/callback/status` marks it done, and the web
    process dies (or Redis blips) before it queues the log's job. The reconciler's
    passes still log it, once, and its state then goes in a day."""
    with time_machine.travel(FRIDAY_EVENING, tick=True):
        sid = asks_for_a_callback(client)
    with time_machine.travel(MONDAY_MORNING, tick=True):
        let_redis_expire(desk.r, (MONDAY_MORNING - FRIDAY_EVENING).total_seconds())
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        [leg] = emulator.created_calls
        a2_talks_with_pat(client, leg)
        # The leg's status callback as the web process runs it, up to its death: the
        # callback's end, and no job queued.
        assert callbacks.end_callback(desk, sid, "A2", "completed",
                                      int(time.time() * 1000), leg.sid)
        for minutes in (1, 11, 61):  # the reconciler's passes over the next hour
            now_s = time.time() + minutes * 60
            acd.reconcile(desk, int(now_s * 1000))
            resume_call_logs(desk.job_redis, now_s)
            check_open_calls(desk, int(now_s * 1000))
            run_jobs(desk)
    assert logs_of(desk, sid) == [("answered", "A2")]
    assert go_in_a_day(expiries(desk, sid)), expiries(desk, sid)


def test_a_callback_whose_contacts_status_comes_again_before_its_log_goes_in_a_day(
        desk, client, emulator):
    """A2 calls Pat back at once; then Twilio repeats Pat's own status callback (it may
    repeat any webhook) before the log's job runs. Logged once, and the call's end
    mark goes with its hash, in a day."""
    with time_machine.travel(MONDAY_MORNING, tick=True):
        sid = asks_for_a_callback(client)
        assert desk.r.ttl(keys.call_ended(sid)) == -1  # pending: kept
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        [leg] = emulator.created_calls
        a2_takes_the_callback_and_pat_answers(client, leg)
        post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                       "CallDuration": "45"})
        run_jobs(desk)
    assert logs_of(desk, sid) == [("answered", "A2")]
    assert go_in_a_day(expiries(desk, sid)), expiries(desk, sid)


def test_a_callback_whose_log_was_set_aside_once_goes_in_a_day_once_logged(
        desk, client, emulator):
    """The callback's log fails on its own data once (set aside, its hash kept a day),
    an operator fixes it, and its next try writes it: its end mark goes in a day too."""
    with time_machine.travel(MONDAY_MORNING, tick=True):
        sid = asks_for_a_callback(client)
        started = desk.r.hget(keys.call(sid), "started_at")
        desk.r.hset(keys.call(sid), "started_at", "not-a-time")  # data the log refuses
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        [leg] = emulator.created_calls
        a2_takes_the_callback_and_pat_answers(client, leg)
        run_jobs(desk)
        assert desk.r.hget(keys.call(sid), "log_failures") == "1"  # set aside
        desk.r.hset(keys.call(sid), "started_at", started)  # an operator fixes it
        retry_set_aside_call_logs(desk.job_redis, time.time() + 601)
        run_jobs(desk)
    assert logs_of(desk, sid) == [("answered", "A2")]
    assert go_in_a_day(expiries(desk, sid)), expiries(desk, sid)


def test_a_callback_asked_for_as_the_caller_hangs_up_is_no_callback(
        desk, client, emulator, monkeypatch):
    """Pat presses 1 on hold and hangs up at once: the status callback (another web
    process) is handled while the callback request, past its look at the queue, counts
    the day's callbacks. The end is an ordinary one (abandoned, out of the queue,
    logged), and the request then finds the call over: no callback is kept for a call
    that waits nowhere, and Twilio repeating the status callback leaves the call's state
    to go in a day.

    The other process's request is made to land at that moment by running it as the
    day's callbacks are counted (`callbacks.take_callback`, which still counts)."""
    from routing import call_end

    count_callbacks = callbacks.take_callback
    ended = []

    def as_the_status_callback_lands(the_desk, contact_id, now):
        if not ended:  # what `/voice/status` does for this end, in another process
            ended.append(call_end.close_call(the_desk, sid, "completed", 45,
                                             int(time.time() * 1000)))
        return count_callbacks(the_desk, contact_id, now)

    with time_machine.travel(MONDAY_MORNING, tick=True):
        sid = "CA" + uuid.uuid4().hex
        post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": LINE,
                                         "StirVerstat": "TN-Validation-Passed-A"})
        post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "2"})
        post(client, "/voice/wait", {"CallSid": sid, "QueuePosition": "1"})
        monkeypatch.setattr(callbacks, "take_callback", as_the_status_callback_lands)
        post(client, "/voice/callback", {"CallSid": sid, "Digits": "1"})
        monkeypatch.setattr(callbacks, "take_callback", count_callbacks)
        assert ended and ended[0] is not None  # the end came between, and was the first
        post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                       "CallDuration": "45"})  # Twilio's repeat
        run_jobs(desk)
    assert desk.r.hget(keys.call(sid), "callback") != "1"
    with time_machine.travel(MONDAY_MORNING):  # the day's callback, given back
        contact = desk.r.hget(keys.call(sid), "contact")
        assert callbacks.callbacks_left(desk, contact, MONDAY_MORNING) == \
            callbacks.MAX_CALLBACKS_PER_DAY
    assert desk.r.zscore(keys.team_waiting("general"), sid) is None
    assert logs_of(desk, sid) == [("abandoned", None)]
    assert go_in_a_day(expiries(desk, sid)), expiries(desk, sid)
    # Nothing to call back: A2 coming in is rung for nobody.
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    assert emulator.created_calls == []


def test_a_callback_waiting_nowhere_is_not_kept_by_a_repeated_end(desk, client, emulator):
    """The previous release, its callback request racing the status callback, could
    leave a call ended as an ordinary one (abandoned, logged) and then marked a pending
    callback that waits in no queue. Twilio repeating the status callback must not
    keep that call's state forever: it goes in a day, as the log's call's does."""
    with time_machine.travel(MONDAY_MORNING, tick=True):
        sid = "CA" + uuid.uuid4().hex
        post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": LINE,
                                         "StirVerstat": "TN-Validation-Passed-A"})
        post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "2"})
        post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                       "CallDuration": "45"})
        # The previous release's request, its write landing after that end.
        update_call(desk.r, sid, callback="1", callback_state="waiting", callback_number=PAT)
        post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                       "CallDuration": "45"})  # Twilio's repeat
        run_jobs(desk)
    assert logs_of(desk, sid) == [("abandoned", None)]
    assert go_in_a_day(expiries(desk, sid)), expiries(desk, sid)


def test_the_upgrade_keeps_a_callback_ringing_an_advisor_as_it_starts(
        desk, client, emulator):
    """The new release starts while A2's phone rings for Pat's callback (out of the
    queue). A2 misses it and goes home; Pat is back in their place for the weekend, and
    their call is kept as every pending callback's is, not lost with the previous
    release's day."""
    from routing.upgrade import keep_pending_callbacks

    with time_machine.travel(FRIDAY_EVENING, tick=True):
        sid = asks_for_a_callback(client)
        for key in (keys.call(sid), keys.call_ended(sid)):  # as the previous release left them
            desk.r.expire(key, 24 * 3600)
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        [missed] = emulator.created_calls
        assert keep_pending_callbacks(desk.r) == 1
        post(client, missed.status_callback.removeprefix(BASE_URL),
             {"CallSid": missed.sid, "CallStatus": "no-answer", "CallDuration": "0"})
        client.put("/api/advisors/A2/status", json={"status": "offline"}, headers=API)
        assert desk.r.zscore(keys.team_waiting("general"), sid) is not None
    assert expiries(desk, sid) == (-1, -1)
    with time_machine.travel(MONDAY_MORNING, tick=True):
        let_redis_expire(desk.r, (MONDAY_MORNING - FRIDAY_EVENING).total_seconds())
        client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
        _missed, leg = emulator.created_calls
        a2_takes_the_callback_and_pat_answers(client, leg)
        run_jobs(desk)
    assert logs_of(desk, sid) == [("answered", "A2")]


def test_a_callback_asked_for_before_closing_is_placed_at_the_opening_not_at_night(
        desk, client, emulator):
    """Pat asks for a callback at 17:50 Central; A2 comes on at 22:30 (a late shift, or
    night duty): the desk is closed, so Pat's phone is not rung about a case at night,
    and the callback keeps its place; at the opening (06:00) the reconciler places it."""
    with time_machine.travel(datetime(2026, 11, 24, 17, 50, tzinfo=CHICAGO), tick=True):
        reconciler.reconcile()
        sid = asks_for_a_callback(client)
        assert emulator.created_calls == []
    with time_machine.travel(datetime(2026, 11, 24, 22, 30, tzinfo=CHICAGO), tick=True):
        answer = client.put("/api/advisors/A2/status", json={"status": "available"},
                            headers=API)
        assert answer.get_json()["status"] == "available"
        reconciler.reconcile()
        assert emulator.created_calls == [], "Pat's callback placed at 22:30 Central"
        queued = client.get("/api/queues", headers=API).get_json()["general"]
        assert [caller["call_sid"] for caller in queued] == [sid]
    with time_machine.travel(datetime(2026, 11, 25, 6, 0, 5, tzinfo=CHICAGO), tick=True):
        reconciler.reconcile()
        assert [leg.to for leg in emulator.created_calls] == ["+16515550102"]
