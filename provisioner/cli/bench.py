"""``provisioner bench``: the benchmarks' group and ``bench policy``, ``bench judge`` and
``bench table`` (:mod:`provisioner.bench.policy`); ``bench worlds`` and ``bench
throughput`` are in :mod:`provisioner.cli.bench_worlds` and
:mod:`provisioner.cli.bench_throughput`, imported when used."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from provisioner.bench.errors import BenchError
from provisioner.bench.policy import (
    SWEEPS,
    format_verdicts,
    load_rows,
    markdown_table,
    plan,
    run_bench,
    verdicts,
)
from provisioner.bench.workers import quiet_logs
from provisioner.cli.extras import requires_extra
from provisioner.cli.lazy import LazyGroup
from provisioner.cli.options import (
    FiniteFloat,
    accept_shared_options,
    shared_options,
    unused_shared_options,
)
from provisioner.core.logutil import plural
from provisioner.sim import scenarios

__all__ = ["command", "own_pools", "reports_bench_errors"]

F = TypeVar("F", bound=Callable[..., Any])

#: The shared options no bench takes (each refuses them, saying why).
_UNUSED = ("pool", "channel_prefix")
#: Decorator of a bench that replays: it cannot take --pool or --channel-prefix.
own_pools = unused_shared_options(
    *_UNUSED,
    why="each replay runs on a pool and channels of its own (several at once on one Redis)",
)
#: Decorator of a command that reads a results file: the same, for another reason.
_reads_a_file = unused_shared_options(*_UNUSED, why="it reads a results file, not Redis")


def reports_bench_errors(func: F) -> F:
    """Decorator of a bench command: a :class:`~provisioner.bench.errors.BenchError` ends
    it as click's own errors do (``Error: <message>``, exit status 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BenchError as e:
            raise click.ClickException(str(e)) from e

    return cast(F, wrapper)


@click.group(
    "bench",
    cls=LazyGroup,
    lazy={
        "throughput": "provisioner.cli.bench_throughput:command",
        "worlds": "provisioner.cli.bench_worlds:command",
    },
)
@accept_shared_options(private_redis=True, unused=_UNUSED)
def command() -> None:
    """Benchmarks (fast replay of the policies).

    Without --redis-url (here, after the benchmark's name, or in PROVISIONER_REDIS_URL)
    each benchmark starts private redis-servers from PATH and stops them at its end.
    """


@command.command("policy")
@click.option(
    "--scenario",
    "names",
    multiple=True,
    type=click.Choice(list(scenarios.NAMES)),
    help="Scenario (repeatable); default all.",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(list(SWEEPS)),
    help="Policy (repeatable); default all.",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--sessions",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Least sessions per workload (the trace has 6,606).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Three knob values per policy: lowest, default, highest (two where the default is one "
    "of the ends).",
)
@click.option(
    "--defaults", "defaults_only", is_flag=True, help="Only each policy's default knob value."
)
@click.option(
    "--value",
    "values",
    type=FiniteFloat(),
    multiple=True,
    help="Knob value to run (repeatable; instead of the sweep; needs exactly one --policy).",
)
@click.option(
    "--merge",
    is_flag=True,
    help="Keep the rows of an earlier results.json in --out that this run does not redo.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="bench-out",
    show_default=True,
    help="Folder for results.json and the PNG plots.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Replays run at once, each in its own process (with --redis-url one Redis serves "
    "them all, else each has a private one).",
)
@click.option(
    "--pin/--no-pin",
    "pin_cpus",
    default=True,
    show_default=True,
    help="Without --redis-url: run each replay and its private Redis on one CPU of its own "
    "(round robin over the CPUs; faster: docs/benchmarks.md#speed).",
)
@own_pools
@requires_extra("bench", "matplotlib")
@shared_options(private_redis=True)
@reports_bench_errors
def policy_cmd(
    names: tuple[str, ...], policies: tuple[str, ...], seed: int, sessions: int, quick: bool,
    out: str, as_json: bool, redis_url: str | None, jobs: int, defaults_only: bool,
    values: tuple[float, ...], merge: bool, pin_cpus: bool,
) -> None:  # fmt: skip
    """Replay every policy over its knob on every scenario; table, JSON and plots.

    Without --redis-url (before or after 'bench policy', or in PROVISIONER_REDIS_URL)
    each of the --jobs replays at once has a private redis-server, started from PATH
    and stopped at the end; with --pin (the default) replay and server share one CPU.
    """
    click.get_current_context().call_on_close(quiet_logs())
    todo = list(names) or list(scenarios.names())
    pols = list(policies) or list(SWEEPS)
    if values and len(pols) != 1:
        raise click.BadParameter("needs exactly one --policy", param_hint="--value")
    started = time.perf_counter()
    tasks = plan(todo, pols, quick=quick, defaults_only=defaults_only, values=values)
    outdir = Path(out)
    rows, written = run_bench(
        tasks, outdir, seed=seed, sessions=sessions, jobs=jobs, redis_url=redis_url,
        pin_cpus=pin_cpus, merge=merge, echo=None if as_json else click.echo,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        click.echo(
            f"{plural(len(tasks), 'replay')} ({plural(len(rows), 'row')} in "
            f"{outdir / 'results.json'}) in "
            f"{time.perf_counter() - started:.0f}s on "
            f"{plural(os.cpu_count() or 1, 'core')}; plots: {', '.join(str(p) for p in written)}"
        )
        click.echo(format_verdicts(verdicts(rows)))


@command.command("judge")
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@_reads_a_file
@reports_bench_errors
def judge_cmd(results: str, as_json: bool) -> None:
    """Judge the predictive policy against the baselines in a results.json of bench
    policy; exit 1 when a baseline point dominates its default or lies below its curve."""
    rows = load_rows(Path(results))
    vs = verdicts(rows)
    if not vs and not as_json:
        click.echo("no scenario has a row of the predictive policy at its default knob")
    else:
        click.echo(
            json.dumps([asdict(v) for v in vs], indent=1) if as_json else format_verdicts(vs)
        )
    if any(v.dominated_by or v.beaten_at_equal_cost for v in vs):
        raise SystemExit(1)


@command.command("table")
@click.argument("results", type=click.Path(exists=True, dir_okay=False))
@_reads_a_file
@reports_bench_errors
def table_cmd(results: str) -> None:
    """Print the table of docs/benchmarks.md#results from a results.json of bench policy."""
    rows = load_rows(Path(results))
    click.echo(markdown_table(rows))
