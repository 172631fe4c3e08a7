"""A caller who enters nothing is told so and asked again, never told that what they
entered was wrong: silence at the case number is not a case "not found", silence at
the PIN is not a wrong PIN (and never locks anyone out). PRODUCT.md: three failures
at the case number still reach the general team; three failed verifications lock a
number, and silence verifies nothing."""

from __future__ import annotations

from config.prompts import Prompts
from tests.conftest import make_available
from tests.test_desk_rules import STRANGER, at

PAT = "+16125550101"  # Lakeview's contact, identified by attested caller ID


def call(phone, caller: str, entries: list[str], **options):
    """A call whose questions are answered by `entries` ("" is silence: the
    `<Gather>` times out and falls through to its `<Redirect>`)."""
    placed = phone.caller(caller, "", **options)
    placed.keys = list(entries)
    return placed.run()


def test_silence_at_the_case_number_says_nothing_was_entered_and_asks_again(
        phone, desk, lakeview):
    make_available(desk, "A7")
    p = Prompts()
    result = call(phone, PAT, ["1", "", "2024117#"])
    heard = result.heard()
    assert p.text("case.no_case_number") in heard
    assert p.text("case.not_found") not in heard
    assert heard.count(p.text("case.ask")) == 2
    assert result.dialed == ["+16515550199"]  # the second try found Pat's case


def test_three_silences_at_the_case_number_reach_the_general_team_without_not_found(
        phone, desk, lakeview):
    make_available(desk, "A2")
    p = Prompts()
    result = call(phone, PAT, ["1", "", "", ""])
    heard = result.heard()
    assert p.text("case.not_found") not in heard
    assert heard.count(p.text("case.no_case_number")) == 3
    assert p.text("case.to_general") in heard
    assert result.dialed == ["+16515550102"]


def test_a_wrong_number_then_silence_says_each_for_what_it_was(phone, desk, lakeview):
    make_available(desk, "A7")
    p = Prompts()
    heard = call(phone, PAT, ["1", "999#", "", "2024117#"]).heard()
    assert heard.count(p.text("case.not_found")) == 1
    assert heard.count(p.text("case.no_case_number")) == 1


def test_silence_at_the_case_number_after_hours_says_nothing_was_entered(
        phone, desk, lakeview):
    p = Prompts()
    with at(2026, 11, 24, 20):
        result = call(phone, PAT, ["1", "", "", ""])
    heard = result.heard()
    assert result.outcome == "voicemail"
    assert p.text("case.not_found") not in heard
    assert heard.count(p.text("case.no_case_number")) == 3


def test_an_operators_prompts_file_without_the_new_key_says_the_shipped_one(
        phone, app, desk, lakeview, tmp_path):
    """A custom prompts file from before this release lacks `case.no_case_number`: it
    still loads, and the caller hears the shipped sentence."""
    shipped = Prompts().path.read_text()
    custom = tmp_path / "our-prompts.toml"
    custom.write_text("".join(line for line in shipped.splitlines(keepends=True)
                              if not line.startswith("no_case_number")))
    app.extensions["caseline.prompts"] = Prompts(custom)
    make_available(desk, "A7")
    heard = call(phone, PAT, ["1", "", "2024117#"]).heard()
    assert Prompts().text("case.no_case_number") in heard


def test_silence_at_the_pin_asks_the_pin_again_and_is_no_failed_verification(
        phone, desk, lakeview):
    """A caller who says nothing at the PIN three times on three calls is not locked
    out (three failed verifications would lock the number): the fourth call with the
    right PIN goes through."""
    make_available(desk, "A7")
    p = Prompts()
    first = call(phone, STRANGER, ["1", "5001#", "", "2468#", "2024117#"])
    heard = first.heard()
    assert p.text("auth.no_pin") in heard
    assert p.text("auth.failed") not in heard
    assert first.dialed == ["+16515550199"]
    for _ in range(3):
        silent = call(phone, STRANGER, ["1", "5001#", "", "", ""])
        assert silent.outcome == "hangup" and silent.dialed == []
        assert p.text("auth.failed") not in silent.heard()
        assert p.text("auth.locked") not in silent.heard()
        assert silent.heard().count(p.text("auth.no_pin")) == 2
    make_available(desk, "A7")
    again = call(phone, STRANGER, ["1", "5001#", "2468#", "2024117#"])
    assert again.dialed == ["+16515550199"]


def test_silence_at_the_contact_id_says_nothing_was_entered(phone, desk, lakeview):
    make_available(desk, "A7")
    p = Prompts()
    result = call(phone, STRANGER, ["1", "", "5001#", "2468#", "2024117#"])
    assert p.text("auth.no_contact_id") in result.heard()
    assert result.dialed == ["+16515550199"]
