"""The predictive policy: base-stock level from per-user connect probabilities.

Ready nodes are inventory, connects are demand and the boot time B is the lead time
(docs/design.md#4).  The policy keeps ready + booting + pending creates at the base-stock
level ``S``: the smallest stock with ``P(demand within B > S) <= 1 - q``, where ``q`` is
the newsvendor critical fractile ``q = c_miss / (c_miss + c_idle)`` (Arrow, Harris &
Marschak 1951; any operations-research text, e.g. Porteus, *Foundations of Stochastic
Inventory Theory*, ch. 1).  ``c_idle`` is the cost of one spare node that is not used,
about one lead time of idling (B node-seconds), and ``c_miss`` is the knob
``miss_cost_b``, what one miss is worth in the same unit: ``q = c / (c + 1)`` is then the
same service level whatever the boot time (``miss_cost_s`` in node-seconds instead makes
it 0.994 at B = 6 s and 0.971 at 30 s for 1000 node-seconds).

Demand within B is modelled as a sum of independent Bernoulli connects of the active
users plus Poisson background demand:

* **Hazard model.** Each active user is in a *feature class*, fixed at its latest activity
  (:func:`user_class`, mirrored by lua/includes/util.lua): activity events in its session
  (1, 2-3, 4-7, 8+; a session is one stay in the active set), the session's age (below or
  above one B: with the count, the activity rate), and its past (never connected; 1-2 or
  3+ connects, with the last disconnect less or more than 4 B before) - 40 classes; and
  in a *recency bucket* (time since its last activity, edges at B/8, B/4, B/2, B, 2B,
  4B).  For each (class, bucket) the policy learns a connect hazard ``h = connects /
  exposure`` (connects per user-second): connects are counted by the connect script in
  the bucket the user was in; exposure is the number of users in the bucket (ZCOUNT on
  ``users:active``, whose scores are class * 1e13 + last seen) times the tick length.
  Both are exponentially forgotten (half-life ``memory_b`` boot times).  Sparse cells are
  shrunk hierarchically (a gamma-Poisson posterior mean at each level, ``prior_exposure_b``
  boot times of pseudo-exposure; empirical Bayes, e.g. Gelman et al., *Bayesian Data
  Analysis*, ch. 5): a cell toward its parent class (session count x connected before,
  8 parents) in the same bucket, a parent toward the bucket's hazard over all classes, and
  that toward the pooled hazard.  A user at recency ``r`` connects within B with
  ``p = 1 - exp(-H)``, ``H`` the hazard integrated over ``[r, r + B]`` across the
  buckets it will age through (the piecewise-constant hazard of a survival model).  A
  tick costs O(occupied classes x buckets), never O(users): the counts come sparse, and
  the forgetting is one scale factor (values are stored multiplied by ``g``, which grows
  instead of every cell decaying).
* **Background.** Connects of users not in the active set (cold or long gone) arrive as
  Poisson with rate ``lambda_bg``, an EWMA of half-life ``bg_half_life_b`` B (10): the
  EWMA of a Poisson count of rate ``lambda`` with time constant ``tau = half-life / ln 2``
  has variance ``lambda / (2 tau)`` (the exponential filter's noise gain), so at ``lambda B
  = 1.8`` (``cold``) a 2 B half-life leaves 31% relative error and 10 B 14%; the noise
  does not average out, as the reaper keeps the largest target of ``hold_b`` B.  Users
  who will *arrive* within B and connect within it add ``arrival_rate * B * p_new``.
* **Returns.** Allocated nodes freed by disconnects come back to the pool.  The mean
  session ``W`` is Little's law (``L = lambda W``: the time-averaged allocated nodes over
  the release rate; Little, "A proof for the queuing formula L = lambda W", 1961); with
  sessions taken as exponential, a running session ends within B with ``p = 1 - exp(-B /
  W)`` and a connect within B is still in session at B with ``phi = p W / B``.  The stock
  covers the connects still in session at B (a thinned count: mean ``phi mu``, variance
  ``phi^2 var + phi (1 - phi) mu``) less ``release_credit`` times the expected ends of the
  running sessions, ``allocated * p``, never more than the releases seen in one B (a
  spike's sessions have just begun and end later than an exponential session says); the
  credited ends add their binomial variance (times ``release_credit^2``).
* **Spikes.** New users arriving at a short-term rate (half-life a quarter of the long one)
  above ``spike_ratio`` times the long-term rate scale the forecast by the ratio (at most 4).

* **Calibration.** ``p`` assumes a user stays silent until it connects; users who browse
  again and connect later are missed by it, so ``mu`` is biased low where browsing goes on.
  Each tick's forecast is compared with the connects that actually came in the following
  B: a multiplicative bias correction (e.g. Hyndman & Athanasopoulos, *Forecasting:
  Principles and Practice*, on forecast bias), the ratio ``(A + k) / (F + k)`` of the
  connects and the forecasts, forgotten with a half-life of ``cal_half_life_b`` B, each
  forecast weighted by tick / B (the windows overlap) and by the evidence the model had
  when it made it (a model that has learned nothing says nothing of its bias), shrunk by
  ``k = cal_prior`` pseudo-connects, bounded to [``cal_min``, ``cal_max``].
* **Drift.** The hazards remember ``memory_b`` (200) B.  The connects of the active users
  in each tick against what the hazards expect of them, ``sum(users * h * dt)``, forgotten
  with a half-life of ``drift_half_life_b`` (1) B and shrunk by ``drift_prior``
  pseudo-connects, give a ratio that follows a change of behaviour within a few B (users
  who stop connecting stop costing nodes); ~1 otherwise.
* Calibration and drift scale each user's hazard, not the sum: ``p' = 1 - (1 - p)^r``, so
  no user's ``p`` passes 1 and the mean never exceeds the users who could connect; the
  Poisson part's rate is scaled by the calibration.
* **Fallback.** A model that has learned from ``e`` connects is blended with a model-free
  base stock, Poisson demand at the observed connect rate (``rate * B``), with weight
  ``e / (e + evidence_connects)``: sensible from the first connects, the model's own once
  it has seen a few dozen.  The fallback starts from the model's forecast and trusts the
  observed rate with weight ``1 - 2^(-t / (fallback_warm_b B))`` (``t`` since the first
  tick): a few seconds without a connect say nothing yet.
* **Prior.** Before any connect the pooled hazard is its prior, ``prior_hazard_b``
  connects per user per B with ``prior_exposure_b`` user-B of pseudo-exposure (its
  pseudo-connects count in ``e``): browsing users are expected to connect, so the first
  connects can find a node booted ahead.
* **Rates** (arrivals, disconnects, background, connects) are EWMAs corrected for their
  start-up bias (:class:`~provisioner.policies.rate.WarmRate`), so a cold start reads
  the rates seen so far instead of zero (and the spike detector, fast over slow, does not
  fire at every start).

With mean ``mu`` and variance ``var`` (Bernoulli ``p(1-p)`` plus Poisson), the normal
approximation gives ``S = ceil(mu + z * sqrt(var)) + min_spare``, ``z = Phi^-1(q)``.

* **Premium margin.** Premium users' misses cost ``premium_miss_factor`` times more, so
  their critical fractile is ``q_p = c_p / (c_p + B)`` with ``c_p = factor * c_miss``.
  Their own demand within B is Poisson with mean ``mu_p``, their share of the users'
  forecast (active premium users / active users, times ``mu`` without the background);
  the margin is the stock that raises their service level from ``q`` to ``q_p``,
  ``Q(mu_p, q_p) - Q(mu_p, q)`` (``Q`` the Poisson quantile), added to ``S``: the
  newsvendor applied to the premium class alone (e.g. Porteus, ch. 1; serving them first
  from the waitlist is the rest of their priority).
Surplus ready nodes go after ``keep_alive_b * B`` idle seconds: keeping a node idle for
B costs what a new boot costs, the break-even of the ski-rental problem (Karlin et al.,
"Competitive snoopy caching", 1988).  The reaper leaves the largest target of the last
``hold_b`` B, forgetting the targets planned with a boot time off by 2x or more (before
the first boot is seen the leader plans with its default B), and those planned with an
arrival rate ``hold_arrival_ratio`` times the present one or more: the crowd they were
planned for has passed (a first tick that finds 200 users already browsing reads them as
arrivals at 100 users/s, and holding the target of that one tick for 4 B cost 16.6x the
oracle; forgotten, 9.0x).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections import deque
from dataclasses import dataclass
from operator import mul
from statistics import NormalDist
from typing import Any

from provisioner.policies.base import Decision, Features, Observation
from provisioner.policies.rate import Level, WarmRate

__all__ = [
    "DEFAULT_MISS_COST_B",
    "N_CLASSES",
    "RECENCY_EDGES_B",
    "PredictiveConfig",
    "PredictivePolicy",
    "parent_class",
    "user_class",
]

#: The miss cost's default, in boot times of an idle node: q = c / (c + 1) = 0.971, the
#: fractile 1000 node-seconds gave at B = 30 s.
DEFAULT_MISS_COST_B = 33.3
#: Recency bucket edges in boot times (mirrors lua/includes/codes.lua).
RECENCY_EDGES_B = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
#: Feature classes (mirrors lua/includes/codes.lua): 4 counts x 2 ages x 5 pasts.
N_CLASSES = 40
N_BUCKETS = len(RECENCY_EDGES_B) + 1
#: Parent classes of the hierarchical prior: session count bucket x connected before.
N_PARENTS = 8
#: Session age (first to latest activity of the session) that makes a session "old", in B.
SESSION_AGE_B = 1.0
#: A disconnect less than this long before the latest activity is "recent", in B.
RETURN_GAP_B = 4.0
#: Field of ``P:hazard`` counting the connects of class c, recency bucket b.
_HAZARD_KEYS = [[f"c{c}:r{b}" for b in range(N_BUCKETS)] for c in range(N_CLASSES)]
_KEY_CELL = {_HAZARD_KEYS[c][b]: (c, b) for c in range(N_CLASSES) for b in range(N_BUCKETS)}
#: The drift ratio's floor: users who stopped connecting keep a twentieth of their hazard.
_DRIFT_MIN = 0.05
#: A forecast below this many connects is not settled (it says nothing of the model's bias).
_NEGLIGIBLE = 0.05
#: Below this B / W (W the mean session) no session ends within B (and W is past measuring).
_TINY_X = 1e-9
#: Where a user of the open last bucket is taken to be, in boot times.
_LAST_MID_B = 6.0
#: The scale factor of the forgotten sums is folded back into them beyond this.
_RESCALE_AT = 1e100
#: A gap of more half-lives than this forgets everything (2**x would overflow near 1024).
_FORGET_ALL_HALVINGS = 200.0


def _window_rows() -> list[list[float]]:
    """Per recency bucket b: how much of ``[mid_b, mid_b + B]`` lies in each bucket j, in
    B (edges and midpoints are multiples of B, so this is fixed)."""
    edges = [0.0, *RECENCY_EDGES_B, math.inf]
    mids = [(edges[j] + edges[j + 1]) / 2 for j in range(N_BUCKETS - 1)] + [_LAST_MID_B]
    rows = []
    for m in mids:
        w = dict(_overlaps(m, m + 1.0, edges))
        rows.append([w.get(j, 0.0) for j in range(N_BUCKETS)])
    return rows


def _overlaps(lo: float, hi: float, edges: list[float]) -> list[tuple[int, float]]:
    """The buckets ``[edges[j], edges[j + 1])`` that ``[lo, hi]`` overlaps, and by how much
    (in the unit of the edges)."""
    out = []
    for j in range(N_BUCKETS):
        overlap = min(hi, edges[j + 1]) - max(lo, edges[j])
        if overlap > 0:
            out.append((j, overlap))
    return out


#: ``_WINDOW_ROWS[b][j]``: the overlap, in B, of one boot time from bucket b's midpoint
#: with bucket j.
_WINDOW_ROWS = _window_rows()


def user_class(
    session_count: int,
    session_age_s: float,
    connects: int,
    since_disconnect_s: float | None,
    boot_s: float,
) -> int:
    """Feature class of a user at its latest activity (as lua/includes/util.lua).

    Args:
        session_count: activity events in the session, >= 1.
        session_age_s: seconds from the session's first activity to this one.
        connects: connects in the user's life.
        since_disconnect_s: seconds since its last disconnect (None: never).
        boot_s: the boot time B, seconds.

    Returns:
        ``(cb * 2 + ab) * 5 + rs`` in ``[0, N_CLASSES)`` (module docstring).
    """
    cb = 0 if session_count <= 1 else 1 if session_count <= 3 else 2 if session_count <= 7 else 3
    ab = 1 if session_age_s >= SESSION_AGE_B * boot_s else 0
    rs = 0
    if connects > 0:
        rs = 3 if connects >= 3 else 1
        if since_disconnect_s is not None and since_disconnect_s < RETURN_GAP_B * boot_s:
            rs += 1
    return (cb * 2 + ab) * 5 + rs


def parent_class(c: int) -> int:
    """The parent of class ``c`` in the hierarchical prior: ``cb * 2 + connected before``."""
    return (c // 10) * 2 + (1 if c % 5 else 0)


_PARENT = [parent_class(c) for c in range(N_CLASSES)]


@dataclass(frozen=True)
class PredictiveConfig:
    """Knobs of :class:`PredictivePolicy` (durations in boot times B unless named _s).

    Attributes:
        miss_cost_b: what one miss is worth, in boot times of an idle node (the one knob
            to sweep): the critical fractile is ``c / (c + 1)`` at any B.
        miss_cost_s: when set, what one miss is worth in node-seconds instead (a fractile
            that changes with B).
        min_spare: spare nodes kept whatever the forecast.
        memory_b: half-life of the hazard statistics, in B.
        prior_exposure_b: strength of each level of the hierarchical prior, in user-B.
        rate_half_life_b: half-life of the arrival and disconnect rates, in B.
        bg_half_life_b: half-life of the background rate, in B.
        release_credit: share of the expected returns of the running sessions counted
            as supply, 0..1 (module docstring, Returns).
        keep_alive_b: idle time before a surplus ready node goes, in B.
        spike_ratio: a spike is declared when the short-term arrival rate (half-life a
            quarter of the long one) exceeds the long-term one by this factor; the forecast
            is then scaled by their ratio (at most 4).
        premium_miss_factor: a premium user's miss costs this many times a normal one:
            the fractile of their own safety margin (module docstring, Premium margin).
        hold_b: the reaper leaves the largest target of the last ``hold_b`` B (hysteresis:
            a dip of the forecast does not reap nodes that the next rise boots again).
        hold_arrival_ratio: a held target is forgotten once the arrival rate it was planned
            with is this many times the present one (0: never; fitted on the tuning worlds,
            where 2, 3, 4 and 8 keep the median and 4 was the best at the tails).
        max_spare: cap on the target.
        cal_half_life_b: half-life of the calibration's sums, in B.
        cal_prior: pseudo-connects (on both sides) that shrink the calibration toward 1.
        cal_min, cal_max: bounds of the calibration.
        drift_half_life_b: half-life of the drift ratio's sums, in B (0: no drift).
        drift_prior: pseudo-connects that shrink the drift ratio toward 1.
        prior_hazard_b: the pooled hazard's prior, connects per user per B, with
            ``prior_exposure_b`` of pseudo-exposure: before any connect, browsing users
            are expected to connect at this rate (fitted on the tuning worlds: 0.05, 0.2
            and 0.5 gave 98.8, 99.1 and 99.1% median hits at 1.48x, 0: 98.6% at 1.47x).
        evidence_connects: the model's weight against the model-free fallback is
            ``e / (e + evidence_connects)``, ``e`` the connects it has learned from
            (0: the model alone).
        fallback_warm_b: the fallback starts from the model's forecast and trusts the
            observed connect rate with weight ``1 - 2^(-t / (fallback_warm_b B))``, ``t``
            the time since the policy's first tick (0: from the first tick; fitted on
            the tuning worlds, where 0.5 B and 0 give the same median, and the cold
            start of ``steady`` misses 3 connects of 92 instead of 10).
    """

    miss_cost_b: float = DEFAULT_MISS_COST_B
    miss_cost_s: float | None = None
    min_spare: int = 0
    memory_b: float = 200.0
    prior_exposure_b: float = 20.0
    rate_half_life_b: float = 2.0
    bg_half_life_b: float = 10.0
    release_credit: float = 0.5
    keep_alive_b: float = 1.0
    hold_b: float = 4.0
    premium_miss_factor: float = 10.0
    spike_ratio: float = 1.5
    max_spare: int = 1000
    cal_half_life_b: float = 8.0
    cal_prior: float = 10.0
    cal_max: float = 4.0
    cal_min: float = 0.1
    drift_half_life_b: float = 1.0
    drift_prior: float = 5.0
    evidence_connects: float = 10.0
    prior_hazard_b: float = 0.2
    fallback_warm_b: float = 0.5
    hold_arrival_ratio: float = 4.0

    def __post_init__(self) -> None:
        if not (self.miss_cost_b > 0 and self.memory_b > 0 and self.prior_exposure_b > 0):
            raise ValueError("miss_cost_b, memory_b and prior_exposure_b must be > 0")
        if self.miss_cost_s is not None and not self.miss_cost_s > 0:
            raise ValueError("miss_cost_s must be > 0")
        if not (self.rate_half_life_b > 0 and self.bg_half_life_b > 0):
            raise ValueError("rate_half_life_b and bg_half_life_b must be > 0")
        if not (self.keep_alive_b >= 0 and self.min_spare >= 0 and self.hold_b >= 0):
            raise ValueError("keep_alive_b, min_spare and hold_b must be >= 0")
        if not (self.hold_arrival_ratio == 0 or self.hold_arrival_ratio > 1):
            raise ValueError("hold_arrival_ratio must be 0 (never) or > 1")
        if not 0.0 <= self.release_credit <= 1.0:
            raise ValueError("release_credit must be in [0, 1]")
        if not self.premium_miss_factor >= 1.0:
            raise ValueError("premium_miss_factor must be >= 1")
        if not (self.cal_half_life_b > 0 and self.cal_prior > 0 and self.drift_prior > 0):
            raise ValueError("cal_half_life_b, cal_prior and drift_prior must be > 0")
        if not 0 < self.cal_min <= 1.0 <= self.cal_max:
            raise ValueError("cal_min and cal_max must satisfy 0 < cal_min <= 1 <= cal_max")
        if not (
            self.drift_half_life_b >= 0 and self.evidence_connects >= 0
            and self.prior_hazard_b >= 0 and self.fallback_warm_b >= 0
        ):  # fmt: skip
            raise ValueError(
                "drift_half_life_b, evidence_connects, prior_hazard_b and fallback_warm_b "
                "must be >= 0"
            )


def _poisson_quantile(lam: float, q: float) -> int:
    """Smallest k with P(Poisson(lam) <= k) >= q."""
    if lam <= 0:
        return 0
    if lam > 50:  # normal approximation (exp(-lam) would underflow for large lam)
        return math.ceil(lam + _z(q) * math.sqrt(lam))
    k, term = 0, math.exp(-lam)
    cdf = term
    while cdf < q and k < 100_000:
        k += 1
        term *= lam / k
        cdf += term
    return k


def _fin(x: Any) -> float:
    """A stored number as a finite float (ValueError otherwise)."""
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"not a finite number: {x!r}")
    return v


def _opt_int(x: Any) -> int | None:
    """A stored optional integer (ms, a counter): None stays None."""
    return None if x is None else int(x)


@functools.lru_cache(maxsize=256)
def _z(q: float) -> float:
    """``Phi^-1(q)`` (cached: q changes only with the learned B)."""
    return NormalDist().inv_cdf(min(q, 1 - 1e-9))


def _zeros(rows: int) -> list[list[float]]:
    return [[0.0] * N_BUCKETS for _ in range(rows)]


class PredictivePolicy:
    """Base-stock level from a learned per-user connect hazard (module docstring).

    Args:
        config: the knobs.
    """

    name = "predictive"
    target_rises_only_on_events = True  # every rate only decays without counts
    features = Features(N_CLASSES, RECENCY_EDGES_B)

    def __init__(self, config: PredictiveConfig | None = None) -> None:
        self.config = config or PredictiveConfig()
        # forgotten sums, stored times the scale factor _g (module docstring)
        self._g = 1.0
        self._c = _zeros(N_CLASSES)
        self._e = _zeros(N_CLASSES)
        self._pc = _zeros(N_PARENTS)
        self._pe = _zeros(N_PARENTS)
        self._bc = [0.0] * N_BUCKETS
        self._be = [0.0] * N_BUCKETS
        self._last_counts: dict[str, int] | None = None
        self._last_n: dict[int, list[int]] | None = None
        self._last_ms: int | None = None
        self._bg = WarmRate(60.0)
        self._arrivals = WarmRate(60.0)
        self._arrivals_fast = WarmRate(15.0)
        self._disconnects = WarmRate(60.0)
        self._connect_rate = WarmRate(60.0)
        self._allocated = Level(60.0)
        self._bg_last: int | None = None
        # connects the model has learned from (not forgotten: the evidence it has)
        self._learned = 0.0
        self._prev_ms: int | None = None
        self._first_ms: int | None = None
        self._tick_s = 0.0
        # the drift check: connects of the users in the active set this tick, and the
        # forgotten sums of those connects and of what the hazards expected
        self._tick_connects = 0
        self._drift_actual = 0.0
        self._drift_expected = 0.0
        self._ticks = 0
        # (due ms, forecast, connects then, weight)
        self._pending: deque[tuple[int, float, int, float]] = deque()
        self._pending_restored = False  # restored windows past their end are dropped
        self._cal_last_ms: int | None = None
        self._hold_boot_s = 0.0
        # (ms, target, arrival rate) within the hold window, targets decreasing: its first
        # is the largest
        self._recent: deque[tuple[int, int, float]] = deque()
        self._cal_actual = 0.0
        self._cal_forecast = 0.0

    # -- state ------------------------------------------------------------------------
    @property
    def connects(self) -> list[list[float]]:
        """Forgotten connect counts per class and bucket (``[N_CLASSES][N_BUCKETS]``)."""
        return [[x / self._g for x in row] for row in self._c]

    @property
    def exposure(self) -> list[list[float]]:
        """Forgotten exposure per class and bucket, user-seconds."""
        return [[x / self._g for x in row] for row in self._e]

    def _add(self, c: int, b: int, connects: float, exposure: float) -> None:
        """Add (unscaled) connects and exposure to a cell and its parent and bucket."""
        g = self._g
        p = _PARENT[c]
        if connects:
            x = connects * g
            self._c[c][b] += x
            self._pc[p][b] += x
            self._bc[b] += x
        if exposure:
            y = exposure * g
            self._e[c][b] += y
            self._pe[p][b] += y
            self._be[b] += y

    def _set(self, connects: list[list[float]], exposure: list[list[float]]) -> None:
        self._g = 1.0
        self._c, self._e = _zeros(N_CLASSES), _zeros(N_CLASSES)
        self._pc, self._pe = _zeros(N_PARENTS), _zeros(N_PARENTS)
        self._bc, self._be = [0.0] * N_BUCKETS, [0.0] * N_BUCKETS
        for c in range(N_CLASSES):
            for b in range(N_BUCKETS):
                self._add(c, b, connects[c][b], exposure[c][b])

    def restore(self, last: dict[str, str]) -> None:
        """Recover the learned hazard statistics from the last stored decision (a state
        of another shape, e.g. from before the classes changed, is ignored)."""
        try:
            state = json.loads(last.get("state", "{}"))
            c, e = state.get("connects"), state.get("exposure")
            if (
                isinstance(c, list)
                and isinstance(e, list)
                and len(c) == len(e) == N_CLASSES
                and all(isinstance(row, list) and len(row) == N_BUCKETS for row in c + e)
            ):
                self._set(
                    [[max(0.0, float(x)) for x in row] for row in c],
                    [[max(0.0, float(x)) for x in row] for row in e],
                )
                self._learned = max(self._learned, sum(self._bc))
        except (ValueError, TypeError, AttributeError):
            return
        # a state from before the loops were stored: they start afresh
        with contextlib.suppress(ValueError, TypeError, AttributeError, IndexError, KeyError):
            self._restore_loops(state)

    def _restore_loops(self, s: dict[str, Any]) -> None:
        """The loops' state of :meth:`state_json`; nothing is set unless all of it reads
        (a number that is not finite, a missing part: ValueError, TypeError, ...)."""
        rates = {
            name: (_fin(v[0]), _fin(v[1]), _fin(v[2]), _opt_int(v[3]), _opt_int(v[4]))
            for name, v in ((n, s["rates"][n]) for n in self._rates_by_name())
        }
        allocated = (_fin(s["allocated"][0]), _opt_int(s["allocated"][1]))
        cal = (_fin(s["cal"][0]), _fin(s["cal"][1]), _opt_int(s["cal"][2]))
        pending = [(int(d), _fin(f), int(c), _fin(w)) for d, f, c, w in s["pending"]]
        drift = (_fin(s["drift"][0]), _fin(s["drift"][1]))
        hold = [(int(t), int(k), _fin(a)) for t, k, a in s["hold"]]
        learned, bg_last = _fin(s["learned"]), _opt_int(s["bg_last"])
        first_ms, tick_s, hold_boot_s = (
            _opt_int(s["first_ms"]),
            _fin(s["tick_s"]),
            _fin(s["hold_boot_s"]),
        )
        for name, r in self._rates_by_name().items():
            r.value, r.raw, r.mass, r.last_count, r.last_ms = rates[name]
        self._allocated.value, self._allocated.last_ms = allocated
        self._cal_actual, self._cal_forecast, self._cal_last_ms = cal
        self._pending = deque(pending)
        self._pending_restored = True
        self._drift_actual, self._drift_expected = drift
        self._recent = deque(hold)
        self._learned = max(self._learned, learned)
        self._bg_last, self._first_ms = bg_last, first_ms
        self._tick_s, self._hold_boot_s = tick_s, hold_boot_s

    # -- the model --------------------------------------------------------------------
    def _learn(
        self, n: dict[int, list[int]], counts: dict[str, int], now_ms: int, boot_s: float
    ) -> None:
        """Forget by the time since the last tick, then add this tick's exposure (users
        per cell, averaged over the tick, times its length) and the new connects."""
        if self._last_ms is None or self._last_counts is None or self._last_n is None:
            self._last_ms, self._last_counts, self._last_n = now_ms, counts, n
            return
        dt = (now_ms - self._last_ms) / 1000.0
        if dt <= 0:
            return
        halvings = dt / (self.config.memory_b * boot_s)
        if halvings > _FORGET_ALL_HALVINGS:  # a gap so long that nothing learned is left
            self._set(_zeros(N_CLASSES), _zeros(N_CLASSES))
        else:
            self._g *= 2.0**halvings
            if self._g > _RESCALE_AT:
                self._set(self.connects, self.exposure)
        last_n = self._last_n
        g = self._g
        be = self._be
        for c in n.keys() | last_n.keys():
            now_row, last_row = n.get(c), last_n.get(c)
            if now_row and last_row:
                both = [x + y for x, y in zip(now_row, last_row, strict=True)]
            else:
                both = now_row or last_row or []
            row_e, row_pe = self._e[c], self._pe[_PARENT[c]]
            for b, k in enumerate(both):
                if k:  # as _add(c, b, 0, users * dt), inlined: ~45 cells a tick
                    y = 0.5 * k * dt * g
                    row_e[b] += y
                    row_pe[b] += y
                    be[b] += y
        if counts is not self._last_counts:  # the coordinator hands back the same dict
            last = self._last_counts
            for key, v in counts.items():
                cell = _KEY_CELL.get(key)
                if cell is not None and v > last.get(key, 0):
                    self._add(cell[0], cell[1], v - last.get(key, 0), 0.0)
                    self._tick_connects += v - last.get(key, 0)
                    self._learned += v - last.get(key, 0)
        self._last_ms, self._last_counts, self._last_n = now_ms, counts, n

    def _hazard_rows(self, boot_s: float) -> _Hazards:
        return _Hazards(
            self, self.config.prior_exposure_b * boot_s * self._g,
            self.config.prior_hazard_b / boot_s,
        )  # fmt: skip

    def hazards(self, boot_s: float) -> list[list[float]]:
        """Posterior-mean connect hazard per class and bucket, connects per user-second
        (``[N_CLASSES][N_BUCKETS]``; hierarchical shrinkage, module docstring)."""
        rows = self._hazard_rows(boot_s)
        return [rows.row(c) for c in range(N_CLASSES)]

    @staticmethod
    def p_within(h: list[float], age_s: float, boot_s: float) -> float:
        """P(connect within one boot time) of a user now ``age_s`` since its last activity,
        for the piecewise-constant hazard ``h`` over the recency buckets."""
        edges = [0.0, *(e * boot_s for e in RECENCY_EDGES_B), math.inf]
        cum = sum(h[j] * w for j, w in _overlaps(age_s, age_s + boot_s, edges))
        return 1.0 - math.exp(-cum)

    def _calibrate(self, now_ms: int, connects_now: int, boot_s: float) -> float:
        """Settle the forecasts whose window has passed; the current correction factor.

        Each settled window adds its connects and its forecast to sums forgotten with a
        half-life of ``cal_half_life_b`` B (by the time between windows), weighted by the
        evidence the model had when it forecast (a model that has learned nothing forecasts
        ~0 however many connect: no bias to learn from) and by tick / B (the windows
        overlap).  The ratio is shrunk toward 1 by ``cal_prior`` pseudo-connects on both
        sides, so a handful of connects cannot push it to its bounds [0.5, ``cal_max``]."""
        cfg = self.config
        if self._pending_restored:
            # windows restored from a stored state and already past their end cannot be
            # settled: the connects since then span more than their B (a kill -9 handover
            # settled 6 s windows over 30 s of connects: the calibration 1.5 -> 2.4)
            self._pending_restored = False
            while self._pending and self._pending[0][0] <= now_ms:
                self._pending.popleft()
        while self._pending and self._pending[0][0] <= now_ms:
            due, forecast, then, weight = self._pending.popleft()
            if forecast < _NEGLIGIBLE:
                continue  # nothing forecast: no bias to learn (and none while fast-forwarded)
            last = self._cal_last_ms if self._cal_last_ms is not None else due
            decay = 0.5 ** (max(0, due - last) / 1000.0 / (cfg.cal_half_life_b * boot_s))
            self._cal_last_ms = due
            self._cal_actual = self._cal_actual * decay + weight * max(0, connects_now - then)
            self._cal_forecast = self._cal_forecast * decay + weight * forecast
        k = cfg.cal_prior
        return min(cfg.cal_max, max(cfg.cal_min, (self._cal_actual + k) / (self._cal_forecast + k)))

    def _drift(self, n: dict[int, list[int]], hz: _Hazards, dt_s: float, boot_s: float) -> float:
        """How the active users connect lately against what the learned hazards say: the
        connects this tick over ``sum(users * h * dt)``, both forgotten with a half-life of
        ``drift_half_life_b`` B and shrunk by ``drift_prior`` pseudo-connects, bounded to
        [0.05, ``cal_max``].  The hazards remember ``memory_b`` B; this ratio, a
        tick's evidence old at most, scales them when behaviour changes (users who stop
        connecting stop costing nodes within a few B) and is ~1 otherwise."""
        cfg = self.config
        actual, self._tick_connects = self._tick_connects, 0
        if cfg.drift_half_life_b <= 0:
            return 1.0
        if dt_s > 0:
            expected = 0.0
            for c, row in n.items():
                h = hz.row(c)
                expected += sum(k * h[b] for b, k in enumerate(row) if k)
            decay = 0.5 ** (dt_s / (cfg.drift_half_life_b * boot_s))
            self._drift_actual = self._drift_actual * decay + actual
            self._drift_expected = self._drift_expected * decay + expected * dt_s
        k = cfg.drift_prior
        ratio = (self._drift_actual + k) / (self._drift_expected + k)
        return min(cfg.cal_max, max(_DRIFT_MIN, ratio))

    def _evidence(self) -> float:
        """How much the model has learned, 0..1: ``e / (e + evidence_connects)``, ``e`` the
        connects it has learned from (hazard cells and background), never forgotten."""
        k = self.config.evidence_connects
        if k <= 0:
            return 1.0
        # the prior's pseudo-connects count too: it is what the model knows at the start
        e = self._learned + self.config.prior_hazard_b * self.config.prior_exposure_b
        return e / (e + k)

    def steady_until_ms(self, now_ms: int) -> float:
        """No promise: the rates, the calibration and the learned hazards move every tick
        (the replay fast-forwards this policy only over an empty pool at target 0)."""
        return now_ms

    def _rates(self, obs: Observation, boot_s: float) -> _Rates:
        """Update the rate EWMAs from the counters; the spike factor (module docstring)."""
        cfg = self.config
        hl = cfg.rate_half_life_b * boot_s
        for r in (self._arrivals, self._disconnects, self._connect_rate, self._allocated):
            r.half_life_s = hl
        self._bg.half_life_s = cfg.bg_half_life_b * boot_s
        self._arrivals_fast.half_life_s = hl / 4
        st, now = obs.snapshot.stats, obs.now_ms
        bg_now = int((obs.features.get("hazard") or {}).get("bg", 0))
        if self._bg_last is not None and bg_now > self._bg_last:
            self._learned += bg_now - self._bg_last
        self._bg_last = bg_now
        lam_bg = self._bg.update(bg_now, now)
        arrivals = self._arrivals.update(st.get("users_activated", 0), now)
        fast = self._arrivals_fast.update(st.get("users_activated", 0), now)
        # spike: new users arrive faster than the slow average says; the forecast (built
        # on users already seen, calibrated over past windows) lags, so scale it up
        spike = (
            min(4.0, fast / arrivals) if arrivals > 0 and fast > cfg.spike_ratio * arrivals else 1.0
        )
        releases = self._disconnects.update(st.get("disconnects", 0), now)
        connects = self._connect_rate.update(st.get("connects", 0), now)
        allocated = self._allocated.update(obs.snapshot.allocated, now)
        return _Rates(lam_bg, arrivals, spike, releases, connects, allocated)

    def _users(
        self, n: dict[int, list[int]], hz: _Hazards, boot_s: float, scale: float
    ) -> _UserDemand:
        """Demand within B of the active users: the sum of their Bernoulli connects, each
        hazard scaled by ``scale`` (``p' = 1 - (1 - p)^scale``, so no p passes 1)."""
        mu = var = raw = 0.0
        users = candidates = 0
        for c, row in n.items():
            ps = hz.p_mid(c, boot_s)
            for b in range(N_BUCKETS):
                k = row[b]
                if k:
                    users += k
                    p = ps[b]
                    raw += k * p
                    if p > 1e-3:
                        candidates += k
                    if scale != 1.0:
                        p = 1.0 - (1.0 - p) ** scale
                    mu += k * p
                    var += k * p * (1.0 - p)
        return _UserDemand(mu, var, raw, users, candidates)

    def _forecast(self, obs: Observation, n: dict[int, list[int]], gap_s: float) -> _Forecast:
        """Demand within B (module docstring): the users' Bernoulli connects with their
        hazards scaled by the calibration and the drift, the Poisson background and
        arrivals, blended with the model-free fallback by the model's evidence; records
        this tick's forecast for the calibration."""
        boot_s = obs.boot_s
        rates = self._rates(obs, boot_s)
        connects_now = obs.snapshot.stats.get("connects", 0)
        cal = self._calibrate(obs.now_ms, connects_now, boot_s)
        hz = self._hazard_rows(boot_s)
        drift = self._drift(n, hz, gap_s, boot_s)
        ud = self._users(n, hz, boot_s, cal * drift)
        p_new = self.p_within(hz.row(0), 0.0, boot_s / 2)
        poisson_raw = rates.lam_bg * boot_s + rates.arrivals * boot_s * p_new
        evidence = self._evidence()
        # each window spans B and they overlap: one tick's weighs tick / B
        share = min(1.0, self._tick_s / boot_s) if self._tick_s > 0 else 1.0
        self._pending.append(
            (obs.now_ms + int(boot_s * 1000), ud.raw + poisson_raw, connects_now, share * evidence)
        )
        poisson = poisson_raw * cal
        mu = (ud.mu + poisson) * rates.spike
        var = (ud.var + poisson) * rates.spike
        mu, var, poisson_part = self._blend(obs.now_ms, mu, var, poisson, rates, evidence, boot_s)
        mu, var, credit, session_s = self._returns(obs.snapshot.allocated, mu, var, rates, boot_s)
        return _Forecast(
            mu, var, credit, poisson_part, ud, rates, p_new, cal, drift, evidence, session_s
        )

    def _blend(
        self, now_ms: int, mu: float, var: float, poisson: float, rates: _Rates, evidence: float,
        boot_s: float,
    ) -> tuple[float, float, float]:  # fmt: skip
        """The model's demand within B (mean, variance and its Poisson part) blended with
        the model-free fallback, Poisson demand at the observed connect rate, by the
        model's evidence (module docstring, Fallback).  The fallback starts from the
        model's forecast and trusts the observed rate as time passes (a few seconds
        without a connect say nothing yet)."""
        warm = self.config.fallback_warm_b * boot_s
        start = self._first_ms if self._first_ms is not None else now_ms
        age_s = max(0, now_ms - start) / 1000.0  # (a wall clock may step back)
        seen = 1.0 - 0.5 ** (age_s / warm) if warm > 0 else 1.0
        observed = rates.connects * boot_s * rates.spike
        fb_mu = seen * observed + (1.0 - seen) * mu
        fb_var = seen * observed + (1.0 - seen) * var
        fb_poisson = seen * observed + (1.0 - seen) * poisson * rates.spike
        return (
            evidence * mu + (1.0 - evidence) * fb_mu,
            evidence * var + (1.0 - evidence) * fb_var,
            evidence * poisson + (1.0 - evidence) * fb_poisson,
        )

    def _returns(
        self, allocated: int, mu: float, var: float, rates: _Rates, boot_s: float
    ) -> tuple[float, float, float, float]:
        """Net demand within B: nodes freed by disconnects come back to the pool (module
        docstring, Returns).

        Args:
            allocated: nodes allocated now.
            mu, var: connects within B, mean and variance.
            rates: this tick's rates (releases per second, the time-averaged allocated).
            boot_s: B, seconds.

        Returns:
            ``(mu', var', credit, session_s)``: the connects still in session at B (mean
            and variance, plus the credited returns' variance), the returns credited as
            supply, and the mean session (Little's law, seconds; 0 before a release, or
            when releases have stopped for so long that it is past measuring).
        """
        if not (rates.releases > 0 and rates.allocated > 0):
            return mu, var, 0.0, 0.0
        # x = B / W, W = allocated / releases (Little's law: L = lambda W), in this form
        # as the release rate decays toward 0 in a long quiet stretch (W overflows to inf,
        # and p W / B would be 0 * inf = NaN) and the allocated average toward 0
        x = boot_s * rates.releases / rates.allocated
        p = -math.expm1(-x)  # a running session ends within B
        if x < _TINY_X:
            phi, session_s = 1.0, 0.0  # no session ends within B
        else:
            phi = p / x  # a connect within B is still in session at B: p W / B
            session_s = boot_s / x if math.isfinite(x) else 0.0
        c = self.config.release_credit
        # never more than the releases seen: sessions just begun (a spike's) end later
        # than an exponential session says
        ends = min(allocated * p, rates.releases * boot_s)
        var_net = phi * phi * var + phi * (1.0 - phi) * mu + c * c * ends * (1.0 - p)
        return phi * mu, var_net, c * ends, session_s

    def decide(self, obs: Observation) -> Decision:
        """The base-stock target for this tick (module docstring)."""
        cfg = self.config
        boot_s = obs.boot_s
        n: dict[int, list[int]] = obs.features.get("n") or {}
        self._learn(n, obs.features.get("hazard") or {}, obs.now_ms, boot_s)
        gap_s = 0.0
        if self._prev_ms is not None and obs.now_ms > self._prev_ms:
            # the leader's period: the shortest gap between ticks (a replay's fast-forward
            # over a quiet pool makes longer ones)
            gap_s = (obs.now_ms - self._prev_ms) / 1000.0
            self._tick_s = min(self._tick_s, gap_s) if self._tick_s else gap_s
        self._prev_ms = obs.now_ms
        if self._first_ms is None:
            self._first_ms = obs.now_ms
        f = self._forecast(obs, n, gap_s)
        miss_cost = cfg.miss_cost_s if cfg.miss_cost_s is not None else cfg.miss_cost_b * boot_s
        q = miss_cost / (miss_cost + boot_s)
        z = _z(q)
        normal = math.ceil(max(0.0, f.mu - f.credit) + z * math.sqrt(f.var))
        # the normal approximation overshoots for a handful of users: never plan for more
        # connects than there are candidates plus the Poisson part's own quantile
        cap = f.users.candidates + _poisson_quantile(f.poisson, q)
        margin, mu_p = self._premium_margin(obs, f.users, miss_cost, q, boot_s)
        target = max(0, min(cfg.max_spare, min(normal, cap) + cfg.min_spare + margin))
        self._ticks += 1
        inputs: dict[str, Any] = {
            "boot_s": round(boot_s, 3),
            **f.inputs(),
            "fractile": round(q, 4),
            "z": round(z, 3),
            "miss_cost_s": round(miss_cost, 3),
            "premium_active": int(obs.features.get("premium") or 0),
            "premium_demand": round(mu_p, 3),
            "premium_margin": margin,
        }
        keep = self._hold(obs.now_ms, target, boot_s, f.rates.arrivals)
        if self._ticks % 30 == 1:
            inputs["state"] = self.state_json()
        return Decision(target, cfg.keep_alive_b * boot_s, inputs, keep_spare=keep)

    def state_json(self) -> str:
        """Everything the policy has learned, as JSON text: the hazards' forgotten sums, and
        the loops' state (the rates, the calibration with its open windows, the drift, the
        reaper's hold).  Stored with every 30th decision and at a clean stop, so that the
        next leader's :meth:`restore` goes on where this one stopped."""
        rates = {
            name: [r.value, r.raw, r.mass, r.last_count, r.last_ms]
            for name, r in self._rates_by_name().items()
        }
        return json.dumps(
            {
                "connects": [[round(x, 4) for x in row] for row in self.connects],
                "exposure": [[round(x, 2) for x in row] for row in self.exposure],
                "rates": rates,
                "allocated": [self._allocated.value, self._allocated.last_ms],
                "cal": [self._cal_actual, self._cal_forecast, self._cal_last_ms],
                "pending": [list(p) for p in self._pending],
                "drift": [self._drift_actual, self._drift_expected],
                "learned": self._learned,
                "bg_last": self._bg_last,
                "first_ms": self._first_ms,
                "tick_s": float(self._tick_s),
                "hold": [list(e) for e in self._recent],
                "hold_boot_s": float(self._hold_boot_s),
            }
        )

    def _rates_by_name(self) -> dict[str, WarmRate]:
        return {
            "bg": self._bg,
            "arrivals": self._arrivals,
            "arrivals_fast": self._arrivals_fast,
            "disconnects": self._disconnects,
            "connect_rate": self._connect_rate,
        }

    def _premium_margin(
        self, obs: Observation, ud: _UserDemand, miss_cost: float, q: float, boot_s: float
    ) -> tuple[int, float]:
        """The premium users' extra stock and their forecast (module docstring, Premium
        margin): ``Q(mu_p, q_p) - Q(mu_p, q)``."""
        premium = int(obs.features.get("premium") or 0)
        if not (premium and ud.users):
            return 0, 0.0
        mu_p = min(premium, ud.users) / ud.users * ud.mu
        c_p = self.config.premium_miss_factor * miss_cost
        q_p = c_p / (c_p + boot_s)
        return max(0, _poisson_quantile(mu_p, q_p) - _poisson_quantile(mu_p, q)), mu_p

    def _hold(self, now_ms: int, target: int, boot_s: float, arrivals: float) -> int:
        """The largest target of the last ``hold_b`` B (a sliding-window maximum kept in a
        monotone queue): what the reaper leaves.  ``arrivals`` is this tick's arrival rate,
        users per second; targets planned with a boot time off by 2x, or with an arrival
        rate ``hold_arrival_ratio`` times this one, are forgotten."""
        hold_from = now_ms - int(self.config.hold_b * boot_s * 1000)
        recent = self._recent
        if self._hold_boot_s and not 0.5 < boot_s / self._hold_boot_s < 2.0:
            recent.clear()  # targets planned with a boot time now known to be wrong
        self._hold_boot_s = boot_s
        k = self.config.hold_arrival_ratio
        if k > 0 and recent:
            # the crowd such targets were planned for has passed
            kept = [e for e in recent if e[2] < k * arrivals or e[2] == 0]
            if len(kept) < len(recent):
                recent.clear()
                recent.extend(kept)
        # its times must not fall: after a clock step back a target counts as of the
        # latest time seen (kept longer, never shorter, than by its own time)
        at = max(now_ms, recent[-1][0]) if recent else now_ms
        while recent and recent[-1][1] <= target:
            recent.pop()
        recent.append((at, target, arrivals))
        while recent[0][0] < hold_from:
            recent.popleft()
        return recent[0][1]


@dataclass(frozen=True)
class _Rates:
    """One tick's rates, per second, the spike factor and the time-averaged allocated
    nodes."""

    lam_bg: float
    arrivals: float
    spike: float
    releases: float
    connects: float
    allocated: float


@dataclass(frozen=True)
class _Forecast:
    """One tick's demand within B: mean and variance (blended), the expected releases
    counted as supply, the Poisson part (background and arrivals, or the fallback), and
    what it was built from."""

    mu: float
    var: float
    credit: float
    poisson: float
    users: _UserDemand
    rates: _Rates
    p_new: float
    calibration: float
    drift: float
    evidence: float
    session_s: float

    def inputs(self) -> dict[str, float]:
        """The figures a decision stores (``explain`` shows them)."""
        r = self.rates
        return {
            "demand_mean": round(self.mu, 3),
            "users_demand": round(self.users.mu, 3),
            "demand_sd": round(math.sqrt(self.var), 3),
            "release_credit": round(self.credit, 3),
            "lambda_bg": round(r.lam_bg, 4),
            "arrival_rate": round(r.arrivals, 4),
            "connect_rate": round(r.connects, 4),
            "p_new": round(self.p_new, 4),
            "calibration": round(self.calibration, 3),
            "drift": round(self.drift, 3),
            "evidence": round(self.evidence, 3),
            "spike": round(r.spike, 3),
            "session_s": round(self.session_s, 3),
        }


@dataclass(frozen=True)
class _UserDemand:
    """The active users' demand within B: mean and variance (calibrated), the mean before
    calibration, how many users, and how many might connect."""

    mu: float
    var: float
    raw: float
    users: int
    candidates: int


class _Hazards:
    """The hierarchical posterior-mean hazards of one tick, built per row on demand.

    ``a`` is the prior's pseudo-exposure in the policy's scaled units (``prior_exposure_b
    * B * g``): each level is ``(connects + a * prior) / (exposure + a)``, the prior being
    the level above in the same bucket (pooled -> bucket -> parent class -> class).
    """

    def __init__(self, pol: PredictivePolicy, a: float, h0: float = 0.0) -> None:
        self.pol = pol
        self.a = a
        total_c, total_e = sum(pol._bc), sum(pol._be)
        # the pooled hazard's own prior: h0 with a's pseudo-exposure (an informative
        # prior: before any connect, a browsing user is expected to connect at h0)
        if h0 > 0:
            pooled = (total_c + a * h0) / (total_e + a)
        else:
            pooled = total_c / total_e if total_e > 0 else 0.0
        self.bucket = [(pol._bc[b] + a * pooled) / (pol._be[b] + a) for b in range(N_BUCKETS)]
        self._parents: dict[int, list[float]] = {}
        self._rows: dict[int, list[float]] = {}

    def parent(self, p: int) -> list[float]:
        """Hazards of parent class ``p`` per bucket."""
        got = self._parents.get(p)
        if got is None:
            pc, pe, a = self.pol._pc[p], self.pol._pe[p], self.a
            got = [(pc[b] + a * self.bucket[b]) / (pe[b] + a) for b in range(N_BUCKETS)]
            self._parents[p] = got
        return got

    def p_mid(self, c: int, boot_s: float) -> list[float]:
        """P(connect within B) of a class-``c`` user at each bucket's midpoint (as
        :meth:`PredictivePolicy.p_within` at ``age_s`` = the midpoint)."""
        h = self.row(c)
        exp = math.exp
        return [1.0 - exp(-boot_s * sum(map(mul, h, w))) for w in _WINDOW_ROWS]

    def row(self, c: int) -> list[float]:
        """Hazards of class ``c`` per bucket, connects per user-second."""
        got = self._rows.get(c)
        if got is None:
            cc, ce, a = self.pol._c[c], self.pol._e[c], self.a
            prior = self.parent(_PARENT[c])
            got = [(cc[b] + a * prior[b]) / (ce[b] + a) for b in range(N_BUCKETS)]
            self._rows[c] = got
        return got
