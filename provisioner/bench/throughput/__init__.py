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

One module per job: :mod:`~provisioner.bench.throughput.limit` (the limit),
:mod:`~provisioner.bench.throughput.loadgen` (the flood and probe children, run as
``python -m provisioner.bench.throughput``), :mod:`~provisioner.bench.throughput.replicas`
(the replica runs), :mod:`~provisioner.bench.throughput.scale` (the scale runs),
:mod:`~provisioner.bench.throughput.report` (results, targets and output),
:mod:`~provisioner.bench.throughput.run` (the whole run) and
:mod:`~provisioner.bench.throughput.common` (constants and configuration); the command
is :mod:`provisioner.cli.bench_throughput`.

Figures vary from machine to machine (and with other load on a shared one): the ratios
to the limit are what to compare.
"""

from provisioner.bench.throughput.common import ThroughputConfig
from provisioner.bench.throughput.limit import measure_limit
from provisioner.bench.throughput.replicas import run_replicas
from provisioner.bench.throughput.report import (
    LimitResult,
    RateRow,
    ScaleRow,
    ThroughputResult,
    evaluate_targets,
    format_result,
    format_targets,
    machine_info,
)
from provisioner.bench.throughput.run import run_throughput
from provisioner.bench.throughput.scale import measure_scale

__all__ = [
    "LimitResult",
    "RateRow",
    "ScaleRow",
    "ThroughputConfig",
    "ThroughputResult",
    "evaluate_targets",
    "format_result",
    "format_targets",
    "machine_info",
    "measure_limit",
    "measure_scale",
    "run_replicas",
    "run_throughput",
]
