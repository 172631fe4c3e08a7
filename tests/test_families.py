"""Parents and students who found the toll-free number: the greeting says whom the
line serves (families: contact your school). The menu has no key of theirs: 0 is
"another key", asked again like any other, and counts toward the three tries."""

from __future__ import annotations

import dataclasses

import pytest

from config.prompts import Prompts
from directory.models import CallLog
from tests.conftest import API_TOKEN, make_available, run_jobs
from tests.test_real_world import PAT, STRANGER

API = {"Authorization": f"Bearer {API_TOKEN}"}
ATTESTED = "TN-Validation-Passed-A"


@pytest.fixture
def lakeview(directory):
    directory.district()
    directory.contact()
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.load()


def test_an_unknown_caller_hears_whom_the_line_serves_then_the_menu(phone, lakeview):
    p = Prompts()
    result = phone.call(STRANGER, "", attestation=None)
    assert result.heard()[:2] == [p.text("greeting.unknown"), p.text("menu.main")]


def test_key_0_asks_again_and_counts_toward_the_three_tries(phone, desk, lakeview, client):
    p = Prompts()
    result = phone.call(STRANGER, "0 0 0", attestation=None)
    assert result.heard() == [
        p.text("greeting.unknown"), p.text("menu.main"),
        p.text("menu.invalid"), p.text("menu.main"),
        p.text("menu.invalid"), p.text("menu.main"),
        p.text("menu.goodbye")]
    assert result.outcome == "hangup" and not result.dialed and not result.queued
    run_jobs(desk)
    with desk.session_factory() as db:
        log = db.query(CallLog).filter_by(call_sid=result.call_sid).one()
        assert log.status == "ended-in-menu"


def test_after_key_0_the_caller_may_still_choose_an_option(phone, desk, lakeview, app):
    # With caller ID never trusted, every caller is "unknown": 0 must not end Pat's call.
    app.extensions["caseline"] = dataclasses.replace(
        desk, settings=desk.settings.with_changes(caller_id_trust="never"))
    make_available(desk, "A2")
    result = phone.call(PAT, "0 2 5001# 2468#", attestation=ATTESTED)
    assert Prompts().text("menu.invalid") in result.heard()
    assert result.dialed == ["+16515550102"]


def test_a_contact_greeted_by_name_is_asked_again_after_0(phone, lakeview):
    p = Prompts()
    result = phone.call(PAT, "0", attestation=ATTESTED)
    assert result.heard()[:4] == [p.text("greeting.known", name="Pat Lee"), p.text("menu.main"),
                                  p.text("menu.invalid"), p.text("menu.main")]
