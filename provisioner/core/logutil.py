"""Rate-limited logging: bad input and outages must not flood the logs; :func:`plural`,
for a count in a message ("1 node", "2 nodes"); and :func:`set_levels`, loggers quieted
for a while."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LogLimiter", "plural", "set_levels"]


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun`` (a regular one, in the singular), the noun in the plural unless
    ``n`` is 1: ``plural(1, "node")`` is ``"1 node"``, ``plural(0, "node")`` ``"0 nodes"``."""
    return f"{n} {noun if n == 1 else noun + 's'}"


def set_levels(levels: dict[str, int]) -> Callable[[], None]:
    """Set each named logger's level (``{"provisioner": logging.WARNING}``).

    Returns:
        A function that sets them back as they were: a command run in a process that
        goes on (a test's ``CliRunner``) must not leave them changed.
    """
    loggers = [logging.getLogger(name) for name in levels]
    before = [lg.level for lg in loggers]
    for lg, level in zip(loggers, levels.values(), strict=True):
        lg.setLevel(level)

    def restore() -> None:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)

    return restore


class LogLimiter:
    """At most one warning per key per ``period_s``; the next says how many of that key it
    held back (a key is a kind of warning, e.g. ``"delete"``: those held back may be about
    other nodes than the one the next line names).

    Args:
        logger: where to log.
        period_s: seconds between two lines of one key.
    """

    def __init__(self, logger: logging.Logger, period_s: float = 10.0) -> None:
        self.logger = logger
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, key: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` as a warning unless ``key`` logged within the period."""
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.period_s:
            n = self._suppressed.pop(key, 0)
            held = "warning" if n == 1 else "warnings"
            suffix = f" ({n} more '{key}' {held} suppressed)" if n else ""
            self.logger.warning(msg + suffix, *args)
            self._last[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
