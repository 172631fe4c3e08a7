"""The console's sign-in sessions, kept in Redis: the browser holds only an
opaque random id in a cookie (HttpOnly, SameSite=Lax, Secure except over
plain http on a loopback address, where local tries and tests run).

A signed-in session stands while its account's credentials version is the one
it signed in under (`directory.accounts`: a new password or role ends it), and
for 12 hours from sign-in at most, however busy its page keeps it."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Flask, Request, Response, request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from config import webhooks
from directory import keys
from directory.accounts import credentials_version

COOKIE_NAME = "caseline_console"
# A sign-in lasts a shift, counted from the sign-in: a page left open (it polls, or
# holds an event stream) does not keep it alive beyond that.
LIFETIME_SECONDS = 12 * 3600
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


class WebSession(CallbackDict[str, Any], SessionMixin):
    """One browser's sign-in: a dict saved to Redis under its opaque id."""

    def __init__(self, initial: dict[str, Any] | None = None, sid: str | None = None) -> None:
        """Wrap `initial`; any change marks the session modified."""

        def on_update(_: Any) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.modified = False
        self.rotate = False
        self.unsaved = False  # its save failed (Redis): not tried again for the error page

    def renew(self) -> None:
        """Forget everything and take a new id at the next save (at sign-in and sign-out)."""
        self.clear()
        self.rotate = True


def stands(r: redis.Redis, stored: dict[str, Any]) -> bool:
    """Whether a stored session still holds: one before sign-in always; a signed-in one
    while its account's credentials version is the one it signed in under (sessions
    made before versions were kept have none, and are over)."""
    advisor = stored.get("advisor")
    if not advisor:
        return True
    version = stored.get("version")
    return isinstance(version, int) and version == credentials_version(r, str(advisor))


def still_signed_in(r: redis.Redis, sid: str, stored: dict[str, Any]) -> bool:
    """Whether the session `sid` (as `stored` when the request began) still stands:
    neither signed out, nor past its lifetime, nor made under old credentials."""
    return bool(r.exists(keys.console_session(sid))) and stands(r, stored)


def is_loopback_http(request: Request) -> bool:
    """Whether the request came over plain http to a loopback address."""
    if request.scheme != "http":
        return False
    host = urlsplit(f"//{request.host}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RedisSessionInterface(SessionInterface):
    """Flask's session, stored server-side in Redis (`keys.console_session`)."""

    def __init__(self, r: redis.Redis) -> None:
        """Sessions live on this Redis client."""
        self.r = r

    def open_session(self, app: Flask, request: Request) -> WebSession | None:
        """The session named by the cookie, or a new empty one (no Redis read without one);
        None (Flask's null session, never saved) for Twilio's webhooks, which sign in
        no one: the cookie's parse and the session's save cost every webhook otherwise."""
        if request.path.startswith(webhooks.PREFIX + "/"):
            return None
        sid = request.cookies.get(COOKIE_NAME, "")
        if _SESSION_ID.match(sid):
            stored = self.r.get(keys.console_session(sid))
            if stored:
                session = WebSession(json.loads(stored), sid)
                if not stands(self.r, session):
                    session.renew()  # over: deleted, and the cookie cleared, at the save
                return session
        return WebSession()

    def save_session(self, app: Flask, session: SessionMixin | None,
                     response: Response) -> None:
        """Write the session (or delete it when empty) and set or clear the cookie. A new
        session's lifetime starts when it is first written and is never extended.

        Nothing to save when there is no session: a webhook's, or one Redis failed to
        open (Flask then hands over None, and the error page must still go out), or
        one whose save failed already (Flask saves again after its error handler).
        A failed save raises: a sign-out whose delete did not happen is not done."""
        if not isinstance(session, WebSession) or session.unsaved:
            return
        try:
            self._save(session, response)
        except redis.RedisError:
            session.unsaved = True
            raise

    def _save(self, session: WebSession, response: Response) -> None:
        """`save_session`'s writes to Redis and the cookie."""
        if session.rotate and session.sid:
            self.r.delete(keys.console_session(session.sid))
            session.sid = None
        if not session:
            if session.sid:
                self.r.delete(keys.console_session(session.sid))
            if session.sid or session.rotate:
                response.delete_cookie(COOKIE_NAME, path="/")
            return
        response.vary.add("Cookie")
        if session.sid is not None:
            if session.modified:
                # Its expiry stays (a new CSRF secret does not lengthen a sign-in), and a
                # session that expired meanwhile is not made again.
                self.r.set(keys.console_session(session.sid), json.dumps(dict(session)),
                           xx=True, keepttl=True)
            return
        session.sid = secrets.token_urlsafe(32)
        self.r.set(keys.console_session(session.sid), json.dumps(dict(session)),
                   ex=LIFETIME_SECONDS)
        response.set_cookie(
            COOKIE_NAME, session.sid, max_age=LIFETIME_SECONDS, path="/", httponly=True,
            samesite="Lax", secure=not is_loopback_http(request))
