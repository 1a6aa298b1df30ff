"""The rate-limited logger and counts in messages (no Redis needed: pure helpers)."""

from __future__ import annotations

import logging

import pytest

from provisioner.core.logutil import LogLimiter, plural, set_levels


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The limiter's clock, ``now[0]`` seconds: tests move it."""
    clock = [100.0]
    monkeypatch.setattr("provisioner.core.logutil.time.monotonic", lambda: clock[0])
    return clock


def test_one_line_per_key_per_period_and_the_next_names_what_it_held_back(
    caplog: pytest.LogCaptureFixture, now: list[float]
) -> None:
    """Re-test finding: the count of held-back lines read as if it were about the next
    line's subject; it names the key, the kind of warning it counts."""
    lim = LogLimiter(logging.getLogger("t.limiter"), period_s=10.0)
    with caplog.at_level(logging.WARNING, logger="t.limiter"):
        lim.warn("delete", "delete %s failed", "n1")
        lim.warn("delete", "delete %s failed", "n2")
        lim.warn("delete", "delete %s failed", "n3")
        lim.warn("marker", "ignored marker %s", "m")  # another key: its own period
        now[0] += 10.0
        lim.warn("delete", "delete %s failed", "n4")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "delete n1 failed",
        "ignored marker m",
        "delete n4 failed (2 more 'delete' warnings suppressed)",
    ]


def test_one_held_back_line_is_one_warning_and_counts_agree(
    caplog: pytest.LogCaptureFixture, now: list[float]
) -> None:
    """New-user finding: counts in messages read ``1 users``, ``1 boots``."""
    lim = LogLimiter(logging.getLogger("t.limiter1"), period_s=10.0)
    with caplog.at_level(logging.WARNING, logger="t.limiter1"):
        lim.warn("delete", "delete %s failed", "n1")
        lim.warn("delete", "delete %s failed", "n2")
        now[0] += 10.0
        lim.warn("delete", "delete %s failed", "n3")
    assert caplog.records[-1].getMessage() == (
        "delete n3 failed (1 more 'delete' warning suppressed)"
    )
    assert [plural(n, "node") for n in (0, 1, 2)] == ["0 nodes", "1 node", "2 nodes"]


def test_set_levels_gives_back_what_it_changed() -> None:
    """A quieted logger is set back as it was (a bench run inside a test left the
    leader's warnings off for the tests after it)."""
    a, b = logging.getLogger("t.levels.a"), logging.getLogger("t.levels.b")
    a.setLevel(logging.DEBUG)
    restore = set_levels({"t.levels.a": logging.ERROR, "t.levels.b": logging.WARNING})
    assert (a.level, b.level) == (logging.ERROR, logging.WARNING)
    restore()
    assert (a.level, b.level) == (logging.DEBUG, logging.NOTSET)
