"""The web's CPU per Redis round trip: redis-py's own command and script paths next to
a web thread's (`directory.redis_client.ThreadClient`, `directory.scripts.script`),
side by side in one run, against a local redis-server over a unix socket (as the
bench and the embedded Redis reach it).

    .venv/bin/python bench/round_trips.py [--commands 20000] [--rounds 5]

Client CPU only (`time.process_time`: Redis's own time is not in it), in
microseconds per command, the median of the rounds; the paths alternate within
each round, so a slower moment of the machine hits all of them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from caseline.embedded_redis import start_server, wait_until_up  # noqa: E402
from directory.redis_client import connection_of_its_own  # noqa: E402
from directory.scripts import script  # noqa: E402

# The shape of the live-call check every webhook makes (routing.replies._ADMIT).
SOURCE = "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end return 0"


def per_command(run: Callable[[], object], commands: int) -> float:
    """Client CPU per call of `run`, in microseconds."""
    run()
    started = time.process_time()
    for _ in range(commands):
        run()
    return 1e6 * (time.process_time() - started) / commands


def main() -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="caseline-round-trips-"))
    socket = folder / "redis.sock"
    server = start_server(folder, socket=socket)
    try:
        pool = redis.ConnectionPool(path=str(socket),
                                    connection_class=redis.UnixDomainSocketConnection,
                                    decode_responses=True)
        # The socket file appears before the server listens on it: wait for a PING.
        wait_until_up(f"unix://{socket}")
        stock = redis.Redis(connection_pool=pool, single_connection_client=True)
        mine = connection_of_its_own(redis.Redis(connection_pool=pool))
        stock.set("call", "1")
        stock_script = stock.register_script(SOURCE)
        our_script = script(mine, SOURCE)
        paths: dict[str, Callable[[], object]] = {
            "GET, redis-py (one connection of its own)": lambda: stock.get("call"),
            "GET, a web thread's client": lambda: mine.get("call"),
            "script, redis-py's Script": lambda: stock_script(keys=["call"], client=stock),
            "script, the registry's, a web thread's client":
                lambda: our_script(keys=["call"], client=mine),
        }
        results: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, run in paths.items():
                results[name].append(per_command(run, args.commands))
        print("| path | client CPU per command, us (median of rounds) | rounds |")
        print("| --- | ---: | --- |")
        for name, values in results.items():
            rounds = ", ".join(f"{v:.1f}" for v in values)
            print(f"| {name} | {statistics.median(values):.1f} | {rounds} |")
        stock.close()
        mine.close()
        pool.disconnect()
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
