"""``provisioner simulate``: the live user simulator
(:func:`provisioner.sim.simulate.run_simulation`) from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys

import click
from redis.exceptions import RedisError

from provisioner.cli.options import FiniteFloat, shared_options
from provisioner.core.logutil import plural
from provisioner.sim import scenarios
from provisioner.sim.simulate import SimResult, run_simulation

__all__ = ["command"]


@click.command("simulate")
@click.option(
    "--scenario",
    type=click.Choice(scenarios.NAMES),
    default="steady",
    show_default=True,
    help="Scenario to replay.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Scenario seed.")
@click.option(
    "--time-scale",
    type=FiniteFloat(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Speed-up: 5 runs the scenario 5x faster.",
)
@click.option(
    "--duration",
    type=FiniteFloat(min=0, min_open=True),
    default=None,
    help="Wall-clock seconds to run (default: the whole scenario).",
)
@click.option(
    "--close-sessions/--leave-sessions-open",
    default=True,
    show_default=True,
    help="At the end, publish user:disconnect for every user still connected (a run "
    "cut short would leave their nodes allocated in a live pool).",
)
@shared_options()
def command(
    redis_url: str,
    scenario: str,
    seed: int,
    time_scale: float,
    duration: float | None,
    close_sessions: bool,
    channel_prefix: str,
) -> None:
    """Replay a scenario's user activity, connects and disconnects on Redis Pub/Sub."""
    wl = scenarios.build_live(scenario, seed)
    click.echo(
        f"simulate {scenario} seed={seed}: {plural(len(wl.events), 'event')} over "
        f"{wl.duration_s:.0f} s "
        f"at x{time_scale:g} -> {wl.duration_s / time_scale:.1f} s wall"
        + (f" (stopping after {duration:g} s)" if duration else ""),
        err=True,
    )

    async def until_signalled() -> SimResult:
        # SIGINT / SIGTERM stop the run as --duration does (the open sessions are closed
        # too), instead of killing it mid-way with its users still connected
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        return await run_simulation(
            wl, redis_url, time_scale, channel_prefix, stop, max_wall_s=duration,
            close_sessions=close_sessions,
        )  # fmt: skip

    try:
        res = asyncio.run(until_signalled())
    except KeyboardInterrupt:
        sys.exit(130)
    except (RedisError, OSError) as e:
        raise click.ClickException(f"Redis at {redis_url}: {type(e).__name__}: {e}") from e
    click.echo(json.dumps(res.summary()))
