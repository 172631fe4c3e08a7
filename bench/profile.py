"""Reading py-spy's collapsed stacks: where the web processes spend their time."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _split(frame: str) -> tuple[str, str]:
    """(function, file) of one collapsed frame `func (path/file.py:123)`."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match["func"], match["file"]


def short_path(path: str) -> str:
    """A file path from its package on (site-packages/x/y.py -> x/y.py)."""
    for marker in ("site-packages/", f"{_ROOT}/", "python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def layer(path: str) -> str:
    """Which library or part of caseline a frame belongs to."""
    short = short_path(path)
    head = short.split("/", 1)[0]
    if head.endswith(".py"):
        return "stdlib" if "python3" in path and "site-packages" not in path else head[:-3]
    return head


# What a sample is spent on, by the first of these found anywhere on its stack.
CATEGORIES = (
    ("PIN check (scrypt)", ("_scrypt",)),
    ("database (SQLAlchemy)", ("sqlalchemy/",)),
    ("Twilio REST client (redirects)", ("twilio/rest/", "twilio/http/", "twilio/base/")),
    ("RQ enqueue (call-log job)", ("rq/",)),
    ("Redis round trips (redis-py)", ("redis/",)),
    ("logging", ("logging/",)),
    ("signature check (RequestValidator)", ("request_validator",)),
    ("TwiML building (VoiceResponse, str())", ("twilio/twiml/", "xml/etree")),
    ("phone numbers (phonenumbers)", ("phonenumbers/",)),
    ("prompts", ("config/prompts",)),
)


def category(frames: list[str]) -> str:
    """The category of one stack: a listed cost, else the layer of its top frame."""
    joined = ";".join(frames)
    for name, markers in CATEGORIES:
        if any(marker in joined for marker in markers):
            return name
    top = layer(_split(frames[-1])[1]) if frames else "?"
    return {
        "flask": "Flask/Werkzeug request handling", "werkzeug": "Flask/Werkzeug request handling",
        "gunicorn": "gunicorn (HTTP parsing, sockets, threads)",
        "concurrent": "gunicorn (HTTP parsing, sockets, threads)",
        "ivr": "caseline's own code", "routing": "caseline's own code",
        "config": "caseline's own code",
    }.get(top, f"other ({top})")


OURS = ("ivr/", "routing/", "config/", "workers/", "caseline/", "bench/")


def read_collapsed(path: Path) -> list[tuple[list[str], int]]:
    """The stacks (root first) and their sample counts."""
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(path: Path, top: int = 25) -> str:
    """Top functions by own and by inclusive time, and time per layer, as text."""
    stacks = read_collapsed(path)
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for frames, count in stacks:
        # Drop py-spy's process/thread pseudo-frames.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        func, file = _split(frames[-1])
        own[f"{func} ({short_path(file)})"] += count
        layers[layer(file)] += count
        categories[category(frames)] += count
        seen = set()
        for frame in frames:
            func, file = _split(frame)
            key = f"{func} ({short_path(file)})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += count
                if short_path(file).startswith(OURS):
                    ours[key] += count
    lines = [f"{total} samples (threads holding the GIL)", "", "where the time goes:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in categories.most_common()
              if n / total >= 0.001]
    lines += ["", "caseline's functions, inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in ours.most_common(top)]
    lines += ["", "own time (the frame on top of the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive time (anywhere on the stack), caseline and libraries:"]
    picked = [(name, n) for name, n in inclusive.most_common(400)
              if not name.startswith(("<module>", "run (", "_bootstrap", "handle ("))]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in picked[:top]]
    lines += ["", "own time by layer:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in layers.most_common(12)]
    return "\n".join(lines)
