"""Prometheus metrics and the ``/healthz`` probe of a worker replica.

One :class:`Metrics` per process, on its own ``CollectorRegistry`` (so tests can
make several).  :func:`serve_metrics` serves ``/metrics`` (text exposition) and
``/healthz`` (200 when Redis answers and the subscription is live, else 503).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from provisioner.core.errors import ListenError

__all__ = ["Metrics", "serve_metrics"]


class Metrics:
    """The replica's metrics (names prefixed ``provisioner_``), declared by family in
    the order ``/metrics`` lists them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._declare_messages()
        self._declare_subscription()
        self._declare_leader()
        self._declare_state()
        self.batch_size = Histogram(
            "provisioner_ingest_batch_messages",
            "Messages applied per ingest pipeline (what was buffered on the subscription)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )

    def _declare_messages(self) -> None:
        """Inbound messages: by outcome, rejected ones, and connects served or not."""
        r = self.registry
        self.messages = Counter(
            "provisioner_messages",
            "Inbound messages by channel and outcome (applied, stale, duplicate, bad, ...)",
            ["channel", "outcome"],
            registry=r,
        )
        self.bad_input = Counter(
            "provisioner_bad_input", "Rejected inbound messages by kind", ["kind"], registry=r
        )
        self.hits = Counter("provisioner_hits", "Connects served from the warm pool", registry=r)
        self.misses = Counter("provisioner_misses", "Connects put on the waitlist", registry=r)

    def _declare_subscription(self) -> None:
        """The subscription and the shared sequence's markers."""
        r = self.registry
        self.reconnects = Counter(
            "provisioner_redis_reconnects", "Subscription (re)connects after a failure", registry=r
        )
        self.unnamed = Counter(
            "provisioner_unnamed_messages",
            "Messages dropped before the first marker after a (re)subscribe",
            registry=r,
        )
        self.bad_markers = Counter(
            "provisioner_bad_markers",
            "Marker-channel messages ignored (bad tag, malformed, out of range, old)",
            registry=r,
        )
        self.pool_resets = Counter(
            "provisioner_pool_resets",
            "Times this replica found the pool's marker counter missing, unreadable or "
            "below the sequence already used, and raised it (the pool's keys deleted, or "
            "Redis restarted without persistence)",
            registry=r,
        )
        self.gap_markers = Counter(
            "provisioner_subscription_gap_markers",
            "Markers missed while resubscribing (each ~ one marker interval of lost messages)",
            registry=r,
        )

    def _declare_leader(self) -> None:
        """The leader's ticks, its Node API calls, fencing and the caps."""
        r = self.registry
        self.ticks_skipped = Counter(
            "provisioner_leader_ticks_skipped",
            "Leader ticks whose decision needed no write (applyDecision not called)",
            registry=r,
        )
        self.node_api_calls = Counter(
            "provisioner_node_api_calls",
            "Node API calls by verb and outcome",
            ["verb", "outcome"],
            registry=r,
        )
        self.fenced = Counter(
            "provisioner_fenced",
            "Leader writes refused by the fencing token (this replica had lost the lease)",
            registry=r,
        )
        self.oom_retries = Counter(
            "provisioner_oom_retries",
            "Batches of messages retried because Redis refused writes at maxmemory (OOM)",
            registry=r,
        )
        self.lease_conflicts = Counter(
            "provisioner_lease_conflicts",
            "Lease rounds that found the lease held by another process with this replica's "
            "id (replica ids must be unique)",
            registry=r,
        )
        self.boots_withheld = Counter(
            "provisioner_boots_withheld",
            "Creates the --max-nodes cap withheld, summed over leader ticks (a boot still "
            "withheld on the next tick counts again)",
            registry=r,
        )
        self.clock_skew = Gauge(
            "provisioner_clock_skew_seconds",
            "This replica's clock less Redis's, seconds (measured when --max-clock-skew is set)",
            registry=r,
        )
        self.max_nodes = Gauge(
            "provisioner_max_nodes",
            "The --max-nodes cap on nodes that cost (+Inf: no cap)",
            registry=r,
        )
        self.min_ready = Gauge(
            "provisioner_min_ready", "The --min-ready floor of spare nodes", registry=r
        )

    def _declare_state(self) -> None:
        """Gauges of the pool and of this replica as last seen."""
        r = self.registry
        self.pool = Gauge("provisioner_pool_nodes", "Nodes by state", ["state"], registry=r)
        self.waiting = Gauge("provisioner_waiting_users", "Users on the waitlist", registry=r)
        self.active = Gauge("provisioner_active_users", "Users in the active set", registry=r)
        self.target = Gauge("provisioner_target_spare", "Policy target: spare nodes", registry=r)
        self.boot_time = Gauge(
            "provisioner_boot_time_seconds", "Learned boot time (EWMA), seconds", registry=r
        )
        self.lease_held = Gauge(
            "provisioner_lease_held", "1 while this replica holds the leader lease", registry=r
        )
        self.subscribed = Gauge(
            "provisioner_subscribed", "1 while the Pub/Sub subscription is live", registry=r
        )

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


async def serve_metrics(
    metrics: Metrics, host: str, port: int, healthy: Callable[[], Awaitable[tuple[bool, str]]]
) -> web.AppRunner:
    """Start the metrics/health HTTP server; returns its runner (call ``cleanup()``).

    Args:
        metrics: what ``/metrics`` serves.
        host, port: where to listen.
        healthy: coroutine answering ``(ok, reason)`` for ``/healthz``.

    Raises:
        ListenError: it cannot listen on ``host:port`` (the message says why).
    """

    async def metrics_h(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    async def health_h(_: web.Request) -> web.Response:
        ok, reason = await healthy()
        return web.Response(status=200 if ok else 503, text=reason + "\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics_h)
    app.router.add_get("/healthz", health_h)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise ListenError(f"cannot serve /metrics on {host}:{port}: {e.strerror or e}") from e
    return runner
