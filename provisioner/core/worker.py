"""``provisioner run``: one stateless worker replica (asyncio).

A replica subscribes, on **one** connection, to the marker channel and the four
inbound channels; names every message with the shared sequence
(:mod:`provisioner.core.sequencer`); validates it (:mod:`provisioner.core.messages`); and
applies it through one Lua script, which publishes ``user:assigned`` itself.  Any
number of replicas may run: each script applies a message once (per-user/per-node
message ids), whichever replica comes first.

Besides ingest, each replica runs: the marker timer (every ``marker_interval_s``),
a heartbeat, user expiry and node pruning (maintenance any replica may do), the
metrics server, and the :class:`provisioner.core.leader.Leader` loop, which scales only
while this replica holds the lease.

Failure handling: on a Redis error the subscription is dropped and re-made with
exponential backoff and full jitter (tenacity's ``wait_random_exponential``); scripts are
re-loaded on every (re)connect; messages are dropped until the next marker.  If no
marker arrives for ``marker_timeout_s`` although we publish them, a PING goes out on the
subscription; no answer within ``marker_timeout_s`` more and the connection is taken for
half-open and re-made (with the pooled command connections).  A stall that stopped every
replica's markers at once is answered, so it makes nobody resubscribe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, RedisError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_random_exponential,
)

from provisioner.core.clock import Clock, WallClock
from provisioner.core.coordinator import DEFAULT_USER_TTL_B, Coordinator
from provisioner.core.errors import Code, ScriptError, TaskFailed, raise_for_code
from provisioner.core.keys import Channels
from provisioner.core.leader import Leader, LeaderConfig
from provisioner.core.logutil import LogLimiter, plural
from provisioner.core.messages import (
    BadInput,
    decode_activity,
    decode_node_status,
    decode_user,
    truncate,
)
from provisioner.core.metrics import Metrics, serve_metrics
from provisioner.core.nodeapi import NodeApi, NodeApiConfig
from provisioner.core.scripts import Call
from provisioner.core.sequencer import Sequencer
from provisioner.policies.base import Policy
from provisioner.policies.registry import make_policy

__all__ = ["Worker", "WorkerConfig", "run_worker"]

log = logging.getLogger("provisioner.core.worker")

_PROBE = "provisioner-liveness-probe"


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of one replica (durations in seconds).

    Attributes:
        redis_url: ``redis://`` or ``rediss://`` URL (AUTH in the URL).
        node_api_url: base URL of the Node Management API.
        pool: pool name (the keys' hash tag).
        channel_prefix: prepended to every channel name.
        replica_id: unique id of this replica (host-pid-random by default).
        metrics_host, metrics_port: where ``/metrics`` and ``/healthz`` listen
            (port None: no server).
        marker_interval_s: period of the shared-sequence markers.
        marker_timeout_s: no marker for this long sends a PING on the subscription; no
            answer for as long again means it is dead (half-open).
        user_ttl_s: inactivity after which a user leaves the active set, seconds; None:
            ``user_ttl_b`` boot times (the learned mean boot time).
        user_ttl_b: the user TTL in boot times when ``user_ttl_s`` is None.
        history_ttl_s: a user record (what the policy keeps of a user's history, and the
            user's ordering record) untouched this long is deleted, unless the user is
            active, connected or waiting.
        health_check_interval_s: redis-py connection health-check period.
        socket_timeout_s: a Redis command unanswered this long fails (a half-open
            connection is dropped and re-made); redis-py before 8.0 waits forever by default.
        policy: policy name (see :func:`provisioner.policies.registry.make_policy`).
        policy_knobs: the policy's knobs.
        leader: lease and scaling timing.
        api_timeout_s: Node API request timeout.
        max_backoff_s: cap on the reconnect backoff.
        ingest_lag_s: sleep this long before applying each message: a deliberately
            lagging replica, for the replica-duplication tests only (it applies one
            message per round trip).
        max_batch: most buffered messages applied in one pipeline.
    """

    redis_url: str = "redis://localhost:6379/0"
    node_api_url: str = "http://localhost:8080"
    pool: str = "default"
    channel_prefix: str = ""
    replica_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = None
    marker_interval_s: float = 0.1
    marker_timeout_s: float = 3.0
    user_ttl_s: float | None = None
    user_ttl_b: float = DEFAULT_USER_TTL_B
    history_ttl_s: float = 7 * 86_400.0
    health_check_interval_s: float = 2.0
    socket_timeout_s: float = 3.0
    policy: str = "basestock"
    policy_knobs: dict[str, float] = field(default_factory=dict)
    leader: LeaderConfig = field(default_factory=LeaderConfig)
    api_timeout_s: float = 5.0
    max_backoff_s: float = 5.0
    ingest_lag_s: float = 0.0
    max_batch: int = 256


class Worker:
    """One replica.  ``await Worker(cfg).run(stop_event)``.

    Args:
        config: settings.
        clock: source of ``now_ms`` (wall clock live).
        policy: overrides ``config.policy`` (tests, benchmarks).
    """

    def __init__(
        self, config: WorkerConfig, clock: Clock | None = None, policy: Policy | None = None
    ) -> None:
        self.config = config
        self.clock = clock or WallClock()
        self.channels = Channels(prefix=config.channel_prefix, pool=config.pool)
        self.client = aioredis.Redis.from_url(
            config.redis_url,
            decode_responses=True,
            # A payload that is not UTF-8 must reach the validator (bad input "not_json"),
            # not raise UnicodeDecodeError out of get_message and end the ingest task.
            encoding_errors="surrogateescape",
            health_check_interval=config.health_check_interval_s,
            socket_connect_timeout=5.0,
            socket_timeout=config.socket_timeout_s,
            # TCP keep-alive; a unix socket's connection takes no such argument (redis-py
            # raised TypeError at every connect, and no replica on unix:// ever ingested)
            **({} if config.redis_url.startswith("unix:") else {"socket_keepalive": True}),
        )
        self.coord = Coordinator(
            self.client, config.pool, self.channels, default_boot_s=config.leader.default_boot_s
        )
        self.metrics = Metrics()
        self.policy = policy or make_policy(config.policy, **config.policy_knobs)
        self.seq = Sequencer()
        self.subscribed = False
        self.applied = 0
        self._last_marker = time.monotonic()
        self._limiter = LogLimiter(log)
        self._dispatch: dict[str, Callable[[str | bytes, int, int], Call]] = {
            self.channels.activity: self._activity_call,
            self.channels.connect: self._connect_call,
            self.channels.disconnect: self._disconnect_call,
            self.channels.node_status: self._status_call,
        }
        self.leader: Leader | None = None
        self._secret: str | None = None
        self._last_seq: int | None = None
        self._gap_from: int | None = None
        self._stop = asyncio.Event()  # the run's stop, once it runs

    # -- lifecycle ------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop cleanly and give up the lease."""
        self._stop = stop
        runner = None
        if self.config.metrics_port is not None:
            runner = await serve_metrics(
                self.metrics, self.config.metrics_host, self.config.metrics_port, self.health
            )
        api_cfg = NodeApiConfig(self.config.node_api_url, timeout_s=self.config.api_timeout_s)
        log.info(
            "replica %s starting: pool %s, redis %s, node api %s, policy %s",
            self.config.replica_id,
            self.config.pool,
            _redact(self.config.redis_url),
            self.config.node_api_url,
            self.policy.name,
        )
        try:
            async with NodeApi(api_cfg) as api:
                self.leader = Leader(
                    self.coord,
                    api,
                    self.policy,
                    self.clock,
                    self.config.replica_id,
                    self.config.leader,
                    self.metrics,
                )
                # before anything this replica writes carries its time
                with contextlib.suppress(RedisError, OSError):
                    await self.leader.check_clock()
                tasks = [
                    asyncio.create_task(self._ingest(stop), name="ingest"),
                    asyncio.create_task(self._markers(stop), name="markers"),
                    asyncio.create_task(self._maintenance(stop), name="maintenance"),
                    asyncio.create_task(self.leader.run(stop), name="leader"),
                ]
                failed = await self._supervise(tasks, stop)
                await asyncio.wait(tasks, timeout=10.0)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if failed is not None:
                    raise TaskFailed(failed)
        finally:
            if runner is not None:
                await runner.cleanup()
            await self.client.aclose()
            log.info("replica %s stopped", self.config.replica_id)

    @staticmethod
    async def _supervise(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> str | None:
        """Wait for ``stop``; a task that ends before it (an error its own handlers do not
        retry, e.g. a key of the wrong type) is logged and stops the replica, so it cannot
        run on half dead, holding the lease with ingest gone. Returns what failed, or None.
        """
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        for t in tasks:
            if t.done() and not stop.is_set():
                exc = t.exception()
                what = f"task {t.get_name()} ended: " + (
                    f"{type(exc).__name__}: {exc}" if exc else "returned"
                )
                log.critical("%s; stopping the replica", what, exc_info=exc)
                stop.set()
                return what
        return None

    async def health(self) -> tuple[bool, str]:
        """``/healthz``: Redis answers and the subscription is live."""
        try:
            await asyncio.wait_for(self.client.ping(), 2.0)
        except (RedisError, OSError, TimeoutError) as e:
            return False, f"redis down: {type(e).__name__}"
        if not self.subscribed:
            return False, "not subscribed"
        if self._clock_off():
            return False, "clock off Redis's (--max-clock-skew)"
        return True, "ok"

    # -- ingest -----------------------------------------------------------------------
    async def _ingest(self, stop: asyncio.Event) -> None:
        """Subscribe, consume; on failure resubscribe (connect retried with backoff)."""
        while not stop.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                async for attempt in AsyncRetrying(
                    wait=wait_random_exponential(multiplier=0.1, max=self.config.max_backoff_s),
                    retry=retry_if_exception_type((RedisError, OSError, TimeoutError)),
                    before_sleep=self._before_retry,
                    # a stop ends the retries: no backoff is waited out after SIGTERM
                    stop=lambda _state: stop.is_set(),
                    sleep=lambda s: _sleep_unless(stop, s),
                    reraise=True,
                ):
                    with attempt:
                        await self._subscribe(pubsub)
                await self._consume(pubsub, stop)
            except (RedisError, OSError, TimeoutError) as e:
                self.metrics.reconnects.inc()
                log.warning("subscription lost (%s: %s); resubscribing", type(e).__name__, e)
                # the command connections share its path (half-open, restart): drop them
                # too, so no timer waits out a dead socket's timeout on each of them
                with contextlib.suppress(Exception):  # a failed close must not end ingest
                    await self.client.connection_pool.disconnect()
                await asyncio.sleep(0.05)
            finally:
                self.subscribed = False
                self.metrics.subscribed.set(0)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _subscribe(self, pubsub: aioredis.client.PubSub) -> None:
        await pubsub.subscribe(*self.channels.inbound())
        await self.coord.runner.load_all()
        self._gap_from = self._last_seq
        self.seq.reset()
        self._secret = await self.coord.marker_secret()
        self.subscribed = True
        self.metrics.subscribed.set(1)
        self._last_marker = time.monotonic()
        log.info("subscribed to %s", ", ".join(self.channels.inbound()))
        await self._emit_marker(0)

    def _before_retry(self, state: RetryCallState) -> None:
        self.metrics.reconnects.inc()
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "redis unavailable (%s), attempt %d; retrying in %.2fs",
            exc,
            state.attempt_number,
            state.next_action.sleep if state.next_action else 0.0,
        )

    async def _consume(self, pubsub: aioredis.client.PubSub, stop: asyncio.Event) -> None:
        """Read the subscription in order; apply what is buffered in one pipeline.

        After one message arrives, every message already buffered on the connection
        (up to ``max_batch``) is taken with it and applied in one round trip
        (:meth:`handle_batch`): the same calls, in the same order, as one by one.
        """
        timeout = self.config.marker_timeout_s
        lag = self.config.ingest_lag_s
        max_batch = 1 if lag > 0 else self.config.max_batch
        probe_since: float | None = None
        while not stop.is_set():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if msg is None:
                quiet = time.monotonic() - self._last_marker
                if probe_since is not None and self._last_marker > probe_since:
                    probe_since = None  # a marker came meanwhile
                if quiet > timeout and probe_since is None:
                    # no marker: a dead connection, or only a stall of every replica (or of
                    # Redis) that stopped the markers; a PING on the subscription tells
                    # them apart, so a stall does not make every replica resubscribe (and
                    # drop messages until a marker) at once
                    await pubsub.ping(_PROBE)
                    probe_since = time.monotonic()
                elif probe_since is not None and time.monotonic() - probe_since > timeout:
                    raise TimeoutError(
                        f"no marker for {quiet:.1f}s and no answer to a PING: "
                        "subscription presumed dead"
                    )
                continue
            batch: list[tuple[str, str | bytes]] = []
            while True:
                if msg.get("type") == "message":
                    batch.append((str(msg["channel"]), msg["data"]))
                elif msg.get("type") == "pong":
                    self._last_marker = time.monotonic()  # the connection is alive
                    probe_since = None
                if len(batch) >= max_batch:
                    break
                # timeout 0: only what the connection already holds, never a wait
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
                if msg is None:
                    break
            if not batch:
                continue
            if lag > 0 and batch[0][0] != self.channels.marker:
                await asyncio.sleep(lag)
            self.metrics.batch_size.observe(len(batch))
            await self.handle_batch(batch)

    async def handle(self, channel: str, data: str | bytes) -> Code | None:
        """Apply one inbound message (in subscription order).

        Returns:
            The script's code, or None when the message was a marker, could not be
            named yet, was bad input or was refused.
        """
        return (await self.handle_batch([(channel, data)]))[0]

    async def handle_batch(self, msgs: Sequence[tuple[str, str | bytes]]) -> list[Code | None]:
        """Apply inbound messages, in subscription order, in one pipeline.

        Each message is named from the shared sequence in order (markers in the batch
        move the sequence where they stand), validated, and turned into its one script
        call (bad input into its ``countBadInput`` call); the calls run in one
        non-transactional pipeline, in order, so each user's and node's transitions keep
        publish order and each message has one effect, exactly as when applied one by
        one.

        Args:
            msgs: ``(channel, payload)`` pairs in the order received.

        Returns:
            One entry per message: the script's code, or None (marker, unnamed, bad
            input, unknown channel, refused).

        Raises:
            redis.RedisError: the pipeline failed (the caller resubscribes).
        """
        out: list[Code | None] = [None] * len(msgs)
        calls: list[Call] = []
        todo: list[tuple[int, str, str, str | bytes]] = []  # (index, channel, name, data)
        clock_off = self._clock_off()
        for i, (channel, data) in enumerate(msgs):
            if channel == self.channels.marker:
                await self._on_marker(data)
                continue
            msg_id = self.seq.name()  # named even when skipped: ids stay those of the others
            if msg_id is None:
                self.metrics.unnamed.inc()
                continue
            if clock_off:  # its times would be wrong; the other replicas apply it
                name = channel.removeprefix(self.config.channel_prefix)
                self.metrics.messages.labels(name, "clock_off").inc()
                continue
            build = self._dispatch.get(channel)
            if build is None:
                continue
            name = channel.removeprefix(self.config.channel_prefix)
            try:
                calls.append(build(data, self.clock.now_ms(), msg_id))
            except BadInput as e:
                self.metrics.bad_input.labels(e.kind).inc()
                self.metrics.messages.labels(name, "bad").inc()
                self._limiter.warn(
                    f"bad:{e.kind}", "bad input on %s (%s): %s", name, e.detail, truncate(data)
                )
                calls.append(self.coord.bad_input_call(e.kind, msg_id))
                todo.append((i, "", name, data))
                continue
            todo.append((i, channel, name, data))
        if not calls:
            return out
        results = await self._apply(calls)
        for (i, channel, name, data), call, res in zip(todo, calls, results, strict=True):
            if not channel:  # the count of a bad input
                continue
            try:
                code = raise_for_code(call[0], int(res[0]))
            except ScriptError as e:
                self.metrics.messages.labels(name, "refused").inc()
                self._limiter.warn(f"script:{e.script}", "%s on %s: %s", e, name, truncate(data))
                continue
            self.applied += 1
            self.metrics.messages.labels(name, code.name.lower()).inc()
            if channel == self.channels.connect:
                if code == Code.HIT:
                    self.metrics.hits.inc()
                elif code == Code.MISS:
                    self.metrics.misses.inc()
            out[i] = code
        return out

    async def _apply(self, calls: Sequence[Call]) -> list[list[Any]]:
        """Run the calls in order in one pipeline; each run of consecutive activity calls
        goes as one ``recordActivities`` call (at most ``max_batch`` messages each).

        Returns:
            One result per call, shaped as that call's own script returns it.
        """
        groups: list[tuple[Call, int]] = []  # (call sent, how many calls it stands for)
        run: list[tuple[str, int, int]] = []

        def flush() -> None:
            if run:
                groups.append((self.coord.activities_call(run), len(run)))
                run.clear()

        for call in calls:
            name, args = call
            if name == "recordActivity":
                run.append((str(args[0]), int(args[1]), int(args[2])))
                if len(run) >= self.config.max_batch:
                    flush()
                continue
            flush()
            groups.append((call, 1))
        flush()
        results = await self._call_many_waiting_out_oom([g for g, _ in groups])
        out: list[list[Any]] = []
        for (sent, n), res in zip(groups, results, strict=True):
            if sent[0] != "recordActivities":
                out.append(res)
            elif int(res[0]) < 0:  # refused as a whole: every message refused
                out += [[int(res[0]), 0]] * n
            else:
                out += [[int(c), 0] for c in res[1:]]
        return out

    async def _call_many_waiting_out_oom(self, calls: list[Call]) -> list[Any]:
        """``call_many``, retried with backoff while Redis refuses writes at ``maxmemory``
        (OOM, under ``noeviction``: the whole script is refused, nothing of it runs, so a
        retry applies each message once).  The subscription stays meanwhile, and what is
        published queues in its buffer (up to ``client-output-buffer-limit pubsub``);
        dropping it, as any other error does, lost every message published until the
        resubscribe.  A stop ends the wait (the messages are lost then)."""
        delay = 0.05
        while True:
            try:
                return await self.coord.runner.call_many(calls)
            except OutOfMemoryError as e:
                if self._stop.is_set():
                    raise
                self.metrics.oom_retries.inc()
                self._limiter.warn(
                    "oom",
                    "Redis refuses writes (%s); %s wait and are retried: free memory or raise "
                    "maxmemory",
                    e,
                    plural(len(calls), "call"),
                )
                await _sleep_unless(self._stop, delay)
                delay = min(2 * delay, self.config.max_backoff_s)

    async def _emit_marker(self, interval_ms: int) -> None:
        """Publish a marker if it is time, with the highest sequence number this replica
        has seen as the counter's floor; the floor raising the counter means the counter
        was lost or broken, most likely with the rest of the pool's state: say so."""
        _, raised = await self.coord.emit_marker(
            self.clock.now_ms(), interval_ms, self._last_seq or 0
        )
        if raised:
            self.metrics.pool_resets.inc()
            log.error(
                "the pool's marker counter was missing, unreadable or below the sequence "
                "already used, and was raised past it: were the pool's keys deleted, or "
                "Redis restarted without persistence? If `provisioner status` shows the "
                "nodes gone too, the pool's state is lost and nodes created before may "
                "still run untracked (docs/operations.md#state-lost)"
            )

    async def _on_marker(self, data: str | bytes) -> None:
        self._last_marker = time.monotonic()
        text = str(data)
        # no secret: none was read yet (the pool had no marker when this replica
        # subscribed); a marker is never taken unchecked
        ok = self._secret is not None and self.seq.on_marker(text, self._secret)
        if not ok:
            # the secret may be new (a Redis without persistence restarted): re-read
            # it once, then judge again; every replica reaches the same verdict
            self._secret = await self.coord.marker_secret()
            ok = self._secret is not None and self.seq.on_marker(text, self._secret)
        if not ok:
            self.metrics.bad_markers.inc()
            self._limiter.warn("marker", "ignored marker %s", truncate(data))
        elif self._gap_from is not None and self.seq.seq is not None:
            self.metrics.gap_markers.inc(max(0, self.seq.seq - self._gap_from - 1))
            self._gap_from = None
        if self.seq.seq is not None:
            self._last_seq = self.seq.seq

    def _activity_call(self, data: str | bytes, now: int, msg_id: int) -> Call:
        m = decode_activity(data)
        return self.coord.activity_call(m.user_id, now, msg_id)

    def _connect_call(self, data: str | bytes, now: int, msg_id: int) -> Call:
        m = decode_user(data)
        return self.coord.connect_call(m.user_id, now, msg_id)

    def _disconnect_call(self, data: str | bytes, now: int, msg_id: int) -> Call:
        m = decode_user(data)
        return self.coord.disconnect_call(m.user_id, now, msg_id)

    def _status_call(self, data: str | bytes, now: int, msg_id: int) -> Call:
        m = decode_node_status(data)
        return self.coord.node_status_call(m.node_id, m.status, now, msg_id)

    # -- timers -------------------------------------------------------------------------
    def _clock_off(self) -> bool:
        """Whether the leader's clock check found this replica's clock off Redis's."""
        return self.leader is not None and self.leader.clock_off

    async def _markers(self, stop: asyncio.Event) -> None:
        interval_ms = int(self.config.marker_interval_s * 1000)
        while not stop.is_set():
            try:
                if not self._clock_off():
                    await self._emit_marker(interval_ms)
            except (RedisError, OSError) as e:
                self._limiter.warn("marker-emit", "marker not published: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.marker_interval_s)

    async def _maintenance(self, stop: asyncio.Event) -> None:
        ttl_s = self.config.user_ttl_s
        ttl_ms = int(ttl_s * 1000) if ttl_s else 0  # 0: user_ttl_b boot times
        history_ms = max(1, int(self.config.history_ttl_s * 1000))
        rounds = 0
        while not stop.is_set():
            now = self.clock.now_ms()
            try:
                if not self._clock_off():  # a skewed heartbeat or expiry harms the others
                    await self._maintenance_round(now, ttl_ms, history_ms, rounds % 60 == 0)
            except (RedisError, OSError) as e:
                self._limiter.warn("maintenance", "maintenance skipped: %s", e)
            except ScriptError as e:
                self._limiter.warn("maintenance-script", "maintenance refused: %s", e)
            rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        # a clean stop: `status` no longer lists this replica (best effort, bounded)
        with contextlib.suppress(RedisError, OSError, ScriptError, TimeoutError):
            await asyncio.wait_for(
                self.coord.heartbeat(self.config.replica_id, self.clock.now_ms(), leave=True),
                self.config.socket_timeout_s,
            )

    async def _maintenance_round(self, now: int, ttl_ms: int, history_ms: int, prune: bool) -> None:
        """One round: heartbeat, user expiry and forgetting, node pruning when ``prune``,
        and the pool gauges (unix ms; a user TTL of 0 ms: ``user_ttl_b`` boot times)."""
        await self.coord.heartbeat(self.config.replica_id, now)
        await self.coord.expire_users(now, ttl_ms, ttl_b=self.config.user_ttl_b)
        await self.coord.forget_users(now, history_ms)
        if prune:
            await self.coord.prune_nodes(now)
        snap = await self.coord.snapshot()
        for state in ("booting", "ready", "allocated", "terminating"):
            self.metrics.pool.labels(state).set(getattr(snap, state))
        self.metrics.waiting.set(snap.waiting)
        self.metrics.active.set(snap.active)
        if snap.boot.mean_s:
            self.metrics.boot_time.set(snap.boot.mean_s)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _redact(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


async def run_worker(config: WorkerConfig) -> None:
    """Run one replica until SIGTERM or SIGINT, then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await Worker(config).run(stop)
