"""A pytest plugin that lists the tests leaving open sockets to the garbage collector:
`.venv/bin/python -m pytest -p tests.socket_leaks [tests...]` writes them, with each socket's
two ends, to `socket-leaks.txt` (in the current directory; every xdist worker adds to it).

Such a socket is closed only when the collector finalises it, in whatever test is
running then, and whether the socket or its owner (a redis-py connection, a
`requests` session) is finalised first is chance: the suite therefore ignores the
"unclosed socket" warning (`pyproject.toml`), which would fail a random test, and
this plugin finds the leaks deterministically instead. It turns the collector off
and collects after each test (slower: use it on a few files).
"""

from __future__ import annotations

import gc
import socket
import weakref
from pathlib import Path

import pytest

REPORT = Path("socket-leaks.txt")


def pytest_configure(config: pytest.Config) -> None:
    """No collection but ours: each test's garbage is found after it. The report starts
    empty (emptied once, by the process that starts the xdist workers, if any)."""
    gc.disable()
    if not hasattr(config, "workerinput"):
        REPORT.write_text("")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After the test's fixtures are gone: which open sockets only garbage still held."""
    yield
    watched = []
    for thing in gc.get_objects():
        if type(thing) is socket.socket and thing.fileno() != -1:
            try:
                ends = (thing.getsockname(), thing.getpeername())
            except OSError:
                ends = (thing.getsockname(), None)
            watched.append((weakref.ref(thing), ends))
    gc.collect()
    leaked = [ends for ref, ends in watched if ref() is None]
    if leaked:
        with REPORT.open("a") as report:  # one write of one line: workers' lines never mix
            report.write(f"{item.nodeid}: {len(leaked)} {leaked}\n")
