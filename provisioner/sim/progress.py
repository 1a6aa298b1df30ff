"""The demo's live progress: world and wall time, connects, hits, misses, nodes by state.

While the demo's traffic runs, :func:`watch` samples once a second: the connects and
assignments the scorecard's listener has heard so far
(:class:`provisioner.sim.scorecard.ScoreListener`) and the pool's node counts (one
read-only snapshot through :meth:`provisioner.core.coordinator.Coordinator.snapshot`).
On a terminal (stdout and stderr both) it draws a live view on stderr with rich; otherwise
(CI logs, a pipe) it writes one plain ``demo: progress ...`` line to stderr every 10 s.
Stdout is left to the scorecard.

Live counts are provisional: a *hit* is an assignment with no wait (the scorecard's
definition, per session, is applied at the end), and *misses* are connects without such
an assignment so far, including users still waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from provisioner.core.coordinator import Coordinator
from provisioner.core.keys import Channels
from provisioner.policies.base import PoolSnapshot
from provisioner.sim.scorecard import ScoreListener

__all__ = ["DemoProgress", "format_progress", "interactive", "sample", "watch"]

#: Seconds between two plain progress lines (no terminal).
PLAIN_EVERY_S = 10.0
#: Seconds between two samples of the live view.
LIVE_EVERY_S = 1.0


@dataclass(frozen=True)
class DemoProgress:
    """One sample of the demo's progress.

    Attributes:
        wall_s: wall seconds since the traffic started.
        wall_total_s: wall seconds the traffic will run.
        time_scale: world seconds per wall second.
        connects: connects heard so far.
        hits: assignments with no wait so far.
        booting: nodes booting (None: the pool could not be read).
        ready: nodes ready and free.
        allocated: nodes allocated to a user.
    """

    wall_s: float
    wall_total_s: float
    time_scale: float
    connects: int
    hits: int
    booting: int | None = None
    ready: int | None = None
    allocated: int | None = None

    @property
    def world_s(self) -> float:
        """World seconds played so far (wall seconds times the time scale)."""
        return self.wall_s * self.time_scale

    @property
    def misses(self) -> int:
        """Connects without a no-wait assignment so far (never negative)."""
        return max(0, self.connects - self.hits)


def _n(x: int | None) -> str:
    return "-" if x is None else str(x)


def format_progress(p: DemoProgress) -> str:
    """One line for people: ``world 4.2/10.0 min (wall 25/60 s)  connects 31  hits 27
    misses 4  nodes booting 2 ready 3 allocated 12``."""
    world_total = p.wall_total_s * p.time_scale
    return (
        f"world {p.world_s / 60:.1f}/{world_total / 60:.1f} min "
        f"(wall {p.wall_s:.0f}/{p.wall_total_s:.0f} s)  connects {p.connects}  "
        f"hits {p.hits}  misses {p.misses}  nodes booting {_n(p.booting)} "
        f"ready {_n(p.ready)} allocated {_n(p.allocated)}"
    )


async def sample(
    listener: ScoreListener,
    read_pool: Callable[[], Awaitable[PoolSnapshot]],
    started: float,
    wall_total_s: float,
    time_scale: float,
) -> DemoProgress:
    """Sample the progress now.

    Args:
        listener: the scorecard's listener (its connects and assignments so far).
        read_pool: reads the pool's snapshot; a Redis error leaves the node counts None.
        started: ``time.monotonic()`` when the traffic started.
        wall_total_s: wall seconds the traffic will run.
        time_scale: world seconds per wall second.
    """
    snap: PoolSnapshot | None = None
    with contextlib.suppress(RedisError, OSError):
        snap = await read_pool()
    return DemoProgress(
        wall_s=min(wall_total_s, time.monotonic() - started),
        wall_total_s=wall_total_s,
        time_scale=time_scale,
        connects=len(listener.connects),
        hits=sum(1 for a in listener.assignments if a[3] == 0),
        booting=None if snap is None else snap.booting,
        ready=None if snap is None else snap.ready,
        allocated=None if snap is None else snap.allocated,
    )


def interactive() -> bool:
    """Whether to draw the live view: stdout and stderr are both terminals."""
    return sys.stdout.isatty() and sys.stderr.isatty()


def _table(p: DemoProgress) -> Any:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    world_total = p.wall_total_s * p.time_scale
    grid.add_row(
        "[bold]time[/]",
        f"world {p.world_s / 60:.1f} / {world_total / 60:.1f} min",
        f"wall {p.wall_s:.0f} / {p.wall_total_s:.0f} s",
    )
    grid.add_row(
        "[bold]users[/]", f"connects {p.connects}", f"[green]hits {p.hits}[/]",
        f"[red]misses {p.misses}[/]",
    )  # fmt: skip
    grid.add_row(
        "[bold]nodes[/]", f"booting {_n(p.booting)}", f"ready {_n(p.ready)}",
        f"allocated {_n(p.allocated)}",
    )  # fmt: skip
    return grid


async def watch(
    listener: ScoreListener,
    redis_url: str,
    pool: str,
    channel_prefix: str,
    wall_total_s: float,
    time_scale: float,
    live: bool | None = None,
) -> None:
    """Show the progress until cancelled (run it as a task beside the traffic).

    Args:
        listener: the scorecard's listener, started.
        redis_url: the demo's Redis.
        pool: the replicas' pool.
        channel_prefix: their channel prefix.
        wall_total_s: wall seconds the traffic will run.
        time_scale: world seconds per wall second.
        live: draw the rich live view (None: when :func:`interactive`).
    """
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    coord = Coordinator(client, pool, Channels(channel_prefix, pool))
    started = time.monotonic()

    async def now() -> DemoProgress:
        return await sample(listener, coord.snapshot, started, wall_total_s, time_scale)

    try:
        if live if live is not None else interactive():
            await _watch_live(now)
        else:
            while True:
                await asyncio.sleep(PLAIN_EVERY_S)
                print(f"demo: progress {format_progress(await now())}", file=sys.stderr, flush=True)
    finally:
        await client.aclose()


async def _watch_live(now: Callable[[], Awaitable[DemoProgress]]) -> None:
    from rich.console import Console
    from rich.live import Live

    with Live(
        _table(await now()), console=Console(stderr=True), auto_refresh=False, transient=False
    ) as view:
        while True:
            await asyncio.sleep(LIVE_EVERY_S)
            view.update(_table(await now()), refresh=True)
