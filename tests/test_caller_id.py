"""Who is calling: caller ID is not identity. A contact's number identifies the
caller only with SHAKEN/STIR full attestation (or as CASELINE_CALLER_ID_TRUST
says); an inactive contact's number identifies nobody, anywhere."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

from config.prompts import Prompts
from directory.models import CallLog, Contact
from tests.conftest import make_available, run_jobs

CHICAGO = ZoneInfo("America/Chicago")
PAT = "+16125550101"  # Lakeview (hosted), active
OLD = "+16125550109"  # Lakeview (hosted), inactive for 180 days
A7_PHONE = "+16515550199"
ATTESTED = "TN-Validation-Passed-A"


@pytest.fixture
def lakeview(directory):
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468", last_active="2026-10-01")
    directory.contact("5009", OLD, "D100", "Old Timer", "1111", last_active="2026-01-02")
    directory.advisor("A7", ["general", "hosting"], phone=A7_PHONE)
    directory.case("2024117", "D100", owner="A7")
    directory.load()


def whisper(result) -> str:
    """What the advisor heard first."""
    return result.heard("advisor")[0]


def logged(desk) -> list[CallLog]:
    """Every call log, oldest first."""
    run_jobs(desk)
    with desk.session_factory() as db:
        return list(db.scalars(select(CallLog).order_by(CallLog.id)))


@pytest.mark.parametrize("verstat", [None, "TN-Validation-Passed-B", "TN-Validation-Passed-C",
                                     "TN-Validation-Failed-A", "No-TN-Validation"])
def test_a_contacts_number_without_full_attestation_must_give_contact_id_and_pin(
        phone, desk, lakeview, verstat):
    p = Prompts()
    make_available(desk, "A7")
    result = phone.call(PAT, "1 5001# 2468# 2024117#", attestation=verstat)
    assert result.heard()[0] == p.text("greeting.unknown")  # no name for an untrusted number
    assert p.text("auth.ask_contact") in result.heard()
    assert result.dialed == [A7_PHONE]
    assert p.text("whisper.verified_pin", name="Pat Lee") in whisper(result)
    [log] = logged(desk)
    assert log.details["verified_by"] == "pin"
    assert log.details["stir_verstat"] == (verstat or "")


def test_a_contacts_attested_number_is_greeted_by_name_and_needs_no_pin(phone, desk, lakeview):
    p = Prompts()
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117#", attestation=ATTESTED)
    assert result.heard()[0] == p.text("greeting.known", name="Pat Lee")
    assert p.text("auth.ask_contact") not in result.heard()
    assert result.dialed == [A7_PHONE]
    assert p.text("whisper.verified_caller_id_attested", name="Pat Lee") in whisper(result)
    [log] = logged(desk)
    assert log.details["verified_by"] == "caller-id-attested"
    assert log.details["stir_verstat"] == ATTESTED


def test_trust_never_asks_even_an_attested_number_for_a_pin(phone, desk, lakeview, app):
    app.extensions["caseline"] = dataclasses.replace(
        desk, settings=desk.settings.with_changes(caller_id_trust="never"))
    make_available(desk, "A7")
    result = phone.call(PAT, "1 5001# 2468# 2024117#", attestation=ATTESTED)
    assert Prompts().text("auth.ask_contact") in result.heard()
    assert result.dialed == [A7_PHONE]


def test_trust_any_identifies_an_unattested_number_and_the_whisper_says_so(
        phone, desk, lakeview, app):
    app.extensions["caseline"] = dataclasses.replace(
        desk, settings=desk.settings.with_changes(caller_id_trust="any"))
    make_available(desk, "A7")
    result = phone.call(PAT, "1 2024117#", attestation=None)
    assert result.dialed == [A7_PHONE]
    p = Prompts()
    assert p.text("whisper.verified_caller_id", name="Pat Lee") in whisper(result)


def test_only_a_verified_call_counts_as_activity_for_the_180_day_rule(phone, desk, lakeview):
    make_available(desk, "A7")
    phone.call(PAT, "8", attestation=None)  # an outage report from an untrusted number
    logged(desk)
    with desk.session_factory() as db:
        assert str(db.get(Contact, "5001").last_active) == "2026-10-01"
    make_available(desk, "A7")
    phone.call(PAT, "8", attestation=ATTESTED)
    logged(desk)
    with desk.session_factory() as db:
        assert str(db.get(Contact, "5001").last_activity) == "2026-11-24"


# --- an inactive contact's number identifies nobody --------------------------------


@pytest.mark.parametrize("keys", ["1", "2", "6"])
def test_an_inactive_contacts_attested_number_is_unknown_on_options_1_2_6(
        phone, desk, lakeview, keys):
    p = Prompts()
    make_available(desk, "A7")
    result = phone.call(OLD, keys, attestation=ATTESTED)
    assert result.heard()[0] == p.text("greeting.unknown")
    assert p.text("auth.ask_contact") in result.heard()
    assert result.dialed == []
    assert not any("Old Timer" in text for text in result.heard())


def test_an_inactive_contacts_number_on_the_outage_line_by_day_is_an_exception_report(
        phone, desk, lakeview):
    make_available(desk, "A7")
    result = phone.call(OLD, "8", attestation=ATTESTED)
    assert result.dialed == [A7_PHONE]
    assert Prompts().text("whisper.not_verified") in whisper(result)
    assert "Old Timer" not in whisper(result)
    [log] = logged(desk)
    assert log.contact_id is None and log.details["handover"] is True
    assert log.priority == "high"  # behind verified outage reports


def test_an_inactive_contacts_number_at_night_must_verify_and_cannot(
        phone, desk, lakeview, app):
    app.extensions["caseline"] = dataclasses.replace(
        desk, settings=desk.settings.with_changes(oncall_number="+16125550000"))
    night = datetime(2026, 11, 24, 23, 30, tzinfo=CHICAGO)
    with time_machine.travel(night, tick=True):
        make_available(desk, "A7")
        result = phone.call(OLD, "8 5009# 1111#", attestation=ATTESTED)
    p = Prompts()
    assert p.text("auth.ask_contact") in result.heard()  # not waved through as hosted
    assert result.dialed == []  # neither an advisor nor the on-call engineer
    assert result.outcome == "voicemail"
