"""One worker replica in-process (asyncio) against real Redis Pub/Sub and the emulated
Node API at a fast time scale (boots of 0.5-1 s).

Messages are published on real channels with the test pool's prefix, so tests never see
each other's traffic; ``user:assigned`` is read back from the same Pub/Sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from provisioner.core.clock import WallClock
from provisioner.core.invariants import check_invariants
from provisioner.core.keys import Channels, PoolKeys
from provisioner.core.leader import LeaderConfig
from provisioner.core.worker import Worker, WorkerConfig
from provisioner.sim.mock_api import MockConfig, MockNodeApi


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, step_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(step_s)


@dataclass
class Stack:
    worker: Worker
    stop: asyncio.Event
    task: asyncio.Task[None]
    mock: MockNodeApi
    channels: Channels
    keys: PoolKeys
    r: aioredis.Redis  # test's own client (decoded)
    assigned: Any  # PubSub on user:assigned
    metrics_url: str

    async def publish(self, channel: str, data: str | bytes) -> None:
        assert await self.r.publish(channel, data) == 1, f"nobody listens on {channel}"

    async def connect(self, user: str) -> None:
        await self.publish(self.channels.connect, json.dumps({"user_id": user}))

    async def disconnect(self, user: str) -> None:
        await self.publish(self.channels.disconnect, json.dumps({"user_id": user}))

    async def next_assigned(self, user: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            m = await self.assigned.get_message(ignore_subscribe_messages=True, timeout=left)
            if m is None:
                continue
            data: dict[str, Any] = json.loads(m["data"])
            if data["user_id"] == user:
                return data
        raise AssertionError(f"no user:assigned for {user} within {timeout_s} s")

    async def no_more_assigned(self, wait_s: float = 0.3) -> list[dict[str, Any]]:
        out = []
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            m = await self.assigned.get_message(ignore_subscribe_messages=True, timeout=left)
            if m is not None:
                out.append(json.loads(m["data"]))
        return out

    async def count(self, zset: str) -> int:
        n: int = await self.r.zcard(zset)
        return n


@contextlib.asynccontextmanager
async def stack(redis_url: str, pool: str, **worker_kw: Any) -> AsyncIterator[Stack]:
    prefix = pool + "."
    mock = MockNodeApi(
        MockConfig(
            boot_min_s=0.5, boot_max_s=1.0, terminate_delay_s=0.05, seed=3, channel_prefix=prefix
        ),
        redis_url,
    )
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    channels = Channels(prefix=prefix, pool=pool)
    assigned = r.pubsub()
    await assigned.subscribe(channels.assigned)
    port = free_port()
    async with mock.running("127.0.0.1", 0) as api_url:
        cfg = WorkerConfig(
            redis_url=redis_url,
            node_api_url=api_url,
            pool=pool,
            channel_prefix=prefix,
            replica_id=f"test-{pool}",
            metrics_host="127.0.0.1",
            metrics_port=port,
            marker_interval_s=0.05,
            leader=LeaderConfig(tick_s=0.2, lease_ttl_s=2, default_boot_s=1),
            **worker_kw,
        )
        worker = Worker(cfg)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        st = Stack(
            worker,
            stop,
            task,
            mock,
            channels,
            PoolKeys(pool),
            r,
            assigned,
            f"http://127.0.0.1:{port}",
        )
        try:

            async def named() -> bool:
                if task.done():
                    task.result()  # surface a crash at start-up
                return worker.subscribed and worker.seq.seq is not None

            await eventually(named, 10, "the worker to subscribe and see a marker")
            yield st
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await assigned.aclose()  # type: ignore[no-untyped-call]
            await r.aclose()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


async def invariants(st: Stack) -> list[str]:
    return await check_invariants(st.r, st.keys)


def test_connect_hit_then_miss_then_served_when_a_node_boots(redis_url: str, pool: str) -> None:
    """basestock keeps one spare: u1 takes it at once (hit, wait 0); u2 right after finds
    none ready (miss) and gets the next node the leader boots, with wait_ms >= 1."""

    async def body() -> None:
        async with stack(redis_url, pool, policy_knobs={"min_spare": 1.0}) as st:

            async def one_ready() -> bool:
                return await st.count(st.keys.nodes_ready) >= 1

            await eventually(one_ready, 10, "the leader to boot a spare node")
            t0 = time.monotonic()
            await st.connect("u1")
            await st.connect("u2")
            a1 = await st.next_assigned("u1", 5)
            assert a1["wait_ms"] == 0
            ledger_ids = {n["id"] for n in st.mock.ledger()["nodes"]}
            assert a1["node_id"] in ledger_ids
            a2 = await st.next_assigned("u2", 10)
            waited_s = time.monotonic() - t0
            assert a2["wait_ms"] >= 1
            assert a2["wait_ms"] <= waited_s * 1000 + 1000  # generous: clocks, rounding
            assert a2["node_id"] != a1["node_id"] and a2["node_id"] in {
                n["id"] for n in st.mock.ledger()["nodes"]
            }
            assert await st.r.hget(st.keys.user_node, "u1") == a1["node_id"]
            assert await st.r.hget(st.keys.user_node, "u2") == a2["node_id"]
            stats = await st.r.hgetall(st.keys.stats)
            assert (stats.get("connects"), stats.get("hits"), stats.get("misses")) == (
                "2",
                "1",
                "1",
            )
            # one assignment each: no duplicates on the channel
            assert [m for m in await st.no_more_assigned() if m["user_id"] in ("u1", "u2")] == []
            # disconnect frees u1's node back to the pool
            await st.disconnect("u1")

            async def freed() -> bool:
                return await st.r.hget(st.keys.node_state, a1["node_id"]) == "ready"

            await eventually(freed, 5, "u1's node to go back to the ready pool")
            assert await invariants(st) == []

    run(body)


def test_reactive_connect_with_no_node_waits_for_a_boot(redis_url: str, pool: str) -> None:
    async def body() -> None:
        async with stack(redis_url, pool, policy="reactive") as st:
            await asyncio.sleep(0.5)  # a few leader ticks: reactive keeps no spare
            assert st.mock.ledger()["nodes"] == []
            await st.connect("cold")
            got = await st.next_assigned("cold", 10)
            assert got["wait_ms"] >= 1
            assert [n["id"] for n in st.mock.ledger()["nodes"]] == [got["node_id"]]
            assert await st.r.hget(st.keys.stats, "misses") == "1"
            assert await invariants(st) == []

    run(body)


BAD: list[tuple[str, str | bytes, str]] = [
    # (channel attribute, payload, expected kind)
    ("activity", "not json", "not_json"),
    ("activity", b"\xff\xfe{", "not_json"),  # not UTF-8 at all
    ("activity", '{"user_id": "u", "timestamp": "yesterday"}', "wrong_type"),
    ("activity", "[1, 2]", "not_object"),
    ("connect", "{}", "missing_field"),
    ("connect", '{"user_id": 42}', "wrong_type"),
    ("connect", '{"user_id": "bad\\u0000id"}', "bad_user_id"),
    ("connect", '{"user_id": "' + "x" * 129 + '"}', "bad_user_id"),
    ("connect", b'{"user_id": "\xc3\x28"}', "not_json"),  # invalid UTF-8 inside a string
    ("disconnect", "null", "not_object"),
    ("disconnect", json.dumps({"user_id": "u", "pad": "x" * 1_000_000}), "oversize"),
    ("disconnect", '{"user_id": ""}', "bad_user_id"),
    ("node_status", '{"node_id": "n1", "status": "exploded"}', "unknown_status"),
    ("node_status", '{"node_id": "", "status": "ready"}', "bad_node_id"),
    ("node_status", '{"node_id": "n1"}', "missing_field"),
    ("node_status", "", "not_json"),
]


def test_bad_payloads_are_counted_per_kind_and_the_worker_keeps_working(
    redis_url: str, pool: str
) -> None:
    async def body() -> None:
        async with stack(redis_url, pool, policy="static", policy_knobs={"k": 1.0}) as st:
            for attr, payload, _ in BAD:
                await st.publish(getattr(st.channels, attr), payload)
            expected: dict[str, int] = {}
            for _, _, kind in BAD:
                expected[kind] = expected.get(kind, 0) + 1

            async def counted() -> bool:
                bad = await st.r.hgetall(st.keys.bad)
                return sum(int(v) for k, v in bad.items() if not k.startswith("_")) >= len(BAD)

            await eventually(counted, 10, "every bad payload to be counted")
            bad = await st.r.hgetall(st.keys.bad)
            assert {k: int(v) for k, v in bad.items() if not k.startswith("_")} == expected
            assert not st.task.done()
            # nothing was applied from them
            assert await st.r.hlen(st.keys.user_node) == 0
            assert await st.r.zcard(st.keys.users_waiting) == 0
            assert await st.r.hget(st.keys.node_state, "n1") is None
            # and the replica still serves real traffic
            await st.connect("after-the-garbage")
            got = await st.next_assigned("after-the-garbage", 10)
            assert got["node_id"]
            async with (
                aiohttp.ClientSession() as http,
                http.get(st.metrics_url + "/metrics") as resp,
            ):
                text = await resp.text()
            assert 'provisioner_bad_input_total{kind="not_json"} 4.0' in text
            assert 'provisioner_bad_input_total{kind="oversize"} 1.0' in text
            assert await invariants(st) == []

    run(body)


def test_healthz_while_running_and_stop_releases_the_lease(redis_url: str, pool: str) -> None:
    async def body() -> None:
        async with stack(redis_url, pool, policy="reactive") as st:
            async with aiohttp.ClientSession() as http:
                async with http.get(st.metrics_url + "/healthz") as resp:
                    assert resp.status == 200
                    assert (await resp.text()).strip() == "ok"
                async with http.get(st.metrics_url + "/metrics") as resp:
                    assert resp.status == 200
                    assert "provisioner_subscribed 1.0" in await resp.text()

            async def leading() -> bool:
                h = await st.r.hgetall(st.keys.leader)
                return h.get("holder") == f"test-{pool}" and int(h.get("expires_ms", 0)) > 0

            await eventually(leading, 5, "the replica to take the lease")
            assert st.worker.leader is not None and st.worker.leader.is_leader
            token = await st.r.hget(st.keys.leader, "token")
            # SIGTERM-like stop: set the event; run() returns promptly
            st.stop.set()
            t0 = time.monotonic()
            await asyncio.wait_for(st.task, 15)
            assert time.monotonic() - t0 < 15
            lease = await st.r.hgetall(st.keys.leader)
            assert lease["expires_ms"] == "0"  # released, not left to expire
            assert lease["token"] == token and lease["holder"] == f"test-{pool}"
            assert not st.worker.leader.is_leader
            # the health server is gone with the replica
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.ClientConnectionError):
                    await http.get(st.metrics_url + "/healthz")

    run(body)


def test_forged_markers_do_not_jump_the_sequence(redis_url: str, pool: str) -> None:
    """Break-test finding: one publish of a huge marker froze users for good (ids past
    2**53 compared equal, later messages were stale).  Forged markers are ignored now."""

    async def body() -> None:
        async with stack(redis_url, pool, policy="static", policy_knobs={"k": 1.0}) as st:
            for forged in ("100000000000:0", "100000000000:0:deadbeef", "99999999:1:x"):
                await st.publish(st.channels.marker, forged)
            await asyncio.sleep(0.3)
            assert st.worker.seq.seq is not None and st.worker.seq.seq < 1_000_000
            # connect -> disconnect -> connect still works: nothing is stale
            await st.connect("m1")
            first = await st.next_assigned("m1", 10)
            await st.disconnect("m1")

            async def released() -> bool:
                return await st.r.hget(st.keys.user_node, "m1") is None

            await eventually(released, 10, "the disconnect to be applied")
            await st.connect("m1")
            again = await st.next_assigned("m1", 10)
            assert first["node_id"] and again["node_id"]
            async with (
                aiohttp.ClientSession() as http,
                http.get(st.metrics_url + "/metrics") as resp,
            ):
                text = await resp.text()
            assert "provisioner_bad_markers_total 3.0" in text

    run(body)


@pytest.mark.parametrize("user", ["{pool}", "a*b", "x:y:z", "with space", "ünï{c}ødé", "}{"])
def test_user_ids_with_key_syntax_are_plain_data(redis_url: str, pool: str, user: str) -> None:
    """User ids are hash fields and zset members, never parts of key names or patterns."""

    async def body() -> None:
        async with stack(redis_url, pool, policy="static", policy_knobs={"k": 1.0}) as st:
            await st.publish(st.channels.activity, json.dumps({"user_id": user, "timestamp": 1}))
            await st.connect(user)
            got = await st.next_assigned(user, 10)
            assert await st.r.hget(st.keys.user_node, user) == got["node_id"]
            keys = await st.r.keys(f"prov:{{{pool}}}:*")
            assert all(k.startswith(f"prov:{{{pool}}}:") and user not in k for k in keys)
            assert await invariants(st) == []

    run(body)


def test_a_replica_talks_to_redis_over_a_unix_socket(tmp_path: Any) -> None:
    """New-user finding: the replica's client always asked for TCP keep-alive, which a
    unix socket's connection refuses (TypeError at every connect): `run --redis-url
    unix://...` ingested nothing and logged a traceback every second."""
    import shutil
    import subprocess

    sock = tmp_path / "r.sock"
    srv = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", "0", "--unixsocket",
         str(sock), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def go() -> None:
            async def listening() -> bool:
                return sock.exists()

            await eventually(listening, 5.0, "the socket")
            worker = Worker(WorkerConfig(redis_url=f"unix://{sock}", pool="unix"))
            try:
                assert await worker.client.ping()
                await worker.coord.heartbeat("r1", 1_700_000_000_000)
            finally:
                await worker.client.aclose()

        asyncio.run(go())
    finally:
        srv.terminate()
        srv.wait(5)


def test_a_task_that_fails_for_good_stops_the_replica_loudly(redis_url: str, pool: str) -> None:
    """Break-test finding: with ``P:seq`` turned into a hash, the ingest and marker tasks
    ended on a script error their handlers do not retry, and the replica ran on without
    them, holding the lease and logging nothing. Now the replica stops with TaskFailed
    naming the task (``run`` exits 1 with that message)."""
    from provisioner.core.errors import TaskFailed

    async def body() -> None:
        with pytest.raises(TaskFailed, match="ended: WrongTypeError"):
            async with stack(redis_url, pool) as st:
                await st.r.delete(st.keys.seq)
                await st.r.hset(st.keys.seq, "a", "b")

                async def ended() -> bool:
                    return st.task.done()

                await eventually(ended, 10, "the replica to stop")

    run(body)


def test_markers_go_on_after_the_pool_s_keys_are_deleted(redis_url: str, pool: str) -> None:
    """Break-test finding: with the pool's keys deleted under a running replica (FLUSHDB,
    or Redis restarted without persistence) the marker counter began again at 1 and the
    replica ignored every new marker as older than its own, for as long as it took the
    counter to catch up (minutes; days on a pool that ran long), and nothing said the
    pool's state was lost. The replica's floor keeps the counter above every id it used,
    and raising it is logged and counted."""

    async def body() -> None:
        async with stack(redis_url, pool) as st:
            w = st.worker
            await asyncio.sleep(0.3)
            before = w.seq.seq
            assert before is not None and before > 1
            bad = w.metrics.bad_markers._value.get()
            keys = [k async for k in st.r.scan_iter(match=f"*{pool}*", count=1000)]
            assert st.keys.seq in keys
            await st.r.delete(*keys)

            async def past() -> bool:
                return (w.seq.seq or 0) > before + 2

            await eventually(past, 5, "markers above the sequence used before")
            assert w.metrics.bad_markers._value.get() == bad
            assert w.metrics.pool_resets._value.get() == 1  # and it said so

    run(body)


def test_messages_wait_out_a_redis_at_maxmemory_and_are_applied_after(pool: str) -> None:
    """Break-test finding: with Redis at ``maxmemory`` (``noeviction``, as recommended) a
    script's OOM error dropped the subscription, like a lost connection, and a connect
    published meanwhile reached no subscriber: lost, uncounted.  The messages now wait,
    retried with backoff (``provisioner_oom_retries_total``), on a live subscription, and
    are applied once Redis has memory again.  A private redis-server: maxmemory is global."""
    from provisioner.harness import local_redis

    async def body(url: str) -> None:
        async with stack(url, pool) as st:
            await st.r.config_set("maxmemory", "1")  # every write refused from now on
            try:
                await st.publish(st.channels.activity, json.dumps({"user_id": "oom-1"}))
                await st.connect("oom-1")
                await asyncio.sleep(1.0)
                assert st.worker.metrics.oom_retries._value.get() >= 1
                assert st.worker.subscribed  # the subscription stayed
                assert await st.r.hget(st.keys.stats, "connects") is None
            finally:
                await st.r.config_set("maxmemory", "0")

            async def applied() -> bool:
                return await st.r.hget(st.keys.stats, "connects") == "1"

            await eventually(applied, 10, "the connect to be applied once memory is back")
            assigned = await st.next_assigned("oom-1", 10)
            assert assigned["user_id"] == "oom-1"
            assert await invariants(st) == []

    with local_redis() as server:
        run(lambda: body(server.url))


class _Ahead(WallClock):
    """A wall clock 30 s ahead."""

    def now_ms(self) -> int:
        return super().now_ms() + 30_000


def test_a_replica_whose_clock_is_off_writes_nothing(redis_url: str, pool: str) -> None:
    """Re-test finding: a replica 30 s ahead never led, but the messages it applied first
    carried its clock (a boot of 8 s learned as 38 s, users seen in the future) and its
    heartbeat pruned healthy replicas from ``status``.  Now a replica whose clock is off
    Redis's applies no message, does no maintenance (no heartbeat), publishes no marker,
    and fails ``/healthz``."""

    async def body() -> None:
        # it must see a marker before it names messages: another replica's, here
        async with stack(redis_url, pool) as good:
            skewed_cfg = dataclasses.replace(
                good.worker.config,
                replica_id="skewed",
                metrics_port=None,
                leader=dataclasses.replace(good.worker.config.leader, max_clock_skew_s=2.0),
            )
            skewed = Worker(skewed_cfg, clock=_Ahead())
            stop = asyncio.Event()
            task = asyncio.create_task(skewed.run(stop))
            try:

                async def off() -> bool:
                    return skewed.leader is not None and skewed.leader.clock_off

                await eventually(off, 10, "the skewed replica to find its clock off")
                await good.r.publish(good.channels.activity, json.dumps({"user_id": "late-1"}))

                async def applied() -> bool:
                    return await good.r.zscore(good.keys.users_active, "late-1") is not None

                await eventually(applied, 5, "the good replica to apply the activity")
                await asyncio.sleep(0.3)
                counted = skewed.metrics.messages.labels("user:activity", "clock_off")
                assert counted._value.get() >= 1
                assert await good.r.zscore(good.keys.replicas, "skewed") is None
                healthy, why = await skewed.health()
                assert not healthy and "clock" in why
                assert skewed.leader is not None and not skewed.leader.is_leader
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)

    run(body)
