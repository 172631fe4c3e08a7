"""Parents and students who found the toll-free number (the family portal bears the
product's name): the line says whom it serves and lets them go with one key,
without waiting in a queue for a desk that cannot help them."""

from __future__ import annotations

from directory.models import CallLog
from tests.conftest import API_TOKEN, run_jobs
from tests.test_real_world import PAT, STRANGER
from tests.webhooks import post

API = {"Authorization": f"Bearer {API_TOKEN}"}


def _said(root) -> str:
    return " ".join(s.text or "" for s in root.iter("Say"))


def test_a_parent_presses_0_hears_to_call_their_school_and_the_call_ends_counted(
        desk, directory, client):
    directory.district()
    directory.contact()
    directory.advisor("A2", ["general"])
    directory.load()
    welcome = post(client, "/voice/incoming", {"CallSid": "CA-parent", "From": STRANGER,
                                               "To": "+18005550100", "CallStatus": "ringing"})
    assert "district staff" in _said(welcome) and "press 0" in _said(welcome)
    goodbye = post(client, "/voice/menu", {"CallSid": "CA-parent", "Digits": "0"})
    assert "school" in _said(goodbye) and goodbye.find("Hangup") is not None
    assert goodbye.find("Enqueue") is None and goodbye.find("Dial") is None
    post(client, "/voice/status", {"CallSid": "CA-parent", "CallStatus": "completed",
                                   "CallDuration": "20", "From": STRANGER})
    run_jobs(desk)
    with desk.session_factory() as db:
        log = db.query(CallLog).filter_by(call_sid="CA-parent").one()
        assert (log.status, log.menu_path) == ("family", "0")
    stats = client.get("/api/stats", headers=API).get_json()
    assert stats and all(team["families_today"] == 1 for team in stats.values())


def test_a_contact_greeted_by_name_is_not_offered_the_families_key(desk, directory, client):
    directory.district()
    directory.contact()
    directory.load()
    welcome = post(client, "/voice/incoming", {"CallSid": "CA-pat", "From": PAT,
                                               "To": "+18005550100", "CallStatus": "ringing",
                                               "StirVerstat": "TN-Validation-Passed-A"})
    assert "press 0" not in _said(welcome)
    # 0 is not one of their options: asked again, the call goes on.
    again = post(client, "/voice/menu", {"CallSid": "CA-pat", "Digits": "0"})
    assert "not one of the options" in _said(again) and again.find("Hangup") is None
