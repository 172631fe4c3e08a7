"""What callers and advisors hear, read from `config/prompts.toml`.

The file is operator-owned; caseline re-reads it when its modification time
changes (looked at once a second), so a reworded prompt is heard on the next
call without a deploy. An operator's own copy (`CASELINE_PROMPTS`) may predate
a release that added a prompt: a key it lacks is read from the shipped file,
and a warning names the file and the key once, so the operator can add it.
"""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("prompts.toml")
# How often the file's modification time is looked at (not on every prompt).
CHECK_EVERY_SECONDS = 1.0

log = logging.getLogger(__name__)


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


class Prompts:
    """Prompt lookup by "section.name", with `{placeholders}` filled in."""

    def __init__(self, path: Path | None = None) -> None:
        """Prompts from `path` (CASELINE_PROMPTS, read with every setting by
        `Settings.from_env`), else the shipped file."""
        self.path = Path(path or DEFAULT_PATH)
        self._lock = threading.Lock()
        self._mtime: float = -1.0
        self._data: dict[str, dict[str, str]] = {}
        self._checked_at = 0.0
        # A custom file falls back on the shipped one for the keys it lacks.
        self._shipped = None if self.path.resolve() == DEFAULT_PATH.resolve() \
            else Prompts(DEFAULT_PATH)
        self._warned: set[str] = set()

    def _current(self) -> dict[str, dict[str, str]]:
        """The parsed file, re-read when it changed on disk (checked once a second)."""
        now = time.monotonic()
        if self._data and now < self._checked_at + CHECK_EVERY_SECONDS:
            return self._data
        self._checked_at = now
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = self._mtime
        if mtime != self._mtime:
            with self._lock:
                if mtime != self._mtime:
                    with open(self.path, "rb") as handle:
                        data = tomllib.load(handle)
                    self._warn_of_missing(data)
                    self._data = data
                    self._mtime = mtime
        return self._data

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
        else ""."""
        own = _find(self._current(), name)
        if own is not None:
            return own
        return self._shipped._template(name) if self._shipped is not None else ""

    def text(self, name: str, /, **values: object) -> str:
        """The prompt `section.name` with its placeholders filled (the shipped file's
        when a custom file lacks it)."""
        template = self._template(name)
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template

    @property
    def voice(self) -> str:
        """The Twilio <Say> voice."""
        return self.text("voice.voice") or "Polly.Joanna"

    @property
    def language(self) -> str:
        """The Twilio <Say> language."""
        return self.text("voice.language") or "en-US"
