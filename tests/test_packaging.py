"""What an install carries: the simulated Twilio (`twilio_side`) is test and dev tooling only."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import zipfile
from fnmatch import fnmatch
from pathlib import Path

import pytest
from click.testing import CliRunner

from caseline import cli
from config.settings import PROJECT_ROOT
from directory.db import head_revision


def test_caselines_wheel_leaves_the_simulated_twilio_out():
    """setuptools packs the top-level folders `include` names: never twilio_side."""
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packed = {d.name for d in PROJECT_ROOT.iterdir()
              if (d / "__init__.py").is_file() and any(fnmatch(d.name, p) for p in include)}
    assert {"caseline", "ivr", "routing", "workers", "directory", "telephony", "jobs",
            "config"} <= packed
    assert "twilio_side" not in packed
    assert (PROJECT_ROOT / "twilio_side" / "pyproject.toml").is_file()  # its own distribution


@pytest.mark.parametrize("command", [["call", "--from", "+16125550101", "--keys", "1"],
                                     ["twilio-emulator", "--port", "9"]])
def test_without_the_simulated_twilio_the_commands_say_how_to_get_it(monkeypatch, command):
    """On a production install (no twilio_side) the dev commands explain, not crash."""
    monkeypatch.setitem(sys.modules, "twilio_side", None)  # `import twilio_side` now fails
    result = CliRunner().invoke(cli.main, command)
    assert result.exit_code == 2
    assert "twilio_side" in result.stderr
    assert "make run" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


# Floors below which a dependency has a known hole the line would carry (SECURITY.md):
# Werkzeug's debugger and multipart parsing, gunicorn's request smuggling, requests'
# certificate verification reuse, rq before it kept a worker's name on its jobs.
FLOORS = {"flask": (3, 1), "werkzeug": (3, 1), "gunicorn": (23,), "requests": (2, 32, 4),
          "rq": (2, 11)}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def test_dependencies_have_their_floors_and_the_lock_pins_every_package_with_hashes():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {}
    for requirement in config["project"]["dependencies"]:
        name, _, floor = requirement.partition(">=")
        declared[name.strip().lower()] = _version(floor.strip())
    for name, floor in FLOORS.items():
        assert declared.get(name, ()) >= floor, f"{name} must be >= {floor}"
    lock = (PROJECT_ROOT / "requirements.lock").read_text(encoding="utf-8")
    pins = dict(line.split("==", 1) for line in lock.splitlines()
                if "==" in line and not line.startswith(("#", " ")))
    for name, floor in FLOORS.items():
        pinned = pins[name].split()[0]
        assert _version(pinned) >= floor, f"the lock pins {name} {pinned}, below {floor}"
    lines = lock.splitlines()
    unhashed = [line for line, after in zip(lines, [*lines[1:], ""], strict=True)
                if "==" in line and not line.startswith(("#", " "))
                and not after.strip().startswith("--hash=sha256:")]
    assert len(pins) > 20 and not unhashed, f"pinned without hashes: {unhashed}"
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.lock" in makefile


def test_postgres_is_an_extra_that_the_tests_install_and_the_lock_pins():
    """`pip install caseline[postgres]` brings psycopg 3; `make test` has it (the test
    extra repeats it) and the hash-pinned lock pins it, with Alembic."""
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = config["project"]["optional-dependencies"]
    assert any(req.startswith("psycopg[binary]") for req in extras["postgres"])
    assert set(extras["postgres"]) <= set(extras["test"])
    assert any(req.startswith("alembic") for req in config["project"]["dependencies"])
    lock = (PROJECT_ROOT / "requirements.lock").read_text(encoding="utf-8")
    pinned = {line.split("==", 1)[0] for line in lock.splitlines() if "==" in line}
    assert {"psycopg", "psycopg-binary", "alembic"} <= pinned
    assert "file://" not in lock  # the checkout itself is never locked (unhashable)


def test_an_installed_wheel_migrates_a_database_with_alembic(tmp_path):
    """The wheel carries the migrations and their alembic.ini: unpacked on its own
    (first on the path, so nothing comes from the checkout), Alembic's command line
    with the packaged ini builds a database to head from any folder."""
    # Built from a copy: setuptools' build/ folder in the checkout could hold files
    # deleted since, and would ship them.
    source = tmp_path / "source"
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "instance", "*.egg-info", "__pycache__",
        ".hypothesis", ".ruff_cache"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=120)
    [wheel] = wheels.glob("caseline-*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(installed)
    ini = installed / "directory" / "migrations" / "alembic.ini"
    database = tmp_path / "fresh.db"
    env = {**os.environ, "PYTHONPATH": str(installed),
           "DATABASE_URL": f"sqlite:///{database}"}
    alembic = Path(sys.executable).parent / "alembic"
    upgrade = subprocess.run([str(alembic), "-c", str(ini), "upgrade", "head"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert upgrade.returncode == 0, upgrade.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import directory.db as d; print(d.__file__)"],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(installed))
    with sqlite3.connect(database) as db:
        [(revision,)] = db.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision == head_revision()  # every migration the source has is in the wheel
