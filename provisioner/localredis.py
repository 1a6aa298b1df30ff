"""Start a private, throwaway redis-server from PATH (for the demo, benchmarks, tests).

The server listens on 127.0.0.1 on a free port, keeps no snapshot, and lives in a
temporary folder removed at exit.  AOF can be switched on (for restart tests).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

__all__ = ["INSTALL_HINT", "LocalRedis", "RedisNotFound", "free_port", "local_redis", "wait_ready"]

INSTALL_HINT = (
    "no redis-server on PATH. Install Redis 7 first, e.g. 'sudo apt-get install -y "
    "redis-server' (Debian/Ubuntu) or 'brew install redis' (macOS), or pass --redis-url "
    "to use a running server."
)


class RedisNotFound(RuntimeError):
    """No ``redis-server`` binary on PATH."""


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
    """

    url: str
    port: int
    workdir: str
    proc: subprocess.Popen[bytes]
    args: list[str]

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
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_ready(self.url)


@contextmanager
def local_redis(appendonly: bool = False) -> Iterator[LocalRedis]:
    """Run a private redis-server for the duration of the ``with`` block.

    Args:
        appendonly: turn AOF on (``appendfsync everysec``).

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
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = LocalRedis(f"redis://127.0.0.1:{port}/0", port, workdir, proc, args)
    try:
        wait_ready(server.url)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
