"""REDIS_URL in all its forms, against real servers: one place builds every client
(`directory.redis_client`); a Sentinel URL follows a failover (Lua scripts
included); production's Redis speaks TLS and knows only an ACL user."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import redis

from caseline.embedded_redis import start_server, wait_until_up
from directory.redis_client import (
    FAILOVER_PATIENCE_SECONDS,
    REPLICA_WAIT_MS,
    SENTINEL_SOCKET_TIMEOUT,
    RedisUrlError,
    connect_redis,
    connection_of_its_own,
    describe_redis_url,
    parse_sentinel_url,
    raw_twin,
    wait_for_replicas,
)
from directory.scripts import script
from tests.conftest import free_port
from tests.redis_servers import (
    debian_binary,
    make_tls_files,
    sentinel_group,
    server_config,
    start,
    wait_until,
)

# -- the URL forms ------------------------------------------------------------------------


def test_a_sentinel_url_names_sentinels_service_database_and_logins():
    target = parse_sentinel_url(
        "rediss+sentinel://caseline:s%40cret@10.0.0.1:26380,10.0.0.2,[::1]:26381/desk/3"
        "?socket_timeout=1.5&ssl_ca_certs=/etc/ca.pem&sentinel_password=watch")
    assert target.sentinels == (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26381))
    assert (target.service, target.db, target.tls) == ("desk", 3, True)
    assert target.connection["username"] == "caseline"
    assert target.connection["password"] == "s@cret"
    assert target.connection["socket_timeout"] == 1.5  # redis-py's own option parser
    assert target.connection["ssl"] is True
    assert target.connection["ssl_ca_certs"] == "/etc/ca.pem"
    # The sentinels get their own login and the TLS files, never the servers' login.
    assert target.sentinel["password"] == "watch"
    assert target.sentinel["ssl"] is True and target.sentinel["ssl_ca_certs"] == "/etc/ca.pem"
    assert "username" not in target.sentinel


def test_a_sentinel_url_defaults_to_database_zero_without_tls():
    target = parse_sentinel_url("redis+sentinel://127.0.0.1:26379/caseline")
    assert (target.service, target.db, target.tls) == ("caseline", 0, False)
    assert "ssl" not in target.connection and "password" not in target.connection


@pytest.mark.parametrize("url", [
    "redis+sentinel:///caseline/0",  # no sentinel
    "redis+sentinel://127.0.0.1:26379",  # no service
    "redis+sentinel://127.0.0.1:26379/caseline/zero",
    "redis+sentinel://127.0.0.1:x/caseline",
    "redis+sentinel://127.0.0.1/caseline/0/extra",
])
def test_a_bad_sentinel_url_is_refused_with_a_reason(url):
    with pytest.raises(RedisUrlError):
        connect_redis(url)


def test_an_unknown_scheme_is_refused():
    with pytest.raises(RedisUrlError, match="REDIS_URL must start with"):
        connect_redis("http://127.0.0.1:6379/0")


def test_descriptions_for_logs_carry_no_password():
    assert describe_redis_url("rediss://caseline:hunter2@redis.internal:6380/0?ssl_cert_reqs="
                              "required") == "rediss://redis.internal:6380/0"
    described = describe_redis_url("redis+sentinel://u:hunter2@a:1,b:2/caseline/0")
    assert "hunter2" not in described and "a:1,b:2/caseline/0" in described


# -- a Sentinel-watched primary --------------------------------------------------------------

@pytest.fixture
def sentinels(tmp_path: Path):
    """A primary, a replica and three sentinels (Debian's), stopped after the test."""
    with sentinel_group(tmp_path / "sentinel") as group:
        yield group


@pytest.mark.parametrize("client", ["pooled", "a web thread's"])
def test_a_sentinel_client_follows_a_failover_scripts_and_all(sentinels, client):
    # A web thread keeps a connection of its own (`connection_of_its_own`), with its
    # own command path: it must follow a failover exactly as a pooled client does.
    shared = connect_redis(sentinels.url)
    r = shared if client == "pooled" else connection_of_its_own(shared)
    jobs = raw_twin(shared)
    counter = script(r, "return redis.call('INCR', KEYS[1])")
    assert counter(keys=["drill:count"], client=r) == 1
    assert jobs.get("drill:count") == b"1"  # the bytes twin reaches the same primary
    replicated = redis.Redis(port=sentinels.replica.port)
    wait_until("the write to reach the replica", lambda: replicated.get("drill:count") == b"1")

    # A steady stream of script calls while the primary dies: each call blocks through
    # the failover, then runs once on the promoted replica.
    answers: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_counting() -> None:
        while not stop.is_set():
            try:
                answers.append(counter(keys=["drill:count"], client=r))
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)
                return
            time.sleep(0.02)

    worker = threading.Thread(target=keep_counting)
    worker.start()
    try:
        time.sleep(0.2)
        took = sentinels.kill_primary_and_wait_for_failover()
        # The promoted server has never seen the script: EVALSHA answers NOSCRIPT and the
        # registry's script loads itself again.
        replicated.script_flush()
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(timeout=FAILOVER_PATIENCE_SECONDS + 5)
    assert failures == [], failures
    assert took < FAILOVER_PATIENCE_SECONDS
    # Every increment that was answered happened exactly once, none lost across the
    # failover (the primary was idle-synced when it died: nothing was in flight).
    assert answers == list(range(2, 2 + len(answers)))
    assert r.connection_pool.get_master_address() == ("127.0.0.1", sentinels.replica.port)
    assert int(jobs.get("drill:count")) == answers[-1]
    for each in {id(c): c for c in (r, shared, jobs, replicated)}.values():
        each.close()


def test_a_command_in_flight_when_the_primary_dies_is_answered_by_the_promoted_replica(
        sentinels):
    # A webhook's command was on the wire when the primary died: redis-py reconnects
    # that same connection to the address it had, which is gone. It must ask the
    # sentinels again and be answered by the new primary, not fail after the patience.
    r = connect_redis(sentinels.url)
    r.delete("drill:handoff")
    answers: list[object] = []

    def wait_for_a_handoff() -> None:
        try:
            answers.append(r.blpop(["drill:handoff"], timeout=FAILOVER_PATIENCE_SECONDS))
        except redis.RedisError as exc:
            answers.append(exc)

    waiter = threading.Thread(target=wait_for_a_handoff)
    waiter.start()
    primary = redis.Redis(port=sentinels.primary.port)
    wait_until("the BLPOP to block on the primary",
               lambda: int(primary.info("clients")["blocked_clients"]) == 1)
    primary.close()
    started = time.monotonic()
    sentinels.kill_primary_and_wait_for_failover()
    promoted = redis.Redis(port=sentinels.replica.port)
    promoted.rpush("drill:handoff", "caller")
    waiter.join(timeout=2 * FAILOVER_PATIENCE_SECONDS)
    assert answers == [("drill:handoff", "caller")]
    assert time.monotonic() - started < FAILOVER_PATIENCE_SECONDS
    for client in (r, promoted):
        client.close()


def test_a_hung_sentinel_costs_a_connection_its_timeout_not_a_stall(sentinels):
    # The sentinel named first hangs (its host froze, or sits behind a dead link): it
    # takes connections and never answers. Asking it must give up after
    # SENTINEL_SOCKET_TIMEOUT and ask the next one; each connection asks the sentinels
    # (since 631455e, each reconnect in a failover too), so a sentinel client that
    # retried (redis-py's default: ten times, ~9 s) would spend the whole patience.
    hung = sentinels.sentinels[0]
    assert sentinels.url.partition("://")[2].startswith(f"127.0.0.1:{hung.port},")
    os.kill(hung.popen.pid, signal.SIGSTOP)
    r = connect_redis(sentinels.url)
    try:
        started = time.monotonic()
        assert r.ping()
        took = time.monotonic() - started
        assert took < 4 * SENTINEL_SOCKET_TIMEOUT, f"a hung sentinel stalled it {took:.1f}s"
    finally:
        os.kill(hung.popen.pid, signal.SIGCONT)
        r.close()


def test_a_command_that_cannot_follow_a_failover_gives_up_within_the_patience(tmp_path):
    # The primary freezes with a command on the wire and no replica can take over: the
    # webhook must hear the error within the patience (plus the attempt under way) and
    # still answer Twilio (15 s), not wait out the command's patience and then its
    # reconnect's (which asks the sentinels and retries too) one after the other.
    # The web app's timeouts (ivr.create_app: 2 s sockets, 10 s patience), scaled down.
    socket_timeout, patience = 0.5, 2.5
    with sentinel_group(tmp_path / "sentinel", down_after_ms=30_000) as group:
        r = connect_redis(group.url, socket_timeout=socket_timeout,
                          socket_connect_timeout=socket_timeout, patience=patience)
        r.set("drill:frozen", "1")
        group.replica.kill()
        os.kill(group.primary.popen.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(redis.RedisError):
                r.get("drill:frozen")
            took = time.monotonic() - started
        finally:
            os.kill(group.primary.popen.pid, signal.SIGCONT)
            r.close()
    assert took < patience + socket_timeout, took  # the attempt under way: one timeout


def test_rediss_sentinel_speaks_tls_to_sentinels_and_servers_with_a_password(tmp_path):
    files = make_tls_files(tmp_path / "tls")
    with sentinel_group(tmp_path / "sentinel", tls=files, password=PASSWORD) as group:
        assert group.url.startswith("rediss+sentinel://:")
        r = connect_redis(group.url)
        assert issubclass(r.connection_pool.connection_class, redis.SSLConnection)
        r.set("drill:tls", "before")
        with pytest.raises(redis.ConnectionError):  # no plain TCP anywhere in the group
            redis.Redis(port=group.sentinels[0].port, socket_timeout=1).ping()
        replica = group.client(group.replica.port)
        wait_until("the write to reach the replica", lambda: replica.get("drill:tls"))
        group.kill_primary_and_wait_for_failover()
        assert r.get("drill:tls") == "before"  # through TLS, on the promoted replica
        r.set("drill:tls", "after")
        assert replica.get("drill:tls") == b"after"
        for client in (r, replica):
            client.close()


def test_wait_for_replicas_counts_the_replicas_holding_the_writes(sentinels, redis_url):
    r = connect_redis(sentinels.url)
    r.set("drill:durable", "1")
    assert wait_for_replicas(r) == 1
    assert wait_for_replicas(connect_redis(redis_url)) is None  # one server: nothing to wait for
    r.close()


def test_webhooks_answer_once_a_replica_holds_their_writes(sentinels, settings, engine):
    """Twilio hears an answer only when a replica has what led to it; with the replica
    stopped, one answer waits REPLICA_WAIT_MS in vain, and the next ones do not wait."""
    from directory import keys
    from directory.db import make_session_factory
    from ivr import create_app
    from routing.desk import Desk
    from telephony import Telephony
    from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, BASE_URL, Directory, make_available
    from twilio_side import FlaskTransport
    from workers import context

    settings = settings.with_changes(redis_url=sentinels.url)
    desk = Desk(r=connect_redis(sentinels.url), settings=settings,
                telephony=Telephony(settings), session_factory=make_session_factory(engine))
    context.configure(desk)
    replica = sentinels.client(sentinels.replica.port)
    try:
        directory = Directory(desk)
        directory.district()
        directory.contact()
        directory.advisor("A7", ["general"], phone="+16515550199")
        directory.load()
        make_available(desk, "A7")
        twilio = FlaskTransport(create_app(settings).test_client(), BASE_URL,
                                auth_token=AUTH_TOKEN)

        def incoming(n: int) -> float:
            """Seconds until Twilio hears the answer to a new call's first webhook."""
            started = time.monotonic()
            answer = twilio.post("/voice/incoming", {
                "CallSid": f"CA{n:032d}", "From": "+16125550101", "To": "+18005550100",
                "AccountSid": ACCOUNT_SID, "CallStatus": "ringing"})
            assert answer.status == 200, answer.text
            return time.monotonic() - started

        incoming(0)  # the app's first request loads the scripts
        fast = incoming(1)
        assert replica.exists(keys.call(f"CA{1:032d}"))  # the replica had it: Twilio heard
        os.kill(sentinels.replica.popen.pid, signal.SIGSTOP)
        try:
            slow = incoming(2)  # no replica acknowledges: the answer waits, in vain
            paused = incoming(3)  # ... and for a while answers stop waiting
        finally:
            os.kill(sentinels.replica.popen.pid, signal.SIGCONT)
        limit = REPLICA_WAIT_MS / 1000
        assert slow >= limit, (fast, slow, paused)
        assert fast < limit and paused < limit, (fast, slow, paused)
    finally:
        context.configure(None)
        desk.r.close()
        replica.close()


# -- TLS and an ACL user ------------------------------------------------------------------

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def tls_redis(tmp_path: Path):
    """Debian's redis-server speaking only TLS, its default user off and one ACL user
    (`caseline`) that may run no admin or dangerous command."""
    debian_binary("redis-server")
    files = make_tls_files(tmp_path / "tls")
    port = free_port()
    folder = tmp_path / "tls-redis"
    extra = (f"port 0\ntls-port {port}\ntls-cert-file {files.cert}\ntls-key-file {files.key}\n"
             f"tls-ca-cert-file {files.ca}\ntls-auth-clients no\n"
             f"user default off\n"
             f"user caseline on >{PASSWORD} ~* &* +@all -@dangerous -@admin +info\n")
    process = start("/usr/bin/redis-server", "tls", folder,
                    server_config(folder, 0, "tls", extra).replace("port 0\n", "", 1), port)
    url = (f"rediss://caseline:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={files.ca}"
           "&ssl_cert_reqs=required")
    try:
        wait_until("the TLS Redis to answer", connect_redis(url).ping)
        yield url, files, process
    finally:
        process.stop()


def test_tls_and_an_acl_user_log_in_and_nothing_else_does(tls_redis):
    url, files, _process = tls_redis
    port = url.split("@127.0.0.1:")[1].split("/")[0]
    r = connect_redis(url)
    assert r.acl_whoami() == "caseline"
    assert r.connection_pool.connection_class is redis.SSLConnection
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.flushall()  # the application's user cannot wipe the desk
    # Plain TCP to the TLS port gets nothing; a wrong password is refused.
    with pytest.raises(redis.ConnectionError):
        connect_redis(f"redis://caseline:{PASSWORD}@127.0.0.1:{port}/0",
                      socket_timeout=1, socket_connect_timeout=1).ping()
    with pytest.raises(redis.AuthenticationError):
        connect_redis(url.replace(PASSWORD, "wrong")).ping()
    # An unknown CA is refused: the certificate is checked.
    other = make_tls_files(files.ca.parent.parent / "other-ca")
    with pytest.raises(redis.ConnectionError):
        connect_redis(url.replace(str(files.ca), str(other.ca))).ping()
    r.close()


def test_the_line_runs_on_tls_with_an_acl_user(tls_redis, settings, engine, emulator):
    """A whole call and its call-log job, through TLS as the limited user."""
    from directory.db import make_session_factory
    from ivr import create_app
    from routing.desk import Desk
    from telephony import Telephony
    from tests.conftest import Directory, Phone, make_available, run_jobs
    from workers import context

    url, _files, _process = tls_redis
    settings = settings.with_changes(redis_url=url)
    desk = Desk(r=connect_redis(url), settings=settings, telephony=Telephony(settings),
                session_factory=make_session_factory(engine))
    context.configure(desk)
    try:
        directory = Directory(desk)
        directory.district()
        directory.contact()
        directory.advisor("A7", ["general"], phone="+16515550199")
        directory.case()
        directory.load()
        make_available(desk, "A7")
        app = create_app(settings)
        call = Phone(app, emulator).call("+16125550101", "1 2024117#")
        assert call.answered_by == "+16515550199", call.summary()
        run_jobs(desk)
        logs = app.test_client().get("/api/cases/2024117/calls",
                                     headers={"Authorization": "Bearer test-api-token"})
        assert [log["call_sid"] for log in logs.get_json()] == [call.call_sid]
    finally:
        context.configure(None)
        desk.r.close()


def test_a_set_redis_url_starts_no_embedded_redis(tmp_path: Path):
    from caseline.cli import _redis_url
    from config.settings import Settings

    given = Settings.from_env({"REDIS_URL": "redis+sentinel://127.0.0.1:1/caseline/0",
                               "CASELINE_INSTANCE_PATH": str(tmp_path / "i")},
                              dotenv=tmp_path / "none.env")
    assert _redis_url(given) == "redis+sentinel://127.0.0.1:1/caseline/0"
    assert not (tmp_path / "i").exists()  # no socket, no server, no folder


# -- a web thread's kept connection ---------------------------------------------------


def test_a_web_threads_connection_closed_by_redis_is_replaced_before_its_next_command(
        redis_url, r):
    # Redis closes a connection a thread keeps (its idle `timeout`, an operator's
    # CLIENT KILL): the thread's next command is still answered, as through the pool.
    shared = connect_redis(redis_url)
    mine = connection_of_its_own(shared)
    mine.set("thread:kept", "before")
    assert r.client_kill_filter(_id=mine.client_id()) == 1
    wait_until("the kill reaches the socket",
               lambda: mine.connection._sock is None or _readable(mine.connection._sock))
    assert mine.get("thread:kept") == "before"
    mine.close()
    shared.close()


def test_a_web_threads_connection_outlives_a_redis_restart(tmp_path):
    # Redis restarts on its address (a crash, an upgrade): the web process is not
    # restarted, and a thread whose connection predates the restart must not send
    # its caller to the fallback number once Redis is back.
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_server(tmp_path / "restarting", port=port)
    try:
        wait_until_up(url)
        shared = connect_redis(url)
        mine = connection_of_its_own(shared)
        mine.set("thread:kept", "before")
        server.terminate()
        server.wait(timeout=10)
        server = start_server(tmp_path / "restarting", port=port)
        wait_until_up(url)
        mine.set("thread:kept", "after")
        assert mine.get("thread:kept") == "after"
        mine.close()
        shared.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def _readable(sock: socket.socket) -> bool:
    """Whether `sock` has data or its end waiting to be read."""
    return bool(select.select([sock], [], [], 0)[0])


def test_closing_the_rq_client_leaves_no_connection_open(redis_url, r):
    # The RQ client of a one-off command (`prepare_service`: the upgrade of the last
    # release's wrap-ups) is closed when done: its connections leave Redis with it.
    # Its connections carry a name of this test's (the twin copies its client's
    # settings): whatever else is connected to the session's Redis (a process an
    # earlier test started, still stopping) comes and goes on its own.
    name = "test-closing-the-rq-client"
    named = redis.Redis.from_url(redis_url, client_name=name)  # never used itself

    def connections() -> int:
        return sum(client["name"] == name for client in r.client_list())

    jobs = raw_twin(named)
    assert jobs.ping() and connections() == 1
    jobs.close()
    wait_until("Redis to see the client's connection close", lambda: connections() == 0,
               timeout=5)
    named.close()
