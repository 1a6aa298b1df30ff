"""``provisioner demo``: the whole stack on real Redis, ending in a scorecard
(:mod:`provisioner.sim.demo`), from the command line."""

from __future__ import annotations

import json
import secrets

import click

from provisioner.cli.extras import requires_extra
from provisioner.cli.options import CliConfig, FiniteFloat, shared_options
from provisioner.policies.predictive import DEFAULT_MISS_COST_B
from provisioner.policies.registry import POLICY_NAMES
from provisioner.sim import scenarios
from provisioner.sim.demo import DemoConfig, compare_lines, run_demo
from provisioner.sim.scorecard import format_scorecard

__all__ = ["command"]


@click.command("demo")
@click.option(
    "--scenario", type=click.Choice(list(scenarios.NAMES)), default="steady", show_default=True
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--duration",
    type=FiniteFloat(),
    default=60.0,
    show_default=True,
    help="Wall seconds of traffic.",
)
@click.option(
    "--time-scale",
    type=FiniteFloat(),
    default=10.0,
    show_default=True,
    help="World seconds per wall second.",
)
@click.option("--replicas", type=int, default=2, show_default=True)
@click.option(
    "--policy",
    type=click.Choice(list(POLICY_NAMES)),
    default="predictive",
    show_default=True,
)
@click.option(
    "--keep-alive",
    type=FiniteFloat(min=0),
    default=60.0,
    show_default=True,
    help="Baselines only (static, basestock, reactive, hybrid): world seconds a surplus "
    "ready node may idle; the predictive policy's keep-alive is one learned boot time.",
)
@click.option(
    "--logdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where process logs go (default: a temporary folder).",
)
@click.option(
    "--miss-cost-boots",
    "miss_cost",
    type=FiniteFloat(),
    default=DEFAULT_MISS_COST_B,
    show_default=True,
    help="predictive: what one miss is worth, in boot times of an idle node.",
)
@click.option(
    "--replay",
    "with_replay",
    is_flag=True,
    help="Then replay the same world minutes on a virtual clock and compare.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scorecard as JSON.")
@requires_extra("sim", "rich")
@shared_options(private_redis=True)
@click.pass_obj
def command(
    obj: CliConfig,
    scenario: str,
    seed: int,
    duration: float,
    time_scale: float,
    replicas: int,
    policy: str,
    keep_alive: float,
    logdir: str | None,
    miss_cost: float,
    with_replay: bool,
    as_json: bool,
) -> None:
    """Run Redis, the mock Node API, the simulator and replicas; print the scorecard.

    Without --redis-url (before or after 'demo', or in PROVISIONER_REDIS_URL) a private
    redis-server from PATH is started on a free port and stopped at the end.  On a
    Redis of yours the demo takes a pool and a channel prefix of its own unless given.
    Progress is shown live on a terminal, else a line every 10 s on stderr.
    """
    for name, value in (("--duration", duration), ("--time-scale", time_scale),
                        ("--miss-cost-boots", miss_cost)):  # fmt: skip
        if not value > 0:
            raise click.BadParameter(f"must be > 0, got {value:g}", param_hint=name)
    if replicas < 1:
        raise click.BadParameter(f"must be >= 1, got {replicas}", param_hint="--replicas")
    redis_url = obj.explicit_redis_url
    channel_prefix = obj.channel_prefix
    pool = obj.pool if "pool" in obj.given else ""
    if redis_url is not None:
        # a Redis that may hold other state: a pool of the demo's own unless one was
        # named, and channels of its own unless a prefix was given (other replicas or
        # simulators on it must not see the demo's traffic, nor it theirs)
        pool = pool or f"demo-{secrets.token_hex(4)}"
        channel_prefix = channel_prefix or f"{pool}."
    cfg = DemoConfig(
        scenario=scenario,
        seed=seed,
        duration_s=duration,
        time_scale=time_scale,
        replicas=replicas,
        redis_url=redis_url,
        policy=policy,
        keep_alive_s=keep_alive,
        miss_cost_b=miss_cost,
        channel_prefix=channel_prefix,
        logdir=logdir,
        pool=pool or "default",
    )
    card, rep = run_demo(cfg, with_replay)
    if as_json:
        out = card.to_dict() if rep is None else {"live": card.to_dict(), "replay": rep.to_dict()}
        click.echo(json.dumps(out, indent=2))
    else:
        if rep is not None:
            click.echo("live run:")
        click.echo(format_scorecard(card))
        if rep is not None:
            click.echo("")
            click.echo(compare_lines(card, rep))
