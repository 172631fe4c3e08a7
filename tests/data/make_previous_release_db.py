"""Write a SQLite database the way the previous release left one: its own code
loads a directory, takes a few calls and logs them (see README.md here).

    git -C /work/main archive 8269390 | tar -x -C /tmp/prev
    .venv/bin/python tests/data/make_previous_release_db.py /tmp/prev \
        tests/data/previous-release.sql

Everything caseline runs here is imported from RELEASE (first on sys.path);
only this driver and the third-party libraries are today's.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import time_machine

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # the suite's clock: Tuesday 10:00 Central
ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "test-auth-token"
BASE_URL = "http://caseline.test"
PAT = "+16125550101"
STRANGER = "+19525550177"
COLLEAGUE = "+19525550188"

DIRECTORY = {
    "districts": [{"id": "D100", "name": "Lakeview Public Schools", "hosted": True}],
    "contacts": [{"id": "5001", "name": "Pat Lee", "district": "D100", "phone": PAT,
                  "pin": "2468", "last_active": "2026-10-01"}],
    "advisors": [
        {"id": "A7", "name": "Jordan Smith", "phone": "+16515550199",
         "teams": ["general", "hosting"]},
        {"id": "A2", "name": "Maria Gonzalez", "phone": "+16515550102", "teams": ["general"]},
    ],
    "cases": [{"number": "2024117", "district": "D100", "owner": "A7", "status": "open",
               "priority": "medium", "product": "campus"}],
}
# (from, keys): a case call, a new case, a contact's outage, an unknown
# number's outage (a case with no district), a caller verified by PIN.
CALLS = [(PAT, "1 2024117#"), (PAT, "2"), (PAT, "8"), (STRANGER, "8"),
         (COLLEAGUE, "1 5001# 2468# 2024117#")]


def main(release: Path, out: Path) -> None:
    """Run the release's code on a scratch Redis and a scratch database, and write that
    database to `out` as SQL text (a reviewable fixture, never a binary in git)."""
    sys.path.insert(0, str(release.resolve()))
    with time_machine.travel(NOW, tick=True), tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "previous-release.db"
        _take_calls(Path(scratch), database)
        with sqlite3.connect(database) as db:
            out.write_text("\n".join(db.iterdump()) + "\n", encoding="utf-8")


def _take_calls(scratch: Path, out: Path) -> None:
    """Load the directory, place the calls, run the call-log jobs (the release's code)."""
    import redis
    from rq import SimpleWorker

    from caseline.embedded_redis import start_server, wait_until_up
    from config.settings import Settings
    from directory import load_directory
    from directory.db import ensure_schema, make_engine, make_session_factory
    from ivr import create_app
    from jobs.queues import Queues
    from routing import availability
    from routing.desk import Desk
    from telephony import Telephony
    from twilio_side import Caller, FlaskTransport, InProcessLink, TwilioEmulator
    from workers import context

    assert Path(sys.modules["routing"].__file__ or "").is_relative_to(sys.path[0])
    out.unlink(missing_ok=True)
    server = start_server(scratch / "redis", port=6391)
    emulator = TwilioEmulator(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    emulator.start()
    try:
        url = "redis://127.0.0.1:6391/0"
        wait_until_up(url)
        settings = Settings(
            twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
            twilio_api_url=emulator.url, public_base_url=BASE_URL, redis_url=url,
            database_url=f"sqlite:///{out}", wrapup_seconds=0, instance_path=scratch)
        engine = make_engine(settings.database_url)
        ensure_schema(engine)
        r = redis.Redis.from_url(url, decode_responses=True)
        desk = Desk(r=r, settings=settings, telephony=Telephony(settings),
                    session_factory=make_session_factory(engine))
        context.configure(desk)
        load_directory(DIRECTORY, desk.session_factory, r, NOW)
        for advisor in ("A7", "A2"):
            availability.free_advisor(desk, advisor, int(time.time() * 1000), explicit=True)
        app = create_app(settings)
        for from_number, keys in CALLS:
            caller = Caller(FlaskTransport(app.test_client(), BASE_URL, auth_token=AUTH_TOKEN),
                            from_number, keys=keys.split(), advisor_policy="answer",
                            account_sid=ACCOUNT_SID, emulator_link=InProcessLink(emulator))
            result = caller.run()
            print(f"{from_number} {keys!r}: {result.outcome}")
        # The release's worker writes each log (its retry of the unknown caller's
        # case, whose caching failed after the commit, is left scheduled).
        SimpleWorker(list(Queues.ALL), connection=desk.job_redis).work(
            burst=True, with_scheduler=False)
        app.extensions["caseline.engine"].dispose()
        engine.dispose()
    finally:
        emulator.stop()
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
