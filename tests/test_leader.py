"""The leader's reconcile and back-off, on real Redis with a recording Node API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from provisioner.core.clock import VirtualClock
from provisioner.core.leader import Leader, LeaderConfig, planning_boot_s
from provisioner.core.metrics import Metrics
from provisioner.core.nodeapi import CreateFailed, CreateUncertain, NodeGone
from provisioner.policies.base import BootStats, PoolSnapshot
from provisioner.policies.static import StaticPoolPolicy
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


def test_a_tick_that_would_change_nothing_writes_nothing(sc: SyncCoord, r: redis.Redis) -> None:
    """Ticks with nothing to reap, create or newly record skip applyDecision; a change of
    the decision, a node past keep-alive, a stuck boot or an old record make it run."""
    clock = VirtualClock(1_000_000)
    api = RecordingApi()
    leader = _leader(sc, api, clock, k=1)

    def tick_at(t: int) -> None:
        clock.advance_to(t)
        _step(sc, leader)

    def skipped() -> float:
        return (
            leader.metrics.registry.get_sample_value("provisioner_leader_ticks_skipped_total")
            or 0.0
        )

    tick_at(1_000_000)  # first tick: records, creates one intent
    assert len(api.created) == 1 and r.xlen(sc.keys.decisions) == 1
    sc.node_status(api.created[0], "ready", 1_000_500)
    for t in range(1_001_000, 1_010_000, 1000):
        tick_at(t)  # one ready node, target 1: nothing to do
    assert skipped() == 9 and r.xlen(sc.keys.decisions) == 1
    leader.policy.k = 0  # type: ignore[attr-defined]  # the decision changes: recorded
    tick_at(1_010_000)
    assert r.xlen(sc.keys.decisions) == 2 and r.hget(sc.keys.policy, "target") == "0"
    assert api.deleted == []  # the node idles since 1_000_500 < keep-alive 60 s
    for t in range(1_011_000, 1_060_000, 1000):
        tick_at(t)
    assert api.deleted == [] and skipped() == 9 + 49
    tick_at(1_061_000)  # past keep-alive: the reaper must run
    assert api.deleted == [api.created[0]] and skipped() == 58
    for t in range(1_062_000, 1_121_000, 1000):
        tick_at(t)  # pool empty, target 0: skipped again ...
    assert skipped() == 58 + 59 and r.xlen(sc.keys.decisions) == 3
    tick_at(1_121_000)  # ... until the last record (at 1_061_000) is record_every_s old
    assert r.xlen(sc.keys.decisions) == 4 and skipped() == 117
    sc.register_node("", "slow", 1_121_000)  # a boot that never ends: stuck after 10 s
    for t in range(1_122_000, 1_132_000, 1000):
        tick_at(t)
    assert "slow" not in api.deleted
    tick_at(1_132_000)
    assert "slow" in api.deleted


def test_deferred_records_go_with_the_next_call_and_acts_are_not_deferred(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """defer_records (the replay's setting): a tick that only stores its decision queues
    applyDecision for the next round trip, ahead of the next tick's observeTick; a tick
    that must create still applies at once; a deferred apply refused by the fence ends
    the lease as a direct one would."""
    clock = VirtualClock(2_000_000)
    api = RecordingApi()
    cfg = LeaderConfig(tick_s=1, lease_ttl_s=10, default_boot_s=10, defer_records=True)
    policy = StaticPoolPolicy(1, 60)
    leader = Leader(sc.coord, api, policy, clock, "L", cfg, Metrics())

    def tick_at(t: int) -> None:
        clock.advance_to(t)
        _step(sc, leader)

    tick_at(2_000_000)  # must create: applied at once
    assert len(api.created) == 1 and r.xlen(sc.keys.decisions) == 1
    sc.node_status(api.created[0], "ready", 2_000_500)
    policy.k = 0  # the decision changes, nothing to do: only a record
    tick_at(2_001_000)
    assert r.xlen(sc.keys.decisions) == 1  # queued, not sent
    tick_at(2_002_000)  # sent ahead of this tick's observeTick
    assert r.xlen(sc.keys.decisions) == 2 and r.hget(sc.keys.policy, "target") == "0"
    newest = r.xrange(sc.keys.decisions)[-1][1]
    assert newest["target"] == "0" and api.deleted == []
    policy.k = 1
    tick_at(2_003_000)  # another record queued, then the lease is taken over
    r.hset(sc.keys.leader, "token", "someone-else")
    sc.run(sc.coord.runner.flush())
    assert leader.token is None and r.xlen(sc.keys.decisions) == 2  # fenced: not written


def test_a_first_boot_longer_than_the_default_guess_is_not_deleted_as_stuck(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """With no boot observed yet, the default boot time is only a guess: a first boot of
    8x the default (over the 3x stuck timeout of a learned boot time) must be waited for,
    and its boot time learned (held-out worlds with 150-190 s boots: every first boot was
    deleted, so no node ever became ready)."""
    clock = VirtualClock(5_000_000)
    api = RecordingApi()
    leader = _leader(sc, api, clock, k=1)  # default boot 10 s
    t0 = 5_000_000
    for t in range(t0, t0 + 80_000, 1000):
        clock.advance_to(t)
        _step(sc, leader)
    assert api.created == ["api-0"], api.created
    assert api.deleted == []
    sc.node_status("api-0", "ready", t0 + 80_000)
    assert int(r.hget(sc.keys.boot, "n") or 0) == 1
    clock.advance_to(t0 + 81_000)
    _step(sc, leader)
    assert api.deleted == []


class UncertainFirst(RecordingApi):
    """A Node API whose first POST times out (no node, no answer): the intent stays open."""

    async def create(self) -> str:
        if not self.created and not getattr(self, "timed_out", False):
            self.timed_out = True
            raise CreateUncertain("timeout")
        return await super().create()


@pytest.mark.parametrize(("intent_timeout_s", "served_by_s"), [(None, 10), (120.0, None)])
def test_an_open_intent_of_a_timed_out_post_expires_after_two_boot_times(
    sc: SyncCoord, r: redis.Redis, intent_timeout_s: float | None, served_by_s: int | None
) -> None:
    """Break-test finding: a POST that timed out without creating a node left its intent
    open for the fixed 120 s, counted as a node coming, so the waiting user waited 120 s
    with the API healthy, where boots take 3 s.  By default an intent expires after two
    boot times (here 6 s, over the 1 s floor) and the leader creates again."""
    clock = VirtualClock(7_000_000)
    api = UncertainFirst()
    cfg = LeaderConfig(
        tick_s=1, lease_ttl_s=10, unknown_grace_s=5, default_boot_s=3, min_boot_timeout_s=1,
        intent_timeout_s=intent_timeout_s,
    )  # fmt: skip
    leader = Leader(sc.coord, api, StaticPoolPolicy(0, 60), clock, "L", cfg, Metrics())
    t0 = 7_000_000
    sc.connect("u1", t0)
    created_at = None
    for t in range(t0, t0 + 30_000, 1000):
        clock.advance_to(t)
        _step(sc, leader)
        if api.created and created_at is None:
            created_at = (t - t0) / 1000
    if served_by_s is None:
        assert api.created == [] and r.zcard(sc.keys.intents) == 1  # still waiting on it
    else:
        assert created_at is not None and 6 <= created_at <= served_by_s, created_at


def test_the_policy_plans_with_a_censored_boot_time_until_the_first_boot_is_seen() -> None:
    """Before any boot is observed the policy plans with the default B, or with the age of
    the longest-booting node once that is longer (the boot takes at least that long: with
    3-minute boots the default 30 s would have it look 30 s ahead for 3 minutes); once a
    boot is observed, with the learned mean whatever the nodes still booting."""
    empty = PoolSnapshot(0, 0, 0, 0, 0, 0, 0, 0)
    now = 1_000_000
    assert planning_boot_s(empty, None, now, 30.0) == 30.0
    assert planning_boot_s(empty, now - 10_000, now, 30.0) == 30.0
    assert planning_boot_s(empty, now - 95_000, now, 30.0) == 95.0
    seen = PoolSnapshot(0, 1, 0, 0, 0, 0, 0, 0, boot=BootStats(n=1, mean_s=4.0))
    assert planning_boot_s(seen, now - 95_000, now, 30.0) == 4.0


def test_a_lease_key_of_the_wrong_type_is_said_once_not_a_traceback_a_tick(
    sc: SyncCoord, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Break-test finding: with ``P:leader`` a string, every tick logged a full traceback
    (``WrongTypeError: acquireLease refused``), unthrottled. A refusal by the pool's state
    is one warning per period, naming the way to find the key."""
    import asyncio
    import logging

    r.set(sc.keys.leader, "x")
    cfg = LeaderConfig(tick_s=0.02, lease_ttl_s=1, default_boot_s=10)
    leader = Leader(
        sc.coord, RecordingApi(), StaticPoolPolicy(0, 60), VirtualClock(10**12), "L", cfg,
        Metrics(),
    )  # fmt: skip

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(leader.run(stop))
        await asyncio.sleep(0.5)  # ~25 ticks
        stop.set()
        await task

    with caplog.at_level(logging.INFO, logger="provisioner.core.leader"):
        sc.run(go())
    said = [rec for rec in caplog.records if "refused" in rec.getMessage()]
    assert len(said) == 1 and "provisioner check" in said[0].getMessage()
    assert not [rec for rec in caplog.records if rec.exc_info]


def test_a_node_reported_terminated_that_we_did_not_delete_is_deleted_once(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Break-test finding: one wrong or forged ``terminated`` for an allocated node made
    the pool forget a node that still ran (its user got a replacement, and no DELETE was
    ever sent). The leader DELETEs, once, every node that ended without its DELETE (a real
    preemption answers 404); a node it deleted itself is not deleted again."""
    clock = VirtualClock(3_000_000)
    api = RecordingApi()
    leader = _leader(sc, api, clock, k=2)  # a static pool of 2
    for t in range(3_000_000, 3_003_000, 1000):
        clock.advance_to(t)
        _step(sc, leader)
    a, b = api.created[:2]
    for node in (a, b):
        sc.node_status(node, "ready", 3_003_000)
    sc.connect("u1", 3_003_500)
    held = r.hget(sc.keys.user_node, "u1")
    assert held in (a, b)
    sc.node_status(held, "terminated", 3_004_000)  # wrong or forged: the node still runs
    assert r.hget(sc.keys.node_state, held) == "terminated"
    for t in range(3_004_000, 3_008_000, 1000):
        clock.advance_to(t)
        _step(sc, leader)
    assert api.deleted.count(held) == 1
    assert sc.invariants() == []
    # nodes it deleted itself, once ended, are forgotten (not kept for ever), not re-deleted
    other = b if held == a else a
    leader._deleting[other] = clock.now_ms()  # as _delete records it
    sc.node_status(other, "terminated", clock.now_ms() + 500)
    for t in range(3_008_000, 3_011_000, 1000):
        clock.advance_to(t)
        _step(sc, leader)
    assert other not in api.deleted and other not in leader._deleting


def test_a_clean_stop_stores_the_policy_s_whole_state_for_the_next_leader(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Break-test finding: a rolling restart lost what the policy had learned since its
    last periodic state (up to 30 ticks).  A leader that stops cleanly records its last
    decision again with the policy's whole state, then releases the lease; the next
    leader restores it."""
    from provisioner.policies.predictive import PredictivePolicy

    clock = VirtualClock(5_000_000)
    cfg = LeaderConfig(tick_s=1, lease_ttl_s=10, unknown_grace_s=5, default_boot_s=10)
    policy = PredictivePolicy()
    leader = Leader(sc.coord, RecordingApi(), policy, clock, "L", cfg, Metrics())
    sc.record_activity("u1", 5_000_000)
    for t in range(5_000_000, 5_005_000, 1000):  # ticks 2-5 store no state
        clock.advance_to(t)
        _step(sc, leader)
    stored_before = r.hget(sc.keys.policy, "state")
    sc.run(leader.shutdown())
    last = r.hgetall(sc.keys.policy)
    assert last["stopped"] == "1" and last["state"] != stored_before
    assert last["state"] == policy.state_json()
    assert int(r.hget(sc.keys.leader, "expires_ms") or 0) == 0  # then released
    nxt = PredictivePolicy()
    nxt.restore(last)
    assert nxt.state_json() == policy.state_json()


def test_a_replica_whose_clock_is_off_redis_s_neither_takes_nor_keeps_the_lease(
    sc: SyncCoord, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Break-test finding: a replica whose clock ran 30 s ahead took the lease and, seeing
    every node 30 s older, reaped the ready ones as idle and deleted the booting ones as
    stuck on its first tick.  With ``max_clock_skew_s`` it compares its clock with Redis's
    ``TIME`` and stays out of the lease while they disagree, or gives it back."""
    import time

    from provisioner.core.leader import CLOCK_CHECK_S

    now = int(time.time() * 1000)
    cfg = LeaderConfig(tick_s=1, lease_ttl_s=10, default_boot_s=10, max_clock_skew_s=2.0)
    metrics = Metrics()
    ahead = VirtualClock(now + 30_000)
    skewed = Leader(sc.coord, RecordingApi(), StaticPoolPolicy(1, 60), ahead, "S", cfg, metrics)
    _step(sc, skewed)
    assert skewed.token is None and r.hget(sc.keys.leader, "holder") is None
    assert metrics.clock_skew._value.get() == pytest.approx(30.0, abs=1.0)
    assert "30.0 s ahead of Redis's" in caplog.text or "29.9 s ahead" in caplog.text
    clock = VirtualClock(int(time.time() * 1000))
    leader = Leader(sc.coord, RecordingApi(), StaticPoolPolicy(1, 60), clock, "L", cfg, Metrics())
    _step(sc, leader)
    assert leader.token is not None and r.hget(sc.keys.leader, "holder") == "L"
    clock.advance_to(clock.now_ms() + int(CLOCK_CHECK_S * 1000) + 30_000)  # its clock jumps
    _step(sc, leader)
    assert leader.token is None and r.hget(sc.keys.leader, "expires_ms") == "0"
    unchecked = LeaderConfig(tick_s=1, lease_ttl_s=10, default_boot_s=10)
    free = Leader(
        sc.coord, RecordingApi(), StaticPoolPolicy(1, 60), ahead, "V", unchecked, Metrics()
    )
    _step(sc, free)  # a virtual clock (the replay): not checked
    assert free.token is not None
