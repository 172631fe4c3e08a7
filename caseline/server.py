"""`caseline serve`: the Flask app under gunicorn, configured in code."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from config.settings import Settings


class CaselineServer(BaseApplication):
    """A gunicorn application that builds caseline's app in each worker."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        """Keep the settings; gunicorn calls `load` in each worker process."""
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply our options to gunicorn's config."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Build the WSGI app (after fork: each worker has its own pools)."""
        from ivr import create_app

        return create_app(self.settings)


def gunicorn_options(settings: Settings, workers: int, threads: int) -> dict[str, Any]:
    """The production server settings (chosen by measurement, see docs/benchmarks.md)."""
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        # Recycle processes now and then; jitter so they don't restart together.
        "max_requests": 200000,
        "max_requests_jitter": 20000,
    }


def run_gunicorn(settings: Settings, *, workers: int, threads: int) -> None:
    """Serve until stopped."""
    CaselineServer(settings, gunicorn_options(settings, workers, threads)).run()
