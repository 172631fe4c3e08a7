"""A callback promised outlives the Redis that held it: a contact who pressed 1 on hold
and hung up is still called back, in their place in line, and logged once, after Redis
comes back empty (flushed, or restarted without persistence, as the embedded one is).
Each callback asked for is kept in the database until its call's log is written, and
put back from there when Redis has lost it; with the database down when the contact
presses 1, no callback that could be lost is promised."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
import xml.etree.ElementTree as ET

import pytest
import redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import sessionmaker

from caseline.cli import prepare_service
from directory import keys
from directory.models import CallLog, PendingCallback
from routing import callbacks
from routing.redis_restarts import restore_pending_callbacks
from tests.conftest import API_TOKEN, BASE_URL, NOW, run_jobs
from tests.webhooks import post, signed_post
from workers.reconciler import reconcile

LINE = "+18005550100"
PAT, SAM, ALEX = "+16125550101", "+16125550102", "+16125550103"
A2 = "+16515550102"
API = {"Authorization": f"Bearer {API_TOKEN}"}
ATTESTED = {"StirVerstat": "TN-Validation-Passed-A"}


@pytest.fixture
def lakeview(directory):
    """Three verified contacts of one district (Pat, Sam, Alex) and advisor A2 (general),
    who is not working yet."""
    directory.district()
    for n, (name, phone) in enumerate((("Pat Lee", PAT), ("Sam Roe", SAM),
                                       ("Alex Poe", ALEX))):
        directory.contact(str(5001 + n), phone, name=name)
    directory.advisor("A2", ["general"], phone=A2)
    directory.load()


pytestmark = pytest.mark.usefixtures("lakeview")


def calls_and_waits(client, phone: str) -> str:
    """A verified contact calls, presses 2 (a new case) and waits for the general team;
    their CallSid."""
    sid = "CA" + uuid.uuid4().hex
    post(client, "/voice/incoming", {"CallSid": sid, "From": phone, "To": LINE, **ATTESTED})
    queued = post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "2"})
    assert queued.find("Enqueue") is not None
    post(client, "/voice/wait", {"CallSid": sid, "QueuePosition": "1"})
    return sid


def asks_for_a_callback(client, sid: str) -> None:
    """The waiting caller presses 1 for a callback, hears it confirmed, and hangs up."""
    confirmed = post(client, "/voice/callback", {"CallSid": sid, "Digits": "1"})
    assert confirmed.find("Hangup") is not None  # promised: the caller may go
    post(client, "/voice/status", {"CallSid": sid, "CallStatus": "completed",
                                   "CallDuration": "45"})


def redis_comes_back_empty(desk) -> None:
    """Redis loses everything (FLUSHALL: as a restart without persistence leaves it),
    then the worker's reconciler makes its next pass."""
    desk.r.flushall()
    reconcile()


def waiting(client) -> list[str]:
    """The general team's waiting callers, in the order they will be served."""
    queues = client.get("/api/queues", headers=API).get_json()
    return [caller["call_sid"] for caller in queues.get("general", [])]


def a2_takes_it_and_the_contact_answers(client, leg, contact_phone: str) -> None:
    """A2's phone rings for a callback: they hear whom it is for, press 1, the contact's
    directory phone is dialled and answers, they talk, and A2 hangs up."""
    form = {"CallSid": leg.sid, "CallStatus": "in-progress"}
    gather = post(client, leg.url.removeprefix(BASE_URL), form).find("Gather")
    dial = post(client, gather.get("action", ""), {**form, "Digits": "1"}).find("Dial")
    assert dial is not None and dial.findtext("Number") == contact_phone
    post(client, dial.get("action", ""), {**form, "CallStatus": "completed",
                                          "DialCallStatus": "completed",
                                          "DialCallDuration": "300"})
    post(client, leg.status_callback.removeprefix(BASE_URL),
         {"CallSid": leg.sid, "CallStatus": "completed", "CallDuration": "320"})


def a2_places_the_callback(desk, client, emulator, sid: str) -> None:
    """A2 goes available: their phone rings for the callback `sid` (the one call placed),
    they take it and Pat answers; it is logged once, answered by A2, and its row is
    gone with the writing of its log."""
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [leg] = emulator.created_calls
    assert leg.to == A2 and f"call={sid}" in (leg.url or "")
    a2_takes_it_and_the_contact_answers(client, leg, PAT)
    run_jobs(desk)
    assert logs_of(desk, sid) == [("answered", "A2", True)]
    assert pending_rows(desk) == 0


def logs_of(desk, sid: str) -> list[tuple[str, str | None, bool]]:
    """The call's logs, as (status, answered by, restored from the database)."""
    with desk.session_factory() as db:
        logs = db.scalars(select(CallLog).where(CallLog.call_sid == sid)).all()
        return [(log.status, log.answered_by, bool((log.details or {}).get(
            "callback_restored"))) for log in logs]


def pending_rows(desk) -> int:
    """How many callbacks the database keeps as pending."""
    with desk.session_factory() as db:
        return db.scalar(select(func.count()).select_from(PendingCallback))


def test_a_callback_lost_with_redis_is_placed_and_logged_once(desk, client, emulator):
    reconcile()  # the line runs: its reconciler has seen this Redis
    pat = calls_and_waits(client, PAT)
    asks_for_a_callback(client, pat)
    assert pending_rows(desk) == 1

    redis_comes_back_empty(desk)
    assert waiting(client) == [pat]  # back in its place, a callback still

    a2_places_the_callback(desk, client, emulator, pat)
    assert waiting(client) == []
    # Logged: its state goes in a day, as any call's; another pass puts nothing back.
    assert 0 < desk.r.ttl(keys.call(pat)) <= 24 * 3600
    desk.r.flushall()
    reconcile()
    assert waiting(client) == [] and logs_of(desk, pat) == [("answered", "A2", True)]


def test_callbacks_come_back_in_their_places_ahead_of_later_callers(desk, client, emulator):
    """Sam waited first, then Pat; Pat asked for a callback first, then Sam. After Redis
    came back empty they are in line as they waited (Sam, Pat), ahead of Alex, who
    called after; A2 is offered Sam's callback, then Pat's."""
    sam = calls_and_waits(client, SAM)
    time.sleep(0.01)  # arrivals a few ms apart: their places in line differ
    pat = calls_and_waits(client, PAT)
    asks_for_a_callback(client, pat)
    asks_for_a_callback(client, sam)
    assert waiting(client) == [sam, pat]

    redis_comes_back_empty(desk)
    alex = calls_and_waits(client, ALEX)
    assert waiting(client) == [sam, pat, alex]

    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [first] = emulator.created_calls
    assert f"call={sam}" in (first.url or "")
    a2_takes_it_and_the_contact_answers(client, first, SAM)
    _first, second = emulator.created_calls  # no wrap-up here: A2 is offered the next
    assert f"call={pat}" in (second.url or "")
    a2_takes_it_and_the_contact_answers(client, second, PAT)
    run_jobs(desk)
    assert [logs_of(desk, sid) for sid in (sam, pat)] == [[("answered", "A2", True)]] * 2
    assert pending_rows(desk) == 0


def test_a_snapshot_from_before_the_request_gives_the_caller_their_callback(
        desk, client, emulator):
    """Redis comes back from a snapshot written while Pat waited, before they pressed 1:
    their call is back as a caller waiting in the queue with no callback, whom the
    open-calls check would end as abandoned (Twilio says the call is over). The
    reconciler notices the restart and makes that call Pat's callback again, in their
    place: A2 calls Pat back, and the call has one log, answered."""
    reconcile()
    sid = "CA" + uuid.uuid4().hex
    emulator.register_call(sid, from_=PAT, to=LINE)
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": LINE, **ATTESTED})
    post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "2"})
    snapshot = {key: desk.r.dump(key) for key in desk.r.scan_iter(count=1000)}
    asks_for_a_callback(client, sid)
    emulator.end_call(sid, duration=45)

    # Redis crashes and comes back from that snapshot (another server's run_id in it).
    desk.r.flushall()
    for key, value in snapshot.items():
        desk.r.restore(key, 0, value)
    desk.r.set(keys.redis_run_id(), "0" * 40)
    assert desk.r.hget(keys.call(sid), "callback") is None and waiting(client) == [sid]

    reconcile()  # the restart noticed: the callback taken up, Twilio asked about the call
    reconcile()
    assert waiting(client) == [sid] and logs_of(desk, sid) == []
    a2_places_the_callback(desk, client, emulator, sid)


def test_a_callback_already_logged_is_not_put_back(desk, client, emulator):
    pat = calls_and_waits(client, PAT)
    asks_for_a_callback(client, pat)
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [leg] = emulator.created_calls
    a2_takes_it_and_the_contact_answers(client, leg, PAT)
    run_jobs(desk)
    assert logs_of(desk, pat) == [("answered", "A2", False)]
    assert pending_rows(desk) == 0
    # A row that outlived its log (written as the log was: no transaction saw both).
    with desk.session_factory() as db:
        db.add(PendingCallback(call_sid=pat, contact_id="5001", team="general",
                               wait_score=2 * 10**13, requested_at=NOW, caller=PAT,
                               callback_number=PAT, call={"caller": PAT}))
        db.commit()

    redis_comes_back_empty(desk)
    assert waiting(client) == []
    assert pending_rows(desk) == 0  # found logged, and dropped
    client.put("/api/advisors/A2/status", json={"status": "offline"}, headers=API)
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    assert len(emulator.created_calls) == 1  # nobody is called twice
    assert logs_of(desk, pat) == [("answered", "A2", False)]


def test_a_callback_whose_call_redis_still_has_is_left_as_it_is(desk, client, emulator):
    """A restart noticed while the callback rings A2 (Redis kept the call): nothing is
    put back, and the ring goes on."""
    pat = calls_and_waits(client, PAT)
    asks_for_a_callback(client, pat)
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    [leg] = emulator.created_calls
    assert restore_pending_callbacks(desk.r, desk.session_factory,
                                     int(time.time() * 1000)) == 0
    assert waiting(client) == []  # out of the queue: its advisor rings for it
    a2_takes_it_and_the_contact_answers(client, leg, PAT)
    run_jobs(desk)
    assert logs_of(desk, pat) == [("answered", "A2", False)]


def test_web_and_worker_restoring_at_once_put_a_callback_back_once(
        desk, client, emulator, redis_url):
    """`caseline serve` starting and the worker's reconciler both put back what Redis
    lost, at the same moment, each on its own connection: the callback is back once."""
    pat = calls_and_waits(client, PAT)
    asks_for_a_callback(client, pat)
    desk.r.flushall()
    start = threading.Barrier(4)
    restored: list[int] = []

    def restore() -> None:
        own = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            start.wait()
            restored.append(restore_pending_callbacks(own, desk.session_factory,
                                                      int(time.time() * 1000)))
        finally:
            own.close()

    threads = [threading.Thread(target=restore) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(restored) == [0, 0, 0, 1]
    reconcile()  # the reconciler's pass too: a new Redis, recovered again
    prepare_service(desk.settings)  # and a `caseline serve` starting
    assert waiting(client) == [pat]
    a2_places_the_callback(desk, client, emulator, pat)


def test_caseline_serve_starting_on_an_empty_redis_puts_the_callback_back(
        desk, client, emulator):
    """The embedded Redis keeps nothing: `caseline serve` restarted starts it empty, and
    puts the callback back as it rebuilds the directory cache."""
    pat = calls_and_waits(client, PAT)
    asks_for_a_callback(client, pat)
    desk.r.flushall()
    prepare_service(desk.settings)
    assert waiting(client) == [pat]
    a2_places_the_callback(desk, client, emulator, pat)


def test_the_database_down_when_a_contact_presses_1_promises_no_callback(
        desk, client, settings, make_app, tmp_path):
    """The database cannot keep the callback: the caller is told no callback can be
    offered and keeps waiting in their place, the day's callback is given back, and the
    TwiML is valid. Once it is back, the same caller's 1 is promised."""
    pat = calls_and_waits(client, PAT)
    app = make_app(settings)
    down = create_engine(f"sqlite:///{tmp_path}/no-such-dir/caseline.db")
    app.extensions["caseline"] = dataclasses.replace(
        app.extensions["caseline"], session_factory=sessionmaker(down))
    response = signed_post(app.test_client(), "/voice/callback",
                           {"CallSid": pat, "Digits": "1"})
    down.dispose()
    assert response.status_code == 200
    refused = ET.fromstring(response.data)
    assert refused.tag == "Response" and refused.find("Say") is not None
    assert refused.find("Hangup") is None and refused.find("Dial") is None
    assert waiting(client) == [pat]
    assert desk.r.hget(keys.call(pat), "callback") != "1"
    assert callbacks.callbacks_left(desk, "5001", NOW) == callbacks.MAX_CALLBACKS_PER_DAY
    assert pending_rows(desk) == 0

    asks_for_a_callback(client, pat)  # the database is back
    assert desk.r.hget(keys.call(pat), "callback") == "1" and pending_rows(desk) == 1


def redis_comes_back_from(desk, snapshot: dict[str, bytes]) -> None:
    """Redis crashes and comes back from `snapshot` (DUMPs by key), another server's
    `run_id` kept in it: the reconciler's next pass notices a restart."""
    desk.r.flushall()
    for key, value in snapshot.items():
        desk.r.restore(key, 0, value)
    desk.r.set(keys.redis_run_id(), "0" * 40)


def snapshot_of(desk) -> dict[str, bytes]:
    """What an RDB snapshot written now would bring back: every key, DUMPed."""
    return {key: desk.r.dump(key) for key in desk.r.scan_iter(count=1000)}


def test_a_snapshot_from_the_menu_gives_the_caller_their_callback(desk, client, emulator):
    """Redis comes back from a snapshot written while Pat was still in the menu: their
    call is back in the menu, in no queue, with no callback, and Twilio says it is over.
    The row was written after anything the snapshot holds: the callback is put back in
    its place (not logged as a call ended in the menu), and A2 calls Pat back."""
    reconcile()
    sid = "CA" + uuid.uuid4().hex
    emulator.register_call(sid, from_=PAT, to=LINE)
    post(client, "/voice/incoming", {"CallSid": sid, "From": PAT, "To": LINE, **ATTESTED})
    snapshot = snapshot_of(desk)  # Pat in the menu
    post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "2"})
    post(client, "/voice/wait", {"CallSid": sid, "QueuePosition": "1"})
    asks_for_a_callback(client, sid)
    emulator.end_call(sid, duration=45)
    assert pending_rows(desk) == 1

    redis_comes_back_from(desk, snapshot)
    assert desk.r.hget(keys.call(sid), "state") == "menu"
    reconcile()  # the restart noticed: the callback put back, Twilio asked about the call
    reconcile()
    run_jobs(desk)
    assert waiting(client) == [sid] and logs_of(desk, sid) == []
    assert desk.r.ttl(keys.call(sid)) == -1  # kept until its callback is logged
    a2_places_the_callback(desk, client, emulator, sid)


def test_a_restored_callback_is_offered_to_an_idle_available_advisor(desk, client, emulator):
    """The snapshot has A2 available and idle; after it was written A2 went offline, and
    Pat waited, asked for a callback and hung up. Redis comes back from that snapshot:
    Pat's callback is put back beside A2, available to the desk, whom nothing will free
    again; the reconciler's recovery offers it to A2 at once, as if A2 had just become
    available, rather than leave it until some advisor of the team changes state."""
    reconcile()
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    snapshot = snapshot_of(desk)  # A2 available, idle, nobody waiting
    client.put("/api/advisors/A2/status", json={"status": "offline"}, headers=API)
    pat = calls_and_waits(client, PAT)
    asks_for_a_callback(client, pat)

    redis_comes_back_from(desk, snapshot)
    reconcile()
    [leg] = emulator.created_calls  # A2's phone rings for Pat's callback
    assert leg.to == A2 and f"call={pat}" in (leg.url or "")
    assert waiting(client) == []
    reconcile()  # a later pass offers it to nobody else
    assert len(emulator.created_calls) == 1
    a2_takes_it_and_the_contact_answers(client, leg, PAT)
    run_jobs(desk)
    assert logs_of(desk, pat) == [("answered", "A2", True)]
    assert pending_rows(desk) == 0


def test_an_advisor_available_before_the_recovery_is_offered_the_callback(
        desk, client, emulator):
    """Redis comes back empty, and A2 sets themselves available before the reconciler's
    next pass (nobody waits yet: A2 stays idle); that pass puts Pat's callback back
    beside A2 and offers it to A2 at once."""
    reconcile()
    pat = calls_and_waits(client, PAT)
    asks_for_a_callback(client, pat)
    desk.r.flushall()
    client.put("/api/advisors/A2/status", json={"status": "available"}, headers=API)
    assert emulator.created_calls == []
    reconcile()
    [leg] = emulator.created_calls
    assert leg.to == A2 and f"call={pat}" in (leg.url or "")
    a2_takes_it_and_the_contact_answers(client, leg, PAT)
    run_jobs(desk)
    assert logs_of(desk, pat) == [("answered", "A2", True)]
