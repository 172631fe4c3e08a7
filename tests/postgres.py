"""A throwaway PostgreSQL cluster for the test session: Debian's `postgresql`
package (`make system-deps`), `initdb` in a temporary folder, the server
listening on a unix socket only, one fresh database per test.

PostgreSQL refuses to run as root, and CI runs as root: then the cluster
belongs to the `postgres` user the Debian package creates, and this process
(root) still connects to the socket, trusted (the socket lives in a folder
only that user and root can enter). Nothing is left behind: the folder is
removed when the session ends.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

# Speed over durability: the cluster lives for one test session.
SERVER_OPTIONS = {
    "listen_addresses": "",  # the unix socket only
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
}
SUPERUSER = "caseline"


def binaries() -> Path | None:
    """The folder of the newest installed PostgreSQL server programs, or None."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        newest = max(found, key=lambda p: int(re.sub(r"\D", "", Path(p).parts[-3]) or 0))
        return Path(newest).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _run_as() -> pwd.struct_passwd | None:
    """The user the server runs as: `postgres` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root and no `postgres` user to run PostgreSQL as "
                           "(Debian's postgresql package creates it)") from exc


@dataclass
class PostgresCluster:
    """One running cluster: a data folder, its socket folder, the server process."""

    bin: Path
    root: Path
    user: pwd.struct_passwd | None
    process: subprocess.Popen | None = None
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))
    _version: int | None = None

    @property
    def socket_dir(self) -> Path:
        """Where the server's unix socket lives."""
        return self.root / "socket"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of `database` on this cluster, through the socket."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _popen(self, args: list[str], **kwargs: object) -> subprocess.Popen:
        """Start a PostgreSQL program as the cluster's user."""
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return subprocess.Popen(args, cwd=self.root, **kwargs)  # type: ignore[call-overload]

    def init(self) -> None:
        """initdb: a new cluster, trusted on its socket only."""
        for folder in (self.root, self.socket_dir):
            folder.mkdir(exist_ok=True)
            if self.user is not None:
                os.chown(folder, self.user.pw_uid, self.user.pw_gid)
        self.root.chmod(0o700)
        initdb = self._popen(
            [str(self.bin / "initdb"), "-D", str(self.root / "data"), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = initdb.communicate(timeout=120)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{out}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = [f"--{k.replace('_', '-')}={v}" for k, v in SERVER_OPTIONS.items()]
        log = (self.root / "server.log").open("ab")
        if self.user is not None:
            os.chown(self.root / "server.log", self.user.pw_uid, self.user.pw_gid)
        self.process = self._popen(
            [str(self.bin / "postgres"), "-D", str(self.root / "data"),
             "-k", str(self.socket_dir), *options],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(host=str(self.socket_dir), user=SUPERUSER,
                                     dbname="postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("PostgreSQL did not start:\n" + self.log()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (a fast shutdown: open sessions are ended)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        """The server's log so far."""
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")
        return ""

    def _admin(self, sql: str) -> None:
        """Run one statement on the maintenance database, outside a transaction."""
        with psycopg.connect(host=str(self.socket_dir), user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of database `template`; its name."""
        name = f"caseline_test_{next(self._names)}"
        self._create(name, template)
        return name

    def _create(self, name: str, template: str | None) -> None:
        """CREATE DATABASE, copying the template's files: PostgreSQL 15's default
        (WAL_LOG, which writes every page of the copy to the WAL) took ~0.9 s a
        database here, FILE_COPY ~0.2 s, and nothing in this cluster needs the WAL."""
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            sql += f' TEMPLATE "{template}"'
        if self.server_version() >= 150000:  # before 15, FILE_COPY was the only way
            sql += " STRATEGY = FILE_COPY"
        self._admin(sql)

    def server_version(self) -> int:
        """The server's version as one number (150004 for 15.4)."""
        if self._version is None:
            with psycopg.connect(host=str(self.socket_dir), user=SUPERUSER,
                                 dbname="postgres") as conn:
                self._version = conn.info.server_version
        return self._version

    def drop_database(self, name: str) -> None:
        """Drop a test's database, ending its connections first."""
        if self.process is not None and self.process.poll() is None:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_cluster() -> PostgresCluster:
    """initdb and start a cluster in a new temporary folder (raises when not installed)."""
    bin_dir = binaries()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (make system-deps)")
    # Not under pytest's tmp folder: that one is private to root, and the server
    # may run as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="caseline-pg-"))
    cluster = PostgresCluster(bin=bin_dir, root=root, user=_run_as())
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


def remove_cluster(cluster: PostgresCluster) -> None:
    """Stop the server and delete its folder."""
    cluster.stop()
    shutil.rmtree(cluster.root, ignore_errors=True)
