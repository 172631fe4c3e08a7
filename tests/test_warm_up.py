"""A web process loads what calls need before it serves them (`ivr.warm_up`).

What a caller notices: the first calls after a restart do not pay for a
library's first use (the holidays library imports every country's module the
first time the desk's calendar is read; twilio imports its REST resources the
first time a waiting caller is redirected). What the storm notices: what is
loaded before `gc.freeze()` is never scanned by a full collection again; what
is loaded after lengthens each one (7-19 ms against 1.5-2.6 ms, measured at
5,000 callers waiting, docs/benchmarks.md).

The check runs in a fresh interpreter (this one has imported everything
already): it builds the app as `caseline serve` does, places a call that reads
the calendar and one that is redirected out of a queue, and lists what was
imported while they ran.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from config.settings import PROJECT_ROOT
from tests.conftest import ACCOUNT_SID, API_TOKEN, AUTH_TOKEN, BASE_URL, NOW

PAT = "+16125550101"  # Pat Lee, authorized contact 5001 of Lakeview (hosted)
CASE = "2024117"
OWNER_PHONE = "+16515550199"  # Jordan Smith (A7), the case's owner

# The libraries the line itself loads lazily; the driver (twilio_side) imports
# none of these families on its own.
LAZY_FAMILIES = ("holidays", "dateutil", "phonenumbers.data", "twilio.rest", "twilio.base")

SCRIPT = """
import json, sys, threading, time
import time_machine
from config.settings import Settings
from directory import keys
from ivr import create_app, warm_up
from routing import availability
from twilio_side import Caller, FlaskTransport, InProcessLink, TwilioEmulator

args = json.loads(sys.argv[1])
time_machine.travel(args["now"], tick=True).start()  # the suite's Tuesday morning
emulator = TwilioEmulator()
emulator.start()
settings = Settings(twilio_account_sid=args["sid"], twilio_auth_token=args["token"],
                    twilio_api_url=emulator.url, public_base_url=args["base"],
                    redis_url=args["redis"], database_url=args["db"],
                    api_token=args["api"], wrapup_seconds=0)
app = create_app(settings)
if args["warm"]:
    warm_up(app)
desk = app.extensions["caseline"]
before = set(sys.modules)

def call(keys, **options):
    transport = FlaskTransport(app.test_client(), args["base"], auth_token=args["token"])
    return Caller(transport, args["pat"], keys=keys.split(), advisor_policy="answer",
                  account_sid=args["sid"], emulator_link=InProcessLink(emulator),
                  extra_params={"StirVerstat": "TN-Validation-Passed-A"},
                  max_wait_seconds=5.0, wait_poll_interval=0.02, **options).run()

# Option 1 reads the desk's hours; nobody is free, so the caller waits until the
# case owner comes on and the line redirects them (the REST client). The owner comes
# on once the caller waits: a cold process may take seconds to get them there.
def free_owner_once_the_caller_waits():
    deadline = time.monotonic() + 60
    while not any(desk.r.scan_iter(match=keys.team_waiting("*"))):
        if time.monotonic() > deadline:
            return  # never waited: the report says so
        time.sleep(0.02)
    availability.free_advisor(desk, "A7", int(time.time() * 1000), explicit=True)

threading.Thread(target=free_owner_once_the_caller_waits).start()
result = call("1 " + args["case"] + "#")
print(json.dumps({"answered_by": result.answered_by, "redirected": bool(result.redirected_at),
                  "new": sorted(set(sys.modules) - before)}))
"""


@pytest.fixture
def lakeview(directory):
    """One hosted district, its contact, the case's owner (off the line), the case."""
    directory.district("D100", "Lakeview Public Schools", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat Lee", "2468", last_active="2026-10-01")
    directory.advisor("A7", ["general", "hosting"], phone=OWNER_PHONE)
    directory.case(CASE, "D100", owner="A7")
    directory.load()


def first_call_imports(settings, warm: bool) -> dict:
    """Build the app in a fresh interpreter, place the call, report what it imported."""
    args = {"sid": ACCOUNT_SID, "token": AUTH_TOKEN, "base": BASE_URL, "api": API_TOKEN,
            "redis": settings.redis_url, "db": settings.database_url, "pat": PAT,
            "case": CASE, "warm": warm, "now": NOW.isoformat()}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_first_calls_of_a_warmed_web_process_load_no_library(settings, lakeview):
    report = first_call_imports(settings, warm=True)
    # The caller waited, was redirected to the owner and reached them.
    assert report["redirected"] and report["answered_by"] == OWNER_PHONE, report
    lazy = [m for m in report["new"] if m.startswith(LAZY_FAMILIES)]
    assert lazy == []


def test_without_the_warm_up_the_first_call_loads_them(settings, lakeview):
    """The check above can fail: the same call on a cold process imports them."""
    report = first_call_imports(settings, warm=False)
    assert report["redirected"] and report["answered_by"] == OWNER_PHONE, report
    lazy = {m.split(".")[0] for m in report["new"] if m.startswith(LAZY_FAMILIES)}
    assert {"holidays", "twilio"} <= lazy
