"""The ceiling: the least a signed Twilio webhook can cost on this stack.

One bare Flask endpoint that does what every caseline webhook must do and
nothing else: check `X-Twilio-Signature` with twilio's `RequestValidator`
(over PUBLIC_BASE_URL + path, as caseline does) and answer a fixed `<Gather>`
built with twilio's `VoiceResponse`. It is served by gunicorn with
caseline's production options (`caseline.server.gunicorn_options`) except the
worker class and counts, which are the best found for it (`bench/explore.py
ceiling`; gthread, gevent and sync tried), so the difference between the two
sides is caseline's own work and caseline's own server choice.

    python -m bench.ceiling --port 8101 --worker-class gthread --workers 1 --threads 4
    python -m bench.ceiling --port 8101 --worker-class gevent --workers 1 --connections 100

Reads TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL from the environment.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Gather, VoiceResponse

from caseline.server import gunicorn_options
from config.settings import Settings

MENU = (
    "For an existing case, press 1. To report a new case, press 2. For add-on products, "
    "press 6. To report an outage, press 8. To hear these options again, press star."
)


def create_ceiling_app(auth_token: str, public_base_url: str) -> Flask:
    """A Flask app whose every `/voice/*` POST is signature-checked and answers one Gather."""
    app = Flask(__name__)
    base = public_base_url.rstrip("/")

    @app.post("/voice/<path:_rest>")
    def webhook(_rest: str) -> Response:
        """Validate the signature, then answer a fixed menu `<Gather>`."""
        query = request.query_string.decode("latin-1")
        url = base + request.path + (f"?{query}" if query else "")
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(auth_token).validate(url, request.form, signature):
            return Response(str(VoiceResponse()), status=403, mimetype="text/xml")
        response = VoiceResponse()
        gather = Gather(input="dtmf", action="/voice/menu", method="POST", timeout=6,
                        num_digits=1, finish_on_key="")
        gather.say(MENU, voice="Polly.Joanna", language="en-US")
        response.append(gather)
        return Response(str(response), mimetype="text/xml")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Liveness, as caseline's."""
        return {"status": "ok", "pid": os.getpid()}

    return app


class CeilingServer(BaseApplication):
    """gunicorn serving the ceiling app with caseline's options."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        """Keep the app and the options."""
        self.app = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Apply the options to gunicorn's config."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """The WSGI app."""
        return self.app


def main() -> None:
    """Serve the ceiling until stopped."""
    parser = argparse.ArgumentParser(description="the ceiling endpoint under gunicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--worker-class", choices=("gthread", "sync", "gevent"),
                        default="gthread")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=1000,
                        help="gevent: connections per process (worker_connections)")
    args = parser.parse_args()
    token = os.environ["TWILIO_AUTH_TOKEN"]
    base = os.environ.get("PUBLIC_BASE_URL") or f"http://{args.host}:{args.port}"
    settings = Settings(host=args.host, port=args.port)
    options = gunicorn_options(settings, args.workers, args.threads)
    options["worker_class"] = args.worker_class
    if args.worker_class == "gevent":
        options.pop("threads")
        options["worker_connections"] = args.connections
    CeilingServer(create_ceiling_app(token, base), options).run()


if __name__ == "__main__":
    main()
