"""One instance of the line against two, side by side in one run.

    .venv/bin/python bench/instances.py                  # 3 rounds of 10 s closed loops
    .venv/bin/python bench/instances.py --workers 1 --threads 4 --reps 3 --seconds 10

One stack (`bench.run.Stack`: Redis, a fresh SQLite database with the demo
directory, every advisor available, Twilio's REST side on the generator's
loop), then two `caseline serve` beside it, each its own gunicorn master, port
and instance folder, with the same Redis, database and PUBLIC_BASE_URL, as two
hosts behind one load balancer; both on a Tuesday-morning clock
(`tests.frozen_clock`), so calls reach advisors and queues whatever the hour of
the run. "One instance" drives the first alone. The "two
instances" side spreads webhooks over both round-robin, request by request
(any webhook of a call may land on either, as behind a balancer without
stickiness). Closed loops (32 callers placing call after call) alternate
between the sides, so run-to-run noise hits both alike. Both servers and Redis
are pinned to the servers' core, the generator to the other, as in
`bench/run.py`: on this two-core machine the comparison shows what a second
instance costs or gains on the same CPU, not what a second host adds.
Prints one Markdown row per side.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import time_machine

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.callers import Net  # noqa: E402
from bench.phases import Target  # noqa: E402
from bench.procs import free_port, wait_for_port  # noqa: E402
from bench.run import (  # noqa: E402
    ACCOUNT_SID,
    AUTH_TOKEN,
    BIN,
    LOAD_CORE,
    SERVER_CORE,
    Config,
    Stack,
    measured_phase,
)
from bench.wire import HttpPool  # noqa: E402

# A Tuesday, 10:00 in Chicago (the tests' clock): the desk is open.
OPEN = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


class Balancer:
    """Round-robin over several `HttpPool`s, request by request (a load balancer)."""

    def __init__(self, pools: list[HttpPool]) -> None:
        """Spread requests over `pools` in turn."""
        self.pools = pools
        self._next = itertools.cycle(pools)
        self.sent = [0] * len(pools)

    async def request(self, method: str, target: str,
                      headers: Iterable[tuple[str, str]] = (),
                      body: bytes = b"") -> tuple[int, bytes, float]:
        """Send to the next pool: (status, body, seconds)."""
        pool = next(self._next)
        self.sent[self.pools.index(pool)] += 1
        return await pool.request(method, target, headers, body)

    @property
    def retries(self) -> int:
        """Requests sent again on a fresh connection, all pools together."""
        return sum(p.retries for p in self.pools)


async def compare(config: Config, reps: int) -> None:
    """Start the stack and the second instance, alternate closed loops, print rows."""
    directory = Path(tempfile.mkdtemp(prefix="caseline-instances-"))
    stack = Stack(config, directory)
    try:
        await stack.start()
        size = max(64, config.callers * 2)
        ports = [free_port(), free_port()]
        public = f"http://127.0.0.1:{ports[0]}"  # both behind one address, as behind a balancer
        servers = []
        for n, port in enumerate(ports):
            # The virtual callers post no StirVerstat: trust caller ID as a trial line does.
            env = dict(stack.env(public), CASELINE_INSTANCE_PATH=str(directory / f"i{n}"),
                       PYTHONPATH=str(ROOT), CASELINE_CALLER_ID_TRUST="any")
            servers.append(stack.services.start(
                f"instance-{n}", [str(BIN / "python"), "-m", "tests.frozen_clock",
                                  OPEN.isoformat(), "serve", "--port", str(port),
                                  "--workers", str(config.workers),
                                  "--threads", str(config.threads)],
                env, core=SERVER_CORE, cwd=ROOT))
        for port, server in zip(ports, servers, strict=True):
            await asyncio.to_thread(wait_for_port, port, 60, server)
        one = Target("one instance", Net(HttpPool("127.0.0.1", ports[0], size), public,
                                         AUTH_TOKEN, ACCOUNT_SID, stack.side, stack.recorder),
                     servers[:1], redis=stack.redis)
        balancer = Balancer([HttpPool("127.0.0.1", port, size) for port in ports])
        two = Target("two instances",
                     Net(balancer, public, AUTH_TOKEN, ACCOUNT_SID,  # type: ignore[arg-type]
                         stack.side, stack.recorder),
                     servers, redis=stack.redis)
        results: dict[str, list] = {one.name: [], two.name: []}
        for rep in range(reps):
            for target in (one, two) if rep % 2 == 0 else (two, one):
                result, _ = await measured_phase(stack, "closed", target, config, seed=rep)
                results[target.name].append(result)
                print(f"  {target.name}: {result.rps:.0f} webhooks/s, {result.calls} calls, "
                      f"p99 {result.p99:.1f} ms, errors {result.errors} "
                      f"{result.error_samples[:3] or ''}", file=sys.stderr, flush=True)
        print("| side | web processes | webhooks/s | calls/s | p50 ms | p99 ms | server CPU "
              "| Redis CPU | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: |")
        for name, runs in results.items():
            seconds = sum(r.seconds for r in runs)
            latencies = sorted(x for r in runs for x in r.latencies)
            p50 = latencies[len(latencies) // 2] if latencies else 0.0
            p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0.0
            processes = config.workers * (2 if name == two.name else 1)
            print(f"| {name} | {processes} x {config.threads} threads "
                  f"| {sum(r.requests for r in runs) / seconds:.0f} "
                  f"| {sum(r.calls for r in runs) / seconds:.1f} | {p50:.1f} | {p99:.1f} "
                  f"| {100 * sum(r.server_cpu for r in runs) / len(runs):.0f}% "
                  f"| {100 * sum(r.redis_cpu for r in runs) / len(runs):.0f}% "
                  f"| {sum(r.errors for r in runs)} |", flush=True)
        print(f"(two instances: requests per instance {balancer.sent})", flush=True)
    finally:
        await stack.stop()


def main() -> None:
    """Parse the options and run the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="web processes per instance")
    parser.add_argument("--threads", type=int, default=4, help="threads per web process")
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CORE})
    config = Config(seconds=args.seconds, warmup=2, worker="off", workers=args.workers,
                    threads=args.threads, phases=("closed",))
    # The desk is open (the servers and this generator, which checks each call's outcome
    # against the hour, both travel there): callers reach advisors and queues.
    with time_machine.travel(OPEN, tick=True):
        asyncio.run(compare(config, args.reps))


if __name__ == "__main__":
    main()
