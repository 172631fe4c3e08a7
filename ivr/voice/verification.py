"""Contact ID and PIN, for a caller whose number is not recognised.
`routing.verification` asks and checks; `routing.menu` goes on from there."""

from __future__ import annotations

from flask import Response

from ivr.context import desk, maintenance_windows, now, now_ms
from ivr.voice.form import attempt, call_sid, form, option
from ivr.voice.hooks import bp
from ivr.voice.render import answer
from routing import menu, verification


@bp.post("/verify/contact")
def verify_contact() -> Response:
    """The contact ID: remember it, ask the PIN."""
    sid = call_sid()
    step = verification.enter_contact_id(desk(), sid, form("Digits", 32), option(), attempt())
    return answer(menu.go_on(desk(), sid, step, now(), now_ms(), maintenance_windows()), sid)


@bp.post("/verify/pin")
def verify_pin() -> Response:
    """The PIN: verified callers go on with their option; three failures lock the number."""
    sid = call_sid()
    step = verification.enter_pin(desk(), sid, form("Digits", 32), option(), now())
    return answer(menu.go_on(desk(), sid, step, now(), now_ms(), maintenance_windows()), sid)
