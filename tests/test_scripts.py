"""Each Lua transition on its own, against a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot
from redis.exceptions import ResponseError

from provisioner.core.coordinator import CLASS_BAND, Coordinator, UserRecord
from provisioner.core.errors import (
    BadArgumentError,
    Code,
    FencedError,
    ScriptLoadError,
    WrongTypeError,
)
from provisioner.core.keys import PoolKeys
from provisioner.core.scripts import REGISTRY, ScriptRunner, load_registry
from provisioner.core.sequencer import MAX_SEQ, Sequencer, marker_tag
from provisioner.policies.predictive import user_class
from tests.helpers import SyncCoord


@pytest.fixture
def sc(redis_url: str, pool: str) -> Iterator[SyncCoord]:
    c = SyncCoord(redis_url, pool)
    yield c
    c.close()


def ready_node(sc: SyncCoord, node: str, now: int) -> None:
    """Register a node and report it ready, through the real scripts."""
    assert sc.register_node("", node, now) == Code.OK
    assert sc.node_status(node, "ready", now + 1)[0] == Code.OK


class Assigned:
    """Collects user:assigned messages of the test's channel prefix."""

    def __init__(self, r: redis.Redis, sc: SyncCoord) -> None:
        self.ps = r.pubsub()
        self.ps.subscribe(sc.channels.assigned)
        self.ps.get_message(timeout=1)

    def all(self) -> list[dict[str, object]]:
        out = []
        while (m := self.ps.get_message(timeout=0.2)) is not None:
            out.append(json.loads(m["data"]))
        return out


def test_every_script_names_only_keys_of_one_slot() -> None:
    for pool in ("default", "eu-gpu-a100"):
        keys = PoolKeys(pool)
        for spec in REGISTRY.values():
            names = spec.keys_for(keys)
            assert len(names) == spec.num_keys
            assert len({key_slot(n.encode()) for n in names}) == 1, spec.name
            assert all(n.startswith(f"prov:{{{pool}}}:") for n in names)


def test_loader_rejects_wrong_key_count(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "includes").mkdir()
    (tmp_path / "doThing-2.lua").write_text("--[[\n  KEYS[1] stats  hash\n]]\nreturn 1\n")
    with pytest.raises(ScriptLoadError, match=r"expected 1\.\.2"):
        load_registry(tmp_path)


def test_connect_hit_takes_oldest_idle_node_and_publishes(sc: SyncCoord, r: redis.Redis) -> None:
    got = Assigned(r, sc)
    ready_node(sc, "n-old", 1000)
    ready_node(sc, "n-new", 2000)
    code, node = sc.connect("u1", 3000)
    assert (code, node) == (Code.HIT, "n-old")
    assert got.all() == [{"user_id": "u1", "node_id": "n-old", "wait_ms": 0}]
    assert r.hget(sc.keys.user_node, "u1") == "n-old"
    assert r.hget(sc.keys.node_state, "n-old") == "allocated"
    assert r.zrange(sc.keys.nodes_ready, 0, -1) == ["n-new"]
    assert sc.invariants() == []


def test_connect_miss_waits_and_ready_node_serves_first_waiter(
    sc: SyncCoord, r: redis.Redis
) -> None:
    got = Assigned(r, sc)
    assert sc.connect("u1", 1000)[0] == Code.MISS
    assert sc.connect("u2", 1500)[0] == Code.MISS
    assert r.zrange(sc.keys.users_waiting, 0, -1) == ["u1", "u2"]
    sc.register_node("", "n1", 500)
    code, user = sc.node_status("n1", "ready", 4000)
    assert (code, user) == (Code.OK, "u1")
    assert got.all() == [{"user_id": "u1", "node_id": "n1", "wait_ms": 3000}]
    stats = r.hgetall(sc.keys.stats)
    assert stats["misses"] == "2" and stats["connects"] == "2" and stats.get("hits") is None
    assert sc.invariants() == []


def test_disconnect_hands_node_to_waiter_else_back_to_pool(sc: SyncCoord, r: redis.Redis) -> None:
    got = Assigned(r, sc)
    ready_node(sc, "n1", 0)
    sc.connect("u1", 100)
    sc.connect("u2", 200)  # miss, waits
    code, node, to = sc.disconnect("u1", 700)
    assert (code, node, to) == (Code.OK, "n1", "u2")
    assert got.all()[-1] == {"user_id": "u2", "node_id": "n1", "wait_ms": 500}
    code, node, to = sc.disconnect("u2", 900)
    assert (code, node, to) == (Code.OK, "n1", None)
    assert r.zscore(sc.keys.nodes_ready, "n1") == 900
    assert sc.disconnect("ghost", 1000)[0] == Code.UNKNOWN_USER
    assert sc.invariants() == []


def test_waiting_user_who_disconnects_leaves_waitlist(sc: SyncCoord, r: redis.Redis) -> None:
    sc.connect("u1", 100)
    assert sc.disconnect("u1", 200)[0] == Code.OK
    assert r.zcard(sc.keys.users_waiting) == 0
    assert r.hget(sc.keys.stats, "never_served") == "1"


def test_duplicate_and_stale_messages_change_nothing(sc: SyncCoord, r: redis.Redis) -> None:
    ready_node(sc, "n1", 0)
    ready_node(sc, "n2", 0)
    assert sc.connect("u1", 100, msg_id=1_000_005)[0] == Code.HIT
    assert sc.connect("u1", 100, msg_id=1_000_005)[0] == Code.STALE
    assert sc.connect("u1", 150, msg_id=1_000_009)[0] == Code.DUPLICATE
    assert r.zcard(sc.keys.nodes_allocated) == 1
    # connect -> disconnect -> connect, then a lagging replica replays the first two
    assert sc.disconnect("u1", 200, msg_id=2_000_000)[0] == Code.OK
    assert sc.connect("u1", 300, msg_id=3_000_001)[0] == Code.HIT
    assert sc.disconnect("u1", 200, msg_id=2_000_000)[0] == Code.STALE
    assert sc.connect("u1", 100, msg_id=1_000_005)[0] == Code.STALE
    assert r.hget(sc.keys.user_node, "u1") is not None
    assert r.hget(sc.keys.stats, "connects") == "2"
    assert sc.invariants() == []


def test_node_status_guards(sc: SyncCoord, r: redis.Redis) -> None:
    assert sc.node_status("stranger", "ready", 100)[0] == Code.UNKNOWN_NODE
    assert r.zscore(sc.keys.nodes_unknown, "stranger") == 100
    sc.register_node("", "n1", 1000)
    assert sc.node_status("n1", "booting", 1001)[0] == Code.DUPLICATE
    assert sc.node_status("n1", "ready", 21000)[0] == Code.OK
    assert sc.node_status("n1", "ready", 21001)[0] == Code.DUPLICATE
    assert sc.node_status("n1", "booting", 21002)[0] == Code.IGNORED  # out of order
    assert r.hget(sc.keys.node_state, "n1") == "ready"
    assert sc.node_status("n1", "terminated", 22000)[0] == Code.OK
    assert sc.node_status("n1", "terminated", 22001)[0] == Code.DUPLICATE
    assert sc.node_status("n1", "ready", 22002)[0] == Code.IGNORED  # late
    assert r.hget(sc.keys.node_state, "n1") == "terminated"
    assert sc.invariants() == []


def test_boot_time_is_learned_from_booting_to_ready(sc: SyncCoord) -> None:
    for i, boot_ms in enumerate([20_000, 30_000, 25_000]):
        t0 = i * 100_000
        sc.register_node("", f"n{i}", t0)
        sc.node_status(f"n{i}", "ready", t0 + boot_ms)
    snap = sc.snapshot()
    assert snap.boot.n == 3
    assert snap.boot.mean_s == pytest.approx(25.0)
    assert snap.boot.last_s == pytest.approx(25.0)
    assert snap.boot.sd_s > 0


def test_status_before_202_is_applied_at_registration(sc: SyncCoord, r: redis.Redis) -> None:
    got = Assigned(r, sc)
    lease = sc.acquire_lease("me", 0, 10_000)
    sc.create_intents(lease.token, 0, ["i1"])
    sc.connect("u1", 10)
    assert sc.node_status("n1", "booting", 20)[0] == Code.UNKNOWN_NODE
    assert sc.node_status("n1", "ready", 30_000)[0] == Code.UNKNOWN_NODE
    assert sc.register_node("i1", "n1", 30_100) == Code.OK
    assert r.hget(sc.keys.node_state, "n1") == "allocated"
    assert r.zcard(sc.keys.intents) == 0 and r.zcard(sc.keys.nodes_unknown) == 0
    assert got.all() == [{"user_id": "u1", "node_id": "n1", "wait_ms": 29_990}]
    assert sc.snapshot().boot.mean_s == pytest.approx(30.0)
    assert sc.invariants() == []


def test_allocated_node_terminated_puts_user_first_and_replaces(
    sc: SyncCoord, r: redis.Redis
) -> None:
    got = Assigned(r, sc)
    ready_node(sc, "n1", 0)
    sc.connect("u1", 100)
    sc.connect("u2", 200)  # waits
    assert sc.node_status("n1", "terminated", 1000) == (Code.OK, "u1")
    assert r.zrange(sc.keys.users_waiting, 0, -1) == ["u1", "u2"]  # u1 in front
    sc.register_node("", "n2", 1000)
    assert sc.node_status("n2", "ready", 3000) == (Code.OK, "u1")
    assert got.all()[-1] == {"user_id": "u1", "node_id": "n2", "wait_ms": 2000}
    # with a spare ready node the replacement is immediate, wait_ms at least 1
    ready_node(sc, "n3", 3000)  # goes to u2
    ready_node(sc, "n4", 3000)
    sc.node_status("n2", "terminated", 5000)
    assert r.hget(sc.keys.user_node, "u1") == "n4"
    assert got.all()[-1] == {"user_id": "u1", "node_id": "n4", "wait_ms": 1}
    assert r.hget(sc.keys.stats, "preempted") == "2"
    assert sc.invariants() == []


def test_a_deposed_leader_s_token_is_not_reissued_after_the_keys_are_lost(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Break-test finding: with the pool's keys lost the token counter began again at 1, so
    a leader deposed by the loss could hold the same token as its successor and pass the
    fence until its next renewal. A missing counter starts at now_ms."""
    a = sc.acquire_lease("a", 1_000_000, 1000)
    for k in sc.keys.all():
        r.delete(k)
    b = sc.acquire_lease("b", 1_000_010, 1000)
    assert b.held and int(b.token) > int(a.token)
    with pytest.raises(FencedError):
        sc.create_intents(a.token, 1_000_020, ["x"])


def test_a_lease_with_an_unreadable_expiry_is_taken_as_expired(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Re-test finding: ``HSET P:leader expires_ms abc`` made every lease script fail (a Lua
    error comparing nil), and the pool had no leader. Unreadable, it has expired."""
    a = sc.acquire_lease("a", 1000, 1000)
    r.hset(sc.keys.leader, "expires_ms", "abc")
    with pytest.raises(FencedError):
        sc.create_intents(a.token, 1100, ["x"])
    with pytest.raises(FencedError):
        sc.renew_lease("a", a.token, 1100, 1000)
    b = sc.acquire_lease("b", 1200, 1000)
    assert b.held and int(b.token) > int(a.token)


def test_lease_fencing(sc: SyncCoord) -> None:
    a = sc.acquire_lease("a", 0, 1000)
    assert a.held
    b = sc.acquire_lease("b", 500, 1000)
    assert not b.held and b.holder == "a"
    assert sc.renew_lease("a", a.token, 900, 1000) == 1900
    b = sc.acquire_lease("b", 2000, 1000)  # a lapsed
    assert b.held and int(b.token) > int(a.token)
    with pytest.raises(FencedError):
        sc.renew_lease("a", a.token, 2100, 1000)
    with pytest.raises(FencedError):
        sc.create_intents(a.token, 2100, ["x"])
    with pytest.raises(FencedError):
        sc.reap(a.token, 2100, 0, 0, 60_000)
    assert sc.create_intents(b.token, 2100, ["x"]) == 1
    assert not sc.release_lease("a", a.token)
    assert sc.release_lease("b", b.token)
    assert sc.acquire_lease("a", 2200, 1000).held


def test_two_processes_with_one_replica_id_never_share_a_lease(sc: SyncCoord) -> None:
    """Break-test finding: two processes started with one ``--replica-id`` both took the
    lease as the same holder with the same token, which fencing cannot tell apart. The
    lease knows its process by an instance drawn at start: the second one is told HELD (by
    its own id) until the lease is free, and then gets a token of its own."""
    a = sc.acquire_lease("r1", 0, 1000, "inst-a")
    assert a.held
    again = sc.acquire_lease("r1", 500, 1000, "inst-a")  # the same process extends it
    assert again.held and again.token == a.token and again.expires_ms == 1500
    b = sc.acquire_lease("r1", 600, 1000, "inst-b")
    assert not b.held and b.holder == "r1" and b.expires_ms == 1500
    assert sc.release_lease("r1", a.token)
    b = sc.acquire_lease("r1", 800, 1000, "inst-b")
    assert b.held and int(b.token) > int(a.token)
    with pytest.raises(FencedError):
        sc.create_intents(a.token, 900, ["x"])
    assert not sc.acquire_lease("r1", 900, 1000, "inst-a").held


def test_a_replica_that_leaves_is_no_longer_listed(sc: SyncCoord, r: redis.Redis) -> None:
    """Fresh-user finding: a replica stopped cleanly stayed in ``P:replicas`` until another
    replica's heartbeat found it 30 s stale (and for ever when none ran)."""
    assert sc.heartbeat("r1", 1_000) == 1 and sc.heartbeat("r2", 1_500) == 2
    assert sc.heartbeat("r1", 2_000, leave=True) == 1
    assert r.zrange(sc.keys.replicas, 0, -1) == ["r2"]
    assert sc.heartbeat("r2", 40_000) == 1  # a stale one goes at the next beat
    assert sc.heartbeat("r3", 80_000) == 1


def test_reap_keeps_target_and_never_allocated(sc: SyncCoord, r: redis.Redis) -> None:
    tok = sc.acquire_lease("me", 0, 10**9).token
    for i in range(4):
        ready_node(sc, f"n{i}", i * 1000)
    sc.connect("u1", 5000)  # takes n0 (oldest idle)
    sc.register_node("", "stuck", 0)
    res = sc.reap(tok, 100_000, 30_000, 1, 90_000)
    assert res.stuck == ["stuck"]
    assert res.idle == ["n1", "n2"]  # oldest idle first, keep 1 spare
    assert r.hget(sc.keys.node_state, "n0") == "allocated"
    assert r.zrange(sc.keys.nodes_ready, 0, -1) == ["n3"]
    # keep-alive not yet passed: nothing reaped
    assert sc.reap(tok, 100_000, 10**6, 0, 90_000).idle == []
    assert sc.invariants() == []


def test_reap_leaves_idle_nodes_while_users_wait(sc: SyncCoord, r: redis.Redis) -> None:
    tok = sc.acquire_lease("me", 0, 10**9).token
    r.zadd(sc.keys.users_waiting, {"u9": 1})
    ready_ms = 0
    sc.register_node("", "n1", ready_ms)
    r.zadd(sc.keys.nodes_ready, {"n1": 0})  # an inconsistent state on purpose
    assert sc.reap(tok, 100_000, 0, 0, 90_000).idle == []


def test_expire_users_and_throttle(sc: SyncCoord, r: redis.Redis) -> None:
    sc.record_activity("old", 0)
    sc.record_activity("new", 50_000)
    assert sc.expire_users(60_000, 30_000, min_interval_ms=1000) == 1
    assert r.zrange(sc.keys.users_active, 0, -1) == ["new"]
    sc.record_activity("x", 0)
    assert sc.expire_users(60_500, 30_000, min_interval_ms=1000) == 0  # throttled
    assert sc.expire_users(61_500, 30_000, min_interval_ms=1000) == 1


def test_expire_users_in_boot_times_follows_the_learned_boot_time(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """ttl_ms 0: the TTL is ttl_b boot times, the default boot time (30 s here) until a
    boot is observed, then the learned mean; a bad ttl_b is refused."""
    sc.record_activity("a", 0)
    sc.record_activity("b", 50_000)
    assert sc.expire_users(100_000, 0, min_interval_ms=0, ttl_b=2.0) == 1  # TTL 60 s
    assert r.zrange(sc.keys.users_active, 0, -1) == ["b"]
    r.hset(sc.keys.boot, mapping={"n": 1, "mean_ms": 5000})
    assert sc.expire_users(100_000, 0, min_interval_ms=0, ttl_b=20.0) == 0  # TTL 100 s
    assert sc.expire_users(160_000, 0, min_interval_ms=0, ttl_b=20.0) == 1
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(BadArgumentError):
            sc.expire_users(200_000, 0, min_interval_ms=0, ttl_b=bad)


def test_activity_counts_and_predictable_connects(sc: SyncCoord, r: redis.Redis) -> None:
    sc.record_activity("u1", 10)
    sc.record_activity("u1", 20)
    sc.connect("u1", 30)
    sc.connect("cold", 40)
    rec = sc.user_record("u1")
    assert rec is not None
    assert (rec.first_ms, rec.activity_count, rec.connects, rec.last_disconnect_ms) == (10, 2, 1, 0)
    assert rec.last_ms == 30 and rec.seq == 0  # unordered calls leave no ordering record
    stats = r.hgetall(sc.keys.stats)
    assert stats["connects_predictable"] == "1" and stats["connects_cold"] == "1"
    assert stats["misses_predictable"] == "1" and stats["misses_cold"] == "1"
    assert r.zscore(sc.keys.users_active, "u1") is None  # connected users leave it


def test_activity_of_a_connected_user_is_counted_only(sc: SyncCoord, r: redis.Redis) -> None:
    """Regression (own review): a user who connected and waits for a node, then browsed,
    was put back in the active set, and stayed there once served (a holder counted as a
    user who might connect). Waiting or holding, its activity is counted only."""
    sc.record_activity("u1", 10)
    assert sc.connect("u1", 20)[0] == Code.MISS
    sc.record_activity("u1", 30)  # waits
    assert r.zscore(sc.keys.users_active, "u1") is None
    ready_node(sc, "n1", 40)  # served from the waitlist
    assert r.hget(sc.keys.user_node, "u1") == "n1"
    sc.record_activities([("u1", 50, 0), ("u2", 60, 0)])  # holds
    assert r.zrange(sc.keys.users_active, 0, -1) == ["u2"]
    stats = r.hgetall(sc.keys.stats)
    assert (stats["activity"], stats["users_new"], stats["users_activated"]) == ("4", "2", "2")
    rec = sc.user_record("u1")
    assert rec is not None and rec.activity_count == 3 and rec.last_ms == 50
    assert sc.invariants() == []


def test_markers_are_throttled_and_published(sc: SyncCoord, r: redis.Redis) -> None:
    ps = r.pubsub()
    ps.subscribe(sc.channels.marker)
    ps.get_message(timeout=1)
    assert sc.emit_marker(1000, 100) == (1, False)
    assert sc.emit_marker(1050, 100) == (0, False)
    assert sc.emit_marker(1100, 100) == (2, False)
    msgs = [ps.get_message(timeout=1)["data"] for _ in range(2)]  # type: ignore[index]
    secret = r.get(sc.keys.seq_secret)
    assert secret and len(secret) == 32
    assert msgs == [f"{b}:{marker_tag(secret, b)}" for b in ("1:1000", "2:1100")]
    seq = Sequencer()
    assert seq.on_marker(msgs[0], secret)
    forged = "100000000000:0:" + marker_tag("guess", "100000000000:0")
    assert not seq.on_marker(forged, secret)  # bad tag
    assert not seq.on_marker("100000000000:0", secret)  # no tag
    assert seq.on_marker(msgs[1], secret) and seq.seq == 2


def test_a_marker_counter_below_the_floor_seen_is_raised_to_it(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Break-test finding: after the pool's keys were deleted (or Redis restarted without
    persistence) the counter began again at 1, and every running replica, whose sequence
    was higher, ignored the new markers as old. A replica passes the highest seq it has
    seen; the counter never runs below it, and never goes back."""
    assert sc.emit_marker(1000, 0, 0) == (1, False)
    for k in (sc.keys.seq, sc.keys.seq_last_ms, sc.keys.seq_secret):
        r.delete(k)  # the pool's keys gone
    assert sc.emit_marker(2000, 0, 5_000) == (5_001, True)  # raised: the state was lost
    assert sc.emit_marker(3000, 0, 10) == (5_002, False)  # a lower floor changes nothing
    assert sc.emit_marker(4000, 0) == (5_003, False)
    with pytest.raises(BadArgumentError):
        sc.emit_marker(5000, 0, -1)
    assert r.get(sc.keys.seq) == "5003"
    # re-test finding: a counter no marker can carry stopped every marker (a Lua error, or
    # markers past MAX_SEQ ignored); it is set to the floor like a missing one
    for junk in ("abc", "9999999999", "1.5"):
        r.set(sc.keys.seq, junk)
        assert sc.emit_marker(6000, 0, 5_003) == (5_004, True), junk
    r.set(sc.keys.seq_last_ms, "abc")  # an unreadable last time does not throttle
    assert sc.emit_marker(7000, 100, 5_004)[0] == 5_005
    # the script's bound is the sequencer's
    lua = (Path(__file__).parents[1] / "lua" / "emitMarker-3.lua").read_text()
    assert f"local MAX_SEQ = {MAX_SEQ}\n" in lua
    r.set(sc.keys.seq, str(MAX_SEQ - 1))
    assert sc.emit_marker(8000, 0, 5_005) == (MAX_SEQ, False)  # the last one a marker carries
    assert sc.emit_marker(9000, 0, 5_005) == (5_006, True)


def test_bad_input_counted_once_per_message(sc: SyncCoord, r: redis.Redis) -> None:
    assert sc.count_bad_input("not_json", 5_000_001) == Code.OK
    assert sc.count_bad_input("not_json", 5_000_001) == Code.DUPLICATE
    assert sc.count_bad_input("missing_field", 5_000_002) == Code.OK
    assert r.hget(sc.keys.bad, "not_json") == "1"


def test_wrong_key_type_refused_before_any_write(sc: SyncCoord, r: redis.Redis) -> None:
    ready_node(sc, "n1", 0)
    r.delete(sc.keys.users_waiting)
    r.set(sc.keys.users_waiting, "oops")
    before = {k: r.dump(k) for k in sc.keys.all()}
    with pytest.raises(WrongTypeError):
        sc.connect("u1", 100)
    assert {k: r.dump(k) for k in sc.keys.all()} == before


def test_noscript_after_flush_is_reloaded_single_and_pipelined(
    sc: SyncCoord, r: redis.Redis
) -> None:
    r.script_flush()
    assert sc.record_activity("u1", 1) == Code.OK
    r.script_flush()
    res = sc.run(
        sc.runner.call_many([("recordActivity", ["u2", 2, 0]), ("recordActivity", ["u3", 3, 0])])
    )
    assert [int(x[0]) for x in res] == [0, 0]
    assert r.zcard(sc.keys.users_active) == 3
    assert r.hget(sc.keys.stats, "activity") == "3"  # nothing ran twice


def test_deferred_calls_run_first_and_are_handed_back_before_the_callers_own(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """ScriptRunner.defer: queued calls go in the next call_many's round trip, ahead of
    its own (Redis sees them first), their results reach on_results before that
    call_many returns, errors in place; flush sends what is still queued; a NOSCRIPT
    after a script flush re-runs them in order."""
    seen: list[tuple[str, list[object]]] = []
    runner = sc.runner
    ready_node(sc, "n1", 0)
    r.script_flush()
    runner.defer([sc.coord.connect_call("u1", 10)], lambda res: seen.append(("a", res)))
    runner.defer([("recordActivity", ["u2", 11, 0])], lambda res: seen.append(("b", res)))
    own = sc.run(runner.call_many([sc.coord.connect_call("u3", 12)]))
    assert [tag for tag, _ in seen] == ["a", "b"]
    assert int(seen[0][1][0][0]) == Code.HIT and seen[0][1][0][1] == "n1"  # u1 came first
    assert int(own[0][0]) == Code.MISS  # u3 found the pool empty
    assert r.hget(sc.keys.stats, "connects") == "2"
    runner.defer([("recordActivity", ["", 13, 0])], lambda res: seen.append(("c", res)))
    sc.run(runner.flush())
    assert seen[-1] == ("c", [[Code.ERR_BAD_ARG, 0]])
    sc.run(runner.flush())  # nothing queued: nothing sent
    assert len(seen) == 3


def test_deferred_errors_stay_with_their_owner_and_unsent_calls_stay_queued(
    sc: SyncCoord,
    r: redis.Redis,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Review findings: a deferred call's error reply goes to its on_results only (the
    call it rode with returns its own results); a batch that could not be packed or sent
    leaves the queued calls queued for the next call; a call that cannot be packed is
    refused when deferred, so it cannot poison the calls after it."""
    (tmp_path / "includes").mkdir()
    head = "--[[\n  KEYS[1] stats  hash\n]]\n"
    (tmp_path / "failNow-1.lua").write_text(head + "return redis.error_reply('boom')\n")
    (tmp_path / "countUp-1.lua").write_text(
        head + "return redis.call('HINCRBY', K.stats, 'up', 1)\n"
    )
    runner = ScriptRunner(sc.client, sc.keys, load_registry(tmp_path))
    sc.run(runner.load_all())
    got: list[list[object]] = []
    runner.defer([("failNow", []), ("countUp", [])], got.append)
    assert sc.run(runner.call_many([("countUp", [])])) == [2]
    assert isinstance(got[0][0], ResponseError) and got[0][1] == 1
    with pytest.raises(TypeError):
        runner.defer([("countUp", [True])], got.append)  # refused here, not later
    runner.defer([("countUp", [])], got.append)
    with pytest.raises(TypeError):
        sc.run(runner.call_many([("countUp", [object()])]))  # type: ignore[list-item]
    assert r.hget(sc.keys.stats, "up") == "2" and len(got) == 1  # nothing was sent
    sc.run(runner.flush())
    assert got[1] == [3] and r.hget(sc.keys.stats, "up") == "3"


def test_decisions_are_fenced_and_capped(sc: SyncCoord, r: redis.Redis) -> None:
    tok = sc.acquire_lease("me", 0, 10**9).token
    for i in range(30):
        sc.record_decision(tok, i, {"target": i, "action": "hold"}, maxlen=10)
    assert r.hget(sc.keys.policy, "target") == "29"
    assert r.xlen(sc.keys.decisions) == 10
    with pytest.raises(FencedError):
        sc.record_decision("bogus", 31, {"target": 1})


def test_premium_users_are_served_first_from_the_waitlist(sc: SyncCoord, r: redis.Redis) -> None:
    assert sc.set_premium(["vip"]) == 1
    assert sc.set_premium(["vip"]) == 0
    sc.connect("early", 100)
    sc.connect("vip", 200)
    assert r.zrange(sc.keys.users_waiting, 0, -1) == ["vip", "early"]
    sc.register_node("", "n1", 0)
    assert sc.node_status("n1", "ready", 1000) == (Code.OK, "vip")
    assert sc.set_premium(["vip"], premium=False) == 1
    assert r.scard(sc.keys.users_premium) == 0


def test_count_active_by_class_recency_and_premium(sc: SyncCoord, r: redis.Redis) -> None:
    sc.set_premium(["p1"])
    for _ in range(5):
        sc.record_activity("busy", 1000)  # 5 events in a young session: class (2*2+0)*5 = 20
    sc.record_activity("p1", 9000)  # 1 event: class 0
    premium, grid = sc.active_by_class_recency(10_000, [2000, 5000], 40)
    assert premium == 1
    # sparse: only the two occupied classes, p1 1 s ago, busy 9 s ago
    assert grid == {0: [1, 0, 0], 20: [0, 0, 1]}


def test_premium_users_are_counted_from_their_class_ids(sc: SyncCoord, r: redis.Redis) -> None:
    """A premium user's class id is offset by 40 (set at its activity, or moved at once by
    setPremium while it is active); the tick's counts merge both tiers per class and
    count the premium ones; the hazard counts a premium connect in its class."""
    sc.record_activity("a", 1000)
    sc.record_activity("b", 1000)
    assert sc.active_by_class_recency(2000, [500], 40) == (0, {0: [0, 2]})
    assert sc.set_premium(["a"]) == 1
    assert int(r.zscore(sc.keys.users_active, "a")) == 40 * CLASS_BAND + 1000  # seen kept
    assert sc.active_by_class_recency(2000, [500], 40) == (1, {0: [0, 2]})
    sc.record_activity("a", 1900)  # 2 events: class (1*2+0)*5 = 10, premium: 50
    assert int(r.zscore(sc.keys.users_active, "a")) // CLASS_BAND == 50
    assert sc.active_by_class_recency(2000, [500], 40) == (1, {0: [0, 1], 10: [1, 0]})
    assert sc.active_by_class_recency(2000, [500], 5) == (0, {0: [0, 1]})  # 10 not asked
    sc.connect("a", 2100)
    assert r.hgetall(sc.keys.hazard) == {"c10:r0": "1", "n": "1", "since_ms": "2100"}  # not "c50"
    assert sc.set_premium(["b"]) == 1 and sc.set_premium(["b"], premium=False) == 1
    assert int(r.zscore(sc.keys.users_active, "b")) == 1000  # back in its own class
    assert sc.set_premium(["b"], premium=False) == 0  # no change, no re-score
    assert sc.active_by_class_recency(2000, [500], 40) == (0, {0: [0, 1]})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    users=st.lists(
        st.tuples(
            st.sampled_from([0, 1, 7, 8, 9, 10, 15, 39, 40, 41, 47, 48, 55, 79]),
            st.integers(-100, 14_999),  # seen at ms >= 1: scores stay in their class
        ),
        min_size=0,
        max_size=30,
    ),
    edges=st.lists(st.integers(0, 12_000), min_size=0, max_size=5).map(sorted),
    now=st.sampled_from([15_000, 1_700_000_000_123, 1_799_999_999_999]),
)
def test_count_active_matches_a_brute_force_count(
    sc: SyncCoord, r: redis.Redis, users: list[tuple[int, int]], edges: list[int], now: int
) -> None:
    """The bucket counts (with their early stops once a class's total is reached) equal
    a direct count: class c, bucket j holds users with edges[j-1] < age <= ... as the
    script's ZCOUNT ranges say; users seen after now count nowhere; class ids 40-79 are
    the premium tier of classes 0-39 (merged, and counted as premium); classes 8 and up
    are beyond the 8 asked for; the reply is sparse: a class with no member is absent.
    Real unix-ms clocks make the scores 15-digit numbers (the exclusive edges must not be
    rounded: an earlier version double-counted users within 5 ms of an edge)."""
    check_counts_against_brute_force(sc, r, users, edges, now)


def check_counts_against_brute_force(
    sc: SyncCoord, r: redis.Redis, users: list[tuple[int, int]], edges: list[int], now: int
) -> None:
    """countActive over users (class id, age ms) equals a direct count (see below)."""
    r.delete(sc.keys.users_active)
    for i, (cid, age) in enumerate(users):
        r.zadd(sc.keys.users_active, {f"u{i}": cid * CLASS_BAND + now - age})
    premium, grid = sc.active_by_class_recency(now, edges, 8)
    bounds = [0, *edges]
    want = [[0] * len(bounds) for _ in range(8)]
    want_premium = 0
    for cid, age in users:
        cls = cid % 40
        if age < 0 or cls >= 8:
            continue
        # bucket j: newest = now - bounds[j] (inclusive), oldest = now - bounds[j+1] (excl.)
        j = max(
            i
            for i in range(len(bounds))
            if bounds[i] <= age and (i == len(bounds) - 1 or age < bounds[i + 1])
        )
        want[cls][j] += 1
        want_premium += cid >= 40
    members = {cid % 40 for cid, _ in users if cid % 40 < 8}
    assert sorted(grid) == sorted(members)
    assert all(grid.get(c, [0] * len(bounds)) == want[c] for c in range(8))
    assert premium == want_premium


def test_count_active_refuses_fractional_edges(sc: SyncCoord, r: redis.Redis) -> None:
    """Review finding: a fractional edge was rounded by the exclusive bound's %.0f and
    users within a millisecond of it went uncounted; edges are integer ms."""
    r.zadd(
        sc.keys.users_active,
        {f"u{a}": 3 * CLASS_BAND + 1_700_000_000_000 - a for a in (0, 1, 2, 5)},
    )
    spec = REGISTRY["countActive"]
    keys = spec.keys_for(sc.keys)
    got = r.evalsha(r.script_load(spec.source), len(keys), *keys, 1_700_000_000_000, 8, "2.5")
    assert got == [Code.ERR_BAD_ARG]
    assert sc.active_by_class_recency(1_700_000_000_000, [3], 8) == (0, {3: [3, 1]})


@pytest.mark.parametrize("recent", [1, 12, 13, 40])
@pytest.mark.parametrize("now", [15_000, 1_700_000_000_123])
def test_count_active_reads_few_recent_users_and_counts_many(
    sc: SyncCoord, r: redis.Redis, recent: int, now: int
) -> None:
    """A class with up to 12 users seen within the oldest edge is read member by member
    (one ZRANGE), one with more is counted bucket by bucket: the same counts either way,
    on both sides of the limit, with users on every edge, seen after now, and idle long."""
    edges = [1_000, 2_000, 4_000, 8_000]
    users = [(3, (k * 997) % 8_000) for k in range(recent)]  # recent, class 3
    users += [(3, e) for e in edges[: min(recent, 4)]] + [(3, -5), (3, 9_000), (43, 7_999)]
    users += [(5, (k * 131) % 8_500) for k in range(recent)]
    check_counts_against_brute_force(sc, r, users, edges, now)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["act", "act", "act", "conn", "disc"]), st.integers(1, 90_000)),
        min_size=1,
        max_size=25,
    )
)
def test_feature_class_of_every_activity_matches_the_python_mirror(
    sc: SyncCoord, r: redis.Redis, ops: list[tuple[str, int]]
) -> None:
    """The class the activity scripts give a user (its users:active score) is what
    provisioner.policies.predictive.user_class computes from a reference model of the session:
    a session restarts when the user (re)enters the active set, the past connects and
    the last disconnect outlive it; B is the learned boot time (20 s here)."""
    for key in sc.keys.all():
        r.delete(key)
    sc.register_node("", "n1", 0)
    sc.node_status("n1", "ready", 20_000)  # B = 20 s; n1 serves every connect
    boot_s = 20.0
    t = 30_000
    active = holds = False
    count = first = connects = 0
    last_disc: int | None = None
    for op, dt in ops:
        t += dt
        if op == "act":
            sc.record_activity("u", t)
            if holds:
                continue
            if not active:
                active, count, first = True, 0, t
            count += 1
            want = user_class(count, (t - first) / 1000, connects, None if last_disc is None
                              else (t - last_disc) / 1000, boot_s)  # fmt: skip
            score = r.zscore(sc.keys.users_active, "u")
            assert score is not None and int(score) // CLASS_BAND == want, (op, t)
        elif op == "conn" and not holds:
            assert sc.connect("u", t)[0] == Code.HIT
            connects += 1
            active, holds = False, True
        elif op == "disc" and holds:
            assert sc.disconnect("u", t)[0] == Code.OK
            holds, last_disc = False, t


def test_observe_tick_sends_the_hazard_counters_only_when_they_changed(
    sc: SyncCoord, r: redis.Redis, redis_url: str, pool: str
) -> None:
    token = sc.acquire_lease("me", 1_000, 60_000).token
    sc.record_activity("u1", 1_000)
    sc.connect("u1", 2_000)  # class 0, first bucket
    first = sc.observe_tick("me", token, 3_000, 60_000, 30.0, 40, (0.5,))
    assert first.hazard == {"c0:r0": 1, "n": 1, "since_ms": 2_000}
    again = sc.observe_tick("me", token, 4_000, 60_000, 30.0, 40, (0.5,))
    assert again.hazard is first.hazard  # not sent: the copy held is handed back
    sc.connect("cold", 5_000)
    third = sc.observe_tick("me", token, 6_000, 60_000, 30.0, 40, (0.5,))
    assert third.hazard == {"c0:r0": 1, "bg": 1, "n": 2, "since_ms": 2_000}
    # another coordinator (a new leader) holds no copy: it gets the hash
    other = SyncCoord(redis_url, pool)
    try:
        assert other.observe_tick("me", token, 7_000, 60_000, 30.0, 40, (0.5,)).hazard == {
            "c0:r0": 1, "bg": 1, "n": 2, "since_ms": 2_000,
        }  # fmt: skip
    finally:
        other.close()
    # the hash deleted (an operator's reset) and counted up to the same n again: the copy
    # was keyed by n alone and stayed {"c0:r0": 1, "bg": 1}; now since_ms tells them apart
    r.delete(sc.keys.hazard)
    sc.connect("x1", 8_000)
    sc.connect("x2", 8_001)
    fourth = sc.observe_tick("me", token, 9_000, 60_000, 30.0, 40, (0.5,))
    assert fourth.hazard == {"bg": 2, "n": 2, "since_ms": 8_000}


def test_observe_tick_renews_the_lease_and_reads_the_pool(sc: SyncCoord, r: redis.Redis) -> None:
    sc.register_node("", "n1", 0)
    sc.node_status("n1", "ready", 20_000)  # B = 20 s learned
    sc.register_node("i1", "n2", 20_000)  # booting
    sc.record_activity("u1", 21_500)
    assert sc.connect("u2", 21_600)[0] == Code.HIT  # gets n1
    token = sc.acquire_lease("me", 21_000, 5000).token
    view = sc.observe_tick("me", token, 22_000, 5000, 30.0, 8, (0.125, 0.25))
    assert view.expires_ms == 27_000
    assert r.hget(sc.keys.leader, "expires_ms") == "27000"
    s = view.snapshot
    assert (s.booting, s.ready, s.allocated, s.active, s.waiting) == (1, 0, 1, 1, 0)
    assert s.stats["hits"] == 1 and s.boot.mean_s == pytest.approx(20.0)
    # edges at B/8 = 2500 and B/4 = 5000 ms; u1 was seen 500 ms ago, has 1 event: class 0
    assert view.active == {0: [1, 0, 0]}
    assert view.premium_active == 0
    plain = sc.observe_tick("me", token, 22_100, 5000, 30.0)
    assert plain.active == {} and plain.hazard == {} and plain.snapshot == s
    with pytest.raises(FencedError):
        sc.observe_tick("me", "not-the-token", 22_200, 5000, 30.0)
    with pytest.raises(FencedError):  # lapsed: must acquire again
        sc.observe_tick("me", token, 99_000, 5000, 30.0)
    for bad in ({"default_boot_s": float("nan")}, {"default_boot_s": 0.0},
                {"n_classes": 8, "edges_b": (0.5, 0.25)}):  # fmt: skip
        args = {"default_boot_s": 30.0, **bad}
        with pytest.raises(BadArgumentError):
            sc.observe_tick("me", token, 22_300, 5000, **args)
    assert r.hget(sc.keys.leader, "expires_ms") == "27100"  # refused calls wrote nothing


def test_apply_decision_reaps_creates_and_records_in_one_step(
    sc: SyncCoord, r: redis.Redis
) -> None:
    token = sc.acquire_lease("me", 0, 10**9).token
    for i in range(3):
        ready_node(sc, f"r{i}", 1000 + i)  # idle since 1001..1003
    sc.register_node("", "stuck", 0)  # booting since 0
    res = sc.apply_decision(
        token, 100_000, keep_alive_ms=10_000, reap_floor=1, boot_timeout_ms=50_000,
        target_spare=4, max_creates=50, fields={"policy": "t", "target": 4},
    )  # fmt: skip
    assert res.stuck == ["stuck"]
    assert res.idle == ["r0", "r1"]  # oldest idle first, down to the floor of 1
    assert res.spare == 1 and len(res.intents) == 3  # 4 - 1
    assert r.zcard(sc.keys.intents) == 3
    assert set(r.zrange(sc.keys.intents, 0, -1)) == set(res.intents)
    assert set(r.zrange(sc.keys.nodes_terminating, 0, -1)) == {"stuck", "r0", "r1"}
    pol = r.hgetall(sc.keys.policy)
    assert (pol["created"], pol["spare"], pol["reaped_idle"], pol["reaped_stuck"]) == (
        "3", "1", "2", "1")  # fmt: skip
    assert pol["now_ms"] == "100000" and pol["target"] == "4"
    # paused creates: nothing recorded; a waiting user adds to the need otherwise
    assert sc.connect("u", 100_400)[0] == Code.HIT  # takes r2
    assert sc.connect("w", 100_500)[0] == Code.MISS
    paused = sc.apply_decision(
        token, 101_000, keep_alive_ms=10_000, reap_floor=1, boot_timeout_ms=50_000,
        target_spare=4, max_creates=0, fields={},
    )  # fmt: skip
    assert paused.intents == [] and paused.idle == []  # nobody is reaped while users wait
    capped = sc.apply_decision(
        token, 102_000, keep_alive_ms=10_000, reap_floor=1, boot_timeout_ms=50_000,
        target_spare=4, max_creates=1, fields={},
    )  # fmt: skip
    assert len(capped.intents) == 1 and capped.spare == 3  # need 4 + 1 waiting - 3
    assert r.xlen(sc.keys.decisions) == 3
    with pytest.raises(FencedError):
        sc.apply_decision(
            "bogus", 103_000, keep_alive_ms=0, reap_floor=0, boot_timeout_ms=1,
            target_spare=9, max_creates=9, fields={},
        )  # fmt: skip
    assert r.zcard(sc.keys.intents) == 4 and r.xlen(sc.keys.decisions) == 3


def test_an_oversized_record_field_is_malformed_not_a_poisoned_floor(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Break-test finding: Lua's tonumber(s, 36) saturates at 2^64 instead of failing, so
    a record with an oversized seq made its user STALE forever and, once forgotten,
    raised the floor of forgotten ids above every real message id (every new user STALE).
    A field beyond 2^53 is now malformed: the record is rewritten as new, and it gives
    the floor nothing."""
    t = 1_700_000_000_000
    r.hset(sc.keys.user_info, "junk", "zzzzzzzzzzzzzzzzzzzz|1|1|1|1|0")
    r.hset(sc.keys.user_info, "big", "zzzzzzzzzzz|1|1|1|1|0")
    assert sc.record_activity("big", t, 5_000_000_001) == Code.OK  # not STALE
    rec = sc.user_record("big")
    assert rec is not None and rec.seq == 5_000_000_001 and rec.activity_count == 1
    sc.forget_users(t + 10**9, 1000, 100)
    assert int(r.get(sc.keys.user_seq_floor) or -1) < 5_000_000_001
    assert sc.record_activity("fresh", t + 10**9, 5_000_000_002) == Code.OK
    assert sc.connect("fresh2", t + 10**9, 5_000_000_003)[0] in (Code.HIT, Code.MISS)


def test_a_corrupt_boot_mean_neither_wedges_the_tick_nor_the_snapshot(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Break-test finding: mean_ms 'nan' made observeTick fail after renewing the lease
    (the leader held it and never scaled); 'abc', or a counter 'x', made the snapshot's
    parse raise (and `status` with it). A corrupt mean is no mean: B is the default."""
    lease = sc.acquire_lease("me", 1_000, 60_000)
    for bad in ("nan", "abc", "-5", "inf"):
        r.hset(sc.keys.boot, mapping={"n": "3", "mean_ms": bad})
        r.hset(sc.keys.stats, "connects", "x")
        view = sc.observe_tick("me", lease.token, 2_000, 60_000, 12.5, 40, (0.5, 1.0))
        assert not view.snapshot.boot.mean_s and view.snapshot.stats["connects"] == 0
        assert not sc.snapshot().boot.mean_s


def test_count_active_stays_inside_each_class_for_early_clocks(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Break-test finding: with now earlier than an edge, the score bounds reached into
    the class before (a class-5 user counted in class 6); activity at a negative time is
    refused (its score fell below its class)."""
    r.zadd(sc.keys.users_active, {"x": 59_999_999_999_995, "y": 60_000_000_000_100})
    edges = [3750, 7500, 15000, 30000, 60000, 120000]
    _, grid = sc.active_by_class_recency(1000, edges, 40)
    assert grid[6] == [1, 0, 0, 0, 0, 0, 0]  # y, seen 900 ms ago; x is not class 6's
    assert grid.get(5, [0] * 7) == [0] * 7  # x is class 5's, seen in its future
    with pytest.raises(BadArgumentError):
        sc.record_activity("neg", -5)
    assert r.zscore(sc.keys.users_active, "neg") is None


@pytest.mark.parametrize(
    "stored",
    ["5|a|a|2|3|0", "+5|a|a|2|3|0", " 5|a|a|2|3|0", "5|a|a|1_0|3|0", "5|a|a|2|3|0\n",
     "5|a|a|-2|3|0", "5|a|a|\u0663|3|0", "5|a|a|2|3", "5|A|a|2|3|0", "zzzzzzzzzzz|a|a|2|3|0"],
)  # fmt: skip
def test_python_reads_a_record_as_the_scripts_do(
    sc: SyncCoord, r: redis.Redis, stored: str
) -> None:
    """Break-test finding: UserRecord.decode accepted records the scripts reset ('+5',
    ' 5', '1_0', a newline, Unicode digits, a negative count, beyond 2^53). Now: decode
    gives None exactly when an activity rewrites the record as new."""
    r.hset(sc.keys.user_info, "u", stored)
    before = UserRecord.decode(stored)
    sc.record_activity("u", 1_000_000)
    after = sc.user_record("u")
    assert after is not None
    # the activity starts a session either way; only a record read as valid keeps the
    # user's life-long connects
    assert after.connects == (0 if before is None else before.connects)


def test_activity_classes_use_the_callers_default_boot_time(redis_url: str, pool: str) -> None:
    """Doubt of an earlier stop: before the first boot is observed the activity scripts
    classed users with a fixed 30 s B while the leader planned with its own default. A
    session 8 s old is "long" (age >= 1 B) for a B of 5 s, not for 30 s."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = PoolKeys(pool)
    classes = []
    for default_s, user in ((5.0, "short-b"), (30.0, "long-b")):
        sc = SyncCoord(redis_url, pool)
        sc.coord = Coordinator(sc.coord.client, pool, sc.coord.channels, default_boot_s=default_s)
        try:
            sc.record_activity(user, 1_000)
            sc.record_activities([(user, 9_000, 0)])  # 2 events, session 8 s old
            classes.append(int(client.zscore(keys.users_active, user)) // CLASS_BAND)
        finally:
            sc.close()
    assert classes == [(1 * 2 + 1) * 5, (1 * 2 + 0) * 5]
    one, many = REGISTRY["recordActivity"], REGISTRY["recordActivities"]
    k1, km = one.keys_for(keys), many.keys_for(keys)
    sha1, sham = client.script_load(one.source), client.script_load(many.source)
    # recordActivity: absent, the old 30 s
    assert client.evalsha(sha1, len(k1), *k1, "x", 1_000, 0) == [Code.OK, 1]
    for bad in ("0", "999", "86400001", "-5000", "1.5", "0x1000", "5000 ", "soon"):
        got = client.evalsha(sha1, len(k1), *k1, "y", 1_000, 0, bad)
        assert got == [Code.ERR_BAD_ARG, 0], bad
        got = client.evalsha(sham, len(km), *km, bad, "y", 1_000, 0)
        assert got == [Code.ERR_BAD_ARG], bad
    assert client.evalsha(sha1, len(k1), *k1, "y", 1_000, 0, 5000, 1) == [Code.ERR_BAD_ARG, 0]
    # recordActivities: the default first; a truncated run (a numeric user id last, which
    # a trailing optional default could not tell apart) is refused, not applied
    assert client.evalsha(sham, len(km), *km, 5000, "y", 1_000, 0, "42") == [Code.ERR_BAD_ARG]
    assert client.evalsha(sham, len(km), *km, "y", 1_000, 0) == [Code.ERR_BAD_ARG]
    assert client.evalsha(sham, len(km), *km, 5000) == [Code.ERR_BAD_ARG]
    assert client.zscore(keys.users_active, "y") is None
    assert client.evalsha(sham, len(km), *km, 5000, "y", 1_000, 0) == [Code.OK, Code.OK]
    client.close()


#: Scripts that take a time, called with it (the other arguments valid).
TIME_CALLS: dict[str, Any] = {
    "connectUser": lambda sc, now: sc.connect("u1", now),
    "disconnectUser": lambda sc, now: sc.disconnect("u1", now),
    "registerNode": lambda sc, now: sc.register_node("i1", "n1", now),
    "recordNodeStatus": lambda sc, now: sc.node_status("n1", "ready", now),
    "recordActivity": lambda sc, now: sc.record_activity("u1", now),
    "acquireLease": lambda sc, now: sc.acquire_lease("L", now, 1000),
    "heartbeat": lambda sc, now: sc.heartbeat("r1", now),
    "expireUsers": lambda sc, now: sc.expire_users(now, 1, min_interval_ms=0),
    "forgetUsers": lambda sc, now: sc.forget_users(now, 1),
    "pruneNodes": lambda sc, now: sc.prune_nodes(now, 1),
    "emitMarker": lambda sc, now: sc.emit_marker(now, 0),
    "countActive": lambda sc, now: sc.active_by_class_recency(now, [1000.0], 2),
}


@pytest.mark.parametrize("script", sorted(TIME_CALLS))
def test_a_time_outside_0_to_1e13_ms_is_refused_before_any_write(
    sc: SyncCoord, r: redis.Redis, script: str
) -> None:
    """Scores put a band or class id above a time's 13 digits: a connect at -5 ms waited
    in the premium band's range, one at 1e13 in a band that does not exist. Every script
    that takes a time refuses one outside [0, 1e13) and writes nothing."""
    sc.connect("u0", 1_000)  # some state to keep
    before = {k: r.dump(k) for k in r.keys("*")}
    for now in (-5, 10**13, -(2**40)):
        try:
            got = TIME_CALLS[script](sc, now)
        except BadArgumentError:
            continue
        assert got in (Code.ERR_BAD_ARG, [Code.ERR_BAD_ARG]), (script, now, got)
    assert {k: r.dump(k) for k in r.keys("*")} == before
    TIME_CALLS[script](sc, 10**13 - 1)  # the last ms of the range is taken


def test_integers_beyond_2_53_are_refused_before_any_write(redis_url: str, pool: str) -> None:
    """A message id or time beyond 2^53 (no longer exact as a double) is ERR_BAD_ARG and
    writes nothing; encoded in base 36 into a user record it made the script fail half way
    through a run (2^64 + 28672) or wrote a record that no longer parses (2^61 + 512)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = PoolKeys(pool)
    specs = {n: REGISTRY[n] for n in ("recordActivity", "recordActivities", "connectUser",
                                      "disconnectUser")}  # fmt: skip
    sha = {n: client.script_load(s.source) for n, s in specs.items()}

    def run(name: str, *args: Any) -> Any:
        ks = specs[name].keys_for(keys)
        return client.evalsha(sha[name], len(ks), *ks, *args)

    for huge in (str(2**64 + 28672), str(2**61 + 512), str(-(2**60)), "9007199254740994"):
        assert run("recordActivity", "u1", 1_000, huge)[0] == Code.ERR_BAD_ARG, huge
        assert run("recordActivity", "u1", huge, 0)[0] == Code.ERR_BAD_ARG, huge
        # a run whose second event carries it: the first is not applied either
        got = run("recordActivities", 30_000, "u0", 1_000, 7, "u1", 2_000, huge)
        assert got == [Code.ERR_BAD_ARG], huge
        for name in ("connectUser", "disconnectUser"):
            got = run(name, "u1", 1_000, huge, "assigned", 30_000)
            assert got[0] == Code.ERR_BAD_ARG, (name, huge)
    assert client.hlen(keys.user_info) == 0 and client.zcard(keys.users_active) == 0
    # 2^53 itself is exact and still taken
    assert run("recordActivity", "u1", 1_000, str(2**53))[0] == Code.OK
    assert client.hget(keys.user_info, "u1").startswith("2gosa7pa2gw|")
    client.close()


def test_coordinator_clamps_its_default_boot_time_for_the_activity_scripts(
    redis_url: str, pool: str
) -> None:
    """A default boot time outside 1 s .. 1 day (valid for the leader) must not make every
    activity call a refusal."""
    for default_s in (0.2, 200_000.0):
        sc = SyncCoord(redis_url, pool)
        sc.coord = Coordinator(sc.coord.client, pool, sc.coord.channels, default_boot_s=default_s)
        try:
            assert sc.record_activities([("u", 1_000, 0)]) == [Code.OK]
        finally:
            sc.close()


@pytest.mark.parametrize("seed", range(6))
def test_expire_users_equals_a_brute_force_over_every_class_id(
    sc: SyncCoord, r: redis.Redis, seed: int
) -> None:
    """expireUsers walks only the occupied class ids (one ZRANGE finds the next); it must
    expire exactly the users of ids 0-79 last seen before now - ttl, at most max_count,
    lowest id first, and stop on a score beyond the class ids (an 'inf' looped before the
    guard)."""
    import random

    rng = random.Random(seed)
    now, ttl = 1_700_000_000_000, 600_000
    members = {}
    for i in range(rng.randint(0, 300)):
        cid = rng.choice([0, 1, 7, 39, 40, 41, 79, rng.randrange(80)])
        members[f"u{i}"] = cid * CLASS_BAND + now - rng.randint(0, 2 * ttl)
    if members:
        r.zadd(sc.keys.users_active, members)
    r.zadd(sc.keys.users_active, {"odd": "inf", "big": 95 * CLASS_BAND + 5})
    max_count = rng.choice([5, 50, 10_000])
    old = sorted((s, u) for u, s in members.items() if s % CLASS_BAND < now - ttl)
    by_id: dict[int, list[str]] = {}
    for s, u in old:
        by_id.setdefault(s // CLASS_BAND, []).append(u)
    want = [u for cid in sorted(by_id) for u in by_id[cid]][:max_count]
    assert sc.expire_users(now, ttl, max_count=max_count, min_interval_ms=0) == len(want)
    left = set(r.zrange(sc.keys.users_active, 0, -1))
    assert left == (set(members) - set(want)) | {"odd", "big"}


def test_activity_tier_of_a_score_outside_the_class_ids_is_asked_of_the_set(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Break-test finding: the tier was read from any score's id, so a hand-written 1e20
    made a standard user premium for good; a time past the ms band made a score of id 40.
    Now such a score falls back to the premium set, and now_ms >= 1e13 is refused."""
    r.zadd(sc.keys.users_active, {"q": 10**20, "p": -5})
    assert sc.set_premium(["p"]) >= 0
    sc.record_activity("q", 1_000)
    sc.record_activity("p", 1_000)
    assert int(r.zscore(sc.keys.users_active, "q")) // CLASS_BAND < 40
    assert int(r.zscore(sc.keys.users_active, "p")) // CLASS_BAND >= 40
    with pytest.raises(BadArgumentError):
        sc.record_activity("u", 400_000_000_000_000)
    with pytest.raises(BadArgumentError):
        sc.record_activities([("u", 10**13, 0)])
    assert r.zscore(sc.keys.users_active, "u") is None
