"""What ``bench throughput`` reports: the result records, the machine they were measured
on, the targets they are held to (docs/benchmarks.md#throughput) and the text lines."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from provisioner.core.logutil import plural

__all__ = [
    "LimitResult",
    "RateRow",
    "ScaleRow",
    "ThroughputResult",
    "evaluate_targets",
    "format_limit",
    "format_rate",
    "format_result",
    "format_scale",
    "format_targets",
    "machine_info",
]


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


def evaluate_targets(res: ThroughputResult) -> dict[str, Any]:
    """The targets against the figures (docs/benchmarks.md#throughput).

    A target the run did not cover is None, not a failure: ``one_replica_25pct`` when no
    rate of one replica reached a quarter of the limit (and none met it), the two-replica
    ones without a two-replica run, the latency ones without a rate of 10,000/s or more
    (``--quick`` runs 500 and 2,000/s), the tick ratio with fewer than two scale sizes, the
    memory and history ones without the scale part.

    Returns:
        A JSON-ready dict: each target's figure and whether it is met (None: not
        measured).
    """
    out: dict[str, Any] = {}
    limit = res.limit.limit
    one = [r for r in res.rates if r.replicas == 1]
    best = max((r.applied_per_s for r in one
                if r.lost == 0 and r.drain_s is not None and r.drain_s <= 1.0),
               default=0.0)  # fmt: skip
    ratio = (round(best / limit, 4) if limit else 0.0) if one else None
    out["one_replica_zero_loss_events_per_s"] = best if one else None
    out["one_replica_ratio"] = ratio
    if ratio is not None and ratio >= 0.25:
        out["one_replica_25pct"] = True
    else:  # missed only when one replica was offered a rate that could have met it
        out["one_replica_25pct"] = False if any(r.rate >= 0.25 * limit for r in one) else None
    two = [r for r in res.rates if r.replicas == 2]
    out["two_replicas_lost"] = sum(r.lost for r in two) if two else None
    out["two_replicas_no_loss"] = out["two_replicas_lost"] == 0 if two else None
    near = [r for r in res.rates if r.rate >= 10_000]
    at10k = [r for r in near if r.rate == min(x.rate for x in near)]
    out["p99_ms_at_10k"] = {r.replicas: r.p99_ms for r in at10k} or None
    out["p99_le_5ms_at_10k"] = (
        all(r.p99_ms is not None and r.p99_ms <= 5.0 for r in at10k) if at10k else None
    )
    out["tick_ratio_largest_smallest"] = out["tick_le_2x"] = None
    if len(res.scale) >= 2:
        small, big = res.scale[0], res.scale[-1]
        out["tick_ratio_largest_smallest"] = round(big.tick_ms / small.tick_ms, 3)
        out["tick_le_2x"] = big.tick_ms <= 2 * small.tick_ms
    out["max_bytes_per_active_user"] = max((s.bytes_per_user for s in res.scale), default=None)
    scaled = bool(res.scale)
    out["memory_le_300"] = all(s.bytes_per_user <= 300 for s in res.scale) if scaled else None
    out["history_bounded"] = (
        all(s.left_after_history_ttl == 0 for s in res.scale) if scaled else None
    )
    return out


def format_targets(targets: dict[str, Any]) -> str:
    """The targets as text, one a line: ``yes``/``no`` for a target met or missed, ``not
    measured`` for one the run did not cover (None in the JSON)."""

    def text(v: Any) -> str:
        if v is None:
            return "not measured"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return json.dumps(v)

    return "\n".join(["targets:", *(f"  {k}: {text(v)}" for k, v in targets.items())])


def format_limit(lim: LimitResult) -> str:
    """The limit as one line of text."""
    bench = f"{lim.redis_benchmark:,.0f}/s" if lim.redis_benchmark else "not installed"
    return (
        f"limit: recordActivity pipelined from redis-py {lim.redis_py:,.0f}/s, "
        f"redis-benchmark {bench}; limit {lim.limit:,.0f}/s"
    )


def _ms(x: float | None) -> str:
    """Milliseconds with one decimal, ``-`` for None."""
    return "-" if x is None else f"{x:.1f}"


def format_rate(r: RateRow) -> str:
    """One (replicas, rate) step as one line of text."""
    drain = "never" if r.drain_s is None else f"{r.drain_s:.2f}s"
    return (
        f"{r.replicas} repl  rate {r.rate:>6,}/s  published {r.published:>7,}  applied "
        f"{r.applied:>7,}  lost {r.lost:>6,}  drain {drain:>6s}  {r.applied_per_s:>8,.0f}/s "
        f"({r.ratio * 100:5.1f}% of limit)  cpu {'+'.join(f'{c:.0f}' for c in r.cpu_pct)}% "
        f"({r.cpu_us_per_event or 0:.0f} us/event) "
        f"redis {r.redis_cpu_pct or 0:.0f}%  connect->assigned p50 {_ms(r.p50_ms)} p99 "
        f"{_ms(r.p99_ms)} max {_ms(r.max_ms)} ms ({r.assigned}/{r.connects})"
    )


def format_scale(s: ScaleRow) -> str:
    """One scale size as one line of text."""
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
        f"machine: {plural(m['nproc'] or 1, 'core')}, {m['cpu_model']}, "
        f"redis {m['redis_version']}, load {m['loadavg_at_start']}",
        format_limit(res.limit),
        *(format_rate(r) for r in res.rates),
        *(format_scale(s) for s in res.scale),
        format_targets(res.targets),
    ]
    return "\n".join(lines)
