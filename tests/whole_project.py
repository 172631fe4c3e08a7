"""Every module of the repository, imported before any test runs, so that Hypothesis
draws from the same constants whatever ran before.

Hypothesis draws some values (about one in twenty) from the literals of the modules
imported so far outside site-packages, the standard library and test files (its
"local constants"), and looks again whenever `sys.modules` grows. Which of ours a
run had imported depended on the test files collected and the tests run before
(`caseline.cli`, `workers.call_log`, ... come in lazily), so a derandomized test
generated other examples after other files than alone: the webhook fuzz found a
caller waiting in two queues only after three other files. With the whole
repository imported first, every Hypothesis test draws from one pool, in any
order and alone; `check_nothing_new` fails a test that imports a module of ours
this could not reach, since every test after it would draw from another pool.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from config.settings import PROJECT_ROOT


def _never_imported(name: str) -> bool:
    """A module no test process imports by name: running a `__main__` is what importing
    it does (`twilio_side`'s starts the REST emulator), and Alembic runs the migrations
    from their files (env.py needs its context), never as modules."""
    return name.endswith(".__main__") or name.startswith("directory.migrations.")


_ASIDE = (PROJECT_ROOT / "tests", PROJECT_ROOT / ".venv")

_seen: set[str] = set()


def _ours(name: str) -> bool:
    """Whether module `name` is one of the repository's (tests and the virtualenv aside)."""
    path = getattr(sys.modules.get(name), "__file__", None)
    if not path:
        return False
    file = Path(path).resolve()
    return file.is_relative_to(PROJECT_ROOT) and not any(
        file.is_relative_to(aside) for aside in _ASIDE)


def import_all() -> None:
    """Import every module of the repository's packages but the tests'."""
    for init in sorted(PROJECT_ROOT.glob("*/__init__.py")):
        package = init.parent.name
        if init.parent in _ASIDE:
            continue
        importlib.import_module(package)
        for module in pkgutil.walk_packages([str(init.parent)], f"{package}."):
            if not _never_imported(module.name):
                importlib.import_module(module.name)
    _seen.update(sys.modules)


def check_nothing_new() -> None:
    """Fail when a module of ours was imported since the last check (or `import_all`)."""
    fresh = [name for name in list(sys.modules) if name not in _seen]
    _seen.update(fresh)
    new = sorted(name for name in fresh if _ours(name))
    assert not new, (
        f"{new} imported during this test, after tests/whole_project.py imported the "
        "repository: Hypothesis would draw other examples in every test after this one. "
        "Make tests/whole_project.py import it too.")
