"""GET /metrics: Prometheus's text format, no token, and counters that move with calls."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from caseline.server import metrics_host, prepare_metrics_dir
from config.settings import PROJECT_ROOT
from directory import keys
from ivr import create_app
from routing import presence
from routing.call_state import start_call
from tests.conftest import (
    caseline_command,
    close_app,
    free_port,
    make_available,
    run_jobs,
    stop_process,
)

PAT = "+16125550101"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_parse_and_a_call_moves_its_counter(client, phone, desk, directory):
    directory.district()
    directory.contact()
    advisor = directory.advisor("A7", ["general"], phone="+16515550199")
    directory.case("2024117", owner="A7")
    directory.load()
    answered = ("caseline_calls_total", (("option", "1"), ("outcome", "answered")))
    response = client.get("/metrics")  # no token
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    before = samples(response.get_data(as_text=True)).get(answered, 0.0)
    make_available(desk, "A7")
    assert phone.call(PAT, "1 2024117#").answered_by == advisor
    run_jobs(desk)
    after = samples(client.get("/metrics").get_data(as_text=True))
    assert after[answered] == before + 1
    assert after[("caseline_waiting_callers", (("team", "general"),))] == 0
    assert after[("caseline_jobs_queued", (("queue", "call-logs"),))] == 0
    assert any(name == "caseline_webhook_seconds_count" and value > 0
               for (name, _labels), value in after.items())


def test_a_waiting_caller_shows_in_the_queue_gauge(client, desk, directory):
    directory.district()
    directory.advisor("A7", ["general"], phone="+16515550199")
    directory.load()
    now = int(time.time() * 1000)
    start_call(desk.r, "CA1", {"caller": PAT, "started_at": now, "team": "general",
                               "priority": "medium", "menu": "2"})
    claim = presence.claim_for_caller(desk.r, "CA1", team="general", owner_id=None, now_ms=now,
                                      lease_ms=35_000, priority="medium")
    assert claim.outcome == "queued"
    scrape = samples(client.get("/metrics").get_data(as_text=True))
    assert scrape[("caseline_waiting_callers", (("team", "general"),))] == 1
    # The caller asks for a callback and hangs up, keeping their place: overnight that
    # is no caller on hold for the alert on this gauge, but a callback pending.
    desk.r.hset(keys.call("CA1"), mapping={"callback": "1", "callback_state": "waiting"})
    scrape = samples(client.get("/metrics").get_data(as_text=True))
    assert scrape[("caseline_waiting_callers", (("team", "general"),))] == 0
    assert scrape[("caseline_callbacks_pending", (("team", "general"),))] == 1


def test_the_served_metrics_add_up_every_web_process(live_service):
    """Under gunicorn (two processes), a scrape parses and counts requests of both."""
    for _ in range(6):
        requests.post(f"{live_service.url}/voice/incoming", data={}, timeout=5)
    text = requests.get(f"{live_service.url}/metrics", timeout=5).text
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {"caseline_webhook_seconds", "caseline_waiting_callers",
            "caseline_jobs_queued", "caseline_jobs_retried"} <= families
    answered = sum(value for (name, _labels), value in samples(text).items()
                   if name == "caseline_webhook_seconds_count")
    assert answered == 6  # whichever of the two processes answered each


def webhooks_counted(url: str) -> float:
    """Webhook requests the service at `url` answered, by its own /metrics."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    return sum(value for (name, _labels), value in samples(text).items()
               if name == "caseline_webhook_seconds_count")


def post_webhooks(url: str, count: int) -> None:
    """`count` webhook requests (unsigned: answered 403, timed all the same)."""
    for _ in range(count):
        requests.post(f"{url}/voice/incoming", data={}, timeout=5)


def test_another_serve_on_the_same_instance_leaves_the_running_services_figures(
        live_service, tmp_path):
    """An operator starts `caseline serve` again by mistake on the port in use (it
    fails), then a trial service on another port, both on the running service's
    instance folder: the running service's figures stay and go on counting, and each
    service adds up its own processes only."""
    post_webhooks(live_service.url, 3)
    assert webhooks_counted(live_service.url) == 3

    again = subprocess.run(caseline_command("serve", "--workers", "1", "--threads", "2"),
                           env=live_service.env, cwd=PROJECT_ROOT, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode != 0, again.stderr
    assert "Connection in use" in again.stderr
    assert webhooks_counted(live_service.url) == 3
    post_webhooks(live_service.url, 1)
    assert webhooks_counted(live_service.url) == 4

    port = free_port()
    trial_url = f"http://127.0.0.1:{port}"
    trial = subprocess.Popen(
        caseline_command("serve", "--workers", "2", "--threads", "2"),
        env={**live_service.env, "PORT": str(port), "PUBLIC_BASE_URL": trial_url},
        cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{trial_url}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet
                pass
            assert trial.poll() is None and time.monotonic() < deadline, "trial did not start"
            time.sleep(0.1)
        post_webhooks(trial_url, 2)
        assert webhooks_counted(trial_url) == 2
        assert webhooks_counted(live_service.url) == 4
    finally:
        stop_process(trial)
    post_webhooks(live_service.url, 1)
    assert webhooks_counted(live_service.url) == 5
    # Stopped services leave no files behind; the running one's folder stays.
    folders = Path(live_service.env["CASELINE_INSTANCE_PATH"]) / "prometheus"
    assert [f.name for f in folders.iterdir()] == [
        f"{metrics_host()}-{live_service.process.pid}"]



def test_a_start_leaves_the_figures_of_another_hosts_service_on_a_shared_volume(
        tmp_path, monkeypatch):
    """Containers of two hosts keep their instance folder on one volume, and a pid
    says nothing across hosts (every container's master is pid 1): a start here removes
    only this host's dead services' figures, never those of the other host's running
    service."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # set again by the start below
    ended = subprocess.Popen(["true"])
    ended.wait()  # a pid no process of this host has now
    root = tmp_path / "prometheus"
    # Alive on its own host; here its pid is nobody's.
    other_host = root / f"another_container-{ended.pid}"
    stopped_here = root / f"{metrics_host()}-{ended.pid}"
    for folder in (other_host, stopped_here):
        folder.mkdir(parents=True)
        (folder / "counter_1.db").write_bytes(b"figures")

    ours = prepare_metrics_dir(tmp_path, master_pid=1)

    assert (other_host / "counter_1.db").read_bytes() == b"figures"
    assert not stopped_here.exists()
    assert ours == root / f"{metrics_host()}-1" and list(ours.iterdir()) == []
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(ours)


def web_processes(master: int) -> set[int]:
    """The gunicorn worker processes of a master (Linux's /proc)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def test_a_web_process_that_gunicorn_replaces_leaves_the_figures_counting(live_service):
    """A web process ends (recycled after its requests, timed out) and gunicorn starts
    another: the service's figures stay and go on counting."""
    post_webhooks(live_service.url, 3)
    assert webhooks_counted(live_service.url) == 3
    before = web_processes(live_service.process.pid)
    os.kill(min(before), signal.SIGTERM)
    deadline = time.monotonic() + 30
    while len(web_processes(live_service.process.pid) - before) < 1:
        assert time.monotonic() < deadline, "gunicorn did not replace its process"
        time.sleep(0.1)

    post_webhooks(live_service.url, 1)
    assert webhooks_counted(live_service.url) == 4

def always_fails() -> None:
    """A job that fails every time."""
    raise RuntimeError("database down")


def test_a_retried_job_is_counted(client, desk):
    from rq import Retry, SimpleWorker

    from jobs.queues import SERIALIZER, Queues, queue
    from workers.retries import count_retry

    queue(Queues.MAINTENANCE, desk.job_redis).enqueue(
        "tests.test_metrics.always_fails", retry=Retry(max=2))
    worker = SimpleWorker([Queues.MAINTENANCE], connection=desk.job_redis,
                          serializer=SERIALIZER, exception_handlers=[count_retry])
    worker.work(burst=True, with_scheduler=False)
    scrape = samples(client.get("/metrics").get_data(as_text=True))
    assert scrape[("caseline_jobs_retried_total", (("queue", "maintenance"),))] == 2


def waiting_gauge(scrape: dict[tuple[str, tuple], float]) -> dict[str, float]:
    """The waiting callers per team, as a scrape gives them."""
    return {dict(labels)["team"]: value for (name, labels), value in scrape.items()
            if name == "caseline_waiting_callers"}


def test_redis_back_empty_every_team_is_still_in_the_waiting_gauge(client, lakeview, r):
    assert waiting_gauge(samples(client.get("/metrics").get_data(as_text=True))) == {
        "general": 0, "hosting": 0}
    r.flushdb()  # Redis back empty (flushed, or restarted without its data)

    scrape = samples(client.get("/metrics").get_data(as_text=True))
    # A team missing from the gauge reads as no data: an alert on its waiting callers
    # would go silent instead of reading 0.
    assert waiting_gauge(scrape) == {"general": 0, "hosting": 0}
    assert scrape[("caseline_redis_reachable", ())] == 1


def test_a_scrape_while_redis_is_down_still_answers_with_the_process_counters(
        settings, desk, lakeview, own_redis, request):
    app = create_app(settings.with_changes(redis_url=own_redis.url))
    request.addfinalizer(lambda: close_app(app))
    client = app.test_client()
    redis_errors = ("caseline_backend_errors_total", (("backend", "redis"),))
    before = samples(client.get("/metrics").get_data(as_text=True))
    assert before[("caseline_redis_reachable", ())] == 1
    own_redis.stop()

    response = client.get("/metrics")
    # Prometheus keeps the counters (the backend errors that say why calls fail) and
    # reads that Redis is away, instead of a failed scrape that hides both.
    assert response.status_code == 200
    scrape = samples(response.get_data(as_text=True))
    assert scrape[("caseline_redis_reachable", ())] == 0
    assert scrape[redis_errors] > before.get(redis_errors, 0)
    assert not waiting_gauge(scrape)  # nothing read from a Redis that is not there
