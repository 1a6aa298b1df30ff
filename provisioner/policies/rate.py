"""An exponentially weighted moving average of a counter's rate."""

from __future__ import annotations

__all__ = ["Rate"]


class Rate:
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
