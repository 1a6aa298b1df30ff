"""The live user simulator: replays a workload on real Redis Pub/Sub.

Each event of a :class:`~provisioner.sim.workload.Workload` is published ``t_s / time_scale``
seconds (wall time) after the start, on ``{prefix}user:activity``
(``{"user_id": u, "timestamp": <unix seconds, int>}``), ``{prefix}user:connect``
(``{"user_id": u}``) or ``{prefix}user:disconnect`` (``{"user_id": u}``), as compact JSON.
Events already due are sent together in one pipeline (order kept).  The simulator keeps the
ground truth: who is connected now, and what was published at which wall time (ms).

``python -m provisioner.sim.simulate --scenario starter --time-scale 5`` runs it from a shell,
as ``provisioner simulate`` does (:mod:`provisioner.cli.simulate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from provisioner.sim.workload import Event, EventKind, Workload

log = logging.getLogger(__name__)

CHANNELS: dict[EventKind, str] = {
    "activity": "user:activity",
    "connect": "user:connect",
    "disconnect": "user:disconnect",
}
"""Contract channel per event kind (before the optional prefix)."""


def channel(kind: EventKind, prefix: str = "") -> str:
    """The channel name of an event kind: ``prefix + "user:<kind>"``."""
    return prefix + CHANNELS[kind]


def payload(ev: Event, now_s: float | None = None) -> str:
    """The contract's compact JSON for an event.

    Args:
        ev: The event.
        now_s: Wall-clock unix time in seconds for an activity's ``timestamp`` (default:
            ``time.time()``); truncated to an int.
    """
    body: dict[str, object] = {"user_id": ev.user_id}
    if ev.kind == "activity":
        body["timestamp"] = int(time.time() if now_s is None else now_s)
    return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True)
class Published:
    """One published message.

    Attributes:
        wall_ms: Wall-clock unix time of the publish, milliseconds.
        t_s: The event's workload time, seconds (unscaled).
        kind: Event kind.
        user_id: The user.
        channel: Full channel name.
        data: The JSON payload sent.
    """

    wall_ms: float
    t_s: float
    kind: EventKind
    user_id: str
    channel: str
    data: str


@dataclass
class SimResult:
    """Ground truth of a simulation run; filled live while it runs.

    Attributes:
        workload: Name of the scenario.
        time_scale: Speed-up factor.
        started_ms: Wall-clock unix ms when the run started (workload time 0).
        ended_ms: Wall-clock unix ms when it ended (0 while running).
        published: Every published message in publish order.
        connected: Users connected now (connect published, disconnect not yet).
        stopped_early: True when ``stop_event``/``max_wall_s`` ended the run before the
            workload's last event.
    """

    workload: str
    time_scale: float
    started_ms: float = 0.0
    ended_ms: float = 0.0
    published: list[Published] = field(default_factory=list)
    connected: set[str] = field(default_factory=set)
    stopped_early: bool = False

    def count(self, kind: EventKind) -> int:
        """Number of published messages of one kind."""
        return sum(1 for p in self.published if p.kind == kind)

    def summary(self) -> dict[str, object]:
        """Counts for logs and the CLI."""
        return {
            "workload": self.workload,
            "time_scale": self.time_scale,
            "wall_s": round((self.ended_ms - self.started_ms) / 1000.0, 3),
            "activity": self.count("activity"),
            "connect": self.count("connect"),
            "disconnect": self.count("disconnect"),
            "connected_at_end": len(self.connected),
            "stopped_early": self.stopped_early,
        }


def _warn_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("publish failed (%s: %s); retrying", type(exc).__name__, exc)


async def _publish(
    client: aioredis.Redis,
    events: Sequence[Event],
    channel_prefix: str,
    res: SimResult,
    retry_s: float = 30.0,
) -> None:
    """Publish ``events`` (one PUBLISH, or a pipeline of several) stamped with the wall
    time now, and record them (and who is connected after them) in ``res``.  A lost
    connection (Redis restarting) is retried for up to ``retry_s`` seconds; a batch cut
    off mid-way is sent again whole, so some of its messages may go out twice (the service
    counts duplicates and changes nothing for them)."""
    wall_s = time.time()
    batch = []
    for ev in events:
        batch.append((ev, channel(ev.kind, channel_prefix), payload(ev, wall_s)))
    async for attempt in AsyncRetrying(
        wait=wait_random_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_delay(retry_s),
        retry=retry_if_exception_type((RedisConnectionError, RedisTimeoutError, OSError)),
        before_sleep=_warn_retry,
        reraise=True,
    ):
        with attempt:
            if len(batch) == 1:
                await client.publish(batch[0][1], batch[0][2])
            else:
                async with client.pipeline(transaction=False) as pipe:
                    for _, ch, data in batch:
                        pipe.publish(ch, data)
                    await pipe.execute()
    wall_ms = time.time() * 1000.0
    for ev, ch, data in batch:
        res.published.append(Published(wall_ms, ev.t_s, ev.kind, ev.user_id, ch, data))
        if ev.kind == "connect":
            res.connected.add(ev.user_id)
        elif ev.kind == "disconnect":
            res.connected.discard(ev.user_id)


async def run_simulation(
    workload: Workload,
    redis_url: str,
    time_scale: float = 1.0,
    channel_prefix: str = "",
    stop_event: asyncio.Event | None = None,
    *,
    max_wall_s: float | None = None,
    result: SimResult | None = None,
    retry_s: float = 30.0,
    close_sessions: bool = False,
) -> SimResult:
    """Publish the workload's events on Redis Pub/Sub in (scaled) real time.

    Args:
        workload: Events to publish, times in seconds.
        redis_url: Redis URL, e.g. ``redis://localhost:6379/0``.
        time_scale: Speed-up; event at ``t_s`` goes out ``t_s / time_scale`` wall seconds
            after start.  Lateness (a slow Redis) is not made up by skipping: late events go
            out at once, in order.
        channel_prefix: Prepended to each channel name.
        stop_event: When set, the run stops before the next publish.
        max_wall_s: Stop after this many wall seconds (events due later are not sent).
        retry_s: how long a publish is retried while Redis cannot be reached (a restart),
            seconds; then its error is raised.
        result: A :class:`SimResult` to fill (lets a caller watch the ground truth live);
            a new one by default.
        close_sessions: at the end (the workload's, ``max_wall_s`` or ``stop_event``),
            publish ``user:disconnect`` for every user still connected, so a run cut
            short leaves no node allocated in a live pool (none sends it later).

    Returns:
        The ground truth of what was published.
    """
    if time_scale <= 0:
        raise ValueError(f"time_scale must be > 0, got {time_scale}")
    res = result if result is not None else SimResult(workload.name, time_scale)
    res.time_scale = time_scale
    client = aioredis.Redis.from_url(redis_url)
    loop = asyncio.get_running_loop()
    try:
        await client.ping()
        start = loop.time()
        res.started_ms = time.time() * 1000.0
        deadline = start + max_wall_s if max_wall_s is not None else None
        events = workload.events
        i, n = 0, len(events)
        while i < n:
            due = start + events[i].t_s / time_scale
            if deadline is not None and due > deadline:
                res.stopped_early = True
                break
            delay = due - loop.time()
            if stop_event is not None:
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop_event.wait(), timeout=delay)
                if stop_event.is_set():
                    res.stopped_early = True
                    break
            elif delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            j = i
            while j < n and start + events[j].t_s / time_scale <= now:
                j += 1
            j = max(j, i + 1)
            await _publish(client, events[i:j], channel_prefix, res, retry_s)
            i = j
        if close_sessions and res.connected:
            end_s = (loop.time() - start) * time_scale
            closing = [Event(end_s, "disconnect", u) for u in sorted(res.connected)]
            await _publish(client, closing, channel_prefix, res, retry_s)
    finally:
        res.ended_ms = time.time() * 1000.0
        await client.aclose()
    return res


if __name__ == "__main__":  # the same command as ``provisioner simulate``
    import importlib

    importlib.import_module("provisioner.cli.simulate").command()
