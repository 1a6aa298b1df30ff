"""Scaling policies (docs/design.md#4): the base-stock target and the baselines.

Policies are pure: each test builds :class:`PoolSnapshot` objects by hand and checks
the target against the formula ``ceil(lambda*B + z*sqrt(lambda*B)) + min_spare``,
capped at ``max_spare``, computed here independently.
"""

from __future__ import annotations

import math

import pytest

from provisioner.policies.base import Observation, PoolSnapshot
from provisioner.policies.basestock import BaseStockConfig, BaseStockPolicy
from provisioner.policies.reactive import ReactivePolicy
from provisioner.policies.registry import make_policy
from provisioner.policies.static import StaticPoolPolicy


def snap(**stats: int) -> PoolSnapshot:
    return PoolSnapshot(
        booting=0,
        ready=0,
        allocated=0,
        terminating=0,
        waiting=0,
        active=0,
        intents=0,
        unknown=0,
        stats=dict(stats),
    )


def obs(t_s: float, boot_s: float = 30.0, **stats: int) -> Observation:
    return Observation(now_ms=int(t_s * 1000), snapshot=snap(**stats), boot_s=boot_s)


def base_stock(lam: float, boot_s: float, z: float, min_spare: int, cap: int = 500) -> int:
    mean = lam * boot_s
    return min(cap, math.ceil(mean + z * math.sqrt(mean)) + min_spare)


def ewma_weight(dt_s: float, half_life_s: float) -> float:
    return 1.0 - 0.5 ** (dt_s / half_life_s)


# -- base stock ---------------------------------------------------------------------------


def test_no_history_keeps_min_spare() -> None:
    for min_spare in (0, 1, 4):
        p = BaseStockPolicy(BaseStockConfig(min_spare=min_spare, keep_alive_s=42.0))
        d = p.decide(obs(0, connects=100, users_activated=50, connects_predictable=10))
        # the first tick only sets the counters' baselines: no rate yet
        assert d.target_spare == min_spare
        assert d.keep_alive_s == 42.0
        assert d.inputs["lambda"] == 0.0


@pytest.mark.parametrize(
    ("lam", "boot_s", "z", "min_spare"),
    [(2.0, 10.0, 1.64, 1), (0.05, 30.0, 1.64, 1), (1.0, 30.0, 2.33, 0), (0.3, 7.5, 0.0, 2)],
)
def test_target_is_the_base_stock_level(
    lam: float, boot_s: float, z: float, min_spare: int
) -> None:
    p = BaseStockPolicy(BaseStockConfig(z=z, min_spare=min_spare))
    p.restore({"lambda_connects": str(lam)})
    d = p.decide(obs(0, boot_s=boot_s))
    assert d.target_spare == base_stock(lam, boot_s, z, min_spare)
    assert d.inputs["lambda"] == pytest.approx(lam)
    assert d.inputs["demand_in_lead_time"] == pytest.approx(lam * boot_s, abs=1e-3)
    assert d.inputs["boot_s"] == boot_s and d.inputs["z"] == z


def test_worked_example() -> None:
    # lambda 2/s, B 10 s: mean 20, 20 + 1.64*sqrt(20) = 27.33 -> 28, + min_spare 1 = 29
    p = BaseStockPolicy(BaseStockConfig(z=1.64, min_spare=1))
    p.restore({"lambda_connects": "2"})
    assert p.decide(obs(0, boot_s=10.0)).target_spare == 29


def test_target_is_capped_at_max_spare() -> None:
    p = BaseStockPolicy(BaseStockConfig(max_spare=7))
    p.restore({"lambda_connects": "50"})
    d = p.decide(obs(0, boot_s=30.0))
    assert d.target_spare == 7
    assert d.inputs["demand_in_lead_time"] == pytest.approx(1500.0)


def test_rising_connect_counter_raises_the_target() -> None:
    half_life = 5.0
    p = BaseStockPolicy(BaseStockConfig(half_life_s=half_life, min_spare=1))
    t1 = p.decide(obs(0, connects=0)).target_spare
    d2 = p.decide(obs(10, connects=50))  # 5 connects/s over 10 s
    lam = ewma_weight(10, half_life) * 5.0
    assert d2.inputs["lambda_connects"] == pytest.approx(lam, abs=1e-4)
    assert d2.target_spare == base_stock(lam, 30.0, 1.64, 1)
    assert d2.target_spare > t1
    d3 = p.decide(obs(20, connects=100))  # same rate again: the EWMA moves closer to 5
    lam3 = lam + ewma_weight(10, half_life) * (5.0 - lam)
    assert d3.inputs["lambda_connects"] == pytest.approx(lam3, abs=1e-4)
    assert d3.target_spare >= d2.target_spare
    # demand stops: the rate decays and the target falls back
    d4 = p.decide(obs(80, connects=100))
    assert d4.inputs["lambda_connects"] < lam3 / 100
    assert d4.target_spare < d3.target_spare


@pytest.mark.parametrize("z", [0.0, 1.64, 2.5])
def test_base_stock_promises_its_target_until_the_decay_steps_it_down(z: float) -> None:
    """steady_until_ms (the replay's fast-forward): while no counter moves, every tick
    before the promised time keeps the target, and the target has stepped down by the
    first tick a second after it (its margin); with no demand the promise is for good."""
    p = BaseStockPolicy(BaseStockConfig(half_life_s=5.0, min_spare=1, z=z))
    p.decide(obs(0, connects=0))
    p.decide(obs(10, connects=50))
    grid = range(20_000, 200_000, 500)  # ms: the demand stopped at 20 s
    targets, promised = [], []
    for t in grid:
        targets.append(p.decide(obs(t / 1000, connects=100)).target_spare)
        promised.append(p.steady_until_ms(t))
    assert targets[0] > 3 and targets[-1] == 2  # it decayed step by step to c = 1
    for i, until in enumerate(promised):
        later = [(u, x) for u, x in zip(grid[i + 1 :], targets[i + 1 :], strict=True)]
        assert all(x == targets[i] for u, x in later if u < until)
        after = [x for u, x in later if u >= until + 1000]
        if after and until < math.inf:
            assert after[0] < targets[i] or targets[i] == 2
    # c = 1 left: no promise beyond 50 half-lives (one update over more rounds the rate
    # to 0 where tick by tick it stays positive: the trace's first night showed it)
    assert promised[-1] == pytest.approx(grid[-1] + 50 * 5.0 * 1000)
    jump = BaseStockPolicy(BaseStockConfig(half_life_s=5.0, min_spare=1, z=z))
    jump.decide(obs(0, connects=0))
    jump.decide(obs(10, connects=50))
    jump.decide(obs(20, connects=100))
    assert jump.decide(obs(20 + 54 * 5.0, connects=100)).target_spare == 1  # the cliff
    assert targets[-1] == 2
    # review finding: chained 50-half-life jumps reached 0 (target 1) after ~1000
    # halvings, where tick by tick the decay stalls at a subnormal (target 2)
    chain = BaseStockPolicy(BaseStockConfig(half_life_s=5.0, min_spare=1, z=z))
    chain.decide(obs(0, connects=0))
    chain.decide(obs(10, connects=50))
    t, end, jumps = 20_000, 20_000 + 1200 * 5_000, 0
    got = chain.decide(obs(t / 1000, connects=100)).target_spare
    while t < end:  # as the replay: jump to the last tick before the promise, else tick
        until = chain.steady_until_ms(t)
        nxt = int(min(until, end)) // 2_500 * 2_500
        if nxt > t + 2_500:
            jumps += 1
        t = max(t + 2_500, nxt)
        got = chain.decide(obs(t / 1000, connects=100)).target_spare
    assert jumps >= 10 and got == 2
    stepwise = BaseStockPolicy(BaseStockConfig(half_life_s=5.0, min_spare=1, z=z))
    stepwise.decide(obs(0, connects=0))
    stepwise.decide(obs(10, connects=50))
    for t_ms in range(20_000, 20_000 + 1200 * 5_000, 2_500):  # 1200 half-lives, tick by tick
        last = stepwise.decide(obs(t_ms / 1000, connects=100)).target_spare
    assert last == 2
    idle = BaseStockPolicy()
    assert idle.steady_until_ms(0) <= 0  # no decision yet: no promise
    idle.decide(obs(0))
    assert idle.steady_until_ms(0) == math.inf  # no demand seen: min_spare for good


def test_faster_demand_means_a_larger_target() -> None:
    targets = []
    for per_10s in (0, 5, 20, 80):
        p = BaseStockPolicy(BaseStockConfig(half_life_s=1.0))
        p.decide(obs(0, connects=0))
        targets.append(p.decide(obs(10, connects=per_10s)).target_spare)
    assert targets == sorted(targets) and targets[0] < targets[-1]


def test_rising_activations_raise_the_target_before_any_connect() -> None:
    """Activity leads connects: the activation rate times the conversion so far."""
    half_life = 2.0
    p = BaseStockPolicy(BaseStockConfig(half_life_s=half_life, min_spare=1))
    p.decide(obs(0, users_activated=100, connects_predictable=50, connects=50))
    d = p.decide(obs(10, users_activated=300, connects_predictable=50, connects=50))
    act = ewma_weight(10, half_life) * 20.0  # 200 new active users in 10 s
    assert d.inputs["lambda_connects"] == 0.0
    assert d.inputs["activation_rate"] == pytest.approx(act, abs=1e-4)
    conv = 50 / 300
    assert d.inputs["conversion"] == pytest.approx(conv, abs=1e-4)
    assert d.inputs["lambda"] == pytest.approx(act * conv, abs=1e-4)
    assert d.target_spare == base_stock(act * conv, 30.0, 1.64, 1)
    assert d.target_spare > 1


def test_lambda_is_the_larger_estimate_and_conversion_is_capped() -> None:
    p = BaseStockPolicy(BaseStockConfig(half_life_s=1.0))
    p.decide(obs(0, users_activated=10, connects_predictable=40, connects=0))
    d = p.decide(obs(10, users_activated=20, connects_predictable=40, connects=5))
    assert d.inputs["conversion"] == 1.0  # 40/20 capped at 1
    assert d.inputs["lambda"] == pytest.approx(
        max(d.inputs["lambda_connects"], d.inputs["activation_rate"])
    )
    assert d.inputs["activation_rate"] > d.inputs["lambda_connects"] > 0


def test_counter_reset_and_clock_standing_still_change_nothing() -> None:
    p = BaseStockPolicy(BaseStockConfig(half_life_s=5.0))
    p.decide(obs(0, connects=0))
    d1 = p.decide(obs(10, connects=100))
    same_time = p.decide(obs(10, connects=1000))  # dt = 0: no update
    assert same_time.inputs["lambda_connects"] == d1.inputs["lambda_connects"]
    reset = p.decide(obs(20, connects=3))  # counters wiped: new baseline, no negative rate
    assert reset.inputs["lambda_connects"] == d1.inputs["lambda_connects"]
    after = p.decide(obs(30, connects=3))
    assert 0 <= after.inputs["lambda_connects"] < d1.inputs["lambda_connects"]


def test_restore_continues_from_the_last_leader() -> None:
    old = BaseStockPolicy(BaseStockConfig(half_life_s=5.0))
    old.decide(obs(0, connects=0, users_activated=0))
    last = old.decide(obs(10, connects=40, users_activated=80, connects_predictable=20))
    stored = {k: str(v) for k, v in last.inputs.items()} | {"target": str(last.target_spare)}
    new = BaseStockPolicy(BaseStockConfig(half_life_s=5.0))
    new.restore(stored)
    d = new.decide(obs(11, connects=40, users_activated=80, connects_predictable=20))
    assert d.inputs["lambda_connects"] == last.inputs["lambda_connects"]
    assert d.inputs["activation_rate"] == last.inputs["activation_rate"]
    assert d.target_spare == last.target_spare
    cold = BaseStockPolicy(BaseStockConfig(half_life_s=5.0))
    assert cold.decide(obs(11, connects=40)).target_spare < d.target_spare


@pytest.mark.parametrize(
    "last",
    [
        {},
        {"lambda_connects": "garbage"},
        {"lambda_connects": "nan"},
        {"lambda_connects": "inf"},
        {"activation_rate": "-inf"},
        {"lambda_connects": "-3"},
        {"activation_rate": "1e400"},
    ],
)
def test_restore_from_missing_or_corrupt_state_keeps_working(last: dict[str, str]) -> None:
    """A hand-edited or corrupt P:policy hash must not stop the new leader from scaling."""
    p = BaseStockPolicy(BaseStockConfig(min_spare=2))
    p.restore(last)
    d = p.decide(obs(0, users_activated=5, connects_predictable=5))
    assert d.target_spare == 2
    d = p.decide(obs(10, connects=10, users_activated=5, connects_predictable=5))
    assert math.isfinite(d.inputs["lambda"]) and d.target_spare >= 2


@pytest.mark.parametrize(
    "knobs",
    [
        {"half_life_s": 0.0},
        {"half_life_s": -1.0},
        {"z": -1.0},
        {"z": math.nan},
        {"min_spare": -1},
        {"max_spare": -1},
        {"keep_alive_s": -5.0},
        {"keep_alive_s": math.inf},
    ],
)
def test_base_stock_config_rejects_values_that_break_decide(knobs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BaseStockConfig(**knobs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make_policy("basestock", **knobs)


# -- baselines ------------------------------------------------------------------------------


def test_reactive_keeps_no_spare_whatever_the_demand() -> None:
    p = ReactivePolicy(keep_alive_s=3.0)
    p.restore({"lambda_connects": "100"})
    for t, connects in ((0, 0), (10, 1000), (20, 5000)):
        d = p.decide(obs(t, boot_s=12.0, connects=connects, users_activated=connects))
        assert (d.target_spare, d.keep_alive_s) == (0, 3.0)
        assert d.inputs == {"boot_s": 12.0}
    assert p.name == "reactive"


def test_static_pool_keeps_k_whatever_the_demand() -> None:
    p = StaticPoolPolicy(k=4, keep_alive_s=9.0)
    p.restore({"lambda_connects": "100"})
    for t, connects in ((0, 0), (10, 1000), (20, 0)):
        d = p.decide(obs(t, connects=connects))
        assert (d.target_spare, d.keep_alive_s) == (4, 9.0)
        assert d.inputs == {"k": 4}
    assert p.name == "static"


# -- make_policy ----------------------------------------------------------------------------


def test_make_policy_builds_each_policy_with_its_knobs() -> None:
    b = make_policy("basestock", z=2.0, min_spare=3, keep_alive_s=7, half_life_s=11, k=99)
    assert isinstance(b, BaseStockPolicy)
    assert b.config == BaseStockConfig(z=2.0, min_spare=3, keep_alive_s=7.0, half_life_s=11.0)
    assert isinstance(b.config.min_spare, int)  # knobs arrive as floats from the CLI
    assert b.decide(obs(0)).target_spare == 3
    r = make_policy("reactive", keep_alive_s=4)
    assert isinstance(r, ReactivePolicy) and r.keep_alive_s == 4.0
    s = make_policy("static", k=5, keep_alive_s=6)
    assert isinstance(s, StaticPoolPolicy) and (s.k, s.keep_alive_s) == (5, 6.0)
    assert isinstance(make_policy("basestock"), BaseStockPolicy)
    assert make_policy("static").decide(obs(0)).target_spare == 3


@pytest.mark.parametrize("name", ["", "BaseStock", "oracle", "Hybrid", " static", "reactive "])
def test_make_policy_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy(name)


def test_make_policy_rejects_a_negative_static_pool() -> None:
    with pytest.raises(ValueError):
        make_policy("static", k=-1)


def test_run_knobs_map_the_run_options_to_each_policy() -> None:
    from provisioner.policies.registry import POLICY_NAMES, make_policy, run_knobs

    assert run_knobs("predictive") == {"miss_cost_b": 33.3, "min_spare": 0}
    assert run_knobs("predictive", miss_cost_b=5) == {"miss_cost_b": 5, "min_spare": 0}
    assert run_knobs("predictive", miss_cost=30) == {
        "miss_cost_b": 33.3, "miss_cost_s": 30, "min_spare": 0
    }  # fmt: skip
    assert run_knobs("basestock")["min_spare"] == 1 and run_knobs("static")["k"] == 4
    assert run_knobs("static", min_spare=0)["k"] == 0
    assert run_knobs("hybrid", keep_alive=5) == {"fixed_keep_alive_s": 5}
    for name in POLICY_NAMES:
        assert make_policy(name, **run_knobs(name)).name == name
    with pytest.raises(ValueError, match="unknown policy"):
        run_knobs("nope")
