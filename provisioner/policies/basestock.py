"""The base-stock policy: how many spare nodes (ready + booting) to keep, and for how
long an idle node may stay.

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
from dataclasses import dataclass

from provisioner.policies.base import NO_FEATURES, Decision, Observation
from provisioner.policies.rate import Rate

__all__ = ["BaseStockConfig", "BaseStockPolicy"]


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
        self._connects = Rate(self.config.half_life_s)
        self._activations = Rate(self.config.half_life_s)
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
