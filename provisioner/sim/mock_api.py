"""Emulated Node Management REST API: the cloud's node manager, over real HTTP and Redis.

This is part of the product (demos, benchmarks, end-to-end tests), not a test double: it
speaks exactly the external contract the provisioner integrates with, and emulates the
real world's failures on demand.

Contract (see ``docs/design.md#1``):

* ``POST /api/nodes`` -> ``202 {"id": "node-<prefix>-<n>"}``; then ``{"node_id", "status":
  "booting"}`` on the ``node:status`` channel at once and, after a boot delay, ``ready``.
* ``DELETE /api/nodes/{node_id}`` -> ``202 {}``; then ``terminated`` after a short delay.
  An unknown or already terminated node gives ``404 {"error": ...}``.

Only the mock serves the ledger and the admin endpoints (the scorecard and tests read them,
the provisioner never does):

* ``GET /api/ledger`` -> ``{"now_ms", "nodes": [...]}``, every node ever created, with
  wall-clock unix milliseconds of creation, ready, delete request and termination.
* ``GET /api/nodes/{node_id}`` -> one ledger entry, or 404.
* ``GET /api/admin/config`` / ``PATCH /api/admin/config`` -> read or change the emulated
  reality (:class:`MockConfig`) at run time.
* ``GET /healthz`` -> ``ok``.

Every error answer is JSON ``{"error": "<message>"}``.  Status messages are published in
the order of the ledger's transitions through one publisher task, so a node's ``booting``,
``ready`` and ``terminated`` never overtake each other.

Run it with ``python -m provisioner.sim.mock_api --port 8099`` or ``provisioner
mock-node-api`` (:mod:`provisioner.cli.mock_api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import random
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from aiohttp import web

__all__ = [
    "DEFAULT_REDIS_URL",
    "STATUS_CHANNEL",
    "ConfigError",
    "MockConfig",
    "MockNodeApi",
    "NodeRecord",
    "serve",
]

logger = logging.getLogger("provisioner.sim.mock_api")

STATUS_CHANNEL: Final = "node:status"
"""Name of the node status channel, before any channel prefix."""

DEFAULT_REDIS_URL: Final = "redis://localhost:6379/0"

_SECONDS_PER_HOUR: Final = 3600.0
_MAX_PREFIX_LEN: Final = 256
_DRAIN_TIMEOUT_S: Final = 1.0

_PROBABILITY_FIELDS: Final = frozenset(
    {"slow_tail_p", "boot_fail_p", "lost_ready_p", "error_5xx_p", "timeout_after_create_p"}
)
_FLOAT_FIELDS: Final = frozenset(
    {
        "boot_min_s",
        "boot_max_s",
        "slow_tail_factor",
        "hang_s",
        "terminate_delay_s",
        "preempt_rate_per_node_hour",
        "time_scale",
    }
    | _PROBABILITY_FIELDS
)


class ConfigError(ValueError):
    """A :class:`MockConfig` value, or a change to it, is invalid (unknown field, wrong type,
    or out of range).  The message names the field."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class MockConfig:
    """The emulated reality of the node manager.  All durations are seconds of *emulated*
    time; every delay actually waited is divided by ``time_scale``.

    Attributes:
        boot_min_s: Lower bound of the uniform boot delay, seconds (>= 0).
        boot_max_s: Upper bound of the uniform boot delay, seconds (>= ``boot_min_s``).
        slow_tail_p: Probability (0..1) that a boot is slow: its delay is multiplied by
            ``slow_tail_factor``.
        slow_tail_factor: Multiplier (>= 1) of a slow boot's delay.
        boot_fail_p: Probability (0..1) that a boot ends in ``terminated`` instead of
            ``ready`` (ledger outcome ``boot_failed``).
        lost_ready_p: Probability (0..1) that the ``ready`` message is never published: the
            node is ready in the ledger (``ready_published`` false) but nobody is told.
        error_5xx_p: Probability (0..1) that a ``POST`` or ``DELETE`` answers 503 and does
            nothing.
        timeout_after_create_p: Probability (0..1) that a ``POST`` creates the node (and
            starts its boot) but answers only after ``hang_s``, so the client times out.
        hang_s: How long such a ``POST`` hangs before answering, seconds (>= 0).
        terminate_delay_s: Delay from an accepted ``DELETE`` to ``terminated``, seconds (>= 0).
        preempt_rate_per_node_hour: Rate (>= 0) at which a ready node is terminated without
            being asked, per node-hour of emulated time (exponential; outcome ``preempted``).
        time_scale: Speed of the emulated world (> 0): every delay is divided by it, so 5.0
            runs the world 5x faster.  Ledger times are always real wall-clock milliseconds.
        seed: Seed of the random generator for reproducible draws, or None for a random one.
            Node ids never depend on it (they stay unique per server run).
        channel_prefix: Prepended to the channel names, e.g. ``"eu-a100:"`` gives
            ``"eu-a100:node:status"`` (multi-pool deployments); empty by default.

    Raises:
        ConfigError: On construction, when a field has a wrong type or is out of range.
    """

    boot_min_s: float = 20.0
    boot_max_s: float = 40.0
    slow_tail_p: float = 0.0
    slow_tail_factor: float = 3.0
    boot_fail_p: float = 0.0
    lost_ready_p: float = 0.0
    error_5xx_p: float = 0.0
    timeout_after_create_p: float = 0.0
    hang_s: float = 30.0
    terminate_delay_s: float = 0.2
    preempt_rate_per_node_hour: float = 0.0
    time_scale: float = 1.0
    seed: int | None = None
    channel_prefix: str = ""

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if not _is_number(value):
                raise ConfigError(f"{name} must be a number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in _PROBABILITY_FIELDS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1]")
        for name in ("boot_min_s", "hang_s", "terminate_delay_s", "preempt_rate_per_node_hour"):
            if getattr(self, name) < 0.0:
                raise ConfigError(f"{name} must be >= 0")
        if self.boot_max_s < self.boot_min_s:
            raise ConfigError(
                f"boot_max_s ({self.boot_max_s}) must be >= boot_min_s ({self.boot_min_s})"
            )
        if self.slow_tail_factor < 1.0:
            raise ConfigError("slow_tail_factor must be >= 1")
        if self.time_scale <= 0.0:
            raise ConfigError("time_scale must be > 0")
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ConfigError(f"seed must be an integer or null, got {type(self.seed).__name__}")
        if not isinstance(self.channel_prefix, str):
            raise ConfigError("channel_prefix must be a string")
        if len(self.channel_prefix) > _MAX_PREFIX_LEN:
            raise ConfigError(f"channel_prefix must be at most {_MAX_PREFIX_LEN} characters")

    @property
    def status_channel(self) -> str:
        """The channel node status messages are published on (prefix included)."""
        return self.channel_prefix + STATUS_CHANNEL

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-ready dict (field name -> value)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def updated(self, changes: Mapping[str, object]) -> MockConfig:
        """Return a copy with some fields changed, validated as strictly as JSON input.

        Args:
            changes: Field name -> new value.  Numbers may be int or float (not bool);
                ``seed`` an int or None; ``channel_prefix`` a str.

        Returns:
            The new configuration (this one is unchanged).

        Raises:
            ConfigError: On an unknown field, a wrong type or an out-of-range value.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(str(k) for k in changes if k not in known)
        if unknown:
            raise ConfigError(
                f"unknown config field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for name, value in changes.items():
            if name in _FLOAT_FIELDS and not _is_number(value):
                raise ConfigError(f"{name} must be a number, got {type(value).__name__}")
            if (
                name == "seed"
                and value is not None
                and (not isinstance(value, int) or isinstance(value, bool))
            ):
                raise ConfigError(f"seed must be an integer or null, got {type(value).__name__}")
            if name == "channel_prefix" and not isinstance(value, str):
                raise ConfigError(f"channel_prefix must be a string, got {type(value).__name__}")
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(slots=True)
class NodeRecord:
    """One node in the ledger.  Times are wall-clock unix milliseconds.

    Attributes:
        id: The id the API returned for it.
        created_ms: When the ``POST`` created it.
        ready_ms: When it became ready, or None if it never did.
        delete_ms: When a ``DELETE`` of it was accepted, or None.
        terminated_ms: When it was terminated, or None while it is alive.
        status: ``booting``, ``ready`` or ``terminated``.
        outcome: ``alive``; ``deleted`` from the accepted ``DELETE`` on (the status turns
            ``terminated`` after the terminate delay); ``boot_failed``; or ``preempted``.
        ready_published: Whether the ``ready`` message was published (false for a lost
            ``ready``, or when publishing to Redis failed).
    """

    id: str
    created_ms: int
    ready_ms: int | None = None
    delete_ms: int | None = None
    terminated_ms: int | None = None
    status: str = "booting"
    outcome: str = "alive"
    ready_published: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the ledger entry as a JSON-ready dict (the fields above)."""
        return dataclasses.asdict(self)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _json(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_compact)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class MockNodeApi:
    """The emulated node manager: configuration, ledger, Redis publisher and random draws.

    Build the aiohttp application with :meth:`make_app` (one application per instance), or
    run it on a port with :meth:`running`.  All state lives in the event loop that runs the
    application; it is not thread-safe.

    Args:
        config: The emulated reality; defaults to :class:`MockConfig` defaults.
        redis_url: Where to publish node status messages.
        clock_ms: Wall clock in unix milliseconds, for the ledger (injectable for tests).
    """

    def __init__(
        self,
        config: MockConfig | None = None,
        redis_url: str = DEFAULT_REDIS_URL,
        *,
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self._config = config if config is not None else MockConfig()
        self._redis_url = redis_url
        self._clock_ms = clock_ms
        self._rng = random.Random(self._config.seed)
        self._id_prefix = secrets.token_hex(2)
        self._counter = 0
        self._nodes: dict[str, NodeRecord] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._outbox: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None
        self._redis: aioredis.Redis | None = None
        self._closing = asyncio.Event()

    # ------------------------------------------------------------------ public state

    @property
    def config(self) -> MockConfig:
        """The current configuration."""
        return self._config

    def update_config(self, changes: Mapping[str, object]) -> MockConfig:
        """Change some configuration fields at run time.

        New values apply to draws made from now on (a node already booting keeps its boot
        delay; a new ``channel_prefix`` applies to messages published from now on).
        Changing ``seed`` re-seeds the generator; changing the preemption rate or
        ``time_scale`` redraws the preemption time of every ready node (exponential times
        are memoryless, so this is exact).

        Args:
            changes: Field name -> new value, as in :meth:`MockConfig.updated`.

        Returns:
            The new configuration.

        Raises:
            ConfigError: On an unknown field, a wrong type or an out-of-range value.
        """
        old = self._config
        new = old.updated(changes)
        self._config = new
        if "seed" in changes:
            self._rng = random.Random(new.seed)
        if (
            old.preempt_rate_per_node_hour != new.preempt_rate_per_node_hour
            or old.time_scale != new.time_scale
        ):
            for node in self._nodes.values():
                if node.status == "ready" and node.delete_ms is None:
                    self._cancel_timer(node.id)
                    self._schedule_preemption(node)
        logger.info("config changed: %s", _compact(changes))
        return new

    def ledger(self) -> dict[str, Any]:
        """Return the ledger: ``{"now_ms": <unix ms>, "nodes": [entry, ...]}`` in creation
        order, each entry as :meth:`NodeRecord.to_json`."""
        return {
            "now_ms": self._clock_ms(),
            "nodes": [node.to_json() for node in self._nodes.values()],
        }

    def node(self, node_id: str) -> NodeRecord | None:
        """Return the ledger record of one node, or None if no such node was created."""
        return self._nodes.get(node_id)

    # ------------------------------------------------------------------ application

    def make_app(self) -> web.Application:
        """Build the aiohttp application serving the API, the ledger and the admin routes.

        Its startup connects the Redis client and starts the publisher; its shutdown
        releases hanging ``POST``s, cancels every pending timer and flushes queued status
        messages (for up to one second); its cleanup closes the Redis client.
        """
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/api/nodes", self._create_node)
        app.router.add_get("/api/nodes/{node_id}", self._get_node)
        app.router.add_delete("/api/nodes/{node_id}", self._delete_node)
        app.router.add_get("/api/ledger", self._get_ledger)
        app.router.add_get("/api/admin/config", self._get_config)
        app.router.add_patch("/api/admin/config", self._patch_config)
        app.router.add_get("/healthz", self._healthz)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(self._on_cleanup)
        return app

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve the application on ``host:port`` for the duration of the ``async with``.

        Args:
            host: Interface to bind.
            port: TCP port; 0 picks a free one.

        Yields:
            The base URL, e.g. ``http://127.0.0.1:43121``.
        """
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound_host, bound_port = runner.addresses[0][:2]
            url = f"http://{bound_host}:{bound_port}"
            logger.info(
                "mock node API listening on %s (channel %s)", url, self.config.status_channel
            )
            yield url
        finally:
            await runner.cleanup()

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started = time.perf_counter()
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            response = _error(
                exc.status, f"{exc.reason}: {request.method} {_short(request.path)}", headers
            )
        except Exception:
            logger.exception("unexpected error on %s %s", request.method, _short(request.path))
            response = _error(500, "internal error in the mock node API")
        logger.debug(
            "%s %s -> %d (%.1f ms)",
            request.method,
            _short(request.path),
            response.status,
            (time.perf_counter() - started) * 1000.0,
        )
        return response

    # ------------------------------------------------------------------ lifecycle hooks

    async def _on_startup(self, app: web.Application) -> None:
        self._redis = aioredis.Redis.from_url(self._redis_url)
        try:
            await self._redis.ping()
        except (aioredis.RedisError, OSError) as exc:
            logger.warning("redis at %s not reachable yet: %s", self._redis_url, exc)
        self._publisher = asyncio.create_task(self._publish_loop(), name="mock-api-publisher")

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._timers.clear()
        if self._publisher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), _DRAIN_TIMEOUT_S)
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # ------------------------------------------------------------------ handlers

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _create_node(self, request: web.Request) -> web.StreamResponse:
        cfg = self._config
        if self._rng.random() < cfg.error_5xx_p:
            logger.info("POST /api/nodes: emulated 503")
            return _error(503, "emulated failure: service unavailable, nothing was created")
        self._counter += 1
        node = NodeRecord(id=f"node-{self._id_prefix}-{self._counter}", created_ms=self._clock_ms())
        self._nodes[node.id] = node
        delay_s = self._rng.uniform(cfg.boot_min_s, cfg.boot_max_s)
        slow = self._rng.random() < cfg.slow_tail_p
        if slow:
            delay_s *= cfg.slow_tail_factor
        fail = self._rng.random() < cfg.boot_fail_p
        lose_ready = self._rng.random() < cfg.lost_ready_p
        hang = self._rng.random() < cfg.timeout_after_create_p
        logger.info(
            "node %s created: boot %.2f s%s%s%s%s",
            node.id,
            delay_s,
            " (slow tail)" if slow else "",
            ", will fail" if fail else "",
            ", ready will be lost" if lose_ready else "",
            f", answer hangs {cfg.hang_s:.1f} s" if hang else "",
        )
        response = _json({"id": node.id}, status=202)
        if hang:
            self._start_boot(node, delay_s / cfg.time_scale, fail, lose_ready)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), cfg.hang_s / cfg.time_scale)
            return response
        # Answer first, then report ``booting``, as a real manager would.
        try:
            await response.prepare(request)
            await response.write_eof()
        except (ConnectionError, RuntimeError) as exc:
            logger.info("node %s: could not deliver the POST answer: %s", node.id, exc)
        finally:
            self._start_boot(node, delay_s / cfg.time_scale, fail, lose_ready)
        return response

    async def _delete_node(self, request: web.Request) -> web.Response:
        node_id = request.match_info["node_id"]
        if self._rng.random() < self._config.error_5xx_p:
            logger.info("DELETE %s: emulated 503", _short(node_id))
            return _error(503, "emulated failure: service unavailable, nothing was deleted")
        node = self._nodes.get(node_id)
        if node is None:
            return _error(404, f"no such node: {_short(node_id)}")
        if node.status == "terminated":
            return _error(404, f"node {node.id} is already terminated")
        if node.delete_ms is not None:
            return _json({}, status=202)  # already being terminated
        node.delete_ms = self._clock_ms()
        node.outcome = "deleted"
        self._cancel_timer(node.id)
        cfg = self._config
        logger.info("node %s delete accepted (was %s)", node.id, node.status)
        self._start_timer(node, self._terminate_after(node, cfg.terminate_delay_s / cfg.time_scale))
        return _json({}, status=202)

    async def _get_node(self, request: web.Request) -> web.Response:
        node = self._nodes.get(request.match_info["node_id"])
        if node is None:
            return _error(404, f"no such node: {_short(request.match_info['node_id'])}")
        return _json(node.to_json())

    async def _get_ledger(self, request: web.Request) -> web.Response:
        return _json(self.ledger())

    async def _get_config(self, request: web.Request) -> web.Response:
        return _json(self._config.to_dict())

    async def _patch_config(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            changes = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"body must be a JSON object: {exc}")
        if not isinstance(changes, dict):
            return _error(400, f"body must be a JSON object, got {type(changes).__name__}")
        try:
            new = self.update_config(changes)
        except ConfigError as exc:
            return _error(400, str(exc))
        return _json(new.to_dict())

    # ------------------------------------------------------------------ node lifecycle

    def _start_timer(self, node: NodeRecord, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"mock-api-timer-{node.id}")
        self._timers[node.id] = task
        self._tasks.add(task)
        task.add_done_callback(self._timer_done)

    def _timer_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("node timer failed", exc_info=task.exception())

    def _cancel_timer(self, node_id: str) -> None:
        task = self._timers.pop(node_id, None)
        if task is not None:
            task.cancel()

    def _start_boot(self, node: NodeRecord, wait_s: float, fail: bool, lose_ready: bool) -> None:
        self._emit(node.id, "booting")
        self._start_timer(node, self._boot_after(node, wait_s, fail, lose_ready))

    async def _boot_after(
        self, node: NodeRecord, wait_s: float, fail: bool, lose_ready: bool
    ) -> None:
        await asyncio.sleep(wait_s)
        # From here on nothing awaits, so a DELETE cannot interleave with the transition.
        self._timers.pop(node.id, None)
        if node.status != "booting" or node.delete_ms is not None:
            return
        now = self._clock_ms()
        if fail:
            node.status = "terminated"
            node.terminated_ms = now
            node.outcome = "boot_failed"
            logger.info("node %s boot failed after %d ms", node.id, now - node.created_ms)
            self._emit(node.id, "terminated")
            return
        node.status = "ready"
        node.ready_ms = now
        if lose_ready:
            logger.info("node %s ready after %d ms (message lost)", node.id, now - node.created_ms)
        else:
            node.ready_published = True
            logger.info("node %s ready after %d ms", node.id, now - node.created_ms)
            self._emit(node.id, "ready")
        self._schedule_preemption(node)

    def _schedule_preemption(self, node: NodeRecord) -> None:
        cfg = self._config
        if cfg.preempt_rate_per_node_hour <= 0.0:
            return
        wait_s = self._rng.expovariate(cfg.preempt_rate_per_node_hour / _SECONDS_PER_HOUR)
        self._start_timer(node, self._preempt_after(node, wait_s / cfg.time_scale))

    async def _preempt_after(self, node: NodeRecord, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        self._timers.pop(node.id, None)
        if node.status != "ready" or node.delete_ms is not None:
            return
        node.status = "terminated"
        node.terminated_ms = self._clock_ms()
        node.outcome = "preempted"
        logger.info("node %s preempted", node.id)
        self._emit(node.id, "terminated")

    async def _terminate_after(self, node: NodeRecord, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        self._timers.pop(node.id, None)
        if node.status == "terminated":
            return
        node.status = "terminated"
        node.terminated_ms = self._clock_ms()
        logger.info("node %s terminated on request", node.id)
        self._emit(node.id, "terminated")

    # ------------------------------------------------------------------ publishing

    def _emit(self, node_id: str, status: str) -> None:
        self._outbox.put_nowait((self._config.status_channel, node_id, status))

    async def _publish_loop(self) -> None:
        while True:
            channel, node_id, status = await self._outbox.get()
            try:
                payload = _compact({"node_id": node_id, "status": status})
                if self._redis is None:
                    raise aioredis.ConnectionError("redis client is closed")
                await self._redis.publish(channel, payload)
            except (aioredis.RedisError, OSError) as exc:
                logger.warning(
                    "could not publish %s for %s on %s: %s", status, node_id, channel, exc
                )
                node = self._nodes.get(node_id)
                if status == "ready" and node is not None:
                    node.ready_published = False
            finally:
                self._outbox.task_done()


async def serve(
    config: MockConfig,
    redis_url: str = DEFAULT_REDIS_URL,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> None:
    """Run the mock node API until cancelled, SIGTERM or SIGINT, then shut down cleanly.

    Args:
        config: The emulated reality.
        redis_url: Where to publish node status messages.
        host: Interface to bind.
        port: TCP port (0 picks a free one).
    """
    api = MockNodeApi(config, redis_url)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or not supported here
        installed.append(sig)
    try:
        async with api.running(host, port):
            await stop.wait()
            logger.info("signal received, shutting down")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


if __name__ == "__main__":  # the same command as ``provisioner mock-node-api``
    import importlib

    importlib.import_module("provisioner.cli.mock_api").command()
