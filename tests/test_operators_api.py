"""The operators change the directory one record at a time through the API, and
the very next call routes by it; every change is audited, PINs never."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from config.prompts import Prompts
from directory import keys
from directory.models import Advisor, AuditEntry, Contact
from tests.conftest import API_TOKEN, make_available

# Cases, contacts and the audit are written through the API: on both databases.
pytestmark = pytest.mark.databases

PAT = "+16125550101"
OWNER, NEW_OWNER = "A7", "A2"


@pytest.fixture
def lakeview(directory):
    """Lakeview with Pat Lee and two general advisors; no cases yet."""
    directory.district()
    directory.contact()
    numbers = {
        OWNER: directory.advisor(OWNER, ["general", "hosting"], phone="+16515550199"),
        NEW_OWNER: directory.advisor(NEW_OWNER, ["general"], phone="+16515550102"),
    }
    directory.load()
    return numbers


def api(client, method: str, path: str, body: object = None):
    """Call the operators' API with the bearer token."""
    return client.open(path, method=method, json=body,
                       headers={"Authorization": f"Bearer {API_TOKEN}"})


CASE = {"district": "D100", "owner": OWNER, "status": "open", "priority": "medium",
        "product": "campus"}


def audit(desk) -> list[dict]:
    """The audit table, oldest first."""
    with desk.session_factory() as db:
        return [e.to_dict() for e in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_case_put_by_api_routes_the_next_call_to_its_owner(client, phone, desk, lakeview):
    make_available(desk, NEW_OWNER, OWNER)  # the new owner idles longest
    response = api(client, "PUT", "/api/cases/2024555", CASE)
    assert response.status_code == 201
    assert response.get_json()["owner"] == OWNER
    result = phone.call(PAT, "1 2024555#")
    assert result.dialed == [lakeview[OWNER]]
    assert result.answered_by == lakeview[OWNER]
    [entry] = audit(desk)
    assert (entry["actor"], entry["kind"], entry["record_id"], entry["action"]) == (
        "api", "case", "2024555", "created")
    assert entry["changes"]["owner"] == {"old": None, "new": OWNER}
    assert entry["at"].endswith("+00:00")


def test_owner_changed_by_api_gets_the_next_call(client, phone, desk, lakeview):
    assert api(client, "PUT", "/api/cases/2024555", CASE).status_code == 201
    make_available(desk, OWNER, NEW_OWNER)
    assert phone.call(PAT, "1 2024555#").dialed == [lakeview[OWNER]]
    make_available(desk, OWNER, NEW_OWNER)
    response = api(client, "PUT", "/api/cases/2024555", {**CASE, "owner": NEW_OWNER})
    assert response.status_code == 200
    assert response.get_json()["changed"] == ["owner"]
    assert phone.call(PAT, "1 2024555#").dialed == [lakeview[NEW_OWNER]]
    assert audit(desk)[-1]["changes"] == {"owner": {"old": OWNER, "new": NEW_OWNER}}


@pytest.mark.parametrize(("field", "value"), [
    ("owner", "A99"), ("status", "lost"), ("priority", "urgent"), ("product", "toaster"),
    ("district", "D404"),
])
def test_invalid_case_body_is_refused_and_changes_nothing(client, phone, desk, lakeview,
                                                          field, value):
    api(client, "PUT", "/api/cases/2024555", CASE)
    before = audit(desk)
    make_available(desk, NEW_OWNER, OWNER)
    response = api(client, "PUT", "/api/cases/2024555", {**CASE, field: value, "owner": (
        value if field == "owner" else NEW_OWNER)})
    assert response.status_code == 422
    assert field in response.get_json()["error"]
    assert response.get_json()["error"].startswith("case 2024555:")
    assert audit(desk) == before
    assert phone.call(PAT, "1 2024555#").dialed == [lakeview[OWNER]]


def test_a_body_that_names_another_case_is_refused(client, desk, lakeview):
    response = api(client, "PUT", "/api/cases/2024555", {**CASE, "number": "2024556"})
    assert response.status_code == 422
    assert api(client, "DELETE", "/api/cases/2024555").status_code == 404
    assert audit(desk) == []


def test_closed_case_is_told_closed_and_audited(client, phone, desk, lakeview):
    api(client, "PUT", "/api/cases/2024555", CASE)
    make_available(desk, OWNER)
    assert Prompts().text("case.closed") not in phone.call(PAT, "1 2024555#").heard()
    response = api(client, "DELETE", "/api/cases/2024555")
    assert response.status_code == 200
    assert response.get_json()["status"] == "closed"
    make_available(desk, OWNER)
    assert Prompts().text("case.closed") in phone.call(PAT, "1 2024555#").heard()
    assert audit(desk)[-1]["action"] == "closed"
    assert audit(desk)[-1]["changes"] == {"status": {"old": "open", "new": "closed"}}


def test_deactivated_contact_is_no_longer_identified(client, phone, desk, lakeview):
    api(client, "PUT", "/api/cases/2024555", CASE)
    make_available(desk, OWNER)
    assert phone.call(PAT, "1 2024555#").dialed == [lakeview[OWNER]]
    make_available(desk, OWNER)
    response = api(client, "DELETE", "/api/contacts/5001")
    assert response.status_code == 200 and response.get_json()["deactivated"] is True
    # Her number no longer identifies her: "2024555" is now taken as a contact ID.
    assert phone.call(PAT, "1 2024555#").dialed == []
    # Nor do her contact ID and PIN.
    assert phone.call(PAT, "1 5001# 2468# 2024555#").dialed == []
    assert audit(desk)[-1]["changes"] == {"deactivated": {"old": False, "new": True}}
    assert api(client, "DELETE", "/api/contacts/9999").status_code == 404


def test_contact_put_hashes_the_pin_and_audits_no_pin(client, phone, desk, lakeview):
    body = {"name": "Sam Ortiz", "district": "D100", "phone": "(612) 555-0177", "pin": "97531"}
    response = api(client, "PUT", "/api/contacts/5002", body)
    assert response.status_code == 201
    assert "pin" not in response.get_json()
    api(client, "PUT", "/api/cases/2024555", CASE)
    make_available(desk, OWNER)
    # A new contact is identified by PIN on the very next call (from an unknown phone).
    result = phone.call("+16125550999", "1 5002# 97531# 2024555#")
    assert result.dialed == [lakeview[OWNER]]
    response = api(client, "PUT", "/api/contacts/5002", {**body, "pin": "86420"})
    assert response.get_json()["changed"] == ["pin"]
    with desk.session_factory() as db:
        stored = db.get(Contact, "5002").pin_hash
    for entry in audit(desk):
        assert "97531" not in str(entry) and "86420" not in str(entry)
        assert stored not in str(entry)
    assert audit(desk)[-1]["changes"] == {"pin": {"changed": True}}
    contact_keys = list(desk.r.scan_iter(keys.contact("*")))
    assert contact_keys
    for key in contact_keys:
        assert stored not in desk.r.hvals(key)


def test_a_contact_put_names_every_problem_the_phone_clash_included(client, desk, lakeview):
    # The PUT shares `directory load`'s validation: every problem of the body at once.
    response = api(client, "PUT", "/api/contacts/5002",
                   {"name": "Sam", "district": "D999", "phone": "+16125550101", "pin": "12"})
    assert response.status_code == 422
    problems = response.get_json()["problems"]
    assert len(problems) == 3, problems
    assert any("D999" in p for p in problems) and any("pin" in p for p in problems)
    assert any("+16125550101" in p and "5001" in p for p in problems)
    with desk.session_factory() as db:
        assert db.get(Contact, "5002") is None
    assert audit(desk) == []


def test_a_contact_put_naming_a_field_twice_is_refused_naming_it(client, desk, lakeview):
    # As `directory load`: JSON parsers keep the last of a repeated field silently.
    body = ('{"name": "Sam", "district": "D100", "phone": "+16125550177", '
            '"pin": "2468", "pin": "1357"}')
    response = client.put("/api/contacts/5002", data=body, content_type="application/json",
                          headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 422, response.data
    assert any('"pin" is named more than once' in p
               for p in response.get_json()["problems"]), response.get_json()
    with desk.session_factory() as db:
        assert db.get(Contact, "5002") is None
    assert audit(desk) == []


def test_invalid_contact_body_names_the_field(client, desk, lakeview):
    response = api(client, "PUT", "/api/contacts/5002",
                   {"name": "Sam", "district": "D100", "phone": "555-0177", "pin": "12"})
    assert response.status_code == 422
    problems = response.get_json()["problems"]
    assert any("phone" in p for p in problems) and any("pin" in p for p in problems)
    assert audit(desk) == []
    with desk.session_factory() as db:
        assert db.get(Contact, "5002") is None


def test_a_contact_id_longer_than_the_phone_takes_is_refused(client, desk, lakeview):
    # A caller keys at most 20 digits of contact ID: a longer one could never verify.
    long_id = "1" * 21
    body = {"name": "Sam", "district": "D100", "phone": "(612) 555-0177", "pin": "1357"}
    response = api(client, "PUT", f"/api/contacts/{long_id}", body)
    assert response.status_code == 422
    assert response.get_json()["problems"] == [
        f'contact {long_id}: contact id "{long_id}" is longer than the 20 digits a caller '
        "can key in"]
    assert audit(desk) == []
    with desk.session_factory() as db:
        assert db.get(Contact, long_id) is None
    assert api(client, "PUT", f"/api/contacts/{long_id[:20]}", body).status_code == 201


def test_api_changes_need_the_token(client, lakeview):
    assert client.put("/api/cases/2024555", json=CASE).status_code == 401
    assert client.delete("/api/contacts/5001").status_code == 401


def test_a_contact_whose_name_holds_a_nul_is_refused_with_422_on_either_database(
        client, desk, lakeview):
    response = api(client, "PUT", "/api/contacts/5077",
                   {"name": "Robin\u0000Fox", "district": "D100", "phone": "(612) 555-0177",
                    "pin": "1357"})
    assert response.status_code == 422
    assert 'contact 5077: "name" contains a control character (U+0000)' in str(
        response.get_json())
    with desk.session_factory() as db:
        assert db.get(Contact, "5077") is None


def test_an_announcement_set_with_anything_but_true_or_false_is_refused(client, desk):
    from routing.announcement import active_announcement

    assert api(client, "PUT", "/api/announcement",
               {"text": "Email is down", "active": False}).status_code == 200
    response = api(client, "PUT", "/api/announcement", {"text": "Email is down",
                                                        "active": "false"})
    assert response.status_code == 400
    assert active_announcement(desk.r) is None  # still off: callers hear nothing


def test_an_announcement_turned_off_keeps_its_text_to_be_turned_on_again(
        client, phone, lakeview):
    incident = "Email is down for some districts."
    api(client, "PUT", "/api/announcement", {"text": incident, "active": True})
    off = api(client, "PUT", "/api/announcement", {"active": False})
    assert off.status_code == 200
    assert off.get_json() == {"text": incident, "active": False}
    assert api(client, "GET", "/api/announcement").get_json() == {"text": incident,
                                                                  "active": False}
    assert incident not in phone.call(PAT, "").heard()  # off: callers hear nothing
    on = api(client, "PUT", "/api/announcement", {"active": True})
    assert on.get_json() == {"text": incident, "active": True}
    assert api(client, "GET", "/api/announcement").get_json() == {"text": incident,
                                                                  "active": True}
    assert incident in phone.call(PAT, "").heard()
    # A text given replaces it, an empty one included.
    assert api(client, "PUT", "/api/announcement",
               {"text": "", "active": False}).get_json() == {"text": "", "active": False}


def test_a_body_nested_deeper_than_json_goes_is_a_400(client):
    body = "[" * 100_000 + "]" * 100_000
    response = client.put("/api/announcement", data=body, content_type="application/json",
                          headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 400


def test_a_maintenance_body_nested_deeper_than_json_goes_is_refused_not_a_500(client):
    body = "[" * 100_000 + "]" * 100_000
    response = client.put("/api/maintenance", data=body, content_type="application/json",
                          headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert 400 <= response.status_code < 500


def test_a_contact_put_back_to_an_older_date_keeps_their_verified_call(client, phone, desk,
                                                                       lakeview):
    """Pat calls (verified by caller ID); the operator then PUTs Pat with an older
    last_active: the date is the operator's, the call still counts."""
    make_available(desk, OWNER)
    api(client, "PUT", "/api/cases/2024555", CASE)
    phone.call(PAT, "1 2024555#")
    from tests.conftest import run_jobs

    run_jobs(desk)
    response = api(client, "PUT", "/api/contacts/5001",
                   {"name": "Pat Lee", "district": "D100", "phone": PAT,
                    "last_active": "2026-01-05"})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["last_active"], body["last_verified_call"]) == ("2026-01-05", "2026-11-24")
    with desk.session_factory() as db:
        assert str(db.get(Contact, "5001").last_activity) == "2026-11-24"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/no-such-thing", 404),
    ("GET", "/api/contacts/5001", 405),  # only PUT and DELETE there
    ("POST", "/api/advisors", 405),
])
def test_an_unknown_api_path_or_method_answers_json(client, method, path, status):
    response = api(client, method, path)
    assert response.status_code == status
    assert response.is_json and response.get_json()["error"]


def test_an_advisor_whose_id_holds_a_percent_sign_takes_their_cases_calls(
        directory, client, phone, desk):
    """An advisor id loaded before `directory load` limited ids to letters, digits, '_',
    '.' and '-' ("100%", kept in the database) still works: every presence script fills
    the id into a key with Lua's gsub, where '%' in a string replacement is special:
    the advisor could never be made available (404), and a caller on their case never
    rang them."""
    directory.district()
    directory.contact()
    directory.advisor("A2", ["general"], phone="+16515550102")
    directory.load()
    with desk.session_factory() as db, db.begin():
        db.add(Advisor(id="100%", name="Percy Cent", phone="+16515550177", teams=["general"]))
    directory.case("2024117", owner="100%")
    directory.load()
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    for advisor_id in ("100%25", "A2"):
        answer = client.put(f"/api/advisors/{advisor_id}/status", headers=api,
                            json={"status": "available"})
        assert answer.status_code == 200, answer.data

    call = phone.call(PAT, "1 2024117#")

    assert call.answered_by == "+16515550177", call.summary()
    # The call's end freed them (wrap-up 0 here): available for the next caller.
    advisors = {a["id"]: a["status"] for a in client.get("/api/advisors", headers=api).json}
    assert advisors["100%"] == "available"
