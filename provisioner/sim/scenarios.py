"""Named, seeded scenario generators.

``build(name, seed, **overrides)`` returns a :class:`~provisioner.sim.workload.Workload`; the
same name, seed and overrides always give the same events.  Overrides are the fields of
the scenario's parameter dataclass (e.g. ``build("steady", duration_s=600,
arrival_rate_per_s=1.0)``), plus ``boot=BootProfile(...)`` for every scenario.

To add a scenario, write ``def gen(seed: int, **overrides: Any) -> Workload`` and decorate
it with ``@register("name")`` (or call ``register("name")(gen)`` from another module before
reading :data:`NAMES`; :func:`names` is always current).

All times are seconds.  Random draws use :class:`random.Random` seeded with the scenario
seed (stdlib only, so runs are reproducible across machines with the same Python).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from provisioner.sim import trace
from provisioner.sim.workload import BootProfile, Event, Workload, sort_events

Generator = Callable[..., Workload]
"""``gen(seed: int, **overrides) -> Workload``."""

_REGISTRY: dict[str, Generator] = {}

P = TypeVar("P")


def register(name: str) -> Callable[[Generator], Generator]:
    """Decorator that registers a scenario generator under ``name``."""

    def deco(fn: Generator) -> Generator:
        if name in _REGISTRY:
            raise ValueError(f"scenario {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def names() -> tuple[str, ...]:
    """Names of all registered scenarios, in registration order."""
    return tuple(_REGISTRY)


def build(name: str, seed: int = 1, **overrides: Any) -> Workload:
    """Generate the named scenario.

    Args:
        name: One of :func:`names`.
        seed: Random seed; equal seeds give equal workloads.
        **overrides: Parameter overrides (fields of the scenario's parameter dataclass);
            ``boot`` replaces the boot profile in every scenario.

    Returns:
        The workload (times in seconds).

    Raises:
        KeyError: Unknown scenario name.
        TypeError: Unknown override.
    """
    try:
        gen = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(_REGISTRY)}") from None
    boot = overrides.pop("boot", None)
    wl = gen(seed, **overrides)
    if boot is not None:
        if not isinstance(boot, BootProfile):
            raise TypeError("boot must be a BootProfile")
        wl.boot = boot
    return wl


def _apply(params: P, overrides: dict[str, Any]) -> P:
    """``dataclasses.replace`` with a clear error for unknown fields."""
    known = {f.name for f in dataclasses.fields(params)}  # type: ignore[arg-type]
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown override(s) {sorted(unknown)}; known: {sorted(known)}")
    return dataclasses.replace(params, **overrides)  # type: ignore[type-var]


def poisson(rng: random.Random, mean: float) -> int:
    """Draw from Poisson(``mean``) by Knuth's multiplication method (fine for mean < ~30).

    Source: D. E. Knuth, TAOCP vol. 2, 3.4.1.
    """
    if mean <= 0:
        return 0
    limit = math.exp(-mean)
    k, prod = 0, rng.random()
    while prod > limit:
        k += 1
        prod *= rng.random()
    return k


def user_id(rng: random.Random) -> str:
    """A UUID4-shaped user id drawn from ``rng`` (deterministic per seed).

    The same string as ``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, formatted
    directly (about 3x faster, which matters for workloads of 100k+ users).
    """
    n = rng.getrandbits(128) & _UUID_KEEP | _UUID_V4
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_KEEP = ~((0xC000 << 48) | (0xF000 << 64))
"""Clears the variant and version bits of a 128-bit UUID (see :class:`uuid.UUID`)."""
_UUID_V4 = (0x8000 << 48) | (4 << 76)
"""Sets the RFC 4122 variant and version 4."""


# --------------------------------------------------------------------------- steady / spike


@dataclass(frozen=True)
class BrowsingParams:
    """Parameters of the ``steady`` and ``spike`` scenarios (times in seconds).

    New users arrive as a Poisson process of rate ``arrival_rate_per_s`` (multiplied by
    ``spike_factor`` during ``[spike_start_s, spike_end_s)``).  Each user makes
    ``1 + Poisson(activity_extra_mean)`` activity events, the first at arrival, then with
    Exponential(mean ``activity_gap_mean_s``) gaps.  With probability ``connect_p`` the user
    then connects ``U(connect_delay_min_s, connect_delay_max_s)`` after its last activity,
    stays LogNormal(mu = ln ``session_median_s``, sigma = ``session_sigma``) seconds and
    disconnects; otherwise it just stops.  Boots are ``U(boot_min_s, boot_max_s)``.
    Events after ``duration_s`` are dropped (a session cut by the end has no disconnect).
    """

    duration_s: float = 1800.0
    arrival_rate_per_s: float = 0.5
    activity_extra_mean: float = 4.0
    activity_gap_mean_s: float = 8.0
    connect_p: float = 0.4
    connect_delay_min_s: float = 2.0
    connect_delay_max_s: float = 15.0
    session_median_s: float = 180.0
    session_sigma: float = 0.6
    spike_start_s: float = 600.0
    spike_end_s: float = 900.0
    spike_factor: float = 1.0
    boot_min_s: float = 20.0
    boot_max_s: float = 40.0


STEADY = BrowsingParams()
"""Defaults of ``steady``: 1 new user / 2 s for 30 min, ~40% connect, median session 3 min."""

SPIKE = BrowsingParams(spike_factor=8.0)
"""Defaults of ``spike``: ``steady`` with 8x the arrival rate during minutes 10-15."""


def _arrivals(rng: random.Random, p: BrowsingParams) -> list[float]:
    """Poisson arrival times in ``[0, duration_s)`` with the piecewise-constant rate."""
    segments: list[tuple[float, float, float]] = []
    if p.spike_factor != 1.0 and p.spike_start_s < p.spike_end_s:
        s0 = max(0.0, min(p.spike_start_s, p.duration_s))
        s1 = max(s0, min(p.spike_end_s, p.duration_s))
        segments = [
            (0.0, s0, p.arrival_rate_per_s),
            (s0, s1, p.arrival_rate_per_s * p.spike_factor),
            (s1, p.duration_s, p.arrival_rate_per_s),
        ]
    else:
        segments = [(0.0, p.duration_s, p.arrival_rate_per_s)]
    out: list[float] = []
    for start, end, rate in segments:
        if rate <= 0:
            continue
        t = start + rng.expovariate(rate)
        while t < end:  # memoryless: restarting at a segment edge is exact
            out.append(t)
            t += rng.expovariate(rate)
    return out


class VisitParams(Protocol):
    """What one visit of a browsing user (:func:`visit`) reads: the per-user fields of
    :class:`BrowsingParams`, which :class:`ReturningParams` shares (read-only)."""

    @property
    def activity_extra_mean(self) -> float: ...
    @property
    def activity_gap_mean_s(self) -> float: ...
    @property
    def connect_delay_min_s(self) -> float: ...
    @property
    def connect_delay_max_s(self) -> float: ...
    @property
    def session_median_s(self) -> float: ...
    @property
    def session_sigma(self) -> float: ...


def visit(
    rng: random.Random,
    p: VisitParams,
    t0: float,
    user: str,
    end_s: float,
    connect_p: float,
    events: list[Event],
    cold_p: float = 0.0,
) -> tuple[float, str]:
    """One visit of a browsing user starting at ``t0``: the user generator of ``steady``.

    The user makes ``1 + Poisson(activity_extra_mean)`` activity events, the first at
    ``t0``, then with Exponential(mean ``activity_gap_mean_s``) gaps.  With probability
    ``connect_p`` it then connects ``U(connect_delay_min_s, connect_delay_max_s)`` after its
    last activity and stays LogNormal(mu = ln ``session_median_s``, sigma =
    ``session_sigma``) seconds.  A connecting user is **cold** with probability ``cold_p``:
    it makes no activity at all and connects at ``t0`` (it still stays the same LogNormal
    time).  Events at or after ``end_s`` are dropped, except a disconnect exactly at
    ``end_s``.

    Draws, in order: Poisson count, activity gaps, connect coin, delay, stay, and the cold
    coin only for a connecting user when ``cold_p > 0`` (so ``cold_p = 0`` is exactly the
    ``steady`` user).

    Args:
        rng: Random source.
        p: Per-visit parameters.
        t0: Start of the visit (first activity, or the connect of a cold user), seconds.
        user: The user id.
        end_s: End of the workload, seconds.
        connect_p: Probability that this visit ends in a connect.
        events: Receives the visit's events (appended in generation order).
        cold_p: Probability that a connecting visit is cold.

    Returns:
        ``(t_end, outcome)``: ``t_end`` is when the visit is over (the disconnect, or the
        last activity when the user does not connect; ``math.inf`` when a session is cut
        by ``end_s``), ``outcome`` is ``"connector"``, ``"cold"`` or ``"browser"``.
    """
    n = 1 + poisson(rng, p.activity_extra_mean)
    mark = len(events)
    t = t0
    for i in range(n):
        if i:
            t += rng.expovariate(1.0 / p.activity_gap_mean_s)
        if t >= end_s:
            break
        events.append(Event(t, "activity", user))
    connects = rng.random() < connect_p
    delay = rng.uniform(p.connect_delay_min_s, p.connect_delay_max_s)
    stay = rng.lognormvariate(math.log(p.session_median_s), p.session_sigma)
    cold = connects and cold_p > 0.0 and rng.random() < cold_p
    if cold:
        del events[mark:]  # a cold user is never seen on user:activity
    if not connects:
        return t, "browser"
    c = t0 if cold else t + delay
    if c >= end_s:
        return math.inf, "connector"
    events.append(Event(c, "connect", user))
    if c + stay > end_s:
        return math.inf, "cold" if cold else "connector"
    events.append(Event(c + stay, "disconnect", user))
    return c + stay, "cold" if cold else "connector"


def browsing(
    name: str,
    seed: int,
    p: BrowsingParams,
    *,
    arrivals: Callable[[random.Random], list[float]] | None = None,
    cold_p: float = 0.0,
    boot: BootProfile | None = None,
) -> Workload:
    """Generate a ``steady``-like workload from :class:`BrowsingParams`: one :func:`visit`
    per arriving user.

    Args:
        name: Scenario name (also seeds the random source with ``f"{name}:{seed}"``).
        seed: Random seed.
        p: Parameters.
        arrivals: Arrival times from the random source; default the piecewise-constant
            Poisson process of ``p`` (with its spike).
        cold_p: Share of connecting users that are cold (see :func:`visit`).
        boot: Boot profile; default ``U(boot_min_s, boot_max_s)`` without failures.
    """
    rng = random.Random(f"{name}:{seed}")
    events: list[Event] = []
    classes: dict[str, str] = {}
    times = arrivals(rng) if arrivals is not None else _arrivals(rng, p)
    for t0 in times:
        u = user_id(rng)
        _, classes[u] = visit(rng, p, t0, u, p.duration_s, p.connect_p, events, cold_p)
    return Workload(
        name=name,
        seed=seed,
        events=sort_events(events),
        duration_s=p.duration_s,
        boot=boot if boot is not None else BootProfile(p.boot_min_s, p.boot_max_s),
        user_class=classes,
        params=dataclasses.asdict(p),
    )


@register("steady")
def steady(seed: int, **overrides: Any) -> Workload:
    """Realistic browsing with ~40% of users connecting; see :class:`BrowsingParams`."""
    return browsing("steady", seed, _apply(STEADY, overrides))


@register("spike")
def spike(seed: int, **overrides: Any) -> Workload:
    """``steady`` with an 8x arrival-rate spike in minutes 10-15; see :data:`SPIKE`."""
    return browsing("spike", seed, _apply(SPIKE, overrides))


# --------------------------------------------------------------------------- starter


@dataclass(frozen=True)
class StarterParams:
    """Parameters of the ``starter`` scenario (times in seconds; all ranges uniform).

    ``fast_users`` connect ``U(*fast_connect_after_s)`` after their latest activity and stay
    ``U(*fast_stay_s)``; ``slow_users`` likewise with the ``slow_`` ranges; ``browsers``
    never connect.  Every ``U(*activity_gap_s)`` one activity event comes from a user drawn
    uniformly among those neither connected nor resting.  After a disconnect a user rests
    ``U(*rest_s)`` (no events), then starts over.
    """

    duration_s: float = 1800.0
    fast_users: int = 3
    fast_connect_after_s: tuple[float, float] = (5.0, 34.0)
    fast_stay_s: tuple[float, float] = (60.0, 180.0)
    slow_users: int = 17
    slow_connect_after_s: tuple[float, float] = (15.0, 74.0)
    slow_stay_s: tuple[float, float] = (180.0, 600.0)
    browsers: int = 30
    activity_gap_s: tuple[float, float] = (0.3, 1.3)
    rest_s: tuple[float, float] = (60.0, 240.0)
    boot_min_s: float = 10.0
    boot_max_s: float = 29.0


STARTER = StarterParams()


class _Eligible:
    """A set of indices ``0..n-1`` (initially all) with O(log n) update and k-th smallest
    lookup: a Fenwick tree of 0/1 flags (P. M. Fenwick, 1994)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.flag = [True] * n
        self.count = n
        self.tree = [0] * (n + 1)
        for j in range(1, n + 1):  # O(n) build of an all-ones tree
            self.tree[j] += 1
            parent = j + (j & -j)
            if parent <= n:
                self.tree[parent] += self.tree[j]
        self.top = 1 << max(0, n.bit_length() - 1) if n else 0

    def set(self, i: int, on: bool) -> None:
        """Put index ``i`` in (``on``) or out of the set."""
        if self.flag[i] == on:
            return
        self.flag[i] = on
        d = 1 if on else -1
        self.count += d
        j = i + 1
        while j <= self.n:
            self.tree[j] += d
            j += j & -j

    def kth(self, k: int) -> int:
        """The ``k``-th smallest index in the set (0-based ``k < count``)."""
        pos, step = 0, self.top
        while step:
            nxt = pos + step
            if nxt <= self.n and self.tree[nxt] <= k:
                pos = nxt
                k -= self.tree[nxt]
            step >>= 1
        return pos


@register("starter")
def starter(seed: int, **overrides: Any) -> Workload:
    """The starter scenario: 50 users (3 fast, 17 slow connectors, 30 browsers).

    Reading of "connects N s after its latest activity": a connecting user that has been
    active at least once in its current cycle has one pending connect, at
    ``t_last_activity + U(lo, hi)``; each new activity of that user re-draws it from the new
    activity time.  So a connect is always exactly its delay after the user's most recent
    activity, with no activity of that user in between.  A connected user makes no
    activity; on disconnect the pending connect is cleared and the user rests
    ``U(*rest_s)``, after which its next activity starts a new cycle.  Parameters in
    :class:`StarterParams`.
    """
    p = _apply(STARTER, overrides)
    rng = random.Random(f"starter:{seed}")
    users: list[str] = []
    cls: list[str] = []
    for label, count in (("fast", p.fast_users), ("slow", p.slow_users), ("browser", p.browsers)):
        for _ in range(count):
            users.append(user_id(rng))
            cls.append(label)
    n = len(users)
    connected = [False] * n
    resting = [False] * n
    pick = _Eligible(n)  # users neither connected nor resting, all at the start
    version = [0] * n  # bumps on each re-draw; stale connect entries are skipped
    heap: list[tuple[float, int, str, int, int]] = []  # (t, seq, what, user index, version)
    seq = 0
    events: list[Event] = []

    def push(t: float, what: str, i: int, v: int = 0) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, what, i, v))

    t_act = rng.uniform(*p.activity_gap_s)
    while True:
        while heap and heap[0][0] <= t_act and heap[0][0] <= p.duration_s:
            t, _, what, i, v = heapq.heappop(heap)
            if what == "connect":
                if v != version[i] or connected[i]:
                    continue
                connected[i] = True
                pick.set(i, False)
                events.append(Event(t, "connect", users[i]))
                stay = p.fast_stay_s if cls[i] == "fast" else p.slow_stay_s
                push(t + rng.uniform(*stay), "disconnect", i)
            elif what == "disconnect":
                connected[i] = False
                resting[i] = True  # still not eligible
                version[i] += 1
                events.append(Event(t, "disconnect", users[i]))
                push(t + rng.uniform(*p.rest_s), "wake", i)
            else:
                resting[i] = False
                pick.set(i, not connected[i])
        if t_act > p.duration_s:
            break
        if pick.count:
            # the same draw as rng.choice(eligible list in index order), in O(log n)
            i = pick.kth(rng.choice(range(pick.count)))
            events.append(Event(t_act, "activity", users[i]))
            if cls[i] != "browser":
                version[i] += 1
                after = p.fast_connect_after_s if cls[i] == "fast" else p.slow_connect_after_s
                push(t_act + rng.uniform(*after), "connect", i, version[i])
        t_act += rng.uniform(*p.activity_gap_s)
    return Workload(
        name="starter",
        seed=seed,
        events=sort_events(events),
        duration_s=p.duration_s,
        boot=BootProfile(p.boot_min_s, p.boot_max_s),
        user_class=dict(zip(users, cls, strict=True)),
        params=dataclasses.asdict(p),
    )


# --------------------------------------------------------------------------- trace


@register("trace")
def trace_scenario(seed: int, **overrides: Any) -> Workload:
    """Replay of the real Alibaba GenAI trace; see :func:`provisioner.sim.trace.build_workload`
    for the overrides (``window``, ``lead_activity``, ``gap_s``, ``path``)."""
    return trace.build_workload(seed=seed, **overrides)


# --------------------------------------------------------------------------- cold / flaky


@dataclass(frozen=True)
class ColdParams(BrowsingParams):
    """Parameters of ``cold``: :class:`BrowsingParams` plus the cold share.

    A connecting user is cold with probability ``cold_p``: it is never seen on
    ``user:activity`` and connects at its arrival time (see :func:`visit`), so about
    ``cold_p`` of the connects are cold (the scorecard's ``connects_cold``).
    """

    cold_p: float = 0.3


COLD = ColdParams()
"""Defaults of ``cold``: ``steady`` with 30% of the connects cold."""


@register("cold")
def cold(seed: int, **overrides: Any) -> Workload:
    """``steady`` where 30% of the connecting users never browse first (no activity before
    their connect, nor after); see :class:`ColdParams`.  Classes: ``"cold"``,
    ``"connector"``, ``"browser"``."""
    p = _apply(COLD, overrides)
    return browsing("cold", seed, p, cold_p=p.cold_p)


@dataclass(frozen=True)
class FlakyParams(BrowsingParams):
    """Parameters of ``flaky``: :class:`BrowsingParams` (the events of ``steady``) plus the
    boot failure modes of :class:`~provisioner.sim.workload.BootProfile`.

    Boots take ``U(boot_min_s, boot_max_s)``, multiplied by ``slow_tail_factor`` with
    probability ``slow_tail_p``; a boot fails (``terminated``) with probability ``fail_p``;
    a ready node's ``ready`` message is lost with probability ``lost_ready_p``.
    """

    fail_p: float = 0.1
    lost_ready_p: float = 0.05
    slow_tail_p: float = 0.1
    slow_tail_factor: float = 3.0


FLAKY = FlakyParams()
"""Defaults of ``flaky``: 10% failed boots, 5% lost ``ready``, 10% of boots 3x slower."""


@register("flaky")
def flaky(seed: int, **overrides: Any) -> Workload:
    """``steady``'s users on an unreliable node API; see :class:`FlakyParams`."""
    p = _apply(FLAKY, overrides)
    boot = BootProfile(
        p.boot_min_s,
        p.boot_max_s,
        fail_p=p.fail_p,
        lost_ready_p=p.lost_ready_p,
        slow_tail_p=p.slow_tail_p,
        slow_tail_factor=p.slow_tail_factor,
    )
    return browsing("flaky", seed, p, boot=boot)


# --------------------------------------------------------------------------- browse-heavy

BROWSE_HEAVY = BrowsingParams(arrival_rate_per_s=4.0, connect_p=0.05)
"""Defaults of ``browse-heavy`` (:class:`BrowsingParams`): 8x ``steady``'s arrivals (4 new
users/s) but only 5% of them connect, so activity alone is a weak signal: ~19 of 20
browsing users never connect.  The connects come at ``steady``'s rate (0.2/s: 0.5 x 40%
there, 4 x 5% here), so the two need pools of one size and differ in the signal only.
About 7,200 users and 360 sessions in the 30 min.  (Until 2026-12-01 the arrivals were
2/s: half the connect rate, so the benchmark needed 29 h of virtual time, twice the
ticks, for its 10,000 sessions, and the replay took over a minute.)  The benchmark
ticks it every 3 s, not 2 s (``bench.TICK_S``)."""


@register("browse-heavy")
def browse_heavy(seed: int, **overrides: Any) -> Workload:
    """Many browsing users, few connects; see :data:`BROWSE_HEAVY`."""
    return browsing("browse-heavy", seed, _apply(BROWSE_HEAVY, overrides))


# --------------------------------------------------------------------------- diurnal


@dataclass(frozen=True)
class DiurnalParams(BrowsingParams):
    """Parameters of ``diurnal``: :class:`BrowsingParams` with a daily wave of arrivals.

    New users arrive as an inhomogeneous Poisson process of rate
    ``rate(t) = arrival_rate_per_s * (1 + amplitude * sin(2 pi t / period_s))``, times
    ``spike_factor`` inside the spike window (off by default: ``spike_factor`` 1).  A day is
    compressed into ``period_s`` (2 h: 1 scenario second = 12 s of the day), so the rate
    rises from the mean at t = 0 to its peak ``(1 + amplitude) * arrival_rate_per_s`` at
    ``period_s / 4`` (30 min), falls to its trough ``(1 - amplitude) * arrival_rate_per_s``
    at ``3 period_s / 4`` (90 min) and is back at the mean after ``period_s``; over whole
    periods the mean rate is ``arrival_rate_per_s``.  Each user then behaves as in
    ``steady`` (:func:`visit`).  The default ``duration_s`` is one period.
    """

    duration_s: float = 7200.0
    amplitude: float = 0.8
    period_s: float = 7200.0


DIURNAL = DiurnalParams()
"""Defaults of ``diurnal``: mean 0.5 new users/s over a 2 h "day", peak 0.9/s at 30 min,
trough 0.1/s at 90 min (peak/trough 9)."""


def diurnal_rate(p: DiurnalParams, t: float) -> float:
    """Arrival rate of ``diurnal`` at time ``t`` (new users per second)."""
    r = p.arrival_rate_per_s * (1.0 + p.amplitude * math.sin(2.0 * math.pi * t / p.period_s))
    if p.spike_start_s <= t < p.spike_end_s:
        r *= p.spike_factor
    return max(0.0, r)


def thinned_arrivals(
    rng: random.Random, rate: Callable[[float], float], rate_max: float, end_s: float
) -> list[float]:
    """Arrival times in ``[0, end_s)`` of a Poisson process of intensity ``rate(t)`` by
    thinning: candidates from a homogeneous process of rate ``rate_max``, each kept with
    probability ``rate(t) / rate_max`` (needs ``rate(t) <= rate_max`` everywhere).

    Source: P. A. W. Lewis and G. S. Shedler, "Simulation of nonhomogeneous Poisson
    processes by thinning", Naval Research Logistics Quarterly 26(3), 1979.
    """
    out: list[float] = []
    if rate_max <= 0:
        return out
    t = rng.expovariate(rate_max)
    while t < end_s:
        if rng.random() * rate_max < rate(t):
            out.append(t)
        t += rng.expovariate(rate_max)
    return out


@register("diurnal")
def diurnal(seed: int, **overrides: Any) -> Workload:
    """Browsing users arriving on a compressed daily sine wave; see :class:`DiurnalParams`."""
    p = _apply(DIURNAL, overrides)
    if not 0.0 <= p.amplitude <= 1.0:
        raise ValueError(f"amplitude must be in [0, 1], got {p.amplitude}")
    if p.period_s <= 0:
        raise ValueError(f"period_s must be > 0, got {p.period_s}")
    rate_max = p.arrival_rate_per_s * (1.0 + p.amplitude) * max(1.0, p.spike_factor)

    def arrivals(rng: random.Random) -> list[float]:
        return thinned_arrivals(rng, lambda t: diurnal_rate(p, t), rate_max, p.duration_s)

    return browsing("diurnal", seed, p, arrivals=arrivals)


# --------------------------------------------------------------------------- returning


@dataclass(frozen=True)
class ReturningParams:
    """Parameters of ``returning`` (times in seconds): a fixed population that comes back.

    ``users`` users (the rate knob: sessions per second grow with it); each is a pure
    browser with probability ``never_connect_p`` (browses again and again, never
    connects), else a connector.  A user starts resting at t = 0; each rest lasts
    Exponential(mean ``rest_mean_s``).  After a rest the user makes one :func:`visit` (the
    ``steady`` user: activity, then with probability ``connect_p`` - 0 for a pure browser
    - a connect and a LogNormal session); the visit ends at the disconnect, or at its last
    activity when it does not connect, and the next rest starts there.  The per-visit fields
    mean what they mean in :class:`BrowsingParams`.  Events after ``duration_s`` are
    dropped.

    With the defaults a connector's cycle is about 0.8 x 215 s (session) + 32 s (browsing)
    + 9 s (delay) + 600 s (rest), so ~3.5 sessions per connector per hour and ~850 sessions
    per hour over the population; the default 2 h gives connectors ~6-7 sessions each.
    """

    duration_s: float = 7200.0
    users: int = 300
    never_connect_p: float = 0.2
    connect_p: float = 0.8
    rest_mean_s: float = 600.0
    activity_extra_mean: float = 4.0
    activity_gap_mean_s: float = 8.0
    connect_delay_min_s: float = 2.0
    connect_delay_max_s: float = 15.0
    session_median_s: float = 180.0
    session_sigma: float = 0.6
    boot_min_s: float = 20.0
    boot_max_s: float = 40.0


RETURNING = ReturningParams()
"""Defaults of ``returning``: 300 users (80% connectors) over 2 h, rests of mean 10 min."""


@register("returning")
def returning(seed: int, **overrides: Any) -> Workload:
    """A fixed population of users who come back for many sessions; see
    :class:`ReturningParams`.  Classes: ``"connector"``, ``"browser"``."""
    p = _apply(RETURNING, overrides)
    rng = random.Random(f"returning:{seed}")
    events: list[Event] = []
    classes: dict[str, str] = {}
    for _ in range(p.users):
        u = user_id(rng)
        browser = rng.random() < p.never_connect_p
        classes[u] = "browser" if browser else "connector"
        connect_p = 0.0 if browser else p.connect_p
        t = rng.expovariate(1.0 / p.rest_mean_s)
        while t < p.duration_s:
            end, _ = visit(rng, p, t, u, p.duration_s, connect_p, events)
            t = end + rng.expovariate(1.0 / p.rest_mean_s)
    return Workload(
        name="returning",
        seed=seed,
        events=sort_events(events),
        duration_s=p.duration_s,
        boot=BootProfile(p.boot_min_s, p.boot_max_s),
        user_class=classes,
        params=dataclasses.asdict(p),
    )


def build_live(name: str, seed: int = 1) -> Workload:
    """The workload a live run (``simulate``, ``demo``) plays: the trace's busiest day
    (23 days are for the fast replay), every other scenario whole."""
    if name == "trace":
        return build("trace", seed=seed, window="busiest-day")
    return build(name, seed=seed)


# --------------------------------------------------------------------------- benchmark sizes

BENCH_STARTER_DURATION_S = 14_400.0
"""Length of ``starter``'s benchmark workload: 4 h, so the start-up (everyone idle at
t = 0) is a small part of it."""

BENCH_STARTER_SESSIONS_PER_COPY = 480
"""Sessions one copy of the starter population (50 users) makes in
:data:`BENCH_STARTER_DURATION_S`, rounded down (measured: 512 with seed 1); sizes the
number of copies."""

_BENCH_QUANTUM_S = 600.0
"""Benchmark durations are rounded up to whole 10 minutes (``diurnal``: whole periods)."""

_BENCH_MARGIN = 1.05
"""Aim 5% above ``min_sessions`` so one generation is nearly always enough."""


def _starter_copies(k: int) -> dict[str, Any]:
    """Overrides for ``starter`` with ``k`` times the population and the same per-user
    behaviour: ``k`` times each user class, activity ``k`` times as often overall (each
    activity goes to one eligible user, so each user's own activity rate is unchanged)."""
    p = STARTER
    lo, hi = p.activity_gap_s
    return {
        "duration_s": BENCH_STARTER_DURATION_S,
        "fast_users": p.fast_users * k,
        "slow_users": p.slow_users * k,
        "browsers": p.browsers * k,
        "activity_gap_s": (lo / k, hi / k),
    }


def _round_up(x: float, quantum: float) -> float:
    return max(1.0, math.ceil(x / quantum)) * quantum


def _returning_sessions_per_s(p: ReturningParams) -> float:
    """Long-run sessions per second of ``returning``: connectors x connect_p / mean cycle,
    the cycle being rest + browsing + connect_p x (delay + mean LogNormal stay)."""
    stay = p.session_median_s * math.exp(p.session_sigma**2 / 2.0)
    delay = (p.connect_delay_min_s + p.connect_delay_max_s) / 2.0
    browse = p.activity_extra_mean * p.activity_gap_mean_s
    cycle = p.rest_mean_s + browse + p.connect_p * (delay + stay)
    return p.users * (1.0 - p.never_connect_p) * p.connect_p / cycle


def _bench_overrides(name: str, seed: int, target: float) -> dict[str, Any]:
    """Overrides that give about ``target`` sessions (expected values, see
    :func:`bench_workload`)."""
    browsing_defaults: dict[str, BrowsingParams] = {
        "steady": STEADY,
        "cold": COLD,
        "flaky": FLAKY,
        "browse-heavy": BROWSE_HEAVY,
        "diurnal": DIURNAL,
    }
    if name == "starter":
        return _starter_copies(math.ceil(target / BENCH_STARTER_SESSIONS_PER_COPY))
    if name == "spike":
        p = SPIKE
        spike_s = max(0.0, min(p.spike_end_s, p.duration_s) - p.spike_start_s)
        per_rate = p.connect_p * (p.duration_s + (p.spike_factor - 1.0) * spike_s)
        return {"arrival_rate_per_s": target / per_rate}
    if name == "returning":
        p_ret = RETURNING  # + one mean rest: every user starts resting at t = 0
        d = target / _returning_sessions_per_s(p_ret) + p_ret.rest_mean_s
        return {"duration_s": _round_up(d, _BENCH_QUANTUM_S)}
    if name in browsing_defaults:
        b = browsing_defaults[name]
        quantum = DIURNAL.period_s if name == "diurnal" else _BENCH_QUANTUM_S
        return {"duration_s": _round_up(target / (b.arrival_rate_per_s * b.connect_p), quantum)}
    # a scenario registered elsewhere: extrapolate its default's sessions per second
    probe = build(name, seed=seed)
    rate = max(len(probe.sessions()), 1) / probe.duration_s
    return {"duration_s": _round_up(target / rate, _BENCH_QUANTUM_S)}


def bench_workload(name: str, seed: int = 1, min_sessions: int = 10_000) -> Workload:
    """The workload the fast replay benchmark uses for scenario ``name``.

    * ``trace``: the whole trace (6,606 sessions over 23 days; it cannot reach
      ``min_sessions``, which is ignored).
    * ``starter``: ``k`` copies of the starter population (:func:`_starter_copies`: ``k`` x
      3 fast, 17 slow, 30 browsers, activity ``k`` times as frequent, so each user behaves as
      in ``starter``) over 4 h (:data:`BENCH_STARTER_DURATION_S`), with ``k = ceil(target /
      480)`` (22 for 10,000): the population grows rather than only the time, and 4 h
      rather than 30 min keeps the start-up (all users idle at t = 0) a small part.
    * ``spike``: the 30 min of ``spike`` with the arrival rate scaled up, so the 8x spike in
      minutes 10-15 keeps its shape (stretching the duration would make it a blip); this
      raises concurrency about 13x instead.
    * ``steady``, ``cold``, ``flaky``, ``browse-heavy``, ``diurnal``, ``returning``: default
      rates, longer duration (whole 10 min; ``diurnal`` whole 2 h periods, ``returning`` the
      same 300 users coming back for many more sessions, plus one mean rest for the
      start-up).
    * any other registered scenario: default parameters, duration extrapolated from it.

    ``target = 1.05 x min_sessions`` from expected values (sessions/s = arrival rate x
    connect_p; ``returning``: :func:`_returning_sessions_per_s`); if a draw falls short,
    the target grows by the shortfall and the workload is generated again, so the result
    always has ``>= min_sessions`` sessions (the trace excepted).

    Resulting counts, seed 1, ``min_sessions`` 10,000 (sessions / events / duration):

    ==============  ========  =========  =====================================
    steady          10,572    152,895    52,800 s (14.7 h)
    spike           10,695    153,346    1,800 s (rate 6.73 users/s)
    starter         11,301    418,545    14,400 s (22 copies: 1,100 users)
    trace           6,606     39,343     1,989,388 s (23 days)
    cold            10,512    137,138    52,800 s
    flaky           10,587    153,078    52,800 s
    browse-heavy    10,535    1,075,945  52,800 s (14.7 h; ~211k users)
    diurnal         11,577    168,245    57,600 s (8 whole periods)
    returning       10,364    109,434    45,000 s (12.5 h; ~44 per connector)
    ==============  ========  =========  =====================================

    Args:
        name: A registered scenario.
        seed: Random seed.
        min_sessions: Least number of sessions (:meth:`Workload.sessions`, which counts a
            session cut by the end).

    Returns:
        The workload; its ``params`` hold all its parameters, overrides included.
    """
    if name == "trace":
        return build("trace", seed=seed)
    target = min_sessions * _BENCH_MARGIN
    for _ in range(20):
        wl = build(name, seed=seed, **_bench_overrides(name, seed, target))
        got = len(wl.sessions())
        if got >= min_sessions:
            return wl
        target *= min_sessions / max(got, 1) * _BENCH_MARGIN
    raise RuntimeError(f"{name}: could not reach {min_sessions} sessions")


NAMES: tuple[str, ...] = names()
"""Scenario names registered in this module (see :func:`names` for later additions)."""
