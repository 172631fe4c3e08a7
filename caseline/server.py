"""`caseline serve`: the Flask app under gunicorn, configured in code."""

from __future__ import annotations

import dataclasses
import gc
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gunicorn.app.base import BaseApplication

from config.settings import Settings


class CaselineServer(BaseApplication):
    """A gunicorn application that builds caseline's app in each worker."""

    def __init__(self, settings: Settings, options: dict[str, Any],
                 prefix: str = "") -> None:
        """Keep the settings and the path prefix (SCRIPT_NAME, see `mounted`); gunicorn
        calls `load` in each worker process."""
        self.settings = settings
        self.options = options
        self.prefix = prefix
        super().__init__()

    def load_config(self) -> None:
        """Apply our options to gunicorn's config."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Build the WSGI app (after fork: each worker has its own pools)."""
        from ivr import create_app, warm_up

        app = create_app(self.settings)
        warm_up(app)
        # Everything built so far (modules, the app, SQLAlchemy's metadata, what warm_up
        # loads) lives as long as the process: out of the collector's sight, a full
        # collection scans only what requests left behind, instead of pausing every
        # request for ~60-100 ms (measured at 5,000 callers waiting, docs/benchmarks.md).
        app.wsgi_app = mounted(app.wsgi_app, self.prefix)  # Flask's place for middleware
        gc.collect()
        gc.freeze()
        return app


def mounted(app: Any, prefix: str) -> Any:
    """`app` served under the path `prefix` (SCRIPT_NAME, for a proxy that forwards
    it; "" or "/": at the root). gunicorn applies SCRIPT_NAME itself, but answers a
    request outside it with an HTML 500 "Configuration problem"; so `caseline serve`
    takes the variable out of gunicorn's sight and mounts the app here instead. A
    request outside the prefix (a probe of /readyz without it, a webhook URL missing
    it) is not caseline's: 404, JSON as the API's errors, naming the prefix."""
    prefix = "/" + prefix.strip("/")
    if prefix == "/":
        return app
    missing = json.dumps({"error": f"not found: caseline is served under {prefix}"}).encode()

    def under_prefix(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix):]
            return app(environ, start_response)
        start_response("404 NOT FOUND", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(missing)))])
        return [missing]

    return under_prefix


def prepare_metrics_dir(instance_path: Path, master_pid: int | None = None) -> Path:
    """This service's folder for its web processes' Prometheus files,
    `prometheus/<host>-<master pid>` under the instance path, emptied and named in
    PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client (it reads the
    variable at import, and gunicorn's workers inherit it).

    Several services may share one instance folder (a second `caseline serve` started
    by mistake on a port in use, a trial on another port, the frozen-clock recipe beside
    `make run`, two instances during a roll-out, containers on one volume): each adds
    up its own processes only, and a start never touches the files of a service still
    running. A pid says whether a master lives only on its own host (every container's
    master is pid 1), so the folder names the host too: folders of this host's masters
    no longer alive are stale and removed here; another host's are left to it. Ours is
    emptied in case our pid is one a stopped service of this host had (a container's
    master is pid 1 at every start)."""
    master_pid = os.getpid() if master_pid is None else master_pid
    host = metrics_host()
    root = Path(instance_path) / "prometheus"
    root.mkdir(parents=True, exist_ok=True)
    ours = f"{host}-{master_pid}"
    for entry in root.iterdir():
        if entry.name == ours:
            continue
        name_host, _, pid = entry.name.rpartition("-")
        if entry.is_dir() and name_host and name_host != host:
            continue  # another host's service: only that host can tell it is gone
        # This host's folder (or a bare pid's, from a version before the host was named).
        pid = pid if name_host else entry.name
        if entry.is_dir() and pid.isdigit() and is_alive(int(pid)):
            continue
        # A dead master's folder, or the flat files of an older version.
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    folder = root / ours
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return folder


def metrics_host() -> str:
    """This host's name as a metrics folder names it (letters, digits, `.` and `_`;
    a container's name is its id unless set)."""
    name = re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()) or "host"
    return name[:64]


def is_alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _worker_exit(_server: Any, worker: Any) -> None:
    """gunicorn's child_exit hook: a dead worker's live gauges stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _post_worker_init(worker: Any) -> None:
    """gunicorn's post_worker_init hook: the console's event streams end once this
    worker is told to stop (SIGTERM clears `worker.alive`). A page holds its stream
    for minutes; without this, every graceful stop with a page open waits out the
    whole graceful_timeout before the worker exits. The page reconnects at once.

    A worker also leaves Ctrl-C to its master, which answers it with SIGQUIT to
    each worker. A terminal's SIGINT reaches every process of the foreground group,
    so each worker had two quit signals at once, and the gthread worker's quit
    handler (shutting its thread pool down) is not reentrant: run inside itself it
    waits forever on the pool's lock, until the master SIGKILLs the worker after
    graceful_timeout ("Worker ... was sent SIGKILL! Perhaps out of memory?")."""
    from ivr.console.stream import SERVING

    worker.wsgi.extensions[SERVING] = lambda: worker.alive
    signal.signal(signal.SIGINT, signal.SIG_IGN)


LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refusal(settings: Settings) -> str | None:
    """Why `caseline serve` must not start with these settings (None: it may)."""
    if settings.insecure_dev and not is_loopback(settings.host):
        return (f"insecure dev mode listens on a loopback address only (127.0.0.1, ::1, "
                f"localhost), not {settings.host!r}")
    return None


def unsigned_warning(settings: Settings) -> str | None:
    """What `caseline serve` warns of at start when no webhook can be verified (None:
    nothing). PRODUCT: without TWILIO_AUTH_TOKEN webhooks refuse to run unsigned, so the
    service starts (the API, /metrics, /healthz and the console work: an operator can
    load and watch the desk before the credentials arrive) and every `/voice/*` request
    is answered 403 with nothing done (`ivr.gate`), unless insecure dev mode is on."""
    if settings.twilio_auth_token or settings.insecure_dev:
        return None
    return ("TWILIO_AUTH_TOKEN is not set: every webhook (/voice/*) will be refused with 403 "
            "and Twilio's callers will not be answered, and requests to Twilio's REST API "
            "carry no credentials. Set TWILIO_AUTH_TOKEN, or for a local experiment "
            "CASELINE_INSECURE_DEV=1 (or --insecure-dev) on a loopback address.")


def rest_token_warning(settings: Settings) -> str | None:
    """What `caseline worker` warns of at start when its requests to Twilio's REST API
    carry no credentials (None: nothing). The worker checks no signature, so it starts
    without TWILIO_AUTH_TOKEN; Twilio refuses its requests (callbacks, redirects), each
    refusal logged naming the variable (`telephony.client`). The local emulator of
    `make run` and the tests takes requests without one: no warning there."""
    if settings.twilio_auth_token or is_local_demo(settings):
        return None
    return (f"TWILIO_AUTH_TOKEN is not set: requests to Twilio's REST API "
            f"({settings.twilio_api_url}) carry no credentials and Twilio will refuse them "
            "(callbacks and redirects fail, each logged)")


def is_local_demo(settings: Settings) -> bool:
    """Whether these settings are a local try, not a deployment: insecure dev mode, or
    Twilio's REST API on this machine (the local emulator `make run` starts), where no
    real Twilio account is behind the line."""
    try:
        api_host = urlsplit(settings.twilio_api_url).hostname or ""
    except ValueError:  # not a URL at all: no emulator of ours either
        api_host = ""
    return settings.insecure_dev or is_loopback(api_host)


def account_sid_warning(settings: Settings) -> str | None:
    """What `caseline serve` warns of when webhooks' AccountSid cannot be compared with
    the account's (`ivr.gate` logs another account's; None: nothing). A deployment
    must name its account; a local demo has none to name."""
    if settings.account_sid_configured or is_local_demo(settings):
        return None
    return ("TWILIO_ACCOUNT_SID is unset or the placeholder AC000...: a webhook posting "
            "another account's AccountSid is not noticed (set your account's SID in "
            "production)")


def gunicorn_options(settings: Settings, workers: int, threads: int) -> dict[str, Any]:
    """The production server settings (chosen by measurement, see docs/benchmarks.md)."""
    return {
        "bind": (f"[{settings.host.strip('[]')}]" if ":" in settings.host
                 else settings.host) + f":{settings.port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        # Recycle processes now and then; jitter so they don't restart together.
        "max_requests": 200000,
        "max_requests_jitter": 20000,
        "child_exit": _worker_exit,
        "post_worker_init": _post_worker_init,
    }


# Threads of a web process an event stream never takes: Twilio's webhooks need them.
WEBHOOK_THREADS = 2


def streams_for(settings: Settings, threads: int) -> Settings:
    """`settings` with the console's event streams capped at `threads` less
    `WEBHOOK_THREADS` (each stream holds a thread until the page leaves, up to 5 minutes;
    with `--threads 2` or 1 there are none, and the pages poll), so open pages can
    never hold every thread while Twilio waits (its timeout is 15 s)."""
    cap = max(0, threads - WEBHOOK_THREADS)
    if settings.console_streams <= cap:
        return settings
    return dataclasses.replace(settings, console_streams=cap)


def run_gunicorn(settings: Settings, *, workers: int, threads: int) -> None:
    """Serve until stopped."""
    settings = streams_for(settings, threads)
    # Out of gunicorn's sight (its workers inherit the environment): `mounted` does it.
    prefix = os.environ.pop("SCRIPT_NAME", "")
    CaselineServer(settings, gunicorn_options(settings, workers, threads), prefix).run()
