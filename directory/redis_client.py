"""Every Redis client caseline makes, built from one URL (`REDIS_URL`) here.

The URL names one server or a Sentinel-watched primary:

    redis://[[user]:password@]host[:port][/db][?option=value...]     one server
    rediss://...                                                       the same over TLS
    unix:///path/to/redis.sock[?db=N]                                  a local socket
    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?...]
    rediss+sentinel://...                                              TLS to sentinels too

The user and password are the ACL user caseline logs in as on the Redis
servers. Options are redis-py's own URL options (`socket_timeout`,
`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`, ...); a
Sentinel URL also takes `sentinel_username` and `sentinel_password` (the
sentinels' own login, when they require one). A sentinel's port defaults to
26379, the database to 0.

Through a Sentinel URL every command follows a failover: a connection asks
the sentinels where the primary is, and a command that fails to reach it (the
old primary gone, or demoted and answering READONLY) is tried again, backing
off, for up to `FAILOVER_PATIENCE_SECONDS`, long enough for the sentinels to
promote a replica. Single-server URLs fail at once, as before: a Redis that
is down sends callers to the fallback number without waiting.
"""

from __future__ import annotations

import re
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from directory import keys

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
# How long a command through Sentinel keeps trying to reach a primary: a
# failover (down-after-milliseconds, then the election and promotion) should
# end well within it, and Twilio still gets its answer inside its 15 s timeout.
FAILOVER_PATIENCE_SECONDS = 10.0
# Asking a sentinel where the primary is: a dead sentinel must not stall that.
SENTINEL_SOCKET_TIMEOUT = 0.5
# Longest wait for a replica to hold what a webhook wrote (Redis's WAIT), in ms.
REPLICA_WAIT_MS = 250

T = TypeVar("T")
# The deadline of the FailoverRetry under way on this thread (nested ones keep it).
_patience = threading.local()


class RedisUrlError(ValueError):
    """A `REDIS_URL` caseline cannot use (the message says why; no password in it)."""


@dataclass(frozen=True)
class SentinelTarget:
    """A Sentinel URL, parsed: where the sentinels are and what to ask them for."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    tls: bool = False
    # Keyword arguments of the connections to the primary (login, TLS files, timeouts).
    connection: dict[str, Any] = field(default_factory=dict)
    # Keyword arguments of the connections to the sentinels.
    sentinel: dict[str, Any] = field(default_factory=dict)


class FailoverRetry(Retry):
    """redis-py's `Retry`, bounded by time rather than by a count: connection errors
    are retried, backing off (0.05 s doubling up to 0.5 s), until `seconds` have
    passed since the first try. A use nested in another on the same thread (a
    command's retry around its connection's reconnect, which asks the sentinels and
    retries too) keeps the outer one's deadline, so both end within about `seconds`
    in all (plus the attempt under way), not one patience after the other."""

    def __init__(self, seconds: float = FAILOVER_PATIENCE_SECONDS) -> None:
        """Retry for up to `seconds` (wall-clock, monotonic)."""
        super().__init__(ExponentialBackoff(cap=0.5, base=0.05), retries=-1)
        self.seconds = seconds

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> T:
        """Run `do` until it succeeds, a non-retryable error, or the time is up; `fail`
        (the caller's clean-up, e.g. closing the connection) runs after each failure."""
        self._backoff.reset()
        outer = getattr(_patience, "deadline", None)
        deadline = time.monotonic() + self.seconds
        if outer is not None:
            deadline = min(deadline, outer)
        _patience.deadline = deadline
        try:
            failures = 0
            while True:
                try:
                    return do()
                except self._supported_errors as error:
                    if is_retryable and not is_retryable(error):
                        raise
                    failures += 1
                    if with_failure_count:
                        fail(error, failures)
                    else:
                        fail(error)
                    pause = self._backoff.compute(failures)
                    if time.monotonic() + pause > deadline:
                        raise
                    time.sleep(pause)
        finally:
            _patience.deadline = outer

    def __deepcopy__(self, memo: dict[int, Any]) -> FailoverRetry:
        """redis-py copies a connection's retry; a copy keeps the same budget."""
        return FailoverRetry(self.seconds)


class FailoverConnection(SentinelManagedConnection):
    """A connection to the Sentinel-watched primary that asks the sentinels where the
    primary is each time it reconnects.

    redis-py's own asks only when the pool hands a connection out. A command that
    was on the wire when the primary died is retried on the same connection, and
    redis-py reconnects it to the address it had: the dead primary, for the whole
    patience, and the webhook fails although a replica was promoted seconds in.
    """

    def connect_check_health(self, check_health: bool = True,
                             retry_socket_connect: bool = True) -> None:
        """Connect if not connected; a retried reconnect goes through the sentinels."""
        if self._sock:
            return
        if retry_socket_connect:
            # redis-py's retried reconnect (a command resent after a lost connection):
            # find the primary again, retried by the same bounded patience.
            self.connect()
            return
        super().connect_check_health(check_health=check_health, retry_socket_connect=False)


class FailoverSSLConnection(FailoverConnection, SentinelManagedSSLConnection):
    """`FailoverConnection` over TLS (a `rediss+sentinel://` URL)."""


# What Redis raises while it cannot be reached or cannot take writes for now: down,
# timed out, still loading its data, a replica or a primary without its replicas,
# full under `maxmemory`, or refusing writes since its last snapshot failed (MISCONF,
# which redis-py raises as a plain ResponseError). Anything else is a bug.
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError,
                redis.exceptions.MasterDownError, redis.exceptions.OutOfMemoryError)


# MISCONF's reply: alone, as redis-py words it for a command of a transaction, or as
# Redis words it for a write inside a script ("...: -MISCONF ...").
_MISCONF = re.compile(r"(?:^|[\s:-])MISCONF ")


def redis_unavailable(error: BaseException) -> bool:
    """True when `error` says Redis is down or refuses writes for now (above), so the
    request may be tried again once it is back; False for any other error."""
    return isinstance(error, _UNAVAILABLE) or (
        isinstance(error, redis.ResponseError) and _MISCONF.search(str(error)) is not None)

def is_sentinel_url(url: str) -> bool:
    """Whether `url` names a Sentinel-watched primary (`redis+sentinel://`, `rediss+...`)."""
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse a `redis+sentinel://` or `rediss+sentinel://` URL; `RedisUrlError` if bad."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise RedisUrlError(f"not a Sentinel URL (expected {' or '.join(SENTINEL_SCHEMES)}://)")
    rest, _, query = rest.partition("?")
    rest = rest.split("#", 1)[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    sentinels = tuple(_host_port(part) for part in hosts.split(",") if part.strip())
    if not sentinels:
        raise RedisUrlError("a Sentinel URL names at least one sentinel (host:port)")
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise RedisUrlError("a Sentinel URL's path is /service_name or /service_name/db")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise RedisUrlError(f"the database in a Sentinel URL is a number, not {parts[1]!r}")
        db = int(parts[1])
    # redis-py parses the options exactly as in a plain URL (types and all).
    options = parse_url(f"redis://localhost/?{query}") if query else {}
    for key in ("host", "port", "path"):
        options.pop(key, None)
    sentinel_login = {k.removeprefix("sentinel_"): options.pop(k)
                      for k in ("sentinel_username", "sentinel_password") if k in options}
    tls = scheme.lower().startswith("rediss")
    connection: dict[str, Any] = {**options, "db": int(options.get("db", db))}
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if user:
            connection["username"] = unquote(user)
        if colon:
            connection["password"] = unquote(password)
    # One try per sentinel: a dead or hung one is given up after its timeout and the
    # next one asked (redis-py's default would retry it ten times, ~9 s when hung);
    # FailoverRetry tries the whole discovery again.
    sentinel: dict[str, Any] = {"socket_timeout": SENTINEL_SOCKET_TIMEOUT,
                                "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
                                "retry": Retry(NoBackoff(), 0),
                                **sentinel_login}
    if tls:
        connection["ssl"] = True
        sentinel["ssl"] = True
        sentinel.update({k: v for k, v in options.items() if k.startswith("ssl_")})
    return SentinelTarget(sentinels=sentinels, service=parts[0], db=connection["db"], tls=tls,
                          connection=connection, sentinel=sentinel)


def _host_port(text: str) -> tuple[str, int]:
    """`host[:port]` or `[v6]:port` of one sentinel."""
    text = text.strip()
    if text.startswith("["):
        host, _, tail = text[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise RedisUrlError(f"a sentinel address needs a host: {text!r}")
    if port and not port.isdigit():
        raise RedisUrlError(f"a sentinel's port is a number: {text!r}")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT


def check_redis_url(url: str) -> None:
    """Raise `RedisUrlError` (saying why, no password) unless `url` is a Redis URL of a
    form `connect_redis` takes; nothing is contacted. The command line checks REDIS_URL
    with it before starting anything (docs/contract.md, Configuration)."""
    if is_sentinel_url(url):
        parse_sentinel_url(url)
        return
    if url.partition("://")[0].lower() not in ("redis", "rediss", "unix"):
        raise RedisUrlError("REDIS_URL must start with redis://, rediss://, unix://, "
                            "redis+sentinel:// or rediss+sentinel://")
    try:
        parse_url(url)
    except ValueError as exc:  # a port that is not a number, a bad option, a bad db
        raise RedisUrlError(f"REDIS_URL cannot be read: {exc}") from None


def connect_redis(url: str, *, decode_responses: bool = True,
                  socket_timeout: float | None = None,
                  socket_connect_timeout: float | None = None,
                  patience: float = FAILOVER_PATIENCE_SECONDS) -> redis.Redis:
    """A client of the Redis that `url` names (see the module's docstring for the forms).

    Nothing is contacted yet: the first command connects. `decode_responses` gives
    str replies (caseline's own keys) or bytes (RQ). Timeouts are seconds per socket
    operation (None: block). `patience` (seconds) bounds how long a command through
    Sentinel keeps trying to reach a primary (`FailoverRetry`). Raises
    `RedisUrlError` for a URL it cannot use.
    """
    timeouts = {k: v for k, v in (("socket_timeout", socket_timeout),
                                   ("socket_connect_timeout", socket_connect_timeout))
                if v is not None}
    check_redis_url(url)
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        sentinels = Sentinel(list(target.sentinels), sentinel_kwargs=target.sentinel)
        connection = dict(target.connection)
        tls = connection.pop("ssl", False)
        return sentinels.master_for(
            target.service, redis_class=redis.Redis,
            connection_class=FailoverSSLConnection if tls else FailoverConnection,
            **{**connection, **timeouts, "decode_responses": decode_responses,
               "retry": FailoverRetry(patience)})
    return redis.Redis.from_url(url, decode_responses=decode_responses, **timeouts)


class ThreadClient(redis.Redis):
    """A client of a shared pool that keeps one of its connections for itself, taken
    at its first command: one thread's commands go over it.

    A pooled client checks a connection out and back in, and polls it for stray
    data, on every command: about 20 us of a web process's CPU per command, of the
    ~75 us a round trip costs it (docs/benchmarks.md). This is redis-py's
    `single_connection_client` (its lock included, so another thread handed this
    client is still safe), except that the connection is taken at the first
    command rather than when the client is built: building it never touches Redis,
    and a Redis that is down fails the command, as with a pooled client. Same
    server, decoding, timeouts and retries (they live on the pool's connections, so
    a failover is followed the same way). Pipelines and pub/sub still use the pool.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        """A client of `pool`; nothing is contacted yet."""
        super().__init__(connection_pool=pool)
        # redis-py's own flag for a client that holds its connection: commands then
        # hold `single_connection_lock` and never release the connection to the pool.
        self._single_connection_client = True
        self._polled: Any = None  # the socket `_poller` watches
        self._poller: Any = None

    def _execute_command(self, *args: Any, **options: Any) -> Any:
        """redis-py's send-and-parse of one command on this client's connection (taken at
        the first command; dropped first, so the command reconnects, if Redis closed it
        since its last use), under the connection's own retry policy: the same
        reconnects and retries (a Sentinel failover's patience included) as redis-py's
        `Redis._execute_command`, without its pool handling or its per-command
        observability hooks (timers, closures, OpenTelemetry calls caseline does not
        enable): ~3 us less of a web process's CPU per command, ~6 us per script
        (`bench/round_trips.py`, docs/benchmarks.md)."""
        # The lock (reentrant, the one redis-py's command path holds) keeps the check
        # from reading another thread's reply off the connection.
        with self.single_connection_lock:
            conn = self.connection
            if conn is None:
                conn = self.connection = self.connection_pool.get_connection()
            else:
                self._drop_if_closed(conn)
            try:
                return conn.retry.call_with_retry(
                    lambda: self._send_command_parse_response(conn, args[0], *args, **options),
                    lambda _error: conn.disconnect())
            finally:
                # Redis asked this connection to move (a maintenance notice): the next
                # command connects afresh, as redis-py's own path does.
                if conn.should_reconnect():
                    conn.disconnect()

    def _drop_if_closed(self, connection: Any) -> None:
        """Disconnect `connection` if Redis closed it (a restart, its idle `timeout`, a
        CLIENT KILL) or sent it something unasked: the check a pool makes at each
        checkout, which a kept connection would otherwise never get, so a command
        sent on it after a Redis restart would fail although Redis is back.

        The check is a poll of the socket (well under a microsecond); only a readable
        socket, which a healthy idle connection never is, costs redis-py's own check.
        Data already read into the client's buffers is not looked at: none is left
        between commands. The connection speaks redis-py's default protocol (RESP3
        since redis-py 8), but caseline never subscribes or turns client tracking on
        over it, so Redis pushes nothing to it unasked; a push message that did come
        (a server's maintenance notice, say) would cost a reconnect, where a pool
        would keep the connection."""
        sock = getattr(connection, "_sock", None)
        if sock is None:
            return  # not connected: the command connects
        if self._polled is not sock:
            self._poller = select.poll()
            self._poller.register(sock, select.POLLIN)
            self._polled = sock
        if not self._poller.poll(0):
            return
        try:
            if connection.can_read():
                raise redis.ConnectionError("Connection has data")
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()


def connection_of_its_own(r: redis.Redis) -> redis.Redis:
    """A `ThreadClient` of `r`'s pool, for one thread's commands (nothing contacted yet)."""
    return ThreadClient(r.connection_pool)


def raw_twin(r: redis.Redis) -> redis.Redis:
    """A client of the same Redis as `r` (Sentinel-watched or not), with its own pool,
    that answers bytes, not str: RQ reads its hashes and payloads as bytes. Closing
    the client closes its pool's connections."""
    pool = r.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["decode_responses"] = False
    if isinstance(pool, SentinelConnectionPool):
        kwargs.pop("connection_pool", None)  # the proxy of the old pool: the new one sets its own
        twin: redis.ConnectionPool = SentinelConnectionPool(
            pool.service_name, pool.sentinel_manager, connection_class=pool.connection_class,
            is_master=pool.is_master, check_connection=pool.check_connection, **kwargs)
    else:
        twin = redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    client = redis.Redis(connection_pool=twin)
    # As a client that made its own pool: `close()` disconnects it (redis-py assumes
    # a pool handed in is someone else's).
    client.auto_close_connection_pool = True
    return client


def has_replicas(r: redis.Redis) -> bool:
    """Whether `r` reaches a Sentinel-watched primary (whose writes replicas copy), not
    a single server."""
    return isinstance(r.connection_pool, SentinelConnectionPool)


def wait_for_replicas(r: redis.Redis, timeout_ms: int = REPLICA_WAIT_MS) -> int | None:
    """Block until a replica holds every write the primary acknowledged before this call,
    or `timeout_ms` (milliseconds) pass: Redis's WAIT. Returns how many replicas hold
    them (0: none within the time), or None when `r` is not Sentinel-watched (a single
    server has no replica to wait for: nothing is sent). Raises redis errors as any
    command does (through a failover it is tried again, on the new primary).

    WAIT counts the writes of the connection that sends it, and a request's writes
    went out on whichever pooled connections: one small write on the waiting
    connection, just before WAIT, comes after all of them in the replication stream.
    """
    if not has_replicas(r):
        return None
    pipe = r.pipeline(transaction=False)  # one connection for both commands
    pipe.set(keys.replication_mark(), "1", px=60_000)
    pipe.execute_command("WAIT", 1, timeout_ms)
    return int(pipe.execute()[1])


def describe_redis_url(url: str) -> str:
    """`url` without its passwords, for logs and error messages."""
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        hosts = ",".join(f"{h}:{p}" for h, p in target.sentinels)
        return (f"{url.partition('://')[0]}://{hosts}/{target.service}/{target.db}"
                f" (via {len(target.sentinels)} sentinel(s))")
    scheme, _, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    netloc = netloc.rpartition("@")[2]
    return f"{scheme}://{netloc}{slash}{tail.partition('?')[0]}"
