"""Outside business hours (`config.hours.is_open`), options 1, 2 and 6: the
caller hears the desk's hours and may leave a voicemail, which the call-log
job attaches to their case (option 1: the case number is asked first) or to a
new case for their district (options 2 and 6, or a case number not found).

The outage line at night is `routing.outage`.
"""

from __future__ import annotations

from directory.catalog import GENERAL
from routing.call_state import send_to_team, update_call
from routing.cases import CASE_TRIES, AskCase, Voicemail, choose_case
from routing.desk import Desk


def closed(desk: Desk, call_sid: str, option: str) -> AskCase | Voicemail:
    """The desk is closed: the hours, then a voicemail (after the case number for 1).
    Option 6 asks the product first (`routing.menu`), then `product_chosen`."""
    if option == "1":
        return AskCase(after_hours=True)
    # Option 2: the message opens a new case for the caller's district.
    send_to_team(desk.r, call_sid, GENERAL, new_case="1", after_hours="1")
    return Voicemail(closed=True)


def ask_product(desk: Desk, call_sid: str) -> None:
    """Option 6 while closed: the product is asked before the voicemail (the call
    remembers it is an after-hours one for the product's key)."""
    update_call(desk.r, call_sid, after_hours="1")


def is_after_hours(call: dict[str, str]) -> bool:
    """Whether the call's options lead to a voicemail (the desk was closed)."""
    return call.get("after_hours") == "1"


def product_chosen(desk: Desk, call_sid: str, team: str | None) -> Voicemail:
    """After hours, option 6's product key: a voicemail that opens a new case for that
    product (its team's); `team` None (three misses): a new case for the general team."""
    if team is None:
        send_to_team(desk.r, call_sid, GENERAL, new_case="1", after_hours="1")
    else:
        send_to_team(desk.r, call_sid, team, product=team, new_case="1", after_hours="1")
    return Voicemail()


def enter_case_number(
    desk: Desk, call_sid: str, digits: str, speech: str = "", attempt: int = 0
) -> AskCase | Voicemail:
    """After hours, option 1: the case number (keyed or said), then the voicemail for
    that case (after three misses, for a new case). `attempt`: as `choose_case`'s."""
    lookup = choose_case(desk, call_sid, digits, speech, attempt)
    if lookup.found:
        update_call(desk.r, call_sid, after_hours="1")
        return Voicemail()
    if lookup.tries >= CASE_TRIES:
        send_to_team(desk.r, call_sid, GENERAL, new_case="1", after_hours="1")
        return Voicemail(case_not_found=lookup.entered, case_not_entered=not lookup.entered)
    return AskCase(after_hours=True, not_found=lookup.entered,
                   nothing_entered=not lookup.entered, attempt=lookup.tries + 1)
