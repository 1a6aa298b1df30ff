"""``provisioner demo``: the whole stack on real Redis, ending in a scorecard.

It starts (unless ``--redis-url`` is given) a private redis-server from PATH on a
free port, then as separate processes the mock Node API and ``--replicas`` worker
replicas (``provisioner run``), then in this process the scorecard's listener and the
user simulator, which replays a scenario compressed by ``--time-scale``.  After
``--duration`` wall seconds it stops the traffic, reads the mock API's ledger, prints
the scorecard and stops everything it started.

Every duration handed to the replicas (keep-alive, default boot time, rate half-life) is
the scenario's value divided by the time scale, so the policy sees the same world, only
faster; the user TTL and the predictive policy's miss cost are in boot times, which the
time scale does not change.

With ``--replay`` the same world minutes are then replayed by the fast replay benchmark
(:mod:`provisioner.sim.replay`: the same scripts and policy on a virtual clock, the same
world-time knobs, the leader ticking as often in world time as the live one) and both
scorecards are printed side by side: the live run should reproduce the replay's miss rate
within a few points.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioner.core.logutil import plural, set_levels
from provisioner.harness import Procs, free_port, private_redis, wait_http
from provisioner.policies.predictive import DEFAULT_MISS_COST_B
from provisioner.policies.registry import make_policy, run_knobs
from provisioner.sim import scenarios
from provisioner.sim.progress import watch
from provisioner.sim.replay import ReplayConfig, replay
from provisioner.sim.scorecard import Scorecard, ScoreListener
from provisioner.sim.simulate import run_simulation
from provisioner.sim.workload import Workload

__all__ = [
    "DemoConfig",
    "compare_lines",
    "live_tick_s",
    "replay_same",
    "run_demo",
]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Attributes:
        scenario: a name of :data:`provisioner.sim.scenarios.NAMES`.
        seed: scenario and mock API seed.
        duration_s: wall seconds of traffic.
        time_scale: world seconds per wall second.
        replicas: worker replicas to start.
        redis_url: an existing Redis; None starts a private server.
        policy: the replicas' policy.
        keep_alive_s: world seconds a surplus idle node may stay.
        miss_cost_b: the predictive policy's knob, boot times per miss.
        channel_prefix: prefix of every channel name.
        logdir: where the processes' logs go (None: a temporary folder).
        pool: the pool the replicas run (keys ``prov:{pool}:...``).
    """

    scenario: str = "steady"
    seed: int = 1
    duration_s: float = 60.0
    time_scale: float = 10.0
    replicas: int = 2
    redis_url: str | None = None
    policy: str = "predictive"
    keep_alive_s: float = 60.0
    miss_cost_b: float = DEFAULT_MISS_COST_B
    channel_prefix: str = ""
    logdir: str | None = None
    pool: str = "default"


def _say(text: str) -> None:
    """A line for the person watching, on stderr (stdout is left to the scorecard)."""
    print(text, file=sys.stderr, flush=True)


async def _start_stack(cfg: DemoConfig, redis_url: str, procs: Procs, wl: Workload) -> str:
    """Start the mock Node API and the replicas; return the API's URL once all answer."""
    scale = cfg.time_scale
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = dict(
        os.environ, PROVISIONER_REDIS_URL=redis_url, PROVISIONER_POOL=cfg.pool, PYTHONUNBUFFERED="1"
    )
    prefix = ["--channel-prefix", cfg.channel_prefix]
    boot = wl.boot
    procs.start(
        "mock-node-api",
        [*prefix, "mock-node-api", "--port", str(api_port), "--seed", str(cfg.seed),
         "--boot-min", str(boot.min_s), "--boot-max", str(boot.max_s),
         "--boot-fail-p", str(boot.fail_p), "--lost-ready-p", str(boot.lost_ready_p),
         "--slow-tail-p", str(boot.slow_tail_p),
         "--slow-tail-factor", str(max(1.0, boot.slow_tail_factor)),
         "--time-scale", str(scale)],
        env,
    )  # fmt: skip
    await wait_http(f"{api_url}/healthz")
    metrics_ports = []
    for i in range(cfg.replicas):
        port = free_port()
        metrics_ports.append(port)
        procs.start(
            f"replica-{i + 1}",
            [*prefix, "run", "--node-api-url", api_url, "--metrics-port", str(port),
             "--metrics-host", "127.0.0.1", "--replica-id", f"demo-replica-{i + 1}",
             "--policy", cfg.policy, "--keep-alive", str(cfg.keep_alive_s / scale),
             "--half-life", str(60.0 / scale),
             "--default-boot", str(30.0 / scale), "--tick", str(live_tick_s(scale)),
             "--lease-ttl", "3", "--miss-cost-boots", str(cfg.miss_cost_b)],
            env,
        )  # fmt: skip
    for port in metrics_ports:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
    _say(
        f"demo: redis {redis_url}, pool {cfg.pool}, mock API {api_url}, "
        f"{plural(cfg.replicas, 'replica')} "
        f"(metrics {', '.join(str(p) for p in metrics_ports)}), logs in {procs.logdir}"
        + ("" if cfg.logdir else " (removed at the end unless the demo fails; --logdir keeps them)")
    )
    return api_url


async def _run(cfg: DemoConfig, redis_url: str, procs: Procs, wl: Workload) -> Scorecard:
    scale = cfg.time_scale
    api_url = await _start_stack(cfg, redis_url, procs, wl)
    listener = ScoreListener(redis_url, cfg.channel_prefix, boot_time_s=wl.boot.mean_s / scale)
    await listener.start()
    _say(
        f"demo: scenario {wl.name} (seed {cfg.seed}) at x{scale:g} for {cfg.duration_s:g}s "
        f"of wall time ({cfg.duration_s * scale / 60:.1f} world minutes)"
    )
    wall_s = min(cfg.duration_s, wl.duration_s / scale)
    shown = asyncio.create_task(
        watch(listener, redis_url, cfg.pool, cfg.channel_prefix, wall_s, scale)
    )
    try:
        sim = await run_simulation(
            wl, redis_url, time_scale=scale, channel_prefix=cfg.channel_prefix,
            max_wall_s=cfg.duration_s,
        )  # fmt: skip
    finally:
        shown.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await shown
    dead = procs.dead()
    if dead:
        _say(f"demo: WARNING processes exited early: {', '.join(dead)}")
    await asyncio.sleep(0.5)
    card = await listener.finish(api_url)
    _say(
        f"demo: published {plural(len(sim.published), 'event')}; "
        f"{plural(len(sim.connected), 'user')} still connected at the end"
    )
    return card


def live_tick_s(time_scale: float) -> float:
    """The replicas' leader tick in wall seconds at ``time_scale``: 5 world seconds,
    within [0.1, 1] wall seconds."""
    return max(0.1, min(1.0, 5.0 / time_scale))


def replay_same(cfg: DemoConfig, redis_url: str, wl: Workload) -> Scorecard:
    """The fast replay of the world minutes a live demo of ``cfg`` plays.

    The workload is cut at ``duration_s * time_scale`` world seconds; the policy gets the
    replicas' knobs (:func:`provisioner.policies.registry.run_knobs`) in world units; the leader
    ticks every ``live_tick_s * time_scale`` world seconds; no user is premium (the live
    demo marks none).

    Returns:
        The replay's scorecard (node-seconds in world seconds).
    """
    world_s = min(wl.duration_s, cfg.duration_s * cfg.time_scale)
    cut = dataclasses.replace(
        wl, events=[e for e in wl.events if e.t_s < world_s], duration_s=world_s
    )
    # the replicas' knobs (see _run), in world units
    knobs = run_knobs(cfg.policy, miss_cost_b=cfg.miss_cost_b, keep_alive=cfg.keep_alive_s)
    rcfg = ReplayConfig(tick_s=live_tick_s(cfg.time_scale) * cfg.time_scale, premium_share=0.0)
    restore = set_levels({"provisioner": logging.WARNING})  # the replay's leader is quiet
    try:
        return asyncio.run(replay(cut, make_policy(cfg.policy, **knobs), redis_url, rcfg)).scorecard
    finally:
        restore()


def run_demo(cfg: DemoConfig, with_replay: bool = False) -> tuple[Scorecard, Scorecard | None]:
    """Run the demo (see the module docstring).

    Returns:
        The live scorecard and, with ``with_replay``, the replay's of the same minutes.

    Raises:
        click.ClickException: no redis-server, or a component did not start (from
            :mod:`provisioner.harness`).
    """
    wl = scenarios.build_live(cfg.scenario, seed=cfg.seed)
    with private_redis(cfg.redis_url) as url:
        logdir = Path(cfg.logdir or tempfile.mkdtemp(prefix="provisioner-demo-"))
        logdir.mkdir(parents=True, exist_ok=True)
        procs = Procs(logdir)
        try:
            live = asyncio.run(_run(cfg, url, procs, wl))
        except BaseException:
            _say(f"demo: logs kept in {logdir}")
            raise
        finally:
            procs.stop_all()
        if not cfg.logdir:  # a temporary folder: gone once the demo has its scorecard
            shutil.rmtree(logdir, ignore_errors=True)
        if not with_replay:
            return live, None
        _say("demo: replaying the same world minutes on a virtual clock")
        return live, replay_same(cfg, url, wl)


def compare_lines(live: Scorecard, rep: Scorecard) -> str:
    """Live and replay figures side by side."""

    def cost(c: Scorecard) -> str:
        return "-" if c.cost_over_oracle is None else f"{c.cost_over_oracle:.2f}x"

    rows = [
        ("connects", f"{live.connects}", f"{rep.connects}"),
        ("misses", f"{live.misses} ({live.miss_rate:.1%})", f"{rep.misses} ({rep.miss_rate:.1%})"),
        ("cost/oracle", cost(live), cost(rep)),
        ("violations", f"{live.violations}", f"{rep.violations}"),
    ]
    out = [f"{'':14s} {'live':>14s} {'replay':>14s}"]
    out += [f"{name:14s} {a:>14s} {b:>14s}" for name, a, b in rows]
    return "\n".join(out)
