"""A local stand-in for the few Twilio REST endpoints caseline calls.

The service connects a waiting caller by redirecting their call through
Twilio's REST API (`Calls/{CallSid}.json` or a queue's
`Members/{CallSid}.json`, with `Url`). In tests, demos and benchmarks that API
is this emulator: a small threaded HTTP server that answers like Twilio
(`twilio_side.rest_api`), records every request, and hands each redirect to
the simulated call it is meant for (`twilio_side.Caller`), in this process
(`InProcessLink`) or another one over HTTP (`HttpLink`). Twilio's queues
themselves (`Queues.json`, their `MaxSize`) are `twilio_side.queue_api`'s; the
calls waiting in them are this process's `twilio_side.queues.QUEUES`, which
refuses a call past a queue's size (queue-full).

Point twilio's client at it with `client.api.base_url = emulator.url`.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator

from werkzeug.routing import Map
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from twilio_side.links import LinkRoutes, link_rules
from twilio_side.queue_api import QueueResources, queue_rules
from twilio_side.rest_api import RestApi, api_rules


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without a log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Say nothing: tests and benchmarks poll this server a lot."""


class TwilioEmulator(QueueResources, RestApi, LinkRoutes):
    """Twilio's call-control REST endpoints, served locally in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
    ) -> None:
        """Configure; credentials, when given, are required of every API request."""
        super().__init__()
        self.host = host
        self.port = port
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = Map([*api_rules(), *queue_rules(), *link_rules()], strict_slashes=False)

    def start(self) -> str:
        """Listen in a background thread; the base URL (`http://127.0.0.1:PORT`)."""
        if self._server is not None:
            return self.url
        self._server = make_server(
            self.host, self.port, self.wsgi_app, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05),
            name="twilio-emulator",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop listening and close the socket."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> TwilioEmulator:
        """Start on entering a `with` block."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving a `with` block."""
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give twilio's client (`client.api.base_url`)."""
        return f"http://{self.host}:{self.port}"


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8099,
    *,
    account_sid: str | None = None,
    auth_token: str | None = None,
) -> None:
    """Run the emulator in the foreground until interrupted (Ctrl-C)."""
    emulator = TwilioEmulator(host, port, account_sid=account_sid, auth_token=auth_token)
    url = emulator.start()
    checks = "checks credentials" if account_sid and auth_token else "accepts any credentials"
    print(f"Twilio REST emulator on {url} ({checks}); Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def main(argv: Iterator[str] | list[str] | None = None) -> int:
    """`python -m twilio_side [--host H] [--port P]`."""
    parser = argparse.ArgumentParser(
        prog="python -m twilio_side", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--account-sid", default=None, help="require this account (Basic auth)")
    parser.add_argument("--auth-token", default=None, help="require this token (Basic auth)")
    args = parser.parse_args(None if argv is None else list(argv))
    serve_forever(args.host, args.port, account_sid=args.account_sid, auth_token=args.auth_token)
    return 0

