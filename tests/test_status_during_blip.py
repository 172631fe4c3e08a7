"""A call's final status callback posted while Redis is briefly down (a restart from
its snapshot): Twilio never posts it again, so the web process keeps it and applies it
as soon as Redis answers (`ivr.voice.kept_ends`): the advisor is free again within
seconds, the next caller is served, and the call is logged once, without waiting for
the reconciler's check of open calls minutes later."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from caseline.embedded_redis import start_server, wait_until_up
from directory import keys
from directory.redis_client import connect_redis
from jobs.queues import CALLS_TO_LOG
from tests.conftest import free_port
from tests.live import new_line, wait_for
from tests.test_drills import call_logs
from workers.call_log import write_call_logs

PAT = "+16125550101"
SAM = "+16125550102"
A7 = "+16515550199"

pytestmark = pytest.mark.slow


def status_of(line, advisor_id: str) -> str:
    """The advisor's status as the operators' API shows it ('' when unknown)."""
    answer = line.api("GET", "/advisors")
    if answer.status_code != 200:
        return ""
    for advisor in answer.json():
        if advisor.get("id") == advisor_id or advisor.get("advisor_id") == advisor_id:
            return str(advisor.get("status", ""))
    return ""


def test_a_call_ending_while_redis_restarts_frees_its_advisor_once_redis_is_back(
        settings, emulator, directory, desk, tmp_path: Path):
    directory.district("D100", "Lakeview", hosted=True)
    directory.contact("5001", PAT, "D100", "Pat", "2468", last_active="2026-10-01")
    directory.contact("5002", SAM, "D100", "Sam", "1357", last_active="2026-10-01")
    directory.advisor("A7", ["general"], phone=A7)
    directory.load()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_server(tmp_path / "redis", port=port)
    wait_until_up(url)
    line = new_line(settings.with_changes(redis_url=url), emulator, tmp_path,
                    CASELINE_WRAPUP_SECONDS="0")
    results = {}
    try:
        line.start_web()
        line.start_worker()
        line.set_status("A7", "available")
        talk = threading.Thread(target=lambda: results.__setitem__(
            "pat", line.call(PAT, "2", on_call_seconds=4)))
        talk.start()
        # Talking, not only rung ("busy" from the claim on): a Redis gone before A7's
        # key is no answer (the caller goes on), which is another story.
        watch = redis.Redis.from_url(url, decode_responses=True)
        wait_for("A7 talking to Pat",
                 lambda: watch.hget(keys.advisor("A7"), "hold") == "talking")
        watch.close()
        time.sleep(0.5)  # the accept's answer (the bridge) on its way to Twilio
        # Redis restarts (saving its snapshot) while Pat and A7 talk; Pat hangs up
        # meanwhile: the final status callback meets no Redis.
        redis.Redis.from_url(url).shutdown(save=True)
        server.wait(timeout=10)
        talk.join(timeout=30)
        pat = results["pat"]
        assert pat.answered_by == A7, pat.summary()
        time.sleep(1)
        server = start_server(tmp_path / "redis", port=port)
        wait_until_up(url)

        # Within seconds (not the reconciler's ~10 min), A7 is free again...
        wait_for("A7 available again", lambda: status_of(line, "A7") == "available",
                 timeout=8)
        # ...the next caller is put through to them...
        sam = line.call(SAM, "2", max_wait_seconds=10)
        assert sam.answered_by == A7, sam.summary()
        # ...and Pat's call is logged once: its end queued its log (among the calls
        # to log), and the log job, run here on this Redis (the worker's RQ scheduler
        # died with the outage and rq restarts it only at its maintenance interval,
        # a matter of the worker's), writes one row.
        here = replace(desk, r=connect_redis(url), jobs=connect_redis(url, decode_responses=False))
        try:
            assert here.r.zscore(CALLS_TO_LOG, pat.call_sid) is not None
            write_call_logs(here, [pat.call_sid])
            write_call_logs(here, [pat.call_sid])
        finally:
            here.r.close()
            here.job_redis.close()
        assert call_logs(desk, [pat.call_sid]) == {pat.call_sid: 1}
    except AssertionError:
        print(line.output()[-6000:])
        raise
    finally:
        line.stop()
        server.terminate()
        server.wait(timeout=10)
