"""Operators read and replace the posted maintenance windows through the API;
every web process, and the next outage caller, hears the new ones."""

from __future__ import annotations

from datetime import datetime

import pytest
import time_machine
from sqlalchemy import select

from config.hours import CENTRAL, OUTAGE_RISK, MaintenanceWindow, maintenance_notice
from directory import keys
from directory.models import AuditEntry
from ivr import create_app
from tests.conftest import API_TOKEN, close_app, make_available

# Posted windows are stored in the database: on both databases.
pytestmark = pytest.mark.databases

PAT = "+16125550101"
API = {"Authorization": f"Bearer {API_TOKEN}"}
SATURDAY_NIGHT = {"start": "2026-12-12T00:00:00-06:00", "end": "2026-12-12T04:00:00-06:00",
                  "outage": True}
SATURDAY_DAY = {"start": "2026-12-12T04:00:00-06:00", "end": "2026-12-12T18:00:00-06:00",
                "outage": False}


@pytest.fixture
def lakeview(directory):
    """A hosted district, Pat Lee (active through the dates travelled to), a hosting advisor."""
    directory.district()
    directory.contact(last_active="2026-12-01")
    directory.advisor("A6", ["hosting"], phone="+16515550106")
    directory.load()


def at(year: int, month: int, day: int, hour: int):
    """Travel to a wall-clock time in Chicago (the clock keeps ticking)."""
    return time_machine.travel(datetime(year, month, day, hour, tzinfo=CENTRAL), tick=True)


def audit(desk) -> list[AuditEntry]:
    """The audit entries, oldest first."""
    with desk.session_factory() as db:
        return list(db.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_the_files_windows_are_posted_until_replaced(client):
    response = client.get("/api/maintenance", headers=API)
    assert response.status_code == 200
    windows = response.get_json()
    assert windows[0] == {"start": "2026-12-05T00:00:00-06:00",
                          "end": "2026-12-05T06:00:00-06:00", "outage": True}
    assert windows[1]["outage"] is False
    assert client.get("/api/maintenance").status_code == 401


def test_a_window_not_on_a_saturday_is_refused_and_nothing_changes(client, desk):
    before = client.get("/api/maintenance", headers=API).get_json()
    friday = {"start": "2026-12-11T00:00:00-06:00", "end": "2026-12-11T06:00:00-06:00",
              "outage": True}
    response = client.put("/api/maintenance", json=[SATURDAY_NIGHT, friday], headers=API)
    assert response.status_code == 422
    [problem] = response.get_json()["problems"]
    assert problem.startswith("windows[1] (2026-12-11T00:00:00-06:00)")
    assert "Saturday" in problem
    assert client.get("/api/maintenance", headers=API).get_json() == before
    assert audit(desk) == []


@pytest.mark.parametrize("body", [
    {"not": "a list"},
    [{"start": "2026-12-12T00:00:00", "end": "2026-12-12T06:00:00-06:00", "outage": True}],
    [{"start": "2026-12-12T06:00:00-06:00", "end": "2026-12-12T05:00:00-06:00",
      "outage": True}],
    [{**SATURDAY_NIGHT, "outage": "yes"}],
    [{**SATURDAY_NIGHT, "end": "2026-12-13T01:00:00-06:00"}],
])
def test_malformed_windows_are_refused(client, body):
    before = client.get("/api/maintenance", headers=API).get_json()
    assert client.put("/api/maintenance", json=body, headers=API).status_code == 422
    assert client.get("/api/maintenance", headers=API).get_json() == before


def test_a_posted_window_is_what_the_next_outage_caller_hears(client, phone, desk, lakeview):
    window = MaintenanceWindow(datetime(2026, 12, 12, 0, tzinfo=CENTRAL),
                               datetime(2026, 12, 12, 4, tzinfo=CENTRAL), OUTAGE_RISK)
    moment = datetime(2026, 12, 12, 2, tzinfo=CENTRAL)
    notice = maintenance_notice(moment, [window])
    assert notice is not None
    with at(2026, 12, 12, 2):
        make_available(desk, "A6")
        assert notice not in phone.call(PAT, "8").heard()  # the file posts no Dec 12 window
    response = client.put("/api/maintenance", json=[SATURDAY_NIGHT, SATURDAY_DAY], headers=API)
    assert response.status_code == 200
    assert response.get_json() == [SATURDAY_NIGHT, SATURDAY_DAY]
    with at(2026, 12, 12, 2):
        make_available(desk, "A6")
        result = phone.call(PAT, "8")
    assert notice in result.heard()
    assert result.outcome == "advisor"
    [entry] = audit(desk)
    assert (entry.actor, entry.kind, entry.action) == ("api", "maintenance", "replaced")


def test_every_web_process_sees_the_replacement(client, desk, settings):
    client.put("/api/maintenance", json=[SATURDAY_NIGHT], headers=API)
    other_app = create_app(settings)  # another gunicorn worker, say
    other = other_app.test_client()
    try:
        assert other.get("/api/maintenance", headers=API).get_json() == [SATURDAY_NIGHT]
        desk.r.delete(keys.posted_maintenance())  # Redis lost it: the database has it
        assert other.get("/api/maintenance", headers=API).get_json() == [SATURDAY_NIGHT]
        client.put("/api/maintenance", json=[], headers=API)
        assert other.get("/api/maintenance", headers=API).get_json() == []
    finally:
        close_app(other_app)
