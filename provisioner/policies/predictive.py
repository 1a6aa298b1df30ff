"""The predictive policy: base-stock level from per-user connect probabilities.

Ready nodes are inventory, connects are demand and the boot time B is the lead time
(docs/design.md#4).  The policy keeps ready + booting + pending creates at the base-stock
level ``S``: the smallest stock with ``P(demand within B > S) <= 1 - q``, where ``q`` is
the newsvendor critical fractile ``q = c_miss / (c_miss + c_idle)`` (Arrow, Harris &
Marschak 1951; any operations-research text, e.g. Porteus, *Foundations of Stochastic
Inventory Theory*, ch. 1).  ``c_miss`` is the knob ``miss_cost_s``: what one miss is worth
in node-seconds; ``c_idle`` is the cost of one spare node that is not used, about one
lead time of idling (B node-seconds).

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
* **Returns.** Allocated nodes freed by disconnects within B come back to the pool:
  ``release_credit * disconnect_rate * B`` is subtracted.

* **Calibration.** ``p`` assumes a user stays silent until it connects; users who browse
  again and connect later are missed by it, so ``mu`` is biased low where browsing goes on.
  Each tick's forecast is compared with the connects that actually came in the following
  B, and ``mu`` and ``var`` are scaled by the ratio of their exponentially weighted sums
  (bounded to [0.5, 4]): a multiplicative bias correction of the forecast (e.g. Hyndman &
  Athanasopoulos, *Forecasting: Principles and Practice*, on forecast bias).

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
"Competitive snoopy caching", 1988).
"""

from __future__ import annotations

import functools
import json
import math
from collections import deque
from dataclasses import dataclass
from operator import mul
from statistics import NormalDist
from typing import Any

from provisioner.policies.base import Decision, Features, Observation
from provisioner.policies.rate import Rate

__all__ = [
    "N_CLASSES",
    "RECENCY_EDGES_B",
    "PredictiveConfig",
    "PredictivePolicy",
    "parent_class",
    "user_class",
]

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
        miss_cost_s: what one miss is worth, node-seconds (the one knob to sweep).
        min_spare: spare nodes kept whatever the forecast.
        memory_b: half-life of the hazard statistics, in B.
        prior_exposure_b: strength of each level of the hierarchical prior, in user-B.
        rate_half_life_b: half-life of the arrival and disconnect rates, in B.
        bg_half_life_b: half-life of the background rate, in B.
        release_credit: share of the expected node returns counted as supply, 0..1.
        keep_alive_b: idle time before a surplus ready node goes, in B.
        spike_ratio: a spike is declared when the short-term arrival rate (half-life a
            quarter of the long one) exceeds the long-term one by this factor; the forecast
            is then scaled by their ratio (at most 4).
        premium_miss_factor: a premium user's miss costs this many times ``miss_cost_s``:
            the fractile of their own safety margin (module docstring, Premium margin).
        hold_b: the reaper leaves the largest target of the last ``hold_b`` B (hysteresis:
            a dip of the forecast does not reap nodes that the next rise boots again).
        max_spare: cap on the target.
    """

    miss_cost_s: float = 1000.0
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

    def __post_init__(self) -> None:
        if not (self.miss_cost_s > 0 and self.memory_b > 0 and self.prior_exposure_b > 0):
            raise ValueError("miss_cost_s, memory_b and prior_exposure_b must be > 0")
        if not (self.rate_half_life_b > 0 and self.bg_half_life_b > 0):
            raise ValueError("rate_half_life_b and bg_half_life_b must be > 0")
        if not (self.keep_alive_b >= 0 and self.min_spare >= 0 and self.hold_b >= 0):
            raise ValueError("keep_alive_b, min_spare and hold_b must be >= 0")
        if not 0.0 <= self.release_credit <= 1.0:
            raise ValueError("release_credit must be in [0, 1]")
        if not self.premium_miss_factor >= 1.0:
            raise ValueError("premium_miss_factor must be >= 1")


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
        self._bg = Rate(60.0)
        self._arrivals = Rate(60.0)
        self._arrivals_fast = Rate(15.0)
        self._disconnects = Rate(60.0)
        self._ticks = 0
        self._pending: list[tuple[int, float, int]] = []  # (due ms, forecast, connects then)
        # (ms, target) within the hold window, targets decreasing: its first is the largest
        self._recent: deque[tuple[int, int]] = deque()
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
        except (ValueError, TypeError, AttributeError):
            pass

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
        self._last_ms, self._last_counts, self._last_n = now_ms, counts, n

    def _hazard_rows(self, boot_s: float) -> _Hazards:
        return _Hazards(self, self.config.prior_exposure_b * boot_s * self._g)

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
        """Settle forecasts whose window has passed; the current correction factor."""
        decay = 0.5 ** (1.0 / max(1.0, self.config.memory_b / 4))
        while self._pending and self._pending[0][0] <= now_ms:
            _, forecast, then = self._pending.pop(0)
            self._cal_actual = self._cal_actual * decay + max(0, connects_now - then)
            self._cal_forecast = self._cal_forecast * decay + forecast
        if self._cal_forecast < 5.0:  # too little evidence yet
            return 1.0
        return min(4.0, max(0.5, self._cal_actual / self._cal_forecast))

    def steady_until_ms(self, now_ms: int) -> float:
        """No promise: the rates, the calibration and the learned hazards move every tick
        (the replay fast-forwards this policy only over an empty pool at target 0)."""
        return now_ms

    def decide(self, obs: Observation) -> Decision:
        """The base-stock target for this tick (module docstring)."""
        cfg = self.config
        boot_s = obs.boot_s
        n: dict[int, list[int]] = obs.features.get("n") or {}
        counts: dict[str, int] = obs.features.get("hazard") or {}
        self._learn(n, counts, obs.now_ms, boot_s)
        hl = cfg.rate_half_life_b * boot_s
        for r in (self._arrivals, self._disconnects):
            r.half_life_s = hl
        self._bg.half_life_s = cfg.bg_half_life_b * boot_s
        st = obs.snapshot.stats
        lam_bg = self._bg.update(counts.get("bg", 0), obs.now_ms)
        arrivals = self._arrivals.update(st.get("users_activated", 0), obs.now_ms)
        self._arrivals_fast.half_life_s = hl / 4
        fast = self._arrivals_fast.update(st.get("users_activated", 0), obs.now_ms)
        # spike: new users arrive faster than the slow average says; the forecast (built
        # on users already seen, calibrated over past windows) lags, so scale it up
        spike = (
            min(4.0, fast / arrivals) if arrivals > 0 and fast > cfg.spike_ratio * arrivals else 1.0
        )
        releases = self._disconnects.update(st.get("disconnects", 0), obs.now_ms)

        connects_now = st.get("connects", 0)
        cal = self._calibrate(obs.now_ms, connects_now, boot_s)
        hz = self._hazard_rows(boot_s)
        mu = var = 0.0
        users = 0
        candidates = 0  # users who might connect: demand from them cannot exceed this
        for c, row in n.items():
            ps = hz.p_mid(c, boot_s)
            for b in range(N_BUCKETS):
                k = row[b]
                if k:
                    users += k
                    p = ps[b]
                    mu += k * p
                    var += k * p * (1.0 - p)
                    if p > 1e-3:
                        candidates += k
        mu_users = mu
        p_new = self.p_within(hz.row(0), 0.0, boot_s / 2)
        poisson = lam_bg * boot_s + arrivals * boot_s * p_new
        mu += poisson
        var += poisson
        self._pending.append((obs.now_ms + int(boot_s * 1000), mu, connects_now))
        mu *= cal * spike
        var *= cal * spike
        credit = cfg.release_credit * releases * boot_s
        q = cfg.miss_cost_s / (cfg.miss_cost_s + boot_s)
        z = _z(q)
        normal = math.ceil(max(0.0, mu - credit) + z * math.sqrt(var))
        # the normal approximation overshoots for a handful of users: never plan for more
        # connects than there are candidates plus the Poisson part's own quantile
        cap = candidates + _poisson_quantile(poisson * cal, q)
        premium = int(obs.features.get("premium") or 0)
        margin = 0
        mu_p = 0.0
        if premium and users:
            # premium users' own forecast: their share of the users' demand (Premium margin)
            mu_p = min(premium, users) / users * mu_users * cal * spike
            c_p = cfg.premium_miss_factor * cfg.miss_cost_s
            q_p = c_p / (c_p + boot_s)
            margin = max(0, _poisson_quantile(mu_p, q_p) - _poisson_quantile(mu_p, q))
        target = min(normal, cap) + cfg.min_spare + margin
        target = max(0, min(cfg.max_spare, target))
        self._ticks += 1
        inputs: dict[str, Any] = {
            "boot_s": round(boot_s, 3),
            "demand_mean": round(mu, 3),
            "demand_sd": round(math.sqrt(var), 3),
            "release_credit": round(credit, 3),
            "lambda_bg": round(lam_bg, 4),
            "arrival_rate": round(arrivals, 4),
            "p_new": round(p_new, 4),
            "fractile": round(q, 4),
            "z": round(z, 3),
            "miss_cost_s": cfg.miss_cost_s,
            "calibration": round(cal, 3),
            "spike": round(spike, 3),
            "premium_active": premium,
            "premium_demand": round(mu_p, 3),
            "premium_margin": margin,
        }
        if self._ticks % 30 == 1:
            inputs["state"] = json.dumps(
                {
                    "connects": [[round(x, 4) for x in row] for row in self.connects],
                    "exposure": [[round(x, 2) for x in row] for row in self.exposure],
                }
            )
        hold_from = obs.now_ms - int(cfg.hold_b * boot_s * 1000)
        recent = self._recent  # the sliding-window maximum (a monotone queue)
        # its times must not fall: after a clock step back a target counts as of the
        # latest time seen (kept longer, never shorter, than by its own time)
        at = max(obs.now_ms, recent[-1][0]) if recent else obs.now_ms
        while recent and recent[-1][1] <= target:
            recent.pop()
        recent.append((at, target))
        while recent[0][0] < hold_from:
            recent.popleft()
        keep = recent[0][1]
        return Decision(target, cfg.keep_alive_b * boot_s, inputs, keep_spare=keep)


class _Hazards:
    """The hierarchical posterior-mean hazards of one tick, built per row on demand.

    ``a`` is the prior's pseudo-exposure in the policy's scaled units (``prior_exposure_b
    * B * g``): each level is ``(connects + a * prior) / (exposure + a)``, the prior being
    the level above in the same bucket (pooled -> bucket -> parent class -> class).
    """

    def __init__(self, pol: PredictivePolicy, a: float) -> None:
        self.pol = pol
        self.a = a
        total_c, total_e = sum(pol._bc), sum(pol._be)
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
