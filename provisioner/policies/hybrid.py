"""The hybrid-histogram keep-alive policy of Shahrad et al., as a pool baseline.

M. Shahrad et al., "Serverless in the Wild: Characterizing and Optimizing the Serverless
Workload at a Large Cloud Provider", USENIX ATC 2020, section 4.2.  Per application it
keeps a histogram of *idle times* (the gap between the end of one invocation and the
start of the next), and sets a **pre-warm window** at the histogram's 5th percentile and
a **keep-alive window** at its 99th percentile minus the pre-warm window, each with a 10%
margin; while the histogram is not representative (too few samples) it falls back to a
fixed keep-alive.  After an invocation the instance is unloaded at once if the pre-warm
window is positive and loaded again when the window ends, else it is kept alive for the
keep-alive window.

Our reading for a pool of identical GPU nodes: the "application" is the pool and an
"invocation" a session, so an idle time is the gap from a node being freed (a disconnect)
to the next connect, recorded pool-wide.  The policy keeps no spare nodes (it reacts to
connects), keeps freed nodes for the keep-alive window, and, when the pre-warm window is
positive, holds one spare node from ``pre-warm`` after the last disconnect until the
keep-alive window ends.  The percentile of the keep-alive window is the knob we sweep.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from provisioner.policies.base import NO_FEATURES, Decision, Observation

__all__ = ["HybridConfig", "HybridHistogramPolicy"]


@dataclass(frozen=True)
class HybridConfig:
    """Knobs (seconds).

    Attributes:
        keep_alive_pct: percentile of the idle-time histogram for the keep-alive window
            (99 in the paper).
        prewarm_pct: percentile for the pre-warm window (5 in the paper).
        margin: widening of both windows (0.1 in the paper).
        fixed_keep_alive_s: fallback keep-alive while the histogram has too few samples
            (the paper's fixed policy used 10 minutes).
        min_samples: samples needed before the histogram is used.
        max_samples: the histogram's memory (oldest samples are forgotten).
    """

    keep_alive_pct: float = 99.0
    prewarm_pct: float = 5.0
    margin: float = 0.1
    fixed_keep_alive_s: float = 600.0
    min_samples: int = 10
    max_samples: int = 2000


class HybridHistogramPolicy:
    """Keep-alive and pre-warm windows from the pool's idle-time histogram."""

    name = "hybrid"
    #: its pre-warm window opens by time after a node is freed
    target_rises_only_on_events = False
    features = NO_FEATURES

    def __init__(self, config: HybridConfig | None = None) -> None:
        self.config = config or HybridConfig()
        self._gaps: list[float] = []  # sorted idle times, seconds
        self._order: list[float] = []  # the same, in arrival order (for forgetting)
        self._last_disconnects: int | None = None
        self._last_connects: int | None = None
        self._freed_at_ms: list[int] = []  # free times not yet matched by a connect

    def restore(self, last: dict[str, str]) -> None:
        """Nothing to restore (the histogram is relearned)."""

    def _add_gap(self, gap_s: float) -> None:
        bisect.insort(self._gaps, gap_s)
        self._order.append(gap_s)
        if len(self._order) > self.config.max_samples:
            old = self._order.pop(0)
            del self._gaps[bisect.bisect_left(self._gaps, old)]

    def _pct(self, pct: float) -> float:
        k = min(len(self._gaps) - 1, max(0, math.ceil(pct / 100 * len(self._gaps)) - 1))
        return self._gaps[k]

    def _windows(self) -> tuple[float, float]:
        """(pre-warm, keep-alive) windows from the histogram, seconds, with the margin."""
        c = self.config
        prewarm = self._pct(c.prewarm_pct) * (1 - c.margin)
        return prewarm, max(0.0, self._pct(c.keep_alive_pct) * (1 + c.margin) - prewarm)

    def steady_until_ms(self, now_ms: int) -> float:
        """The histogram and the free times move with counters only; by time alone the
        decision changes where the pre-warm window of the last free time opens or closes
        (``since`` crosses ``prewarm`` or ``prewarm + keep``); else it holds for good."""
        c = self.config
        if len(self._gaps) < c.min_samples or not self._freed_at_ms:
            return math.inf
        prewarm, keep = self._windows()
        if prewarm <= 0:
            return math.inf
        since = (now_ms - max(self._freed_at_ms)) / 1000.0
        if since < prewarm:
            edge = prewarm
        elif since <= prewarm + keep:
            edge = prewarm + keep
        else:
            return math.inf
        # a millisecond early: "since" is compared in float seconds
        return max(self._freed_at_ms) + edge * 1000.0 - 1.0

    def decide(self, obs: Observation) -> Decision:
        """Windows from the histogram; one spare node during a positive pre-warm window."""
        st = obs.snapshot.stats
        disc, conn = st.get("disconnects", 0), st.get("connects", 0)
        if self._last_disconnects is not None and self._last_connects is not None:
            self._freed_at_ms += [obs.now_ms] * max(0, disc - self._last_disconnects)
            for _ in range(max(0, conn - self._last_connects)):
                if self._freed_at_ms:  # a connect ends the most recent idle period
                    self._add_gap((obs.now_ms - self._freed_at_ms.pop()) / 1000.0)
        self._last_disconnects, self._last_connects = disc, conn
        c = self.config
        if len(self._gaps) < c.min_samples:
            return Decision(0, c.fixed_keep_alive_s, {"mode": 0.0, "samples": len(self._gaps)})
        prewarm, keep = self._windows()
        spare = 0
        if prewarm > 0 and self._freed_at_ms:
            since = (obs.now_ms - max(self._freed_at_ms)) / 1000.0
            spare = 1 if prewarm <= since <= prewarm + keep else 0
        keep_alive = 0.0 if prewarm > 0 else keep  # with pre-warm: unload at once
        return Decision(
            spare,
            keep_alive,
            {"mode": 1.0, "samples": len(self._gaps), "prewarm_s": prewarm, "keep_s": keep},
        )
