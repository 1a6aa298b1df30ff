"""``provisioner mock-node-api``: the emulated Node Management REST API
(:mod:`provisioner.sim.mock_api`) from the command line."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import click

from provisioner.cli.options import FiniteFloat, shared_options
from provisioner.sim.mock_api import ConfigError, MockConfig, logger, serve

__all__ = ["command"]

_DEFAULTS: Final = MockConfig()


@click.command("mock-node-api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    envvar="PROVISIONER_MOCK_PORT",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="TCP port (0: any free port).",
)
@click.option(
    "--boot-min",
    type=FiniteFloat(min=0),
    default=_DEFAULTS.boot_min_s,
    show_default=True,
    help="Shortest boot delay, seconds.",
)
@click.option(
    "--boot-max",
    type=FiniteFloat(min=0),
    default=_DEFAULTS.boot_max_s,
    show_default=True,
    help="Longest boot delay (uniform between the two), seconds.",
)
@click.option(
    "--slow-tail-p",
    type=FiniteFloat(0, 1),
    default=_DEFAULTS.slow_tail_p,
    show_default=True,
    help="Probability that a boot is slow.",
)
@click.option(
    "--slow-tail-factor",
    type=FiniteFloat(min=1),
    show_default=True,
    default=_DEFAULTS.slow_tail_factor,
    help="Multiplier of a slow boot's delay.",
)
@click.option(
    "--boot-fail-p",
    type=FiniteFloat(0, 1),
    default=_DEFAULTS.boot_fail_p,
    show_default=True,
    help="Probability that a boot ends in terminated.",
)
@click.option(
    "--lost-ready-p",
    type=FiniteFloat(0, 1),
    default=_DEFAULTS.lost_ready_p,
    show_default=True,
    help="Probability that a ready message is never published.",
)
@click.option(
    "--error-5xx-p",
    type=FiniteFloat(0, 1),
    default=_DEFAULTS.error_5xx_p,
    show_default=True,
    help="Probability that a POST or DELETE answers 503.",
)
@click.option(
    "--timeout-after-create-p",
    type=FiniteFloat(0, 1),
    show_default=True,
    default=_DEFAULTS.timeout_after_create_p,
    help="Probability that a POST creates the node but hangs before answering.",
)
@click.option(
    "--hang",
    type=FiniteFloat(min=0),
    default=_DEFAULTS.hang_s,
    show_default=True,
    help="How long such a POST hangs, seconds.",
)
@click.option(
    "--terminate-delay",
    type=FiniteFloat(min=0),
    show_default=True,
    default=_DEFAULTS.terminate_delay_s,
    help="Delay from DELETE to terminated, seconds.",
)
@click.option(
    "--preempt-rate",
    type=FiniteFloat(min=0),
    show_default=True,
    default=_DEFAULTS.preempt_rate_per_node_hour,
    help="Preemptions of ready nodes per node-hour.",
)
@click.option(
    "--time-scale",
    type=FiniteFloat(min=0, min_open=True),
    show_default=True,
    default=_DEFAULTS.time_scale,
    help="Speed of the world: delays are divided by it.",
)
@click.option("--seed", type=int, default=None, help="Random seed for reproducible runs.")
@shared_options()
def command(
    redis_url: str,
    host: str,
    port: int,
    boot_min: float,
    boot_max: float,
    slow_tail_p: float,
    slow_tail_factor: float,
    boot_fail_p: float,
    lost_ready_p: float,
    error_5xx_p: float,
    timeout_after_create_p: float,
    hang: float,
    terminate_delay: float,
    preempt_rate: float,
    time_scale: float,
    seed: int | None,
    channel_prefix: str,
    log_level: str,
) -> None:
    """Run the emulated Node Management REST API (POST/DELETE /api/nodes, GET /api/ledger).

    Node status changes are published on the node:status channel of --redis-url.
    Durations are seconds of emulated time, divided by --time-scale.
    """
    if boot_max < boot_min:
        raise click.BadParameter(
            f"{boot_max:g} is below --boot-min {boot_min:g}", param_hint="--boot-max"
        )
    level = logging.getLevelName(log_level.upper())
    # Other libraries' debug chatter stays out; our own logger gets the level asked for.
    logging.basicConfig(
        level=max(level, logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logger.setLevel(level)
    try:
        config = MockConfig(
            boot_min_s=boot_min,
            boot_max_s=boot_max,
            slow_tail_p=slow_tail_p,
            slow_tail_factor=slow_tail_factor,
            boot_fail_p=boot_fail_p,
            lost_ready_p=lost_ready_p,
            error_5xx_p=error_5xx_p,
            timeout_after_create_p=timeout_after_create_p,
            hang_s=hang,
            terminate_delay_s=terminate_delay,
            preempt_rate_per_node_hour=preempt_rate,
            time_scale=time_scale,
            seed=seed,
            channel_prefix=channel_prefix,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        asyncio.run(serve(config, redis_url, host, port))
    except OSError as e:  # e.g. the port is taken
        raise click.ClickException(f"cannot serve on {host}:{port}: {e.strerror or e}") from e
