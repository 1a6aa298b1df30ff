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
            assert got["stats"] == expected["stats"]
            # which node u holds may differ: "oldest idle" depends on the appliers' clocks
        finally:
            solo.close()
            pair.close()

    race()
