"""Real caseline processes that a test stops and starts: `caseline serve` and
`caseline worker` on the suite's clock, sharing one Redis and one database.

Each process is started in its own process group, so stopping it (or killing
it, for a drill) also ends what it started itself: gunicorn's workers, RQ's
scheduler, the cron process. Nothing else on the machine is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from rq import Worker

from config.settings import PROJECT_ROOT, Settings
from directory import keys
from directory.redis_client import connect_redis
from tests.conftest import (
    ACCOUNT_SID,
    API_TOKEN,
    AUTH_TOKEN,
    caseline_command,
    free_port,
    line_env,
)
from twilio_side import Caller, CallResult, HttpTransport, InProcessLink, TwilioEmulator

API = {"Authorization": f"Bearer {API_TOKEN}"}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0,
             interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Process:
    """One started `caseline` command, its log file, and how to stop it."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a graceful stop, as a process manager does), then clean its group up."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._end_group()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (an OOM kill, a container killed)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait()

    def _end_group(self) -> None:
        """Whatever this process left running in its group (it should be nothing)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def output(self) -> str:
        """What the process wrote so far (for a failing test's report)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Line:
    """A small deployment of caseline: web and worker processes, started and stopped by a test."""

    env: dict[str, str]
    logs: Path
    port: int
    emulator: TwilioEmulator
    processes: list[Process] = field(default_factory=list)
    web: Process | None = None
    worker: Process | None = None

    @property
    def url(self) -> str:
        """Where the web service listens."""
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str, at: datetime | None = None,
               env: dict[str, str] | None = None) -> Process:
        """Start `caseline ARGS` on the suite's clock (or `at`), in its own process group."""
        log = self.logs / f"{name}-{len(self.processes)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            caseline_command(*args, at=at), env=env or self.env, cwd=PROJECT_ROOT,
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        handle.close()
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_web(self, at: datetime | None = None, workers: int = 2) -> Process:
        """`caseline serve`, ready once /healthz answers."""
        self.web = self.serve(self.port, self.env, at=at, workers=workers)
        return self.web

    def serve(self, port: int, env: dict[str, str], at: datetime | None = None,
              workers: int = 2) -> Process:
        """A `caseline serve` on `port` with `env` (another service on the same data)."""
        process = self._spawn("serve", "serve", "--workers", str(workers), "--threads", "4",
                              at=at, env={**env, "PORT": str(port)})
        url = f"http://127.0.0.1:{port}/healthz"

        def healthy() -> bool:
            if not process.alive():
                raise AssertionError(f"caseline serve exited:\n{process.output()}")
            try:
                return requests.get(url, timeout=2).ok
            except requests.RequestException:  # not listening yet, or still booting
                return False

        wait_for("caseline serve to answer /healthz", healthy, timeout=30)
        return process

    def start_worker(self, at: datetime | None = None) -> Process:
        """`caseline worker`, ready once RQ lists it (its start has migrated the database,
        rebuilt the cache and recovered abandoned jobs by then)."""
        process = self._spawn("worker", "worker", at=at)
        connection = connect_redis(self.env["REDIS_URL"], decode_responses=False)

        def registered() -> bool:
            if not process.alive():
                raise AssertionError(f"caseline worker exited:\n{process.output()}")
            return any(w.pid == process.pid for w in Worker.all(connection=connection))

        try:
            wait_for("caseline worker to register with RQ", registered, timeout=30)
        finally:
            connection.close()
        self.worker = process
        return process

    def callback_leg(self, call_sid: str) -> Any:
        """The advisor's leg the line placed for `call_sid`'s callback (the emulator's
        record of it), once the web has noted it on the callback: it places the leg on
        its background pool and notes it as Twilio's API answers, while Twilio's first
        request for the leg comes only as the advisor picks up, seconds on."""
        [leg] = wait_for("the callback's leg to be placed", lambda: [
            c for c in self.emulator.created_calls if f"call={call_sid}" in (c.url or "")])
        connection = connect_redis(self.env["REDIS_URL"])
        try:
            wait_for("the leg noted on the callback", lambda: connection.hget(
                keys.call(call_sid), "callback_leg") == leg.sid)
        finally:
            connection.close()
        return leg

    def stop(self) -> None:
        """Stop every process this line started."""
        for process in self.processes:
            process.stop()

    def output(self) -> str:
        """Every process's output, for a failing test."""
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.output()}" for p in self.processes)

    # -- what operators and phones do -------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """An operators' API request with the bearer token."""
        return requests.request(method, f"{self.url}/api{path}", headers=API, timeout=10,
                                **kwargs)

    def set_status(self, advisor_id: str, status: str) -> None:
        """An advisor sets their status through the API."""
        answer = self.api("PUT", f"/advisors/{advisor_id}/status", json={"status": status})
        assert answer.status_code == 200, answer.text

    def caller(self, from_number: str, keys: str = "", advisors: Any = "answer",
               url: str | None = None, **options: Any) -> Caller:
        """A call placed the way Twilio places it: signed HTTP webhooks, TwiML walked."""
        options.setdefault("max_wait_seconds", 10.0)
        options.setdefault("wait_poll_interval", 0.05)
        return Caller(HttpTransport(url or self.url, auth_token=AUTH_TOKEN), from_number,
                      keys=keys.split(), advisor_policy=advisors, account_sid=ACCOUNT_SID,
                      emulator_link=InProcessLink(self.emulator), **options)

    def call(self, from_number: str, keys: str = "", advisors: Any = "answer",
             **options: Any) -> CallResult:
        """Place a call and walk it to its end."""
        return self.caller(from_number, keys, advisors, **options).run()


def new_line(settings: Settings, emulator: TwilioEmulator, tmp_path: Path,
             **extra_env: str) -> Line:
    """A line on a free port, with the test's Redis and database (nothing started yet)."""
    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    env = line_env(settings, tmp_path / "instance", port, **extra_env)
    return Line(env=env, logs=logs, port=port, emulator=emulator)
