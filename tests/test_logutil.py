"""The rate-limited logger (no Redis needed: a pure helper)."""

from __future__ import annotations

import logging

import pytest

from provisioner.core.logutil import LogLimiter


def test_one_line_per_key_per_period_and_the_next_names_what_it_held_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-test finding: the count of held-back lines read as if it were about the next
    line's subject; it names the key, the kind of warning it counts."""
    now = [100.0]
    monkeypatch.setattr("provisioner.core.logutil.time.monotonic", lambda: now[0])
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
