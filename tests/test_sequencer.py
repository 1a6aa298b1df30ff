"""The shared sequence (docs/design.md#3-1): every replica names every message identically.

Unit tests of :class:`Sequencer`, a property test over arbitrary streams, and one test on
real Redis Pub/Sub where a late subscriber names the messages after its first marker
exactly as an early one does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.sequencer import POSITIONS_PER_MARKER, Sequencer
from tests.helpers import SyncCoord

P = POSITIONS_PER_MARKER


def test_no_name_before_the_first_marker() -> None:
    s = Sequencer()
    assert s.seq is None
    assert [s.name() for _ in range(3)] == [None, None, None]
    assert s.position == 0  # unnamed messages do not count
    assert s.on_marker("7:1700000000123")
    assert (s.seq, s.marker_ms, s.position) == (7, 1700000000123, 0)
    assert [s.name() for _ in range(3)] == [7 * P + 1, 7 * P + 2, 7 * P + 3]


def test_a_newer_marker_restarts_positions() -> None:
    s = Sequencer()
    s.on_marker("3:1000")
    assert s.name() == 3 * P + 1
    assert s.on_marker("4:1100")
    assert s.name() == 4 * P + 1
    assert s.on_marker("9:1200")  # gaps in seq are fine (another replica's markers)
    assert (s.name(), s.marker_ms) == (9 * P + 1, 1200)


@pytest.mark.parametrize("marker", ["5:2000", "4:3000", "1:0", "0:0"])
def test_old_or_duplicate_markers_are_ignored(marker: str) -> None:
    s = Sequencer()
    s.on_marker("5:2000")
    s.name()
    s.name()
    assert not s.on_marker(marker)
    assert (s.seq, s.marker_ms, s.position) == (5, 2000, 2)
    assert s.name() == 5 * P + 3  # counting goes on as if nothing came


@pytest.mark.parametrize(
    "marker", ["", ":", "5", "5:", ":5", "x:1", "5:x", "5:1:2:3", "5.0:1", "five:1000", "5 : 1x"]
)
def test_malformed_markers_are_ignored(marker: str) -> None:
    fresh = Sequencer()
    assert not fresh.on_marker(marker)
    assert fresh.seq is None and fresh.name() is None
    s = Sequencer()
    s.on_marker("2:500")
    s.name()
    assert not s.on_marker(marker)
    assert (s.seq, s.marker_ms, s.position) == (2, 500, 1)


def test_reset_waits_for_the_next_marker() -> None:
    s = Sequencer()
    s.on_marker("10:1000")
    s.name()
    s.reset()
    assert s.seq is None and s.position == 0
    assert s.name() is None
    assert s.on_marker("11:1100")
    assert s.name() == 11 * P + 1


def test_positions_past_the_limit_are_not_named() -> None:
    s = Sequencer()
    s.on_marker("1:0")
    s.position = P - 2
    assert s.name() == 1 * P + (P - 1)
    assert s.name() is None  # would collide with marker 2's ids
    assert s.name() is None
    s.on_marker("2:1")
    assert s.name() == 2 * P + 1


# -- streams --------------------------------------------------------------------------

Event = tuple[str, int]  # ("m", 0) a message, ("k", seq) a marker


def name_stream(events: list[Event], seq: Sequencer | None = None) -> list[int | None]:
    """Ids given to the messages of ``events`` (markers take no id)."""
    s = seq or Sequencer()
    out: list[int | None] = []
    for kind, n in events:
        if kind == "k":
            s.on_marker(f"{n}:{1000 + n}")
        else:
            out.append(s.name())
    return out


@st.composite
def streams(draw: Any, stale_markers: bool = True) -> list[Event]:
    """Messages with markers of increasing seq among them; with ``stale_markers``, some
    markers are followed by a duplicate or an older one (which must be ignored)."""
    n = draw(st.integers(1, 60))
    events: list[Event] = []
    seq = draw(st.integers(0, 5))
    for _ in range(n):
        if draw(st.integers(0, 3)) == 0:
            seq += draw(st.integers(1, 3))
            events.append(("k", seq))
            if stale_markers and draw(st.booleans()):
                events.append(("k", seq - draw(st.integers(0, 1))))
        else:
            events.append(("m", 0))
    return events


@settings(deadline=None, max_examples=200)
@given(streams())
def test_ids_are_unique_and_increasing(events: list[Event]) -> None:
    ids = [i for i in name_stream(events) if i is not None]
    assert ids == sorted(set(ids))
    first = next((i for i, e in enumerate(events) if e[0] == "k"), len(events))
    n_before = sum(1 for e in events[:first] if e[0] == "m")
    assert len(ids) == sum(1 for e in events if e[0] == "m") - n_before


@settings(deadline=None, max_examples=200)
@given(streams(stale_markers=False), st.data())
def test_late_or_resubscribed_sequencer_agrees_after_a_common_marker(
    events: list[Event], data: st.DataObject
) -> None:
    """Replica A sees the whole stream (as one primary delivers it: markers in seq
    order).  Replica B joins late (drops a prefix), then loses a chunk and resubscribes.
    In each of B's segments, messages before the segment's first marker get no name and
    the rest get A's names."""
    full = dict(
        zip([i for i, e in enumerate(events) if e[0] == "m"], name_stream(events), strict=True)
    )
    cut = data.draw(st.integers(0, len(events)), label="cut")
    lost_from = data.draw(st.integers(cut, len(events)), label="lost_from")
    lost_to = data.draw(st.integers(lost_from, len(events)), label="lost_to")
    b = Sequencer()
    for lo, hi in ((cut, lost_from), (lost_to, len(events))):
        b.reset()  # (re)subscribe
        seen_marker = False
        for i in range(lo, hi):
            kind, n = events[i]
            if kind == "k":
                b.on_marker(f"{n}:{1000 + n}")
                seen_marker = True
                continue
            got = b.name()
            assert got == (full[i] if seen_marker else None), (i, events)


# -- real Pub/Sub -----------------------------------------------------------------------


@pytest.fixture
def sc(redis_url: str, pool: str) -> Iterator[SyncCoord]:
    c = SyncCoord(redis_url, pool)
    yield c
    c.close()


def subscribe_all(r: redis.Redis, sc: SyncCoord) -> Any:
    ps = r.pubsub()
    ps.subscribe(*sc.channels.inbound())
    confirmed = 0
    while confirmed < len(sc.channels.inbound()):
        m = ps.get_message(timeout=2)
        assert m is not None, "no subscribe confirmation"
        confirmed += m["type"] == "subscribe"
    return ps


def drain(ps: Any, expect: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    while len(out) < expect:
        m = ps.get_message(timeout=2)
        assert m is not None, f"got {len(out)} of {expect} messages"
        if m["type"] == "message":
            out.append((m["channel"], m["data"]))
    assert ps.get_message(timeout=0.1) is None
    return out


def name_received(sc: SyncCoord, received: list[tuple[str, str]]) -> list[int | None]:
    s = Sequencer()
    out: list[int | None] = []
    for channel, data in received:
        if channel == sc.channels.marker:
            s.on_marker(data)
        else:
            out.append(s.name())
    return out


def test_two_subscribers_name_real_pubsub_messages_identically(
    sc: SyncCoord, r: redis.Redis
) -> None:
    ch = sc.channels
    connect = json.dumps({"user_id": "u1"})
    disconnect = json.dumps({"user_id": "u1"})
    early = subscribe_all(r, sc)
    sent = 0

    def pub(channel: str, data: str) -> None:
        nonlocal sent
        assert r.publish(channel, data) >= 1
        sent += 1

    def marker(now_ms: int) -> None:
        nonlocal sent
        assert sc.emit_marker(now_ms, 0)[0] > 0
        sent += 1

    pub(ch.activity, json.dumps({"user_id": "u1", "timestamp": 1}))
    marker(1000)
    pub(ch.connect, connect)
    pub(ch.disconnect, disconnect)
    late = subscribe_all(r, sc)  # joins mid-way: missed the first marker
    before_late = sent
    pub(ch.connect, connect)  # the same bytes again: content cannot name it
    pub(ch.node_status, "not json at all")
    marker(1100)
    pub(ch.disconnect, disconnect)
    pub(ch.connect, connect)
    marker(1050)  # a replica with a slower clock: the seq still increases
    pub(ch.connect, connect)
    assert sc.emit_marker(1060, 10_000) == (0, False)  # throttled: nothing published

    got_early = drain(early, sent)
    got_late = drain(late, sent - before_late)
    assert got_late == got_early[before_late:]
    ids_early = name_received(sc, got_early)
    ids_late = name_received(sc, got_late)
    seq0 = int(got_early[1][1].split(":")[0])
    assert ids_early == [
        None,
        seq0 * P + 1,
        seq0 * P + 2,
        seq0 * P + 3,
        seq0 * P + 4,
        (seq0 + 1) * P + 1,
        (seq0 + 1) * P + 2,
        (seq0 + 2) * P + 1,
    ]
    # the late one cannot name what came before its first marker, then agrees
    assert ids_late == [None, None, *ids_early[-3:]]
    early.close()
    late.close()
