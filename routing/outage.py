"""The outage line, option 8: answered 24/7 for hosted districts.

- Priority: a verified contact's report is Critical (ahead of everyone
  waiting); an unverified caller is accepted on an exception basis at High,
  behind verified reports, and the case is flagged for hand-over to an
  authorized contact (`routing.cases` keeps one outage case a day).
- In business hours every report goes to the hosting team. Outside them only
  hosted districts' contacts are routed: an unrecognised number is asked for
  contact ID and PIN first (`routing.verification`); a free hosting advisor,
  else the on-call engineer (`CASELINE_ONCALL_NUMBER`), else the hosting
  queue. Anyone else hears how after-hours outage support works and may leave
  a voicemail.
- The night's routing checks who is calling itself (`route_after_hours`),
  whatever step led there: a report the desk accepted in business hours and
  routed after the close (the caller listened to the announcement through
  18:00) waits for hosting as it would have in hours, never ringing on-call
  unless it is a verified hosted contact's.
- The caller first hears the known-incident announcement and any posted
  maintenance window; with an announcement active they may simply hang up.
- One unverified number holds one waiting place at a time: a second call from
  it while the first still waits (a school's PBX presenting its main number, or
  a spoofed number calling over and over) hears that a report from the number
  already waits and may leave a message on the outage case (`acd.AlreadyWaiting`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from config import hours
from config.webhooks import CONNECT, webhook_url
from directory.catalog import HOSTING
from routing import acd, auth, oncall, presence, verification
from routing.acd import ANSWERED_DIAL_STATUSES, CallFinished, Decision, DialNumber, is_final
from routing.announcement import active_announcement
from routing.availability import note_dequeued
from routing.call_state import (
    get_call,
    is_ended,
    send_to_team,
    update_call,
    update_logged_call,
)
from routing.desk import Desk
from routing.verification import AskContactId, Unverified
from telephony import Outcome

log = logging.getLogger(__name__)

# How long (seconds) a redirect to the engineer, failed in a way that may have come
# after Twilio moved the call, looks for the sign that it did (`oncall.brought_over`)
# before it is sent again: as for an advisor's caller (`availability`'s look).
_BROUGHT_OVER_LOOK_SECONDS = 1.0

# The outage case itself is always Critical (a hosted service is down, whoever
# reports it); `priority` is the caller's place in the queue.
CASE_PRIORITY = "critical"


def priority(authorized: bool) -> str:
    """An outage caller's queue priority: Critical from an authorized contact; High
    on an exception basis (an unverified caller waits behind verified reports).
    The desk's outage policy; the one place to change it."""
    return "critical" if authorized else "high"


@dataclass(frozen=True)
class Notices:
    """What an outage caller hears first."""

    announcement: str | None  # the known-incident announcement, while active
    maintenance: str | None  # a posted or cadence maintenance window, now or soon
    handover: bool  # accepted on an exception basis: to be confirmed by a contact


@dataclass(frozen=True)
class OutageReport:
    """The report is accepted: the notices, then `decision` (hosting, or on-call at
    night). With an announcement active the notices come first as a question
    (`decision` None): a caller who stays on the line is routed next."""

    notices: Notices
    decision: Decision | None = None


@dataclass(frozen=True)
class OutageVoicemail:
    """After hours, not a hosted district's contact: how after-hours outage support
    works, and a voicemail on the outage case. `why` as `Unverified.why`;
    `maintenance` the maintenance notice (`hours.maintenance_notice`), said first,
    when the caller did not hear it yet: callers to option 8 during a posted window
    hear about it (PRODUCT.md), those the night does not route included."""

    why: str = ""
    maintenance: str | None = None


def report(
    desk: Desk, call_sid: str, call: dict[str, str], now: datetime, now_ms: int,
    windows: list[hours.MaintenanceWindow] | None, *, verified_now: bool = False,
) -> OutageReport | OutageVoicemail | AskContactId:
    """Option 8: notices, then hosting at the report's priority (24/7 for hosted districts)."""
    open_now = hours.is_open(now)
    authorized = verified_now or auth.is_authorized(call)
    if not open_now:
        if not authorized:
            # After hours an unrecognised (or untrusted) number must prove it is a
            # hosted district's contact: contact ID and PIN.
            step = verification.begin(desk, call, "8", now)
            if isinstance(step, Unverified):
                return voicemail(desk, call_sid, step.why,
                                 hours.maintenance_notice(now, windows))
            return step
        if call.get("hosted") != "1":
            return voicemail(desk, call_sid, maintenance=hours.maintenance_notice(now, windows))
    # An unverified number waits in one place at a time (`presence.claim_for_caller`):
    # a spoofed number cannot fill the queue at High ahead of every Medium caller.
    send_to_team(desk.r, call_sid, HOSTING, priority=priority(authorized), outage="1",
                 handover="" if authorized else "1", after_hours="" if open_now else "1",
                 one_place="" if authorized else "1")
    announcement = active_announcement(desk.r)
    notices = Notices(announcement, hours.maintenance_notice(now, windows), not authorized)
    if announcement:
        return OutageReport(notices)
    decision = route(desk, call_sid, now, now_ms)
    if isinstance(decision, OutageVoicemail):
        return decision
    return OutageReport(notices, decision)


def route(desk: Desk, call_sid: str, now: datetime, now_ms: int) -> Decision | OutageVoicemail:
    """Hosting now; at night a free hosting advisor, else the on-call engineer, else queue
    (for a verified hosted contact: `route_after_hours`)."""
    if hours.is_open(now):
        return acd.route_caller(desk, call_sid, now_ms)
    return route_after_hours(desk, call_sid, now_ms)


def routed_at_night(call: dict[str, str]) -> bool:
    """Whether the night's rules route this caller: a verified contact of a hosted
    district (an inactive contact's number, or PIN, verifies nobody)."""
    return auth.is_authorized(call) and call.get("hosted") == "1"


def not_routed_at_night(desk: Desk, call_sid: str, call: dict[str, str],
                        now_ms: int) -> Decision | OutageVoicemail:
    """Routing after the close for a caller the night's rules do not route. A report the
    desk accepted in business hours (routed after the close: the caller stayed through
    the announcement past 18:00) waits for hosting as it would have then, at the
    priority it was given; the on-call engineer is never rung for it. Any other (a
    stray request for a caller who never proved to be a hosted district's contact):
    how after-hours outage support works, and a voicemail."""
    if call.get("outage") == "1" and call.get("after_hours") != "1":
        return acd.route_caller(desk, call_sid, now_ms)
    return voicemail(desk, call_sid)


def voicemail(desk: Desk, call_sid: str, why: str = "",
              maintenance: str | None = None) -> OutageVoicemail:
    """After hours, not a hosted district: the message goes on the outage case;
    `maintenance`, the notice of a window to tell of first (None: nothing)."""
    authorized = auth.is_authorized(get_call(desk.r, call_sid))
    send_to_team(desk.r, call_sid, HOSTING, priority=priority(authorized), outage="1",
                 handover="" if authorized else "1", after_hours="1")
    return OutageVoicemail(why, maintenance)


def route_after_hours(desk: Desk, call_sid: str, now_ms: int) -> Decision | OutageVoicemail:
    """A hosted outage at night: a hosting advisor if one is free, else on-call, else queue.
    Only for a verified hosted contact, however the call got here (`not_routed_at_night`)."""
    call = get_call(desk.r, call_sid)
    if is_ended(desk.r, call_sid):
        return CallFinished(None)
    if not routed_at_night(call):
        return not_routed_at_night(desk, call_sid, call, now_ms)
    number = desk.settings.oncall_number
    if number and call.get("state") == "oncall":
        # A repeat (Twilio retrying without its token) while the on-call ring the first
        # answer started is on, as far as the call shows: that answer again. Its end
        # (`after_oncall`) moves the state on.
        return DialNumber(number)
    claim = presence.claim_for_caller(
        desk.r, call_sid, team=call.get("team") or HOSTING, owner_id=None, now_ms=now_ms,
        lease_ms=desk.lease_ms, priority=priority(auth.is_authorized(call)), queue_if_none=False,
    )
    if claim.outcome == "advisor" and claim.advisor_id:
        return acd.ring(desk, call_sid, claim.advisor_id, now_ms)
    # One on-call engineer, one caller at a time, in the queue's order: while their
    # line is busy, or others wait for hosting, the caller waits too; the head of the
    # queue is offered the engineer when the line frees (`serve_oncall_line`).
    if number and not call.get("oncall_tried") and \
            oncall.take_line(desk, call_sid, now_ms, team=call.get("team") or HOSTING):
        return DialNumber(number)
    return acd.route_caller(desk, call_sid, now_ms)


def after_oncall(
    desk: Desk, call_sid: str, dial_status: str, talk_seconds: int, now_ms: int,
    call_status: str = "in-progress", bridged: bool = False,
) -> Decision:
    """The on-call engineer's ring ended, and their line is free again: done if they
    took the call (`oncall.answered`: a key at the whisper, so a voicemail that
    picked up is no answer), else wait for hosting.

    A caller who hung up meanwhile (`call_status` final: Twilio may post this
    before the status callback) is not routed again. `bridged`: Twilio's `DialBridged`.
    """
    if oncall.free_line(desk, call_sid):
        serve_oncall_line(desk, now_ms)
    if oncall.answered(get_call(desk.r, call_sid),
                       bridged and dial_status in ANSWERED_DIAL_STATUSES):
        # Posted after the status callback too: the log is then brought up to date.
        update_logged_call(desk, call_sid, answered_by=oncall.ONCALL, talk_seconds=talk_seconds,
                           state="answered")
        return CallFinished(oncall.ONCALL)
    # The ring is over: a repeat of the webhook that started it no longer dials again.
    update_call(desk.r, call_sid, state="oncall-missed")
    if is_final(call_status):
        return CallFinished(None)
    return acd.route_caller(desk, call_sid, now_ms)


def serve_oncall_line(desk: Desk, now_ms: int) -> str | None:
    """At night, the on-call engineer's line free: the first hosting caller waiting who
    may have them (`oncall.take_for_first_waiting`) is brought over at once by a REST
    redirect to `/voice/connect` (which dials the engineer: `connect_redirected`), as a
    freed advisor's caller is (`availability._serve`), instead of at their next hold
    cycle: Twilio asks the waitUrl again only once its hold music has played out,
    minutes on (PRODUCT: the outage line is answered 24/7 for hosted customers).
    Exactly one caller per free line: the take marks the line theirs in the step that
    finds them. Called where the line frees (the engineer's `<Dial>` action, the call's
    end) and on the reconciler's every pass (a line whose lease ran out, a caller given
    back after failed redirects, one the engineer missed once `oncall.REOFFER_AFTER_MS`
    is over). The CallSid taken, or None: no engineer, the desk open, the line held, or
    nobody to bring. `now_ms`: ms since the epoch."""
    if not desk.settings.oncall_number or \
            hours.is_open(datetime.fromtimestamp(now_ms / 1000, UTC)):
        return None
    caller = oncall.take_for_first_waiting(desk, HOSTING, now_ms)
    if caller is None:
        return None
    call = get_call(desk.r, caller)
    note_dequeued(desk, caller, call, now_ms, state="oncall")
    url = webhook_url(call.get("base", ""), CONNECT)
    desk.telephony.later(functools.partial(_redirect_to_engineer, desk, caller, url, now_ms))
    return caller


def _redirect_to_engineer(desk: Desk, caller: str, url: str, now_ms: int) -> None:
    """Redirect the caller the engineer's line was taken for (`serve_oncall_line`), with
    the retries and the look an advisor's caller has (`availability._redirect_or_move_on`).
    Twilio saying the call is over: the line is freed and goes to the next caller (their
    end frees it too). Any other failure, retries spent: they go back to their place
    (`oncall.give_back`), the line free; the reconciler's next pass offers it again."""
    outcome = desk.telephony.redirect_call(
        caller, url, carried_out=functools.partial(oncall.brought_over, desk, caller),
        look_seconds=_BROUGHT_OVER_LOOK_SECONDS)
    if outcome is Outcome.DONE:
        return
    if outcome is Outcome.GONE:
        log.info("waiting caller %s is gone; the on-call line goes to the next", caller)
        if oncall.free_line(desk, caller):
            serve_oncall_line(desk, now_ms)
        return
    kept = oncall.give_back(desk, caller)
    log.warning("could not bring waiting caller %s to the on-call engineer; caller %s "
                "their place", caller, "keeps" if kept else "had no")


def connect_redirected(desk: Desk, call_sid: str, now_ms: int,
                       call_status: str = "in-progress") -> Decision:
    """A waiting caller redirected to `/voice/connect`: the engineer dialed when the line
    was taken for them (`serve_oncall_line`) and is still theirs, else the advisor
    claimed for them (`acd.connect_claimed`)."""
    call = get_call(desk.r, call_sid)
    number = desk.settings.oncall_number
    if number and not is_final(call_status) and not is_ended(desk.r, call_sid) \
            and oncall.left_for_engineer(desk, call_sid, call):
        oncall.note_dialed(desk, call_sid)
        return DialNumber(number)
    return acd.connect_claimed(desk, call_sid, now_ms, call_status=call_status)
