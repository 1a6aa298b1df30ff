"""``provisioner bench policy``: every policy on every scenario, fast, against the oracle.

For each scenario, :func:`provisioner.sim.scenarios.bench_workload` gives a workload of at
least 10,000 sessions (the real trace: its 6,606); each policy is replayed at several
settings of its knob (:mod:`provisioner.sim.replay`: the real Lua scripts on a real
redis-server, the real leader and policy on a virtual clock) and scored like a live run.
The result is a table (text or ``--json``) and, per scenario, a PNG of miss rate against
cost / oracle, one curve per policy.  The oracle is the clairvoyant lower bound: zero
misses at cost 1.0.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from provisioner.bench.errors import BenchError
from provisioner.bench.files import write_atomic
from provisioner.bench.workers import run_replays
from provisioner.policies.predictive import DEFAULT_MISS_COST_B
from provisioner.policies.registry import make_policy
from provisioner.sim import scenarios
from provisioner.sim.replay import ReplayConfig, replay
from provisioner.sim.workload import Workload

__all__ = [
    "DEFAULTS",
    "SWEEPS",
    "BenchRow",
    "Verdict",
    "bench_one",
    "bench_scenario",
    "format_row",
    "format_verdicts",
    "knob_values",
    "load_rows",
    "markdown_table",
    "plan",
    "run_bench",
    "verdicts",
]

#: Each policy's knob and the values swept (the default is marked in DEFAULTS).
SWEEPS: dict[str, tuple[str, tuple[float, ...]]] = {
    "predictive": ("miss_cost_b", (1.0, 3.3, 10.0, 16.7, 33.3, 100.0, 333.0)),
    "basestock": ("z", (0.0, 1.0, 1.64, 2.5)),
    "reactive": ("keep_alive_s", (0.0, 60.0, 300.0)),
    "static": ("k", (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)),
    "hybrid": ("keep_alive_pct", (50.0, 90.0, 99.0, 99.9)),
}
#: The knob value each policy ships with.
DEFAULTS: dict[str, float] = {
    "predictive": DEFAULT_MISS_COST_B,
    "basestock": 1.64,
    "reactive": 0.0,
    "static": 4.0,
    "hybrid": 99.0,
}
#: Leader tick of the replay per scenario, seconds; 2 s elsewhere. The trace spans 23
#: days; ``browse-heavy``'s 1.07 M activity events leave less of the minute to its ticks
#: (at 2 s its predictive replays took 44-64 s alone on the 2-core VM, as the host's load
#: varied; 3 s is still a tenth of its 20-40 s boots: docs/benchmarks.md#speed).
TICK_S: dict[str, float] = {"trace": 10.0, "browse-heavy": 3.0}


@dataclass(frozen=True)
class BenchRow:
    """One replay's figures (docs/design.md#2).  Costs in node-seconds."""

    scenario: str
    policy: str
    knob: str
    value: float
    default: bool
    connects: int
    misses: int
    miss_rate: float
    connects_cold: int
    misses_cold: int
    misses_predictable: int
    miss_rate_predictable: float
    wait_p50_ms: float | None
    wait_p95_ms: float | None
    busy_node_seconds: float
    idle_node_seconds: float
    node_seconds: float
    oracle_node_seconds: float
    cost_over_oracle: float | None
    violations: int
    wall_s: float
    sessions: int
    connects_premium: int
    misses_premium: int


def knob_values(policy: str, quick: bool) -> list[float]:
    _, values = SWEEPS[policy]
    pts = sorted({*values, DEFAULTS[policy]})
    if quick:
        pts = sorted({pts[0], DEFAULTS[policy], pts[-1]})
    return pts


@functools.lru_cache(maxsize=2)
def _workload(name: str, seed: int, sessions: int) -> Workload:
    """The scenario's bench workload, built once per process (they are deterministic)."""
    return scenarios.bench_workload(name, seed=seed, min_sessions=sessions)


async def bench_one(
    name: str, redis_url: str, policy: str, value: float, seed: int, sessions: int
) -> BenchRow:
    """Replay one policy at one knob value on one scenario and score it.

    Args:
        name: scenario name; ``policy``: policy name; ``value``: its knob's value.
        redis_url: a real Redis (the replay uses a pool of its own).
        seed: workload and boot-draw seed; ``sessions``: least sessions per workload.

    Returns:
        The row of figures (docs/design.md#2).
    """
    wl = _workload(name, seed, sessions)
    knob, _ = SWEEPS[policy]
    cfg = ReplayConfig(tick_s=TICK_S.get(name, 2.0), seed=seed)
    res = await replay(wl, make_policy(policy, **{knob: value}), redis_url, cfg)
    c = res.scorecard
    pred = c.connects_predictable
    return BenchRow(
        scenario=name, policy=policy, knob=knob, value=value,
        default=value == DEFAULTS[policy], connects=c.connects, misses=c.misses,
        miss_rate=c.miss_rate, connects_cold=c.connects_cold, misses_cold=c.misses_cold,
        misses_predictable=c.misses_predictable,
        miss_rate_predictable=c.misses_predictable / pred if pred else 0.0,
        wait_p50_ms=c.wait_p50_ms, wait_p95_ms=c.wait_p95_ms,
        busy_node_seconds=c.busy_node_seconds, idle_node_seconds=c.idle_node_seconds,
        node_seconds=c.node_seconds, oracle_node_seconds=c.oracle_node_seconds,
        cost_over_oracle=c.cost_over_oracle, violations=c.violations,
        wall_s=res.wall_s, sessions=len(wl.sessions()),
        connects_premium=res.extra["tiers"]["premium"]["connects"],
        misses_premium=res.extra["tiers"]["premium"]["misses"],
    )  # fmt: skip


async def bench_scenario(
    name: str, redis_url: str, policies: list[str], seed: int, sessions: int, quick: bool,
    echo: Any = None,
) -> list[BenchRow]:  # fmt: skip
    """Replay every policy at every knob value on one scenario, one after the other.

    Returns:
        One row per (policy, knob value).
    """
    rows = []
    for pol in policies:
        for value in knob_values(pol, quick):
            row = await bench_one(name, redis_url, pol, value, seed, sessions)
            rows.append(row)
            if echo:
                echo(format_row(row))
    return rows


async def _bench_task(task: tuple[str, str, float, int, int], url: str) -> BenchRow:
    """One replay of ``bench policy``: (scenario, policy, knob value, seed, sessions) on
    ``url`` (:func:`provisioner.bench.workers.run_replays`)."""
    name, policy, value, seed, sessions = task
    return await bench_one(name, url, policy, value, seed, sessions)


@dataclass(frozen=True)
class Verdict:
    """How one scenario's ``ours`` policy fares against the baselines (the targets of
    the benchmark).

    Attributes:
        scenario: the scenario.
        dominated_by: baseline points that dominate ours at its default knob: misses <=
            and cost <= ours, one of them strictly (should be empty).
        beaten_at_equal_cost: baseline points with fewer misses than our sweep's curve at
            the same cost (our curve: miss rate linearly interpolated between our points
            sorted by cost).
        judged: baseline points looked at (0: the scenario has no baseline rows).
        unjudged: baseline points outside our sweep's cost range: cheaper than our
            cheapest point, or costlier than our costliest with fewer misses than it (a
            costlier point that misses as often or more is dominated by our costliest and
            counts as beaten by us).
    """

    scenario: str
    dominated_by: list[str]
    beaten_at_equal_cost: list[str]
    unjudged: list[str]
    judged: int = 0


def _label(r: BenchRow) -> str:
    cost = r.cost_over_oracle or 0.0
    return f"{r.policy} {r.knob}={r.value:g} ({r.miss_rate * 100:.1f}% @ {cost:.2f}x)"


def verdicts(rows: list[BenchRow], ours: str = "predictive") -> list[Verdict]:
    """Judge ``ours`` against every other policy on each scenario (see :class:`Verdict`).

    Misses are compared as miss rates, cost as cost / oracle.  Scenarios without a row of
    ``ours`` at its default knob are left out.

    Returns:
        One verdict per scenario, in the order the scenarios first appear in ``rows``.
    """
    out = []
    for name in dict.fromkeys(r.scenario for r in rows):
        mine = sorted(
            (r for r in rows if r.scenario == name and r.policy == ours and r.cost_over_oracle),
            key=lambda r: r.cost_over_oracle or 0.0,
        )
        default = next((r for r in mine if r.default), None)
        if default is None:
            continue
        d_miss, d_cost = default.miss_rate, default.cost_over_oracle or 0.0
        lo, hi = mine[0].cost_over_oracle or 0.0, mine[-1].cost_over_oracle or 0.0
        curve = [(m.cost_over_oracle or 0.0, m.miss_rate) for m in mine]
        dominated, beaten, unjudged = [], [], []
        judged = 0
        for b in rows:
            if b.scenario != name or b.policy == ours or not b.cost_over_oracle:
                continue
            judged += 1
            cost = b.cost_over_oracle
            if b.miss_rate <= d_miss and cost <= d_cost and (b.miss_rate < d_miss or cost < d_cost):
                dominated.append(_label(b))
                continue  # a target missed already; its place on our curve adds nothing
            if cost > hi and b.miss_rate >= mine[-1].miss_rate:
                continue  # our costliest point dominates it
            if not lo <= cost <= hi:
                unjudged.append(_label(b))
                continue
            if b.miss_rate < _interpolate(curve, cost):
                beaten.append(_label(b))
        out.append(Verdict(name, dominated, beaten, unjudged, judged))
    return out


def _interpolate(points: list[tuple[float, float]], x: float) -> float:
    """The piecewise-linear curve through ``points`` (sorted by x) at ``x``; where
    several points share an x, the lowest y counts (the best of them)."""
    best: dict[float, float] = {}
    for px, py in points:
        best[px] = min(py, best.get(px, py))
    xs = sorted(best)
    for x0, x1 in itertools.pairwise(xs):
        if x0 <= x <= x1:
            y0, y1 = best[x0], best[x1]
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return best[xs[-1]] if x >= xs[-1] else best[xs[0]]


def format_verdicts(vs: list[Verdict]) -> str:
    """A few lines per scenario for the console."""
    lines = []
    for v in vs:
        ok = not v.dominated_by and not v.beaten_at_equal_cost
        if not v.judged:
            lines.append(f"{v.scenario}: no baseline rows to judge against")
            continue
        lines.append(f"{v.scenario}: {'ok' if ok else 'TARGET MISSED'}")
        for what, items in (
            ("dominates our default", v.dominated_by),
            ("below our curve at equal cost", v.beaten_at_equal_cost),
            ("outside our cost range (not judged)", v.unjudged),
        ):
            if items:
                lines.append(f"  {what}: {'; '.join(items)}")
    return "\n".join(lines)


def format_row(r: BenchRow) -> str:
    cost = f"{r.cost_over_oracle:.2f}x" if r.cost_over_oracle is not None else "-"
    p95 = f"{r.wait_p95_ms / 1000:.0f}s" if r.wait_p95_ms is not None else "-"
    mark = "*" if r.default else " "
    return (
        f"{r.scenario:13s} {r.policy:10s}{mark} {r.knob}={r.value:<8g} "
        f"miss {r.miss_rate * 100:5.1f}% (pred {r.miss_rate_predictable * 100:5.1f}%, "
        f"cold {r.misses_cold}/{r.connects_cold}, premium {r.misses_premium}/"
        f"{r.connects_premium})  wait p95 {p95:>5s}  "
        f"idle {r.idle_node_seconds / 3600:8.1f}h  cost/oracle {cost:>6s}  "
        f"viol {r.violations}  ({r.wall_s:.0f}s)"
    )


def plot(rows: list[BenchRow], out: Path) -> list[Path]:
    """One PNG per scenario: miss rate vs cost/oracle, a curve per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name in sorted({r.scenario for r in rows}):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for pol in SWEEPS:
            pts = sorted(
                (r.cost_over_oracle, r.miss_rate * 100, r.default)
                for r in rows
                if r.scenario == name and r.policy == pol and r.cost_over_oracle
            )
            if not pts:
                continue
            line = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=pol)
            for x, y, d in pts:
                if d:
                    ax.plot([x], [y], marker="*", markersize=16, color=line[0].get_color())
        ax.plot([1.0], [0.0], marker="X", markersize=12, color="black", label="oracle")
        ax.set_xlabel("cost / oracle (node-seconds)")
        ax.set_ylabel("miss rate (%)")
        ax.set_title(f"{name}: miss rate vs cost (star: default knob)")
        ax.set_yscale("symlog", linthresh=1.0)  # linear below 1%, logarithmic above
        ax.grid(True, alpha=0.3)
        ax.legend()
        path = out / f"bench-{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


#: One replay of ``bench policy``: (scenario, policy, knob value).
Task = tuple[str, str, float]


def plan(
    names: list[str], policies: list[str], *, quick: bool = False, defaults_only: bool = False,
    values: tuple[float, ...] = (),
) -> list[Task]:  # fmt: skip
    """The replays to run: every scenario of ``names`` with every policy of ``policies``
    at the given knob ``values``, else at its default only (``defaults_only``), else over
    its sweep (:func:`knob_values`)."""

    def points(pol: str) -> list[float]:
        if values:
            return sorted(set(values))
        return [DEFAULTS[pol]] if defaults_only else knob_values(pol, quick)

    return [(name, pol, value) for name in names for pol in policies for value in points(pol)]


def run_bench(
    tasks: list[Task], outdir: Path, *, seed: int, sessions: int, jobs: int,
    redis_url: str | None, pin_cpus: bool = True, merge: bool = False,
    echo: Callable[[str], Any] | None = None,
) -> tuple[list[BenchRow], list[Path]]:  # fmt: skip
    """Run ``tasks`` (:func:`provisioner.bench.workers.run_replays`) and keep their rows
    in ``outdir``: ``results.json`` after every replay, then the plots and
    ``verdicts.json``.

    Args:
        merge: keep the rows of an earlier ``results.json`` that this run does not redo.
        echo: called with each row's line of text as it comes; None: silent.

    Returns:
        Every row (sorted by scenario, policy and knob value) and the plots written.

    Raises:
        BenchError: with ``merge``, the earlier ``results.json`` does not hold rows; or a
            worker process died.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    results = outdir / "results.json"
    rows: list[BenchRow] = []
    if merge and results.is_file():
        redo = set(tasks)
        try:
            old = load_rows(results)
        except BenchError as e:
            raise BenchError(f"cannot merge: {e}") from e
        rows += [r for r in old if (r.scenario, r.policy, r.value) not in redo]
    names_order, pols_order = list(scenarios.names()), list(SWEEPS)

    def done(row: BenchRow | None) -> None:
        if row is not None:
            rows.append(row)
        rows.sort(
            key=lambda r: (names_order.index(r.scenario), pols_order.index(r.policy), r.value)
        )
        write_atomic(results, json.dumps([asdict(r) for r in rows], indent=1))
        if echo and row is not None:
            echo(format_row(row))

    done(None)
    run_replays(
        _bench_task,
        [(name, pol, value, seed, sessions) for name, pol, value in tasks],
        done,
        jobs=jobs,
        redis_url=redis_url,
        pin_cpus=pin_cpus,
        lost_hint="the rows done so far are in results.json (--merge keeps them when the "
        "missing points are run alone, with --scenario, --policy and --value)",
    )
    written = plot(rows, outdir)
    (outdir / "verdicts.json").write_text(json.dumps([asdict(v) for v in verdicts(rows)], indent=1))
    return rows, written


def load_rows(path: Path) -> list[BenchRow]:
    """The rows of a results.json of ``bench policy``.

    Raises:
        BenchError: the file does not hold such rows.
    """
    what = f"{path} is not a results.json of bench policy"
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise BenchError(f"{what}: {e}") from e
    if not isinstance(data, list):
        raise BenchError(f"{what}: expected a JSON list of rows")
    names = set(BenchRow.__dataclass_fields__)
    rows = []
    for i, r in enumerate(data, 1):
        if not isinstance(r, dict) or names - r.keys():
            lacks = sorted(names - r.keys()) if isinstance(r, dict) else "not an object"
            raise BenchError(f"{what}: row {i}: {lacks}")
        rows.append(BenchRow(**{k: r[k] for k in names}))
    return rows


def markdown_table(rows: list[BenchRow]) -> str:
    """The table of docs/benchmarks.md#results: per scenario, every policy at its default knob, the
    predictive sweep's two ends, premium misses, and the wall seconds of the predictive
    default's replay and of the scenario's slowest replay (any policy, any knob).  A cell
    with no row says "not run"; a policy run only at other settings shows the first of
    them, named (``static k=8: ...``)."""

    def cell(r: BenchRow | None) -> str:
        if r is None or r.cost_over_oracle is None:
            return "not run"
        return f"{r.miss_rate * 100:.1f}% @ {r.cost_over_oracle:.2f}x"

    def policy_cell(p: str, default: BenchRow | None, mine: list[BenchRow]) -> str:
        if default is not None:
            return cell(default)
        other = sorted((r for r in mine if r.policy == p), key=lambda r: r.value)
        if not other:
            return "not run"
        more = f" (+{len(other) - 1} more)" if len(other) > 1 else ""
        return f"{other[0].knob}={other[0].value:g}: {cell(other[0])}{more}"

    pols = ["predictive", "static", "hybrid", "reactive", "basestock"]
    head = [
        "scenario (sessions)", *[f"{p}*" for p in pols],
        "predictive sweep (lowest / highest miss cost)", "premium misses (predictive*)",
        "replay wall s (predictive* / slowest)",
    ]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in dict.fromkeys(r.scenario for r in rows):
        mine = [r for r in rows if r.scenario == name]
        default = {r.policy: r for r in mine if r.default}
        sweep = sorted((r for r in mine if r.policy == "predictive"), key=lambda r: r.value)
        ends = f"{cell(sweep[0])} / {cell(sweep[-1])}" if len(sweep) > 1 else "not run"
        d = default.get("predictive")
        sessions = max(r.sessions for r in mine)
        out.append(
            "| " + " | ".join([
                f"{name} ({sessions:,})", *[policy_cell(p, default.get(p), mine) for p in pols],
                ends,
                f"{d.misses_premium}/{d.connects_premium}" if d else "not run",
                (f"{d.wall_s:.0f}" if d else "not run")
                + f" / {max(r.wall_s for r in mine):.0f}",
            ]) + " |"
        )  # fmt: skip
    return "\n".join(out)
