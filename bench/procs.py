"""The processes a benchmark starts, pinned to a core, and what /proc says of them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin(pid: int, core: int) -> None:
    """Pin a running process (all its threads) to one core."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {core})


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """Every live descendant of a process."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """CPU time of a process (user + system), with its reaped children's when `reaped`."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def steal_seconds(core: int) -> float:
    """CPU time the hypervisor took from `core` since boot (the steal column of
    /proc/stat), in seconds: time the core's work waited while the host ran someone
    else's; 0 where the kernel does not count it."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            fields = line.split()
            if fields[0] == f"cpu{core}" and len(fields) > 8:
                return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ValueError):
        pass
    return 0.0


@dataclass
class Service:
    """A started process (and its process group), pinned to a core."""

    name: str
    process: subprocess.Popen
    core: int | None
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def tree(self) -> list[int]:
        """The process and its live descendants."""
        return [self.pid, *children(self.pid)]

    def cpu(self) -> float:
        """CPU seconds of the whole tree (reaped children included)."""
        return sum(cpu_seconds(pid) for pid in self.tree())

    def stop(self) -> None:
        """SIGTERM the process (its whole group when it leads one), then SIGKILL."""
        if self.process.poll() is not None:
            return
        leads_group = os.getpgid(self.pid) == self.pid

        def send(sig: int) -> None:
            with contextlib.suppress(ProcessLookupError):
                if leads_group:
                    os.killpg(self.pid, sig)
                else:
                    os.kill(self.pid, sig)

        send(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            self.process.wait(timeout=5)


@dataclass
class Services:
    """Everything a run started, stopped together at the end."""

    directory: Path
    started: list[Service] = field(default_factory=list)

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str], *, core: int | None,
        nice: int = 0, cwd: Path | None = None,
    ) -> Service:
        """Start a command in its own process group, pinned with taskset to `core`."""
        log = self.directory / f"{name}.log"
        # taskset pins from the first instruction; without it, pin right after the start
        # (gunicorn forks its workers later, and they inherit the affinity).
        taskset = shutil.which("taskset")
        prefix = [taskset, "-c", str(core)] if core is not None and taskset else []
        if nice:
            prefix += ["nice", "-n", str(nice)]
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [*prefix, *argv], env=env, cwd=cwd or self.directory, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        if core is not None and not taskset:
            pin(process.pid, core)
        service = Service(name, process, core, log)
        self.started.append(service)
        return service

    def adopt(self, name: str, process: subprocess.Popen, core: int | None) -> Service:
        """Track a process started elsewhere (e.g. the embedded Redis helper)."""
        if core is not None:
            pin(process.pid, core)
        service = Service(name, process, core, self.directory / f"{name}.log")
        self.started.append(service)
        return service

    def stop_all(self) -> None:
        """Stop every started process, newest first."""
        for service in reversed(self.started):
            with contextlib.suppress(Exception):  # stopping must go on for the others
                service.stop()


def wait_for_port(port: int, timeout: float = 30.0, service: Service | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while True:
        if service is not None and service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited; see {service.log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout}s") from None
            time.sleep(0.05)
