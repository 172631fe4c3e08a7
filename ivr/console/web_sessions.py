"""The console's sessions. A signed-in session is kept in Redis: the browser holds
only an opaque random id in a cookie (HttpOnly, SameSite=Lax, Secure except over
plain http on a loopback address, where local tries and tests run).

A signed-in session stands while its account's credentials version is the one
it signed in under (`directory.accounts`: a new password or role ends it), and
for 12 hours from sign-in at most, however busy its page keeps it.

Before sign-in nothing is kept in Redis: the one thing a visitor's session holds,
the sign-in form's CSRF secret (Flask-WTF), goes to a cookie of its own, signed
with the app's secret key by Flask's own signed-cookie session serializer. Anyone
can ask for the sign-in page as often as they like, with no cookie each time, so a
Redis key per visitor would let them fill the line's routing store; the signed
cookie costs Redis nothing. Flask-WTF checks the form's token against that secret
as it would against a server-side one (a signed double submit), and a sign-in
replaces the cookie with a session in Redis under a new id."""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSessionInterface, SessionInterface, SessionMixin
from itsdangerous import BadData
from werkzeug.datastructures import CallbackDict

from config import webhooks
from directory import keys
from directory.accounts import credentials_version

COOKIE_NAME = "caseline_console"
# A sign-in lasts a shift, counted from the sign-in: a page left open (it polls, or
# holds an event stream) does not keep it alive beyond that.
LIFETIME_SECONDS = 12 * 3600
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Before sign-in: the signed cookie, and all it may carry (Flask-WTF's session key of
# the CSRF secret, `WTF_CSRF_FIELD_NAME`'s default). Nothing else of a session that
# has not signed in is kept, so a leaked or forged cookie could never sign anyone in.
VISITOR_COOKIE_NAME = "caseline_console_form"
VISITOR_KEYS = frozenset({"csrf_token"})


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
        self.visitor_cookie = False  # the request carried the signed cookie of a visitor

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


class _VisitorCookie(SecureCookieSessionInterface):
    """Flask's signed-cookie session, used only for its serializer (itsdangerous,
    keyed by the app's secret key, timestamped), under a salt of its own."""

    salt = "caseline-console-visitor"


class RedisSessionInterface(SessionInterface):
    """Flask's session: signed in, stored server-side in Redis (`keys.console_session`);
    before sign-in, its CSRF secret in a signed cookie and nothing in Redis."""

    def __init__(self, r: redis.Redis) -> None:
        """Signed-in sessions live on this Redis client."""
        self.r = r
        self.visitors = _VisitorCookie()

    def open_session(self, app: Flask, request: Request) -> WebSession | None:
        """The signed-in session named by the cookie, or else a visitor's, from their
        signed cookie (no Redis read without a session cookie); None (Flask's null
        session, never saved) for Twilio's webhooks, which sign in no one: the cookie's
        parse and the session's save cost every webhook otherwise."""
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
        session = WebSession(self._visitor(app, request))
        session.visitor_cookie = VISITOR_COOKIE_NAME in request.cookies
        return session

    def _visitor(self, app: Flask, request: Request) -> dict[str, Any]:
        """What a visitor's signed cookie holds (`VISITOR_KEYS` only): nothing when it
        is absent, forged, or older than a sign-in lasts."""
        cookie = request.cookies.get(VISITOR_COOKIE_NAME)
        serializer = self.visitors.get_signing_serializer(app)
        if not cookie or serializer is None:
            return {}
        try:
            data = serializer.loads(cookie, max_age=LIFETIME_SECONDS)
        except BadData:
            return {}
        if not isinstance(data, dict):
            return {}
        return {key: value for key, value in data.items()
                if key in VISITOR_KEYS and isinstance(value, str)}

    def save_session(self, app: Flask, session: SessionMixin | None,
                     response: Response) -> None:
        """Write the session (or delete it when empty) and set or clear the cookie. A
        session is first written to Redis at sign-in, and its lifetime starts then and
        is never extended; before sign-in it goes to the visitor's signed cookie.

        Nothing to save when there is no session: a webhook's, or one Redis failed to
        open (Flask then hands over None, and the error page must still go out), or
        one whose save failed already (Flask saves again after its error handler).
        A failed save raises: a sign-out whose delete did not happen is not done."""
        if not isinstance(session, WebSession) or session.unsaved:
            return
        try:
            self._save(app, session, response)
        except redis.RedisError:
            session.unsaved = True
            raise

    def _save(self, app: Flask, session: WebSession, response: Response) -> None:
        """`save_session`'s writes to Redis and the cookies."""
        if session.rotate and session.sid:
            self.r.delete(keys.console_session(session.sid))
            session.sid = None
        if not session:
            if session.sid:
                self.r.delete(keys.console_session(session.sid))
            if session.sid or session.rotate:
                response.delete_cookie(COOKIE_NAME, path="/")
            if session.visitor_cookie:
                response.delete_cookie(VISITOR_COOKIE_NAME, path="/")
            return
        response.vary.add("Cookie")
        if session.sid is not None:  # a sign-in (or a visitor kept there by an older release)
            if session.modified:
                # Its expiry stays (a new CSRF secret does not lengthen a sign-in), and a
                # session that expired meanwhile is not made again.
                self.r.set(keys.console_session(session.sid), json.dumps(dict(session)),
                           xx=True, keepttl=True)
            return
        secure = not is_loopback_http(request)
        if not session.get("advisor"):
            # Not signed in: the browser keeps it, signed; Redis is not written.
            if session.rotate:
                response.delete_cookie(COOKIE_NAME, path="/")  # a session that is over
            if session.modified:
                serializer = self.visitors.get_signing_serializer(app)
                assert serializer is not None  # the console always has a secret key
                visitor = {key: value for key, value in session.items() if key in VISITOR_KEYS}
                response.set_cookie(
                    VISITOR_COOKIE_NAME, serializer.dumps(visitor), max_age=LIFETIME_SECONDS,
                    path="/", httponly=True, samesite="Lax", secure=secure)
            return
        session.sid = secrets.token_urlsafe(32)
        self.r.set(keys.console_session(session.sid), json.dumps(dict(session)),
                   ex=LIFETIME_SECONDS)
        response.set_cookie(
            COOKIE_NAME, session.sid, max_age=LIFETIME_SECONDS, path="/", httponly=True,
            samesite="Lax", secure=secure)
        if session.visitor_cookie:
            response.delete_cookie(VISITOR_COOKIE_NAME, path="/")
