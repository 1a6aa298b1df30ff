"""Exponentially weighted moving averages of a counter's rate."""

from __future__ import annotations

__all__ = ["Level", "Rate", "WarmRate"]


class Rate:
    """An EWMA of a counter's rate, per second, with a half-life in seconds.

    ``update(count, now_ms)`` takes the counter's running total; a total that falls (a
    reset) restarts the differences without a sample.
    """

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.value = 0.0
        self.last_count: int | None = None
        self.last_ms: int | None = None

    def update(self, count: int, now_ms: int) -> float:
        """Add the rate since the last update (weight ``1 - 2^(-dt / half-life)``);
        the current average, per second."""
        if self.last_count is None or self.last_ms is None or count < self.last_count:
            self.last_count, self.last_ms = count, now_ms
            return self.value
        dt = (now_ms - self.last_ms) / 1000.0
        if dt <= 0:
            return self.value
        self._mix((count - self.last_count) / dt, 1.0 - 0.5 ** (dt / self.half_life_s))
        self.last_count, self.last_ms = count, now_ms
        return self.value

    def _mix(self, inst: float, w: float) -> None:
        self.value += w * (inst - self.value)


class WarmRate(Rate):
    """An EWMA rate without the start-up bias.

    A plain EWMA starts from 0 and reads low for its first half-lives (so a spike detector
    comparing a fast and a slow one fires at every cold start).  Divided by the weight it
    has gathered, ``1 - prod(1 - w_i)`` (the bias correction of Adam: Kingma & Ba, "Adam:
    A Method for Stochastic Optimization", 2015, sec. 3), it is a weighted mean of the
    rates seen from the first update on, and the plain EWMA once warm.
    """

    def __init__(self, half_life_s: float) -> None:
        super().__init__(half_life_s)
        self.raw = 0.0
        self.mass = 0.0

    def _mix(self, inst: float, w: float) -> None:
        self.raw += w * (inst - self.raw)
        self.mass += w * (1.0 - self.mass)
        self.value = self.raw / self.mass


class Level:
    """An EWMA of a level (a gauge such as the allocated nodes), weighted by time, with a
    half-life in seconds (as :class:`Rate`): each update weighs ``1 - 2^(-dt /
    half-life)``; the first update sets it."""

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self.value = 0.0
        self.last_ms: int | None = None

    def update(self, level: float, now_ms: int) -> float:
        """Mix in ``level`` as of ``now_ms``; the current average."""
        if self.last_ms is None:
            self.value, self.last_ms = float(level), now_ms
            return self.value
        dt = (now_ms - self.last_ms) / 1000.0
        if dt > 0 and self.half_life_s > 0:
            self.value += (1.0 - 0.5 ** (dt / self.half_life_s)) * (level - self.value)
            self.last_ms = now_ms
        return self.value
