"""Scaling policies: how many spare nodes (ready + booting) to keep, and for how long
an idle node may stay.

Every policy implements :class:`Policy`: the leader calls :meth:`Policy.decide` once a
tick with an :class:`Observation` (counters and pool sizes read from Redis, the
learned boot time) and gets a :class:`Decision`.  A policy keeps only a few numbers
(rates), so a tick costs O(1), not O(users); a new leader recovers them from the
last decision stored in Redis (:meth:`Policy.restore`).

:class:`BaseStockPolicy` (the default) treats ready nodes as inventory with a lead
time (the boot time B).  Connects in one lead time are roughly Poisson with mean
``lambda * B``; keeping ``S = lambda*B + z*sqrt(lambda*B) + min_spare`` spare nodes is the
normal approximation of the base-stock level with a cycle service level ``Phi(z)``
(Hopp & Spearman, *Factory Physics*, 3rd ed., ch. 2, base-stock model; Poisson demand
has variance equal to its mean).  ``lambda`` (connects per second) is the larger of two
estimates, each an EWMA over ticks:

* the observed connect rate (``stats.connects`` per second), and
* the rate of users becoming active times the fraction of active users who went on to
  connect so far (``connects_predictable / users_activated``): activity leads connects,
  so a burst of new browsers raises the target before their connects arrive.

Idle ready nodes beyond ``S`` are reaped after ``keep_alive_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioner.coordinator import PoolSnapshot

__all__ = [
    "POLICY_NAMES",
    "BaseStockConfig",
    "BaseStockPolicy",
    "Decision",
    "Features",
    "Observation",
    "Policy",
    "ReactivePolicy",
    "StaticPoolPolicy",
    "make_policy",
    "run_knobs",
]


@dataclass(frozen=True)
class Features:
    """What a policy reads each tick beyond the snapshot (the leader reads it in the
    same script that renews the lease, ``observeTick``).

    Attributes:
        n_classes: feature classes of active users to count (0: none).
        recency_edges_b: inner edges of the recency buckets (time since a user's last
            activity), in multiples of the boot time B, ascending.

    With ``n_classes > 0`` the observation's ``features`` hold ``n`` (active users,
    ``n[class][bucket]``, a dict holding only the classes with active users),
    ``premium`` (active premium users) and ``hazard`` (the connect counters of
    ``P:hazard``; the same dict object while they did not change); else they are empty.
    """

    n_classes: int = 0
    recency_edges_b: tuple[float, ...] = ()


#: A policy that decides from the snapshot alone.
NO_FEATURES = Features()


@dataclass(frozen=True)
class Observation:
    """What the leader knows at a tick.

    Attributes:
        now_ms: the tick's time, unix ms.
        snapshot: pool sizes and counters (one consistent read).
        boot_s: the boot time to plan with, seconds (learned mean, or the default).
        features: what the policy's :attr:`Policy.features` asked for (see
            :class:`Features`).
    """

    now_ms: int
    snapshot: PoolSnapshot
    boot_s: float
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """A policy's answer.

    Attributes:
        target_spare: ready + booting (+ pending creates) to hold, nodes. Waiting users
            come on top: the leader creates ``target_spare + waiting - spare``.
        keep_alive_s: how long a surplus ready node may idle before it is reaped, s.
        inputs: the numbers the decision came from (stored for ``provisioner explain``).
        keep_spare: spare nodes the reaper must leave (hysteresis); None: the target.
    """

    target_spare: int
    keep_alive_s: float
    inputs: dict[str, Any] = field(default_factory=dict)
    keep_spare: int | None = None

    @property
    def reap_floor(self) -> int:
        """Spare nodes the reaper leaves: ``keep_spare`` or the target."""
        return self.target_spare if self.keep_spare is None else max(self.keep_spare, 0)


class Policy(Protocol):
    """A scaling policy (see the module docstring)."""

    name: str
    #: What the policy reads beyond the snapshot each tick.
    features: Features
    #: True when a target of 0 cannot rise by time alone, only after inbound events (no
    #: timers of its own): the replay may then fast-forward over an empty, quiet pool.
    target_rises_only_on_events: bool

    def decide(self, obs: Observation) -> Decision:
        """Return the decision for this tick."""
        ...

    def steady_until_ms(self, now_ms: int) -> float:
        """Until when (unix ms), if no inbound event moves a counter or a user, every
        later decision equals the last one :meth:`decide` returned (at ``now_ms``):
        ``math.inf`` for good, ``now_ms`` or less for no promise. The replay
        fast-forwards over ticks that would change nothing (``Leader.idle_until_ms``)."""
        ...

    def restore(self, last: dict[str, str]) -> None:
        """Recover state from the last stored decision (``P:policy`` hash)."""
        ...


@dataclass(frozen=True)
class BaseStockConfig:
    """Knobs of :class:`BaseStockPolicy`.

    Attributes:
        z: safety factor in standard deviations (1.64 ~ 95% of lead times without a miss).
        min_spare: spare nodes kept whatever the forecast.
        keep_alive_s: idle time before a surplus ready node is reaped, seconds.
        half_life_s: half-life of the rate EWMAs, seconds.
        max_spare: cap on the target (a guard against a runaway forecast).
    """

    z: float = 1.64
    min_spare: int = 1
    keep_alive_s: float = 60.0
    half_life_s: float = 60.0
    max_spare: int = 500

    def __post_init__(self) -> None:
        # A bad knob would otherwise fail every tick (half_life_s 0 divides by zero, a
        # NaN z cannot be rounded), leaving a leader that holds the lease but never scales.
        for name in ("z", "keep_alive_s", "half_life_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if self.z < 0 or self.keep_alive_s < 0 or self.half_life_s <= 0:
            raise ValueError("need z >= 0, keep_alive_s >= 0 and half_life_s > 0")
        if self.min_spare < 0 or self.max_spare < 0:
            raise ValueError("min_spare and max_spare must be >= 0")


class _Rate:
    """An EWMA of a counter's rate, per second, with a half-life in seconds."""

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.value = 0.0
        self.last_count: int | None = None
        self.last_ms: int | None = None

    def update(self, count: int, now_ms: int) -> float:
        if self.last_count is None or self.last_ms is None or count < self.last_count:
            self.last_count, self.last_ms = count, now_ms
            return self.value
        dt = (now_ms - self.last_ms) / 1000.0
        if dt <= 0:
            return self.value
        inst = (count - self.last_count) / dt
        w = 1.0 - 0.5 ** (dt / self.half_life_s)
        self.value += w * (inst - self.value)
        self.last_count, self.last_ms = count, now_ms
        return self.value


#: Below this forecast base stock promises no steady decision (``steady_until_ms``).
_TINY = 1e-300


class BaseStockPolicy:
    """Base-stock level from a Poisson forecast of connects in one boot time.

    Args:
        config: the knobs.
    """

    name = "basestock"
    target_rises_only_on_events = True
    features = NO_FEATURES

    def __init__(self, config: BaseStockConfig | None = None) -> None:
        self.config = config or BaseStockConfig()
        self._connects = _Rate(self.config.half_life_s)
        self._activations = _Rate(self.config.half_life_s)
        self._last_mean: tuple[int, float] | None = None  # (ms, lambda * B) of the last tick

    def steady_until_ms(self, now_ms: int) -> float:
        """Without counts both rates halve every ``half_life_s``, so the forecast
        ``m = lambda * B`` decays as ``m0 * 2**(-t / half_life)`` and the target steps down
        when ``m + z sqrt(m)`` falls to the next integer below ``c = ceil(m0 + z sqrt(m0))``:
        at ``sqrt(m*) = (sqrt(z^2 + 4 (c - 1)) - z) / 2`` (the root of ``m + z sqrt(m) =
        c - 1``). With ``c = 1`` that is ``m = 0``, which tick by tick is never reached: the
        repeated decay stalls among the subnormal floats, near 1e-322, and the target stays
        ``min_spare + 1``. Two limits keep a jump to what the ticks would do: no promise
        beyond 50 half-lives (one update over a gap of about 54 or more rounds its weight
        ``1 - 2**(-gap / half_life)`` to 1 and the rate to 0, target ``min_spare``), nor
        past the time ``m`` falls below 1e-300 (chained jumps would reach 0 where the ticks
        stall); below it, none at all."""
        if self._last_mean is None:
            return now_ms
        t0, m0 = self._last_mean
        if m0 <= 0.0:
            return math.inf
        if m0 < _TINY:
            return now_ms
        z = self.config.z
        c = math.ceil(m0 + z * math.sqrt(m0))
        hl_ms = self.config.half_life_s * 1000.0
        longest = t0 + hl_ms * min(50.0, math.log2(m0 / _TINY))
        if c <= 1:
            return longest
        root = (math.sqrt(z * z + 4.0 * (c - 1)) - z) / 2.0
        m_star = root * root
        if m_star >= m0:  # cannot happen for c > m0 + z sqrt(m0) - 1; no promise then
            return now_ms
        # a second early: the ticks' repeated halvings round differently from one power
        return min(longest, t0 + hl_ms * math.log2(m0 / m_star) - 1000.0)

    def restore(self, last: dict[str, str]) -> None:
        """Start the rate EWMAs from the last leader's values (ignoring corrupt ones)."""
        for rate, name in (
            (self._connects, "lambda_connects"),
            (self._activations, "activation_rate"),
        ):
            try:
                value = float(last.get(name, 0.0))
            except ValueError:
                continue
            if math.isfinite(value) and value >= 0:
                rate.value = value

    def decide(self, obs: Observation) -> Decision:
        """Target ``ceil(lambda*B + z*sqrt(lambda*B)) + min_spare``, capped at max_spare."""
        c = self.config
        st = obs.snapshot.stats
        lam_c = self._connects.update(st.get("connects", 0), obs.now_ms)
        act = self._activations.update(st.get("users_activated", 0), obs.now_ms)
        conv = min(1.0, st.get("connects_predictable", 0) / max(1, st.get("users_activated", 0)))
        lam = max(lam_c, act * conv)
        mean = lam * obs.boot_s
        self._last_mean = (obs.now_ms, mean)
        target = min(c.max_spare, math.ceil(mean + c.z * math.sqrt(mean)) + c.min_spare)
        return Decision(
            target_spare=target,
            keep_alive_s=c.keep_alive_s,
            inputs={
                "lambda": round(lam, 4),
                "lambda_connects": round(lam_c, 4),
                "activation_rate": round(act, 4),
                "conversion": round(conv, 4),
                "boot_s": round(obs.boot_s, 3),
                "demand_in_lead_time": round(mean, 3),
                "z": c.z,
            },
        )


class ReactivePolicy:
    """Baseline: keep no spare nodes; boot one per waiting user (boot on connect)."""

    name = "reactive"
    target_rises_only_on_events = True
    features = NO_FEATURES

    def __init__(self, keep_alive_s: float = 0.0) -> None:
        self.keep_alive_s = keep_alive_s

    def restore(self, last: dict[str, str]) -> None:
        """Nothing to restore."""

    def decide(self, obs: Observation) -> Decision:
        """Target 0 spare; idle nodes go after ``keep_alive_s``."""
        return Decision(0, self.keep_alive_s, {"boot_s": round(obs.boot_s, 3)})

    def steady_until_ms(self, now_ms: int) -> float:
        """Target 0 and the same keep-alive whatever happens: for good."""
        return math.inf


class StaticPoolPolicy:
    """Baseline: a static warm pool of ``k`` spare nodes.

    Args:
        k: spare nodes to keep.
        keep_alive_s: idle time before a surplus node goes, seconds.
    """

    name = "static"
    target_rises_only_on_events = True
    features = NO_FEATURES

    def __init__(self, k: int = 3, keep_alive_s: float = 60.0) -> None:
        if k < 0:
            raise ValueError(f"static pool size k must be >= 0, got {k}")
        self.k = k
        self.keep_alive_s = keep_alive_s

    def restore(self, last: dict[str, str]) -> None:
        """Nothing to restore."""

    def decide(self, obs: Observation) -> Decision:
        """Target ``k`` spare nodes."""
        return Decision(self.k, self.keep_alive_s, {"k": self.k})

    def steady_until_ms(self, now_ms: int) -> float:
        """A constant decision: for good."""
        return math.inf


POLICY_NAMES = ("predictive", "basestock", "reactive", "static", "hybrid")


def _config(cls: Any, knobs: dict[str, float]) -> Any:
    defaults = cls()
    fields = cls.__dataclass_fields__
    unknown = set(knobs) - set(fields)
    if unknown:
        raise ValueError(f"unknown knobs for {cls.__name__}: {sorted(unknown)}")
    return cls(**{k: type(getattr(defaults, k))(v) for k, v in knobs.items()})


def run_knobs(
    policy: str,
    *,
    miss_cost: float = 1000.0,
    keep_alive: float = 60.0,
    z: float = 1.64,
    min_spare: int | None = None,
    half_life: float = 60.0,
) -> dict[str, float]:
    """The knobs of ``policy`` from the options of ``provisioner run`` (seconds and
    node-seconds), for :func:`make_policy`: what each policy takes of them, and its own
    defaults where ``min_spare`` is None (predictive 0, basestock 1, static's pool 4).

    Raises:
        ValueError: unknown policy name.
    """
    if policy == "predictive":
        return {"miss_cost_s": miss_cost, "min_spare": min_spare or 0}
    if policy == "basestock":
        return {
            "z": z,
            "min_spare": 1 if min_spare is None else min_spare,
            "half_life_s": half_life,
            "keep_alive_s": keep_alive,
        }
    if policy == "static":
        return {"k": 4 if min_spare is None else min_spare, "keep_alive_s": keep_alive}
    if policy == "hybrid":
        return {"fixed_keep_alive_s": keep_alive}
    if policy == "reactive":
        return {"keep_alive_s": keep_alive}
    raise ValueError(f"unknown policy {policy!r}: one of {', '.join(POLICY_NAMES)}")


def make_policy(name: str, **knobs: float) -> Policy:
    """Build a policy by name (one of :data:`POLICY_NAMES`) with its knobs.

    Raises:
        ValueError: unknown name or knob.
    """
    if name == "predictive":
        from provisioner.predictive import PredictiveConfig, PredictivePolicy

        return PredictivePolicy(_config(PredictiveConfig, knobs))
    if name == "hybrid":
        from provisioner.baselines import HybridConfig, HybridHistogramPolicy

        return HybridHistogramPolicy(_config(HybridConfig, knobs))
    if name == "basestock":
        fields = BaseStockConfig.__dataclass_fields__
        kw = {k: type(getattr(BaseStockConfig(), k))(v) for k, v in knobs.items() if k in fields}
        return BaseStockPolicy(BaseStockConfig(**kw))
    if name == "reactive":
        return ReactivePolicy(float(knobs.get("keep_alive_s", 0.0)))
    if name == "static":
        return StaticPoolPolicy(int(knobs.get("k", 3)), float(knobs.get("keep_alive_s", 60.0)))
    raise ValueError(f"unknown policy {name!r}: one of {', '.join(POLICY_NAMES)}")
