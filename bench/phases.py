"""The load shapes: closed loop, paced, a thousand waiting callers, and a soak.

Each phase drives one side (caseline or the ceiling) through a `Target` and
returns a `PhaseResult`: throughput, latency percentiles and errors over the
measured window, and the CPU the side's processes spent in it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bench.callers import (
    MIX,
    Net,
    Pacer,
    QueueBoard,
    Recorder,
    Scenario,
    VirtualCaller,
    unknown_number,
)
from bench.procs import Service, cpu_seconds
from config.hours import is_open


@dataclass
class Target:
    """One side under test: how to reach it and which processes are its server."""

    name: str
    net: Net
    servers: list[Service]
    redis: Service | None = None
    background: list[Service] = field(default_factory=list)  # `caseline worker`
    ceiling: bool = False
    pad: dict[str, int] = field(default_factory=dict)  # ceiling: webhooks per scenario
    requests_served: int = 0
    calls_placed: int = 0

    def caller(self, scenario: Scenario, rng: random.Random, **kwargs: object) -> VirtualCaller:
        """A virtual caller for one call of `scenario` on this side."""
        number = scenario.from_number or unknown_number(rng)
        if self.ceiling:
            # The ceiling answers every webhook with the same Gather: the caller presses
            # keys until the call has made as many webhooks as caseline's would.
            keys = ["1"] * max(1, self.pad.get(scenario.name, 5) - 2)
            return VirtualCaller(self.net, scenario, number, keys, **kwargs)  # type: ignore[arg-type]
        return VirtualCaller(self.net, scenario, number, scenario.keys, **kwargs)  # type: ignore[arg-type]

    def expected(self, scenario: Scenario, open_now: bool) -> str:
        """How a call of `scenario` should end on this side."""
        return "hangup" if self.ceiling else scenario.expect(open_now)


@dataclass
class PhaseResult:
    """What one phase measured."""

    phase: str
    side: str
    seconds: float
    requests: int
    calls: int
    p50: float
    p90: float
    p99: float
    p999: float
    max_ms: float
    errors: int
    server_cpu: float  # cores (1.0 = one core busy)
    redis_cpu: float
    generator_cpu: float
    worker_cpu: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list, repr=False)  # ms, in the window
    by_path: dict[str, list[float]] = field(default_factory=dict, repr=False)

    @property
    def rps(self) -> float:
        """Webhook requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cps(self) -> float:
        """Calls completed per second."""
        return self.calls / self.seconds if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted `values`, nearest rank; 0 for none."""
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, int(round(q * len(values) + 0.5)) - 1))
    return values[index]


class _Meter:
    """CPU of the side's servers, Redis and this process between two instants."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.t0 = time.monotonic()
        self.server0 = sum(s.cpu() for s in target.servers)
        self.redis0 = target.redis.cpu() if target.redis else 0.0
        self.self0 = cpu_seconds(_self_pid(), reaped=False)
        self.worker0 = sum(s.cpu() for s in target.background)

    def stop(self) -> tuple[float, float, float, float, float]:
        """(seconds, server cores, redis cores, generator cores, worker cores)."""
        seconds = time.monotonic() - self.t0
        server = sum(s.cpu() for s in self.target.servers) - self.server0
        redis_cpu = (self.target.redis.cpu() if self.target.redis else 0.0) - self.redis0
        own = cpu_seconds(_self_pid(), reaped=False) - self.self0
        worker = sum(s.cpu() for s in self.target.background) - self.worker0
        return seconds, server / seconds, redis_cpu / seconds, own / seconds, worker / seconds


def _self_pid() -> int:
    import os

    return os.getpid()


def pick(rng: random.Random, mix: tuple[Scenario, ...] = MIX) -> Scenario:
    """A scenario drawn by weight."""
    return rng.choices(mix, weights=[s.weight for s in mix])[0]


async def _place(
    target: Target, scenario: Scenario, rng: random.Random, recorder: Recorder, **kwargs: object
) -> str:
    """One call; a flow error is recorded when it ends otherwise than expected."""
    open_now = is_open(datetime.now(UTC))
    caller = target.caller(scenario, rng, **kwargs)
    outcome = await caller.run()
    expected = target.expected(scenario, open_now)
    error = caller.error
    # (An outcome is only held against the call if the clock did not cross 06:00 or 18:00.)
    if error is None and outcome != expected and is_open(datetime.now(UTC)) == open_now:
        error = f"ended {outcome}, expected {expected}"
    recorder.call(scenario.name, outcome, caller.requests, error)
    target.requests_served += caller.requests
    target.calls_placed += 1
    return outcome


def _summarise(
    phase: str, target: Target, recorder: Recorder, window: tuple[float, float],
    cpu: tuple[float, float, float, float, float],
) -> PhaseResult:
    """The phase's numbers over the measured window (errors over the whole phase)."""
    start, stop = window
    latencies: list[float] = []
    by_path: dict[str, list[float]] = {}
    for at, lat, path in zip(recorder.done_at, recorder.latency, recorder.kinds, strict=True):
        if start <= at <= stop:
            latencies.append(lat * 1000)
            by_path.setdefault(path, []).append(lat * 1000)
    latencies.sort()
    calls = sum(1 for at, *_ in recorder.calls if start <= at <= stop)
    errors = [m for _, m in recorder.errors] + [m for _, m in recorder.flow_errors]
    seconds, server, redis_cpu, own, worker = cpu
    return PhaseResult(
        phase=phase, side=target.name, seconds=stop - start, requests=len(latencies),
        calls=calls, p50=percentile(latencies, 0.50), p90=percentile(latencies, 0.90),
        p99=percentile(latencies, 0.99), p999=percentile(latencies, 0.999),
        max_ms=latencies[-1] if latencies else 0.0, errors=len(errors),
        server_cpu=server, redis_cpu=redis_cpu, generator_cpu=own, worker_cpu=worker,
        error_samples=errors[:5], latencies=latencies, by_path=by_path,
    )


async def closed_loop(
    target: Target, *, callers: int, seconds: float, warmup: float, seed: int,
    wait_scale: float = 0.1,
) -> PhaseResult:
    """`callers` virtual callers, each placing call after call with no pause."""
    recorder = target.net.recorder
    recorder.clear()
    target.net.pacer = None
    rng = random.Random(seed)
    started = time.monotonic()
    measure_from, stop_at = started + warmup, started + warmup + seconds

    async def one() -> None:
        while time.monotonic() < stop_at:
            await _place(target, pick(rng), rng, recorder, wait_scale=wait_scale)

    tasks = [asyncio.create_task(one()) for _ in range(callers)]
    await asyncio.sleep(warmup)
    meter = _Meter(target)
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    cpu = meter.stop()
    await asyncio.gather(*tasks)
    return _summarise(f"closed loop, {callers} callers", target, recorder,
                      (measure_from, stop_at), cpu)


async def paced(
    target: Target, *, rate: float, seconds: float, warmup: float, seed: int,
    callers: int = 64, wait_scale: float = 0.1,
) -> PhaseResult:
    """Webhooks sent at `rate` per second (a shared pacer), by up to `callers` calls at once."""
    recorder = target.net.recorder
    recorder.clear()
    target.net.pacer = Pacer(rate)
    rng = random.Random(seed)
    started = time.monotonic()
    measure_from, stop_at = started + warmup, started + warmup + seconds

    async def one() -> None:
        while time.monotonic() < stop_at:
            await _place(target, pick(rng), rng, recorder, wait_scale=wait_scale)

    try:
        tasks = [asyncio.create_task(one()) for _ in range(callers)]
        await asyncio.sleep(warmup)
        meter = _Meter(target)
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        cpu = meter.stop()
        await asyncio.gather(*tasks)
    finally:
        target.net.pacer = None
    result = _summarise(f"paced, {rate:g} req/s", target, recorder, (measure_from, stop_at), cpu)
    result.extra["target_rps"] = rate
    return result


async def soak(
    target: Target, *, until_requests: int, callers: int, seed: int,
    sample: Callable[[int], None], every: int = 5000, limit_seconds: float = 600,
) -> PhaseResult:
    """Closed loop until the side has served `until_requests` webhooks since it started;
    `sample(served)` is called every `every` requests (memory readings)."""
    recorder = target.net.recorder
    recorder.clear()
    target.net.pacer = None
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + limit_seconds
    meter = _Meter(target)
    next_sample = (target.requests_served // every + 1) * every

    async def one() -> None:
        while target.requests_served < until_requests and time.monotonic() < deadline:
            await _place(target, pick(rng), rng, recorder)

    async def watch() -> None:
        nonlocal next_sample
        while any(not t.done() for t in tasks):
            if target.requests_served >= next_sample:
                sample(target.requests_served)
                next_sample += every
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(one()) for _ in range(callers)]
    await asyncio.gather(watch(), *tasks)
    cpu = meter.stop()
    sample(target.requests_served)
    return _summarise("soak (memory)", target, recorder, (started, time.monotonic()), cpu)


async def fill_queues(
    target: Target, *, callers: int, arrival_rate: float, mix: tuple[Scenario, ...],
    seed: int, wait_scale: float, max_wait: float, board: QueueBoard | None = None,
) -> tuple[list[asyncio.Task[str]], QueueBoard, dict[str, float]]:
    """Start `callers` calls at `arrival_rate` calls/s; they wait in queues (no advisor).
    With `board`, they join callers already waiting (the recorder keeps their requests)."""
    if board is None:
        target.net.recorder.clear()
        board = QueueBoard()
    target.net.pacer = None
    rng = random.Random(seed)
    tasks: list[asyncio.Task[str]] = []
    started = time.monotonic()
    for index in range(callers):
        scenario = pick(rng, mix)
        tasks.append(asyncio.create_task(_place(
            target, scenario, rng, target.net.recorder, wait_scale=wait_scale,
            max_wait=max_wait, queues=board,
        )))
        delay = started + (index + 1) / arrival_rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return tasks, board, {"started": started}
