"""``provisioner bench throughput``: ingest rate, connect latency and scale, against Redis.

Three parts, on one real redis-server (a private one unless ``--redis-url``):

* **The limit.** How fast Redis itself applies ``recordActivity`` when driven directly:
  pipelined EVALSHA from redis-py (batches of 1,000, real message ids, 10,000 users), and,
  when ``redis-benchmark`` is on PATH, the same script from it (``-P 64``, message id 0:
  unordered, so it skips the ordering record; a cross-check, not the reference).  The
  higher of the two is the limit; every throughput figure is also given as its ratio.
* **Replicas.** 1, then 2 ``provisioner run`` processes (policy ``static`` with no spare
  and a long keep-alive, so the leader stays out of the way; a ``mock-node-api`` process
  behind them; 50 seeded ready nodes) on a fresh pool and channel prefix.  For each rate,
  a *flood* subprocess publishes ``user:activity`` paced to the rate (pipelined PUBLISH,
  pre-encoded RESP on a raw socket), while a *probe* subprocess publishes a steady
  trickle of ``user:connect`` (20/s) and, subscribed to ``user:assigned``, measures each
  connect's latency with one monotonic clock (then disconnects the user, so its node goes
  back to the pool).  Applied events are read back from the pool's counters (``P:stats``
  ``activity``: a second replica's duplicate is STALE and not counted); lost = published -
  applied once the replicas have drained (or stopped making progress).  Replica CPU is
  read from ``/proc/<pid>/stat``.
* **Scale.** For 1k, 100k and 1M active users seeded with pipelined ``recordActivity``:
  the wall time of one leader step with the predictive policy (driven directly on a
  virtual clock, as :mod:`provisioner.sim.replay` does), Redis memory per active user (the
  ``used_memory`` delta, and ``MEMORY USAGE`` of the per-user keys), then, after every user
  went quiet, what is left per known user and what is left after the history TTL.

Figures vary from machine to machine (and with other load on a shared one): the ratios
to the limit are what to compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import redis
import redis.asyncio as aioredis

from provisioner.core.clock import VirtualClock
from provisioner.core.coordinator import Coordinator
from provisioner.core.keys import Channels, PoolKeys
from provisioner.core.leader import Leader, LeaderConfig
from provisioner.core.metrics import Metrics
from provisioner.core.scripts import REGISTRY
from provisioner.harness import Procs, free_port, private_redis, wait_http
from provisioner.policies.predictive import PredictivePolicy

__all__ = [
    "LimitResult",
    "RateRow",
    "ScaleRow",
    "ThroughputConfig",
    "ThroughputResult",
    "command",
    "format_result",
    "measure_limit",
    "measure_scale",
    "run_throughput",
]

#: Virtual time of the scale runs, unix ms.
T0_MS = 1_700_000_000_000
#: Users the flood and the limit draw from.
FLOOD_USERS = 10_000
#: Socket timeout of the benchmark's own clients, seconds (redis-py's default is 5 s; a
#: machine shared with other work can stall Redis for longer).
_SLOW_S = 120.0


@dataclass(frozen=True)
class ThroughputConfig:
    """What ``bench throughput`` runs (durations in seconds).

    Attributes:
        rates: activity events per second to publish, in order.
        duration_s: seconds of flood per rate.
        replicas: replica counts to run, in order.
        connect_rate: connects per second of the latency probe.
        sizes: active users of the scale runs.
        limit_events: events of the redis-py limit run.
        ticks: leader steps timed per scale size.
        history_ttl_s: the replicas' and expiry's history TTL (per-user records).
        parts: which parts to run: ``replicas`` and/or ``scale`` (the limit always runs).
    """

    rates: tuple[int, ...] = (2500, 5000, 10000, 20000, 40000)
    duration_s: float = 5.0
    replicas: tuple[int, ...] = (1, 2)
    connect_rate: float = 20.0
    sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    limit_events: int = 200_000
    ticks: int = 30
    history_ttl_s: float = 86_400.0
    parts: tuple[str, ...] = ("replicas", "scale")


@dataclass
class LimitResult:
    """Redis's own rate for ``recordActivity``, events per second.

    Attributes:
        redis_py: pipelined EVALSHA from redis-py (real message ids).
        redis_benchmark: from ``redis-benchmark`` (message id 0), None when not installed.
        limit: the higher of the two: the reference of every ratio.
    """

    redis_py: float
    redis_benchmark: float | None
    limit: float


@dataclass
class RateRow:
    """One (replicas, rate) step.

    Attributes:
        replicas: replica processes.
        rate: target events/s.
        published: activity events published.
        publish_s: seconds the flood took.
        applied: events applied (P:stats activity delta).
        lost: published - applied after the drain.
        drain_s: seconds after the flood until every event was applied (None: never).
        applied_per_s: applied / (publish_s + drain), events/s.
        ratio: applied_per_s / limit.
        cpu_pct: CPU of each replica over the step, % of one core.
        cpu_us_per_event: replica CPU (all replicas) per applied event, microseconds: the
            ingest cost, less sensitive to other load on the machine than the rates.
        redis_cpu_pct: CPU of redis-server over the step, % of one core.
        connects: connects the probe published; assigned: answers it got.
        p50_ms, p99_ms, max_ms: connect -> user:assigned latency (None: no answer).
    """

    replicas: int
    rate: int
    published: int
    publish_s: float
    applied: int
    lost: int
    drain_s: float | None
    applied_per_s: float
    ratio: float
    cpu_pct: list[float]
    cpu_us_per_event: float | None
    redis_cpu_pct: float | None
    connects: int
    assigned: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass
class ScaleRow:
    """One scale size.

    Attributes:
        users: active users seeded.
        seed_s: seconds the seeding took.
        tick_ms: median wall ms of one leader step (predictive policy).
        tick_p90_ms: 90th percentile of the same.
        bytes_per_user: used_memory delta / users.
        key_bytes_per_user: MEMORY USAGE of the per-user keys / users, by key.
        known_bytes_per_user: bytes per user of what is left once every user went quiet
            (left the active set); None when nothing is left.
        known_left: per-user records left once every user went quiet.
        left_after_history_ttl: records left after the history TTL passed.
    """

    users: int
    seed_s: float
    tick_ms: float
    tick_p90_ms: float
    bytes_per_user: float
    key_bytes_per_user: dict[str, float]
    known_bytes_per_user: float | None
    known_left: int
    left_after_history_ttl: int


@dataclass
class ThroughputResult:
    """Everything one run measured, with the machine it ran on."""

    machine: dict[str, Any]
    limit: LimitResult
    rates: list[RateRow] = field(default_factory=list)
    scale: list[ScaleRow] = field(default_factory=list)
    targets: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


# -- helpers -------------------------------------------------------------------------------


def _pct(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-100) of ``xs``; None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process in clock ticks (Linux ``/proc``); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def machine_info(redis_url: str) -> dict[str, Any]:
    """nproc, CPU model, load average and the redis-server version."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    r = redis.Redis.from_url(redis_url)
    try:
        version = str(r.info("server").get("redis_version"))
    finally:
        r.close()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "redis_version": version,
        "loadavg_at_start": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
    }


def _redis_cpu_s(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _wipe(r: redis.Redis, keys: PoolKeys) -> None:
    for name in keys.all():
        r.unlink(name)


# -- the limit -----------------------------------------------------------------------------


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
    r = redis.Redis.from_url(redis_url, socket_timeout=_SLOW_S)
    try:
        _wipe(r, keys)
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
        _wipe(r, keys)
        bench_rate = _redis_benchmark(redis_url, spec.sha, spec.num_keys, args_keys, events)
        _wipe(r, keys)
    finally:
        r.close()
    limit = max(py_rate, bench_rate or 0.0)
    return LimitResult(redis_py=py_rate, redis_benchmark=bench_rate, limit=limit)


def _redis_benchmark(
    redis_url: str, sha: str, num_keys: int, keys: Sequence[str], events: int
) -> float | None:
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


# -- the flood and the probe (subprocesses) ----------------------------------------------


def _resp(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


def flood(
    redis_url: str, channel: str, rate: float, duration_s: float, seed: int
) -> dict[str, Any]:
    """Publish ``rate * duration_s`` ``user:activity`` events paced at ``rate`` events/s.

    Pre-encoded RESP PUBLISH commands go out on a raw socket in one write per 5 ms
    slice; the replies (one integer each) are read back before the next slice, so the
    publisher never runs ahead of Redis.  A publisher starved past the duration sends
    the rest at once.

    Returns:
        ``{"published": n, "seconds": s}``.
    """
    conn = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    rng = random.Random(seed)
    ts = int(time.time())
    cmds = [
        _resp(
            b"PUBLISH",
            channel.encode(),
            json.dumps(
                {"user_id": str(uuid.UUID(int=rng.getrandbits(128))), "timestamp": ts}
            ).encode(),
        )
        for _ in range(FLOOD_USERS)
    ]
    sock = socket.create_connection((conn.get("host", "127.0.0.1"), conn.get("port", 6379)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if conn.get("password"):
        sock.sendall(_resp(b"AUTH", str(conn["password"]).encode()))
        sock.recv(64)
    sent = 0
    total = int(rate * duration_s)
    started = time.monotonic()

    def send(n: int) -> None:
        sock.sendall(b"".join(rng.choice(cmds) for _ in range(n)))
        buf = b""
        while buf.count(b"\r\n") < n:  # one integer reply per PUBLISH
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the flood connection")
            buf += chunk

    try:
        while sent < total:
            el = time.monotonic() - started
            # what is due by now; after the duration (a starved publisher) the rest at once
            due = (total if el >= duration_s else min(int(rate * el) + 1, total)) - sent
            if due > 0:
                send(due)
                sent += due
            if sent < total:
                time.sleep(0.005)
    finally:
        sock.close()
    return {"published": sent, "seconds": time.monotonic() - started}


async def probe(
    redis_url: str, prefix: str, rate: float, duration_s: float, tag: str
) -> dict[str, Any]:
    """Publish connects at ``rate``/s and time each to its ``user:assigned`` (ms).

    A user that got its node is disconnected at once, so the node returns to the pool.

    Returns:
        ``{"connects": n, "latencies_ms": [...]}``.
    """
    ch = Channels(prefix=prefix)
    # a loaded machine can stall Redis for seconds: the probe waits (and records it)
    pub = aioredis.Redis.from_url(redis_url, socket_timeout=_SLOW_S)
    sub_client = aioredis.Redis.from_url(redis_url, socket_timeout=_SLOW_S)
    sub = sub_client.pubsub(ignore_subscribe_messages=True)
    await sub.subscribe(ch.assigned)
    sent_at: dict[str, float] = {}
    lat: list[float] = []
    stop = asyncio.Event()

    async def listen() -> None:
        while not stop.is_set():
            msg = await sub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if msg is None or msg.get("type") != "message":
                continue
            t = time.monotonic()
            try:
                user = json.loads(msg["data"])["user_id"]
            except (ValueError, KeyError, TypeError):
                continue
            t0 = sent_at.pop(user, None)
            if t0 is not None:
                lat.append((t - t0) * 1000.0)
                await pub.publish(ch.disconnect, json.dumps({"user_id": user}))

    task = asyncio.create_task(listen())
    started = time.monotonic()
    i = 0
    try:
        while True:
            due = started + i / rate
            if due - started >= duration_s:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            user = f"probe-{tag}-{i}"
            payload = json.dumps({"user_id": user})
            sent_at[user] = time.monotonic()
            await pub.publish(ch.connect, payload)
            i += 1
        deadline = time.monotonic() + 5.0
        while sent_at and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await sub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        await sub_client.aclose()
        await pub.aclose()
    return {"connects": i, "latencies_ms": lat}


def _child_main(argv: list[str]) -> None:
    """``python -m provisioner.bench.throughput flood|probe JSON``: print the result."""
    what, cfg = argv[0], json.loads(argv[1])
    if what == "flood":
        out = flood(cfg["url"], cfg["channel"], cfg["rate"], cfg["duration_s"], cfg["seed"])
    else:
        out = asyncio.run(
            probe(cfg["url"], cfg["prefix"], cfg["rate"], cfg["duration_s"], cfg["tag"])
        )
    sys.stdout.write(json.dumps(out))


# -- replicas ------------------------------------------------------------------------------


def _env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ, PROVISIONER_REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    for k in ("PROVISIONER_POOL", "PROVISIONER_CHANNEL_PREFIX"):
        env.pop(k, None)
    return env


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    asyncio.run(wait_http(url, timeout_s))


def _seed_ready_nodes(redis_url: str, pool: str, prefix: str, n: int) -> None:
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


def _child(what: str, cfg: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "provisioner.bench.throughput", what, json.dumps(cfg)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _collect(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
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


def run_replicas(
    redis_url: str,
    n_replicas: int,
    cfg: ThroughputConfig,
    limit: float,
    api_url: str,
    stack: Procs,
    echo: Any = None,
) -> list[RateRow]:
    """Run ``n_replicas`` replicas through every rate of ``cfg`` (module docstring)."""
    run_id = uuid.uuid4().hex[:6]
    pool = f"tput{n_replicas}-{run_id}"
    prefix = f"tput-{run_id}:"
    keys = PoolKeys(pool)
    ch = Channels(prefix, pool)
    r = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=_SLOW_S)
    names = [f"replica-{n_replicas}-{i + 1}" for i in range(n_replicas)]
    rows: list[RateRow] = []
    try:
        ports = []
        procs = []
        for name in names:
            port = free_port()
            ports.append(port)
            args = [
                "--pool", pool, "--channel-prefix", prefix, "--log-level", "warning", "run",
                "--node-api-url", api_url, "--metrics-port", str(port),
                "--metrics-host", "127.0.0.1", "--replica-id", f"{name}-{run_id}",
                "--policy", "static", "--min-spare", "0", "--keep-alive", "3600",
                "--history-ttl", str(cfg.history_ttl_s),
            ]  # fmt: skip
            procs.append(stack.start(name, args, _env(redis_url)))
        for port in ports:
            _wait_http(f"http://127.0.0.1:{port}/healthz")
        _seed_ready_nodes(redis_url, pool, prefix, 50)
        for step, rate in enumerate(cfg.rates):
            before = int(r.hget(keys.stats, "activity") or 0)
            cpu0 = [_cpu_ticks(p.pid) for p in procs]
            rcpu0 = _redis_cpu_s(r)
            wall0 = time.monotonic()
            fl = _child(
                "flood",
                {"url": redis_url, "channel": ch.activity, "rate": rate,
                 "duration_s": cfg.duration_s, "seed": step},
            )  # fmt: skip
            pr = _child(
                "probe",
                {"url": redis_url, "prefix": prefix, "rate": cfg.connect_rate,
                 "duration_s": cfg.duration_s, "tag": f"{n_replicas}-{step}"},
            )  # fmt: skip
            fres = _collect(fl, cfg.duration_s + 120)
            flood_end = time.monotonic()
            published = int(fres["published"])
            applied, drain = _drain(r, keys, before, published)
            pres = _collect(pr, cfg.duration_s + 60)
            wall = time.monotonic() - wall0
            tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            cpu = []
            cpu_s = 0.0
            for p, c0 in zip(procs, cpu0, strict=True):
                c1 = _cpu_ticks(p.pid)
                if c0 is not None and c1 is not None:
                    cpu.append(round(100.0 * (c1 - c0) / tick / wall, 1))
                    cpu_s += (c1 - c0) / tick
            rcpu = 100.0 * (_redis_cpu_s(r) - rcpu0) / wall
            span = float(fres["seconds"]) + (
                drain if drain is not None else time.monotonic() - flood_end
            )
            per_s = applied / span if span > 0 else 0.0
            lat = [float(x) for x in pres["latencies_ms"]]
            row = RateRow(
                replicas=n_replicas, rate=rate, published=published,
                publish_s=round(float(fres["seconds"]), 3), applied=applied,
                lost=published - applied,
                drain_s=None if drain is None else round(drain, 3),
                applied_per_s=round(per_s, 1), ratio=round(per_s / limit, 4) if limit else 0.0,
                cpu_pct=cpu,
                cpu_us_per_event=round(1e6 * cpu_s / applied, 1) if cpu and applied else None,
                redis_cpu_pct=round(rcpu, 1), connects=int(pres["connects"]),
                assigned=len(lat), p50_ms=_round(_pct(lat, 50)), p99_ms=_round(_pct(lat, 99)),
                max_ms=_round(max(lat) if lat else None),
            )  # fmt: skip
            rows.append(row)
            if echo:
                echo(_format_rate(row))
            if any(p.poll() is not None for p in procs):
                raise click.ClickException(f"a replica exited early; logs in {stack.logdir}")
    finally:
        stack.stop_all(names)
        _wipe(r, keys)
        r.close()
    return rows


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


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


# -- scale ---------------------------------------------------------------------------------


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
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=_SLOW_S)
    client2 = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=_SLOW_S)
    coord = Coordinator(client, pool)
    keys = coord.keys
    sync = redis.Redis.from_url(redis_url, socket_timeout=_SLOW_S)
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
            tick_p90_ms=round(_pct(times, 90) or 0.0, 3),
            bytes_per_user=round((mem1 - mem0) / users, 1),
            key_bytes_per_user=per_key,
            known_bytes_per_user=round(usage / known, 1) if usage and known else None,
            known_left=known,
            left_after_history_ttl=left,
        )
    finally:
        _wipe(sync, keys)
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
            echo(_format_scale(row))
    return rows


# -- the whole run -------------------------------------------------------------------------


def run_throughput(redis_url: str, cfg: ThroughputConfig, echo: Any = None) -> ThroughputResult:
    """Measure the limit, the replica runs and the scale runs; evaluate the targets."""
    machine = machine_info(redis_url)
    limit = measure_limit(redis_url, cfg.limit_events)
    if echo:
        echo(_format_limit(limit))
    res = ThroughputResult(machine=machine, limit=limit)
    if "replicas" in cfg.parts:
        res.rates = _run_stack(redis_url, cfg, limit.limit, echo)
    if "scale" in cfg.parts:
        res.scale = measure_scale(redis_url, cfg.sizes, cfg.ticks, cfg.history_ttl_s, echo)
    res.targets = evaluate_targets(res)
    return res


def _run_stack(redis_url: str, cfg: ThroughputConfig, limit: float, echo: Any) -> list[RateRow]:
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


def evaluate_targets(res: ThroughputResult) -> dict[str, Any]:
    """The issue's targets against the figures (see README, Throughput and scale)."""
    out: dict[str, Any] = {}
    one = [r for r in res.rates if r.replicas == 1 and r.lost == 0 and r.drain_s is not None]
    best = max((r.applied_per_s for r in one if r.drain_s is not None and r.drain_s <= 1.0),
               default=0.0)  # fmt: skip
    out["one_replica_zero_loss_events_per_s"] = best
    out["one_replica_ratio"] = round(best / res.limit.limit, 4) if res.limit.limit else 0.0
    out["one_replica_25pct"] = out["one_replica_ratio"] >= 0.25
    two = [r for r in res.rates if r.replicas == 2]
    out["two_replicas_lost"] = sum(r.lost for r in two)
    out["two_replicas_no_loss"] = bool(two) and out["two_replicas_lost"] == 0
    near = [r for r in res.rates if r.rate >= 10_000 and r.p99_ms is not None]
    at10k = [r for r in near if r.rate == min(x.rate for x in near)] if near else []
    out["p99_ms_at_10k"] = {r.replicas: r.p99_ms for r in at10k}
    out["p99_le_5ms_at_10k"] = bool(at10k) and all((r.p99_ms or 1e9) <= 5.0 for r in at10k)
    if len(res.scale) >= 2:
        small, big = res.scale[0], res.scale[-1]
        out["tick_ratio_largest_smallest"] = round(big.tick_ms / small.tick_ms, 3)
        out["tick_le_2x"] = big.tick_ms <= 2 * small.tick_ms
    out["max_bytes_per_active_user"] = max((s.bytes_per_user for s in res.scale), default=None)
    out["memory_le_300"] = all(s.bytes_per_user <= 300 for s in res.scale)
    out["history_bounded"] = all(s.left_after_history_ttl == 0 for s in res.scale)
    return out


# -- output --------------------------------------------------------------------------------


def _format_limit(lim: LimitResult) -> str:
    bench = f"{lim.redis_benchmark:,.0f}/s" if lim.redis_benchmark else "not installed"
    return (
        f"limit: recordActivity pipelined from redis-py {lim.redis_py:,.0f}/s, "
        f"redis-benchmark {bench}; limit {lim.limit:,.0f}/s"
    )


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _format_rate(r: RateRow) -> str:
    drain = "never" if r.drain_s is None else f"{r.drain_s:.2f}s"
    return (
        f"{r.replicas} repl  rate {r.rate:>6,}/s  published {r.published:>7,}  applied "
        f"{r.applied:>7,}  lost {r.lost:>6,}  drain {drain:>6s}  {r.applied_per_s:>8,.0f}/s "
        f"({r.ratio * 100:5.1f}% of limit)  cpu {'+'.join(f'{c:.0f}' for c in r.cpu_pct)}% "
        f"({r.cpu_us_per_event or 0:.0f} us/event) "
        f"redis {r.redis_cpu_pct or 0:.0f}%  connect->assigned p50 {_ms(r.p50_ms)} p99 "
        f"{_ms(r.p99_ms)} max {_ms(r.max_ms)} ms ({r.assigned}/{r.connects})"
    )


def _format_scale(s: ScaleRow) -> str:
    keys = ", ".join(f"{k} {v:.0f}" for k, v in s.key_bytes_per_user.items())
    known = "-" if s.known_bytes_per_user is None else f"{s.known_bytes_per_user:.0f}"
    return (
        f"scale {s.users:>9,} users  seeded in {s.seed_s:.1f}s  tick {s.tick_ms:.2f} ms "
        f"(p90 {s.tick_p90_ms:.2f})  memory {s.bytes_per_user:.0f} B/active user ({keys})  "
        f"quiet: {s.known_left:,} records, {known} B/known user; after history TTL "
        f"{s.left_after_history_ttl:,}"
    )


def format_result(res: ThroughputResult) -> str:
    """The whole result as a text table."""
    m = res.machine
    lines = [
        f"machine: {m['nproc']} cores, {m['cpu_model']}, redis {m['redis_version']}, "
        f"load {m['loadavg_at_start']}",
        _format_limit(res.limit),
        *(_format_rate(r) for r in res.rates),
        *(_format_scale(s) for s in res.scale),
        "targets: " + json.dumps(res.targets),
    ]
    return "\n".join(lines)


def _parts(text: str) -> tuple[str, ...]:
    vals = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = set(vals) - {"replicas", "scale"}
    if bad:
        raise click.BadParameter(
            f"unknown parts {sorted(bad)}: replicas, scale", param_hint="--parts"
        )
    return vals


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(float(x)) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise click.BadParameter(f"{text!r}: expected comma-separated numbers") from e
    if not vals or min(vals) <= 0:
        raise click.BadParameter(f"{text!r}: expected positive numbers")
    return vals


@click.command("throughput")
@click.option("--quick", is_flag=True, help="Small rates, sizes and durations (a test).")
@click.option("--rates", default=None, help="Events/s to publish, comma-separated.")
@click.option("--duration", type=float, default=None, help="Seconds of flood per rate.")
@click.option("--replicas", "replica_counts", default=None, help="Replica counts, e.g. 1,2.")
@click.option("--sizes", default=None, help="Active users of the scale runs, e.g. 1000,1e6.")
@click.option(
    "--parts",
    default="replicas,scale",
    show_default=True,
    help="What to run besides the limit: replicas, scale (comma-separated).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--redis-url", default=None, help="Use this Redis instead of a private one.")
def command(
    quick: bool, rates: str | None, duration: float | None, replica_counts: str | None,
    sizes: str | None, parts: str, as_json: bool, redis_url: str | None,
) -> None:  # fmt: skip
    """Ingest rate and connect latency of 1 and 2 replicas against Redis's own limit;
    tick cost and memory per user at 1k, 100k and 1M users."""
    base = ThroughputConfig()
    if quick:
        base = ThroughputConfig(
            rates=(500, 2000), duration_s=2.0, sizes=(1_000, 10_000), limit_events=20_000,
            ticks=10,
        )  # fmt: skip
    cfg = ThroughputConfig(
        rates=_ints(rates) if rates else base.rates,
        duration_s=duration if duration and duration > 0 else base.duration_s,
        replicas=_ints(replica_counts) if replica_counts else base.replicas,
        connect_rate=base.connect_rate,
        sizes=_ints(sizes) if sizes else base.sizes,
        limit_events=base.limit_events,
        ticks=base.ticks,
        history_ttl_s=base.history_ttl_s,
        parts=_parts(parts),
    )
    logging.getLogger("provisioner").setLevel(logging.WARNING)
    echo = None if as_json else click.echo
    with private_redis(redis_url) as url:
        res = run_throughput(url, cfg, echo)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=1))
    else:
        click.echo("targets: " + json.dumps(res.targets))


if __name__ == "__main__":  # the flood and probe children
    _child_main(sys.argv[1:])
