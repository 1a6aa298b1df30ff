"""Fault 9: a script meeting a key of the wrong type fails before its first write.

For **every** script in ``lua/`` and **every** key its header declares, the key is
replaced by a value of another type and the script is called with valid arguments on a
pool with nodes in every state, a held lease and a connected user.  The script must
refuse (``ERR_WRONG_TYPE``, raised as :class:`WrongTypeError`) and leave every key of
the pool byte for byte as it was: Redis does not roll back a script that fails half way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from provisioner.core.errors import WrongTypeError
from provisioner.core.scripts import REGISTRY
from tests.helpers import SyncCoord

NOW = 1_000_000

# script -> a call with valid arguments (token: the live lease's)
CALLS: dict[str, Callable[[SyncCoord, str], Any]] = {
    "recordActivity": lambda sc, t: sc.record_activity("u1", NOW, 5_000_001),
    "recordActivities": lambda sc, t: sc.record_activities(
        [("u1", NOW, 5_000_006), ("u2", NOW, 5_000_007)]
    ),
    "forgetUsers": lambda sc, t: sc.forget_users(NOW + 10**10, 1),
    "connectUser": lambda sc, t: sc.connect("u1", NOW, 5_000_002),
    "disconnectUser": lambda sc, t: sc.disconnect("u3", NOW, 5_000_003),
    "recordNodeStatus": lambda sc, t: sc.node_status("n2", "ready", NOW, 5_000_004),
    "registerNode": lambda sc, t: sc.register_node("i1", "n9", NOW),
    "createIntents": lambda sc, t: sc.create_intents(t, NOW, ["i2"]),
    "closeIntent": lambda sc, t: sc.close_intent("i1", "failed"),
    "reapNodes": lambda sc, t: sc.reap(t, NOW + 10**5, 0, 0, 1),
    "markTerminating": lambda sc, t: sc.mark_terminating(t, NOW, ["n2"]),
    "dropUnknown": lambda sc, t: sc.drop_unknown(t, NOW, ["ghost"]),
    "recordDecision": lambda sc, t: sc.record_decision(t, NOW, {"target": 1}),
    "acquireLease": lambda sc, t: sc.acquire_lease("M", NOW + 10**9, 1000),
    "renewLease": lambda sc, t: sc.renew_lease("L", t, NOW, 10**6),
    "releaseLease": lambda sc, t: sc.release_lease("L", t),
    "emitMarker": lambda sc, t: sc.emit_marker(NOW + 10**6, 0),
    "expireUsers": lambda sc, t: sc.expire_users(NOW + 10**9, 1, min_interval_ms=0),
    "pruneNodes": lambda sc, t: sc.prune_nodes(NOW + 10**10, 1),
    "heartbeat": lambda sc, t: sc.heartbeat("r1", NOW),
    "countBadInput": lambda sc, t: sc.count_bad_input("not_json", 5_000_005),
    "setPremium": lambda sc, t: sc.set_premium(["u1"]),
    "countActive": lambda sc, t: sc.active_by_class_recency(NOW, [1000.0], 2),
    "observeTick": lambda sc, t: sc.observe_tick("L", t, NOW, 10**6, 0.5, 2, [1.0]),
    "applyDecision": lambda sc, t: sc.apply_decision(
        t,
        NOW + 10**5,
        keep_alive_ms=0,
        reap_floor=0,
        boot_timeout_ms=1,
        target_spare=3,
        max_creates=3,
        fields={"target": 3},
    ),
}
HEADER = re.compile(r"^\s*KEYS\[(\d+)\]\s+(\w+)\s+(\w+)", re.M)


def _declared(name: str) -> list[tuple[str, str]]:
    """``(attr, type)`` of each key the script's header declares."""
    spec = REGISTRY[name]
    found = {int(i): (attr, typ) for i, attr, typ in HEADER.findall(spec.source)}
    assert sorted(found) == list(range(1, spec.num_keys + 1)), name
    return [found[i] for i in sorted(found)]


CASES = [(name, attr, typ) for name in sorted(REGISTRY) for attr, typ in _declared(name)]


def test_every_script_has_a_call() -> None:
    assert set(CALLS) == set(REGISTRY)


@pytest.fixture
def world(redis_url: str, pool: str) -> Iterator[tuple[SyncCoord, str]]:
    """A pool with a lease, nodes ready/booting/allocated/terminated, an intent, a
    connected user, an active user, a parked unknown node, counters and a marker."""
    sc = SyncCoord(redis_url, pool)
    token = sc.acquire_lease("L", NOW - 1000, 10**6).token
    sc.create_intents(token, NOW - 900, ["i1"])
    for node in ("n1", "n3", "n4"):
        sc.register_node("", node, NOW - 800)
        sc.node_status(node, "ready", NOW - 700)
    sc.register_node("", "n2", NOW - 800)
    sc.node_status("n4", "terminated", NOW - 650, 4_000_000)
    sc.record_activity("u1", NOW - 600, 4_000_001)
    sc.connect("u3", NOW - 500, 4_000_002)
    sc.node_status("ghost", "booting", NOW - 400, 4_000_003)
    sc.emit_marker(NOW - 300, 0)
    sc.heartbeat("r1", NOW - 300)
    sc.count_bad_input("wrong_type", 4_000_004)
    sc.record_decision(token, NOW - 200, {"target": 2})
    sc.set_premium(["u9"])
    sc.expire_users(NOW - 100, 10**9, min_interval_ms=0)
    yield sc, token
    sc.close()


def _dump(r: redis.Redis, pool: str) -> dict[str, Any]:
    raw = redis.Redis(connection_pool=r.connection_pool)
    return {k: raw.dump(k) for k in sorted(raw.keys(f"prov:{{{pool}}}:*"))}


@pytest.mark.parametrize(("script", "attr", "typ"), CASES, ids=[f"{s}-{a}" for s, a, _ in CASES])
def test_wrong_key_type_leaves_no_partial_write(
    world: tuple[SyncCoord, str], r: redis.Redis, pool: str, script: str, attr: str, typ: str
) -> None:
    sc, token = world
    key = getattr(sc.keys, attr)
    r.delete(key)
    if typ == "string":
        r.hset(key, "x", "1")
    else:
        r.set(key, "oops")
    before = _dump(r, pool)
    with pytest.raises(WrongTypeError):
        CALLS[script](sc, token)
    assert _dump(r, pool) == before


@pytest.mark.parametrize("script", sorted(set(CALLS) - {"countActive"}))
def test_each_call_writes_in_this_world(
    world: tuple[SyncCoord, str], r: redis.Redis, pool: str, script: str
) -> None:
    """The calls above are real writes in this world (so the refusals are not vacuous)."""
    sc, token = world
    before = _dump(r, pool)
    CALLS[script](sc, token)
    assert _dump(r, pool) != before
