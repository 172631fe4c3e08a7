"""The greeting and the menus: a new call, the main-menu key, the add-on product
key, and the case number (in business hours). `routing.menu` decides."""

from __future__ import annotations

from flask import Response

from ivr.context import base_url, desk, maintenance_windows, now, now_ms
from ivr.metrics import count_refused_too_many
from ivr.voice.form import attempt, call_sid, form, key, whole_arg
from ivr.voice.hooks import bp
from ivr.voice.render import answer
from routing import menu


@bp.post("/incoming")
def incoming() -> Response:
    """A new call: identify the caller, greet them, play any announcement, ask the menu."""
    sid = call_sid()  # never empty: `hooks.require_a_call`
    step = menu.welcome(desk(), sid, form("From"), form("To"), base_url(), now(),
                        stir_verstat=form("StirVerstat"))
    if isinstance(step, menu.TooManyCalls) and step.first:
        count_refused_too_many()  # operators see a flood in /metrics, not only in logs
    return answer(step, sid)


@bp.post("/menu")
def main_menu() -> Response:
    """The caller's main-menu key: 1 case, 2 new case, 6 add-ons, 8 outage."""
    sid, pressed = call_sid(), key()
    # Only option 8 may tell of maintenance: the other keys spare the windows' read.
    windows = maintenance_windows() if pressed == menu.OUTAGE_KEY else None
    step = menu.press_key(desk(), sid, pressed, attempt(), now(), now_ms(), windows)
    return answer(step, sid)


@bp.post("/product")
def product() -> Response:
    """The add-on product key: route to that product's team."""
    sid = call_sid()
    return answer(menu.press_product_key(desk(), sid, key(), attempt(), now_ms()), sid)


@bp.post("/case")
def case() -> Response:
    """The case number: its owner, else a teammate, else the queue."""
    sid = call_sid()
    return answer(menu.enter_case_number(desk(), sid, form("Digits"), now_ms(),
                                         speech=form("SpeechResult", limit=200),
                                         attempt=whole_arg("attempt")), sid)
