"""What callers and advisors hear, read from `config/prompts.toml`.

The file is operator-owned; caseline re-reads it when its modification time
changes (looked at once a second), so a reworded prompt is heard on the next
call without a deploy. An operator's own copy (`CASELINE_PROMPTS`) may predate
a release that added a prompt: a key it lacks is read from the shipped file,
and a warning names the file and the key once, so the operator can add it.

A file that cannot be used (not TOML, not UTF-8, a prompt that is not text, a
placeholder caseline does not fill such as `{nmae}`) is never used: at start
`caseline serve` refuses it (`check_prompts_file`, exit 2); while the service
runs the last good prompts stay in use and the problem is logged once per change
of the file, and shown by `Prompts.problem` (/readyz, /metrics). The words of the
fallback to a human never depend on the file (`BUILT_IN`).
"""

from __future__ import annotations

import logging
import re
import string
import threading
import time
import tomllib
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("prompts.toml")
# How often the file's modification time is looked at (not on every prompt).
CHECK_EVERY_SECONDS = 1.0
# What the fallback to a human says when no prompts file could ever be read: the call
# that reaches the fallback number must not depend on the file that may have failed.
BUILT_IN = {
    "voice.voice": "Polly.Joanna",
    "voice.language": "en-US",
    "errors.fallback": "We are sorry for the trouble. Connecting you to an advisor.",
    "errors.apology": "We are sorry, we cannot take your call right now. The support "
                      "desk is open {hours}. Please call again.",
}

log = logging.getLogger(__name__)


class PromptsError(ValueError):
    """A prompts file caseline cannot use; the message names the file, the line and
    the problem."""


def _find(data: dict[str, dict[str, str]], name: str) -> str | None:
    """The prompt `section.name` of a parsed file, unfilled; None when the file lacks
    it (an empty string the file sets is the operator's choice, and stays)."""
    section, _, key = name.partition(".")
    table = data.get(section)
    return str(table[key]) if isinstance(table, dict) and key in table else None


def _names(data: dict[str, dict[str, str]]) -> list[str]:
    """Every "section.name" a parsed file sets."""
    return [f"{section}.{key}" for section, table in data.items()
            if isinstance(table, dict) for key in table]


def _placeholders(template: str) -> set[str]:
    """The `{placeholder}` names of a prompt; ValueError when its braces are broken."""
    return {field for _, field, _, _ in string.Formatter().parse(template)
            if field is not None}


def _line_of(text: str, name: str) -> int | None:
    """The line (from 1) where the file sets `section.name`, for the operator."""
    section, _, key = name.partition(".")
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1).strip('"')
        elif current == section and re.match(rf"\s*\"?{re.escape(key)}\"?\s*=", line):
            return number
    return None


def read_prompts(path: Path, reference: dict[str, dict[str, str]] | None = None
                 ) -> dict[str, dict[str, str]]:
    """The prompts of the file at `path`, checked; PromptsError naming the file, the line
    and the problem when it cannot be used. `reference` is the shipped file's prompts:
    a prompt may only use the placeholders its shipped wording uses (caseline fills
    those and no others)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PromptsError(f"prompts file {path}: cannot be read: "
                           f"{exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PromptsError(f"prompts file {path}: not UTF-8 (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message says "(at line L, column C)"
        raise PromptsError(f"prompts file {path}: not TOML: {exc}") from None
    for section, table in data.items():
        if not isinstance(table, dict):
            raise PromptsError(f"prompts file {path}: {section} is set outside a "
                               f"[section] (line {_line_of(text, '.' + section)})")
        for key, value in table.items():
            name = f"{section}.{key}"
            where = f"prompts file {path}, line {_line_of(text, name)}: {name}"
            if not isinstance(value, str):
                raise PromptsError(f"{where} must be text in quotes; got {value!r}")
            try:
                used = _placeholders(value)
            except ValueError as exc:
                raise PromptsError(f"{where} has broken braces ({exc}); write {{{{ or "
                                   "}} for a brace to be said") from None
            # A prompt the shipped file also has may use its placeholders only; any
            # other (the shipped file itself, a key caseline no longer says) plain names.
            shipped = _find(reference, name) if reference is not None else None
            allowed = _placeholders(shipped) if shipped is not None else set()
            unknown = sorted(used - allowed) if shipped is not None else \
                sorted(field for field in used if not field.isidentifier())
            if unknown:
                known = ", ".join(f"{{{field}}}" for field in sorted(allowed)) or "none"
                raise PromptsError(f"{where} uses {{{unknown[0]}}}, which caseline does "
                                   f"not fill (its placeholders: {known})")
    return data


def check_prompts_file(path: Path | None) -> None:
    """Raise PromptsError when the prompts file at `path` (None: the shipped one)
    cannot be used: what `caseline serve` checks before it starts anything."""
    Prompts(path).load()


class Prompts:
    """Prompt lookup by "section.name", with `{placeholders}` filled in."""

    def __init__(self, path: Path | None = None) -> None:
        """Prompts from `path` (CASELINE_PROMPTS, read with every setting by
        `Settings.from_env`), else the shipped file."""
        self.path = Path(path or DEFAULT_PATH)
        self._lock = threading.Lock()
        self._mtime: float = -1.0
        self._data: dict[str, dict[str, str]] = {}
        self._checked_at = float("-inf")  # the first prompt reads the file
        # A custom file falls back on the shipped one for the keys it lacks.
        self._shipped = None if self.path.resolve() == DEFAULT_PATH.resolve() \
            else Prompts(DEFAULT_PATH)
        self._warned: set[str] = set()
        # Why the file on disk is not in use (None: it is); logged once per change.
        self.problem: str | None = None
        self._failed_mtime: float | None = None

    def load(self) -> None:
        """Read the file now; PromptsError when it cannot be used (nothing changes)."""
        reference = self._shipped._current() if self._shipped is not None else None
        data = read_prompts(self.path, reference)
        self._warn_of_missing(data)
        self._data = data
        self.problem = None

    def _current(self) -> dict[str, dict[str, str]]:
        """The prompts in use: the file, re-read when it changed on disk (checked once a
        second); the last good ones while the file on disk cannot be used."""
        now = time.monotonic()
        # Until a first read is done, every caller goes on to the lock below and waits
        # for it: the calls at a service's first moment would hear empty prompts.
        if self._data and now < self._checked_at + CHECK_EVERY_SECONDS:
            return self._data
        self._checked_at = now
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None  # gone or unreadable: read below, which says why
        # A file already refused is read again only once it changes (or while it is gone).
        if mtime is None or mtime not in (self._mtime, self._failed_mtime):
            with self._lock:
                if mtime is None or mtime not in (self._mtime, self._failed_mtime):
                    self._reload(mtime)
        return self._data

    def _reload(self, mtime: float | None) -> None:
        """Read the changed file; keep the prompts in use when it cannot be used, and say
        why once per change (`mtime`: the file's modification time, None when unknown)."""
        try:
            self.load()
        except PromptsError as exc:
            if self.problem != str(exc) or self._failed_mtime != mtime:
                kept = "the last good prompts stay in use" if self._data else \
                    "callers hear the shipped prompts" if self._shipped is not None else \
                    "callers hear built-in wording only where it exists"
                log.error("%s; %s until it is fixed", exc, kept)
            self.problem, self._failed_mtime = str(exc), mtime
            return
        self._failed_mtime = None
        if mtime is not None:
            self._mtime = mtime

    def _warn_of_missing(self, data: dict[str, dict[str, str]]) -> None:
        """Warn, once per key, of each shipped prompt this custom file (just read as
        `data`) lacks: callers hear the shipped text for it until the operator adds it."""
        if self._shipped is None:
            return
        for name in _names(self._shipped._current()):
            if name not in self._warned and _find(data, name) is None:
                self._warned.add(name)
                log.warning("prompts file %s has no %s: callers hear the shipped text of "
                            "%s; add the key to word it yourself", self.path, name,
                            DEFAULT_PATH)

    def _template(self, name: str) -> str:
        """The unfilled prompt `section.name`: this file's, else the shipped file's,
        else the built-in wording, else ""."""
        own = _find(self._current(), name)
        if own is not None:
            return own
        if self._shipped is not None:
            return self._shipped._template(name)
        return BUILT_IN.get(name, "")

    def text(self, name: str, /, **values: object) -> str:
        """The prompt `section.name` with its placeholders filled (the shipped file's
        when a custom file lacks it)."""
        template = self._template(name)
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError, AttributeError):
            return template

    @property
    def voice(self) -> str:
        """The Twilio <Say> voice."""
        return self.text("voice.voice") or "Polly.Joanna"

    @property
    def language(self) -> str:
        """The Twilio <Say> language."""
        return self.text("voice.language") or "en-US"


def fallback_text(prompts: Prompts, name: str, /, **values: object) -> str:
    """The prompt `name` of the fallback to a human: the prompts' wording, or the
    built-in one when they cannot give it (the fallback must not fail as the call did)."""
    try:
        return prompts.text(name, **values)
    except Exception:  # noqa: BLE001 - whatever broke the call must not break this
        log.exception("prompts: %s could not be read; the built-in wording is said", name)
    return BUILT_IN[name].format(**values)
