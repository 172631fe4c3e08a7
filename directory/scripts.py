"""The one registry of Lua scripts: every module that runs a script gets it here.

A script is registered with Redis's client on first use (never at import) and
its SHA computed once per process; `EVALSHA` then falls back to loading the
source when a restarted server no longer has it. Keeping the registry in one
place means one rule for every script (presence's transitions, a call's
hash, the verification lockouts, the directory cache's fills).
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

_registered: dict[str, Script] = {}


def as_hash(flat: list[object]) -> dict[str, str]:
    """A hash as a script returns it (Lua's `HGETALL`: name, value, name, value...) as
    a dict of text, whether or not the client decodes responses."""
    text = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in flat]
    return dict(zip(text[::2], text[1::2], strict=True))


def script(r: redis.Redis, source: str) -> Script:
    """The registered script for `source` (call it with `keys=`, `args=`, `client=`)."""
    found = _registered.get(source)
    if found is None:
        found = _registered[source] = r.register_script(source)
    return found
