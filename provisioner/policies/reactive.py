"""Baseline: boot on connect (no warm pool), optionally keeping freed nodes a while."""

from __future__ import annotations

import math

from provisioner.policies.base import NO_FEATURES, Decision, Observation

__all__ = ["ReactivePolicy"]


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
