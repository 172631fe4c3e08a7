"""The main menu and where each key leads: the desk's call flow from the greeting
to a routed call.

- The greeting: the caller is identified by number (as `routing.auth` trusts
  it) and greeted by name; an active known-incident announcement plays first.
- The menu: 1 an existing case, 2 a new case, 6 the add-on products, 8 an
  outage. Any other key or silence asks again; after three tries, a polite
  goodbye. The same for the products sub-menu (`PRODUCT_TEAMS`).
- Options 1, 2 and 6 need an authorized contact: an unrecognised caller goes
  through `routing.verification` first. Outside business hours they lead to
  `routing.after_hours`; option 8, at any hour, to `routing.outage`.
- Option 1 asks the case number: its owner, else a teammate, else the queue;
  three misses still reach the general team.

Each function returns a decision; `ivr` only renders it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import directory
from config import hours
from config.logs import mask_phone
from directory import keys
from directory.catalog import GENERAL, PRODUCT_TEAMS
from directory.scripts import as_hash, script
from routing import acd, after_hours, auth, outage, verification
from routing.auth import caller_id_trusted
from routing.call_state import (
    CALL_TTL_SECONDS,
    TOO_MANY_CALLS,
    first_check_due,
    get_call,
    note_menu_key,
    send_to_team,
)
from routing.cases import CASE_TRIES, AskCase, Voicemail, choose_case
from routing.desk import Desk
from routing.verification import AskContactId, AskPin, Refused, Unverified, Verified

log = logging.getLogger(__name__)

# Tries of the main menu (and of the products sub-menu) before the goodbye.
MAX_TRIES = 3
MENU_KEYS = ("1", "2", "6", "8")
OUTAGE_KEY = "8"  # the only option that tells of maintenance windows
# `_OPEN_GREETED`'s answer for a call it opened refused.
_OPENED_REFUSED = 2


@dataclass(frozen=True)
class Welcome:
    """The greeting (by name for a trusted contact), the announcement, then the menu."""

    name: str | None
    announcement: str | None


@dataclass(frozen=True)
class TooManyCalls:
    """A number that placed too many calls lately: a polite refusal, and the call ends.
    `first`: this webhook refused the call (False for Twilio's repeat of it)."""

    first: bool = True


@dataclass(frozen=True)
class AskMenu:
    """Ask the main menu (`invalid`: say the key was not an option first)."""

    attempt: int = 1
    invalid: bool = False


@dataclass(frozen=True)
class AskProduct:
    """Ask the add-on products sub-menu (`after_hours`: say the desk is closed first)."""

    attempt: int = 1
    invalid: bool = False
    after_hours: bool = False


@dataclass(frozen=True)
class Goodbye:
    """Three tries without a choice: a polite goodbye."""


@dataclass(frozen=True)
class Connect:
    """Ring an advisor or queue (`decision`), after telling the caller that their case
    is closed or was not found (the general team helps; `case_not_entered`: the last
    of the tries was silence, said as such), or that no add-on product was chosen
    (`product_missed`). Of a closed case the caller hears where
    the call goes: to its owner (`to_owner`, who can reopen it), else to the next
    available advisor; never the owner when someone else is rung."""

    decision: acd.Decision
    case_closed: bool = False
    case_not_found: bool = False
    to_owner: bool = False
    case_not_entered: bool = False
    # The add-on product menu missed three times (a verified contact goes to the general
    # team with a new case): "invalid" when the last try was a wrong key, "silence".
    product_missed: str = ""


Step = (
    Welcome | TooManyCalls | AskMenu | AskProduct | Goodbye | Connect
    | AskCase | Voicemail | AskContactId | AskPin | Refused | outage.OutageReport
    | outage.OutageVoicemail
)


# A new call's hash opened with its greeting, in one round trip: the announcement
# active now (KEYS[2]; active as `routing.announcement.active_announcement` says: the
# flag on and some text) is kept on the hash as `greeted_announcement`, so a repeat of
# the first webhook greets from the hash. A hash that exists already (Twilio retried
# the first webhook, or an early status callback opened it) is left as it is and
# returned. A hash opened is put among the open calls (KEYS[3]), due for the
# reconciler's first check with Twilio at ARGV[2] (`call_state.first_check_due`).
# The same step counts the call among its number's calls (KEYS[4], the rolling window
# of `keys.calls_from`): with ARGV[5] calls (> 0) taken from the number within the
# last ARGV[6] ms before ARGV[4] (now, ms), the call is opened refused
# (`refused=too-many-calls`) and not counted, so the window always lets the number's
# next call in once its oldest is ARGV[6] ms old; a repeat, which finds the hash,
# never counts twice.
# A refused call never got past the front door: its hash takes only the fields its log
# reads (ARGV[8..7+ARGV[7]], the call's own that come first), not the rest of the
# call's own (the line, the base URL, the menu's state: for a call that goes on) nor
# what the number's lookup found (the contact, verified: the last of ARGV), so its log
# is unverified and no activity of the contact's, and a flood of refused calls keeps
# no more than their logs need (`call_state.forget_refused_calls` drops the rest once
# logged).
# ARGV[1]: the hash's TTL (s); ARGV[2]: that due time (ms); ARGV[3]: the CallSid;
# ARGV[4..6]: now, the limit, the window; ARGV[7]: how many of the values after it are
# a refused call's; ARGV[8..]: the fields, name/value pairs: those a refused call's log
# reads first, then the rest of the call's own, then what the lookup found.
# Returns {1 opened, 2 opened refused, 0 found; the announcement active now; the hash
# when found}.
_OPEN_GREETED = """
local announcement = redis.call('HMGET', KEYS[2], 'text', 'active')
local said = ''
if announcement[2] == '1' and announcement[1] then said = announcement[1] end
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, said, redis.call('HGETALL', KEYS[1])} end
local opened = 1
local limit = tonumber(ARGV[5])
if limit > 0 then
  local now = tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[6]))
  if redis.call('ZCARD', KEYS[4]) >= limit then
    opened = 2
  else
    redis.call('ZADD', KEYS[4], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[4], ARGV[6])
  end
end
if opened == 2 then
  redis.call('HSET', KEYS[1], 'refused', 'too-many-calls',
             unpack(ARGV, 8, 7 + tonumber(ARGV[7])))
else
  redis.call('HSET', KEYS[1], 'greeted_announcement', said, unpack(ARGV, 8))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return {opened, said, {}}
"""


def identify_caller(
    desk: Desk, call_sid: str, from_raw: str, to: str, base_url: str, now: datetime,
    stir_verstat: str = "",
) -> tuple[dict[str, str], str, bool]:
    """Open the call's hash and look the caller's number up among active contacts;
    returns (the call's hash, the announcement active now or "", whether this webhook
    opened the hash).

    The number identifies the caller only as `CASELINE_CALLER_ID_TRUST` allows
    (by default with SHAKEN/STIR full attestation, Twilio's `StirVerstat`); an
    untrusted number, or an inactive contact's, is an unknown caller's.

    The greeting opens with the hash (`greeted_name`, `greeted_announcement`: the
    announcement active now): a repeat of the first webhook greets from it. Two
    round trips when the directory cache holds the contact (one for an untrusted
    number).
    """
    caller = directory.normalize_phone(from_raw) or from_raw[:40]
    # What the log of a call refused at the front door reads (all a refused call keeps)...
    logged: dict[str, str | int] = {
        "call_sid": call_sid, "caller": caller, "started_at": int(now.timestamp() * 1000),
        "stir_verstat": stir_verstat[:64],
    }
    # ... and the rest of the call's own, for a call that goes on.
    fields = logged | {"to": to[:40], "base": base_url, "menu": "", "state": "menu"}
    # What the number's lookup found: kept only on a call the limit lets in.
    identity: dict[str, str | int] = {}
    trusted = caller_id_trusted(desk.settings.caller_id_trust, stir_verstat)
    contact, district = directory.find_contact_and_district_by_phone(
        desk.r, desk.session_factory, caller) if trusted else (None, None)
    if contact:
        facts = auth.fields_of_contact(contact, district, now)
        if facts["verified"]:
            identity.update(facts, verified_by="caller-id")
    identity["greeted_name"] = (str(identity.get("contact_name", ""))
                                if identity.get("verified") else "")
    own = [str(part) for name, value in fields.items() for part in (name, value)]
    found_out = [str(part) for name, value in identity.items() for part in (name, value)]
    started = int(fields["started_at"])
    limit, window_ms = calls_per_number(desk)
    opened, announcement, found = script(desk.r, _OPEN_GREETED)(
        keys=[keys.call(call_sid), keys.announcement(), keys.open_calls(),
              keys.calls_from(caller)],
        args=[CALL_TTL_SECONDS, first_check_due(started), call_sid, started, limit,
              window_ms, 2 * len(logged), *own, *found_out],
        client=desk.r)
    if int(opened) == _OPENED_REFUSED:
        log.warning("call %s from %s refused: %d calls taken from that number in the "
                    "last %d s already (CASELINE_CALLS_PER_NUMBER)", call_sid,
                    mask_phone(caller), limit, window_ms // 1000)
        return {k: str(v) for k, v in logged.items()} | {
            "refused": TOO_MANY_CALLS}, announcement, True
    if int(opened):
        return {k: str(v) for k, v in (fields | identity).items()} | {
            "greeted_announcement": announcement}, announcement, True
    # Twilio retried the first request: the same call.
    return as_hash(found), announcement, False


def calls_per_number(desk: Desk) -> tuple[int, int]:
    """The rate limit on new calls from one number: (calls, window in ms); (0, 0) when
    either setting is 0 (no limit)."""
    limit = desk.settings.calls_per_number
    window_ms = desk.settings.calls_per_number_window_seconds * 1000
    return (limit, window_ms) if limit > 0 and window_ms > 0 else (0, 0)


def welcome(
    desk: Desk, call_sid: str, from_raw: str, to: str, base_url: str, now: datetime,
    stir_verstat: str = "",
) -> Welcome | TooManyCalls:
    """A new call: identify the caller; greet a trusted contact by name. A number that
    placed too many calls lately (`calls_per_number`) is refused politely instead.

    Twilio's repeat of this webhook skips the kept reply (`ivr.voice.hooks.SAFE_TO_REPEAT`):
    it hears the greeting kept on the call's hash when it opened, even after the
    announcement changed or the caller verified by PIN meanwhile (or the refusal)."""
    call, announcement, opened = identify_caller(desk, call_sid, from_raw, to, base_url,
                                                 now, stir_verstat)
    if call.get("refused") == TOO_MANY_CALLS:
        return TooManyCalls(first=opened)
    if "greeted_name" in call:
        return Welcome(call["greeted_name"] or None, call.get("greeted_announcement") or None)
    # A hash this webhook did not open (an early status callback's, or one opened
    # before the greeting was kept): greet as the call is now.
    name = call.get("contact_name") if auth.is_authorized(call) else None
    return Welcome(name or None, announcement or None)


def press_key(
    desk: Desk, call_sid: str, key: str, attempt: int, now: datetime, now_ms: int,
    windows: list[hours.MaintenanceWindow] | None,
) -> Step:
    """The caller's main-menu key: 1 case, 2 new case, 6 add-ons, 8 outage; * repeats.
    `windows`: the posted maintenance windows, read by option 8 only (so a caller of
    another key may pass None)."""
    if key == "*":
        return AskMenu(attempt)
    if key not in MENU_KEYS:
        if attempt >= MAX_TRIES:
            return Goodbye()
        return AskMenu(attempt + 1, invalid=bool(key))
    # Twilio's repeat of the key (the same try) goes on from the same call, noted once.
    call = note_menu_key(desk.r, call_sid, key, attempt)
    if key == OUTAGE_KEY:
        return outage.report(desk, call_sid, call, now, now_ms, windows)
    if not auth.is_authorized(call):
        return go_on(desk, call_sid, verification.begin(desk, call, key, now), now, now_ms,
                     windows)
    return option(desk, call_sid, key, now, now_ms)


def go_on(
    desk: Desk, call_sid: str, step: Step | Verified | Unverified, now: datetime, now_ms: int,
    windows: list[hours.MaintenanceWindow] | None,
) -> Step:
    """After a verification step: a verified caller goes on with their option; an
    unverified outage caller may leave a message; anyone else is refused."""
    if isinstance(step, Verified):
        if step.option == "8":
            call = get_call(desk.r, call_sid)
            return outage.report(desk, call_sid, call, now, now_ms, windows, verified_now=True)
        return option(desk, call_sid, step.option, now, now_ms)
    if isinstance(step, Unverified):
        if step.option == "8":
            return outage.voicemail(desk, call_sid, step.why,
                                    hours.maintenance_notice(now, windows))
        return verification.refuse(desk, call_sid, step.why)
    return step


def option(
    desk: Desk, call_sid: str, key: str, now: datetime, now_ms: int
) -> Step:
    """An authorized caller's option 1, 2 or 6 (after hours: hours and voicemail)."""
    if not hours.is_open(now):
        if key == "6":  # the product first: the message opens a case for its team
            after_hours.ask_product(desk, call_sid)
            return AskProduct(after_hours=True)
        return after_hours.closed(desk, call_sid, key)
    if key == "1":
        return AskCase()
    if key == "6":
        return AskProduct()
    send_to_team(desk.r, call_sid, GENERAL, new_case="1")
    return Connect(acd.route_caller(desk, call_sid, now_ms))


def press_product_key(desk: Desk, call_sid: str, key: str, attempt: int, now_ms: int) -> Step:
    """The add-on product key: route to that product's team; * repeats; three misses:
    the general team, with a new case. After hours, a voicemail for a new case of that
    product (three misses: of the general team)."""
    team = PRODUCT_TEAMS.get(key)
    if team is None:
        if key == "*":
            return AskProduct(attempt)
        if attempt >= MAX_TRIES:
            if after_hours.is_after_hours(get_call(desk.r, call_sid)):
                return after_hours.product_chosen(desk, call_sid, None)
            # A verified contact who asked for help is not hung up on (the desk's
            # policy, as after three wrong case numbers): the general team, a new case.
            send_to_team(desk.r, call_sid, GENERAL, new_case="1")
            return Connect(acd.route_caller(desk, call_sid, now_ms),
                           product_missed="invalid" if key else "silence")
        return AskProduct(attempt + 1, invalid=bool(key))
    # Twilio's repeat of the key (the same try) goes on from the same call, noted once.
    call = note_menu_key(desk.r, call_sid, key, attempt, try_field="product_try")
    if after_hours.is_after_hours(call):
        return after_hours.product_chosen(desk, call_sid, team)
    send_to_team(desk.r, call_sid, team, product=team, new_case="1")
    return Connect(acd.route_caller(desk, call_sid, now_ms))


def enter_case_number(
    desk: Desk, call_sid: str, digits: str, now_ms: int, speech: str = "", attempt: int = 0
) -> Step:
    """The case number, keyed or said: its owner, else a teammate, else the queue
    (`acd.route_caller`). `attempt`: the try the answer names (`choose_case`)."""
    lookup = choose_case(desk, call_sid, digits, speech, attempt)
    if lookup.found:
        decision = acd.route_caller(desk, call_sid, now_ms)
        to_owner = (isinstance(decision, acd.DialAdvisor) and bool(lookup.owner)
                    and decision.advisor_id == lookup.owner)
        return Connect(decision, case_closed=lookup.closed, to_owner=to_owner)
    if lookup.tries >= CASE_TRIES:
        # Three misses: a person will still help, rather than hanging up, on a new case
        # for the district (PRODUCT: every call answered is logged on its case).
        send_to_team(desk.r, call_sid, GENERAL, new_case="1")
        return Connect(acd.route_caller(desk, call_sid, now_ms),
                       case_not_found=lookup.entered, case_not_entered=not lookup.entered)
    return AskCase(not_found=lookup.entered, nothing_entered=not lookup.entered,
                   attempt=lookup.tries + 1)
