"""The scale runs of ``bench throughput``: for 1k, 100k and 1M active users seeded with
pipelined ``recordActivity``, the wall time of one leader step with the predictive policy
(driven directly on a virtual clock, as :mod:`provisioner.sim.replay` does), Redis memory
per active user (the ``used_memory`` delta, and ``MEMORY USAGE`` of the per-user keys),
then, after every user went quiet, what is left per known user and what is left after the
history TTL."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from provisioner.bench.throughput.common import SLOW_S, T0_MS, pct, wipe
from provisioner.bench.throughput.report import ScaleRow, format_scale
from provisioner.core.clock import VirtualClock
from provisioner.core.coordinator import Coordinator
from provisioner.core.keys import PoolKeys
from provisioner.core.leader import Leader, LeaderConfig
from provisioner.core.metrics import Metrics
from provisioner.policies.predictive import PredictivePolicy

__all__ = ["measure_scale"]


class _NoApi:
    """A Node API for the tick measurement: creates get ids, nothing ever boots."""

    def __init__(self) -> None:
        self.n = 0

    async def create(self) -> str:
        self.n += 1
        return f"scale-node-{self.n}"

    async def delete(self, node_id: str) -> None:
        return None


async def _seed_users(coord: Coordinator, n: int, now_ms: int, batch: int = 5000) -> None:
    """``n`` active users (UUID ids) over the last 10 minutes, 1-3 events each, with real
    message ids, in pipelines of ``batch`` calls, two in flight."""
    rng = random.Random(n)
    seq = [0]

    def calls(count: int) -> list[tuple[str, list[str | int | float]]]:
        out: list[tuple[str, list[str | int | float]]] = []
        for _ in range(count):
            user = str(uuid.UUID(int=rng.getrandbits(128)))
            t = now_ms - rng.randrange(600_000)
            for _ in range(1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)):
                seq[0] += 1
                msg_id = 10**6 * (1 + seq[0] // 1000) + seq[0] % 1000 + 1
                out.append(("recordActivity", [user, t, msg_id]))
                t += 1000
        return out

    done = 0
    while done < n:
        todo = []
        for _ in range(2):
            k = min(batch, n - done)
            if k <= 0:
                break
            todo.append(coord.runner.call_many(calls(k)))
            done += k
        await asyncio.gather(*todo)


async def _scale_one(redis_url: str, users: int, ticks: int, history_ttl_ms: int) -> ScaleRow:
    pool = f"scale-{users}-{uuid.uuid4().hex[:4]}"
    # seeding 1M users on a loaded machine can hold a reply for longer than redis-py's
    # default 5 s socket timeout: wait instead
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=SLOW_S)
    client2 = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=SLOW_S)
    coord = Coordinator(client, pool)
    keys = coord.keys
    sync = redis.Redis.from_url(redis_url, socket_timeout=SLOW_S)
    try:
        await coord.runner.load_all()
        seeder = Coordinator(client2, pool)
        await client2.ping()  # its connection's buffers exist before the first reading
        await client.memory_purge()
        mem0 = int((await client.info("memory"))["used_memory"])
        t0 = time.perf_counter()
        await _seed_users(seeder, users, T0_MS)
        seed_s = time.perf_counter() - t0
        mem1 = int((await client.info("memory"))["used_memory"])
        per_key: dict[str, float] = {}
        for attr in _PER_USER_KEYS:
            name = getattr(keys, attr)
            usage = await client.memory_usage(name, samples=0)
            if usage:
                per_key[attr] = round(usage / users, 1)
        clock = VirtualClock(T0_MS)
        leader = Leader(
            coord, _NoApi(), PredictivePolicy(), clock, "scale-bench",
            LeaderConfig(lease_ttl_s=3600.0, tick_s=1.0), Metrics(),
        )  # fmt: skip
        times = []
        for i in range(ticks + 3):
            clock.advance_to(clock.now_ms() + 1000)
            t = time.perf_counter()
            await leader.step()
            if i >= 3:  # the first steps take the lease and warm the policy up
                times.append((time.perf_counter() - t) * 1000.0)
        await leader.drain()
        # every user goes quiet: the active set empties, the history stays (bounded)
        quiet = T0_MS + 3_600_000
        while await coord.expire_users(quiet, 600_000, max_count=50_000, min_interval_ms=0):
            pass
        known = await _records(client, keys)
        usage = await client.memory_usage(keys.user_info, samples=0) if known else None
        later = quiet + history_ttl_ms + 1
        while not (await coord.forget_users(later, history_ttl_ms, count=10_000))[1]:
            pass
        left = await _records(client, keys)
        return ScaleRow(
            users=users,
            seed_s=round(seed_s, 2),
            tick_ms=round(statistics.median(times), 3),
            tick_p90_ms=round(pct(times, 90) or 0.0, 3),
            bytes_per_user=round((mem1 - mem0) / users, 1),
            key_bytes_per_user=per_key,
            known_bytes_per_user=round(usage / known, 1) if usage and known else None,
            known_left=known,
            left_after_history_ttl=left,
        )
    finally:
        wipe(sync, keys)
        sync.close()
        await client.aclose()
        await client2.aclose()


async def _records(client: aioredis.Redis, keys: PoolKeys) -> int:
    return int(await client.hlen(keys.user_info))


#: Keys whose size grows with the number of users.
_PER_USER_KEYS = ("users_active", "user_info")


def measure_scale(
    redis_url: str, sizes: Sequence[int], ticks: int, history_ttl_s: float, echo: Any = None
) -> list[ScaleRow]:
    """Tick cost and memory per user at each size (module docstring)."""
    rows = []
    for n in sizes:
        row = asyncio.run(_scale_one(redis_url, n, ticks, int(history_ttl_s * 1000)))
        rows.append(row)
        if echo:
            echo(format_scale(row))
    return rows
