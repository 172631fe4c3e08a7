"""Debian's Redis servers for the tests that need more than the session's one: a
primary with a replica watched by three sentinels (the failover drill), and a
server that speaks only TLS and knows only an ACL user (production's Redis).

Every process is started in its own process group and stopped (or killed, for
a drill) by the test that started it; nothing else on the machine is touched.
Tests skip with a reason when Debian's `redis-server`/`redis-sentinel` or
`openssl` are missing (`make system-deps` installs them).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port

SERVICE = "caseline"


def debian_binary(name: str) -> str:
    """Path of Debian's `name` (redis-server, redis-sentinel, openssl), or skip the test."""
    found = shutil.which(name, path="/usr/bin:/usr/sbin:/bin")
    if found is None:
        pytest.skip(f"{name} is not installed (make system-deps installs it)")
    return found


@dataclass
class ServerProcess:
    """One redis-server or redis-sentinel the test started."""

    name: str
    port: int
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the host dies, nothing is flushed or handed over."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def output(self) -> str:
        """Its log so far (for a failing test's report)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(binary: str, name: str, folder: Path, config: str, port: int,
          *args: str) -> ServerProcess:
    """Start `binary` with `config` written in `folder` (its own, writable: sentinels
    rewrite theirs), logging to a file there."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / f"{name}.conf"
    conf.write_text(config)
    log = folder / f"{name}.log"
    popen = subprocess.Popen([binary, str(conf), *args], cwd=folder, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ServerProcess(name, port, popen, log)


def server_config(folder: Path, port: int, name: str, extra: str = "") -> str:
    """A redis-server on 127.0.0.1:`port` that keeps nothing on disk."""
    return (f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / (name + '.log')}\n"
            f"save \"\"\nappendonly no\ndaemonize no\nloglevel notice\n"
            # A replica syncs at once (the default waits 5 s for more replicas).
            f"repl-diskless-sync-delay 0\n{extra}")


def wait_until(what: str, check, timeout: float = 20.0, interval: float = 0.05):
    """Poll `check` (errors count as not yet) until truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


@dataclass
class SentinelGroup:
    """A primary, a replica and three sentinels on loopback, watching `SERVICE`."""

    folder: Path
    primary: ServerProcess
    replica: ServerProcess
    sentinels: list[ServerProcess] = field(default_factory=list)
    tls: TlsFiles | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """caseline's REDIS_URL for this group."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        login = f":{self.password}@" if self.password else ""
        if self.tls is None:
            return f"redis+sentinel://{login}{hosts}/{SERVICE}/0"
        return f"rediss+sentinel://{login}{hosts}/{SERVICE}/0?ssl_ca_certs={self.tls.ca}"

    def client(self, port: int, *, server: bool = True) -> redis.Redis:
        """A plain client of one process of the group (a server, or a sentinel)."""
        options: dict = {"port": port, "socket_timeout": 1}
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.tls.ca))
        if server and self.password:
            options["password"] = self.password
        return redis.Redis(**options)

    def processes(self) -> list[ServerProcess]:
        """Every process of the group."""
        return [self.primary, self.replica, *self.sentinels]

    def primary_port(self) -> int | None:
        """The primary's port, as the first sentinel that answers says."""
        for sentinel in self.sentinels:
            if not sentinel.alive():
                continue
            with contextlib.closing(self.client(sentinel.port, server=False)) as r:
                try:
                    address = r.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
                except redis.RedisError:
                    continue
            if address:
                return int(address[1])
        return None

    def kill_primary_and_wait_for_failover(self, timeout: float = 30.0) -> float:
        """SIGKILL the primary; block until the sentinels name the replica and it accepts
        writes. Returns the seconds that took."""
        started = time.monotonic()
        self.primary.kill()
        wait_until("the sentinels to promote the replica",
                   lambda: self.primary_port() == self.replica.port, timeout=timeout)
        with contextlib.closing(self.client(self.replica.port)) as r:
            wait_until("the promoted replica to be a primary",
                       lambda: r.info("replication")["role"] == "master", timeout=timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        """Stop every process of the group (the killed primary is already gone)."""
        for process in reversed(self.processes()):
            process.stop()

    def output(self) -> str:
        """Every log, for a failing test."""
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.processes())


@contextlib.contextmanager
def sentinel_group(folder: Path, down_after_ms: int = 1000, tls: TlsFiles | None = None,
                   password: str | None = None) -> Iterator[SentinelGroup]:
    """Start the group and wait until every sentinel knows the replica and its peers
    (else a killed primary would have no successor). With `tls`, every process
    speaks only TLS (replication and the sentinels' links too); with `password`,
    the servers require it (`requirepass`, and `masterauth` for the replica)."""
    server = debian_binary("redis-server")
    sentinel = debian_binary("redis-sentinel")
    primary_port, replica_port = free_port(), free_port()

    def listen(port: int) -> str:
        if tls is None:
            return f"port {port}\n"
        return (f"port 0\ntls-port {port}\ntls-cert-file {tls.cert}\ntls-key-file {tls.key}\n"
                f"tls-ca-cert-file {tls.ca}\ntls-auth-clients no\ntls-replication yes\n")

    login = f"requirepass {password}\nmasterauth {password}\n" if password else ""

    def node(name: str, port: int, extra: str = "") -> ServerProcess:
        where = folder / name
        config = server_config(where, port, name, listen(port) + login + extra)
        config = config.replace(f"port {port}\n", "", 1)  # `listen` says where
        return start(server, name, where, config, port)

    group = SentinelGroup(folder, node("primary", primary_port), None,  # type: ignore[arg-type]
                          tls=tls, password=password)
    group.replica = group.primary
    try:
        with contextlib.closing(group.client(primary_port)) as r:
            wait_until("the primary to answer", r.ping)
        group.replica = node("replica", replica_port, f"replicaof 127.0.0.1 {primary_port}\n")
        with contextlib.closing(group.client(replica_port)) as r:
            wait_until("the replica to sync",
                       lambda: r.info("replication").get("master_link_status") == "up")
        for n in range(3):
            port = free_port()
            where = folder / f"sentinel-{n}"
            auth = f"sentinel auth-pass {SERVICE} {password}\n" if password else ""
            group.sentinels.append(start(sentinel, f"sentinel-{n}", where, (
                f"{listen(port)}bind 127.0.0.1\ndir {where}\n"
                f"logfile {where / f'sentinel-{n}.log'}\ndaemonize no\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n{auth}"
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"), port))

        def ready() -> bool:
            for s in group.sentinels:
                with contextlib.closing(group.client(s.port, server=False)) as r:
                    state = r.sentinel_master(SERVICE)
                    if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                        return False
            return True

        wait_until("the sentinels to know the replica and each other", ready, timeout=30)
        yield group
    except BaseException:
        print(group.output())
        raise
    finally:
        group.stop()


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Generate a CA and a server certificate (CN and SAN 127.0.0.1, localhost)."""
    openssl = debian_binary("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, csr = folder / "redis.crt", folder / "redis.key", folder / "redis.csr"
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=caseline test CA", "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return TlsFiles(ca, cert, key)
