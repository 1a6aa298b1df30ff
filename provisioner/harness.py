"""The harness of the demo, the benchmarks and the tests: private, throwaway
redis-servers (:func:`local_redis`, :func:`private_redis`, :func:`private_servers`) and
child processes (:class:`Procs`; a child that answers in JSON: :func:`start_json_child`,
:func:`json_result`).  The service itself never imports it.

A private redis-server is started from PATH.

The server listens on 127.0.0.1 on a free port, keeps no snapshot, and lives in a
temporary folder removed at exit.  AOF can be switched on (for restart tests), and the
server can be pinned to one CPU (the benchmark runs it on the core of the replay it
serves: see :func:`pin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import click
import redis
from redis.exceptions import RedisError

__all__ = [
    "INSTALL_HINT",
    "LocalRedis",
    "Procs",
    "RedisNotFound",
    "cpus",
    "free_port",
    "json_result",
    "local_redis",
    "pin",
    "pin_threads",
    "private_redis",
    "private_servers",
    "start_json_child",
    "wait_http",
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
    with both on one core (docs/benchmarks.md#speed).

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


@contextmanager
def private_redis(url: str | None) -> Iterator[str]:
    """``url`` itself (once it answers a PING), or the URL of a private redis-server for
    the ``with`` block.

    Raises:
        click.ClickException: ``url`` does not answer within 5 s, or no redis-server on
            PATH (the message says how to get one).
    """
    if url:
        try:
            wait_ready(url, timeout_s=5.0)
        except RedisError as e:
            raise click.ClickException(f"Redis at {url} does not answer: {e}") from e
        yield url
        return
    try:
        with local_redis() as srv:
            yield srv.url
    except RedisNotFound as e:
        raise click.ClickException(str(e)) from e


@contextmanager
def private_servers(n: int, pinned: bool = True) -> Iterator[list[tuple[str, int | None]]]:
    """``n`` private redis-servers for the ``with`` block, server ``i`` pinned to the
    ``i``-th CPU this process may use (round robin): ``[(url, cpu), ...]``, cpu None
    where the OS cannot pin or ``pinned`` is False. A replay is then pinned to its
    server's CPU (one core per replay and its Redis: ``localredis.pin`` says why).

    Raises:
        click.ClickException: no redis-server on PATH.
    """
    allowed = cpus() if pinned else []
    try:
        with ExitStack() as stack:
            slots = []
            for i in range(n):
                cpu = allowed[i % len(allowed)] if allowed else None
                srv = stack.enter_context(local_redis(cpu=cpu))
                slots.append((srv.url, srv.cpu))  # None where the pin failed
            yield slots
    except RedisNotFound as e:
        raise click.ClickException(str(e)) from e


class Procs:
    """Child ``provisioner`` processes (``python -m provisioner ARGS``), each logging to
    ``logdir/<name>.log``, stopped with SIGCONT and SIGTERM (then SIGKILL after 15 s) in
    reverse order: the demo's, ``bench throughput``'s and the tests' replicas.

    Attributes:
        procs: the live children by name, in start order; starting a name again
            replaces its entry (the log is appended to when ``append_logs``).
    """

    def __init__(self, logdir: Path, append_logs: bool = False) -> None:
        self.logdir = logdir
        self.append_logs = append_logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python -m provisioner *args`` as child ``name`` (env: this process's
        when None)."""
        mode = "ab" if self.append_logs else "wb"
        log = open(self.logdir / f"{name}.log", mode)  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        self.procs.pop(name, None)
        self.procs[name] = proc
        return proc

    def stop_all(self, names: Collection[str] | None = None) -> None:
        """Stop every child (or those named), wait for them, and forget them."""
        todo = [(n, p) for n, p in reversed(self.procs.items()) if names is None or n in names]
        for _, p in todo:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)  # a stopped child cannot act on SIGTERM
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, p in todo:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for n, _ in todo:
            del self.procs[n]

    def dead(self) -> list[str]:
        """Names of the children that have exited."""
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def log(self, name: str) -> str:
        """What child ``name`` wrote so far."""
        return (self.logdir / f"{name}.log").read_text(errors="replace")


def start_json_child(module: str, args: list[str]) -> subprocess.Popen[str]:
    """Start ``python -m <module> *args``, a child that prints one JSON object on stdout
    (piped, text) and logs to this process's stderr: a benchmark's load generator.
    Read its answer with :func:`json_result`."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        text=True,
    )


def json_result(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    """Wait up to ``timeout_s`` seconds for a child of :func:`start_json_child` and return
    the JSON object it printed.

    Raises:
        click.ClickException: the child did not exit in time (it is killed) or exited
            with a non-zero status.
    """
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise click.ClickException("a benchmark child process hung") from None
    if proc.returncode != 0:
        raise click.ClickException(f"a benchmark child process failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


async def wait_http(url: str, timeout_s: float = 60.0) -> None:
    """Poll ``url`` until it answers 200.

    Raises:
        click.ClickException: not within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise click.ClickException(f"{url} did not come up in {timeout_s}s")
            await asyncio.sleep(0.1)
