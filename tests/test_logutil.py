"""The rate-limited logger and counts in messages (no Redis needed: pure helpers)."""

from __future__ import annotations

import logging

import pytest

from provisioner.core.logutil import LogLimiter, plural


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


def test_one_held_back_line_is_one_warning_and_counts_agree(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New-user finding: counts in messages read ``1 users``, ``1 boots``."""
    now = [100.0]
    monkeypatch.setattr("provisioner.core.logutil.time.monotonic", lambda: now[0])
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
