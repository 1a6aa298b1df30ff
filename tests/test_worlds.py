"""Randomized worlds (``provisioner.sim.worlds``) and their bench (``bench worlds``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
from collections import defaultdict
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provisioner.bench import worlds as bench
from provisioner.cli import bench as bench_cli
from provisioner.cli import bench_worlds as worlds_cli
from provisioner.sim import worlds
from provisioner.sim.workload import Workload

#: The documented ranges: (low, high, log-uniform).
RANGES = {
    "boot_mean_s": (2.0, 180.0, True),
    "boot_spread": (0.0, 0.9, False),
    "slow_tail_p": (0.0, 0.2, False),
    "slow_tail_factor": (1.5, 5.0, False),
    "sessions_per_boot": (0.5, 20.0, True),
    "burst_mean": (1.0, 5.0, True),
    "spikes_per_100_boots": (0.0, 2.0, False),
    "spike_factor": (2.0, 10.0, False),
    "spike_len_boots": (1.0, 30.0, True),
    "wave_amplitude": (0.0, 0.9, False),
    "wave_period_boots": (50.0, 2000.0, True),
    "activity_gap_mean_s": (1.0, 60.0, True),
    "activity_extra_mean": (0.0, 10.0, False),
    "connect_p": (0.02, 0.6, True),
    "lead_min_boots": (0.1, 5.0, True),
    "lead_max_boots": (0.1, 5.0, True),
    "session_median_boots": (0.3, 100.0, True),
    "session_sigma": (0.2, 1.2, False),
    "returns_mean": (0.0, 5.0, False),
    "return_gap_boots": (1.0, 100.0, True),
    "cold_p": (0.0, 0.4, False),
    "fail_p": (0.0, 0.15, False),
    "lost_ready_p": (0.0, 0.1, False),
    "error_5xx_p": (0.0, 0.5, False),
}


def test_the_seed_sets_are_disjoint_and_the_default_is_held_out() -> None:
    assert not set(worlds.TUNING_SEEDS) & set(worlds.HELD_OUT_SEEDS)
    assert len(worlds.TUNING_SEEDS) == len(worlds.HELD_OUT_SEEDS) == 1000
    opt = next(p for p in worlds_cli.command.params if p.name == "which")
    assert opt.default == "held-out"
    assert bench.SEEDS["held-out"] is worlds.HELD_OUT_SEEDS
    assert bench.set_of(worlds.TUNING_SEEDS[0]) == "tuning"
    assert bench.set_of(worlds.HELD_OUT_SEEDS[-1]) == "held-out"


def test_draws_are_reproducible_per_seed() -> None:
    assert worlds.draw_world(7) == worlds.draw_world(7)
    assert worlds.draw_world(7) != worlds.draw_world(8)
    p = worlds.draw_world(100_001)
    a, b = worlds.build_world(p, "short"), worlds.build_world(p, "short")
    assert a.events == b.events and a.boot == b.boot


def test_draws_cover_the_documented_ranges() -> None:
    """Over 500 seeds every parameter stays in its range and comes near both ends (the
    expected gap to an end is 1/501 of the range, uniform or in the logarithm); the fault
    probabilities are 0 in about half the worlds."""
    draws = [worlds.draw_world(s) for s in worlds.TUNING_SEEDS[:500]]
    assert {f.name for f in dataclasses.fields(worlds.WorldParams)} - set(RANGES) == {
        "seed",
        "wave_phase",
    }
    for name, (lo, hi, log) in RANGES.items():
        xs = [getattr(p, name) for p in draws]
        assert lo <= min(xs) and max(xs) <= hi, name
        if name in ("fail_p", "lost_ready_p", "error_5xx_p"):
            zero = sum(x == 0.0 for x in xs)
            assert 200 < zero < 300, (name, zero)
            xs = [x for x in xs if x > 0.0]
        f = (lambda x: math.log(x)) if log else (lambda x: x)
        span = f(hi) - f(lo)
        # the smaller of the two lead draws is rarely near the top, the larger rarely
        # near the bottom
        if name != "lead_max_boots":
            assert f(min(xs)) - f(lo) < 0.03 * span, (name, min(xs))
        if name != "lead_min_boots":
            assert f(hi) - f(max(xs)) < 0.03 * span, (name, max(xs))
    assert all(p.lead_min_boots <= p.lead_max_boots for p in draws)


def _world(**changes: float) -> worlds.WorldParams:
    """A world without spikes, waves or bursts, with ``changes``."""
    base = dataclasses.replace(
        worlds.draw_world(5),
        boot_mean_s=20.0,
        spikes_per_100_boots=0.0,
        wave_amplitude=0.0,
        burst_mean=1.0,
        sessions_per_boot=5.0,
        session_median_boots=0.5,
        return_gap_boots=1.0,
        activity_extra_mean=3.0,
    )
    return dataclasses.replace(base, **changes)


def _first_activity(wl: Workload) -> dict[str, float]:
    seen: dict[str, float] = {}
    for ev in wl.events:
        if ev.kind == "activity":
            seen.setdefault(ev.user_id, ev.t_s)
    return seen


def test_the_horizons() -> None:
    p = worlds.draw_world(100_003)
    short, long = worlds.build_world(p, "short"), worlds.build_world(p, "long")
    assert short.duration_s == pytest.approx(100 * p.boot_mean_s)
    assert long.duration_s >= short.duration_s
    assert len(long.sessions()) >= worlds.LONG_MIN_SESSIONS
    assert max(ev.t_s for ev in long.events) <= long.duration_s
    with pytest.raises(ValueError, match="horizon"):
        worlds.build_world(p, "medium")  # type: ignore[arg-type]


def test_the_boot_profile_is_the_worlds() -> None:
    p = _world(boot_spread=0.5, slow_tail_p=0.1, slow_tail_factor=3.0, fail_p=0.05)
    b = worlds.build_world(p, "short").boot
    assert (b.min_s, b.max_s) == pytest.approx((10.0, 30.0))
    assert (b.slow_tail_p, b.slow_tail_factor, b.fail_p) == (0.1, 3.0, 0.05)
    assert b.lost_ready_p == p.lost_ready_p


def test_sessions_leads_and_cold_connects_follow_the_parameters() -> None:
    """One visit per user (no returns): connects per boot time, the lead from the last
    activity, the median session and the cold share come out near their parameters."""
    p = _world(returns_mean=0.0, cold_p=0.3, connect_p=0.4, lead_min_boots=0.5,
               lead_max_boots=2.0, session_median_boots=3.0)  # fmt: skip
    wl = worlds.build_world(p, "long")
    sessions = wl.sessions()
    per_boot = len(sessions) / (wl.duration_s / p.boot_mean_s)
    assert per_boot == pytest.approx(p.sessions_per_boot, rel=0.1)
    last_activity: dict[str, float] = {}
    leads, cold, connects = [], 0, 0
    for ev in wl.events:
        if ev.kind == "activity":
            last_activity[ev.user_id] = ev.t_s
        elif ev.kind == "connect":
            connects += 1
            if ev.user_id in last_activity:
                leads.append((ev.t_s - last_activity[ev.user_id]) / p.boot_mean_s)
            else:
                cold += 1
    assert cold / connects == pytest.approx(0.3, abs=0.03)
    assert min(leads) >= 0.5 and max(leads) <= 2.0
    assert statistics.mean(leads) == pytest.approx(1.25, abs=0.05)
    ended = [s.duration_s for s in sessions if s.disconnect_s < wl.duration_s]
    assert statistics.median(ended) / p.boot_mean_s == pytest.approx(3.0, rel=0.1)


def test_users_return() -> None:
    """Every visit connects, none is cold: a user's sessions are 1 + Poisson(returns_mean)
    (the horizon cuts a few)."""
    p = _world(returns_mean=3.0, connect_p=0.6, cold_p=0.0)
    wl = worlds.build_world(p, "long")
    per_user: dict[str, int] = defaultdict(int)
    for s in wl.sessions():
        per_user[s.user_id] += 1
    users = _first_activity(wl)
    assert set(per_user) <= set(users)
    # each of the 1 + returns visits connects with probability connect_p
    assert sum(per_user.values()) / len(users) == pytest.approx(0.6 * 4.0, rel=0.1)
    assert max(per_user.values()) >= 6
    none = _world(returns_mean=0.0, connect_p=0.6, cold_p=0.0)
    assert max(_sessions_per_user(worlds.build_world(none, "short")).values()) == 1


def _sessions_per_user(wl: Workload) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for s in wl.sessions():
        out[s.user_id] += 1
    return out


def test_spikes_raise_the_arrivals() -> None:
    calm = worlds.build_world(_world(), "short")
    spiky = worlds.build_world(_world(spikes_per_100_boots=2.0, spike_factor=8.0), "short")
    assert spiky.params["spikes"] > 0 and calm.params["spikes"] == 0
    assert len(_first_activity(spiky)) > 1.3 * len(_first_activity(calm))


def test_the_budget_plan() -> None:
    """The default 200 worlds: the predictive default on every short horizon, the 10
    baseline settings on the first 40, the long horizon on 20 (baselines on 10), the
    long replays first."""
    seeds = list(worlds.HELD_OUT_SEEDS[:200])
    tasks = bench.plan(seeds, worlds.HORIZONS, list(bench.SETTINGS))
    short = [t for t in tasks if t.horizon == "short"]
    long = [t for t in tasks if t.horizon == "long"]
    assert tasks == long + short
    assert len([t for t in short if t.policy == "predictive"]) == 200
    assert len(short) == 200 + 40 * 10
    assert {t.seed for t in short if t.policy != "predictive"} == set(seeds[:40])
    assert len(long) == 20 + 10 * 3
    assert {t.seed for t in long if t.policy == "static"} == set(seeds[:10])
    assert [t.policy for t in bench.plan(seeds[:1], ["short"], ["predictive"])] == ["predictive"]


def test_percentiles_and_dominance() -> None:
    assert bench.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert bench.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 10) == pytest.approx(1.4)

    def row(seed: int, policy: str, value: float, hit: float, cost: float) -> bench.WorldRow:
        return bench.WorldRow(
            set="held-out", seed=seed, horizon="short", policy=policy, knob="k", value=value,
            default=value == bench.DEFAULTS[policy], sessions=10, events=10, duration_s=1.0,
            tick_s=1.0, connects=10, connects_predictable=10, misses_predictable=0,
            connects_cold=0, misses_cold=0, hit_rate=hit, node_seconds=1.0,
            oracle_node_seconds=1.0, cost_over_oracle=cost, violations=0, wall_s=0.0, params={},
        )  # fmt: skip

    rows = [row(s, "predictive", 33.3, 0.9, 2.0) for s in (1, 2, 3)]
    rows += [row(1, "static", 4.0, 0.95, 1.5), row(2, "static", 4.0, 0.95, 1.5)]
    rows += [row(s, "static", 8.0, 1.0, 3.0) for s in (1, 2, 3)]
    (four, eight) = bench.dominance(rows)
    assert (four.value, four.worlds, four.dominates_median, four.dominated_worlds) == (
        4.0, 2, True, 2,
    )  # fmt: skip
    assert (eight.dominates_median, eight.dominated_worlds) == (False, 0)
    (ours, *_) = bench.summarize(rows)
    assert (ours.policy, ours.worlds, ours.hit_p50, ours.cost_worst) == ("predictive", 3, 0.9, 2.0)


def test_bench_worlds_end_to_end(redis_url: str, tmp_path: Path) -> None:
    """Two held-out worlds, short horizon, the predictive default, on the test's Redis:
    worlds.json holds the rows and the percentiles; --resume runs nothing again."""
    args = ["--worlds", "2", "--horizon", "short", "--policy", "predictive", "--jobs", "1",
            "--redis-url", redis_url, "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(worlds_cli.command, args)
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads((tmp_path / "worlds.json").read_text())
    assert data["set"] == "held-out"
    rows = data["rows"]
    assert sorted(r["seed"] for r in rows) == list(worlds.HELD_OUT_SEEDS[:2])
    for r in rows:
        assert r["policy"] == "predictive" and r["default"] and r["violations"] == 0
        assert r["params"] == dataclasses.asdict(worlds.draw_world(r["seed"]))
        assert 0.0 <= r["hit_rate"] <= 1.0 and r["cost_over_oracle"] > 0
    (summary,) = data["summary"]
    for key in ("hit_p10", "hit_p50", "hit_p90", "hit_worst"):
        assert min(r["hit_rate"] for r in rows) <= summary[key] <= max(r["hit_rate"] for r in rows)
    assert summary["cost_worst"] == max(r["cost_over_oracle"] for r in rows)
    assert summary["worlds"] == 2
    assert (tmp_path / "worlds.png").stat().st_size > 0
    again = CliRunner().invoke(worlds_cli.command, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert "0 replays on 2 held-out worlds (2 kept)" in again.output
    # break-test finding: a narrower --resume rewrote worlds.json without the rows outside
    # its selection; it is refused and the file is left as it was
    before = (tmp_path / "worlds.json").read_text()
    narrower = [*args[:1], "1", *args[2:], "--resume"]
    refused = CliRunner().invoke(worlds_cli.command, narrower)
    assert refused.exit_code != 0 and "outside this run's selection" in refused.output
    assert (tmp_path / "worlds.json").read_text() == before


def test_bench_worlds_is_a_bench_command() -> None:
    group = bench_cli.command
    with click.Context(group) as ctx:
        assert "worlds" in group.list_commands(ctx)
        assert group.get_command(ctx, "worlds") is worlds_cli.command


def test_bench_worlds_does_not_log_the_emulated_api_faults(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Break-test finding: with --jobs 1 the leader's warnings of the 503s a world draws
    (emulated, counted in its scorecard) were printed among the progress lines."""
    assert worlds.draw_world(2).error_5xx_p > 0.2
    loggers = [logging.getLogger(n) for n in ("provisioner", "provisioner.core.leader")]
    levels = [lg.level for lg in loggers]
    args = ["--worlds", "2", "--set", "tuning", "--horizon", "short", "--policy", "predictive",
            "--jobs", "1", "--redis-url", redis_url, "--out", str(tmp_path)]  # fmt: skip
    try:
        with caplog.at_level(logging.WARNING):
            result = CliRunner().invoke(worlds_cli.command, args)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    assert result.exit_code == 0, (result.output, result.exception)
    assert not [r for r in caplog.records if "emulated" in r.getMessage()]


def test_result_files_are_replaced_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-test finding: worlds.json was rewritten in place after every replay, and a kill
    mid-write left it empty, so --resume lost every row. A failed write leaves the old
    file whole and no temporary file behind."""
    import os

    from provisioner.bench.files import write_atomic

    path = tmp_path / "worlds.json"
    write_atomic(path, '{"rows": [1]}')
    assert path.read_text() == '{"rows": [1]}'

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, '{"rows": [1, 2]}')
    assert path.read_text() == '{"rows": [1]}'
    assert [p.name for p in tmp_path.iterdir()] == ["worlds.json"]
