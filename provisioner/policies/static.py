"""Baseline: a static warm pool of K spare nodes."""

from __future__ import annotations

import math

from provisioner.policies.base import NO_FEATURES, Decision, Observation

__all__ = ["StaticPoolPolicy"]


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
