"""`make bench`: caseline against the framework's ceiling, side by side.

One run starts a real Redis, a fresh SQLite database, `caseline serve` (with
the demo directory loaded and every advisor available), `caseline worker`,
and the ceiling (`bench.ceiling`, the same gunicorn options); pins the
servers, the worker and Redis to core 1 and this process (the load
generator and Twilio's REST side) to core 0; checks every scenario of the mix
once with the tests' driver (`twilio_side.Caller`); then interleaves
the two sides through the same phases, a few repetitions each:

* closed loop: 32 virtual callers placing call after call;
* paced: 200 webhooks/s;

and, on caseline alone, 1,000 callers waiting in queues at once, then served
in order; and a soak that reads each web process's resident memory.

It prints the table and writes it into docs/benchmarks.md (between the
generated-block markers; the prose around them is kept).

    .venv/bin/python bench/run.py            # the full run (~7 minutes): `make bench`
    .venv/bin/python bench/run.py --quick    # ~2 minutes
    .venv/bin/python bench/run.py --profile  # py-spy on caseline's web processes

`bench/explore.py` compares gunicorn settings and candidate changes side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.callers import MIX, Net, Recorder, Scenario, TwilioSide, VirtualCaller  # noqa: E402
from bench.phases import (  # noqa: E402
    PhaseResult,
    Target,
    closed_loop,
    fill_queues,
    paced,
    percentile,
    soak,
)
from bench.procs import (  # noqa: E402
    Services,
    children,
    free_port,
    pin,
    rss_mib,
    steal_seconds,
    wait_for_port,
)
from bench.wire import HttpPool  # noqa: E402
from caseline.embedded_redis import redis_server_binary, start_server, wait_until_up  # noqa: E402
from caseline.work import WORKER_NICE  # noqa: E402
from config.hours import CENTRAL, is_open  # noqa: E402

BIN = Path(sys.executable).parent
AUTH_TOKEN = "bench-auth-token"
ACCOUNT_SID = "AC" + "b" * 32
API_TOKEN = "bench-api-token"
# Core 0 carries the load generator, the last core the servers and Redis. The worker's
# own core is a third when there is one; on two cores it is the generator's, at nice 19
# (it takes what the generator leaves, so it cannot slow the load). On one core (a small
# CI box) everything shares it: the smoke still runs, the figures mean little.
_CORES = sorted(os.sched_getaffinity(0))
LOAD_CORE, SERVER_CORE = _CORES[0], _CORES[-1]
WORKER_CORE = _CORES[1] if len(_CORES) >= 3 else LOAD_CORE
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin (written by bench/run.py) -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class ServerSettings:
    """How gunicorn serves one side: worker class, processes, threads (or connections)."""

    worker_class: str  # "gthread", "sync" or "gevent"
    workers: int
    threads: int = 1
    connections: int = 1000  # gevent only

    def label(self) -> str:
        """As the report shows it, e.g. `1 x 4 (gthread)`."""
        per = (f"{self.connections} connections" if self.worker_class == "gevent"
               else f"{self.threads} thread(s)")
        return f"{self.workers} process(es) x {per} ({self.worker_class})"

    def ceiling_argv(self) -> list[str]:
        """`bench.ceiling`'s options for these settings."""
        return ["--worker-class", self.worker_class, "--workers", str(self.workers),
                "--threads", str(self.threads), "--connections", str(self.connections)]


# The ceiling's best gunicorn settings on one core, found by `bench/explore.py ceiling`
# (gthread, sync and gevent at several counts; see docs/benchmarks.md): gevent, one
# process, level with gthread 1 x 4 within the noise and ahead on the closed loop.
CEILING_SETTINGS = ServerSettings("gevent", 1, connections=1000)

# Where `caseline worker` runs, one layout per measured caseline side.
LAYOUTS = {
    "servers": "worker on the servers' core",
    "own": "worker on its own core",
    # An experiment: on the servers' core at nice 0, as before the worker lowered its
    # own priority (`caseline.work.WORKER_NICE`).
    "servers-nice0": "worker on the servers' core at nice 0",
    # An experiment: on the servers' core under Linux's SCHED_IDLE policy (it runs only
    # when nothing else on the core wants to: a waking web thread always preempts it).
    "servers-idle": "worker on the servers' core, SCHED_IDLE",
}


@dataclass
class Config:
    """How long and how hard one run pushes."""

    reps: int = 3
    seconds: float = 15.0
    warmup: float = 3.0
    callers: int = 32
    rate: float = 200.0
    paced_callers: int = 64  # calls at once in the paced phase
    queue_callers: int = 5000  # Twilio's largest queue
    queue_small: int = 100  # the hold cycle's reference
    queue_arrival: float = 100.0  # callers joining per second while the queues fill
    queue_wait_scale: float = 1.0  # hold music played in real time, as Twilio does
    hold_seconds: float = 20.0
    # The reference (`queue_small` waiting) is measured at least this many hold cycles:
    # 100 callers make ~5 a second, and a p99 of 100 samples is their second largest,
    # which moved between 3.3 and 6.0 ms from run to run.
    hold_samples_small: int = 500
    queue_drain_limit: float = 300.0  # seconds for one advisor per team to serve them all
    soak_per_process: int = 100_000
    # caseline's web processes and threads: None runs `caseline serve`'s shipped defaults.
    workers: int | None = None
    threads: int | None = None
    ceiling: ServerSettings = CEILING_SETTINGS
    # Where `caseline worker` runs, in order (the first is the headline); () runs none.
    layouts: tuple[str, ...] = ("servers", "own")
    phases: tuple[str, ...] = ("closed", "paced", "queue", "soak")
    patches: str = ""  # bench.patched's candidate changes, for experiments
    pythonpath: str = ""  # extra packages (e.g. hiredis) for caseline's web processes
    rest_latency: float = 0.0  # seconds Twilio's REST side takes to answer
    quick: bool = False
    smoke: bool = False
    tree: str = ""  # another checkout's caseline (web, worker, directory load): A/B runs


# Two callers brought over within this of each other (s) were given advisors in one
# moment: the order their REST redirects reach Twilio in says nothing of fairness.
SIMULTANEOUS_S = 0.05


def caseline_argv(config: Config) -> tuple[list[str], dict[str, str]]:
    """The command that runs `caseline`, and what its environment adds: this checkout's,
    or with `config.tree` another checkout's (`bench/explore.py trees`)."""
    if not config.tree:
        return [str(BIN / "caseline")], {}
    return ([str(BIN / "python"), "-c", "from caseline.cli import main; main()"],
            {"PYTHONPATH": config.tree})


def serve_threads() -> int:
    """`caseline serve`'s shipped --threads default (its --workers default is one per core
    where it runs, a callable: the run counts the processes it started instead)."""
    from caseline.cli import serve

    return int(next(p.default for p in serve.params if p.name == "threads"))


# -- the stack ----------------------------------------------------------------------


class Stack:
    """Redis, caseline (web + worker), the ceiling and Twilio's REST side of one run."""

    def __init__(self, config: Config, directory: Path) -> None:
        self.config = config
        self.dir = directory
        self.services = Services(directory)
        self.side = TwilioSide(ACCOUNT_SID, AUTH_TOKEN, config.rest_latency)
        self.recorder = Recorder()
        self.caseline_port = free_port()
        self.ceiling_port = free_port()
        self.redis_port = free_port()
        self.redis_socket = directory / "redis.sock"
        self.redis_url = f"unix://{self.redis_socket}"
        self.caseline: Target | None = None
        self.ceiling: Target | None = None
        self.api: HttpPool | None = None
        self.web = None
        self.redis = None
        self.worker = None
        self.worker_layout = ""
        self.worker_env: dict[str, str] = {}

    def env(self, public_base: str) -> dict[str, str]:
        """The environment of caseline's processes."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CASELINE_", "TWILIO_"))}
        env.update({
            # A unix socket, as the embedded Redis `caseline serve` starts (no REDIS_URL)
            # and as a Redis on the line's own machine is best reached: ~10 us of the
            # web's CPU and ~5 us of Redis's less per command than TCP on 127.0.0.1.
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": f"sqlite:///{self.dir / 'caseline.db'}",
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "PUBLIC_BASE_URL": public_base,
            "TWILIO_API_URL": self.side.url,
            "CASELINE_WRAPUP_SECONDS": "0",
            # The mix places most calls from a handful of contacts' numbers, hundreds a
            # minute each: far past the limit on new calls from one number (100 in ten
            # minutes), which would turn the load into refusals. A limit no run reaches
            # keeps the same calls and still counts each in the script that opens it.
            "CASELINE_CALLS_PER_NUMBER": str(10**9),
            "CASELINE_API_TOKEN": API_TOKEN,
            "CASELINE_INSTANCE_PATH": str(self.dir / "instance"),
            "PYTHONUNBUFFERED": "1",
        })
        return env

    async def start(self) -> None:
        """Start everything, pinned; load the directory; put every advisor on the line."""
        config = self.config
        redis_process = start_server(self.dir / "redis", port=self.redis_port,
                                     socket=self.redis_socket)
        self.redis = self.services.adopt("redis", redis_process, SERVER_CORE)
        await asyncio.to_thread(wait_until_up, self.redis_url)
        await self.side.start()
        caseline_url = f"http://127.0.0.1:{self.caseline_port}"
        ceiling_url = f"http://127.0.0.1:{self.ceiling_port}"
        env = self.env(caseline_url)
        command, extra = caseline_argv(config)
        load = await asyncio.create_subprocess_exec(
            *command, "directory", "load", str(ROOT / "demo" / "directory.json"),
            env=dict(env, **extra), cwd=self.dir, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await load.communicate()
        if load.returncode != 0:
            raise RuntimeError(f"directory load failed: {output.decode()}")
        # `caseline serve` as shipped: its own --workers and --threads defaults.
        serve = ["serve", "--port", str(self.caseline_port)]
        if config.workers is not None:
            serve += ["--workers", str(config.workers)]
        if config.threads is not None:
            serve += ["--threads", str(config.threads)]
        web_env = dict(env, **extra)
        if config.pythonpath:
            web_env["PYTHONPATH"] = config.pythonpath
        if config.patches:
            web_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), config.pythonpath]))
            argv = [str(BIN / "python"), "-m", "bench.patched", "--patch", config.patches, "--",
                    *serve]
        else:
            argv = [*command, *serve]
        self.web = self.services.start("caseline-serve", argv, web_env, core=SERVER_CORE)
        self.worker_env = dict(env, **extra)
        ceiling_env = dict(env, PUBLIC_BASE_URL=ceiling_url)
        ceiling = self.services.start(
            "ceiling",
            [str(BIN / "python"), "-m", "bench.ceiling", "--port", str(self.ceiling_port),
             *config.ceiling.ceiling_argv()],
            dict(ceiling_env, PYTHONPATH=str(ROOT)), core=SERVER_CORE, cwd=ROOT,
        )
        await asyncio.to_thread(wait_for_port, self.caseline_port, 60, self.web)
        await asyncio.to_thread(wait_for_port, self.ceiling_port, 60, ceiling)
        pool_size = max(64, config.callers * 2)
        self.caseline = Target(
            "caseline",
            Net(HttpPool("127.0.0.1", self.caseline_port, pool_size), caseline_url, AUTH_TOKEN,
                ACCOUNT_SID, self.side, self.recorder),
            [self.web], redis=self.redis,
        )
        self.ceiling = Target(
            "ceiling",
            Net(HttpPool("127.0.0.1", self.ceiling_port, pool_size), ceiling_url, AUTH_TOKEN,
                ACCOUNT_SID, self.side, self.recorder),
            [ceiling], ceiling=True,
        )
        self.api = HttpPool("127.0.0.1", self.caseline_port, 8)
        await self.all_advisors("available")
        if config.layouts:
            await self.place_worker(config.layouts[0])

    async def place_worker(self, layout: str) -> None:
        """Run `caseline worker` in `layout` ("servers": on the servers' core, competing with
        the web; "own": on its own core), restarting it when it runs elsewhere."""
        assert self.caseline is not None
        if self.worker is not None and self.worker_layout == layout:
            return
        core = SERVER_CORE if layout.startswith("servers") else WORKER_CORE
        # "servers" as shipped: `caseline worker` lowers its own priority to WORKER_NICE.
        nice = {"servers": WORKER_NICE, "servers-nice0": 0}.get(
            layout, 19 if core == LOAD_CORE else WORKER_NICE)
        if self.worker is None:
            # `caseline worker` is its own process in production (the Procfile's `worker:`).
            argv, env = [*caseline_argv(self.config)[0], "worker"], self.worker_env
            if self.config.patches:
                argv = [str(BIN / "python"), "-m", "bench.patched", "--patch",
                        self.config.patches, "--", "worker"]
                env = dict(env, PYTHONPATH=str(ROOT))
            self.worker = self.services.start("caseline-worker", argv, env, core=core,
                                              nice=nice)
        else:
            # Moved, not restarted: no start-up cost lands in a measured window.
            for pid in self.worker.tree():
                pin(pid, core)
                try:
                    os.setpriority(os.PRIO_PROCESS, pid, nice)
                except ProcessLookupError:
                    pass
                except PermissionError:  # lowering nice needs root: say so, go on
                    print(f"note: could not set the worker's nice to {nice} (not root)",
                          flush=True)
        policy = os.SCHED_IDLE if layout == "servers-idle" else os.SCHED_OTHER
        for pid in self.worker.tree():
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setscheduler(int(tid), policy, os.sched_param(0))
        self.worker_layout = layout
        self.caseline.background = [self.worker]

    async def add_caseline(
        self, name: str, patches: str, pythonpath: str = "", workers: int | None = None,
        threads: int | None = None,
    ) -> Target:
        """Another caseline web server on the same Redis and database (an A/B variant)."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(self.env(url), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                                           pythonpath])))
        argv = [str(BIN / "python"), "-m", "bench.patched", "--patch", patches, "--", "serve",
                "--port", str(port)]
        if workers or self.config.workers:
            argv += ["--workers", str(workers or self.config.workers)]
        if threads or self.config.threads:
            argv += ["--threads", str(threads or self.config.threads)]
        web = self.services.start(f"caseline-{name}", argv, env, core=SERVER_CORE)
        await asyncio.to_thread(wait_for_port, port, 60, web)
        return Target(name, Net(HttpPool("127.0.0.1", port, max(64, self.config.callers * 2)),
                                url, AUTH_TOKEN, ACCOUNT_SID, self.side, self.recorder),
                      [web], redis=self.redis)

    async def add_ceiling(self, settings: ServerSettings) -> Target:
        """Another ceiling server with other gunicorn settings (for `explore.py ceiling`)."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = self.services.start(
            f"ceiling-{settings.worker_class}-{settings.workers}",
            [str(BIN / "python"), "-m", "bench.ceiling", "--port", str(port),
             *settings.ceiling_argv()],
            dict(self.env(url), PYTHONPATH=str(ROOT)), core=SERVER_CORE, cwd=ROOT)
        await asyncio.to_thread(wait_for_port, port, 60, server)
        target = Target(settings.label(), Net(
            HttpPool("127.0.0.1", port, max(64, self.config.callers * 2)), url, AUTH_TOKEN,
            ACCOUNT_SID, self.side, self.recorder), [server], ceiling=True)
        assert self.ceiling is not None
        target.pad = self.ceiling.pad
        return target

    async def call_api(self, method: str, path: str, body: object = None) -> Any:
        """One request to caseline's operators' API; its JSON."""
        assert self.api is not None
        headers = [("Authorization", f"Bearer {API_TOKEN}")]
        data = b""
        if body is not None:
            headers.append(("Content-Type", "application/json"))
            data = json.dumps(body).encode()
        status, answer, _ = await self.api.request(method, path, headers, data)
        if status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {status} {answer[:200]!r}")
        return json.loads(answer)

    async def advisors(self) -> list[dict[str, Any]]:
        """GET /api/advisors."""
        return await self.call_api("GET", "/api/advisors")

    async def set_advisor(self, advisor_id: str, status: str) -> dict[str, Any]:
        """PUT /api/advisors/<id>/status; its answer (`call`: the caller they were given)."""
        return await self.call_api("PUT", f"/api/advisors/{advisor_id}/status",
                                   {"status": status})

    async def all_advisors(self, status: str) -> None:
        """Every advisor of the directory to `status`."""
        for advisor in await self.advisors():
            await self.set_advisor(advisor["id"], status)

    async def settle(self, timeout: float = 20.0) -> dict[str, int]:
        """Wait until no caller waits and every advisor is available again."""
        deadline = time.monotonic() + timeout
        while True:
            queues = await self.call_api("GET", "/api/queues")
            waiting = sum(len(v) for v in queues.values())
            busy = [a["id"] for a in await self.advisors() if a["status"] != "available"]
            if (not waiting and not busy) or time.monotonic() > deadline:
                self.side.reset()
                return {"waiting": waiting, "busy": len(busy)}
            await asyncio.sleep(0.2)

    async def call_logs_written(self, calls: int, timeout: float = 180.0) -> dict[str, Any]:
        """Wait for the worker to log every call (exactly once); how many it wrote."""
        import sqlite3

        started = time.monotonic()
        written = -1
        while True:
            with sqlite3.connect(f"file:{self.dir / 'caseline.db'}?mode=ro", uri=True,
                                 timeout=10) as db:
                written = db.execute("SELECT count(*) FROM call_logs").fetchone()[0]
            if written >= calls or time.monotonic() - started > timeout:
                return {"calls": calls, "written": written,
                        "drain_seconds": time.monotonic() - started}
            await asyncio.sleep(1.0)

    async def redis_commands(self) -> dict[str, int]:
        """Redis's count of each command it has run (INFO commandstats)."""
        import redis

        def read() -> dict[str, int]:
            client = redis.Redis(port=self.redis_port)
            try:
                stats = client.info("commandstats")
            finally:
                client.close()
            return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

        return await asyncio.to_thread(read)

    def web_pids(self) -> list[int]:
        """The gunicorn worker processes of caseline (the web processes)."""
        assert self.web is not None
        return children(self.web.pid)

    def memory(self) -> dict[int, float]:
        """Resident memory (MiB) of each web process."""
        return {pid: rss_mib(pid) for pid in self.web_pids()}

    async def stop(self) -> None:
        """Stop every process this run started."""
        for pool in (self.api, self.caseline and self.caseline.net.pool,
                     self.ceiling and self.ceiling.net.pool):
            if pool:
                pool.close()
        self.side.close()
        await asyncio.to_thread(self.services.stop_all)


# -- smoke: the tests' driver places every scenario once ------------------------------


async def smoke(stack: Stack) -> list[dict[str, Any]]:
    """Each scenario once with `twilio_side.Caller` and once with the bench walker."""
    from twilio_side import Caller, HttpTransport, InProcessLink

    assert stack.caseline is not None
    target = stack.caseline
    link = InProcessLink(stack.side.emulator)
    rows = []
    open_now = is_open(datetime.now(UTC))
    for index, scenario in enumerate(MIX):
        number = scenario.from_number or f"+1651555{3000 + index}"

        def place(s: Scenario = scenario, n: str = number) -> Any:
            with HttpTransport(target.net.public_base, auth_token=AUTH_TOKEN) as transport:
                return Caller(transport, n, keys=list(s.keys), advisor_policy="answer",
                              account_sid=ACCOUNT_SID,
                              emulator_link=link, max_wait_seconds=15).run()

        result = await asyncio.to_thread(place)
        walker = VirtualCaller(target.net, scenario, number, scenario.keys)
        outcome = await walker.run()
        target.requests_served += len(result.steps) + walker.requests
        target.calls_placed += 2
        rows.append({
            "scenario": scenario.name, "expected": scenario.expect(open_now),
            "simulator": result.outcome, "simulator_requests": len(result.steps),
            "simulator_error": result.error, "walker": outcome,
            "walker_requests": walker.requests, "walker_error": walker.error,
        })
        await stack.settle(5)
    return rows


def smoke_problems(rows: list[dict[str, Any]]) -> list[str]:
    """Scenarios where the driver, the walker and the expectation disagree."""
    problems = []
    for row in rows:
        if row["simulator_error"] or row["walker_error"]:
            problems.append(f"{row['scenario']}: {row['simulator_error'] or row['walker_error']}")
        elif not row["simulator"] == row["walker"] == row["expected"]:
            problems.append(f"{row['scenario']}: simulator {row['simulator']}, walker "
                            f"{row['walker']}, expected {row['expected']}")
        elif row["simulator_requests"] != row["walker_requests"]:
            problems.append(f"{row['scenario']}: simulator made {row['simulator_requests']} "
                            f"webhooks, walker {row['walker_requests']}")
    return problems


# -- the queue test ----------------------------------------------------------------------


async def _wait_until_waiting(stack: Stack, goal: int, timeout: float) -> int:
    """Poll GET /api/queues until `goal` callers wait; the most seen."""
    peak, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        queues = await stack.call_api("GET", "/api/queues")
        peak = max(peak, sum(len(v) for v in queues.values()))
        if peak >= goal:
            break
        await asyncio.sleep(1.0)
    return peak


def _hold_latencies(recorder: Recorder, start: float, stop: float) -> list[float]:
    """Hold cycles (waitUrl requests) answered between two instants, in ms, sorted."""
    return sorted(lat * 1000 for at, lat, kind in
                  zip(recorder.done_at, recorder.latency, recorder.kinds, strict=True)
                  if start <= at <= stop and "wait" in kind)


async def queue_test(stack: Stack, config: Config) -> dict[str, Any]:
    """Callers waiting in queues with no advisor on the line, their waitUrl re-requested as
    Twilio does (each hold cycle's TwiML played in real time): the hold cycle measured with
    `queue_small` waiting, then with `queue_callers`; then one advisor per team comes on:
    how soon the caller at the head of each queue is redirected, and whether all are served
    in the order `/api/queues` listed."""
    callers, small = config.queue_callers, min(config.queue_small, config.queue_callers)
    target = stack.caseline
    assert target is not None
    await stack.all_advisors("offline")
    open_now = is_open(datetime.now(UTC))
    by_name = {s.name: s for s in MIX}
    if open_now:
        mix = (by_name["8 outage, hosted contact"], by_name["2 new case"])
        servers = {"hosting": "A4", "general": "A2"}
    else:
        mix = (by_name["8 outage, hosted contact"], by_name["8 outage, hosted contact 2"])
        servers = {"hosting": "A4"}
    recorder = target.net.recorder
    started = time.monotonic()
    max_wait = 900.0
    holds: dict[int, list[float]] = {}
    hold_spans: dict[int, float] = {}  # seconds each was measured
    tasks: list[asyncio.Task[str]] = []
    board = None
    peak = 0
    for index, goal in enumerate(sorted({small, callers})):
        more, board, _ = await fill_queues(
            target, callers=goal - len(tasks), arrival_rate=config.queue_arrival, mix=mix,
            seed=7 + index, wait_scale=config.queue_wait_scale, max_wait=max_wait, board=board)
        tasks += more
        peak = await _wait_until_waiting(stack, goal, timeout=120)
        # Everyone in: a hold cycle is several seconds, so let one pass before measuring.
        await asyncio.sleep(config.hold_seconds / 2)
        hold_from = time.monotonic()
        await asyncio.sleep(config.hold_seconds)
        if goal == small and callers > small and not config.smoke:
            while len(_hold_latencies(recorder, hold_from, time.monotonic())) < \
                    config.hold_samples_small and (
                    time.monotonic() - hold_from < 5 * config.hold_seconds):
                await asyncio.sleep(1)
        holds[goal] = _hold_latencies(recorder, hold_from, time.monotonic())
        hold_spans[goal] = time.monotonic() - hold_from
    snapshot = await stack.call_api("GET", "/api/queues")
    waiting_now = sum(len(v) for v in snapshot.values())
    fifo_listed = all(
        all(a["waiting_seconds"] >= b["waiting_seconds"] for a, b in pairwise(v))
        for v in snapshot.values()
    )
    stack.side.redirects.clear()
    order = {t: [c["call_sid"] for c in v] for t, v in snapshot.items() if v}
    heads: dict[str, float | None] = {}
    # Whom each freed advisor was given: the desk's rules choose (the highest priority,
    # longest waiting, among the advisor's teams, and for a general advisor also the
    # head of any other team's queue waiting past CASELINE_OVERFLOW_SECONDS), so the
    # caller reached is the one the advisor was claimed for (the PUT's answer), and it
    # must have stood at the head of its team's queue.
    given: dict[str, str] = {}
    released = time.monotonic()
    for team, advisor_id in servers.items():
        if order.get(team):
            freed = time.monotonic()
            served_before = {sid for _, sid in stack.side.redirects}
            answer = await stack.set_advisor(advisor_id, "available")
            head, reached = answer.get("call") or order[team][0], None
            while reached is None and time.monotonic() - freed < 10:
                reached = next((at for at, sid in stack.side.redirects if sid == head), None)
                if reached is None:
                    await asyncio.sleep(0.005)
            heads[team] = None if reached is None else reached - freed
            of = next((t for t, sids in order.items() if head in sids), "?")
            ahead = [sid for sid in order.get(of, [])[:order.get(of, []).index(head)]
                     if sid not in served_before] if of in order else ["?"]
            # 0: the head; 1: the other advisor claimed the head in the same moment.
            given[team] = f"{of} #{len(ahead) + 1}"
    # Served one at a time by one advisor per team; a line that cannot keep up is cut off
    # (those callers count as errors) rather than holding the run for their full wait.
    done, pending = await asyncio.wait(tasks, timeout=config.queue_drain_limit)
    for task in pending:
        task.cancel()
    outcomes = [t.result() if not t.cancelled() and t.exception() is None else "cut off"
                for t in done] + ["cut off"] * len(pending)
    if pending:
        recorder.error(f"{len(pending)} callers still waiting {config.queue_drain_limit:g} s "
                       "after the advisors came on")
    drained = time.monotonic()
    team_of = {sid: team for team, sids in order.items() for sid in sids}
    served: dict[str, list[str]] = {team: [] for team in order}
    redirected_at: dict[str, float] = {}
    for at, sid in stack.side.redirects:
        team = team_of.get(sid)
        if team and sid not in redirected_at:
            redirected_at[sid] = at
            served[team].append(sid)
    swapped = sum(
        sum(1 for a, b in zip(served[t], order[t], strict=False) if a != b) for t in order
    )
    # Out of place: a caller brought over later than someone listed behind them. Two
    # advisors of one queue (a general advisor serving it past the overflow time) are
    # given its first two callers in one moment, in order, and the two REST redirects
    # then reach Twilio in either order: within SIMULTANEOUS_S that is no unfairness.
    out_of_order = 0
    for sids in order.values():
        later = float("inf")
        for sid in reversed(sids):
            at = redirected_at.get(sid, float("inf"))
            if at > later + SIMULTANEOUS_S:
                out_of_order += 1
            later = min(later, at)
    errors = [m for _, m in recorder.errors] + [m for _, m in recorder.flow_errors]
    await stack.all_advisors("available")
    left = await stack.settle(60)
    return {
        "callers": callers, "small": small, "peak_waiting": peak,
        "waiting_at_snapshot": waiting_now,
        "hold": {n: {"requests": len(lat), "rps": len(lat) / hold_spans[n],
                     "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99)}
                 for n, lat in holds.items()},
        "hold_seconds": config.hold_seconds, "wait_scale": config.queue_wait_scale,
        "served_by": servers, "head_reached": heads, "given": given,
        "drain_seconds": drained - released,
        "answered": sum(1 for o in outcomes if o == "advisor"),
        "served_in_order": out_of_order == 0 and all(
            len(served[t]) == len(order[t]) for t in order),
        "out_of_order": out_of_order, "swapped": swapped, "fifo_listed": fifo_listed,
        "queues": {t: len(v) for t, v in order.items()},
        "errors": len(errors), "error_samples": errors[:5],
        "left_after": left, "seconds": drained - started,
    }


# -- the run -------------------------------------------------------------------------------


def combine(results: list[PhaseResult], latencies: list[list[float]]) -> dict[str, Any]:
    """Repetitions of one phase on one side, pooled."""
    seconds = sum(r.seconds for r in results)
    pooled = sorted(x for lat in latencies for x in lat)
    paths: dict[str, list[float]] = {}
    for r in results:
        for path, values in r.by_path.items():
            paths.setdefault(path, []).extend(values)
    by_path = {
        path: {"share": len(values) / max(1, len(pooled)), "p50": percentile(sorted(values), 0.5),
               "p99": percentile(sorted(values), 0.99), "max": max(values)}
        for path, values in sorted(paths.items(), key=lambda kv: -len(kv[1]))
    }
    # Which webhooks make the tail: each one's share of the requests at or above the p99.
    p99 = percentile(pooled, 0.99)
    tail = {path: sum(1 for v in values if v >= p99) for path, values in paths.items()}
    in_tail = max(1, sum(tail.values()))
    slowest = {path: n / in_tail for path, n in sorted(tail.items(), key=lambda kv: -kv[1]) if n}
    redis_runs = [r.extra["redis_per_webhook"] for r in results if "redis_per_webhook" in r.extra]
    commands: dict[str, float] = {}
    for r in results:
        for name, n in dict(r.extra.get("redis_commands") or {}).items():  # type: ignore[call-overload]
            commands[name] = commands.get(name, 0.0) + n / len(results)
    return {
        "by_path": by_path,
        "slowest": slowest,
        "redis_per_webhook": statistics.mean(redis_runs) if redis_runs else None,
        "redis_commands": dict(sorted(commands.items(), key=lambda kv: -kv[1])),
        "rps": sum(r.requests for r in results) / seconds,
        "cps": sum(r.calls for r in results) / seconds,
        "p50": percentile(pooled, 0.5), "p90": percentile(pooled, 0.9),
        "p99": p99, "max": pooled[-1] if pooled else 0.0,
        "errors": sum(r.errors for r in results),
        "server_cpu": statistics.mean(r.server_cpu for r in results),
        "redis_cpu": statistics.mean(r.redis_cpu for r in results),
        "generator_cpu": statistics.mean(r.generator_cpu for r in results),
        "worker_cpu": statistics.mean(r.worker_cpu for r in results),
        "rps_each": [r.rps for r in results],
        "drain_each": [float(r.extra["logs_drain_seconds"]) for r in results  # type: ignore[arg-type]
                       if "logs_drain_seconds" in r.extra],
        "steal_each": [float(r.extra.get("steal", 0.0)) for r in results],  # type: ignore[arg-type]
        "samples": [e for r in results for e in r.error_samples][:5],
    }


async def measured_phase(
    stack: Stack, kind: str, target: Target, config: Config, seed: int
) -> tuple[PhaseResult, list[float]]:
    """One repetition of a phase on one side; its result and raw latencies."""
    before = None if target.ceiling else await stack.redis_commands()
    # Time the host took from the servers' core meanwhile (a VM's steal): a window
    # that lost much of it measured the host, not the code.
    stolen, began = steal_seconds(SERVER_CORE), time.monotonic()
    if kind == "closed":
        result = await closed_loop(target, callers=config.callers, seconds=config.seconds,
                                   warmup=config.warmup, seed=seed)
    else:
        result = await paced(target, rate=config.rate, seconds=config.seconds,
                             warmup=config.warmup, seed=seed, callers=config.paced_callers)
    latencies = result.latencies
    result.extra["steal"] = ((steal_seconds(SERVER_CORE) - stolen)
                             / max(1e-9, time.monotonic() - began))
    if not target.ceiling and stack.worker is not None:
        # The worker catches up before the next phase: each phase pays for its own logs,
        # and the Redis commands below count the logs' share.
        logs = await stack.call_logs_written(target.calls_placed, timeout=120)
        result.extra["logs_drain_seconds"] = logs["drain_seconds"]
        if logs["written"] != logs["calls"]:
            result.errors += 1
            result.error_samples.append(f"call logs: {logs['written']} for {logs['calls']} calls")
    if before is not None:
        after = await stack.redis_commands()
        sent = len(target.net.recorder.latency)
        delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        delta = {name: n for name, n in delta.items() if n > 0 and name != "info"}
        result.extra["redis_per_webhook"] = sum(delta.values()) / max(1, sent)
        result.extra["redis_commands"] = {name: n / max(1, sent) for name, n in delta.items()}
    if not target.ceiling:
        left = await stack.settle()
        if left["waiting"] or left["busy"]:
            result.errors += 1
            result.error_samples.append(f"after the phase: {left}")
    else:
        stack.side.reset()
    return result, latencies


async def run(config: Config, args: argparse.Namespace) -> int:
    """The whole benchmark; the exit status."""
    os.sched_setaffinity(0, {LOAD_CORE})
    directory = Path(tempfile.mkdtemp(prefix="caseline-bench-"))
    stack = Stack(config, directory)
    began = datetime.now(UTC)
    report: dict[str, Any] = {"config": config.__dict__, "began": began.isoformat()}
    memory: list[tuple[int, dict[int, float]]] = []
    ok = False
    try:
        print(f"caseline bench: `caseline serve` {_serve_label(config)}, ceiling "
              f"{config.ceiling.label()}, worker layouts {', '.join(config.layouts) or 'none'}; "
              f"logs in {directory}", flush=True)
        await stack.start()
        assert stack.caseline and stack.ceiling
        report["web_processes"] = len(stack.web_pids())
        rows = await smoke(stack)
        problems = smoke_problems(rows)
        report["smoke"] = rows
        print(f"smoke: {len(rows)} scenarios placed with twilio_side.Caller and the bench "
              f"walker; {len(problems)} disagreement(s)", flush=True)
        for problem in problems:
            print("  " + problem, flush=True)
        if problems and config.smoke:
            return 1
        stack.ceiling.pad = {r["scenario"]: r["simulator_requests"] for r in rows}
        if args.profile:
            return await profile(stack, config)
        memory.append((stack.caseline.requests_served, stack.memory()))
        phases: dict[tuple[str, str], list[tuple[PhaseResult, list[float]]]] = {}
        sides = ["ceiling", *config.layouts] if config.layouts else ["ceiling", ""]
        for kind in ("closed", "paced"):
            if kind not in config.phases:
                continue
            for rep in range(config.reps):
                # Interleaved, and reversed every other repetition, so drift hits all alike.
                for side in sides[:: -1 if rep % 2 else 1]:
                    target = stack.ceiling if side == "ceiling" else stack.caseline
                    if side not in ("ceiling", ""):
                        await stack.place_worker(side)
                    result, latencies = await measured_phase(stack, kind, target, config,
                                                             seed=rep)
                    name = side if side in ("ceiling", "") else f"caseline/{side}"
                    phases.setdefault((kind, name or "caseline"), []).append((result, latencies))
                    print(_line(result, LAYOUTS.get(side, "")), flush=True)
                    if not target.ceiling:
                        memory.append((target.requests_served, stack.memory()))
        report["summary"] = {
            f"{kind}/{side}": combine([r for r, _ in runs], [lat for _, lat in runs])
            for (kind, side), runs in phases.items()
        }
        if config.layouts:
            await stack.place_worker(config.layouts[0])
        if "queue" in config.phases:
            print("queue: filling ...", flush=True)
            queue = await queue_test(stack, config)
            report["queue"] = queue
            print(f"queue: {queue['peak_waiting']} waiting at once, {queue['answered']} "
                  f"answered, in order: {queue['served_in_order']}, errors: {queue['errors']}",
                  flush=True)
            memory.append((stack.caseline.requests_served, stack.memory()))
        workers = max(1, len(stack.web_pids()))
        if "soak" in config.phases:
            goal = config.soak_per_process * workers
            print(f"soak: until caseline has served {goal} webhooks ({workers} web "
                  f"process(es)) ...", flush=True)

            def sample(served: int) -> None:
                memory.append((served, stack.memory()))

            soak_result = await soak(stack.caseline, until_requests=goal,
                                     callers=config.callers, seed=99, sample=sample,
                                     limit_seconds=420)
            await stack.settle()
            report["soak"] = {k: v for k, v in soak_result.__dict__.items()
                              if k != "latencies"}
            print(_line(soak_result), flush=True)
        report["memory"] = memory
        report["retries"] = {t.name: t.net.pool.retries for t in (stack.ceiling, stack.caseline)}
        if config.layouts:
            report["call_logs"] = await stack.call_logs_written(stack.caseline.calls_placed)
            logs = report["call_logs"]
            print(f"call logs: {logs['written']} written for {logs['calls']} calls "
                  f"({logs['drain_seconds']:.1f} s after the load)", flush=True)
        ended = datetime.now(UTC)
        text = render(config, report, began, ended, memory, workers)
        print()
        print(text)
        if not args.no_doc:
            write_doc(text)
            print(f"\nwrote {DOC.relative_to(ROOT)}")
        ok = True
        return 0
    finally:
        await stack.stop()
        if ok:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"(logs kept in {directory})", file=sys.stderr)


def _serve_label(config: Config) -> str:
    """caseline's server settings, as the run's options leave them."""
    if config.workers is None and config.threads is None:
        return f"with its shipped defaults (one process per core x {serve_threads()} threads)"
    return f"--workers {config.workers or 'default'} --threads {config.threads or 'default'}"


def _line(r: PhaseResult, layout: str = "") -> str:
    """One phase, one line, as it finishes."""
    side = f"{r.side} ({layout})" if layout else r.side
    return (f"  {r.phase:<26} {side:<40} {r.rps:7.0f} req/s {r.cps:6.1f} calls/s  "
            f"p50 {r.p50:6.1f}  p90 {r.p90:6.1f}  p99 {r.p99:6.1f} ms  errors {r.errors}  "
            f"server CPU {100 * r.server_cpu:4.0f}%  redis {100 * r.redis_cpu:3.0f}%  "
            f"generator {100 * r.generator_cpu:3.0f}%  worker {100 * r.worker_cpu:3.0f}%"
            + (f"  steal {100 * float(r.extra['steal']):3.0f}%" if "steal" in r.extra else "")
            + (f"  [{'; '.join(r.error_samples[:2])}]" if r.error_samples else ""))


# -- profiling ------------------------------------------------------------------------------


async def profile(stack: Stack, config: Config) -> int:
    """py-spy on caseline's web processes (and its worker, when one runs) during a
    closed-loop phase; top entries."""
    from bench.profile import summarise

    assert stack.caseline and stack.web
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if py_spy is None:
        subprocess.run([str(BIN / "python"), "-m", "pip", "install", "-q", "py-spy"], check=True)
        py_spy = str(BIN / "py-spy")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    seconds = config.seconds
    watched = {"caseline": stack.web.pid}
    if stack.worker is not None:
        watched["worker"] = stack.worker.pid
    spies = {}
    for name, pid in watched.items():
        spies[name] = await asyncio.create_subprocess_exec(
            "taskset", "-c", str(LOAD_CORE), py_spy, "record", "--pid", str(pid),
            "--subprocesses", "--format", "raw", "--full-filenames", "--function", "--gil",
            "--rate", "250", "--nonblocking", "--duration", str(int(seconds + config.warmup)),
            "--output", str(out / f"profile-{name}.txt"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    await asyncio.sleep(1.0)
    result = await closed_loop(stack.caseline, callers=config.callers, seconds=seconds,
                               warmup=config.warmup, seed=1)
    for spy in spies.values():
        await spy.wait()
    print(_line(result, LAYOUTS.get(stack.worker_layout, "")))
    for name in watched:
        text = summarise(out / f"profile-{name}.txt")
        (out / f"profile-{name}-summary.txt").write_text(text + "\n")
        print(f"\n== {name} ==\n{text}")
    return 0


# -- the report -------------------------------------------------------------------------------


def _machine() -> str:
    """CPU model, cores, Python and the versions that matter."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    versions = ", ".join(f"{name} {version(name)}" for name in
                         ("flask", "werkzeug", "gunicorn", "twilio", "redis", "rq", "sqlalchemy"))
    redis_version = subprocess.run([redis_server_binary(), "--version"], capture_output=True,
                                   text=True).stdout.split()[2:3]
    return (f"{model}, {os.cpu_count()} cores, Linux {platform.release()}; "
            f"Python {platform.python_version()}; {versions}; redis-server "
            f"{''.join(redis_version).removeprefix('v=')}")


def _ratio(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.2f}" if ceiling else "-"


def render(
    config: Config, report: dict[str, Any], began: datetime, ended: datetime,
    memory: list[tuple[int, dict[int, float]]], workers: int,
) -> str:
    """The run as Markdown: command, machine, time, tables, checks."""
    summary = report["summary"]
    local = began.astimezone(CENTRAL)
    open_now = is_open(began)
    command = "make bench" if not (config.quick or config.smoke) else \
        f".venv/bin/python bench/run.py {'--quick' if config.quick else '--smoke'}"
    processes = report.get("web_processes", 0)
    caseline_settings = (
        f"`caseline serve`'s shipped defaults: {processes} process(es) (one per core it "
        f"runs on) x {serve_threads()} threads (gthread)"
        if config.workers is None and config.threads is None else
        f"`caseline serve --workers {config.workers} --threads {config.threads}`")
    layouts = "; ".join(
        f"{LAYOUTS[layout]}: " + (
            "`caseline worker` on core 1 with the servers and Redis (at nice "
            f"{WORKER_NICE}, as it runs itself)" if layout == "servers"
            else "`caseline worker` on core 1 at nice 0" if layout == "servers-nice0"
            else f"`caseline worker` on core 1 at nice {WORKER_NICE} under SCHED_IDLE"
            if layout == "servers-idle"
            else f"`caseline worker` on core {WORKER_CORE}" + (
                " at nice 19 (this machine has two cores: it shares the generator's, taking "
                "what the generator leaves)" if WORKER_CORE == LOAD_CORE else ""))
        for layout in config.layouts) or "no `caseline worker`"
    lines = [
        f"Command: `{command}`  ",
        f"Run: {began:%Y-%m-%d %H:%M} UTC ({local:%A %H:%M} in Chicago: "
        f"{'business hours' if open_now else 'outside business hours'}), "
        f"{(ended - began).total_seconds() / 60:.1f} minutes  ",
        f"Machine: {_machine()}  ",
        f"Servers, pinned to core {SERVER_CORE} with Redis (load generator and Twilio's REST "
        f"side on core {LOAD_CORE}): the ceiling under its best settings found, gunicorn "
        f"{config.ceiling.label()}; caseline under {caseline_settings}.  ",
        f"Layouts: {layouts}.  ",
        f"Each measured window {config.seconds:g} s after {config.warmup:g} s of warm-up, "
        f"{config.reps} repetition(s) per side, interleaved (ceiling and each layout); "
        f"latencies pooled over repetitions; after each caseline window the worker catches "
        f"up on the call logs before the next.",
    ]
    checks: list[tuple[str, bool, str]] = []
    if summary:
        lines += [
            "",
            "| phase | side | webhook req/s | calls/s | p50 ms | p90 ms | p99 ms | errors "
            "| server CPU | worker CPU | Redis CPU | generator CPU |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    sides = [f"caseline/{layout}" for layout in config.layouts] or ["caseline"]
    for kind, label in (("closed", f"closed loop, {config.callers} callers"),
                        ("paced", f"paced, {config.rate:g} req/s")):
        if f"{kind}/ceiling" not in summary:
            continue
        ceiling = summary[f"{kind}/ceiling"]
        rows = [("ceiling", ceiling)] + [
            (f"caseline, {LAYOUTS.get(side.split('/')[-1], 'no worker')}",
             summary[f"{kind}/{side}"]) for side in sides if f"{kind}/{side}" in summary]
        for name, row in rows:
            mine = name != "ceiling"
            worker_cpu = f"{100 * row['worker_cpu']:.0f}%" if mine else "-"
            redis_cpu = f"{100 * row['redis_cpu']:.0f}%" if mine else "-"
            lines.append(
                f"| {label} | {name} | {row['rps']:.0f} | {row['cps']:.1f} | {row['p50']:.1f} | "
                f"{row['p90']:.1f} | {row['p99']:.1f} | {row['errors']} | "
                f"{100 * row['server_cpu']:.0f}% | {worker_cpu} | {redis_cpu} | "
                f"{100 * row['generator_cpu']:.0f}% |")
        for name, row in rows[1:]:
            lines.append(
                f"| {label} | **{name} / ceiling** | **{_ratio(row['rps'], ceiling['rps'])}** "
                f"| {_ratio(row['cps'], ceiling['cps'])} "
                f"| {_ratio(row['p50'], ceiling['p50'])} "
                f"| {_ratio(row['p90'], ceiling['p90'])} "
                f"| **{_ratio(row['p99'], ceiling['p99'])}** "
                f"| | {_ratio(row['server_cpu'], ceiling['server_cpu'])} | | | |")
        for side in sides:
            row = summary.get(f"{kind}/{side}")
            if row is None:
                continue
            where = LAYOUTS.get(side.split("/")[-1], "no worker")
            if kind == "closed":
                checks += [
                    (f"{where}: {config.callers} callers, webhook req/s >= 0.5 of the ceiling's",
                     row["rps"] >= 0.5 * ceiling["rps"], f"{row['rps'] / ceiling['rps']:.2f}"),
                    (f"{where}: {config.callers} callers, p99 <= 3x the ceiling's",
                     row["p99"] <= 3 * ceiling["p99"], f"{row['p99'] / ceiling['p99']:.2f}x"),
                    (f"{where}: {config.callers} callers, zero errors", row["errors"] == 0,
                     str(row["errors"])),
                ]
            else:
                checks += [
                    (f"{where}: {config.rate:g} req/s, p99 <= 4x the ceiling's and <= 25 ms",
                     row["p99"] <= 4 * ceiling["p99"] and row["p99"] <= 25,
                     f"{row['p99']:.1f} ms, {row['p99'] / ceiling['p99']:.2f}x"),
                    (f"{where}: {config.rate:g} req/s, zero errors", row["errors"] == 0,
                     str(row["errors"])),
                ]
    if summary:
        lines += ["", "Webhook req/s of each repetition: " + "; ".join(
            f"{key} {', '.join(f'{x:.0f}' for x in row['rps_each'])}"
            for key, row in summary.items()) + ".  ",
            "Seconds the worker took to catch up on the call logs after each caseline window "
            "(0: it kept up): " + "; ".join(
                f"{key} {', '.join(f'{x:.0f}' for x in row['drain_each'])}"
                for key, row in summary.items() if row.get("drain_each")) + ".  ",
            "Share of each repetition's time the host took from the servers' core (the "
            "VM's steal, /proc/stat; near 0 on a quiet host): " + "; ".join(
                f"{key} {', '.join(f'{100 * x:.0f}%' for x in row['steal_each'])}"
                for key, row in summary.items() if row.get("steal_each")) + "."]
    headline = sides[0]
    closed, paced_ = summary.get(f"closed/{headline}"), summary.get(f"paced/{headline}")

    if closed and paced_:
        lines += [
            "",
            f"caseline's webhooks one by one ({LAYOUTS.get(headline.split('/')[-1], 'no worker')}"
            "; share of all requests in the closed loop; latency in each phase):",
            "",
            "| webhook | share | closed p50 ms | closed p99 ms | paced p50 ms | paced p99 ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for path, row in closed["by_path"].items():
            other = paced_["by_path"].get(path, {})
            lines.append(
                f"| `{path}` | {100 * row['share']:.1f}% | {row['p50']:.1f} | {row['p99']:.1f} "
                f"| {other.get('p50', 0):.1f} | {other.get('p99', 0):.1f} |")
        slowest = ", ".join(f"`{path}` {100 * share:.0f}%"
                            for path, share in list(paced_.get("slowest", {}).items())[:5])
        if slowest:
            lines += ["", f"The paced phase's slowest 1% (at or above its p99, "
                      f"{paced_['p99']:.1f} ms), by webhook: {slowest}."]
        if closed.get("redis_per_webhook") is not None:
            top = ", ".join(f"{name} {n:.2f}" for name, n in
                            list(closed["redis_commands"].items())[:8])
            lines += ["", f"Redis commands per webhook (closed loop; those run inside scripts "
                      f"count, and so does the worker's RQ traffic): "
                      f"{closed['redis_per_webhook']:.1f} ({top})."]
    queue = report.get("queue")
    if queue:
        teams = ", ".join(f"{t} {n}" for t, n in queue["queues"].items())
        servers = ", ".join(f"{a} for {t}" for t, a in queue["served_by"].items())
        small, large = queue["hold"].get(queue["small"]), queue["hold"].get(queue["callers"])
        given = queue.get("given", {})
        heads = ", ".join(f"{t} {'never' if s is None else f'{1000 * s:.0f} ms'}"
                          f" (given {given.get(t, '?')} waiting)"
                          for t, s in queue["head_reached"].items())
        where = LAYOUTS.get(config.layouts[0], "") if config.layouts else "no worker"
        lines += [
            "",
            f"Queues ({where}): "
            f"callers join at {config.queue_arrival:g}/s with no advisor on the line, each "
            f"re-requesting its waitUrl when the hold cycle's TwiML has played (at "
            f"{queue['wait_scale']:g}x the walker's real-time pace: speech 2.5 words/s, 5 s "
            f"per <Play>); "
            f"{queue['peak_waiting']} waiting at once ({teams}).",
            "",
            "| waiting | hold cycles/s | hold cycles measured | p50 ms | p99 ms |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for n, row in sorted(queue["hold"].items()):
            lines.append(f"| {n} | {row['rps']:.0f} | {row['requests']} | {row['p50']:.1f} | "
                         f"{row['p99']:.1f} |")
        lines += [
            "",
            f"Then one advisor per team came on ({servers}): the caller each was given by "
            f"the desk's rules (the highest priority and longest waiting of their teams, "
            f"and for a general advisor the head of any queue waiting past the overflow "
            f"time) was redirected after {heads}; {queue['answered']}/{queue['callers']} "
            f"answered in {queue['drain_seconds']:.1f} s, served in exactly the order "
            f"`/api/queues` listed: {'yes' if queue['served_in_order'] else 'NO'} "
            f"({queue['out_of_order']} out of place by more than {1000 * SIMULTANEOUS_S:.0f} "
            f"ms; in the raw order the redirects reached Twilio, {queue.get('swapped', 0)} "
            f"positions differ, two advisors of one queue being given callers in one "
            f"moment); listed first come, first served: "
            f"{'yes' if queue['fifo_listed'] else 'NO'}; errors: {queue['errors']}.",
        ]
        checks.append((
            f"{queue['callers']} callers waiting at once, no errors, each served in order",
            queue["peak_waiting"] >= queue["callers"] and queue["errors"] == 0
            and queue["served_in_order"] and queue["answered"] == queue["callers"],
            f"{queue['peak_waiting']} waiting, {queue['answered']} answered in order, "
            f"{queue['errors']} errors"))
        if small and large and queue["small"] != queue["callers"]:
            checks.append((
                f"hold cycle p99 with {queue['callers']} waiting <= 2x its p99 with "
                f"{queue['small']}", large["p99"] <= 2 * small["p99"],
                f"{large['p99']:.1f} ms, {small['p99']:.1f} ms: "
                f"{large['p99'] / small['p99']:.2f}x" if small["p99"] else "-"))
        reached = list(queue["head_reached"].values())
        at_heads = all(place.endswith(("#1", "#2"))
                       for place in given.values())
        checks.append((
            "a freed advisor reaches the caller at the head of a queue within 1 s",
            bool(reached) and at_heads and all(s is not None and s <= 1.0 for s in reached),
            heads))
    if "soak" in report and memory:
        pids = sorted({pid for _, sample in memory for pid in sample})
        half = config.soak_per_process * workers // 2
        full = config.soak_per_process * workers

        def at(goal: int) -> tuple[int, dict[int, float]]:
            return next(((n, m) for n, m in memory if n >= goal), memory[-1])

        first, last = at(half), at(full)
        lines += [
            "",
            f"Memory: resident MiB of each web process as caseline's webhooks add up "
            f"({workers} process(es) share them):",
            "",
            "| webhooks served | " + " | ".join(f"pid {p}" for p in pids) + " |",
            "| ---: | " + " | ".join("---:" for _ in pids) + " |",
        ]
        step = max(1, len(memory) // 12)
        shown = memory[::step] + ([memory[-1]] if (len(memory) - 1) % step else [])
        for served, sample in shown:
            lines.append(f"| {served} | "
                         + " | ".join(f"{sample.get(p, 0):.1f}" for p in pids) + " |")
        growth = max((last[1].get(p, 0) / first[1][p] - 1) for p in first[1] if first[1][p])
        lines += ["", f"Growth from {first[0]} to {last[0]} webhooks (about {first[0] // workers}"
                  f" and {last[0] // workers} per process): {100 * growth:+.1f}% at most."]
        checks.append((
            f"web process memory after {full // workers} webhooks within 10% of after "
            f"{half // workers}", growth <= 0.10, f"{100 * growth:+.1f}%"))
    logs = report.get("call_logs")
    if logs:
        lines += ["", f"Call logs: {logs['written']} written by the worker for the "
                  f"{logs['calls']} calls placed on caseline (the last "
                  f"{logs['drain_seconds']:.0f} s after the load ended)."]
    retries = report.get("retries")
    if retries:
        lines += ["", "Requests sent again because the server had just closed an idle keep-alive "
                  "connection (never read; see `bench/wire.py`): " + ", ".join(
                      f"{name} {n}" for name, n in retries.items()) + "."]
    if checks:
        lines += ["", "| check | result | |", "| --- | --- | --- |"]
        lines += [f"| {name} | {'PASS' if passed else '**FAIL**'} | {detail} |"
                  for name, passed, detail in checks]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    """Put the generated block into docs/benchmarks.md, keeping the prose around it."""
    DOC.parent.mkdir(exist_ok=True)
    current = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in current or END not in current:
        current = current.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute run")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy on caseline's web processes during a closed-loop phase")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--callers", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--queue-callers", type=int)
    parser.add_argument("--soak-requests", type=int, help="webhooks per web process")
    parser.add_argument("--workers", type=int, help="web processes (default: caseline serve's)")
    parser.add_argument("--threads", type=int, help="threads per process (default: caseline's)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds at tiny load, every phase but the soak (`make "
                             "test` runs it: the bench still starts, places calls both sides "
                             "and prints its table); implies --no-doc")
    parser.add_argument("--layouts", default="servers,own",
                        help="where `caseline worker` runs, each measured side by side: "
                             "servers (on the servers' core: the headline), own (its own "
                             "core), or none")
    parser.add_argument("--ceiling", metavar="CLASS:PROCESSES:THREADS",
                        help="the ceiling's gunicorn settings (default: the best found, "
                             f"{CEILING_SETTINGS.worker_class}:{CEILING_SETTINGS.workers}:"
                             f"{CEILING_SETTINGS.threads}; gevent's third field is connections)")
    parser.add_argument("--patches", default="", help=argparse.SUPPRESS)  # bench.patched
    parser.add_argument("--rest-latency-ms", type=float, default=0.0,
                        help="how long Twilio's REST side takes to answer a redirect")
    parser.add_argument("--phases", default="closed,paced,queue,soak",
                        help="which phases to run (comma-separated)")
    args = parser.parse_args(argv)
    config = Config()
    if args.quick:
        config = Config(reps=1, seconds=8, warmup=2, queue_callers=1000, hold_seconds=10,
                        soak_per_process=20_000, quick=True)
    if args.smoke:
        config = Config(reps=1, seconds=1.5, warmup=0.5, callers=4, rate=40, paced_callers=4,
                        queue_callers=20, queue_small=5, queue_wait_scale=0.1,
                        hold_seconds=1.5, smoke=True)
        args.no_doc = True
        if args.phases == parser.get_default("phases"):
            args.phases = "closed,paced,queue"
    for name in ("reps", "seconds", "callers", "rate", "queue_callers", "workers", "threads"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    config.layouts = tuple(x.strip() for x in args.layouts.split(",")
                           if x.strip() and x.strip() != "none")
    unknown = [x for x in config.layouts if x not in LAYOUTS]
    if unknown:
        parser.error(f"unknown layout(s): {', '.join(unknown)}")
    if args.ceiling:
        kind, processes, per = args.ceiling.split(":")
        config.ceiling = (ServerSettings(kind, int(processes), connections=int(per))
                          if kind == "gevent" else ServerSettings(kind, int(processes), int(per)))
    config.phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    config.patches = args.patches
    config.rest_latency = args.rest_latency_ms / 1000
    if args.soak_requests is not None:
        config.soak_per_process = args.soak_requests
    return asyncio.run(run(config, args))


if __name__ == "__main__":
    sys.exit(main())
