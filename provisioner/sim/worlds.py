"""Randomized worlds: held-out traffic for the policy benchmark (``provisioner bench worlds``).

A world is a :class:`WorldParams`, drawn by :func:`draw_world` from a seed, and turned into a
:class:`~provisioner.sim.workload.Workload` by :func:`build_world` for one of two horizons.
The named scenarios (:mod:`provisioner.sim.scenarios`) are few and the policies were tuned
on them; the worlds are many, drawn from wide ranges, so the benchmark reports percentiles
over worlds.  Their seeds are split once, here: :data:`TUNING_SEEDS` may be looked at while
tuning, :data:`HELD_OUT_SEEDS` only to report.

Most quantities are in **boot times** ``B`` (the world's mean boot, before the slow tail),
so a world means the same thing whether its nodes boot in 2 s or in 3 min.  The ranges
(``U``: uniform, ``logU``: log-uniform, i.e. uniform in the logarithm):

=========================  ===================================  ==========================
parameter                  range                                meaning
=========================  ===================================  ==========================
``boot_mean_s``            logU(2, 180) s                       ``B``: mean of the uniform
                                                                part of a boot
``boot_spread``            U(0, 0.9)                            boots are
                                                                ``U(B (1 - s), B (1 + s))``
``slow_tail_p``            U(0, 0.2)                            share of slow boots
``slow_tail_factor``       U(1.5, 5)                            a slow boot's multiplier
``sessions_per_boot``      logU(0.5, 20)                        connects per ``B`` (the
                                                                arrival rate follows)
``burst_mean``             logU(1, 5)                           users per arrival cluster
                                                                (burstiness)
``spikes_per_100_boots``   U(0, 2)                              spike starts per 100 ``B``
``spike_factor``           U(2, 10)                             rate multiplier of a spike
``spike_len_boots``        logU(1, 30)                          mean spike length, ``B``
                                                                (each is exponential)
``wave_amplitude``         U(0, 0.9)                            daily wave: rate x
                                                                ``1 + a sin(...)``
``wave_period_boots``      logU(50, 2000)                       its period, ``B``
``activity_gap_mean_s``    logU(1, 60) s                        mean gap between activity
                                                                events (exponential)
``activity_extra_mean``    U(0, 10)                             activity events of a visit:
                                                                ``1 + Poisson(mean)``
``connect_p``              logU(0.02, 0.6)                      share of visits that
                                                                connect
``lead_min_boots``,        logU(0.1, 5), sorted                 a connect comes
``lead_max_boots``                                              ``U(min, max) B`` after
                                                                the visit's last activity
``session_median_boots``   logU(0.3, 100)                       median session, ``B``
``session_sigma``          U(0.2, 1.2)                          LogNormal sigma of sessions
``returns_mean``           U(0, 5)                              returns per user: Poisson
``return_gap_boots``       logU(1, 100)                         mean gap before a return,
                                                                ``B`` (exponential)
``cold_p``                 U(0, 0.4)                            share of connecting visits
                                                                without any activity
``fail_p``                 U(0, 0.15), 0 in half the worlds     boots ending in
                                                                ``terminated``
``lost_ready_p``           U(0, 0.1), 0 in half the worlds      ``ready`` never published
``error_5xx_p``            U(0, 0.5), 0 in half the worlds      API calls answering 503
                                                                (each try; the client
                                                                retries, 4 tries a call)
=========================  ===================================  ==========================

Users: arrival clusters come as a Poisson process of rate ``r(t) = r0 / burst_mean x (1 +
a sin(2 pi t / P + phase)) x spike(t)`` (thinned: :func:`scenarios.thinned_arrivals`), where
``r0 = sessions_per_boot / (B connect_p (1 + returns_mean))`` new users per second, so the
connects average ``sessions_per_boot`` per ``B``; a cluster brings ``Geometric(mean
burst_mean)`` users within ``0.2 B``.  Each user makes one :func:`scenarios.visit` (the
``steady`` user), then ``Poisson(returns_mean)`` more, each after the previous one ends
plus an Exponential(mean ``return_gap_boots`` B) rest.

Horizons: ``short`` is 100 ``B``; ``long`` lasts until at least :data:`LONG_MIN_SESSIONS`
sessions (and at least 100 ``B``).  Every world starts from an empty pool; what the leader
assumes of the boot time is the bench's business (``bench worlds`` uses the live default,
not ``B``).

All draws use :class:`random.Random` (stdlib), so a seed gives the same world everywhere.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from provisioner.sim import scenarios
from provisioner.sim.workload import BootProfile, Event, Workload, sort_events

__all__ = [
    "HELD_OUT_SEEDS",
    "HORIZONS",
    "LONG_MIN_SESSIONS",
    "SHORT_BOOTS",
    "TUNING_SEEDS",
    "Horizon",
    "WorldParams",
    "build_world",
    "draw_world",
    "horizon_s",
]

TUNING_SEEDS = range(1, 1001)
"""World seeds that may be looked at while tuning a policy."""

HELD_OUT_SEEDS = range(100_001, 101_001)
"""World seeds for reporting only; ``bench worlds`` uses them by default."""

Horizon = Literal["short", "long"]
HORIZONS: tuple[Horizon, ...] = ("short", "long")

SHORT_BOOTS = 100.0
"""Length of the short horizon, and least length of the long one, in boot times."""

LONG_MIN_SESSIONS = 2000
"""Least sessions of the long horizon."""

_LONG_MARGIN = 1.05
"""The long horizon aims 5% above :data:`LONG_MIN_SESSIONS` (one generation nearly always
suffices)."""

_CLUSTER_SPREAD_BOOTS = 0.2
"""The users of an arrival cluster arrive within this many boot times of its start."""


@dataclass(frozen=True)
class WorldParams:
    """Every parameter of one world (module docstring: ranges and meaning).

    Times ending in ``_s`` are seconds, ``_boots`` are boot times (``boot_mean_s``).
    ``error_5xx_p`` goes to the replay (``ReplayConfig.error_5xx_p``), which emulates the
    client's retries.
    """

    seed: int
    boot_mean_s: float
    boot_spread: float
    slow_tail_p: float
    slow_tail_factor: float
    sessions_per_boot: float
    burst_mean: float
    spikes_per_100_boots: float
    spike_factor: float
    spike_len_boots: float
    wave_amplitude: float
    wave_period_boots: float
    wave_phase: float
    activity_gap_mean_s: float
    activity_extra_mean: float
    connect_p: float
    lead_min_boots: float
    lead_max_boots: float
    session_median_boots: float
    session_sigma: float
    returns_mean: float
    return_gap_boots: float
    cold_p: float
    fail_p: float
    lost_ready_p: float
    error_5xx_p: float

    def boot(self) -> BootProfile:
        """The boot profile of the world's node API (seconds, probabilities)."""
        b = self.boot_mean_s
        return BootProfile(
            b * (1.0 - self.boot_spread),
            b * (1.0 + self.boot_spread),
            fail_p=self.fail_p,
            lost_ready_p=self.lost_ready_p,
            slow_tail_p=self.slow_tail_p,
            slow_tail_factor=self.slow_tail_factor,
        )

    def visit_params(self) -> scenarios.BrowsingParams:
        """The per-visit fields of the world's users, in seconds, for
        :func:`scenarios.visit` (the other fields of the result are unused)."""
        b = self.boot_mean_s
        return scenarios.BrowsingParams(
            activity_extra_mean=self.activity_extra_mean,
            activity_gap_mean_s=self.activity_gap_mean_s,
            connect_delay_min_s=self.lead_min_boots * b,
            connect_delay_max_s=self.lead_max_boots * b,
            session_median_s=self.session_median_boots * b,
            session_sigma=self.session_sigma,
            connect_p=self.connect_p,
        )

    def new_users_per_s(self) -> float:
        """``r0``: mean rate of new users, per second, so that the connects (first visits
        and returns) average ``sessions_per_boot`` per boot time."""
        per_user = self.connect_p * (1.0 + self.returns_mean)
        return self.sessions_per_boot / (self.boot_mean_s * per_user)


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def draw_world(seed: int) -> WorldParams:
    """Draw a world's parameters from the ranges of the module docstring.

    Args:
        seed: Any integer; equal seeds give equal worlds.

    Returns:
        The parameters (a pure function of ``seed``).
    """
    rng = random.Random(f"world:{seed}")

    def lu(lo: float, hi: float) -> float:
        return _log_uniform(rng, lo, hi)

    lead = sorted((lu(0.1, 5.0), lu(0.1, 5.0)))
    faulty = rng.random() < 0.5
    return WorldParams(
        seed=seed,
        boot_mean_s=lu(2.0, 180.0),
        boot_spread=rng.uniform(0.0, 0.9),
        slow_tail_p=rng.uniform(0.0, 0.2),
        slow_tail_factor=rng.uniform(1.5, 5.0),
        sessions_per_boot=lu(0.5, 20.0),
        burst_mean=lu(1.0, 5.0),
        spikes_per_100_boots=rng.uniform(0.0, 2.0),
        spike_factor=rng.uniform(2.0, 10.0),
        spike_len_boots=lu(1.0, 30.0),
        wave_amplitude=rng.uniform(0.0, 0.9),
        wave_period_boots=lu(50.0, 2000.0),
        wave_phase=rng.uniform(0.0, 2.0 * math.pi),
        activity_gap_mean_s=lu(1.0, 60.0),
        activity_extra_mean=rng.uniform(0.0, 10.0),
        connect_p=lu(0.02, 0.6),
        lead_min_boots=lead[0],
        lead_max_boots=lead[1],
        session_median_boots=lu(0.3, 100.0),
        session_sigma=rng.uniform(0.2, 1.2),
        returns_mean=rng.uniform(0.0, 5.0),
        return_gap_boots=lu(1.0, 100.0),
        cold_p=rng.uniform(0.0, 0.4),
        fail_p=rng.uniform(0.0, 0.15) if faulty else 0.0,
        lost_ready_p=rng.uniform(0.0, 0.1) if faulty else 0.0,
        error_5xx_p=rng.uniform(0.0, 0.5) if faulty else 0.0,
    )


def horizon_s(params: WorldParams, horizon: Horizon) -> float:
    """First guess of a horizon's length, seconds: ``short`` 100 boot times; ``long`` the
    expected time to :data:`LONG_MIN_SESSIONS` sessions (+5%), at least 100 boot times
    (:func:`build_world` lengthens it when a draw falls short)."""
    short = SHORT_BOOTS * params.boot_mean_s
    if horizon == "short":
        return short
    per_s = params.sessions_per_boot / params.boot_mean_s
    return max(short, LONG_MIN_SESSIONS * _LONG_MARGIN / per_s)


def _spikes(rng: random.Random, p: WorldParams, end_s: float) -> list[tuple[float, float]]:
    """Spike windows ``(start_s, end_s)``: starts a Poisson process of
    ``spikes_per_100_boots`` per 100 boot times, lengths Exponential(mean
    ``spike_len_boots`` B)."""
    b = p.boot_mean_s
    out: list[tuple[float, float]] = []
    rate = p.spikes_per_100_boots / (SHORT_BOOTS * b)
    if rate <= 0:
        return out
    t = rng.expovariate(rate)
    while t < end_s:
        out.append((t, t + rng.expovariate(1.0 / (p.spike_len_boots * b))))
        t += rng.expovariate(rate)
    return out


def _rate(p: WorldParams, spikes: list[tuple[float, float]]) -> Callable[[float], float]:
    """Cluster arrival rate ``r(t)`` per second (module docstring); overlapping spikes
    multiply once."""
    base = p.new_users_per_s() / p.burst_mean
    omega = 2.0 * math.pi / (p.wave_period_boots * p.boot_mean_s)

    def rate(t: float) -> float:
        r = base * (1.0 + p.wave_amplitude * math.sin(omega * t + p.wave_phase))
        if any(s0 <= t < s1 for s0, s1 in spikes):
            r *= p.spike_factor
        return r

    return rate


def _cluster_size(rng: random.Random, mean: float) -> int:
    """``1 + Geometric``: each further user with probability ``1 - 1 / mean``."""
    n, more = 1, 1.0 - 1.0 / mean
    while rng.random() < more:
        n += 1
    return n


def _generate(p: WorldParams, name: str, end_s: float) -> Workload:
    """The world's events over ``[0, end_s)`` (module docstring), seeded by ``name``."""
    rng = random.Random(f"{name}:{p.seed}")
    spikes = _spikes(rng, p, end_s)
    peak = p.new_users_per_s() / p.burst_mean * (1.0 + p.wave_amplitude) * p.spike_factor
    clusters = scenarios.thinned_arrivals(rng, _rate(p, spikes), peak, end_s)
    spread = _CLUSTER_SPREAD_BOOTS * p.boot_mean_s
    arrivals = sorted(
        t + (rng.uniform(0.0, spread) if i else 0.0)
        for t in clusters
        for i in range(_cluster_size(rng, p.burst_mean))
    )
    vp = p.visit_params()
    rest_mean_s = p.return_gap_boots * p.boot_mean_s
    events: list[Event] = []
    classes: dict[str, str] = {}
    for t0 in arrivals:
        if t0 >= end_s:
            continue
        user = scenarios.user_id(rng)
        returns = scenarios.poisson(rng, p.returns_mean)
        t = t0
        for k in range(1 + returns):
            end, outcome = scenarios.visit(rng, vp, t, user, end_s, p.connect_p, events, p.cold_p)
            if k == 0:
                classes[user] = outcome
            t = end + rng.expovariate(1.0 / rest_mean_s)
            if t >= end_s:
                break
    return Workload(
        name=name,
        seed=p.seed,
        events=sort_events(events),
        duration_s=end_s,
        boot=p.boot(),
        user_class=classes,
        params={**dataclasses.asdict(p), "spikes": len(spikes)},
    )


def build_world(params: WorldParams, horizon: Horizon) -> Workload:
    """The workload of a world over one horizon (module docstring).

    Args:
        params: The world (:func:`draw_world`).
        horizon: ``"short"`` (100 boot times) or ``"long"`` (at least
            :data:`LONG_MIN_SESSIONS` sessions and 100 boot times).

    Returns:
        The workload (seconds), named ``world-short`` or ``world-long``, with the world's
        boot profile; ``params`` holds the world's parameters and its number of spikes.

    Raises:
        ValueError: Unknown horizon.
        RuntimeError: The long horizon could not reach its sessions (cannot happen with
            the documented ranges).
    """
    if horizon not in HORIZONS:
        raise ValueError(f"unknown horizon {horizon!r}: one of {', '.join(HORIZONS)}")
    name = f"world-{horizon}"
    end_s = horizon_s(params, horizon)
    if horizon == "short":
        return _generate(params, name, end_s)
    for _ in range(20):
        wl = _generate(params, name, end_s)
        got = len(wl.sessions())
        if got >= LONG_MIN_SESSIONS:
            return wl
        end_s *= LONG_MIN_SESSIONS / max(got, 1) * _LONG_MARGIN
    raise RuntimeError(f"world {params.seed}: could not reach {LONG_MIN_SESSIONS} sessions")
