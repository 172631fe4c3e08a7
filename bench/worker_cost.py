"""The worker's CPU per call log, and one reconciler pass over a long queue, measured
for two checkouts side by side (this one and another commit's, `git archive`d).

    .venv/bin/python bench/worker_cost.py --base main            # both, 2 rounds
    .venv/bin/python bench/worker_cost.py --calls 600 --rate 60  # the load

Call logs: a fresh Redis and SQLite database per tree, the demo directory loaded
with `caseline directory load`, `caseline worker` running (its RQ scheduler and
cron too). Calls in the bench's mix (a case, an outage report, a new case, no
case) end at `--rate` a second through the code the status callback runs
(`routing.acd.end_call`, then `jobs.queues.enqueue_call_log`); the figure is the
CPU time of the worker's process tree (worker, RQ's scheduler, the cron) and of
Redis from the first call's end until every log is in the database, per call.
The worker's idle cost (its scheduler's and cron's polling) is measured over a
few seconds before and shown apart.

Reconciler: `--waiting` callers in one team's waiting set, each with a live
call, and one `routing.acd.reconcile` timed (wall clock, in this process) with
Redis's CPU for it.

Each tree runs in its own process (`--one TREE`) so it imports that tree's code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.procs import Services, free_port  # noqa: E402


def _redis_cpu(r) -> float:  # type: ignore[no-untyped-def]
    """Redis's own CPU seconds so far."""
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _redis_commands(r) -> int:  # type: ignore[no-untyped-def]
    """Commands Redis has processed so far."""
    return int(r.info("stats")["total_commands_processed"])


def _call_fields(i: int, now_ms: int) -> dict[str, str | int]:
    """A finished call's hash in the bench's mix (roughly `bench.callers.MIX`)."""
    base: dict[str, str | int] = {"caller": f"+1612555{i % 10000:04d}", "menu": "",
                                  "started_at": now_ms - 40_000, "answered_by": "A1",
                                  "talk_seconds": 30}
    kind = random.random()
    if kind < 0.30:  # option 1 with a case
        base.update(menu="1,2024117", case=random.choice(["2024101", "2024102", "2024117"]),
                    contact="5001", district="D100", verified=1, team="general",
                    priority="medium")
    elif kind < 0.70:  # option 8, an outage report from a district
        base.update(menu="8", outage=1, contact="5001", district="D100", verified=1,
                    team="hosting", priority="critical")
    elif kind < 0.86:  # options 2 and 6: a new case
        base.update(menu="2", new_case=1, contact="5001", district="D100", verified=1,
                    team="general")
    else:  # unknown number, bad keys: no case
        base.update(menu="9,9,9")
    return base


def one(tree: Path, calls: int, rate: float, waiting: int) -> dict[str, float]:
    """Measure `tree`'s worker and reconciler; figures as a dict."""

    from caseline.embedded_redis import start_server, wait_until_up

    work = Path(tempfile.mkdtemp(prefix="caseline-worker-cost-"))
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CASELINE_", "TWILIO_"))}
    env.update(REDIS_URL=url, DATABASE_URL=f"sqlite:///{work / 'caseline.db'}",
               TWILIO_AUTH_TOKEN="x" * 32, TWILIO_ACCOUNT_SID="AC" + "0" * 32,
               PUBLIC_BASE_URL="http://127.0.0.1:9", TWILIO_API_URL="http://127.0.0.1:9",
               CASELINE_WRAPUP_SECONDS="0", CASELINE_API_TOKEN="t" * 32,
               CASELINE_INSTANCE_PATH=str(work / "instance"), PYTHONPATH=str(tree))
    os.environ.update(env)
    services = Services(work)
    services.adopt("redis", start_server(work / "redis", port=port), None)
    try:
        wait_until_up(url)
        cli = [str(PYTHON), "-c", "from caseline.cli import main; main()"]
        subprocess.run([*cli, "directory", "load", str(ROOT / "demo" / "directory.json")],
                       env=env, cwd=work, check=True, capture_output=True)
        worker = services.start("caseline-worker", [*cli, "worker"], env, core=None)
        from sqlalchemy import func, select

        from config.settings import Settings
        from directory.models import CallLog
        from jobs.queues import CALLS_TO_LOG, enqueue_call_log
        from routing import acd
        from routing.call_state import start_call
        from workers.context import build_desk

        desk = build_desk(Settings.from_env(), url)
        r = desk.r
        time.sleep(4)  # the worker, its scheduler and cron are up and idle
        idle_from, idle_seconds = worker.cpu(), 3.0
        time.sleep(idle_seconds)
        idle = (worker.cpu() - idle_from) / idle_seconds

        random.seed(7)
        cpu0, rcpu0, cmd0, t0 = worker.cpu(), _redis_cpu(r), _redis_commands(r), \
            time.monotonic()
        feeder_cpu = 0.0
        for i in range(calls):
            due = t0 + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            c = time.process_time()
            sid = f"CA{tree.name[:6]}{i:026d}"
            now_ms = int(time.time() * 1000)
            start_call(r, sid, _call_fields(i, now_ms))
            if acd.end_call(desk, sid, "completed", 30, now_ms):
                enqueue_call_log(desk.job_redis, sid)
            feeder_cpu += time.process_time() - c
        assert desk.session_factory is not None
        deadline = time.monotonic() + 120
        while True:
            with desk.session_factory() as db:
                written = db.scalar(select(func.count()).select_from(CallLog))
            if written >= calls and r.zcard(CALLS_TO_LOG) == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {written} of {calls} logs after 120 s")
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        worker_cpu = worker.cpu() - cpu0
        redis_cpu = _redis_cpu(r) - rcpu0
        # Commands counted minus those this process sent (about 12 a call, both trees).
        commands = _redis_commands(r) - cmd0
        figures = {
            "elapsed_s": elapsed,
            "worker_ms_per_call": 1000 * worker_cpu / calls,
            "worker_ms_per_call_less_idle": 1000 * (worker_cpu - idle * elapsed) / calls,
            "worker_idle_cores": idle,
            "redis_ms_per_call": 1000 * redis_cpu / calls,
            "redis_commands_per_call": commands / calls,
            "jobs": float(len(r.keys("rq:job:log-calls-*"))),
        }
        figures.update(_reconcile(desk, waiting))
        return figures
    finally:
        services.stop_all()


def _reconcile(desk, waiting: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """`waiting` callers in the general team's waiting set, all live but 1%; one
    reconcile timed (wall ms, Redis CPU ms) and how many it dropped."""
    from directory import keys
    from routing import acd
    from routing.call_state import start_call

    r = desk.r
    pipe = r.pipeline(transaction=False)
    sids = [f"CAwait{i:028d}" for i in range(waiting)]
    for i, sid in enumerate(sids):
        pipe.zadd(keys.team_waiting("general"), {sid: i})
        if i % 100:
            pipe.hset(keys.call(sid), mapping={"caller": "+16125550101", "waiting_team": "general"})
    pipe.execute()
    start_call(r, "CAnothing", {})  # the script cache warm, as in a running worker
    best, rbest, dropped = 1e9, 1e9, 0
    for _ in range(3):
        rcpu, start = _redis_cpu(r), time.perf_counter()
        done = acd.reconcile(desk, int(time.time() * 1000))
        best = min(best, time.perf_counter() - start)
        rbest = min(rbest, _redis_cpu(r) - rcpu)
        dropped += done["dropped"]
    return {"reconcile_ms": 1000 * best, "reconcile_redis_ms": 1000 * rbest,
            "reconcile_dropped": float(dropped)}


def main(argv: list[str] | None = None) -> int:
    """Run both trees `--rounds` times, interleaved, and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the other commit (default: main)")
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rate", type=float, default=60.0, help="calls ending a second")
    parser.add_argument("--waiting", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        tree = Path(args.one)
        sys.path.insert(0, str(tree))
        print(json.dumps(one(tree, args.calls, args.rate, args.waiting)))
        return 0
    base = Path(tempfile.mkdtemp(prefix="caseline-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.base],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    trees = {args.base: base, "this checkout": ROOT}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            out = subprocess.run(
                [str(PYTHON), str(Path(__file__).resolve()), "--one", str(tree),
                 "--calls", str(args.calls), "--rate", str(args.rate),
                 "--waiting", str(args.waiting)],
                check=True, capture_output=True, text=True, cwd=tree,
                env=dict(os.environ, PYTHONPATH=str(tree)))
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    columns = list(next(iter(results.values()))[0])
    print("| tree | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for name, rows in results.items():
        for row in rows:
            print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
