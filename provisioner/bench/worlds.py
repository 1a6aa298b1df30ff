"""``provisioner bench worlds``: the policies on many randomized, held-out worlds.

``bench policy`` scores the policies on the nine named scenarios they were tuned on; this
bench draws many worlds (:mod:`provisioner.sim.worlds`: boot times of 2 s to 3 min, any
traffic shape, API faults) and reports, per policy and setting, percentiles over worlds of
the hit rate of predictable connects and of cost / oracle.  Every world starts from an
empty pool with nothing learned, and the leader runs with the live defaults of
``provisioner run`` (:func:`live_leader_config`): it assumes the default boot time (30 s)
until it has seen boots, as a fresh deployment does, instead of being told the world's.

The default run is held-out worlds (:data:`provisioner.sim.worlds.HELD_OUT_SEEDS`); the
tuning worlds (``--set tuning``) are the ones to look at while tuning.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from provisioner.bench.errors import BenchError
from provisioner.bench.files import write_atomic
from provisioner.bench.policy import DEFAULTS, SWEEPS
from provisioner.bench.workers import run_replays
from provisioner.core.leader import LeaderConfig
from provisioner.core.logutil import plural
from provisioner.policies.registry import make_policy
from provisioner.sim import worlds
from provisioner.sim.replay import ReplayConfig, replay
from provisioner.sim.workload import Workload

__all__ = [
    "BASELINE_EVERY",
    "LONG_BASELINE_EVERY",
    "LONG_EVERY",
    "LONG_SETTINGS",
    "SETTINGS",
    "Dominance",
    "Summary",
    "Task",
    "WorldRow",
    "dominance",
    "format_table",
    "live_leader_config",
    "plan",
    "run_one",
    "run_worlds",
    "summarize",
    "tick_for",
]

#: Each policy's knob and the settings run on the short horizon (the first is the
#: predictive policy's shipped default; the baselines' are a few settings each).
SETTINGS: dict[str, tuple[str, tuple[float, ...]]] = {
    "predictive": (SWEEPS["predictive"][0], (DEFAULTS["predictive"],)),
    "static": ("k", (1.0, 2.0, 4.0, 8.0, 16.0)),
    "reactive": ("keep_alive_s", (0.0,)),
    "hybrid": ("keep_alive_pct", (99.0,)),
    "basestock": ("z", (0.0, 1.64, 2.5)),
}
#: The settings run on the long horizon: each policy's default only, and no ``reactive``
#: (it hits only by chance: 1-15% of predictable connects on every world measured).
LONG_SETTINGS: dict[str, tuple[float, ...]] = {
    pol: (DEFAULTS[pol],) for pol in ("predictive", "static", "hybrid", "basestock")
}
BASELINE_EVERY = 5
"""The baselines run on the first ``ceil(N / 5)`` of the N worlds on the short horizon
(the predictive default on all of them)."""
LONG_EVERY = 10
"""The long horizon runs on the first ``ceil(N / 10)`` worlds (the predictive default)."""
LONG_BASELINE_EVERY = 20
"""... and its baselines on the first ``ceil(N / 20)``.  The budget, measured with ``--jobs
2`` on the 2-core VM (two replays at once, each about 1.6x slower than alone): a short
replay takes 0.5 s (baselines) to 2 s (predictive; up to 14 s), a long one 6 s (baselines)
to 22 s (predictive)."""

Set = Literal["held-out", "tuning"]
SEEDS: dict[str, range] = {"held-out": worlds.HELD_OUT_SEEDS, "tuning": worlds.TUNING_SEEDS}


def tick_for(boot_mean_s: float) -> float:
    """Leader tick of a world's replay, seconds: a fifteenth of the boot time (2 s at
    30 s, as ``bench policy``), at least the live 1 s, at most 12 s (a fifteenth of 3 min).
    This is the simulation's resolution; the leader is not told the boot time."""
    return min(12.0, max(1.0, boot_mean_s / 15.0))


def live_leader_config(tick_s: float, maintenance_every: int) -> LeaderConfig:
    """The leader of ``provisioner run`` with its defaults (default boot time 30 s, intent
    timeout 120 s, ...), at the replay's tick and maintenance cadence, its lease 10 ticks
    and its decision records deferred (as every replay's: ``LeaderConfig.defer_records``).
    Unlike :func:`provisioner.sim.replay.replay`'s default, ``default_boot_s`` is not the
    world's mean boot."""
    return LeaderConfig(
        tick_s=tick_s,
        lease_ttl_s=10 * tick_s,
        reconcile_every=maintenance_every,
        defer_records=True,
    )


@dataclass(frozen=True)
class Task:
    """One replay: a world, a horizon and a policy setting."""

    seed: int
    horizon: worlds.Horizon
    policy: str
    value: float


@dataclass(frozen=True)
class WorldRow:
    """One replay's figures.  Node-seconds in seconds.

    Attributes:
        hit_rate: hits among the predictable connects (None without any).
        cost_over_oracle: node-seconds / the oracle's (None without sessions).
        params: the world's parameters (:class:`provisioner.sim.worlds.WorldParams`).
    """

    set: str
    seed: int
    horizon: str
    policy: str
    knob: str
    value: float
    default: bool
    sessions: int
    events: int
    duration_s: float
    tick_s: float
    connects: int
    connects_predictable: int
    misses_predictable: int
    connects_cold: int
    misses_cold: int
    hit_rate: float | None
    node_seconds: float
    oracle_node_seconds: float
    cost_over_oracle: float | None
    violations: int
    wall_s: float
    params: dict[str, Any]

    def key(self) -> tuple[int, str, str, float]:
        """What identifies the row's replay (seeds of the two sets are disjoint)."""
        return (self.seed, self.horizon, self.policy, self.value)


def set_of(seed: int) -> str:
    """``"held-out"`` or ``"tuning"``: the set a seed belongs to (``"other"`` else)."""
    return next((name for name, seeds in SEEDS.items() if seed in seeds), "other")


@functools.lru_cache(maxsize=2)
def _world(seed: int, horizon: worlds.Horizon) -> tuple[worlds.WorldParams, Workload]:
    """A world's workload, built once per process (deterministic)."""
    params = worlds.draw_world(seed)
    return params, worlds.build_world(params, horizon)


async def run_one(task: Task, redis_url: str) -> WorldRow:
    """Replay one policy setting on one world and score it.

    Args:
        task: the world (seed), horizon and policy setting.
        redis_url: a real Redis (the replay uses a pool of its own).

    Returns:
        The row.
    """
    params, wl = _world(task.seed, task.horizon)
    knob, _ = SETTINGS[task.policy]
    tick = tick_for(params.boot_mean_s)
    cfg = ReplayConfig(tick_s=tick, seed=task.seed, error_5xx_p=params.error_5xx_p)
    leader = live_leader_config(tick, cfg.maintenance_every)
    policy = make_policy(task.policy, **{knob: task.value})
    res = await replay(wl, policy, redis_url, cfg, leader)
    c = res.scorecard
    pred = c.connects_predictable
    return WorldRow(
        set=set_of(task.seed), seed=task.seed, horizon=task.horizon, policy=task.policy,
        knob=knob, value=task.value, default=task.value == DEFAULTS[task.policy],
        sessions=len(wl.sessions()), events=len(wl.events), duration_s=wl.duration_s,
        tick_s=tick, connects=c.connects, connects_predictable=pred,
        misses_predictable=c.misses_predictable, connects_cold=c.connects_cold,
        misses_cold=c.misses_cold, hit_rate=1.0 - c.misses_predictable / pred if pred else None,
        node_seconds=c.node_seconds, oracle_node_seconds=c.oracle_node_seconds,
        cost_over_oracle=c.cost_over_oracle, violations=c.violations, wall_s=res.wall_s,
        params=asdict(params),
    )  # fmt: skip


def _first(seeds: Sequence[int], every: int) -> Sequence[int]:
    return seeds[: -(-len(seeds) // every)]


def plan(
    seeds: Sequence[int], horizons: Iterable[worlds.Horizon], policies: Iterable[str]
) -> list[Task]:
    """The replays of a run (the budget of the help text).

    Short horizon: the predictive default on every world, the baselines (every setting of
    :data:`SETTINGS`) on the first ``1 / BASELINE_EVERY`` of them.  Long horizon: the
    predictive default on the first ``1 / LONG_EVERY``, the baselines of
    :data:`LONG_SETTINGS` on the first ``1 / LONG_BASELINE_EVERY``.

    Returns:
        Tasks ordered world by world (a worker builds each world once), the long horizon
        first (its replays are the longest: none is left alone at the end).
    """
    pols = list(policies)
    out: list[Task] = []
    for horizon in sorted(horizons, key=lambda h: h != "long"):
        short = horizon == "short"
        ours = seeds if short else _first(seeds, LONG_EVERY)
        theirs = _first(seeds, BASELINE_EVERY if short else LONG_BASELINE_EVERY)
        for seed in ours:
            for pol in pols:
                if pol != "predictive" and seed not in theirs:
                    continue
                values = SETTINGS[pol][1] if short else LONG_SETTINGS.get(pol, ())
                out.extend(Task(seed, horizon, pol, v) for v in values)
    return out


# --------------------------------------------------------------------------- figures


def percentile(xs: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``xs`` (non-empty), linearly interpolated
    between closest ranks (numpy's default, "linear")."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass(frozen=True)
class Summary:
    """Percentiles over worlds of one policy setting on one horizon.

    Attributes:
        worlds: worlds run; ``hit_*`` count only those with predictable connects.
        hit_p10, hit_p50, hit_p90, hit_worst: the hit rate of predictable connects (worst:
            the lowest).
        cost_p10, cost_p50, cost_p90, cost_worst: cost / oracle (worst: the highest).
    """

    horizon: str
    policy: str
    knob: str
    value: float
    default: bool
    worlds: int
    hit_p10: float | None
    hit_p50: float | None
    hit_p90: float | None
    hit_worst: float | None
    cost_p10: float | None
    cost_p50: float | None
    cost_p90: float | None
    cost_worst: float | None
    violations: int


def _stats(xs: list[float], worst: Callable[[list[float]], float]) -> list[float | None]:
    if not xs:
        return [None] * 4
    return [percentile(xs, 10), percentile(xs, 50), percentile(xs, 90), worst(xs)]


def _groups(rows: Iterable[WorldRow]) -> dict[tuple[str, str, float], list[WorldRow]]:
    order = {p: i for i, p in enumerate(SETTINGS)}
    out: dict[tuple[str, str, float], list[WorldRow]] = {}
    for r in sorted(rows, key=lambda r: (r.horizon != "short", order[r.policy], r.value)):
        out.setdefault((r.horizon, r.policy, r.value), []).append(r)
    return out


def summarize(rows: Iterable[WorldRow]) -> list[Summary]:
    """One :class:`Summary` per (horizon, policy, setting), short horizon first, policies
    in :data:`SETTINGS`' order."""
    out = []
    for (horizon, pol, value), group in _groups(rows).items():
        hits = [r.hit_rate for r in group if r.hit_rate is not None]
        costs = [r.cost_over_oracle for r in group if r.cost_over_oracle is not None]
        h10, h50, h90, h_worst = _stats(hits, min)
        c10, c50, c90, c_worst = _stats(costs, max)
        out.append(
            Summary(
                horizon=horizon,
                policy=pol,
                knob=group[0].knob,
                value=value,
                default=group[0].default,
                worlds=len(group),
                hit_p10=h10,
                hit_p50=h50,
                hit_p90=h90,
                hit_worst=h_worst,
                cost_p10=c10,
                cost_p50=c50,
                cost_p90=c90,
                cost_worst=c_worst,
                violations=sum(r.violations for r in group),
            )
        )
    return out


@dataclass(frozen=True)
class Dominance:
    """A baseline setting against the predictive default on the worlds both ran.

    Attributes:
        worlds: worlds both ran (with predictable connects and a cost).
        hit_p50, cost_p50: the baseline's medians there.
        ours_hit_p50, ours_cost_p50: the predictive default's medians on the same worlds.
        dominates_median: the baseline's median hit rate is higher and its median cost
            lower (one of them may tie).
        dominated_worlds: worlds where the baseline had more hits and less cost (one may
            tie, not both).
    """

    horizon: str
    policy: str
    value: float
    worlds: int
    hit_p50: float
    cost_p50: float
    ours_hit_p50: float
    ours_cost_p50: float
    dominates_median: bool
    dominated_worlds: int


def _better(hit: float, cost: float, hit0: float, cost0: float) -> bool:
    return hit >= hit0 and cost <= cost0 and (hit > hit0 or cost < cost0)


def dominance(rows: Sequence[WorldRow]) -> list[Dominance]:
    """Each baseline setting against the predictive default, paired by world."""
    ours = {
        (r.horizon, r.seed): r
        for r in rows
        if r.policy == "predictive" and r.default and r.hit_rate is not None
    }
    out = []
    for (horizon, pol, value), group in _groups(rows).items():
        if pol == "predictive":
            continue
        pairs = [
            (r, ours[(horizon, r.seed)])
            for r in group
            if (horizon, r.seed) in ours and r.hit_rate is not None and r.cost_over_oracle
        ]
        pairs = [(b, o) for b, o in pairs if o.cost_over_oracle]
        if not pairs:
            continue
        med = [
            percentile([x.hit_rate or 0.0 for x in xs], 50)
            for xs in ([b for b, _ in pairs], [o for _, o in pairs])
        ]
        cost = [
            percentile([x.cost_over_oracle or 0.0 for x in xs], 50)
            for xs in ([b for b, _ in pairs], [o for _, o in pairs])
        ]
        beaten = sum(
            _better(b.hit_rate or 0.0, b.cost_over_oracle or 0.0, o.hit_rate or 0.0,
                    o.cost_over_oracle or 0.0)
            for b, o in pairs
        )  # fmt: skip
        out.append(
            Dominance(
                horizon=horizon,
                policy=pol,
                value=value,
                worlds=len(pairs),
                hit_p50=med[0],
                cost_p50=cost[0],
                ours_hit_p50=med[1],
                ours_cost_p50=cost[1],
                dominates_median=_better(med[0], cost[0], med[1], cost[1]),
                dominated_worlds=beaten,
            )
        )
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def format_table(summaries: Sequence[Summary]) -> str:
    """A plain-text table: per horizon and policy setting, the percentiles over worlds."""
    head = (
        f"{'horizon':7s} {'policy':11s} {'setting':20s} {'worlds':>6s}   "
        f"{'hit p10':>7s} {'p50':>6s} {'p90':>6s} {'worst':>6s}   "
        f"{'cost p10':>8s} {'p50':>6s} {'p90':>6s} {'worst':>7s}  viol"
    )
    lines = [head, "-" * len(head)]
    for s in summaries:
        mark = "*" if s.default else " "
        lines.append(
            f"{s.horizon:7s} {s.policy:10s}{mark} {f'{s.knob}={s.value:g}':20s} {s.worlds:6d}   "
            f"{_pct(s.hit_p10):>7s} {_pct(s.hit_p50):>6s} {_pct(s.hit_p90):>6s} "
            f"{_pct(s.hit_worst):>6s}   {_x(s.cost_p10):>8s} {_x(s.cost_p50):>6s} "
            f"{_x(s.cost_p90):>6s} {_x(s.cost_worst):>7s}  {s.violations}"
        )
    return "\n".join(lines)


def format_dominance(ds: Sequence[Dominance]) -> str:
    """A line per baseline setting: does it dominate the predictive default?"""
    lines = ["baselines against the predictive default (medians on the worlds both ran):"]
    for d in ds:
        verdict = "DOMINATES at the median" if d.dominates_median else "does not dominate"
        lines.append(
            f"  {d.horizon:5s} {d.policy:9s} {d.value:<5g} {verdict}: hit {_pct(d.hit_p50)} "
            f"@ {_x(d.cost_p50)} vs ours {_pct(d.ours_hit_p50)} @ {_x(d.ours_cost_p50)}; "
            f"better on {d.dominated_worlds}/{d.worlds} worlds"
        )
    return "\n".join(lines)


def plot(rows: Sequence[WorldRow], path: Path) -> Path:
    """One PNG, a panel per horizon: cost / oracle against the hit rate of predictable
    connects, a point per policy setting at the medians over worlds, bars from the 10th
    to the 90th percentile, a policy's settings joined by a line (one colour per policy
    in both panels; the legend says on how many worlds each ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sums = summarize(rows)
    horizons = [h for h in worlds.HORIZONS if any(s.horizon == h for s in sums)]
    fig, axes = plt.subplots(1, max(1, len(horizons)), figsize=(7 * max(1, len(horizons)), 5))
    axes = list(axes) if len(horizons) > 1 else [axes]
    for ax, horizon in zip(axes, horizons, strict=False):
        for i, pol in enumerate(SETTINGS):
            pts = [
                s
                for s in sums
                if s.horizon == horizon and s.policy == pol and s.hit_p50 is not None
                and s.cost_p50 is not None
            ]  # fmt: skip
            if not pts:
                continue
            xs = [s.cost_p50 or 0.0 for s in pts]
            ys = [(s.hit_p50 or 0.0) * 100 for s in pts]
            lo_x = [x - (s.cost_p10 or x) for x, s in zip(xs, pts, strict=True)]
            hi_x = [(s.cost_p90 or x) - x for x, s in zip(xs, pts, strict=True)]
            lo_y = [y - (s.hit_p10 or 0.0) * 100 for y, s in zip(ys, pts, strict=True)]
            hi_y = [(s.hit_p90 or 0.0) * 100 - y for y, s in zip(ys, pts, strict=True)]
            xerr, yerr = [lo_x, hi_x], [lo_y, hi_y]
            label = f"{pol} ({plural(max(s.worlds for s in pts), 'world')})"
            ax.errorbar(
                xs, ys, xerr=xerr, yerr=yerr, marker="o", capsize=3, label=label, alpha=0.8,
                color=f"C{i}",
            )  # fmt: skip
        ax.plot([1.0], [100.0], marker="X", markersize=12, color="black", label="oracle")
        ax.set_xscale("log")
        ax.set_xlabel("cost / oracle (median; bars 10th-90th percentile over worlds)")
        ax.set_ylabel("hit rate of predictable connects (%)")
        ax.set_title(f"{horizon} horizon")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- rows and the run


def load_rows(path: Path) -> list[WorldRow]:
    """The rows of a ``worlds.json``.

    Raises:
        BenchError: the file does not hold such rows.
    """
    what = f"{path} is not a worlds.json of bench worlds"
    try:
        data = json.loads(path.read_text())
        names = {f.name for f in fields(WorldRow)}
        return [WorldRow(**{k: r[k] for k in names}) for r in data["rows"]]
    except (ValueError, KeyError, TypeError) as e:
        raise BenchError(f"{what}: {e!r}") from e


def _write(path: Path, which: str, rows: list[WorldRow]) -> None:
    write_atomic(
        path,
        json.dumps(
            {
                "set": which,
                "summary": [asdict(s) for s in summarize(rows)],
                "dominance": [asdict(d) for d in dominance(rows)],
                "rows": [asdict(r) for r in rows],
            },
            indent=1,
        ),
    )


def run_worlds(
    seeds: Sequence[int], which: Set, horizons: list[worlds.Horizon], policies: list[str],
    outdir: Path, *, jobs: int, redis_url: str | None, resume: bool = False,
    echo: Callable[[str], Any] = print,
) -> list[WorldRow]:  # fmt: skip
    """Replay ``policies`` (each over its settings, :func:`plan`) on the worlds ``seeds``
    of the set ``which``; keep the rows in ``outdir``/worlds.json after every replay, then
    plot them (worlds.png) and ``echo`` the table and the dominance lines.

    Args:
        resume: keep the rows of an earlier worlds.json and run only the missing replays
            (refused when it holds rows outside this selection: nothing is dropped).
        echo: called with each line of text (progress, then the results).

    Returns:
        Every row, kept and new.

    Raises:
        BenchError: with ``resume``, the earlier worlds.json does not hold rows, or holds
            rows outside this selection; or a worker process died.
    """
    tasks = plan(seeds, horizons, policies)
    outdir.mkdir(parents=True, exist_ok=True)
    results = outdir / "worlds.json"
    rows: list[WorldRow] = []
    if resume and results.is_file():
        todo = {(t.seed, t.horizon, t.policy, t.value) for t in tasks}
        rows = load_rows(results)
        outside = [r for r in rows if r.key() not in todo or r.set != which]
        if outside:
            raise BenchError(
                f"{results} holds {len(outside)} rows outside this run's selection (another "
                "--set, --worlds, --horizon or --policy); --resume would drop them: run the "
                "same selection again, or use another --out"
            )
        have = {r.key() for r in rows}
        tasks = [t for t in tasks if (t.seed, t.horizon, t.policy, t.value) not in have]
    started = time.perf_counter()
    echo(
        f"{plural(len(tasks), 'replay')} on {plural(len(seeds), which + ' world')} "
        f"({len(rows)} kept)"
    )

    def done(row: WorldRow) -> None:
        rows.append(row)
        _write(results, which, rows)
        hit = _pct(row.hit_rate)
        echo(
            f"  {len(rows):5d} world {row.seed} {row.horizon:5s} {row.policy:10s} "
            f"{row.knob}={row.value:<6g} hit {hit:>6s} cost {_x(row.cost_over_oracle):>7s} "
            f"({row.wall_s:.1f}s)"
        )

    run_replays(
        run_one,
        tasks,
        done,
        jobs=jobs,
        redis_url=redis_url,
        lost_hint="the rows done so far are in worlds.json, and the same command with "
        "--resume runs the rest",
    )
    _write(results, which, rows)
    png = plot(rows, outdir / "worlds.png") if rows else None
    echo(format_table(summarize(rows)))
    echo(format_dominance(dominance(rows)))
    echo(
        f"{plural(len(tasks), 'replay')} in {time.perf_counter() - started:.0f}s on "
        f"{plural(os.cpu_count() or 1, 'core')}; rows: {results}"
        + (f"; plot: {png}" if png else "")
    )
    return rows
