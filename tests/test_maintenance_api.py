"""Operators read and replace the posted maintenance windows through the API;
every web process, and the next outage caller, hears the new ones."""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from config.hours import CENTRAL, NO_OUTAGE, OUTAGE_RISK, MaintenanceWindow, maintenance_notice
from directory import keys
from directory.accounts import set_password
from directory.models import AuditEntry, PostedMaintenance
from ivr import create_app
from routing import maintenance
from tests.conftest import API_TOKEN, close_app, make_available

# Posted windows are stored in the database: on both databases.
pytestmark = pytest.mark.databases

PAT = "+16125550101"
PASSWORD = "staple of the wallboard"
API = {"Authorization": f"Bearer {API_TOKEN}"}
SATURDAY_NIGHT = {"start": "2026-12-12T00:00:00-06:00", "end": "2026-12-12T04:00:00-06:00",
                  "outage": True, "note": ""}
SATURDAY_DAY = {"start": "2026-12-12T04:00:00-06:00", "end": "2026-12-12T18:00:00-06:00",
                "outage": False, "note": ""}


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


@pytest.fixture
def wallboard_of(directory, desk):
    """Sign a test client in as S1, a supervisor; the client and its wallboard's CSRF token."""
    directory.advisor("S1", ["general"])
    directory.load()
    set_password(desk.session_factory, desk.r, "S1", PASSWORD, supervisor=True)

    def sign_in(client):
        for path in ("/console/sign-in", "/console/wallboard"):
            page = client.get(path).get_data(as_text=True)
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            if path.endswith("sign-in"):
                client.post(path, data={"csrf_token": token, "advisor": "S1",
                                        "password": PASSWORD})
        return client, token

    return sign_in


def audit(desk) -> list[AuditEntry]:
    """The audit entries, oldest first."""
    with desk.session_factory() as db:
        return list(db.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_the_files_windows_are_posted_until_replaced(client):
    response = client.get("/api/maintenance", headers=API)
    assert response.status_code == 200
    windows = response.get_json()
    assert {k: windows[0][k] for k in ("start", "end", "outage")} == {
        "start": "2026-12-05T00:00:00-06:00", "end": "2026-12-05T06:00:00-06:00",
        "outage": True}
    assert windows[1]["outage"] is False
    assert client.get("/api/maintenance").status_code == 401


def test_what_get_shows_put_back_changes_nothing_notes_included(client):
    posted = [{**SATURDAY_NIGHT, "note": "release 26.12: districts may be offline"},
              SATURDAY_DAY]
    assert client.put("/api/maintenance", json=posted, headers=API).status_code == 200
    shown = client.get("/api/maintenance", headers=API).get_json()
    assert shown == posted
    assert client.put("/api/maintenance", json=shown, headers=API).status_code == 200
    assert client.get("/api/maintenance", headers=API).get_json() == posted


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


SATURDAY_5_DAY = {"start": "2026-12-05T06:00:00-06:00", "end": "2026-12-05T18:00:00-06:00",
                  "outage": False, "note": ""}


def test_an_outage_caller_hears_of_a_posted_no_outage_window_then_reaches_hosting(
        client, phone, desk, lakeview):
    """PRODUCT.md: callers to option 8 during a posted window hear about it, whatever its
    kind; a window that interrupts nothing changes nothing else: Pat reaches hosting."""
    assert client.put("/api/maintenance", json=[SATURDAY_5_DAY], headers=API).status_code == 200
    window = MaintenanceWindow(datetime.fromisoformat(SATURDAY_5_DAY["start"]),
                               datetime.fromisoformat(SATURDAY_5_DAY["end"]), NO_OUTAGE)
    moment = datetime(2026, 12, 5, 10, tzinfo=CENTRAL)
    notice = maintenance_notice(moment, [window])
    assert notice is not None
    # Its end, as a caller hears a time: ending two hours earlier, it says so differently.
    earlier = MaintenanceWindow(window.start, window.end - timedelta(hours=2), NO_OUTAGE)
    assert maintenance_notice(moment, [earlier]) not in (None, notice)
    with at(2026, 12, 5, 10):
        make_available(desk, "A6")
        result = phone.call(PAT, "8")
    assert notice in result.heard()
    assert result.outcome == "advisor" and result.answered_by == "+16515550106"


def test_an_outage_caller_the_night_does_not_route_hears_of_the_window_too(
        client, phone, desk, directory):
    """A contact of a district not hosted reports an outage during a posted window at
    night: they hear of the window (PRODUCT.md: callers to option 8 during a posted
    window hear about it), then how after-hours support works, and leave a message."""
    directory.district("D200", "Hillside Schools", hosted=False)
    directory.contact("5002", "+16125550102", "D200", last_active="2026-12-01")
    directory.load()
    assert client.put("/api/maintenance", json=[SATURDAY_NIGHT], headers=API).status_code == 200
    window = MaintenanceWindow(datetime.fromisoformat(SATURDAY_NIGHT["start"]),
                               datetime.fromisoformat(SATURDAY_NIGHT["end"]), OUTAGE_RISK)
    notice = maintenance_notice(datetime(2026, 12, 12, 2, tzinfo=CENTRAL), [window])
    assert notice is not None
    with at(2026, 12, 12, 2):
        result = phone.call("+16125550102", "8")
    assert notice in result.heard()
    assert result.outcome == "voicemail"


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


def saturdays(count: int, first: str = "2027-09-04") -> list[date]:
    """`count` Saturdays a week apart from `first` (past the file's windows)."""
    start = date.fromisoformat(first)
    return [start + timedelta(days=7 * i) for i in range(count)]


def at_once(count: int, work) -> list[object]:
    """Run `work(i)` in `count` threads let go together; what each returned or raised."""
    barrier = threading.Barrier(count)
    outcomes: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_windows_posted_at_the_same_moment_are_all_kept(app, desk, wallboard_of):
    """Supervisors post eight different Saturdays at once, from wallboards served by
    the same line: every one is told "posted" and every one is kept (none lost to
    another's write, none refused by a clash over the first post)."""
    app.extensions["caseline.maintenance"] = []
    days = saturdays(8)
    boards = [wallboard_of(app.test_client()) for _ in days]

    def post(i: int) -> int:
        client, token = boards[i]
        return client.post("/console/maintenance", data={
            "csrf_token": token, "date": days[i].isoformat(), "start": "00:00",
            "end": "06:00", "outage": "1", "note": f"window {i}"}).status_code

    assert at_once(len(days), post) == [302] * len(days)
    kept = app.test_client().get("/api/maintenance", headers=API).get_json()
    assert [w["start"][:10] for w in kept] == [d.isoformat() for d in days]
    with desk.session_factory() as db:  # the database, not just the cache
        row = db.get(PostedMaintenance, 1)
        assert sorted(w["note"] for w in row.windows) == sorted(f"window {i}"
                                                                for i in range(8))


def test_windows_posted_and_withdrawn_at_the_same_moment_each_take_effect(app, desk):
    """Four windows withdrawn while four others are posted, all at once (the operators'
    API for the posts): the four posted stay, the four withdrawn go, and the audit
    holds one entry per change, each starting from the one before."""
    app.extensions["caseline.maintenance"] = []
    old, new = saturdays(4), saturdays(4, first="2027-11-06")
    initial = [maintenance.window_from_form(d.isoformat(), "00:00", "06:00", True, "old")
               for d in old]
    maintenance.replace_windows(desk, initial, [], datetime.now(UTC), actor="api")

    def change(i: int) -> None:
        if i % 2:
            maintenance.withdraw_window(desk, initial[i // 2]["start"], [],
                                        datetime.now(UTC), actor="console:S1")
        else:
            item = maintenance.window_from_form(new[i // 2].isoformat(), "00:00", "06:00",
                                                True, "new")
            maintenance.post_window(desk, item, [], datetime.now(UTC), actor="console:S2")

    assert at_once(8, change) == [None] * 8
    kept = app.test_client().get("/api/maintenance", headers=API).get_json()
    assert [w["start"][:10] for w in kept] == [d.isoformat() for d in new]
    entries = audit(desk)
    assert len(entries) == 9
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.changes["windows"]["old"] == before.changes["windows"]["new"]
