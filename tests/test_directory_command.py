"""`caseline directory load FILE.json` as an operator runs it: the real command, its
exit status and what it prints, on the test's Redis and database."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.settings import PROJECT_ROOT
from directory.models import Advisor, Contact, District
from tests.conftest import caseline_command

GOOD: dict[str, Any] = {
    "districts": [{"id": "D100", "name": "Lakeview Public Schools", "hosted": True}],
    "contacts": [{"id": "5001", "name": "Pat Lee", "district": "D100",
                  "phone": "(612) 555-0101", "pin": "2468", "last_active": "2026-10-01"}],
    "advisors": [{"id": "A7", "name": "Jordan Smith", "phone": "+1 651 555 0199",
                  "teams": ["general", "hosting", "food-service"]}],
    "cases": [{"number": "2024117", "district": "D100", "owner": "A7",
               "status": "open", "priority": "medium", "product": "campus"}],
}


@pytest.fixture
def load(settings, tmp_path: Path):
    """Run `caseline directory load` on a file holding `content` (a document, or bytes)."""
    env = {**os.environ, "REDIS_URL": settings.redis_url or "",
           "DATABASE_URL": settings.database_url,
           "CASELINE_INSTANCE_PATH": str(tmp_path / "instance")}

    def run(content: dict[str, Any] | bytes, name: str = "directory.json"):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(json.dumps(content), encoding="utf-8")
        return subprocess.run(caseline_command("directory", "load", str(path)), env=env,
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    return run


def contacts(desk) -> list[tuple[str, str]]:
    """Every contact's id and phone."""
    with desk.session_factory() as db:
        return [(c.id, c.phone) for c in db.scalars(select(Contact).order_by(Contact.id))]


def test_a_contact_id_longer_than_a_caller_can_key_in_is_a_bad_record(load, desk):
    assert load(GOOD).returncode == 0
    long_id = "1234567890123456789012345"
    doc = {"contacts": [{**GOOD["contacts"][0], "id": long_id, "phone": "+16125550150"}]}
    done = load(doc, "long.json")
    assert done.returncode == 1, done.stderr
    assert (f'contacts[0] (id {long_id}): contact id "{long_id}" is longer than the 20 digits '
            "a caller can key in") in done.stderr
    assert contacts(desk) == [("5001", "+16125550101")]


def test_a_file_saved_with_a_utf8_byte_order_mark_loads(load, desk):
    # Excel's "CSV UTF-8" and PowerShell's Out-File begin a file with U+FEFF.
    done = load(b"\xef\xbb\xbf" + json.dumps(GOOD).encode("utf-8"))
    assert done.returncode == 0, done.stderr
    assert contacts(desk) == [("5001", "+16125550101")]


def test_the_summary_counts_bad_records_and_problems_apart(load, desk):
    assert load(GOOD).returncode == 0
    bad = {"contacts": [{**GOOD["contacts"][0], "phone": "555-0102", "pin": "12"},
                        {**GOOD["contacts"][0], "id": "5002", "phone": "+16125550102"}],
           "cases": [{**GOOD["cases"][0], "priority": "urgent", "product": "toaster"}]}
    done = load(bad, "bad.json")
    assert done.returncode == 1
    summary, *problems = done.stderr.splitlines()
    assert [p.split(":")[0].strip() for p in problems] == [
        "contacts[0] (id 5001)", "contacts[0] (id 5001)", "cases[0] (number 2024117)",
        "cases[0] (number 2024117)"]
    assert summary.endswith("bad.json: 2 bad record(s), 4 problem(s); nothing was changed:")
    assert contacts(desk) == [("5001", "+16125550101")]


@pytest.mark.parametrize("phone", ["+1 612 555 0108 ext. 12", "(612) 555-0108 x12",
                                   "612-555-0108;ext=12"])
def test_a_phone_with_an_extension_is_a_bad_record_not_loaded_without_it(load, desk, phone):
    # Neither a callback nor a caller-ID match can use an extension: dropping it
    # silently would dial, and identify, the switchboard instead.
    assert load(GOOD).returncode == 0
    doc = {"contacts": [{**GOOD["contacts"][0], "id": "5008", "phone": phone}],
           "advisors": [{**GOOD["advisors"][0], "id": "A8", "phone": phone}]}
    done = load(doc, "extension.json")
    assert done.returncode == 1, done.stdout
    for record in ("contacts[0] (id 5008)", "advisors[0] (id A8)"):
        assert (f'{record}: phone "{phone}" has an extension, which a callback or a '
                "caller-ID match cannot use") in done.stderr
    assert contacts(desk) == [("5001", "+16125550101")]


def problems_of(done) -> list[str]:
    """The problems `directory load` printed, one a line, without the summary."""
    _summary, *problems = done.stderr.splitlines()
    return [p.strip() for p in problems]


def test_a_repeated_id_does_not_hide_the_phone_clash_of_a_later_record(load, desk):
    # 7106 takes the first 7104's phone; the repeated 7104 has a phone of its own.
    doc = {"districts": GOOD["districts"],
           "contacts": [{**GOOD["contacts"][0], "id": "7104", "phone": "+16125557104"},
                        {**GOOD["contacts"][0], "id": "7104", "phone": "+16125557105"},
                        {**GOOD["contacts"][0], "id": "7106", "phone": "+16125557104"}]}
    done = load(doc, "repeats.json")
    assert done.returncode == 1, done.stderr
    problems = problems_of(done)
    assert 'contacts[1] (id 7104): id "7104" repeats contacts[0]' in problems
    assert ("contacts[2] (id 7106): phone +16125557104 is already contact 7104's"
            in problems), problems
    assert contacts(desk) == []


def test_one_run_names_every_bad_record_and_every_problem(load, desk):
    assert load(GOOD).returncode == 0
    doc = {
        "districts": [GOOD["districts"][0], {"id": "D200", "name": " "}],
        "contacts": [
            {**GOOD["contacts"][0], "id": "7104", "phone": "+16125557104"},
            {**GOOD["contacts"][0], "id": "7104", "phone": "+16125550101"},  # 5001's phone
            {**GOOD["contacts"][0], "id": "7106", "phone": "+16125557104", "pin": "1"},
            {**GOOD["contacts"][0], "id": "7107", "district": "D999",
             "phone": "+16125557107"},
            {"name": "No Id", "district": "D100", "phone": "+16125557104", "pin": "2468"},
        ],
        "advisors": [GOOD["advisors"][0], {**GOOD["advisors"][0], "teams": ["toasters"]}],
        "cases": [{**GOOD["cases"][0], "owner": "A99"},
                  {**GOOD["cases"][0], "district": "D999", "priority": "urgent"}],
    }
    done = load(doc, "everything.json")
    assert done.returncode == 1, done.stderr
    problems = problems_of(done)
    for expected in [
        'districts[1] (id D200): "name" must be a non-empty string',
        "contacts[0] (id 7104): phone +16125557104 is already contact 7106, contacts[4]'s",
        'contacts[1] (id 7104): id "7104" repeats contacts[0]',
        "contacts[1] (id 7104): phone +16125550101 is already contact 5001's",
        "contacts[2] (id 7106): phone +16125557104 is already contact 7104, contacts[4]'s",
        "contacts[2] (id 7106): pin must be 4 to 8 digits",
        'contacts[3] (id 7107): district "D999" does not exist',
        "contacts[4]: \"id\" is required",
        "contacts[4]: phone +16125557104 is already contact 7104, 7106's",
        'advisors[1] (id A7): id "A7" repeats advisors[0]',
        'cases[0] (number 2024117): owner "A99" is not an advisor',
        'cases[1] (number 2024117): number "2024117" repeats cases[0]',
        'cases[1] (number 2024117): district "D999" does not exist',
    ]:
        assert expected in problems, (expected, problems)
    assert any(p.startswith("advisors[1] (id A7): team \"toasters\"") for p in problems)
    assert any(p.startswith('cases[1] (number 2024117): priority "urgent"') for p in problems)
    assert done.stderr.splitlines()[0].endswith(
        f"everything.json: 9 bad record(s), {len(problems)} problem(s); nothing was changed:")
    assert contacts(desk) == [("5001", "+16125550101")]


def test_a_load_that_redis_refuses_changes_nothing_and_says_so(load, desk):
    # Redis read-only (a replica mid-failover): the load must not commit a directory
    # that calls, which read the cache, would not see.
    assert load(GOOD).returncode == 0
    moved = {**GOOD, "contacts": [{**GOOD["contacts"][0], "phone": "+16125550188"}]}
    desk.r.execute_command("REPLICAOF", "127.0.0.1", "1")
    try:
        done = load(moved, "moved.json")
    finally:
        desk.r.execute_command("REPLICAOF", "NO", "ONE")
    assert done.returncode == 1, done.stderr
    assert "Redis cannot be written" in done.stderr and "nothing was changed" in done.stderr
    assert contacts(desk) == [("5001", "+16125550101")]
    assert load(moved, "moved.json").returncode == 0  # Redis back: the same load goes in
    assert contacts(desk) == [("5001", "+16125550188")]


def advisors(desk) -> list[tuple[str, str]]:
    """Every advisor's id and phone."""
    with desk.session_factory() as db:
        return [(a.id, a.phone) for a in db.scalars(select(Advisor).order_by(Advisor.id))]


def test_two_advisors_with_one_phone_is_a_bad_record(load, desk):
    # Both would be "available": two callers claimed for them would both be dialed at
    # the one phone, the double-booking the ACD's atomic claim is there to prevent.
    doc = {**GOOD, "advisors": GOOD["advisors"] + [
        {"id": "A8", "name": "Sam Two", "phone": "(651) 555-0199", "teams": ["general"]}]}
    done = load(doc)
    assert done.returncode == 1, done.stdout
    assert "advisors[1] (id A8): phone +16515550199 is already advisor A7's" in problems_of(done)
    assert advisors(desk) == []
    # Against the database too: A7, loaded and not in the document, keeps its phone.
    assert load(GOOD).returncode == 0
    done = load({"advisors": [doc["advisors"][1]]}, "later.json")
    assert done.returncode == 1, done.stdout
    assert "advisors[0] (id A8): phone +16515550199 is already advisor A7's" in problems_of(done)
    assert advisors(desk) == [("A7", "+16515550199")]
    # One load may move A7 to a new phone and give A8 A7's old one.
    moved = {"advisors": [{**GOOD["advisors"][0], "phone": "+16515550150"},
                          doc["advisors"][1]]}
    done = load(moved, "moved.json")
    assert done.returncode == 0, done.stderr
    assert advisors(desk) == [("A7", "+16515550150"), ("A8", "+16515550199")]


@pytest.mark.parametrize(("number", "why"), [
    ("+1 900 555 0114", "is a premium-rate or shared-cost number"),
    ("+44 20 7946 0958", "is outside the US and Canada"),
])
def test_an_advisor_phone_the_line_must_never_dial_is_a_bad_record(load, desk, number, why):
    # The line dials an advisor's phone for every call routed to them: a 900 typo (for
    # 600) would bill the desk per minute. The same regions as callbacks and colleagues.
    doc = {**GOOD, "advisors": [{"id": "A14", "name": "Typo", "phone": number,
                                 "teams": ["general"]}], "cases": []}
    done = load(doc)
    assert done.returncode == 1, done.stdout
    assert (f'advisors[0] (id A14): phone "{number}" {why}: the line never dials it'
            in problems_of(done))
    assert advisors(desk) == []


@pytest.mark.parametrize("ident", ["A,7", "A 7"])
def test_an_advisor_id_with_a_comma_or_a_space_is_a_bad_record(load, desk, ident):
    # The call log keeps "advisors tried" comma-joined and the survey's figures
    # space-joined: "A,7" would come back as advisors "A" and "7".
    doc = {**GOOD, "advisors": [{**GOOD["advisors"][0], "id": ident}],
           "cases": [{**GOOD["cases"][0], "owner": ident}]}
    done = load(doc)
    assert done.returncode == 1, done.stdout
    assert (f'advisors[0] (id {ident}): advisor id "{ident}" must be 1 to 64 letters, '
            "digits, '_', '.' or '-' (no commas or spaces)") in problems_of(done)
    assert advisors(desk) == []


def test_a_record_that_names_a_field_twice_is_a_bad_record(load, desk):
    # json.loads keeps the last silently: "hosted": true, "hosted": false would turn a
    # hosted district's night outage line off with exit 0.
    assert load(GOOD).returncode == 0
    text = ('{"districts": [{"id": "D100", "name": "Lakeview Public Schools", '
            '"hosted": true, "hosted": false}], "cases": [], "cases": []}')
    done = load(text.encode("utf-8"), "twice.json")
    assert done.returncode == 1, done.stdout
    problems = problems_of(done)
    assert 'section "cases" is named more than once' in problems
    assert 'districts[0] (id D100): field "hosted" is named more than once' in problems
    with desk.session_factory() as db:
        assert db.get(District, "D100").hosted is True
