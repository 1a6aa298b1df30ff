"""Issue 5: batched ingest, the packed user record and its history TTL, and the
``bench throughput`` command.

Batching must not change what a message does: the same messages applied in one
pipeline or one by one give the same state, a second replica's copy of a batch changes
nothing, markers inside a batch name the messages after them, and NOSCRIPT inside a
batch is recovered.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from provisioner.bench.throughput import (
    LimitResult,
    RateRow,
    ScaleRow,
    ThroughputResult,
    evaluate_targets,
    format_targets,
)
from provisioner.core.clock import VirtualClock
from provisioner.core.coordinator import UserRecord
from provisioner.core.errors import BadArgumentError, Code
from provisioner.core.keys import Channels, PoolKeys
from provisioner.core.sequencer import POSITIONS_PER_MARKER, marker_tag
from provisioner.core.worker import Worker, WorkerConfig
from tests.helpers import SyncCoord
from tests.test_worker_inprocess import eventually, stack

SECRET = "s" * 32  # the pools' marker secret here (a replica takes no marker unchecked)


def _marker(seq: int, ms: int) -> str:
    """A marker as emitMarker publishes it, tagged with :data:`SECRET`."""
    return f"{seq}:{ms}:{marker_tag(SECRET, f'{seq}:{ms}')}"


def _worker(redis_url: str, pool: str) -> Worker:
    """A worker not running its loops: messages go in through handle/handle_batch, on a
    clock that stands still (so two pools can be compared field by field); its pool's
    marker secret is :data:`SECRET`."""
    cfg = WorkerConfig(redis_url=redis_url, pool=pool, channel_prefix=pool + ".")
    with redis.Redis.from_url(redis_url) as r:
        r.set(PoolKeys(pool).seq_secret, SECRET)
    return Worker(cfg, clock=VirtualClock(1_000_000))


def _feed(ch: Channels, seq: int) -> list[tuple[str, str | bytes]]:
    """One replica's view of a stretch of the subscription: a marker, then a user that
    connects, disconnects and connects again, activity, bad input, node statuses."""

    def user(u: str) -> str:
        return json.dumps({"user_id": u})

    return [
        (ch.marker, _marker(seq, 1000)),
        (ch.node_status, json.dumps({"node_id": "n1", "status": "booting"})),
        (ch.activity, json.dumps({"user_id": "alice", "timestamp": 1})),
        (ch.activity, json.dumps({"user_id": "bob", "timestamp": 1})),
        (ch.connect, user("alice")),
        (ch.disconnect, user("alice")),
        (ch.connect, user("alice")),
        (ch.activity, b"\xff not json"),
        (ch.marker, _marker(seq + 1, 1100)),
        (ch.activity, json.dumps({"user_id": "bob", "timestamp": 2})),
        (ch.connect, user("bob")),
        (ch.disconnect, user("carol")),
    ]


async def _state(client: aioredis.Redis, keys: PoolKeys) -> dict[str, Any]:
    pipe = client.pipeline(transaction=True)
    for h in (keys.user_node, keys.node_user, keys.stats, keys.bad, keys.user_info):
        pipe.hgetall(h)
    for z in (keys.users_waiting, keys.users_active, keys.nodes_ready, keys.nodes_allocated):
        pipe.zrange(z, 0, -1, withscores=True)
    names = ["user_node", "node_user", "stats", "bad", "records", "waiting", "active", "ready",
             "allocated"]  # fmt: skip
    return dict(zip(names, await pipe.execute(), strict=True))


async def _prepare(w: Worker) -> None:
    await w.coord.runner.load_all()
    now = 500
    for node in ("r1", "r2"):
        await w.coord.register_node("", node, now)
        await w.coord.node_status(node, "ready", now)


def test_a_batch_does_what_one_by_one_does_and_a_second_copy_changes_nothing(
    redis_url: str, pool: str
) -> None:
    async def go() -> None:
        one, batched, again = (_worker(redis_url, p) for p in (pool + "a", pool + "b", pool + "b"))
        for w in (one, batched):
            await _prepare(w)
        feed_a = _feed(one.channels, 7)
        feed_b = _feed(batched.channels, 7)
        codes_one = [await one.handle(c, d) for c, d in feed_a]
        codes_batch = await batched.handle_batch(feed_b)
        assert codes_one == codes_batch
        assert codes_batch[4] == Code.HIT and codes_batch[5] == Code.OK  # connect, disconnect
        assert codes_batch[7] is None  # bad input: counted, no code
        sa = await _state(one.client, one.coord.keys)
        sb = await _state(batched.client, batched.coord.keys)
        assert sa == sb
        assert sb["stats"]["connects"] == "3" and sb["stats"]["activity"] == "3"
        assert sb["bad"]["not_json"] == "1"
        # a second replica sees the same stretch: every message is a no-op
        codes_again = await again.handle_batch(_feed(again.channels, 7))
        assert all(c in (None, Code.STALE) for c in codes_again[:-1])
        assert codes_again[-1] == Code.UNKNOWN_USER  # not counted twice (the state says so)
        assert await _state(again.client, again.coord.keys) == sb
        for w in (one, batched, again):
            await w.client.aclose()

    asyncio.run(go())


def test_markers_inside_a_batch_name_the_messages_after_them(redis_url: str, pool: str) -> None:
    async def go() -> None:
        w = _worker(redis_url, pool)
        await w.coord.runner.load_all()
        ch = w.channels
        act = json.dumps({"user_id": "dora", "timestamp": 1})
        await w.handle_batch(
            [(ch.marker, _marker(3, 1)), (ch.activity, act), (ch.activity, act),
             (ch.marker, _marker(4, 2)), (ch.activity, act)]
        )  # fmt: skip
        rec = await w.coord.user_record("dora")
        assert rec is not None and rec.activity_count == 3
        assert rec.seq == 4 * POSITIONS_PER_MARKER + 1
        await w.client.aclose()

    asyncio.run(go())


def test_batch_recovers_from_noscript(redis_url: str, pool: str, r: redis.Redis) -> None:
    async def go() -> None:
        w = _worker(redis_url, pool)
        await w.coord.runner.load_all()
        ch = w.channels
        r.script_flush()
        act = [(ch.activity, json.dumps({"user_id": f"u{i}", "timestamp": 1})) for i in range(5)]
        codes = await w.handle_batch([(ch.marker, _marker(9, 1)), *act])
        assert codes[1:] == [Code.OK] * 5
        assert r.hget(w.coord.keys.stats, "activity") == "5"
        await w.client.aclose()

    asyncio.run(go())


def test_live_subscription_is_applied_in_batches_each_event_once(redis_url: str, pool: str) -> None:
    """A burst published in one pipeline reaches the replica faster than one round trip per
    message: it is applied in batches, every event once."""

    async def go() -> None:
        async with stack(redis_url, pool) as st:
            pipe = st.r.pipeline(transaction=False)
            n = 3000
            for i in range(n):
                pipe.publish(
                    st.channels.activity, json.dumps({"user_id": f"u{i % 50}", "timestamp": 1})
                )
            await pipe.execute()

            async def done() -> bool:
                return int(await st.r.hget(st.keys.stats, "activity") or 0) >= n

            await eventually(done, 20, "the burst applied")
            await asyncio.sleep(0.2)
            assert int(await st.r.hget(st.keys.stats, "activity") or 0) == n
            reg = st.worker.metrics.registry
            batches = reg.get_sample_value("provisioner_ingest_batch_messages_count") or 0.0
            msgs = reg.get_sample_value("provisioner_ingest_batch_messages_sum") or 0.0
            assert msgs >= n and batches < msgs / 2, (batches, msgs)
            counts = [
                (await st.worker.coord.user_record(f"u{k}")) for k in range(50)
            ]  # each user's 60 events, counted once each
            assert all(c is not None and c.activity_count == n // 50 for c in counts)

    asyncio.run(go())


# -- the packed record and the history TTL ---------------------------------------------


def test_record_round_trips_large_ids_and_negative_fields(sc: SyncCoord, r: redis.Redis) -> None:
    big = (2**53 // POSITIONS_PER_MARKER - 1) * POSITIONS_PER_MARKER + 999_999
    # a negative clock is refused by every script (a score would leave its band)
    with pytest.raises(BadArgumentError):
        sc.connect("u", -5, big)
    assert sc.user_record("u") is None
    assert sc.connect("u", 5, big)[0] == Code.MISS
    assert sc.user_record("u") == UserRecord(big, 5, 5, 0, 1, 0)
    assert sc.record_activity("u", 10, big) == Code.STALE
    assert sc.record_activity("u", 10, big - 1) == Code.STALE
    # negative fields (only a hand edit writes them now) still decode, in Python and in
    # Lua: the activity keeps the record's connects and last disconnect
    r.hset(sc.keys.user_info, "h", "1|-5|-5|0|1|-7")
    assert sc.user_record("h") == UserRecord(1, -5, -5, 0, 1, -7)
    assert sc.record_activity("h", 10, 2) == Code.OK
    assert sc.user_record("h") == UserRecord(2, 10, 10, 1, 1, -7)


def test_history_outlives_the_active_set_and_is_forgotten_after_its_ttl(
    sc: SyncCoord, r: redis.Redis
) -> None:
    k = sc.keys
    sc.record_activity("quiet", 1_000, 1_000_001)
    sc.record_activity("quiet", 2_000, 1_000_002)
    sc.record_activity("holder", 1_000, 1_000_003)
    sc.register_node("", "n1", 0)
    sc.node_status("n1", "ready", 0)
    assert sc.connect("holder", 1_500, 1_000_004)[0] == Code.HIT
    sc.connect("waiter", 1_600, 1_000_005)  # no node left: waits
    assert sc.expire_users(700_000, 600_000, min_interval_ms=0) == 1
    assert r.zscore(k.users_active, "quiet") is None
    rec = sc.user_record("quiet")
    assert rec is not None and rec.activity_count == 2 and rec.last_ms == 2_000
    # before the history TTL: kept; after it: forgotten, but never a user who holds a
    # node or waits
    assert sc.forget_users(50_000, 60_000) == (0, True)
    forgotten, done = sc.forget_users(100_000, 60_000)
    assert (forgotten, done) == (1, True)
    assert sc.user_record("quiet") is None
    assert sc.user_record("holder") is not None and sc.user_record("waiter") is not None
    assert r.get(k.user_seq_floor) == "1000002"
    # a very late replay of the forgotten user's message cannot resurrect it
    assert sc.record_activity("quiet", 200_000, 1_000_002) == Code.STALE
    assert sc.user_record("quiet") is None
    # a new message makes it a new user
    assert sc.record_activity("quiet", 200_000, 2_000_001) == Code.OK
    rec = sc.user_record("quiet")
    assert rec is not None and rec.activity_count == 1
    assert sc.invariants() == []


def test_a_returning_user_keeps_its_history_within_the_ttl(sc: SyncCoord, r: redis.Redis) -> None:
    for i in range(4):
        sc.record_activity("back", 1_000 + i, 1_000_001 + i)
    assert sc.connect("back", 2_000, 1_000_010)[0] == Code.MISS
    assert sc.disconnect("back", 3_000, 1_000_011)[0] == Code.OK
    sc.record_activity("back", 800_000, 2_000_001)
    # a new session (count 1, young) of a user who connected once: class rs = 1
    score = r.zscore(sc.keys.users_active, "back")
    assert score is not None and int(score) // 10**13 == 1
    rec = sc.user_record("back")
    assert rec is not None and (rec.activity_count, rec.connects, rec.first_ms) == (1, 1, 800_000)
    # an expiry from the active set ends the session too; the history stays
    assert sc.expire_users(1_500_000, 600_000, min_interval_ms=0) == 1
    sc.record_activity("back", 1_600_000, 2_000_002)
    rec = sc.user_record("back")
    assert rec is not None and (rec.activity_count, rec.connects) == (1, 1)


def test_forget_walks_every_record_in_slices(sc: SyncCoord, r: redis.Redis) -> None:
    calls = [("recordActivity", [f"user-{i}", 1_000, 0]) for i in range(3000)]
    sc.runner_call_many(calls)
    assert sc.forget_users(10**9, 1_000, count=5000) == (0, True)  # all still active
    assert sc.expire_users(10**9, 600_000, max_count=5000, min_interval_ms=0) == 3000
    seen_done = False
    total = 0
    for _ in range(100):
        n, done = sc.forget_users(10**9, 1_000, count=500)
        total += n
        if done:
            seen_done = True
            break
    assert seen_done and total == 3000
    assert r.hlen(sc.keys.user_info) == 0


# -- the benchmark --------------------------------------------------------------------


@pytest.mark.slow
def test_bench_throughput_quick_gives_sane_figures(redis_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "provisioner", "bench", "throughput", "--quick", "--json",
         "--redis-url", redis_url, "--replicas", "1,2"],
        capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    res = json.loads(out.stdout)
    lim = res["limit"]
    assert lim["redis_py"] > 0 and lim["limit"] >= lim["redis_py"]
    assert res["machine"]["nproc"] >= 1 and res["machine"]["redis_version"]
    rows = res["rates"]
    assert [(r["replicas"], r["rate"]) for r in rows] == [(1, 500), (1, 2000), (2, 500), (2, 2000)]
    for row in rows:
        # the flood published rate x duration (2 s in --quick), taking at least the duration
        assert row["published"] == row["rate"] * 2 and row["publish_s"] >= 1.99
        assert row["applied"] + row["lost"] == row["published"]
        assert row["ratio"] == pytest.approx(row["applied_per_s"] / lim["limit"], abs=1e-3)
        assert len(row["cpu_pct"]) == row["replicas"] and all(c > 0 for c in row["cpu_pct"])
        assert row["connects"] > 0 and 0 < row["assigned"] <= row["connects"]
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    # at these low rates nothing may be lost
    assert all(row["lost"] == 0 for row in rows)
    for s in res["scale"]:
        assert s["tick_ms"] > 0
        assert 100 < s["bytes_per_user"] < 2000
        assert s["known_left"] == s["users"] and s["left_after_history_ttl"] == 0
    assert set(res["targets"]) >= {"one_replica_ratio", "two_replicas_no_loss", "tick_le_2x"}
    # new-user finding: the targets --quick never measures read null, not false
    t = res["targets"]
    assert t["p99_ms_at_10k"] is None and t["p99_le_5ms_at_10k"] is None
    if 0.25 * lim["limit"] > 2000:
        assert t["one_replica_25pct"] is None
    assert t["two_replicas_no_loss"] is True and t["memory_le_300"] is not None


def _rate(replicas: int, rate: int, lost: int = 0, p99: float | None = 2.0) -> RateRow:
    """A (replicas, rate) step that applied ``rate`` events/s with no drain."""
    return RateRow(
        replicas=replicas, rate=rate, published=rate * 2, publish_s=2.0, applied=rate * 2 - lost,
        lost=lost, drain_s=0.0, applied_per_s=float(rate), ratio=0.0, cpu_pct=[10.0] * replicas,
        cpu_us_per_event=20.0, redis_cpu_pct=5.0, connects=40, assigned=40, p50_ms=1.0,
        p99_ms=p99, max_ms=p99,
    )  # fmt: skip


def _scale(users: int, tick_ms: float) -> ScaleRow:
    return ScaleRow(
        users=users, seed_s=0.1, tick_ms=tick_ms, tick_p90_ms=tick_ms, bytes_per_user=260.0,
        key_bytes_per_user={}, known_bytes_per_user=112.0, known_left=users,
        left_after_history_ttl=0,
    )  # fmt: skip


def test_a_target_the_run_did_not_cover_reads_not_measured_not_missed() -> None:
    """New-user finding: ``bench throughput --quick`` (rates 500 and 2,000/s) ended with
    ``"one_replica_25pct": false``, ``"p99_ms_at_10k": {}``, ``"p99_le_5ms_at_10k":
    false``: targets it never measured, shown as missed."""
    limit = LimitResult(redis_py=40_000.0, redis_benchmark=None, limit=40_000.0)
    quick = ThroughputResult(
        machine={}, limit=limit,
        rates=[_rate(n, rate) for n in (1, 2) for rate in (500, 2000)],
        scale=[_scale(1_000, 1.0), _scale(10_000, 1.1)],
    )  # fmt: skip
    t = evaluate_targets(quick)
    assert t["one_replica_zero_loss_events_per_s"] == 2000.0 and t["one_replica_ratio"] == 0.05
    assert t["one_replica_25pct"] is None  # no rate of a quarter of the limit was offered
    assert t["p99_ms_at_10k"] is None and t["p99_le_5ms_at_10k"] is None
    assert t["two_replicas_lost"] == 0 and t["two_replicas_no_loss"] is True
    assert t["tick_le_2x"] is True and t["memory_le_300"] is True
    text = format_targets(t).splitlines()
    assert text[0] == "targets:"
    assert "  one_replica_25pct: not measured" in text
    assert "  p99_le_5ms_at_10k: not measured" in text and "  tick_le_2x: yes" in text
    assert "false" not in json.dumps(t)
    # measured and missed stays a miss: one replica lost events at 10,000 and 20,000/s,
    # and no connect of the 10,000/s step got an answer
    full = ThroughputResult(
        machine={}, limit=limit,
        rates=[_rate(1, 10_000, lost=1, p99=None), _rate(1, 20_000, lost=5)],
    )  # fmt: skip
    t = evaluate_targets(full)
    assert t["one_replica_25pct"] is False and t["p99_le_5ms_at_10k"] is False
    assert t["p99_ms_at_10k"] == {1: None}
    # nothing of two replicas or of the scale part ran
    assert t["two_replicas_lost"] is None and t["two_replicas_no_loss"] is None
    assert t["tick_le_2x"] is None and t["memory_le_300"] is None
    assert t["history_bounded"] is None and t["max_bytes_per_active_user"] is None
    assert "  two_replicas_no_loss: not measured" in format_targets(t).splitlines()


@pytest.fixture
def sc(redis_url: str, pool: str) -> Any:
    c = SyncCoord(redis_url, pool)

    def call_many(calls: list[tuple[str, list[Any]]]) -> Any:
        return c.run(c.coord.runner.call_many(calls))

    c.runner_call_many = call_many  # type: ignore[attr-defined]
    yield c
    c.close()


def test_record_activities_is_a_run_of_record_activity(redis_url: str, pool: str) -> None:
    one, run = SyncCoord(redis_url, pool + "a"), SyncCoord(redis_url, pool + "b")
    try:
        items = [
            ("ann", 1_000, 5_000_001), ("ben", 1_001, 5_000_002), ("ann", 1_002, 5_000_003),
            ("ann", 1_003, 5_000_002), ("cid", 1_004, 0), ("ben", 1_005, 5_000_005),
        ]  # fmt: skip
        codes_one = [one.record_activity(*it) for it in items]
        codes_run = run.record_activities(items)
        assert codes_one == codes_run and codes_run[3] == Code.STALE
        for attr in ("user_info", "stats"):
            assert one.run(one.client.hgetall(getattr(one.keys, attr))) == run.run(
                run.client.hgetall(getattr(run.keys, attr))
            )
        za = one.run(one.client.zrange(one.keys.users_active, 0, -1, withscores=True))
        assert za == run.run(run.client.zrange(run.keys.users_active, 0, -1, withscores=True))
        # one bad item refuses the whole run before any write
        before = run.run(run.client.hgetall(run.keys.user_info))
        with pytest.raises(BadArgumentError):
            run.record_activities([("dan", 2_000, 6_000_001), ("", 2_000, 6_000_002)])
        assert run.run(run.client.hgetall(run.keys.user_info)) == before
    finally:
        one.close()
        run.close()
