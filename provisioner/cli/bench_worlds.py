"""``provisioner bench worlds``: the policies on many randomized, held-out worlds
(:mod:`provisioner.bench.worlds`), from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from provisioner.bench.workers import quiet_logs
from provisioner.bench.worlds import SEEDS, SETTINGS, Set, run_worlds
from provisioner.cli.bench import own_pools, reports_bench_errors
from provisioner.cli.extras import requires_extra
from provisioner.cli.options import shared_options
from provisioner.sim import worlds

__all__ = ["command"]


@click.command("worlds")
@click.option(
    "--worlds", "n_worlds", type=click.IntRange(1, 1000), default=200, show_default=True,
    help="Worlds to draw (the first N seeds of the set).",
)  # fmt: skip
@click.option(
    "--set", "which", type=click.Choice(["held-out", "tuning"]), default="held-out",
    show_default=True, help="Seed set: held-out (report) or tuning (look at while tuning).",
)  # fmt: skip
@click.option(
    "--horizon", type=click.Choice(["short", "long", "both"]), default="both",
    show_default=True, help="short: 100 boot times; long: at least 2,000 sessions.",
)  # fmt: skip
@click.option(
    "--policy", "policies", multiple=True, type=click.Choice(list(SETTINGS)),
    help="Policy (repeatable); default all, each over its settings.",
)  # fmt: skip
@click.option(
    "--jobs", type=click.IntRange(1, 64), default=2, show_default=True,
    help="Replays at once, each in its own process (and private Redis without --redis-url).",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(file_okay=False), default="bench-worlds", show_default=True,
    help="Folder for worlds.json and worlds.png.",
)  # fmt: skip
@click.option(
    "--resume", is_flag=True,
    help="Keep the rows of an earlier worlds.json in --out and run only the missing replays.",
)  # fmt: skip
@own_pools
@requires_extra("bench", "matplotlib")
@shared_options(private_redis=True)
@reports_bench_errors
def command(
    n_worlds: int, which: Set, horizon: str, policies: tuple[str, ...], jobs: int, out: str,
    resume: bool, redis_url: str | None,
) -> None:  # fmt: skip
    """Replay the policies on N randomized worlds; percentiles over worlds.

    Per policy setting and horizon: the 10th, 50th and 90th percentile and the worst
    world of the hit rate of predictable connects and of cost / oracle, in a table,
    worlds.json (every row: seed, world parameters, policy, setting, figures) and
    worlds.png.  Each world starts from an empty pool, and the leader from the live
    defaults (it learns the boot time).

    Budget: the predictive default runs on every world's short horizon, the baselines
    (static k 1, 2, 4, 8, 16; reactive; hybrid; basestock z 0, 1.64, 2.5) on the first
    fifth of the worlds; the long horizon runs on the first tenth (predictive default),
    its baselines (static 4, hybrid, basestock 1.64) on the first twentieth.  For the
    default 200 worlds that is 600 short and 50 long replays: 7 minutes with --jobs 2
    on the 2-core VM when nothing else runs (measured; keep 15 minutes in view).
    """
    click.get_current_context().call_on_close(quiet_logs())
    seeds = list(SEEDS[which])[:n_worlds]
    horizons: list[worlds.Horizon] = ["short", "long"] if horizon == "both" else [horizon]  # type: ignore[list-item]
    run_worlds(
        seeds, which, horizons, list(policies or SETTINGS), Path(out), jobs=jobs,
        redis_url=redis_url, resume=resume, echo=click.echo,
    )  # fmt: skip
