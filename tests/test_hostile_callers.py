"""Hostile callers guessing PINs: failures counted per number and per contact ID,
a locked contact that sounds exactly like a wrong PIN, operators' unlock, PIN
hashes kept out of Redis, and the server-side pepper."""

from __future__ import annotations

import logging
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import select

import directory
from caseline.cli import main
from config.prompts import Prompts
from directory import cache_directory, check_contact_pin, keys, pins
from directory.models import Contact
from tests.conftest import (
    API_TOKEN,
    Phone,
    make_available,
)
from tests.webhooks import post

CHICAGO = ZoneInfo("America/Chicago")
PAT = "+16125550101"
LINE = "+18005550100"
API = {"Authorization": f"Bearer {API_TOKEN}"}
PEPPER = "a-long-random-server-side-secret"


def stranger(n: int) -> str:
    """The n-th spoofed number (none of them a contact's)."""
    return f"+1952555{n:04d}"


def at(year: int, month: int, day: int, hour: int, minute: int = 0):
    """Travel to a wall-clock time in Chicago (the clock keeps ticking)."""
    return time_machine.travel(datetime(year, month, day, hour, minute, tzinfo=CHICAGO),
                               tick=True)


@pytest.fixture
def lakeview(directory):
    """Pat Lee (contact 5001, PIN 2468), owner A7 of case 2024117."""
    directory.district()
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468", last_active="2027-11-30")
    directory.contact("5002", "+16125550102", "D100", "Lee Park", "1357",
                      last_active="2027-11-30")
    directory.advisor("A7", ["general", "hosting"], phone="+16515550199")
    directory.case("2024117", owner="A7")
    directory.load()


def at_pin_prompt(client, number: str, contact_id: str = "5001") -> str:
    """A call from `number` that chose 1 and typed a contact ID; its CallSid."""
    sid = "CA" + uuid.uuid4().hex
    post(client, "/voice/incoming", {"CallSid": sid, "From": number, "To": LINE})
    post(client, "/voice/menu?attempt=1", {"CallSid": sid, "Digits": "1"})
    post(client, "/voice/verify/contact?option=1", {"CallSid": sid, "Digits": contact_id})
    return sid


def type_pin(client, sid: str, pin: str) -> ET.Element:
    """The caller types a PIN; what they hear next."""
    return post(client, "/voice/verify/pin?option=1", {"CallSid": sid, "Digits": pin})


def pin_reply(client, number: str, pin: str, contact_id: str = "5001") -> ET.Element:
    """A whole call up to the PIN: the reply to it."""
    return type_pin(client, at_pin_prompt(client, number, contact_id), pin)


def next_question(twiml: ET.Element) -> str | None:
    """The path the next <Gather> posts to (None when the call ends without one)."""
    gather = twiml.find("Gather")
    return urlparse(gather.get("action", "")).path if gather is not None else None


def asks_case_number(twiml: ET.Element) -> bool:
    """Verified: the caller is asked for their case number next."""
    return next_question(twiml) == "/voice/case"


def same_twiml(a: ET.Element, b: ET.Element) -> bool:
    """Two TwiML documents a caller could not tell apart."""
    return ET.canonicalize(ET.tostring(a)) == ET.canonicalize(ET.tostring(b))


def lock_pat(client, first: int = 1) -> None:
    """Five wrong PINs for 5001, each from a different number."""
    for n in range(first, first + 5):
        assert not asks_case_number(pin_reply(client, stranger(n), "0000"))


# --- five failures for one contact, from any numbers ----------------------------------


def test_wrong_pins_from_five_numbers_lock_the_contact_and_it_sounds_like_a_wrong_pin(
        desk, lakeview, client):
    lock_pat(client)
    # A sixth number, never used before, with Pat's right PIN: refused...
    right = pin_reply(client, stranger(6), "2468")
    # ...exactly as a seventh number typing a wrong PIN is.
    wrong = pin_reply(client, stranger(7), "1111")
    assert not asks_case_number(right)
    assert same_twiml(right, wrong)
    assert next_question(right) == "/voice/verify/contact"
    # Another contact is not affected.
    assert asks_case_number(pin_reply(client, stranger(8), "1357", "5002"))


def test_a_locked_contact_is_refused_on_a_whole_call(phone, desk, lakeview, client):
    make_available(desk, "A7")
    lock_pat(client)
    locked = phone.call(stranger(6), "1 5001# 2468# 5001# 2468# 5001# 2468#")
    assert locked.dialed == [] and locked.outcome == "hangup"
    wrong = phone.call(stranger(7), "1 5001# 0000# 5001# 0000# 5001# 0000#")
    assert locked.heard() == wrong.heard()


def test_operator_unlocks_through_the_api(desk, lakeview, client):
    lock_pat(client)
    answer = client.post("/api/contacts/5001/unlock", headers=API)
    assert answer.status_code == 200
    assert answer.get_json() == {"id": "5001", "locked": False, "was_locked": True}
    assert asks_case_number(pin_reply(client, stranger(6), "2468"))
    # Unlocking an unlocked contact is harmless; an unknown one is a 404.
    again = client.post("/api/contacts/5001/unlock", headers=API)
    assert again.get_json()["was_locked"] is False
    missing = client.post("/api/contacts/9999/unlock", headers=API)
    assert missing.status_code == 404 and "error" in missing.get_json()
    assert client.post("/api/contacts/5001/unlock").status_code == 401



def test_an_unlock_for_a_longer_id_is_a_404_not_the_contact_its_first_digits_name(
        desk, directory, lakeview, client):
    longest = "12345678901234567890"  # as long as a contact ID may be
    directory.contact(longest, "+16125550109", "D100", "Jo Kim", "8642",
                      last_active="2027-11-30")
    directory.load()
    for n in range(1, 6):
        pin_reply(client, stranger(n), "0000", longest)
    assert not asks_case_number(pin_reply(client, stranger(6), "8642", longest))

    # An operator's typo, one digit too many: nobody has that id.
    answer = client.post(f"/api/contacts/{longest}7/unlock", headers=API)

    assert answer.status_code == 404
    assert not asks_case_number(pin_reply(client, stranger(7), "8642", longest))  # still locked

def test_operator_unlocks_from_the_command_line(desk, lakeview, client, settings,
                                                monkeypatch):
    lock_pat(client)
    assert not asks_case_number(pin_reply(client, stranger(6), "2468"))
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    result = CliRunner().invoke(main, ["contacts", "unlock", "5001"])
    assert result.exit_code == 0, result.output
    assert asks_case_number(pin_reply(client, stranger(7), "2468"))
    unknown = CliRunner().invoke(main, ["contacts", "unlock", "9999"])
    assert unknown.exit_code == 1


def test_the_contact_lock_ends_after_24_hours(desk, lakeview, client):
    with at(2026, 11, 24, 10):
        lock_pat(client)
    with at(2026, 11, 25, 9, 58):
        assert not asks_case_number(pin_reply(client, stranger(6), "2468"))
    with at(2026, 11, 25, 10, 5):
        assert asks_case_number(pin_reply(client, stranger(7), "2468"))


def test_a_right_pin_does_not_wash_out_the_contacts_failures(desk, lakeview, client):
    for n in range(1, 5):
        pin_reply(client, stranger(n), "0000")
    # Pat (or whoever holds the PIN) gets in: the four failures still stand.
    assert asks_case_number(pin_reply(client, stranger(5), "2468"))
    pin_reply(client, stranger(6), "0000")  # the fifth
    assert not asks_case_number(pin_reply(client, stranger(7), "2468"))


# --- three failures from one number ---------------------------------------------------


def test_three_failures_lock_the_number_even_mid_call_with_the_right_pin(
        desk, lakeview, client):
    with at(2026, 11, 24, 10):
        waiting = at_pin_prompt(client, stranger(1))
        for _ in range(3):
            pin_reply(client, stranger(1), "0000", "5002")
        # The call that was already at the PIN prompt types the right PIN: refused.
        refused = type_pin(client, waiting, "2468")
    assert next_question(refused) is None and refused.find("Hangup") is not None
    with at(2026, 11, 24, 10, 14):
        again = post(client, "/voice/incoming",
                     {"CallSid": "CA-again", "From": stranger(1), "To": LINE})
        again = post(client, "/voice/menu?attempt=1", {"CallSid": "CA-again", "Digits": "1"})
    assert next_question(again) is None  # not even asked for a contact ID
    assert Prompts().text("auth.locked") in [say.text for say in again.iter("Say")]
    with at(2026, 11, 24, 10, 16):
        assert asks_case_number(pin_reply(client, stranger(1), "2468"))


def test_a_right_pin_does_not_reset_the_numbers_failures(desk, lakeview, client):
    pin_reply(client, stranger(1), "0000")
    pin_reply(client, stranger(1), "0000")
    assert asks_case_number(pin_reply(client, stranger(1), "2468"))
    # The third failure within 15 minutes locks the number all the same.
    third = pin_reply(client, stranger(1), "9999", "5002")
    assert next_question(third) is None


# --- what operators see ---------------------------------------------------------------


def test_every_failure_is_logged_with_the_contact_and_a_masked_number(
        desk, lakeview, client, caplog):
    with caplog.at_level(logging.WARNING, logger="routing.auth"):
        pin_reply(client, "+16125550177", "0000")
        pin_reply(client, "+16125550177", "0000", "4040")
    failures = [r.getMessage() for r in caplog.records if "failed PIN" in r.getMessage()]
    assert len(failures) == 2
    assert all("+1612***0177" in line for line in failures)
    assert "5001" in failures[0] and "4040" in failures[1]
    assert not any("+16125550177" in r.getMessage() for r in caplog.records)


def test_stats_count_failed_verifications_of_the_last_hour_in_every_team(
        desk, lakeview, client):
    with at(2026, 11, 24, 10):
        pin_reply(client, stranger(1), "0000")
        pin_reply(client, stranger(2), "0000", "4040")
        assert asks_case_number(pin_reply(client, stranger(3), "2468"))
        stats = client.get("/api/stats", headers=API).get_json()
    # Every top-level key is still a team; the line's count is in each of them.
    assert set(stats) == {"general", "hosting"}
    assert all(team["failed_verifications_last_hour"] == 2 for team in stats.values())
    assert all("answered_within_15s" in team for team in stats.values())
    with at(2026, 11, 24, 11, 5):
        later = client.get("/api/stats", headers=API).get_json()
    assert all(team["failed_verifications_last_hour"] == 0 for team in later.values())


# --- the same work whether or not the ID exists ----------------------------------------


def test_an_unknown_id_costs_the_same_scrypt_as_a_known_one(desk, lakeview, monkeypatch):
    real = pins.hashlib.scrypt
    runs: list[int] = []

    def counted(*args, **kwargs):
        runs.append(1)
        return real(*args, **kwargs)

    pins.dummy_hash(None)  # made once per process, before anything is measured
    monkeypatch.setattr(pins.hashlib, "scrypt", counted)
    for contact_id in ("5001", "9999", ""):
        runs.clear()
        check = check_contact_pin(desk.session_factory, contact_id, "0000")
        assert not check.matched and len(runs) == 1, contact_id


# --- PIN hashes stay out of Redis ----------------------------------------------------


def everything_in_redis(r) -> dict[str, object]:
    """Every key with its content, whatever its type."""
    readers = {"hash": r.hgetall, "string": r.get, "set": r.smembers,
               "zset": lambda k: r.zrange(k, 0, -1), "list": lambda k: r.lrange(k, 0, -1)}
    return {key: readers.get(r.type(key), lambda k: None)(key) for key in r.scan_iter()}


def assert_no_pin_hashes(desk) -> None:
    """No key holds a pin_hash field or any contact's stored hash."""
    with desk.session_factory() as db:
        stored = [c.pin_hash for c in db.scalars(select(Contact))]
    dump = everything_in_redis(desk.r)
    assert dump
    text = repr(dump)
    assert "pin_hash" not in text and "scrypt" not in text
    assert not any(h in text for h in stored)


def test_pin_hashes_never_reach_redis(phone, desk, lakeview, client):
    assert_no_pin_hashes(desk)
    cache_directory(desk.session_factory, desk.r, datetime.now(CHICAGO))
    assert_no_pin_hashes(desk)
    # Nor through a call that verifies by PIN (a cache miss re-reads the database).
    desk.r.delete(keys.contact("5001"))
    assert asks_case_number(pin_reply(client, stranger(1), "2468"))
    assert_no_pin_hashes(desk)


def test_a_cache_rebuild_removes_hashes_an_earlier_release_left(desk, lakeview):
    old = pins.hash_pin("2468")
    for key in (keys.contact("5001"), keys.contact_by_phone(PAT)):
        desk.r.hset(key, "pin_hash", old)
    desk.r.hset(keys.contact("7777"), mapping={"missing": "1", "pin_hash": old})
    cache_directory(desk.session_factory, desk.r, datetime.now(CHICAGO))
    for key in (keys.contact("5001"), keys.contact_by_phone(PAT)):
        cached = desk.r.hgetall(key)
        assert "pin_hash" not in cached
        assert (cached["id"], cached["name"], cached["phone"]) == ("5001", "Pat Lee", PAT)
    assert "pin_hash" not in desk.r.hgetall(keys.contact("7777"))
    assert_no_pin_hashes(desk)


# --- the pepper ------------------------------------------------------------------------


def stored_hash(desk, contact_id: str) -> str:
    """A contact's PIN hash as the database holds it."""
    with desk.session_factory() as db:
        return db.get(Contact, contact_id).pin_hash


def test_without_a_pepper_hashes_are_as_before(desk, lakeview):
    pat = stored_hash(desk, "5001")
    assert pat.startswith("scrypt$")
    assert pins.check_pin("2468", pat) and not pins.check_pin("2469", pat)


def test_old_hashes_verify_with_a_pepper_and_are_rehashed(
        desk, lakeview, settings, emulator, directory, make_app):
    old = stored_hash(desk, "5001")
    assert old.startswith("scrypt$")
    peppered = settings.with_changes(pin_pepper=PEPPER)
    app = make_app(peppered)
    app.testing = True
    client = app.test_client()
    assert asks_case_number(pin_reply(client, stranger(1), "2468"))
    new = stored_hash(desk, "5001")
    assert new.startswith("scrypt-hmac$")
    assert pins.check_pin("2468", new, PEPPER)
    assert not pins.check_pin("2468", new)  # useless without the pepper
    assert not pins.check_pin("2468", new, "another pepper")
    assert asks_case_number(pin_reply(client, stranger(2), "2468"))
    # A wrong PIN is still wrong, before and after the rehash.
    assert not asks_case_number(pin_reply(client, stranger(3), "2469", "5002"))
    # The whole call, through the Twilio-side driver.
    make_available(desk, "A7")
    result = Phone(app, emulator).call(stranger(4), "1 5002# 1357# 2024117#")
    assert result.outcome == "advisor"


def test_new_loads_are_peppered(desk, lakeview):
    directory.load_directory(
        {"contacts": [{"id": "5003", "name": "New Person", "district": "D100",
                       "phone": "+16125550103", "pin": "8080"},
                      {"id": "5002", "name": "Lee Park", "district": "D100",
                       "phone": "+16125550102", "pin": "1357"}]},
        desk.session_factory, desk.r, datetime.now(CHICAGO), pepper=PEPPER)
    for contact_id, pin in (("5003", "8080"), ("5002", "1357")):
        stored = stored_hash(desk, contact_id)
        assert stored.startswith("scrypt-hmac$"), contact_id
        assert pins.check_pin(pin, stored, PEPPER)
    # Pat was not in the document: her old hash is kept and still works.
    assert pins.check_pin("2468", stored_hash(desk, "5001"), PEPPER)
    assert_no_pin_hashes(desk)


def test_the_pepper_comes_from_the_environment_and_stays_out_of_repr(tmp_path):
    from config.settings import Settings

    settings = Settings.from_env({"CASELINE_PIN_PEPPER": PEPPER}, dotenv=tmp_path / ".env")
    assert settings.pin_pepper == PEPPER and PEPPER not in repr(settings)
    assert Settings.from_env({}, dotenv=tmp_path / ".env").pin_pepper is None
