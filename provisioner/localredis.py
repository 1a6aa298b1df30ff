"""Start a private, throwaway redis-server from PATH (for the demo, benchmarks, tests).

The server listens on 127.0.0.1 on a free port, keeps no snapshot, and lives in a
temporary folder removed at exit.  AOF can be switched on (for restart tests), and the
server can be pinned to one CPU (the benchmark runs it on the core of the replay it
serves: see :func:`pin`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

__all__ = [
    "INSTALL_HINT",
    "LocalRedis",
    "RedisNotFound",
    "cpus",
    "free_port",
    "local_redis",
    "pin",
    "pin_threads",
    "wait_ready",
]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "no redis-server on PATH. Install Redis 7 first, e.g. 'sudo apt-get install -y "
    "redis-server' (Debian/Ubuntu) or 'brew install redis' (macOS), or pass --redis-url "
    "to use a running server."
)


class RedisNotFound(RuntimeError):
    """No ``redis-server`` binary on PATH."""


def cpus() -> list[int]:
    """The CPUs this process may run on, ascending (``[]`` where the OS cannot say)."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def pin(pid: int, cpu: int | None) -> bool:
    """Restrict process ``pid`` (0: this one), every thread of it, to CPU ``cpu``
    (``None``: leave it as is), as :func:`pin_threads`.

    Why: a replay is a ping-pong between one Python process and its redis-server, one
    waiting while the other works. On different cores every reply wakes the sleeping
    side across cores; on this 2-core VM a PING round trip took 107 us that way and 29 us
    with both on one core (README, Speed).

    Returns:
        Whether the process is now pinned (False, with a log line, where the OS refuses
        or has no affinity call: the run goes on unpinned).
    """
    return pin_threads(pid or os.getpid(), cpu) is not None


def pin_threads(pid: int, cpu: int | None) -> int | None:
    """Pin every thread of process ``pid`` to ``cpu`` (``sched_setaffinity`` on a pid
    pins that one thread only; redis-server starts helper threads at start-up, and a
    thread started later inherits its creator's CPU). Returns ``cpu`` when the main
    thread is pinned to it, else None (logged; the process runs unpinned)."""
    if cpu is None:
        return None
    tasks = Path(f"/proc/{pid}/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for tid in tids:
        with contextlib.suppress(AttributeError, OSError):  # no such call; a thread gone
            os.sched_setaffinity(tid, {cpu})
    try:
        if os.sched_getaffinity(pid) == {cpu}:
            return cpu
    except (AttributeError, OSError):
        pass
    log.warning("cannot pin pid %d to CPU %s; running unpinned", pid, cpu)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, timeout_s: float = 10.0) -> None:
    """Block until a PING on ``url`` succeeds.

    Raises:
        redis.ConnectionError: still unreachable after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = redis.Redis.from_url(url)
            try:
                client.ping()
                return
            finally:
                client.close()
        except (redis.ConnectionError, redis.BusyLoadingError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class LocalRedis:
    """A running private server.

    Attributes:
        url: ``redis://127.0.0.1:<port>/0``.
        port: its port.
        workdir: its folder (AOF files live here).
        proc: the process.
        args: the command line, to restart it identically.
        cpu: the CPU it is pinned to (checked after the start), or None.
    """

    url: str
    port: int
    workdir: str
    proc: subprocess.Popen[bytes]
    args: list[str]
    cpu: int | None = None

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        """Stop, then start again on the same port and folder (AOF is replayed)."""
        self.stop()
        self.proc = _spawn(self.args)
        wait_ready(self.url)
        self.cpu = pin_threads(self.proc.pid, self.cpu)


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    """Start the server. Where util-linux's ``setpriv`` is on PATH (Linux) it execs the
    server with ``--pdeathsig TERM``: the server is sent SIGTERM should the process that
    started it die without stopping it (a benchmark killed with SIGKILL left its private
    servers running). The signal follows the death of the starting *thread*: servers are
    started from the main one. (``setpriv`` rather than a ``preexec_fn`` calling
    ``prctl``: Python code between fork and exec is unsafe while other threads run.)"""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    prefix = [setpriv, "--pdeathsig", "TERM"] if setpriv else []
    return subprocess.Popen(prefix + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def local_redis(appendonly: bool = False, cpu: int | None = None) -> Iterator[LocalRedis]:
    """Run a private redis-server for the duration of the ``with`` block.

    Args:
        appendonly: turn AOF on (``appendfsync everysec``).
        cpu: pin the server's threads to this CPU (:func:`pin_threads`, once it answers);
            None: the OS places it.

    Raises:
        RedisNotFound: no binary on PATH (the message says how to install one).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisNotFound(INSTALL_HINT)
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="provisioner-redis-")
    args = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--dir", workdir,
    ]  # fmt: skip
    proc = _spawn(args)
    server = LocalRedis(f"redis://127.0.0.1:{port}/0", port, workdir, proc, args, cpu)
    try:
        wait_ready(server.url)
        server.cpu = pin_threads(proc.pid, cpu)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
