"""The limit of ``bench throughput``: how fast Redis itself applies ``recordActivity``
when driven directly.

Pipelined EVALSHA from redis-py (batches of 1,000, real message ids, 10,000 users), and,
when ``redis-benchmark`` is on PATH, the same script from it (``-P 64``, message id 0:
unordered, so it skips the ordering record; a cross-check, not the reference).  The higher
of the two is the limit; every throughput figure is also given as its ratio.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence

import redis

from provisioner.bench.throughput.common import FLOOD_USERS, SLOW_S, T0_MS, wipe
from provisioner.bench.throughput.report import LimitResult
from provisioner.core.keys import PoolKeys
from provisioner.core.scripts import REGISTRY

__all__ = ["measure_limit"]


def measure_limit(redis_url: str, events: int, batch: int = 1000) -> LimitResult:
    """Rate at which Redis applies ``recordActivity`` driven directly (module docstring).

    Args:
        redis_url: the server.
        events: events of the redis-py run (redis-benchmark runs the same number).
        batch: script calls per pipeline.

    Returns:
        Events per second from redis-py and (when installed) redis-benchmark.
    """
    keys = PoolKeys("bench-limit")
    spec = REGISTRY["recordActivity"]
    args_keys = spec.keys_for(keys)
    r = redis.Redis.from_url(redis_url, socket_timeout=SLOW_S)
    try:
        wipe(r, keys)
        r.script_load(spec.source)
        rng = random.Random(5)
        users = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(FLOOD_USERS)]
        now = T0_MS
        done = 0
        started = time.perf_counter()
        while done < events:
            n = min(batch, events - done)
            pipe = r.pipeline(transaction=False)
            for i in range(n):
                msg_id = 10**6 * (1 + (done + i) // 1000) + 1 + (done + i) % 1000
                pipe.evalsha(spec.sha, spec.num_keys, *args_keys, rng.choice(users), now, msg_id)
            pipe.execute()
            done += n
        py_rate = events / (time.perf_counter() - started)
        wipe(r, keys)
        bench_rate = _redis_benchmark(redis_url, spec.sha, spec.num_keys, args_keys, events)
        wipe(r, keys)
    finally:
        r.close()
    limit = max(py_rate, bench_rate or 0.0)
    return LimitResult(redis_py=py_rate, redis_benchmark=bench_rate, limit=limit)


def _redis_benchmark(
    redis_url: str, sha: str, num_keys: int, keys: Sequence[str], events: int
) -> float | None:
    """Events/s of ``redis-benchmark`` running the script ``sha`` ``events`` times; None
    when it is not on PATH, fails, or prints no rate."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    conn = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    args = [
        binary, "-h", str(conn.get("host", "127.0.0.1")), "-p", str(conn.get("port", 6379)),
        "-n", str(events), "-P", "64", "-c", "4", "-r", str(FLOOD_USERS), "--csv",
        "EVALSHA", sha, str(num_keys), *keys, "user-__rand_int__", str(T0_MS), "0",
    ]  # fmt: skip
    if conn.get("password"):
        args[1:1] = ["-a", str(conn["password"])]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
    except (subprocess.SubprocessError, OSError):
        return None
    for line in out.stdout.splitlines()[::-1]:
        parts = [p.strip('"') for p in line.split(",")]
        if len(parts) >= 2:
            with contextlib.suppress(ValueError):
                return float(parts[1])
    return None
