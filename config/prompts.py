"""What callers and advisors hear, read from `config/prompts.toml`.

The file is operator-owned; caseline re-reads it when its modification time
changes (looked at once a second), so a reworded prompt is heard on the next
call without a deploy.
"""

from __future__ import annotations

import os
import threading
import time
import tomllib
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("prompts.toml")
# How often the file's modification time is looked at (not on every prompt).
CHECK_EVERY_SECONDS = 1.0


class Prompts:
    """Prompt lookup by "section.name", with `{placeholders}` filled in."""

    def __init__(self, path: Path | None = None) -> None:
        """Prompts from `path` (or `CASELINE_PROMPTS`, else the shipped file)."""
        self.path = Path(path or os.environ.get("CASELINE_PROMPTS") or DEFAULT_PATH)
        self._lock = threading.Lock()
        self._mtime: float = -1.0
        self._data: dict[str, dict[str, str]] = {}
        self._checked_at = 0.0

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
                        self._data = tomllib.load(handle)
                    self._mtime = mtime
        return self._data

    def text(self, name: str, /, **values: object) -> str:
        """The prompt `section.name` with its placeholders filled."""
        section, _, key = name.partition(".")
        template = str(self._current().get(section, {}).get(key, ""))
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
