"""Measure variants of caseline's server one after the other: gunicorn's worker
class, processes and threads, and candidate hot-path changes (`bench.patched`).

    .venv/bin/python bench/explore.py settings      # sync/gthread x processes x threads
    .venv/bin/python bench/explore.py patches       # each candidate change alone, then all
    .venv/bin/python bench/explore.py ceiling       # the ceiling's gunicorn settings
    .venv/bin/python bench/explore.py trees --base main   # another commit's caseline, A/B

`trees`: two whole lines (Redis, database, `caseline serve`, `caseline worker` on the
servers' core), one from another commit (`git archive`), one from this checkout,
driven one at a time and interleaved with the ceiling, closed loop and paced.

`settings`: each variant gets fresh processes (Redis, caseline, the ceiling),
the smoke check, then closed loop (32 callers) on both sides and paced (200
req/s) on caseline, `--seconds` each. Prints one Markdown row per variant.

`patches`: one stack, with a caseline web server per variant side by side on
the same Redis and database (only one is driven at a time), closed loops
interleaved over `--reps` rounds with the ceiling, so run-to-run noise hits
every variant alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    BIN,
    LOAD_CORE,
    Config,
    ServerSettings,
    Stack,
    measured_phase,
    smoke,
)

SETTINGS = [(1, 1), (2, 1), (4, 1), (1, 4), (1, 8), (2, 4), (2, 8), (4, 2)]
AB_SETTINGS = [(1, 4), (1, 8), (2, 4), (2, 1), (4, 1)]  # besides caseline's default
# The ceiling's candidates on one core: threads, sync and gevent (greenlets).
CEILING_SETTINGS = [
    ServerSettings("gthread", 1, 4), ServerSettings("gthread", 1, 8),
    ServerSettings("gthread", 1, 16), ServerSettings("gthread", 2, 4),
    ServerSettings("sync", 1), ServerSettings("sync", 2),
    ServerSettings("gevent", 1, connections=100), ServerSettings("gevent", 1, connections=1000),
    ServerSettings("gevent", 2, connections=1000),
]
PATCHES = ["", "granian", "no-kept-reply", "no-admit-trip", "urllib3-transport",
           "all-folds"]
# Measured before and since applied in caseline: quiet-twilio-log, wait-pipeline,
# validator-once, hiredis, redirect-background (see docs/benchmarks.md).


def aside_path(package: str) -> str:
    """`package` installed aside (not into the shared venv); its directory."""
    target = Path(tempfile.gettempdir()) / f"caseline-bench-{package}"
    if not (target / package).exists():
        subprocess.run([str(BIN / "python"), "-m", "pip", "install", "-q", "--target",
                        str(target), package], check=True)
    return str(target)


async def variant(config: Config, label: str, seconds: float) -> str:
    """One variant's row."""
    directory = Path(tempfile.mkdtemp(prefix="caseline-explore-"))
    stack = Stack(config, directory)
    try:
        await stack.start()
        assert stack.caseline and stack.ceiling
        rows = await smoke(stack)
        stack.ceiling.pad = {r["scenario"]: r["simulator_requests"] for r in rows}
        closed = []
        for target in (stack.caseline, stack.ceiling, stack.caseline):
            result, _ = await measured_phase(stack, "closed", target, config, seed=len(closed))
            closed.append(result)
        paced, _ = await measured_phase(stack, "paced", stack.caseline, config, seed=5)
        mine = [closed[0], closed[2]]
        rps = sum(r.requests for r in mine) / sum(r.seconds for r in mine)
        p99 = max(r.p99 for r in mine)
        ceiling = closed[1]
        errors = sum(r.errors for r in (*closed, paced))
        return (f"| {label} | {rps:.0f} | {p99:.1f} | {ceiling.rps:.0f} | {ceiling.p99:.1f} | "
                f"{rps / ceiling.rps:.2f} | {paced.p50:.1f} | {paced.p99:.1f} | "
                f"{100 * paced.server_cpu:.0f}% | {errors} |")
    finally:
        await stack.stop()


async def main() -> None:
    """Run the chosen sweep."""
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep",
                        choices=("settings", "patches", "settings-ab", "ceiling", "trees"))
    parser.add_argument("--base", default="main", help="trees: the commit to compare with")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", help="comma-separated labels to run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rest-latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CORE})
    if args.sweep == "ceiling":
        await ceilings(args)
        return
    if args.sweep == "trees":
        await trees(args)
        return
    if args.sweep in ("patches", "settings-ab"):
        print("| variant | req/s (32 callers) | p99 ms | / ceiling | paced p50 ms | paced p99 ms "
              "| paced CPU | Redis cmds/webhook | errors |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
        await side_by_side(args)
        return
    print("| variant | caseline req/s | caseline p99 ms | ceiling req/s | ceiling p99 ms | ratio "
          "| paced p50 ms | paced p99 ms | paced CPU | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    if args.sweep == "settings":
        for workers, threads in SETTINGS:
            label = f"{workers} x {threads} ({'gthread' if threads > 1 else 'sync'})"
            if args.only and label.split(" (")[0] not in args.only.split(","):
                continue
            config = Config(workers=workers, threads=threads, seconds=args.seconds, warmup=2,
                            layouts=(), rest_latency=args.rest_latency_ms / 1000)
            print(await variant(config, label, args.seconds), flush=True)


async def ceilings(args: argparse.Namespace) -> None:
    """Every ceiling setting as its own server in one stack, interleaved, closed and paced."""
    config = Config(seconds=args.seconds, warmup=2, layouts=())
    directory = Path(tempfile.mkdtemp(prefix="caseline-explore-"))
    stack = Stack(config, directory)
    try:
        await stack.start()
        assert stack.caseline and stack.ceiling
        rows = await smoke(stack)
        stack.ceiling.pad = {r["scenario"]: r["simulator_requests"] for r in rows}
        chosen = [s for s in CEILING_SETTINGS if not args.only or any(
            f"{s.worker_class}:{s.workers}:"
            f"{s.connections if s.worker_class == 'gevent' else s.threads}" == only
            for only in args.only.split(","))]
        targets = [await stack.add_ceiling(s) for s in chosen]
        closed: dict[str, list] = {t.name: [] for t in targets}
        paced: dict[str, list] = {t.name: [] for t in targets}
        for rep in range(args.reps):
            for target in targets[:: 1 if rep % 2 == 0 else -1]:
                result, _ = await measured_phase(stack, "closed", target, config, seed=rep)
                closed[target.name].append(result)
                print(f"  {target.name}: {result.rps:.0f} req/s, p99 {result.p99:.1f} ms, "
                      f"errors {result.errors}", file=sys.stderr, flush=True)
                result, _ = await measured_phase(stack, "paced", target, config, seed=rep)
                paced[target.name].append(result)
        print("| ceiling setting | req/s, 32 callers | p50 ms | p99 ms | paced 200/s p99 ms "
              "| errors |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name in closed:
            runs, pr = closed[name], paced[name]
            lat = sorted(x for r in runs for x in r.latencies)
            pl = sorted(x for r in pr for x in r.latencies)
            rps = sum(r.requests for r in runs) / sum(r.seconds for r in runs)
            print(f"| {name} | {rps:.0f} | {lat[len(lat) // 2]:.1f} | "
                  f"{lat[int(len(lat) * 0.99)]:.1f} | {pl[int(len(pl) * 0.99)]:.1f} | "
                  f"{sum(r.errors for r in runs + pr)} |", flush=True)
    finally:
        await stack.stop()


async def trees(args: argparse.Namespace) -> None:
    """Another commit's whole line next to this checkout's, interleaved with the ceiling."""
    base = Path(tempfile.mkdtemp(prefix="caseline-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    stacks = {
        f"base ({args.base})": Stack(Config(seconds=args.seconds, warmup=2, tree=str(base)),
                                     Path(tempfile.mkdtemp(prefix="caseline-explore-"))),
        "this checkout": Stack(Config(seconds=args.seconds, warmup=2),
                               Path(tempfile.mkdtemp(prefix="caseline-explore-"))),
    }
    for stack in stacks.values():
        stack.config.layouts = ("servers",)
    try:
        for stack in stacks.values():
            await stack.start()
            rows = await smoke(stack)
            assert stack.ceiling is not None
            stack.ceiling.pad = {r["scenario"]: r["simulator_requests"] for r in rows}
        mine = stacks["this checkout"]
        assert mine.ceiling is not None
        sides = [("ceiling", mine, mine.ceiling)] + [
            (name, stack, stack.caseline) for name, stack in stacks.items()]
        results: dict[tuple[str, str], list] = {}
        for kind in ("closed", "paced"):
            for rep in range(args.reps):
                for name, stack, target in sides[:: 1 if rep % 2 == 0 else -1]:
                    assert target is not None
                    result, _ = await measured_phase(stack, kind, target, stack.config,
                                                     seed=rep)
                    results.setdefault((kind, name), []).append(result)
                    print(f"  {kind} {name}: {result.rps:.0f} req/s, p99 {result.p99:.1f} ms, "
                          f"worker {100 * result.worker_cpu:.0f}%, errors {result.errors}",
                          file=sys.stderr, flush=True)
        print("| side | req/s, 32 callers | / ceiling | calls/s | p99 ms | / ceiling | server CPU "
              "| worker CPU | worker ms per call | Redis cmds/webhook | paced p99 ms | errors |")
        print("| --- |" + " ---: |" * 11)

        def pooled(kind: str, name: str) -> dict[str, float]:
            runs = results[(kind, name)]
            lat = sorted(x for r in runs for x in r.latencies)
            seconds = sum(r.seconds for r in runs)
            redis_cmds = [r.extra["redis_per_webhook"] for r in runs
                          if "redis_per_webhook" in r.extra]
            return {
                "rps": sum(r.requests for r in runs) / seconds,
                "cps": sum(r.calls for r in runs) / seconds,
                "p99": lat[int(len(lat) * 0.99)] if lat else 0.0,
                "server": sum(r.server_cpu for r in runs) / len(runs),
                "worker": sum(r.worker_cpu for r in runs) / len(runs),
                "redis": sum(redis_cmds) / len(redis_cmds) if redis_cmds else 0.0,
                "errors": sum(r.errors for r in runs),
            }

        ceiling = pooled("closed", "ceiling")
        for name, _, _ in sides:
            row, paced_row = pooled("closed", name), pooled("paced", name)
            per_call = 1000 * row["worker"] / row["cps"] if row["cps"] else 0.0
            print(f"| {name} | {row['rps']:.0f} | {row['rps'] / ceiling['rps']:.2f} | "
                  f"{row['cps']:.1f} | {row['p99']:.1f} | {row['p99'] / ceiling['p99']:.2f} | "
                  f"{100 * row['server']:.0f}% | {100 * row['worker']:.0f}% | {per_call:.1f} | "
                  f"{row['redis']:.1f} | {paced_row['p99']:.1f} | "
                  f"{row['errors'] + paced_row['errors']} |", flush=True)
    finally:
        for stack in stacks.values():
            await stack.stop()


async def side_by_side(args: argparse.Namespace) -> None:
    """Every patch variant as its own server in one stack, interleaved."""
    config = Config(seconds=args.seconds, warmup=2, layouts=(),
                    rest_latency=args.rest_latency_ms / 1000)
    directory = Path(tempfile.mkdtemp(prefix="caseline-explore-"))
    stack = Stack(config, directory)
    try:
        await stack.start()
        assert stack.caseline and stack.ceiling
        rows = await smoke(stack)
        stack.ceiling.pad = {r["scenario"]: r["simulator_requests"] for r in rows}
        targets = [stack.caseline]
        stack.caseline.name = "baseline" if args.sweep == "patches" else \
            "shipped defaults"
        if args.sweep == "settings-ab":
            for workers, threads in AB_SETTINGS:
                targets.append(await stack.add_caseline(
                    f"{workers} x {threads}", "", workers=workers, threads=threads))
        for patches in PATCHES[1:] if args.sweep == "patches" else []:
            names = [p for p in patches.split(",") if p]
            if args.only and patches not in args.only.split(","):
                continue
            extra = os.pathsep.join(aside_path(p) for p in ("hiredis", "granian")
                                    if p in names)
            targets.append(await stack.add_caseline(
                patches, ",".join(n for n in names if n != "hiredis"), extra))
        results: dict[str, list] = {t.name: [] for t in [*targets, stack.ceiling]}
        paced: dict[str, list] = {t.name: [] for t in targets}
        for rep in range(args.reps):
            for target in [*targets, stack.ceiling][:: 1 if rep % 2 == 0 else -1]:
                result, _ = await measured_phase(stack, "closed", target, config, seed=rep)
                results[target.name].append(result)
                print(f"  {target.name}: {result.rps:.0f} req/s, p99 {result.p99:.1f} ms, "
                      f"errors {result.errors}", file=sys.stderr, flush=True)
            for target in targets:
                result, _ = await measured_phase(stack, "paced", target, config, seed=rep)
                paced[target.name].append(result)
        ceiling = results[stack.ceiling.name]
        ceiling_rps = sum(r.requests for r in ceiling) / sum(r.seconds for r in ceiling)
        for name, runs in results.items():
            rps = sum(r.requests for r in runs) / sum(r.seconds for r in runs)
            p99 = sorted(x for r in runs for x in r.latencies)
            p99v = p99[int(len(p99) * 0.99)] if p99 else 0.0
            pr = paced.get(name, [])
            pl = sorted(x for r in pr for x in r.latencies)
            pp50 = pl[len(pl) // 2] if pl else 0.0
            pp99 = pl[int(len(pl) * 0.99)] if pl else 0.0
            cpu = (sum(r.server_cpu for r in pr) / len(pr)) if pr else 0.0
            errors = sum(r.errors for r in runs + pr)
            redis_cmds = [r.extra["redis_per_webhook"] for r in runs if "redis_per_webhook" in
                          r.extra]
            per = f"{sum(redis_cmds) / len(redis_cmds):.1f}" if redis_cmds else "-"
            print(f"| {name} | {rps:.0f} | {p99v:.1f} | {rps / ceiling_rps:.2f} | "
                  f"{pp50:.1f} | {pp99:.1f} | {100 * cpu:.0f}% | {per} | {errors} |", flush=True)
    finally:
        await stack.stop()


if __name__ == "__main__":
    asyncio.run(main())
