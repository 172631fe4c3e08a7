"""A rolling restart drops no call: two instances of the line behind a balancer
(one PUBLIC_BASE_URL, webhooks spread request by request), callers arriving,
waiting and talking all along, while each instance in turn is drained, stopped
with SIGTERM and started again. Every caller reaches an advisor, no advisor is
on two calls, every call has one call log (docs/deploy.md, "Rolling restarts")."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import pytest
import requests

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, free_port
from tests.live import new_line, wait_for
from tests.test_drills import call_logs
from tests.test_failover import Advisors
from twilio_side import Caller, CallResult, HttpTransport, InProcessLink
from twilio_side.transport import Response

PUBLIC = "http://line.test"
BURST = 8  # callers arriving just before each restart
ADVISORS = ["A40", "A41"]  # fewer than the callers arriving: some wait

pytestmark = pytest.mark.slow


class Balancer:
    """The load balancer: instances in service, round robin, and requests in flight."""

    def __init__(self, urls: list[str]) -> None:
        self.lock = threading.Lock()
        self.live = list(urls)
        self.in_flight = dict.fromkeys(urls, 0)
        self.sent = dict.fromkeys(urls, 0)
        self.turn = 0

    def take(self) -> str:
        """The next instance in service (one more request in flight there)."""
        with self.lock:
            self.turn += 1
            url = self.live[self.turn % len(self.live)]
            self.in_flight[url] += 1
            self.sent[url] += 1
            return url

    def done(self, url: str) -> None:
        """A request to `url` has its answer."""
        with self.lock:
            self.in_flight[url] -= 1

    def drain(self, url: str) -> None:
        """Send nothing more to `url`, and wait for what it is answering."""
        with self.lock:
            self.live.remove(url)
        wait_for(f"{url} to finish its requests", lambda: self.in_flight[url] == 0)

    def restore(self, url: str) -> None:
        """Put `url` back in service."""
        with self.lock:
            self.live.append(url)


class BalancedTransport(HttpTransport):
    """Twilio's webhooks to PUBLIC_BASE_URL, delivered by the balancer."""

    def __init__(self, balancer: Balancer) -> None:
        super().__init__(PUBLIC, auth_token=AUTH_TOKEN)
        self.balancer = balancer

    def request(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Sign over the public URL, send to the instance the balancer picks."""
        method, signed_url, form, headers = self._prepare(method, url, params)
        target = self.balancer.take()
        started = time.monotonic()
        try:
            answer = self._session.request(method, target + signed_url[len(PUBLIC):],
                                           data=form, headers=headers, timeout=self.timeout,
                                           allow_redirects=False)
        except requests.RequestException as exc:
            return Response(0, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
        finally:
            self.balancer.done(target)
        return Response(answer.status_code, answer.text, time.monotonic() - started,
                        answer.headers.get("Content-Type", ""))


def test_a_rolling_restart_of_both_instances_drops_no_call(
        settings, emulator, directory, desk, tmp_path):
    directory.district()
    for n in range(2 * BURST):
        directory.contact(id=str(8000 + n), phone=f"+1612555{3000 + n:04d}", name=f"C{n}")
    for advisor in ADVISORS:
        directory.advisor(advisor, ["general"])
    directory.load()

    line = new_line(settings, emulator, tmp_path)
    ports = [line.port, free_port()]
    envs = [{**line.env, "PORT": str(port), "PUBLIC_BASE_URL": PUBLIC,
             "CASELINE_INSTANCE_PATH": str(tmp_path / f"instance-{n}")}
            for n, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    balancer = Balancer(urls)
    advisors = Advisors()
    results: dict[int, CallResult] = {}
    threads: list[threading.Thread] = []

    def place(n: int) -> None:
        caller = Caller(BalancedTransport(balancer), f"+1612555{3000 + n:04d}", keys=["2"],
                        advisor_policy="answer", account_sid=ACCOUNT_SID,
                        emulator_link=InProcessLink(emulator), max_wait_seconds=90,
                        wait_poll_interval=0.05)
        caller.on_event = advisors.watch(caller.call_sid, talk=0.5)
        results[n] = caller.run()

    try:
        instances = [line.serve(port, env) for port, env in zip(ports, envs, strict=True)]
        line.start_worker()
        for advisor in ADVISORS:
            line.set_status(advisor, "available")

        # Before each restart a burst of callers arrives: two reach the advisors, the
        # others wait; the instance goes down while they wait, ring and talk.
        restarted, in_progress = [], []
        for n, (url, port, env) in enumerate(zip(urls, ports, envs, strict=True)):
            for k in range(BURST):
                thread = threading.Thread(target=place, args=(n * BURST + k,))
                thread.start()
                threads.append(thread)
            time.sleep(0.5)
            balancer.drain(url)
            in_progress.append(sum(t.is_alive() for t in threads))
            instances[n].stop()  # SIGTERM: gunicorn finishes what it holds
            assert instances[n].popen.returncode == 0, instances[n].output()
            instances[n] = line.serve(port, env)  # the new release
            balancer.restore(url)
            restarted.append(url)
        for thread in threads:
            thread.join(timeout=120)

        assert restarted == urls
        assert all(count > len(ADVISORS) for count in in_progress), in_progress
        assert len(results) == 2 * BURST
        assert advisors.double_booked == []
        for n, result in results.items():
            assert result.error is None, (n, result.summary())
            assert result.answered_by is not None and result.outcome == "advisor", \
                (n, result.summary())
        assert sum(r.queued for r in results.values()) >= len(ADVISORS)
        sids = [r.call_sid for r in results.values()]
        wait_for("every call log", lambda: len(call_logs(desk, sids)) == len(sids), timeout=60)
        assert call_logs(desk, sids) == dict.fromkeys(sids, 1)
    except AssertionError:
        print(line.output())
        raise
    finally:
        for thread in threads:
            thread.join(timeout=30)
        line.stop()
