"""What every part of ``bench throughput`` shares: its constants, its configuration and
a few small Redis helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from provisioner.core.keys import PoolKeys

__all__ = ["FLOOD_USERS", "SLOW_S", "T0_MS", "ThroughputConfig", "pct", "round_or_none", "wipe"]

#: Virtual time of the scale runs, unix ms.
T0_MS = 1_700_000_000_000
#: Users the flood and the limit draw from.
FLOOD_USERS = 10_000
#: Socket timeout of the benchmark's own clients, seconds (redis-py's default is 5 s; a
#: machine shared with other work can stall Redis for longer).
SLOW_S = 120.0


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


def pct(xs: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-100) of ``xs``; None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def round_or_none(x: float | None, nd: int = 2) -> float | None:
    """``round(x, nd)``, None for None."""
    return None if x is None else round(x, nd)


def wipe(r: redis.Redis, keys: PoolKeys) -> None:
    """Delete every key of the pool ``keys`` (UNLINK)."""
    for name in keys.all():
        r.unlink(name)
