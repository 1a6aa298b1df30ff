"""Injectable clocks.  Every script takes ``now_ms`` from one of these.

Live code uses :class:`WallClock`; the replay benchmark uses :class:`VirtualClock`,
so the same scripts and policy run faster than real time.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "VirtualClock", "WallClock"]


class Clock(Protocol):
    """Source of the current time in unix milliseconds."""

    def now_ms(self) -> int:
        """Current time, integer unix milliseconds."""
        ...


class WallClock:
    """The system's wall clock (``time.time``), in milliseconds."""

    def now_ms(self) -> int:
        """Current wall-clock time, integer unix milliseconds."""
        return int(time.time() * 1000)


class VirtualClock:
    """A clock that moves only when told to.

    Args:
        start_ms: initial time, unix milliseconds.
    """

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        """Current virtual time, integer milliseconds."""
        return self._now

    def advance_to(self, t_ms: int) -> None:
        """Move to ``t_ms``; never backwards."""
        self._now = max(self._now, int(t_ms))
