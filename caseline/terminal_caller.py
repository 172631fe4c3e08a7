"""`caseline call`: a caller in the terminal, talking to a running caseline.

Posts what Twilio posts (signed with TWILIO_AUTH_TOKEN over PUBLIC_BASE_URL, as the
service checks it) to the service at `url` (else PUBLIC_BASE_URL, else
http://127.0.0.1:$PORT), walks the TwiML with
`twilio_side.Caller` and prints what the caller hears. With keys it
runs unattended (and `expect` turns the outcome into the exit status);
without, it asks the user for each key press and to play the advisor's
phone. A waiting caller is connected when the service's REST redirect reaches
the Twilio emulator (`--emulator`, CASELINE_EMULATOR_URL, or TWILIO_API_URL
when that points at a local emulator).

With `speak`, every prompt heard (the caller's and the advisor's whisper) is
also spoken aloud with espeak-ng, and `wav` writes them all into one WAV
file, so a prompt can be heard before it goes live.

It needs `twilio_side` (development and test tooling, installed by `make`);
`caseline call` checks that before importing this module.

Exit status: 0 the call ended as expected (or no expectation and no error),
1 it ended another way, 2 an application error (or bad options).
"""

from __future__ import annotations

import argparse
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NoReturn, TextIO

from caseline.console_hand import ColleagueAdder
from config.settings import Settings
from twilio_side import (
    ADVISOR_ACTIONS,
    DEFAULT_TO,
    OUTCOMES,
    AdvisorPolicy,
    Caller,
    Event,
    Gather,
    HttpLink,
    HttpTransport,
    TranscriptPrinter,
)

# `caseline call --attestation`: the SHAKEN/STIR verdict Twilio posts as `StirVerstat`.
STIR_VERSTAT: dict[str, str | None] = {
    "A": "TN-Validation-Passed-A",
    "B": "TN-Validation-Passed-B",
    "C": "TN-Validation-Passed-C",
    "failed": "TN-Validation-Failed-A",
    "none": None,
}


@dataclass(frozen=True)
class CallOptions:
    """The options of `caseline call` (the names its flags map to)."""

    from_number: str
    keys: str | None = None
    advisor: str | None = None
    expect: str | None = None
    url: str | None = None
    token: str | None = None
    to: str = DEFAULT_TO
    max_wait: float | None = None
    emulator: str | None = None
    account_sid: str | None = None
    talk_seconds: int = 60
    speak: bool = False
    wav: str | None = None
    attestation: str = "A"
    # Who ends a connected call ("caller", or "advisor": the survey follows).
    hangup: str = "caller"
    # A colleague the advisor adds from the console once connected (the conference).
    colleague: str | None = None
    # Real seconds a connected caller stays on the line (default 2 with a colleague).
    on_call: float | None = None

    @classmethod
    def coerce(cls, options: CallOptions | Mapping[str, Any] | Any) -> CallOptions:
        """Options from this class, a dict, or an argparse/click-like namespace."""
        if isinstance(options, CallOptions):
            return options
        if isinstance(options, Mapping):
            get = options.get
        else:

            def get(name: str, default: Any = None) -> Any:
                return getattr(options, name, default)

        values: dict[str, Any] = {}
        for f in fields(cls):
            value = get(f.name)
            if value is None and f.name == "from_number":
                value = get("from_") or get("from") or get("from_number_")
            if value is not None:
                values[f.name] = value
        if not values.get("from_number"):
            raise ValueError("a caller number (--from) is required")
        return cls(**values)


def _account_sid(settings: Settings) -> str:
    """The `AccountSid` the caller posts: TWILIO_ACCOUNT_SID, or "" (none posted) when it
    is unset. A placeholder could only be wrong where the service names its account,
    and that service logs a signed webhook from another account (`ivr.gate`); the
    signature alone admits a webhook, so a post without the field is heard as Twilio's."""
    return settings.twilio_account_sid if settings.account_sid_configured else ""


def _emulator_url(options: CallOptions, settings: Settings) -> str | None:
    """The emulator to poll for REST redirects, if any."""
    if options.emulator:
        return options.emulator
    if settings.emulator_url:
        return settings.emulator_url
    api = settings.twilio_api_url
    if api and "api.twilio.com" not in api:
        return api
    return None


def _read_line(inp: TextIO, timeout: float | None = None) -> str | None:
    """One line from the user (None at end of input; "" on timeout)."""
    if timeout is not None:
        try:
            ready, _, _ = select.select([inp], [], [], timeout)
        except (OSError, ValueError, TypeError):
            return ""
        if not ready:
            return ""
    line = inp.readline()
    if line == "":
        return None
    return line.strip()


SPEECH_GAP_SECONDS = 0.4


def espeak_binary() -> str | None:
    """The espeak-ng program on PATH (or the older espeak), if installed."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def write_wav(
    binary: str, texts: Sequence[str], path: Path, gap: float = SPEECH_GAP_SECONDS
) -> None:
    """Speak `texts` with espeak-ng into one WAV file at `path`, a short gap between them."""
    with tempfile.TemporaryDirectory(prefix="caseline-wav-") as tmp:
        parts = []
        for index, text in enumerate(texts):
            part = Path(tmp) / f"{index:03d}.wav"
            subprocess.run(
                [binary, "-w", str(part), "--", text],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
            )
            parts.append(part)
        with wave.open(str(path), "wb") as out:
            shape: tuple[int, int, int] | None = None
            for part in parts:
                with wave.open(str(part), "rb") as piece:
                    this = (piece.getnchannels(), piece.getsampwidth(), piece.getframerate())
                    if shape is None:
                        shape = this
                        out.setnchannels(this[0])
                        out.setsampwidth(this[1])
                        out.setframerate(this[2])
                    elif this != shape:
                        raise wave.Error(f"{part.name} is {this}, not {shape}")
                    else:
                        out.writeframes(b"\0" * (int(gap * shape[2]) * shape[0] * shape[1]))
                    out.writeframes(piece.readframes(piece.getnframes()))


class Speaker:
    """Speaks the prompts aloud with espeak-ng, one after another, and keeps them for a WAV.

    Speaking happens on a background thread so the call walks on; the
    interactive caller waits for it before asking for keys (a caller hears the
    menu before pressing), and the end of the call waits for the last prompt.
    """

    def __init__(
        self,
        *,
        speak: bool = False,
        wav: str | Path | None = None,
        err: TextIO | None = None,
        binary: str | None = None,
    ) -> None:
        """Speak aloud when `speak`; collect for `wav`; a missing espeak-ng is a note on `err`."""
        self.err = err or sys.stderr
        self.wav = Path(wav) if wav else None
        self.binary = binary or (espeak_binary() if speak or self.wav else None)
        self.texts: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._current: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        if (speak or self.wav) and self.binary is None:
            what = "spoken" + (f" and {self.wav} is not written" if self.wav else "")
            print(f"caseline call: espeak-ng is not installed: prompts are not {what}",
                  file=self.err)
        if speak and self.binary is not None:
            self._thread = threading.Thread(target=self._run, name="caseline-speaker", daemon=True)
            self._thread.start()

    def add(self, text: str) -> None:
        """Speak `text` after what is already queued (and keep it for the WAV)."""
        if self.binary is None or not text.strip():
            return
        if self.wav is not None:
            self.texts.append(text)
        if self._thread is not None:
            self._queue.put(text)

    def drain(self) -> None:
        """Wait until everything queued so far has been spoken."""
        if self._thread is not None:
            self._queue.join()

    def _run(self) -> None:
        """The speaking thread: one espeak-ng at a time, in order."""
        while True:
            text = self._queue.get()
            try:
                if text is None:
                    return
                if self.binary is None:
                    continue
                self._current = subprocess.Popen(
                    [self.binary, "--", text],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                self._current.wait()
            except OSError as exc:
                print(f"caseline call: cannot run {self.binary}: {exc}", file=self.err)
                self.binary = None
            finally:
                self._current = None
                self._queue.task_done()

    def close(self, *, interrupted: bool = False) -> None:
        """Finish speaking (stop at once when `interrupted`), then write the WAV if asked."""
        if self._thread is not None:
            if interrupted:
                while True:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        break
                    self._queue.task_done()
                current = self._current
                if current is not None:
                    current.terminate()
            self._queue.put(None)
            self._thread.join(timeout=None if not interrupted else 5)
            self._thread = None
        if self.wav is None or self.binary is None:
            return
        if not self.texts:
            print(f"caseline call: no prompt was heard: {self.wav} is not written", file=self.err)
            return
        try:
            write_wav(self.binary, self.texts, self.wav)
        except (OSError, subprocess.SubprocessError, wave.Error) as exc:
            print(f"caseline call: cannot write {self.wav}: {exc}", file=self.err)
            return
        print(f"caseline call: wrote {len(self.texts)} prompt(s) to {self.wav}", file=self.err)


class _Terminal:
    """The user's side: prints events, asks for keys and advisor choices."""

    def __init__(
        self, out: TextIO, inp: TextIO, speaker: Speaker, *, interactive: bool = False
    ) -> None:
        self.out = out
        self.inp = inp
        self.speaker = speaker
        self.interactive = interactive
        self.printer = TranscriptPrinter()
        self.closed = False
        self.auto_answer = False

    def say(self, line: str) -> None:
        # One write per line: a prompt and its newline reach the terminal together.
        self.out.write(line + "\n")
        self.out.flush()

    def on_event(self, event: Event) -> None:
        lines = self.printer.lines(event)
        for line in lines:
            self.say(line)
        if event.kind == "say" and lines:
            self.speaker.add(event.text)
        if event.kind == "enqueue" and self.interactive:
            self.say(
                "> waiting: an advisor freed from another terminal or the console connects you;"
                " type a key and Enter to press it, Ctrl-C hangs up"
            )

    def _ask(self, prompt: str) -> str | None:
        """Show a prompt once the prompts before it have been heard; the user's line."""
        self.speaker.drain()
        self.say(prompt)
        line = _read_line(self.inp)
        if line is None:
            self.closed = True
        return line

    def _input_ended(self) -> NoReturn:
        """The user's input is over (Ctrl-D, a closed pipe) where only they can go on
        (waiting, an advisor's phone): the caller hangs up, as with Ctrl-C, rather
        than wait and ring advisors for a caller nobody plays any more."""
        self.say("(end of input: the caller hangs up)")
        raise KeyboardInterrupt

    def gather(self, gather: Gather) -> str:
        """Ask the user for the keys of one Gather (Enter alone is silence)."""
        if self.closed:
            line = None
        elif gather.queue is not None:
            # A waiting caller may press a key, but the queue must keep polling.
            line = _read_line(self.inp, timeout=min(gather.timeout, 2))
        else:
            limits = []
            if gather.num_digits:
                limits.append(f"{gather.num_digits} digit(s)")
            if gather.finish_on_key:
                limits.append(f"end with {gather.finish_on_key}")
            hint = f" ({', '.join(limits)})" if limits else ""
            line = self._ask(f"> your keys{hint}, Enter alone for silence:")
        if line is None:
            self.closed = True
            if gather.queue is not None:
                self._input_ended()  # nobody plays the waiting caller any more
            return ""
        return line

    def advisor(self, number: str, attempt: int) -> str:
        """Ask the user to play the advisor's phone (or answer for every advisor)."""
        if self.auto_answer:
            return "answer"
        if self.closed:
            self._input_ended()
        while True:
            line = self._ask(
                f"> {number} is ringing: [a]nswer, [n]o answer, [b]usy, [v]oicemail,"
                " a[u]to-answer every advisor from now on?"
            )
            if line is None:
                self._input_ended()
            choice = (line or "a").lower()
            if choice in ("u", "auto", "auto-answer"):
                self.auto_answer = True
                return "answer"
            for action in ADVISOR_ACTIONS:
                if action.startswith(choice) or choice == action.replace("-", " "):
                    return action
            self.say(f"(not a choice: {line!r})")

    def advisor_gather(self, gather: Gather) -> str:
        """Ask the user, as the advisor, for the whisper's accept key."""
        if self.closed:
            return ""
        if self.auto_answer:
            return "1"
        line = self._ask("> as the advisor: press a key to accept (Enter alone lets it time out):")
        return line or ""


def _hang_up_when_stopped() -> None:
    """SIGTERM (a `timeout`, a process manager) and SIGHUP (the terminal closed) hang
    up as Ctrl-C does: Twilio's status callback goes out. Killed without it, the
    call would stay in the service's queue, live at the emulator, taking advisors."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (and receives the signals)

    def hang_up(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, hang_up)


def run_call(
    options: CallOptions | Mapping[str, Any] | Any,
    out: TextIO | None = None,
    inp: TextIO | None = None,
    *,
    settings: Settings | None = None,
    err: TextIO | None = None,
) -> int:
    """Place one call on the running service from the terminal; the exit status."""
    out = out or sys.stdout
    inp = inp or sys.stdin
    err = err or sys.stderr
    try:
        opts = CallOptions.coerce(options)
        if opts.advisor is not None:
            AdvisorPolicy.coerce(opts.advisor)
    except (ValueError, TypeError) as exc:
        print(f"caseline call: {exc}", file=err)
        return 2
    if opts.hangup not in ("caller", "advisor"):
        print("caseline call: --hangup must be caller or advisor", file=err)
        return 2
    if opts.expect is not None and opts.expect not in OUTCOMES:
        print(f"caseline call: --expect must be one of {', '.join(OUTCOMES)}", file=err)
        return 2
    settings = settings or Settings.from_env()
    if opts.colleague and not settings.api_token:
        print("caseline call: --colleague needs CASELINE_API_TOKEN (the advisor adds the "
              "colleague through the API)", file=err)
        return 2
    base_url = opts.url or settings.public_base_url or f"http://127.0.0.1:{settings.port}"
    # The service checks each signature over its PUBLIC_BASE_URL (a path prefix
    # included) + the path: the URL Twilio requested. So the caller signs over
    # PUBLIC_BASE_URL too, and `--url` says only where the requests go (the host
    # behind the proxy, say); the transport maps every URL under PUBLIC_BASE_URL
    # (TwiML's, the REST redirects') onto it.
    signed_base = settings.public_base_url or base_url
    token = opts.token or settings.twilio_auth_token
    if not token:
        print("caseline call: no TWILIO_AUTH_TOKEN: requests go unsigned", file=err)
    unattended = opts.keys is not None
    speaker = Speaker(speak=opts.speak, wav=opts.wav, err=err)
    terminal = _Terminal(out, inp, speaker, interactive=not unattended)
    if opts.advisor is not None:
        policy = AdvisorPolicy.coerce(opts.advisor)
    elif unattended:
        policy = AdvisorPolicy()
    else:
        policy = AdvisorPolicy(decide_fn=terminal.advisor)
    emulator = _emulator_url(opts, settings)
    link = HttpLink(emulator) if emulator else None
    max_wait = opts.max_wait if opts.max_wait is not None else 300.0
    terminal.say(f"calling {base_url} from {opts.from_number} to {opts.to}")
    if signed_base.rstrip("/") != base_url.rstrip("/"):
        terminal.say(f"(signed as Twilio would reach it: {signed_base.rstrip('/')})")
    if link is None:
        terminal.say("(no Twilio emulator: a caller who must wait will not be connected)")
    if not unattended:
        terminal.say("(type the keys of each question, then Enter; Ctrl-C hangs up)")
    interrupted = False
    hand = (ColleagueAdder(base_url, settings.api_token or "", opts.colleague, terminal.say)
            if opts.colleague else None)
    on_call = opts.on_call if opts.on_call is not None else (2.0 if hand else 0.0)
    with HttpTransport(base_url, auth_token=token, public_base_url=signed_base) as transport:
        caller = Caller(
            transport,
            opts.from_number,
            opts.to,
            account_sid=opts.account_sid or _account_sid(settings),
            keys=(opts.keys or "").split() if unattended else None,
            advisor_policy=policy,
            talk_seconds=opts.talk_seconds,
            emulator_link=link,
            wait_poll_interval=0.25,
            wait_cycle_seconds=2.0,
            max_wait_seconds=max_wait,
            on_event=terminal.on_event,
            gather_input=None if unattended else terminal.gather,
            advisor_gather_input=None if unattended or opts.advisor else terminal.advisor_gather,
            attestation=STIR_VERSTAT[opts.attestation],
            bridged_hangup=opts.hangup,
            on_call_seconds=on_call if link is not None else 0.0,
        )
        if hand is not None:
            # The advisor's console acts once the caller is connected.
            caller.on_event = lambda event: (terminal.on_event(event),
                                             hand.on_event(event, caller.call_sid))
        _hang_up_when_stopped()
        try:
            result = caller.run()
        except KeyboardInterrupt:
            interrupted = True
            result = caller.result  # the status callback went out: the caller hung up
            terminal.say("(interrupted: the caller hung up)")
        finally:
            if link is not None:
                link.close()
    terminal.say("")
    terminal.say(result.summary())
    status = 0
    if result.error is not None:
        status = 2
    elif opts.expect is not None and result.outcome != opts.expect:
        terminal.say(f"expected {opts.expect}, the call ended with {result.outcome}")
        status = 1
    elif hand is not None and not hand.added:
        terminal.say(f"expected colleague {opts.colleague} to be added; it was not")
        status = 1
    try:
        speaker.close(interrupted=interrupted)  # the last prompts are still being spoken
    except KeyboardInterrupt:
        speaker.close(interrupted=True)
    return status


def build_parser() -> argparse.ArgumentParser:
    """The flags of `caseline call` (for `python -m caseline.terminal_caller`)."""
    parser = argparse.ArgumentParser(prog="caseline call", description="A caller in the terminal.")
    parser.add_argument("--from", dest="from_number", required=True, help="caller's number")
    parser.add_argument("--keys", default=None, help='scripted keys, e.g. "1 2024117#"')
    parser.add_argument("--advisor", choices=ADVISOR_ACTIONS, default=None)
    parser.add_argument("--expect", choices=OUTCOMES, default=None)
    parser.add_argument("--url", default=None,
                        help="where to send the requests (default PUBLIC_BASE_URL); they are "
                             "signed over PUBLIC_BASE_URL when it is set")
    parser.add_argument("--token", default=None, help="Twilio auth token for signatures")
    parser.add_argument("--to", default=DEFAULT_TO, help="the number called")
    parser.add_argument("--max-wait", dest="max_wait", type=float, default=None)
    parser.add_argument("--emulator", default=None, help="Twilio emulator URL")
    parser.add_argument("--speak", action="store_true", help="speak the prompts (espeak-ng)")
    parser.add_argument("--wav", default=None, help="write the prompts heard into this WAV file")
    parser.add_argument("--hangup", choices=("caller", "advisor"), default="caller",
                        help="who ends a connected call (advisor: the survey follows)")
    parser.add_argument("--colleague", default=None,
                        help="a colleague the advisor adds once connected (a conference)")
    parser.add_argument("--on-call", dest="on_call", type=float, default=None,
                        help="real seconds a connected caller stays on the line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m caseline.terminal_caller --from NUMBER ...`."""
    return run_call(build_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
