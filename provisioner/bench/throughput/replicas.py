"""The replica runs of ``bench throughput``: 1, then 2 ``provisioner run`` processes
against one Redis.

The replicas run policy ``static`` with no spare and a long keep-alive, so the leader
stays out of the way; a ``mock-node-api`` process is behind them and 50 ready nodes are
seeded, on a fresh pool and channel prefix.  For each rate a flood and a probe
(:mod:`provisioner.bench.throughput.loadgen`) run at once.  Applied events are read back
from the pool's counters (``P:stats`` ``activity``: a second replica's duplicate is
STALE and not counted); lost = published - applied once the replicas have drained (or
stopped making progress).  Replica CPU is read from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from provisioner.bench.errors import BenchError
from provisioner.bench.throughput.common import SLOW_S, ThroughputConfig, pct, round_or_none, wipe
from provisioner.bench.throughput.loadgen import loadgen_result, start_loadgen
from provisioner.bench.throughput.report import RateRow, format_rate
from provisioner.core.coordinator import Coordinator
from provisioner.core.keys import Channels, PoolKeys
from provisioner.harness import Procs, free_port, wait_http

__all__ = ["run_replicas", "run_stack"]


def run_stack(redis_url: str, cfg: ThroughputConfig, limit: float, echo: Any) -> list[RateRow]:
    """Start a mock Node API, then run every replica count of ``cfg`` through every rate.

    Args:
        redis_url: the server.
        cfg: rates, duration and replica counts.
        limit: Redis's own rate, events/s (the reference of each row's ratio).
        echo: called with each row's line of text as it is measured; None: silent.

    Returns:
        One row per (replica count, rate), in order.

    Raises:
        click.ClickException: a child process hung or failed (:mod:`provisioner.harness`).
        BenchError: a replica exited early.
    """
    rows: list[RateRow] = []
    logdir = Path(tempfile.mkdtemp(prefix="provisioner-tput-"))
    stack = Procs(logdir)
    try:
        api_port = free_port()
        stack.start("mock-node-api", ["mock-node-api", "--port", str(api_port)], _env(redis_url))
        api_url = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{api_url}/healthz")
        for n in cfg.replicas:
            rows += run_replicas(redis_url, n, cfg, limit, api_url, stack, echo)
    finally:
        stack.stop_all()
    shutil.rmtree(logdir, ignore_errors=True)
    return rows


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks (Linux ``/proc``); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def _redis_cpu_s(r: redis.Redis) -> float:
    """CPU seconds (system + user) redis-server used since it started."""
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _env(redis_url: str) -> dict[str, str]:
    """The environment of a child ``provisioner``: this one's, on ``redis_url``, without
    a pool or prefix of its own (they are given on the command line)."""
    env = dict(os.environ, PROVISIONER_REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    for k in ("PROVISIONER_POOL", "PROVISIONER_CHANNEL_PREFIX"):
        env.pop(k, None)
    return env


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    """:func:`provisioner.harness.wait_http`, blocking."""
    asyncio.run(wait_http(url, timeout_s))


def _seed_ready_nodes(redis_url: str, pool: str, prefix: str, n: int) -> None:
    """Register ``n`` nodes in ``pool`` and report each ready (through the scripts)."""

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        coord = Coordinator(client, pool, Channels(prefix, pool))
        now = int(time.time() * 1000)
        try:
            for i in range(n):
                node = f"bench-node-{i}"
                await coord.register_node("", node, now)
                await coord.node_status(node, "ready", now)
        finally:
            await client.aclose()

    asyncio.run(go())


@dataclass(frozen=True)
class _Target:
    """One replica run's Redis, pool and channels.

    Attributes:
        redis_url: the server.
        n_replicas: replica processes.
        run_id: tells this run's pool, prefix and replica ids from others'.
        pool: the run's own pool.
        prefix: the run's own channel prefix.
    """

    redis_url: str
    n_replicas: int
    run_id: str
    pool: str
    prefix: str

    @property
    def keys(self) -> PoolKeys:
        return PoolKeys(self.pool)

    @property
    def channels(self) -> Channels:
        return Channels(self.prefix, self.pool)


def run_replicas(
    redis_url: str,
    n_replicas: int,
    cfg: ThroughputConfig,
    limit: float,
    api_url: str,
    stack: Procs,
    echo: Any = None,
) -> list[RateRow]:
    """Run ``n_replicas`` replicas through every rate of ``cfg`` (module docstring).

    Args:
        redis_url: the server.
        n_replicas: replica processes, started as children of ``stack`` (stopped at the
            end).
        cfg: rates, duration, connect rate and history TTL.
        limit: Redis's own rate, events/s (the reference of each row's ratio).
        api_url: the mock Node API the replicas use.
        stack: the child processes.
        echo: called with each row's line of text as it is measured; None: silent.

    Returns:
        One row per rate, in order.

    Raises:
        click.ClickException: a child process hung or failed (:mod:`provisioner.harness`).
        BenchError: a replica exited early.
    """
    run_id = uuid.uuid4().hex[:6]
    target = _Target(redis_url, n_replicas, run_id, f"tput{n_replicas}-{run_id}", f"tput-{run_id}:")
    r = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=SLOW_S)
    names = [f"replica-{n_replicas}-{i + 1}" for i in range(n_replicas)]
    rows: list[RateRow] = []
    try:
        procs = _start_replicas(target, names, api_url, cfg, stack)
        _seed_ready_nodes(redis_url, target.pool, target.prefix, 50)
        for step, rate in enumerate(cfg.rates):
            row = _one_rate(r, target, procs, step, rate, cfg, limit)
            rows.append(row)
            if echo:
                echo(format_rate(row))
            if any(p.poll() is not None for p in procs):
                raise BenchError(f"a replica exited early; logs in {stack.logdir}")
    finally:
        stack.stop_all(names)
        wipe(r, target.keys)
        r.close()
    return rows


def _start_replicas(
    target: _Target, names: list[str], api_url: str, cfg: ThroughputConfig, stack: Procs
) -> list[subprocess.Popen[bytes]]:
    """Start one ``provisioner run`` child of ``stack`` per name and wait until each
    answers on its metrics port."""
    ports = []
    procs = []
    for name in names:
        port = free_port()
        ports.append(port)
        args = [
            "--pool", target.pool, "--channel-prefix", target.prefix, "--log-level", "warning",
            "run", "--node-api-url", api_url, "--metrics-port", str(port),
            "--metrics-host", "127.0.0.1", "--replica-id", f"{name}-{target.run_id}",
            "--policy", "static", "--min-spare", "0", "--keep-alive", "3600",
            "--history-ttl", str(cfg.history_ttl_s),
        ]  # fmt: skip
        procs.append(stack.start(name, args, _env(target.redis_url)))
    for port in ports:
        _wait_http(f"http://127.0.0.1:{port}/healthz")
    return procs


def _one_rate(
    r: redis.Redis,
    target: _Target,
    procs: list[subprocess.Popen[bytes]],
    step: int,
    rate: int,
    cfg: ThroughputConfig,
    limit: float,
) -> RateRow:
    """Flood at ``rate`` events/s while the probe times connects, wait for the replicas
    to drain, and measure what they applied and the CPU they and Redis used."""
    keys, url = target.keys, target.redis_url
    before = int(r.hget(keys.stats, "activity") or 0)
    cpu0 = [_cpu_ticks(p.pid) for p in procs]
    rcpu0 = _redis_cpu_s(r)
    wall0 = time.monotonic()
    fl = start_loadgen(
        "flood",
        {"url": url, "channel": target.channels.activity, "rate": rate,
         "duration_s": cfg.duration_s, "seed": step},
    )  # fmt: skip
    pr = start_loadgen(
        "probe",
        {"url": url, "prefix": target.prefix, "rate": cfg.connect_rate,
         "duration_s": cfg.duration_s, "tag": f"{target.n_replicas}-{step}"},
    )  # fmt: skip
    fres = loadgen_result(fl, cfg.duration_s + 120)
    flood_end = time.monotonic()
    published = int(fres["published"])
    applied, drain = _drain(r, keys, before, published)
    pres = loadgen_result(pr, cfg.duration_s + 60)
    wall = time.monotonic() - wall0
    cpu, cpu_s = _cpu_pct(procs, cpu0, wall)
    rcpu = 100.0 * (_redis_cpu_s(r) - rcpu0) / wall
    span = float(fres["seconds"]) + (drain if drain is not None else time.monotonic() - flood_end)
    per_s = applied / span if span > 0 else 0.0
    lat = [float(x) for x in pres["latencies_ms"]]
    return RateRow(
        replicas=target.n_replicas, rate=rate, published=published,
        publish_s=round(float(fres["seconds"]), 3), applied=applied,
        lost=published - applied,
        drain_s=None if drain is None else round(drain, 3),
        applied_per_s=round(per_s, 1), ratio=round(per_s / limit, 4) if limit else 0.0,
        cpu_pct=cpu,
        cpu_us_per_event=round(1e6 * cpu_s / applied, 1) if cpu and applied else None,
        redis_cpu_pct=round(rcpu, 1), connects=int(pres["connects"]),
        assigned=len(lat), p50_ms=round_or_none(pct(lat, 50)),
        p99_ms=round_or_none(pct(lat, 99)), max_ms=round_or_none(max(lat) if lat else None),
    )  # fmt: skip


def _cpu_pct(
    procs: list[subprocess.Popen[bytes]], cpu0: list[int | None], wall: float
) -> tuple[list[float], float]:
    """Each replica's CPU since ``cpu0`` (clock ticks) over ``wall`` seconds, % of one
    core, and their CPU seconds together (replicas ``/proc`` cannot read are left out)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    cpu = []
    cpu_s = 0.0
    for p, c0 in zip(procs, cpu0, strict=True):
        c1 = _cpu_ticks(p.pid)
        if c0 is not None and c1 is not None:
            cpu.append(round(100.0 * (c1 - c0) / tick / wall, 1))
            cpu_s += (c1 - c0) / tick
    return cpu, cpu_s


def _drain(r: redis.Redis, keys: PoolKeys, before: int, published: int) -> tuple[int, float | None]:
    """Wait until the replicas applied ``published`` events, or until nothing is left for
    them to read and they stopped progressing (what is missing then is lost: a subscription
    Redis cut, or messages that could not be named).

    A replica that is only slow (its subscription's output buffer in Redis still holds
    messages: ``omem`` of CLIENT LIST) is waited for, up to two minutes.

    Returns:
        ``(applied, seconds_to_drain or None when never all applied)``.
    """
    started = time.monotonic()
    last, last_change = -1, started
    while True:
        applied = int(r.hget(keys.stats, "activity") or 0) - before
        now = time.monotonic()
        if applied >= published:
            return applied, now - started
        if applied != last:
            last, last_change = applied, now
        elif (now - last_change > 5.0 and not _pending_pubsub(r)) or now - started > 120:
            return applied, None
        time.sleep(0.01)


def _pending_pubsub(r: redis.Redis) -> bool:
    """True while some subscriber still has output waiting in Redis (False when CLIENT
    LIST is not allowed, e.g. under a restrictive ACL: then progress alone decides)."""
    try:
        clients = r.client_list(_type="pubsub")
    except redis.RedisError:
        return False
    return any(int(c.get("omem", 0)) > 0 for c in clients)
