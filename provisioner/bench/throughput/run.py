"""The whole ``bench throughput`` run: the limit, the replica runs and the scale runs (the
parts are described in :mod:`provisioner.bench.throughput`)."""

from __future__ import annotations

from typing import Any

from provisioner.bench.throughput.common import ThroughputConfig
from provisioner.bench.throughput.limit import measure_limit
from provisioner.bench.throughput.replicas import run_stack
from provisioner.bench.throughput.report import (
    ThroughputResult,
    evaluate_targets,
    format_limit,
    machine_info,
)
from provisioner.bench.throughput.scale import measure_scale

__all__ = ["run_throughput"]


def run_throughput(redis_url: str, cfg: ThroughputConfig, echo: Any = None) -> ThroughputResult:
    """Measure the limit, the replica runs and the scale runs; evaluate the targets."""
    machine = machine_info(redis_url)
    limit = measure_limit(redis_url, cfg.limit_events)
    if echo:
        echo(format_limit(limit))
    res = ThroughputResult(machine=machine, limit=limit)
    if "replicas" in cfg.parts:
        res.rates = run_stack(redis_url, cfg, limit.limit, echo)
    if "scale" in cfg.parts:
        res.scale = measure_scale(redis_url, cfg.sizes, cfg.ticks, cfg.history_ttl_s, echo)
    res.targets = evaluate_targets(res)
    return res
