"""A call told in words: live lines of what the caller hears, transcripts and summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from twilio_side.results import CallResult, Event, Step

# What the caller hears when the service fails: Twilio's own apology.
APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."

DIAL_WORDS = {
    "answer": "advisor picks up",
    "voicemail": "voicemail picks up",
    "no-answer": "no answer",
    "busy": "busy",
    "failed": "call failed",
    "queue": "dequeuing",
}


class TranscriptPrinter:
    """Turns events into lines of what the caller hears (for live output and transcripts).

    While waiting in a queue, a line already shown during this wait is not
    repeated, so a position announcement shows each time it changes.
    """

    def __init__(self) -> None:
        """Start with no queue stay."""
        self._seen_in_queue: set[str] = set()

    def lines(self, event: Event) -> list[str]:
        """The lines one event shows (often one, sometimes none)."""
        kind, text, party, detail = event.kind, event.text, event.party, event.detail
        queue = detail[len("wait:") :] if detail.startswith("wait:") else None
        if kind in ("enqueue", "leave", "redirect", "hangup", "connect"):
            self._seen_in_queue.clear()
        indent = "  " if party == "advisor" else ""
        if kind == "say":
            if queue is not None:
                return self._once(f'waiting in queue "{queue}": "{text}"')
            return [f'{indent}{party} hears: "{text}"']
        if kind == "play":
            if queue is not None:
                return self._once(f'waiting in queue "{queue}": (audio {text})')
            return [f"{indent}{party} hears audio: {text}"]
        if kind == "pause":
            return [] if queue is not None else [f"{indent}{party} hears silence ({text}s)"]
        if kind == "gather":
            return self._gather_lines(event, indent)
        if kind == "dial":
            if detail == "queue":
                return [f'dialing queue "{text}"']
            return [f"ringing {text} ... {DIAL_WORDS.get(detail, detail)}"]
        if kind == "whisper":
            return []
        if kind == "connect":
            return [f"connected to {text} (talking {detail}s)"]
        if kind == "enqueue":
            return [f'waiting in queue "{text}"']
        if kind == "wait":
            return []
        if kind == "leave":
            return [f'caller leaves queue "{text}"']
        if kind == "redirect":
            if detail != "rest":
                return []
            if party == "advisor":
                return [f"  advisor's leg redirected by the REST API to {text}"]
            return [f"call redirected by the REST API to {text}"]
        if kind == "conference":
            if detail.startswith("ended"):
                return [f"conference ends ({detail.removeprefix('ended: ')})"]
            return [f"{indent}{party} joins the conference"]
        if kind == "colleague":
            if detail == "joined":
                return [f"colleague {text} picks up and joins the conference"]
            if detail.startswith("left"):
                return [f"colleague {text} leaves ({detail.removeprefix('left: ')})"]
            return [f"ringing colleague {text} ... {DIAL_WORDS.get(detail, detail)}"]
        if kind == "record":
            return [f"caller leaves a voicemail ({text}s) -> {event.url}"]
        if kind == "hangup":
            who = {"caller": "caller hangs up", "advisor": "  advisor's phone hangs up"}.get(
                party, "call ends"
            )
            return [f"{who} ({text})" if text else who]
        if kind == "error":
            return [f'caller hears: "{APPLICATION_ERROR}" ({text})']
        if kind == "warning":
            return [f"warning: {text}"]
        if kind == "status":
            return [f"status callback: CallStatus={text} (HTTP {detail})"]
        return [f"{kind}: {text}"]

    def _gather_lines(self, event: Event, indent: str) -> list[str]:
        """Lines for a key press (or silence)."""
        waiting = ":" in event.detail
        if event.party == "advisor":
            if event.text:
                return [f"  advisor presses {event.text} (accept)"]
            return ["  advisor presses nothing (no one accepts)"]
        who = "waiting caller" if waiting else "caller"
        if event.detail.startswith("speech"):
            return [f'{who} says: "{event.text}"']
        if event.text:
            return [f"{who} presses: {event.text}"]
        if waiting:
            return []
        return [f"{indent}caller presses nothing (timeout)"]

    def _once(self, line: str) -> list[str]:
        """The line, unless already shown during this queue stay."""
        if line in self._seen_in_queue:
            return []
        self._seen_in_queue.add(line)
        return [line]


def format_transcript(result: CallResult) -> str:
    """The call as what the caller hears and does, one line per moment."""
    printer = TranscriptPrinter()
    return "\n".join(line for event in result.transcript for line in printer.lines(event))


def _short(url: str) -> str:
    """A URL's path and query, trimmed for a summary table."""
    parts = urlsplit(url)
    text = parts.path + (f"?{parts.query}" if parts.query else "")
    return text if len(text) <= 60 else text[:57] + "..."


def _runs(steps: list[Step]) -> list[list[Step]]:
    """Consecutive steps grouped when they repeat (a waitUrl polled while waiting)."""
    runs: list[list[Step]] = []
    for step in steps:
        last = runs[-1][0] if runs else None
        if last and (last.kind, last.method, last.url, last.status) == (
            step.kind,
            step.method,
            step.url,
            step.status,
        ):
            runs[-1].append(step)
        else:
            runs.append([step])
    return runs


def format_summary(result: CallResult) -> str:
    """Outcome, the path taken, who answered, and each request's time."""
    path: list[str] = []
    for event in result.transcript:
        if event.kind == "gather" and event.text:
            who = "advisor pressed" if event.party == "advisor" else "pressed"
            path.append(f"{who} {event.text}")
        elif event.kind == "dial":
            path.append(f"rang {event.text} ({event.detail})")
        elif event.kind == "connect":
            path.append(f"connected {event.text}")
        elif event.kind == "enqueue":
            path.append(f"queued in {event.text}")
        elif event.kind == "redirect" and event.detail == "rest":
            path.append("redirected")
        elif event.kind == "leave":
            path.append("left the queue")
        elif event.kind == "record":
            path.append("voicemail")
        elif event.kind == "conference" and event.detail == "joined" and event.party == "caller":
            path.append("conference")
        elif event.kind == "colleague" and event.detail == "joined":
            path.append(f"colleague {event.text} joined")
        elif event.kind == "error":
            path.append("application error")
    lines = [
        f"call {result.call_sid} from {result.from_number} to {result.to_number}",
        f"outcome: {result.outcome}"
        + (f" (answered by {result.answered_by})" if result.answered_by else "")
        + (f"; error: {result.error}" if result.error else ""),
        "path: " + (" -> ".join(path) if path else "(nothing)"),
    ]
    if result.dialed:
        lines.append("dialed: " + ", ".join(f"{n} ({a})" for n, a in result.dial_results))
    if result.queued:
        lines.append(f"waited in queue: {result.queue_seconds:.1f}s ({', '.join(result.queues)})")
    lines.append(f"requests ({len(result.steps)}):")
    for run in _runs(result.steps):
        step, times = run[0], [s.elapsed * 1000 for s in run]
        timing = f"{times[0]:8.1f} ms"
        if len(run) > 1:
            timing += f"  (x{len(run)}, mean {sum(times) / len(times):.1f}, max {max(times):.1f})"
        lines.append(
            f"  {step.kind:<16} {step.method:<4} {_short(step.url):<60} {step.status:>3} {timing}"
        )
    lines.append(f"took {result.real_seconds:.2f}s real, {result.duration}s of simulated call time")
    return "\n".join(lines)
