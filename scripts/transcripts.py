"""Regenerate the README's call transcripts with `caseline call`'s scripted mode.

Runs caseline in this process on a fixed clock (a Tuesday in November, in
business hours, and one evening call) with the demo directory, a throwaway
Redis and SQLite database, the Twilio REST emulator, and a real HTTP server;
places one scripted call per menu option with the same code as
`caseline call --keys ...`; and writes what each call printed into README.md
between `<!-- transcripts:start -->` and `<!-- transcripts:end -->`.

    python scripts/transcripts.py            # rewrite the README's section
    python scripts/transcripts.py --check    # exit 1 (and show a diff) if it is stale

The parts of the output that change from run to run (the CallSid, the
service's port, each request's timing) are replaced or left out, so the
section only changes when what a caller hears changes.
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import re
import shlex
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import redis
import requests
import time_machine
from werkzeug.serving import WSGIRequestHandler, make_server

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: import caseline from this checkout
    sys.path.insert(0, str(ROOT))

from caseline.embedded_redis import start_server, wait_until_up  # noqa: E402
from caseline.terminal_caller import CallOptions, run_call  # noqa: E402
from config.settings import Settings  # noqa: E402
from directory import load_directory  # noqa: E402
from directory.db import ensure_schema, make_engine, make_session_factory  # noqa: E402
from ivr import create_app  # noqa: E402
from twilio_side import TwilioEmulator  # noqa: E402

README = ROOT / "README.md"
START = "<!-- transcripts:start -->"
END = "<!-- transcripts:end -->"
CHICAGO = ZoneInfo("America/Chicago")
OPEN = datetime(2026, 11, 24, 10, 0, tzinfo=CHICAGO)  # a Tuesday, 10:00
EVENING = datetime(2026, 11, 24, 19, 30, tzinfo=CHICAGO)  # the same Tuesday, closed
SHOWN_URL = "http://127.0.0.1:8000"  # what `make run` serves on
TOKEN = "transcripts-auth-token"
API_TOKEN = "transcripts-api-token"
ACCOUNT_SID = "AC" + "0" * 32
PAT = "+16125550101"  # Pat Lee, Lakeview Public Schools (hosted district)
STRANGER = "+19525550177"  # not in the directory
COLLEAGUE = "+16125550177"  # Lakeview's network administrator, not a contact
# Advisors on the line, longest idle first.
AVAILABLE = ("A1", "A5", "A7")


@dataclass(frozen=True)
class Scenario:
    """One README call: a title, when it is placed, and its `caseline call` flags."""

    title: str
    from_number: str
    keys: str
    expect: str
    advisor: str | None = "answer"
    at: datetime | None = None  # None: a minute after the call before
    note: str = ""
    flags: dict[str, str] = field(default_factory=dict)

    def command(self) -> str:
        """The command line a reader would type."""
        words = ["caseline", "call", "--from", self.from_number, "--keys", self.keys]
        if self.advisor:
            words += ["--advisor", self.advisor]
        for flag, value in self.flags.items():
            words += [f"--{flag}", value]
        words += ["--expect", self.expect]
        return shlex.join(words)


SCENARIOS = (
    Scenario(
        "Option 1, an existing case: its owner answers",
        PAT,
        "1 2024117#",
        "advisor",
        note="Pat Lee is a known authorized contact; case 2024117 is owned by Jordan Smith (A7).",
    ),
    Scenario(
        "Option 1 from a number caseline does not know: contact ID and PIN first",
        STRANGER,
        "1 5001# 2468# 2024117#",
        "advisor",
    ),
    Scenario(
        "Option 2, a new case: the longest-idle advisor of the general team",
        PAT,
        "2",
        "advisor",
    ),
    Scenario(
        "Option 6, add-on products: Food Service (1) goes to the food-service team",
        PAT,
        "6 1",
        "advisor",
    ),
    Scenario(
        "Option 8, an outage: the hosting team, at Critical priority",
        PAT,
        "8",
        "advisor",
    ),
    Scenario(
        "A colleague joins: the advisor adds the contact's network administrator",
        PAT,
        "1 2024117#",
        "advisor",
        note="Once connected, Jordan Smith adds Lakeview's network administrator "
             "(+16125550177) from the console; the call moves into a conference, and "
             "Pat hanging up ends it for everyone.",
        flags={"colleague": COLLEAGUE},
    ),
    Scenario(
        "The survey: the advisor hangs up first",
        PAT,
        "1 2024117# 5 4 # 5 5",
        "advisor",
        note="Pat has not been surveyed in the last 30 days; `#` skips the third question.",
        flags={"hangup": "advisor"},
    ),
    Scenario(
        "Option 1 after hours (Tuesday 7:30 PM): the hours, then a voicemail on the case",
        PAT,
        "1 2024117#",
        "voicemail",
        advisor=None,
        at=EVENING,
    ),
)

SID = re.compile(r"\b(CA|RE)[0-9a-f]{32}\b")
TIMING_START = re.compile(r"^requests \(\d+\):$")


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's request handler without a log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Say nothing: the transcripts are the output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Line:
    """The service, served over HTTP in this process, and what calls it needs."""

    url: str
    settings: Settings
    emulator: TwilioEmulator

    def set_status(self, advisor_id: str, status: str) -> None:
        """An advisor's status, through the operators' API."""
        answer = requests.put(
            f"{self.url}/api/advisors/{advisor_id}/status",
            json={"status": status},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=5,
        )
        answer.raise_for_status()


@contextmanager
def running_line(workdir: Path) -> Iterator[Line]:
    """caseline with the demo directory, its own Redis, database and Twilio emulator."""
    redis_port = free_port()
    redis_process = start_server(workdir / "redis", port=redis_port)
    emulator = TwilioEmulator(account_sid=ACCOUNT_SID, auth_token=TOKEN)
    server = None
    thread = None
    engine = None
    try:
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        wait_until_up(redis_url)
        emulator.start()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = Settings(
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=TOKEN,
            twilio_api_url=emulator.url,
            public_base_url=url,
            redis_url=redis_url,
            database_url=f"sqlite:///{workdir / 'caseline.db'}",
            api_token=API_TOKEN,
            wrapup_seconds=0,
            instance_path=workdir / "instance",
        )
        engine = make_engine(settings.database_url)
        ensure_schema(engine)
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        document = json.loads((ROOT / "demo" / "directory.json").read_text(encoding="utf-8"))
        load_directory(document, make_session_factory(engine), client, datetime.now(CHICAGO))
        client.close()
        server = make_server(
            "127.0.0.1", port, create_app(settings), threaded=True, request_handler=_QuietHandler
        )
        thread = threading.Thread(target=server.serve_forever, name="transcripts-web", daemon=True)
        thread.start()
        yield Line(url, settings, emulator)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        if engine is not None:
            engine.dispose()
        emulator.stop()
        redis_process.terminate()
        redis_process.wait(timeout=10)


def tidy(output: str, url: str) -> str:
    """A call's output without what changes between runs (sids, port, timings)."""
    lines: list[str] = []
    for line in output.splitlines():
        if TIMING_START.match(line):
            break  # the request table and the real time: different on every run
        line = SID.sub(lambda m: m.group(1) + "…", line.replace(url, SHOWN_URL))
        lines.append(line.rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def place(line: Line, scenario: Scenario) -> str:
    """Place one scenario's call; its tidied output (raises if it ended another way)."""
    out, err = io.StringIO(), io.StringIO()
    options = CallOptions(
        from_number=scenario.from_number,
        keys=scenario.keys,
        advisor=scenario.advisor,
        expect=scenario.expect,
        url=line.url,
        token=TOKEN,
        emulator=line.emulator.url,
        max_wait=5,
        hangup=scenario.flags.get("hangup", "caller"),
        colleague=scenario.flags.get("colleague"),
    )
    code = run_call(options, out, io.StringIO(), settings=line.settings, err=err)
    if code != 0:
        raise RuntimeError(
            f"{scenario.title}: exit {code}\n{out.getvalue()}{err.getvalue()}"
        )
    return tidy(out.getvalue(), line.url)


def advisors_on_the_line() -> str:
    """Who the available advisors are, as the transcripts show them (by phone)."""
    document = json.loads((ROOT / "demo" / "directory.json").read_text(encoding="utf-8"))
    by_id = {advisor["id"]: advisor for advisor in document["advisors"]}
    return ", ".join(
        f"{by_id[i]['name']} ({i}, {'+' + ''.join(c for c in by_id[i]['phone'] if c.isdigit())})"
        for i in AVAILABLE
    )


def render() -> str:
    """The README section (between the markers), freshly generated."""
    parts = [
        "`caseline call` plays the caller (and the advisor's phone) against a running",
        "caseline: it posts what Twilio posts, signed with `TWILIO_AUTH_TOKEN`, and walks",
        "the TwiML as Twilio does. Without `--keys` it is interactive: it asks for the",
        "keys of each question and, when an advisor is dialed, whether they answer, do",
        "not answer, are busy or let voicemail pick up (or answer for every advisor);",
        "a waiting caller hears the queue until an advisor is freed from another",
        "terminal (`PUT /api/advisors/<id>/status`). `--speak` reads each prompt aloud",
        "and `--wav FILE` writes them all into one WAV (both need `espeak-ng`).",
        "With `--keys` it runs unattended; `--expect` makes the exit status 0 only when",
        "the call ends that way (`advisor`, `queue`, `voicemail` or `hangup`).",
        "`--hangup advisor` has the advisor end the call (an eligible contact then hears",
        "the survey); `--colleague NUMBER` has the advisor add that colleague from the",
        "console once connected (through the API, with `CASELINE_API_TOKEN`), and the",
        "caller stays on the line `--on-call` seconds (default 2) in the conference.",
        "",
        "The calls below are generated by `make transcripts` (`scripts/transcripts.py`)",
        "with that scripted mode, on the demo directory and a fixed clock (Tuesday",
        "24 November 2026 from 10:00 Central, unless said otherwise), with these",
        f"advisors available, longest idle first: {advisors_on_the_line()}.",
        "The command also prints each request with its time; those lines vary and",
        "are left out here, as are CallSids. Do not edit by hand: the tests fail when",
        "this is stale.",
    ]
    with tempfile.TemporaryDirectory(prefix="caseline-transcripts-") as tmp:
        workdir = Path(tmp)
        with time_machine.travel(OPEN, tick=True), running_line(workdir) as line:
            for advisor_id in AVAILABLE:
                line.set_status(advisor_id, "available")
            for index, scenario in enumerate(SCENARIOS, start=1):
                when = scenario.at or OPEN + timedelta(minutes=index)
                with time_machine.travel(when, tick=True):
                    text = place(line, scenario)
                parts += ["", f"### {scenario.title}", ""]
                if scenario.note:
                    parts += [scenario.note, ""]
                parts += ["```console", f"$ {scenario.command()}", text, "```"]
    return "\n".join(parts)


def splice(readme: str, section: str) -> str:
    """The README with `section` between the markers (added after "Commands" if absent)."""
    block = f"{START}\n{section}\n{END}"
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    heading = "## Calls, as `caseline call` shows them\n\n"
    match = re.search(r"^## Commands\n.*?(?=^## |\Z)", readme, flags=re.S | re.M)
    if match is None:
        return readme.rstrip("\n") + "\n\n" + heading + block + "\n"
    cut = match.end()
    before = readme[:cut].rstrip("\n") + "\n\n"
    after = readme[cut:]
    return before + heading + block + "\n" + ("\n" + after if after else "")


def main(argv: list[str] | None = None) -> int:
    """Rewrite the README's transcripts, or with --check report whether they are current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--readme", type=Path, default=README, help="the file to update")
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    updated = splice(current, render())
    if args.check:
        if updated == current:
            print(f"{args.readme.name}: transcripts are current")
            return 0
        diff = difflib.unified_diff(
            current.splitlines(), updated.splitlines(), "README.md", "regenerated", lineterm=""
        )
        print("\n".join(diff))
        print(f"{args.readme.name}: transcripts are stale: run `make transcripts`", file=sys.stderr)
        return 1
    if updated != current:
        args.readme.write_text(updated, encoding="utf-8")
        print(f"{args.readme.name}: transcripts regenerated")
    else:
        print(f"{args.readme.name}: transcripts already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
