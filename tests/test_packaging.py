"""What an install carries: the simulated Twilio (`twilio_side`) is test and dev tooling only."""

from __future__ import annotations

import sys
import tomllib
from fnmatch import fnmatch

import pytest
from click.testing import CliRunner

from caseline import cli
from config.settings import PROJECT_ROOT


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
