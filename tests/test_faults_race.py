"""Fault 7: connect -> disconnect -> connect of one user while one replica lags, over many
random interleavings (hypothesis), on the real Lua scripts.

A sequence of named messages (the shared sequence's ids) is drawn: the user ``u``
connects, disconnects and connects again (one to three rounds, ending connected), with
another user's traffic and ``ready``/``terminated`` statuses of nodes mixed in.  Two
replicas apply the whole sequence, each in order, the lagging one later by its own
clock; hypothesis draws how their calls interleave, and whether the prompt one dies
half way.  The final state must match one replica applying the sequence once: ``u``
connected with exactly one node, the same users connected and waiting, every counter
once, I1 after every call.  (Which node ``u`` holds may differ: the oldest idle node
depends on the appliers' clocks.)
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import SyncCoord

Msg = tuple[str, tuple[Any, ...]]
_pools = itertools.count()


@st.composite
def sequences(draw: st.DrawFn) -> list[Msg]:
    rounds = draw(st.integers(1, 3))
    main: list[Msg] = []
    for _ in range(rounds):
        main += [("connect", ("u",)), ("disconnect", ("u",))]
    main.append(("connect", ("u",)))
    noise: list[Msg] = draw(
        st.lists(
            st.sampled_from(
                [
                    ("connect", ("v",)),
                    ("disconnect", ("v",)),
                    ("node_status", ("n3", "ready")),
                    ("node_status", ("n4", "ready")),
                    ("node_status", ("n1", "terminated")),
                ]
            ),
            max_size=5,
        )
    )
    out = list(main)
    for m in noise:  # insert the noise at random places, keeping u's order
        out.insert(draw(st.integers(0, len(out))), m)
    # a ready node is available at the end whatever happened: u must end holding one
    out.append(("node_status", ("n5", "ready")))
    out.append(("node_status", ("n6", "ready")))
    return out


def _world(redis_url: str) -> SyncCoord:
    sc = SyncCoord(redis_url, f"race{next(_pools)}x")
    for node in ("n1", "n2"):
        sc.register_node("", node, 1000)
        sc.node_status(node, "ready", 1001)
    for node in ("n3", "n4", "n5", "n6"):
        sc.register_node("", node, 1000)
    return sc


def _apply(sc: SyncCoord, i: int, msg: Msg, now: int) -> None:
    name, args = msg
    sc_call = getattr(sc, name)
    sc_call(*args, now, 1_000_000 * (i + 2))
    assert sc.invariants() == []


def _final(sc: SyncCoord) -> dict[str, Any]:
    k = sc.keys

    async def read() -> dict[str, Any]:
        c = sc.client
        stats = await c.hgetall(k.stats)
        return {
            "user_node": await c.hgetall(k.user_node),
            "node_state": await c.hgetall(k.node_state),
            "waiting": await c.zrange(k.users_waiting, 0, -1),
            "stats": {s: v for s, v in stats.items() if not s.startswith("_")},
        }

    return sc.run(read())


@pytest.mark.slow
def test_connect_disconnect_connect_with_a_lagging_replica(redis_url: str) -> None:
    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(seq=sequences(), data=st.data())
    def race(seq: list[Msg], data: st.DataObject) -> None:
        solo = _world(redis_url)
        pair = _world(redis_url)
        try:
            for i, m in enumerate(seq):
                _apply(solo, i, m, 10_000 + 100 * i)
            expected = _final(solo)
            # the prompt replica may die after any prefix; the laggard applies it all
            dies_after = data.draw(st.integers(0, len(seq)), label="prompt dies after")
            order = data.draw(
                st.permutations(["p"] * dies_after + ["d"] * len(seq)), label="interleaving"
            )
            nxt = {"p": 0, "d": 0}
            for who in order:
                i = nxt[who]
                nxt[who] += 1
                lag = 0 if who == "p" else 500  # the laggard's clock is later
                _apply(pair, i, seq[i], 10_000 + 100 * i + lag)
            got = _final(pair)
            assert got["user_node"].keys() == expected["user_node"].keys()
            assert "u" in got["user_node"] and "u" not in got["waiting"]
            assert got["node_state"][got["user_node"]["u"]] == "allocated"
            assert got["waiting"] == expected["waiting"]
            # which node a user gets may differ: "oldest idle" depends on the appliers'
            # clocks; so a node terminated later may be someone's in one world and idle in
            # the other, even when the final holdings agree (found by this search:
            # preempted + assigned_late against preempted_idle). Those counters must agree
            # in sum (one termination either way); every other counter exactly.
            moved = ("preempted", "preempted_idle", "assigned_late")
            g, e = dict(got["stats"]), dict(expected["stats"])

            def ended(st: dict[str, str]) -> int:
                return int(st.get("preempted", 0)) + int(st.get("preempted_idle", 0))

            assert ended(g) == ended(e)
            assert {k: v for k, v in g.items() if k not in moved} == {
                k: v for k, v in e.items() if k not in moved
            }
        finally:
            solo.close()
            pair.close()

    race()


def test_a_lagging_replica_may_preempt_where_the_prompt_one_found_the_node_idle(
    redis_url: str,
) -> None:
    """The input the search above found: with the laggard's later clock, u got n1 for a
    while, so n1's termination preempted it (and it was served again late), where the
    single applier found n1 idle. Same holdings at the end, one termination either way."""
    seq: list[Msg] = [
        ("node_status", ("n3", "ready")), ("connect", ("u",)), ("disconnect", ("u",)),
        ("connect", ("v",)), ("connect", ("v",)), ("connect", ("v",)), ("connect", ("u",)),
        ("node_status", ("n1", "terminated")), ("node_status", ("n5", "ready")),
        ("node_status", ("n6", "ready")),
    ]  # fmt: skip
    solo, pair = _world(redis_url), _world(redis_url)
    try:
        for i, m in enumerate(seq):
            _apply(solo, i, m, 10_000 + 100 * i)
        nxt = {"p": 0, "d": 0}
        for who in ["d", "p", "p", "p"] + ["d"] * 9:
            i = nxt[who]
            nxt[who] += 1
            _apply(pair, i, seq[i], 10_000 + 100 * i + (0 if who == "p" else 500))
        e, g = _final(solo), _final(pair)
        assert g["user_node"] == e["user_node"] == {"v": "n2", "u": "n3"}
        assert e["stats"].get("preempted_idle") == "1" and "preempted" not in e["stats"]
        assert g["stats"].get("preempted") == "1" and g["stats"].get("assigned_late") == "1"
    finally:
        solo.close()
        pair.close()
