"""The leader's reconcile and back-off, on real Redis with a recording Node API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from provisioner.clock import VirtualClock
from provisioner.leader import Leader, LeaderConfig
from provisioner.metrics import Metrics
from provisioner.nodeapi import CreateFailed, NodeGone
from provisioner.policy import StaticPoolPolicy
from tests.helpers import SyncCoord


class RecordingApi:
    """A Node API that records calls; ``fail`` makes every create fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.created: list[str] = []
        self.deleted: list[str] = []

    async def create(self) -> str:
        if self.fail:
            raise CreateFailed("503")
        node = f"api-{len(self.created)}"
        self.created.append(node)
        return node

    async def delete(self, node_id: str) -> None:
        self.deleted.append(node_id)
        if node_id.startswith("phantom"):
            raise NodeGone(node_id)


@pytest.fixture
def sc(redis_url: str, pool: str) -> Iterator[SyncCoord]:
    c = SyncCoord(redis_url, pool)
    yield c
    c.close()


def _leader(sc: SyncCoord, api: RecordingApi, clock: VirtualClock, k: int = 0) -> Leader:
    cfg = LeaderConfig(tick_s=1, lease_ttl_s=10, unknown_grace_s=5, default_boot_s=10)
    return Leader(sc.coord, api, StaticPoolPolicy(k, 60), clock, "L", cfg, Metrics())


def _step(sc: SyncCoord, leader: Leader) -> None:
    async def go() -> None:
        await leader.step()
        await leader.drain()

    sc.run(go())


def test_a_forged_ready_never_reaches_a_waiting_user(sc: SyncCoord, r: redis.Redis) -> None:
    """Break-test finding: an unknown node with no open intent is dropped and deleted,
    never adopted into the pool while users wait."""
    clock = VirtualClock(1_000_000)
    api = RecordingApi(fail=True)  # no real node arrives: the user keeps waiting
    leader = _leader(sc, api, clock)
    sc.connect("u1", 1_000_000)
    sc.node_status("phantom-4", "ready", 1_000_100)
    for t in range(1_000_000, 1_012_000, 1000):
        clock.advance_to(t)
        _step(sc, leader)
    assert r.hget(sc.keys.user_node, "u1") is None
    assert r.hget(sc.keys.node_state, "phantom-4") == "terminated"
    assert r.zcard(sc.keys.nodes_unknown) == 0
    assert "phantom-4" in api.deleted
    # a late status of the dropped node changes nothing
    sc.node_status("phantom-4", "ready", 1_013_000)
    assert r.hget(sc.keys.user_node, "u1") is None
    assert sc.invariants() == []


def test_an_unknown_node_is_adopted_into_an_old_open_intent(sc: SyncCoord, r: redis.Redis) -> None:
    clock = VirtualClock(2_000_000)
    api = RecordingApi()
    leader = _leader(sc, api, clock)
    clock.advance_to(2_000_000)
    _step(sc, leader)  # acquire the lease
    token = leader.token
    assert token is not None
    sc.create_intents(token, 2_000_000, ["timed-out"])  # a POST whose answer never came
    sc.connect("u1", 2_000_500)
    sc.node_status("late-node", "ready", 2_001_000)
    for t in range(2_001_000, 2_008_000, 1000):
        clock.advance_to(t)
        _step(sc, leader)
    assert r.hget(sc.keys.node_state, "late-node") == "allocated"
    assert r.hget(sc.keys.user_node, "u1") == "late-node"
    assert r.zscore(sc.keys.intents, "timed-out") is None
    assert sc.invariants() == []


def test_failing_creates_back_off(sc: SyncCoord, r: redis.Redis) -> None:
    clock = VirtualClock(3_000_000)
    api = RecordingApi(fail=True)
    calls = 0

    async def counting_create() -> str:
        nonlocal calls
        calls += 1
        raise CreateFailed("503")

    api.create = counting_create  # type: ignore[method-assign]
    leader = _leader(sc, api, clock, k=2)
    for t in range(3_000_000, 3_010_000, 1000):
        clock.advance_to(t)
        _step(sc, leader)
    # without a back-off: 2 creates per tick for 10 ticks
    assert 2 <= calls <= 6
    assert r.hget(sc.keys.policy, "creates_paused") == "1"
    assert r.zcard(sc.keys.intents) == 0  # every failed intent was closed


def test_seeded_nodes_do_not_teach_a_zero_boot_time(sc: SyncCoord, r: redis.Redis) -> None:
    sc.register_node("", "s1", 5000)
    sc.node_status("s1", "ready", 5000)
    assert r.hget(sc.keys.boot, "n") is None
