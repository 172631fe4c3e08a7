"""What waiting for a replica costs a webhook (docs/deploy.md, "What a failover can lose").

    .venv/bin/python bench/replica_wait.py        # ~5 s; needs Debian's redis-server/-sentinel

Starts a primary, a replica and three sentinels on loopback (the failover drill's
group, `tests.redis_servers`), then times 2,000 plain `SET`s against 2,000 of
`directory.redis_client.wait_for_replicas` (a marker write and `WAIT 1`) through a
`redis+sentinel://` client, and prints the median and p99 of each in milliseconds.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from directory.redis_client import connect_redis, wait_for_replicas  # noqa: E402
from tests.redis_servers import sentinel_group  # noqa: E402

ROUNDS = 2000


def quantile_ms(samples: list[float], share: float) -> float:
    """The `share` quantile of `samples` (seconds), in milliseconds."""
    return sorted(samples)[int(len(samples) * share)] * 1000


def main() -> None:
    """Time SET against the marker write + WAIT, interleaved."""
    with tempfile.TemporaryDirectory() as folder, sentinel_group(Path(folder)) as group:
        r = connect_redis(group.url)
        for _ in range(200):  # warm up: connections, the replica's link
            r.set("bench:x", "1")
            wait_for_replicas(r)
        plain: list[float] = []
        waited: list[float] = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            r.set("bench:x", "1")
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            if wait_for_replicas(r) != 1:
                raise SystemExit("the replica did not acknowledge")
            waited.append(time.perf_counter() - started)
        r.close()
    print(f"SET: p50 {quantile_ms(plain, .5):.3f} ms, p99 {quantile_ms(plain, .99):.3f} ms; "
          f"marker + WAIT: p50 {quantile_ms(waited, .5):.3f} ms, "
          f"p99 {quantile_ms(waited, .99):.3f} ms ({ROUNDS} each)")


if __name__ == "__main__":
    main()
