"""``provisioner bench throughput``: ingest rate, connect latency and scale, against Redis
(:mod:`provisioner.bench.throughput`), from the command line."""

from __future__ import annotations

import json
import logging

import click

from provisioner.bench.throughput import ThroughputConfig, format_targets, run_throughput
from provisioner.cli.bench import reports_bench_errors
from provisioner.cli.options import FiniteFloat, shared_options, unused_shared_options
from provisioner.core.logutil import set_levels
from provisioner.harness import private_redis

__all__ = ["command"]


def _parts(text: str) -> tuple[str, ...]:
    vals = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = set(vals) - {"replicas", "scale"}
    if bad:
        raise click.BadParameter(
            f"unknown parts {sorted(bad)}: replicas, scale", param_hint="--parts"
        )
    return vals


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(float(x)) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise click.BadParameter(f"{text!r}: expected comma-separated numbers") from e
    if not vals or min(vals) <= 0:
        raise click.BadParameter(f"{text!r}: expected positive numbers")
    return vals


@click.command("throughput")
@click.option("--quick", is_flag=True, help="Small rates, sizes and durations (a test).")
@click.option("--rates", default=None, help="Events/s to publish, comma-separated.")
@click.option("--duration", type=FiniteFloat(), default=None, help="Seconds of flood per rate.")
@click.option("--replicas", "replica_counts", default=None, help="Replica counts, e.g. 1,2.")
@click.option("--sizes", default=None, help="Active users of the scale runs, e.g. 1000,1e6.")
@click.option(
    "--parts",
    default="replicas,scale",
    show_default=True,
    help="What to run besides the limit: replicas, scale (comma-separated).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@unused_shared_options("pool", "channel_prefix", why="each run uses a pool and channels of its own")
@shared_options(private_redis=True)
@reports_bench_errors
def command(
    quick: bool, rates: str | None, duration: float | None, replica_counts: str | None,
    sizes: str | None, parts: str, as_json: bool, redis_url: str | None,
) -> None:  # fmt: skip
    """Ingest rate and connect latency of 1 and 2 replicas against Redis's own limit;
    tick cost and memory per user at 1k, 100k and 1M users.

    The targets end the output; one the run did not cover (--quick offers no rate of
    10,000/s, for one) reads "not measured" (null with --json), not as missed.
    """
    base = ThroughputConfig()
    if quick:
        base = ThroughputConfig(
            rates=(500, 2000), duration_s=2.0, sizes=(1_000, 10_000), limit_events=20_000,
            ticks=10,
        )  # fmt: skip
    cfg = ThroughputConfig(
        rates=_ints(rates) if rates else base.rates,
        duration_s=duration if duration and duration > 0 else base.duration_s,
        replicas=_ints(replica_counts) if replica_counts else base.replicas,
        connect_rate=base.connect_rate,
        sizes=_ints(sizes) if sizes else base.sizes,
        limit_events=base.limit_events,
        ticks=base.ticks,
        history_ttl_s=base.history_ttl_s,
        parts=_parts(parts),
    )
    click.get_current_context().call_on_close(set_levels({"provisioner": logging.WARNING}))
    echo = None if as_json else click.echo
    with private_redis(redis_url) as url:
        res = run_throughput(url, cfg, echo)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=1))
    else:
        click.echo(format_targets(res.targets))
