"""A callback's end, as Twilio reports it: the `<Dial>`'s action (did the contact
answer?) and the advisor's leg's status callback. They are two requests, which may
come in either order, repeated or late; the advisor's wrap-up must not depend on
which comes first.

Each test drives A2's callback leg through signed webhook posts, as Twilio would,
with the desk's wrap-up at 30 s and at 0 (none).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from directory import keys
from jobs.queues import WRAPUP_ENDS, wrapup_end
from routing import acd, availability, callbacks, presence
from routing.call_state import get_call, update_call
from routing.waiting import request_callback
from tests.conftest import API_TOKEN, BASE_URL
from tests.test_real_world import PAT, queue_caller, waiting
from tests.webhooks import post

WRAPUP_SECONDS = 30
# Twilio's DialCallStatus for a contact who never picked up.
UNANSWERED = ["no-answer", "busy", "canceled"]
WRAPPING_UP = ("busy", "wrapup", "CA-cb")
FREE = ("available", "", "")
API = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(params=[WRAPUP_SECONDS, 0], ids=["wrap-up-30s", "no-wrap-up"])
def settings(settings, request):
    """The desk's `CASELINE_WRAPUP_SECONDS`: 30, or 0 (no wrap-up)."""
    return settings.with_changes(wrapup_seconds=request.param)


@pytest.fixture
def lakeview(directory):
    """Pat, a verified contact of a hosted district, and advisor A2 (general)."""
    directory.district()
    directory.contact()
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.load()


@dataclass(frozen=True)
class Leg:
    """A2's callback leg, taken, with the contact's phone ringing: where Twilio posts
    the `<Dial>`'s action (path and query) and the leg's status callback (path)."""

    sid: str
    dial_action: str
    status_callback: str


def a2_rung_for_a_callback(desk, emulator):
    """Pat, verified, waited a minute, asked for a callback and hung up; A2 frees up and
    their leg is placed: the leg Twilio was asked to create."""
    now = int(time.time() * 1000)
    queue_caller(desk, "CA-cb", now - 60_000)
    desk.r.hset(keys.call("CA-cb"), mapping={"contact": "5001", "verified": "1"})
    assert request_callback(desk, "CA-cb")
    acd.end_call(desk, "CA-cb", "completed", 60, now)
    availability.free_advisor(desk, "A2", now, explicit=True)
    [placed] = emulator.created_calls
    return placed


def a2_dials_the_contact(desk, emulator, client) -> Leg:
    """Pat, verified, waited a minute, asked for a callback and hung up; A2 frees up,
    their leg rings, they hear the whisper, press 1, and the leg dials Pat."""
    placed = a2_rung_for_a_callback(desk, emulator)
    form = {"CallSid": placed.sid, "CallStatus": "in-progress"}
    gather = post(client, placed.url.removeprefix(BASE_URL), form).find("Gather")
    assert gather is not None
    dial = post(client, gather.get("action", ""), {**form, "Digits": "1"}).find("Dial")
    assert dial is not None and dial.findtext("Number") == PAT
    return Leg(placed.sid, dial.get("action", ""), placed.status_callback.removeprefix(BASE_URL))


def dial_result(client, leg: Leg, dial_status: str, *, leg_status: str = "completed",
                action: str = ""):
    """Twilio posts the `<Dial>`'s action: how the contact's phone ended (`dial_status`)
    and the leg's own status (`completed` once A2 has hung up)."""
    talked = "95" if dial_status == "completed" else "0"
    return post(client, action or leg.dial_action,
                {"CallSid": leg.sid, "CallStatus": leg_status, "DialCallStatus": dial_status,
                 "DialCallDuration": talked})


def leg_ends(client, leg: Leg) -> None:
    """Twilio posts the leg's status callback: A2's leg is over."""
    post(client, leg.status_callback,
         {"CallSid": leg.sid, "CallStatus": "completed", "CallDuration": "120"})


def both_ends(client, leg: Leg, order: str, dial_status: str, leg_status: str) -> None:
    """The two posts that end a callback, in the order given."""
    if order == "dial result first":
        dial_result(client, leg, dial_status, leg_status=leg_status)
        leg_ends(client, leg)
    else:
        leg_ends(client, leg)
        dial_result(client, leg, dial_status, leg_status=leg_status)


def a2(desk) -> tuple[str, str, str]:
    """A2's presence: status, hold, and the call held ('' for none)."""
    state = presence.advisor_state(desk.r, "A2")
    return state["status"], state.get("hold", ""), state.get("call", "")


def wrap_ups_scheduled(desk) -> list[str]:
    """The ends of wrap-up waiting for the wrap-up clock (`jobs.queues.wrapup_end`)."""
    return desk.r.zrange(WRAPUP_ENDS, 0, -1)


def after_a_talk(desk) -> tuple[str, str, str]:
    """What A2's presence must be once a callback they talked on is over: wrap-up
    when the desk has one, else available."""
    return WRAPPING_UP if desk.settings.wrapup_seconds else FREE


@pytest.mark.parametrize("order", ["dial result first", "leg's end first"])
@pytest.mark.parametrize("hung_up, leg_status", [("A2", "completed"),
                                                 ("the contact", "in-progress")])
def test_an_advisor_who_talked_on_a_callback_wraps_up_whichever_post_comes_first(
        desk, lakeview, emulator, client, order, hung_up, leg_status):
    """A2 and Pat talk; one of them hangs up (the `<Dial>`'s action then says A2's leg
    is over, or still up), and Twilio posts the action and the leg's end."""
    leg = a2_dials_the_contact(desk, emulator, client)
    both_ends(client, leg, order, "completed", leg_status)

    assert a2(desk) == after_a_talk(desk)
    expected_ends = [wrapup_end("A2", "CA-cb")] if desk.settings.wrapup_seconds else []
    assert wrap_ups_scheduled(desk) == expected_ends
    call = get_call(desk.r, "CA-cb")
    assert (call["callback_state"], call["answered_by"]) == ("done", "A2")


@pytest.mark.parametrize("order", ["dial result first", "leg's end first"])
@pytest.mark.parametrize("dial_status", UNANSWERED)
def test_an_advisor_whose_contact_never_answered_is_free_whichever_post_comes_first(
        desk, lakeview, emulator, client, order, dial_status):
    """A2 gives up while Pat's phone still rings: A2 hangs up, and Twilio posts the
    `<Dial>`'s action (Pat never answered, A2's leg over) and the leg's end."""
    leg = a2_dials_the_contact(desk, emulator, client)
    both_ends(client, leg, order, dial_status, "completed")

    assert a2(desk) == FREE
    call = get_call(desk.r, "CA-cb")
    assert call["callback_state"] == "done" and not call.get("answered_by")


def test_a_contact_who_never_answers_three_tries_leaves_the_advisor_free(
        desk, lakeview, emulator, client):
    """Pat's phone rings out three times (A2 on the line throughout), A2 hears the
    goodbye, and the leg ends: no talk, no wrap-up."""
    leg = a2_dials_the_contact(desk, emulator, client)
    action = leg.dial_action
    for _ in range(callbacks.CALLBACK_ATTEMPTS - 1):
        retry = dial_result(client, leg, "no-answer", leg_status="in-progress", action=action)
        action = retry.find("Dial").get("action", "")
    goodbye = dial_result(client, leg, "no-answer", leg_status="in-progress", action=action)
    assert goodbye.find("Dial") is None and goodbye.find("Hangup") is not None
    leg_ends(client, leg)
    assert a2(desk) == FREE


@pytest.mark.parametrize("dial_status", ["completed", "no-answer"])
def test_repeated_ends_of_a_callback_change_nothing(
        desk, lakeview, emulator, client, dial_status):
    """Twilio posts each of the two ends again, later (each anew: another token). No
    second wrap-up starts, and none is cut short or stretched."""
    leg = a2_dials_the_contact(desk, emulator, client)
    leg_ends(client, leg)
    dial_result(client, leg, dial_status)
    before = presence.advisor_state(desk.r, "A2")
    jobs = wrap_ups_scheduled(desk)

    time.sleep(0.01)  # the repeats come later: a second wrap-up would move the lease
    leg_ends(client, leg)
    dial_result(client, leg, dial_status)
    leg_ends(client, leg)

    assert presence.advisor_state(desk.r, "A2") == before
    assert a2(desk) == (after_a_talk(desk) if dial_status == "completed" else FREE)
    assert wrap_ups_scheduled(desk) == jobs


@pytest.mark.parametrize("dial_status", ["completed", "no-answer"])
def test_a_late_dial_result_leaves_the_advisor_on_their_next_caller(
        desk, lakeview, emulator, client, dial_status):
    """A2's leg's end comes; the `<Dial>`'s action does not, for long. Meanwhile A2 is
    free again and rung for the next waiting caller, then talks with them, then wraps
    up after them: the callback's late action (and its repeat) disturbs none of it."""
    leg = a2_dials_the_contact(desk, emulator, client)
    now = int(time.time() * 1000)
    emulator.register_call("CA-next")
    queue_caller(desk, "CA-next", now)  # waits: A2 is on the callback
    leg_ends(client, leg)
    if desk.settings.wrapup_seconds:
        assert a2(desk) == WRAPPING_UP  # the dial result still unknown
        availability.end_wrapup(desk, "A2", "CA-cb", now + WRAPUP_SECONDS * 1000)
    assert a2(desk) == ("busy", "ringing", "CA-next")  # brought to A2
    dial_result(client, leg, dial_status)
    assert a2(desk) == ("busy", "ringing", "CA-next")
    assert waiting(desk) == []

    assert acd.accept_call(desk, "CA-next", "A2", now + 5_000)
    dial_result(client, leg, dial_status)
    assert a2(desk) == ("busy", "talking", "CA-next")

    acd.end_call(desk, "CA-next", "completed", 60, now + 65_000)
    dial_result(client, leg, dial_status)
    assert a2(desk) == (("busy", "wrapup", "CA-next") if desk.settings.wrapup_seconds
                        else FREE)


def test_a_late_repeat_of_an_earlier_tries_action_does_not_cut_the_wrap_up_short(
        desk, lakeview, emulator, client):
    """Pat's phone rings out once; the second try, Pat answers and talks with A2. A2
    hangs up: the leg's end comes first, then Twilio repeats the first try's action
    (no answer: its first post timed out), then the second try's. A2 talked: the
    repeat is of a try long over, and A2 wraps up all the same."""
    leg = a2_dials_the_contact(desk, emulator, client)
    retry = dial_result(client, leg, "no-answer", leg_status="in-progress")
    second_try = retry.find("Dial").get("action", "")
    leg_ends(client, leg)
    dial_result(client, leg, "no-answer", leg_status="in-progress")  # the first try, again
    dial_result(client, leg, "completed", action=second_try)
    assert a2(desk) == after_a_talk(desk)


def before_the_first_write(desk, monkeypatch, meanwhile) -> None:
    """Run `meanwhile` once, just before the next write the desk's own client (`desk.r`,
    not the app's) makes: its writes are scripts (`evalsha`), its reads are not."""
    write = desk.r.evalsha

    def meanwhile_then_write(*args):
        monkeypatch.undo()
        meanwhile()
        return write(*args)

    monkeypatch.setattr(desk.r, "evalsha", meanwhile_then_write)


@pytest.mark.parametrize("dial_status", ["completed", "no-answer"])
def test_a_dial_result_handled_while_the_legs_end_is_handled_gives_the_same(
        desk, lakeview, emulator, client, monkeypatch, dial_status):
    """A2 hangs up; the two posts reach two web processes at once, and the `<Dial>`'s
    action is handled whole after the leg's end has read the call, before it moves
    A2's hold: A2 wraps up after a talk, and is free when Pat never answered."""
    leg = a2_dials_the_contact(desk, emulator, client)
    before_the_first_write(desk, monkeypatch, lambda: dial_result(client, leg, dial_status))
    assert callbacks.end_callback(desk, "CA-cb", "A2", "completed",
                                  int(time.time() * 1000), leg.sid)
    assert a2(desk) == (after_a_talk(desk) if dial_status == "completed" else FREE)


@pytest.mark.parametrize("dial_status", ["completed", "no-answer"])
def test_a_legs_end_handled_while_the_dial_result_is_handled_gives_the_same(
        desk, lakeview, emulator, client, monkeypatch, dial_status):
    """The other way round: the leg's end is handled whole after the `<Dial>`'s action
    has begun (read the call), before it writes anything. The callback stays over (a
    repeat of the leg's end must find it done)."""
    leg = a2_dials_the_contact(desk, emulator, client)
    before_the_first_write(desk, monkeypatch, lambda: leg_ends(client, leg))
    callbacks.contact_dial_ended(desk, "CA-cb", "A2", dial_status, 95, attempt=1,
                                 now_ms=int(time.time() * 1000), leg_status="completed")
    assert a2(desk) == (after_a_talk(desk) if dial_status == "completed" else FREE)
    assert get_call(desk.r, "CA-cb")["callback_state"] == "done"


def next_try(reply) -> str:
    """The `<Dial>`'s action of the try a retry's TwiML dials."""
    dial = reply.find("Dial")
    assert dial is not None
    return dial.get("action", "")


def test_a_repeat_of_an_earlier_tries_action_while_a_later_try_rings_changes_nothing(
        desk, lakeview, emulator, client):
    """Pat's phone rings out twice; the third try rings when Twilio posts the first
    try's action again (its first post timed out), and Pat answers. A2 and Pat talk;
    A2 hangs up: the leg's end comes first, then a repeat of the second try's action,
    then the third's. A2 talked, and wraps up."""
    leg = a2_dials_the_contact(desk, emulator, client)
    second = next_try(dial_result(client, leg, "no-answer", leg_status="in-progress"))
    third = next_try(dial_result(client, leg, "no-answer", leg_status="in-progress",
                                 action=second))
    dial_result(client, leg, "no-answer", leg_status="in-progress")  # the first, again
    leg_ends(client, leg)
    dial_result(client, leg, "no-answer", leg_status="in-progress", action=second)
    dial_result(client, leg, "completed", action=third)

    assert a2(desk) == after_a_talk(desk)
    call = get_call(desk.r, "CA-cb")
    assert (call["answered_by"], call.get("contact_unreached")) == ("A2", None)


def test_a_repeat_of_an_earlier_tries_action_read_before_later_tries_counts_none_back(
        desk, lakeview, emulator, client, monkeypatch):
    """A repeat of the first try's action is read by one web process while another
    handles the first try's action itself, then the second's: Pat's phone rings a third
    time before the repeat writes anything. Pat answers the third try; A2 hangs up, and
    a repeat of the second try's action comes after the leg's end: A2 still wraps up."""
    leg = a2_dials_the_contact(desk, emulator, client)
    tries = {}

    def the_first_two_tries_end():
        tries[2] = next_try(dial_result(client, leg, "no-answer", leg_status="in-progress"))
        tries[3] = next_try(dial_result(client, leg, "no-answer", leg_status="in-progress",
                                        action=tries[2]))

    before_the_first_write(desk, monkeypatch, the_first_two_tries_end)
    callbacks.contact_dial_ended(desk, "CA-cb", "A2", "no-answer", 0, attempt=1,
                                 now_ms=int(time.time() * 1000))
    leg_ends(client, leg)
    dial_result(client, leg, "no-answer", leg_status="in-progress", action=tries[2])
    dial_result(client, leg, "completed", action=tries[3])

    assert a2(desk) == after_a_talk(desk)



def test_a_retry_chosen_as_the_legs_end_is_handled_frees_the_advisor(
        desk, lakeview, emulator, client, monkeypatch):
    """Pat's phone rings out and Twilio posts the `<Dial>`'s action while A2 is still on
    the line; A2 hangs up, and the leg's end is handled whole after the action has read
    the call, before it writes anything. No second try can ring on a leg that is over,
    and no other action will come: A2 is free, not held in wrap-up."""
    leg = a2_dials_the_contact(desk, emulator, client)
    before_the_first_write(desk, monkeypatch, lambda: leg_ends(client, leg))
    step = callbacks.contact_dial_ended(desk, "CA-cb", "A2", "no-answer", 0, attempt=1,
                                        now_ms=int(time.time() * 1000),
                                        leg_status="in-progress")

    assert a2(desk) == FREE
    assert step == callbacks.ContactUnreached()
    assert get_call(desk.r, "CA-cb")["callback_state"] == "done"


def right_after_end_wrapup(monkeypatch, meanwhile) -> None:
    """Run `meanwhile` once, right after `routing.callbacks` next ends a wrap-up
    (`end_wrapup`), before anything else it does."""
    end_wrapup = callbacks.end_wrapup

    def end_wrapup_then_meanwhile(*args):
        monkeypatch.undo()
        release = end_wrapup(*args)
        meanwhile()
        return release

    monkeypatch.setattr(callbacks, "end_wrapup", end_wrapup_then_meanwhile)


def test_a_legs_end_handled_right_after_the_actions_release_finds_the_mark(
        desk, lakeview, emulator, client, monkeypatch):
    """A2 hangs up while Pat's phone rings. The `<Dial>`'s action (nobody answered, A2's
    leg over) ends A2's wrap-up after the callback: there is none yet, A2 still talks.
    The leg's end is handled right after that: it finds the action's mark, and A2 is
    free, not held in a wrap-up no action would end."""
    leg = a2_dials_the_contact(desk, emulator, client)
    right_after_end_wrapup(monkeypatch, lambda: leg_ends(client, leg))
    callbacks.contact_dial_ended(desk, "CA-cb", "A2", "no-answer", 0, attempt=1,
                                 now_ms=int(time.time() * 1000), leg_status="completed")
    assert a2(desk) == FREE


@pytest.mark.parametrize("dial_status", UNANSWERED)
def test_an_action_posted_with_the_leg_up_and_handled_after_its_end_dials_no_one(
        desk, lakeview, emulator, client, dial_status):
    """Pat's phone rings out on the first try; Twilio posts the `<Dial>`'s action while
    A2 is still on the line (`CallStatus` in-progress), but A2 hangs up and the leg's
    end is handled first. No second try: the leg is over, the callback done, and A2 is
    free."""
    leg = a2_dials_the_contact(desk, emulator, client)
    leg_ends(client, leg)
    reply = dial_result(client, leg, dial_status, leg_status="in-progress")

    assert reply.find("Dial") is None
    assert a2(desk) == FREE
    assert get_call(desk.r, "CA-cb")["callback_state"] == "done"


def test_an_action_naming_another_advisor_changes_nothing(desk, lakeview, emulator, client):
    """A `<Dial>` action for Pat's callback that names another advisor, A3 (who never
    took it), says nobody answered and the leg is over. A2, who talks with Pat, hangs
    up: A2 wraps up after the talk all the same."""
    leg = a2_dials_the_contact(desk, emulator, client)
    not_a2s = leg.dial_action.replace("advisor=A2", "advisor=A3")
    assert not_a2s != leg.dial_action
    dial_result(client, leg, "no-answer", action=not_a2s)
    leg_ends(client, leg)
    dial_result(client, leg, "completed")

    assert a2(desk) == after_a_talk(desk)


def test_a_no_answer_post_for_a_callback_whose_talk_is_recorded_changes_nothing(
        desk, lakeview, emulator, client):
    """Pat answers, talks with A2 and hangs up: the `<Dial>`'s action says so. A2 hangs
    up. Then a post for the same try says nobody answered and the leg is over (no one
    `<Dial>` says both): the talk recorded stands, and A2 wraps up after it."""
    leg = a2_dials_the_contact(desk, emulator, client)
    dial_result(client, leg, "completed", leg_status="in-progress")
    leg_ends(client, leg)
    dial_result(client, leg, "no-answer")

    assert a2(desk) == after_a_talk(desk)
    assert not get_call(desk.r, "CA-cb").get("contact_unreached")


@pytest.mark.parametrize("answered_by, held", [("", "unreached"), ("A2", "wrapup"),
                                               ("A3", "unreached")])
def test_the_legs_end_frees_an_advisor_marked_unreached_unless_they_talked(
        desk, lakeview, emulator, client, answered_by, held):
    """The step that moves A2's hold to wrap-up at the leg's end reads the call's
    `contact_unreached` mark: marked, A2 is to be freed instead, unless the call says
    A2 talked (answered by A2: the mark is then no try's last word)."""
    a2_dials_the_contact(desk, emulator, client)
    update_call(desk.r, "CA-cb", contact_unreached=1, answered_by=answered_by)
    until = int(time.time() * 1000) + WRAPUP_SECONDS * 1000

    assert presence.wrap_up_taken_callback(desk.r, "A2", "CA-cb", until) == held
    assert a2(desk) == (WRAPPING_UP if held == "wrapup" else ("busy", "talking", "CA-cb"))


# Twilio's CallStatus values that do not end a leg (its call-progress events before
# the end): only a final status ends the advisor's callback leg (`acd.is_final`).
NOT_OVER = ["queued", "initiated", "ringing", "in-progress"]


@pytest.mark.parametrize("leg_status", NOT_OVER)
def test_a_status_that_is_not_the_legs_end_leaves_a2_ringing_for_the_callback(
        desk, lakeview, emulator, client, leg_status):
    """While A2's callback leg rings, Twilio posts a progress status to the leg's status
    callback: A2 is not released, Pat does not go back to waiting, and A2 who picks up
    hears the whisper, accepts, and the leg dials Pat."""
    placed = a2_rung_for_a_callback(desk, emulator)
    status_callback = placed.status_callback.removeprefix(BASE_URL)
    form = {"CallSid": placed.sid, "CallStatus": leg_status}
    assert [child.tag for child in post(client, status_callback, form)] == []

    assert a2(desk)[0] == "busy" and a2(desk)[2] == "CA-cb"
    assert client.get("/api/queues", headers=API).get_json()["general"] == []
    form["CallStatus"] = "in-progress"
    gather = post(client, placed.url.removeprefix(BASE_URL), form).find("Gather")
    assert gather is not None
    dial = post(client, gather.get("action", ""), {**form, "Digits": "1"}).find("Dial")
    assert dial is not None and dial.findtext("Number") == PAT


@pytest.mark.parametrize("leg_status", NOT_OVER)
def test_a_status_that_is_not_the_legs_end_does_not_end_a_taken_callback(
        desk, lakeview, emulator, client, leg_status):
    """A2 took the callback and Pat's phone rings: a progress status of A2's leg ends
    nothing; Pat answers, they talk, and A2 wraps up after the talk."""
    leg = a2_dials_the_contact(desk, emulator, client)
    post(client, leg.status_callback, {"CallSid": leg.sid, "CallStatus": leg_status})
    assert get_call(desk.r, "CA-cb")["callback_state"] == "dialing-contact"
    assert a2(desk) == ("busy", "talking", "CA-cb")
    both_ends(client, leg, "dial result first", "completed", "completed")
    assert a2(desk) == after_a_talk(desk)
    assert get_call(desk.r, "CA-cb")["answered_by"] == "A2"
