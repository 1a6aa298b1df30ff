"""Helpers for tests that run real ``provisioner`` processes."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from provisioner.core.keys import PoolKeys
from provisioner.harness import Procs


class Replicas(Procs):
    """Start and stop ``provisioner run`` processes for one pool; logs in ``logdir``
    (appended to across restarts of one name)."""

    def __init__(self, redis_url: str, pool: str, prefix: str, logdir: Path) -> None:
        super().__init__(logdir, append_logs=True)
        self.redis_url = redis_url
        self.pool = pool
        self.prefix = prefix

    def start_replica(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """``provisioner run --replica-id NAME ARGS`` on this group's pool."""
        return self.start(
            name,
            [
                "--redis-url", self.redis_url, "--pool", self.pool,
                "--channel-prefix", self.prefix, "--log-level", "debug",
                "run", "--replica-id", name, *args,
            ],
        )  # fmt: skip

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.procs[name].send_signal(sig)


@contextmanager
def replicas(redis_url: str, pool: str, prefix: str, logdir: Path) -> Iterator[Replicas]:
    group = Replicas(redis_url, pool, prefix, logdir)
    try:
        yield group
    finally:
        group.stop_all()


# Waits that passed after more than half their deadline, as (what, waited s, deadline s):
# the session's summary lists them, so a test racing its deadline shows before it flakes.
NEAR_DEADLINE: list[tuple[str, float, float]] = []


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.05) -> None:
    """Poll ``pred`` until it is true; fail the test with ``what`` after ``timeout_s``.
    A wait that passes after more than half of ``timeout_s`` is recorded in
    :data:`NEAR_DEADLINE`."""
    start = time.monotonic()
    deadline = start + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(step_s)
    waited = time.monotonic() - start
    if waited > timeout_s / 2:
        NEAR_DEADLINE.append((what, waited, timeout_s))


def live_replicas(r: redis.Redis, pool: str) -> int:
    """Replicas with a heartbeat in the pool's registry."""
    return int(r.zcard(PoolKeys(pool).replicas))


def subscribers(r: redis.Redis, channel: str) -> int:
    """How many connections subscribe to ``channel`` now."""
    counts = r.pubsub_numsub(channel)
    return int(counts[0][1]) if counts else 0
