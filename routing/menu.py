"""The call flow's decisions that are not TwiML: who is calling, which case
they mean, which team they want. Views turn these answers into prompts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from routing import directory
from routing.auth import caller_id_trusted, contact_fields
from routing.call_state import append_menu, get_call, start_call, update_call
from routing.desk import Desk

MAX_TRIES = 3


@dataclass(frozen=True)
class CaseLookup:
    """Whether a case number the caller typed is theirs to discuss."""

    found: bool
    closed: bool = False
    tries: int = 0


def identify_caller(
    desk: Desk, call_sid: str, from_raw: str, to: str, base_url: str, now: datetime,
    stir_verstat: str = "",
) -> dict[str, str]:
    """Open the call's hash and look the caller's number up among active contacts.

    The number identifies the caller only as `CASELINE_CALLER_ID_TRUST` allows
    (by default with SHAKEN/STIR full attestation, Twilio's `StirVerstat`); an
    untrusted number, or an inactive contact's, is an unknown caller's.
    """
    caller = directory.normalize_phone(from_raw) or from_raw[:40]
    fields: dict[str, str | int] = {
        "call_sid": call_sid, "caller": caller, "to": to[:40], "base": base_url,
        "started_at": int(now.timestamp() * 1000), "menu": "", "state": "menu",
        "stir_verstat": stir_verstat[:64],
    }
    trusted = caller_id_trusted(desk.settings.caller_id_trust, stir_verstat)
    contact = directory.find_contact_by_phone(desk.r, desk.session_factory, caller) if (
        trusted) else None
    if contact:
        facts = contact_fields(desk, contact, now)
        if facts["verified"]:
            fields.update(facts, verified_by="caller-id")
    if start_call(desk.r, call_sid, fields):
        return {k: str(v) for k, v in fields.items()}
    return get_call(desk.r, call_sid)  # Twilio retried the first request: same call.


def record_step(desk: Desk, call_sid: str, step: str, **fields: str | int) -> dict[str, str]:
    """Add a key or entry to the call's menu path (and set `fields`); the call after."""
    return append_menu(desk.r, call_sid, step[:64], **fields)


def choose_case(desk: Desk, call_sid: str, digits: str) -> CaseLookup:
    """Look a typed case number up within the caller's district; route to its owner."""
    call = get_call(desk.r, call_sid)
    tries = int(call.get("case_tries") or 0) + 1
    number = "".join(ch for ch in digits if ch.isdigit())[:20]
    case = directory.find_case(desk.r, desk.session_factory, number) if number else None
    if not case or not case.get("district") or case.get("district") != call.get("district"):
        # Another district's case is "not found": never reveal it exists.
        record_step(desk, call_sid, number or "-", case_tries=tries)
        return CaseLookup(found=False, tries=tries)
    record_step(
        desk, call_sid, number,
        case=number, team=case.get("team") or "general", owner=case.get("owner", ""),
        priority=case.get("priority") or "medium", product=case.get("product", ""),
        case_status=case.get("status", ""), case_tries=tries,
    )
    return CaseLookup(found=True, closed=case.get("status") == "closed", tries=tries)


def send_to_team(
    desk: Desk, call_sid: str, team: str, *, priority: str = "medium", **extra: str
) -> None:
    """Route the caller to a team (no owner): the next available teammate, or its queue."""
    update_call(desk.r, call_sid, team=team, owner="", priority=priority, **extra)
