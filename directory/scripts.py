"""The one registry of Lua scripts: every module that runs a script gets it here.

A script is registered with Redis's client on first use (never at import) and
its SHA computed once per process; `EVALSHA` then falls back to loading the
source when a restarted server no longer has it. Keeping the registry in one
place means one rule for every script (presence's transitions, a call's
hash, the verification lockouts, the directory cache's fills).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class _Script(Script):
    """redis-py's `Script`, called as one `evalsha` on the client given (loading the
    source when the server does not have it, as redis-py does). redis-py's own
    `__call__` imports `Pipeline` and copies its keys and arguments on every call;
    a pipeline still takes redis-py's path, which loads the script first."""

    def __call__(self, keys: Sequence[object] | None = None,
                 args: Iterable[object] | None = None,
                 client: redis.Redis | None = None) -> Any:
        """The script's reply. Raises what the command raises (`redis.ResponseError` for
        an error in the script, `redis.ConnectionError` once retries are spent)."""
        client = client or self.registered_client
        if isinstance(client, Pipeline):
            return super().__call__(keys, args, client)
        keys = keys or ()
        args = tuple(args or ())
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted (or another) server: load it, then run it.
            self.sha = client.script_load(self.script)
            return client.evalsha(self.sha, len(keys), *keys, *args)


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
        found = _registered[source] = _Script(r, source)
    return found
