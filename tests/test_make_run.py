"""`make run` (scripts/run.sh) stopped by Ctrl-C, as a person at a terminal stops it.

A terminal's Ctrl-C is SIGINT to the whole foreground process group: the script,
the web service and its gunicorn workers, the worker and its scheduler, the emulator.
Everything must stop within seconds, quietly, the embedded Redis last, and nothing
the script started may be left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from rq import Worker

from config.settings import PROJECT_ROOT
from tests.conftest import free_port
from tests.live import wait_for

RUN_SCRIPT = PROJECT_ROOT / "scripts" / "run.sh"
BANNER_END = "Ctrl-C stops everything."

pytestmark = [
    pytest.mark.skipif(not (PROJECT_ROOT / ".venv" / "bin" / "caseline").exists(),
                       reason="scripts/run.sh runs .venv/bin/caseline (make installs it)"),
    pytest.mark.slow,
]


def session_processes(session: int) -> dict[int, str]:
    """Live processes (zombies excluded) of a session: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue  # ended meanwhile
        state, _ppid, _pgrp, sid = stat.rsplit(")", 1)[1].split()[:4]
        if int(sid) == session and state != "Z":
            found[int(entry.name)] = command
    return found


def command_line(pid: int) -> str:
    """The command line of `pid` ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its parent is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def run_env(instance: Path) -> dict[str, str]:
    """The environment of a person's shell: no Redis or database named (so the embedded
    Redis starts), free ports, and this checkout's code ahead of whatever the venv maps."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWILIO_", "CASELINE_", "REDIS_", "DATABASE_", "PORT", "HOST"))}
    pythonpath = [str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(pythonpath),
            "CASELINE_INSTANCE_PATH": str(instance), "PORT": str(free_port()),
            "CASELINE_EMULATOR_URL": f"http://127.0.0.1:{free_port()}"}


@pytest.mark.timeout(90)
def test_ctrl_c_stops_make_run_quietly_and_completely(tmp_path):
    instance = tmp_path / "instance"
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        # Its own session and process group, as a terminal gives a foreground job.
        script = subprocess.Popen(["bash", str(RUN_SCRIPT)], cwd=PROJECT_ROOT,
                                  env=run_env(instance), stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    redis_pid = None
    started: dict[int, str] = {}
    try:
        wait_for("the call instructions", lambda: BANNER_END in log.read_text(errors="replace")
                 or script.poll() is not None, timeout=60)
        assert script.poll() is None, log.read_text(errors="replace")
        # The demo's short wrap-up, not the service's default, is said.
        assert "wraps up for 5 s" in log.read_text(errors="replace")
        redis_pid = int((instance / "redis.pid").read_text())
        # The worker listening for jobs, as it is once the person reads the banner.
        client = redis.Redis(unix_socket_path=str(instance / "redis.sock"))
        wait_for("the worker to listen", lambda: Worker.all(connection=client), timeout=30)
        client.close()
        started = {**session_processes(script.pid), redis_pid: "the embedded Redis"}
        before = len(log.read_text(errors="replace"))

        os.killpg(script.pid, signal.SIGINT)
        stopped_at = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            script.wait(timeout=15)
        after = log.read_text(errors="replace")[before:]

        assert script.returncode is not None, f"still running 15 s after Ctrl-C:\n{after}"
        assert script.returncode == 130, after  # a shell's status for a job ended by Ctrl-C
        assert "Traceback" not in after, after
        assert "ERROR" not in after, after

        def left_running() -> dict[int, str]:
            left = {pid: what for pid, what in started.items() if is_running(pid)}
            return left | session_processes(script.pid)

        # A process ends a moment after those it serves, on its own: the resource
        # tracker of the worker's cron process, once the pipe they held is closed. The
        # same 15 s as the script's (seconds on a busy host).
        while (left := left_running()) and time.monotonic() < stopped_at + 15:
            time.sleep(0.05)
        took = time.monotonic() - stopped_at
        assert not left, f"left running {took:.1f} s after Ctrl-C: {left}\n{after}"
    finally:  # whatever this test started and is still running, whatever failed
        leftovers = [*session_processes(script.pid)]
        if redis_pid and is_running(redis_pid) and str(instance) in command_line(redis_pid):
            leftovers.append(redis_pid)  # its own session: the pid alone could be reused
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            script.wait(timeout=5)
