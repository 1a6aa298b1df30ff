"""The live simulator and the score listener on a real redis-server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from click.testing import CliRunner

from provisioner.cli import simulate
from provisioner.sim.scorecard import ScoreListener
from provisioner.sim.simulate import SimResult, run_simulation
from provisioner.sim.workload import BootProfile, Event, Workload

TINY = Workload(
    name="tiny",
    seed=0,
    events=[
        Event(0.0, "activity", "u1"),
        Event(0.5, "activity", "u2"),
        Event(1.0, "connect", "u1"),
        Event(1.0, "activity", "u2"),
        Event(2.0, "connect", "u2"),
        Event(3.0, "disconnect", "u1"),
        Event(4.0, "activity", "u1"),
    ],
    duration_s=4.0,
    boot=BootProfile(1.0, 2.0),
)


async def _collect(
    redis_url: str, prefix: str, wl: Workload, scale: float
) -> tuple[list[tuple[float, str, dict[str, Any], str]], SimResult]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    ps = client.pubsub()
    chans = [prefix + c for c in ("user:activity", "user:connect", "user:disconnect")]
    await ps.subscribe(*chans)
    for _ in chans:  # wait for the confirmations
        while (await ps.get_message(timeout=1.0)) is None:
            pass
    res = await run_simulation(wl, redis_url, time_scale=scale, channel_prefix=prefix)
    got: list[tuple[float, str, dict[str, Any], str]] = []
    deadline = time.monotonic() + 2.0
    while len(got) < len(wl.events) and time.monotonic() < deadline:
        msg = await ps.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if msg is not None:
            got.append((time.time(), msg["channel"], json.loads(msg["data"]), msg["data"]))
    await ps.aclose()  # type: ignore[no-untyped-call]
    await client.aclose()
    return got, res


def test_publishes_exact_events_in_order(redis_url: str, pool: str) -> None:
    prefix = pool + ":"
    t0 = time.time()
    got, res = asyncio.run(_collect(redis_url, prefix, TINY, scale=20.0))
    expect = [(prefix + "user:" + e.kind, e.user_id) for e in TINY.events]
    assert [(ch, body["user_id"]) for _, ch, body, _ in got] == expect
    for (_, _ch, body, raw), ev in zip(got, TINY.events, strict=True):
        if ev.kind == "activity":
            assert set(body) == {"user_id", "timestamp"}
            assert isinstance(body["timestamp"], int)
            assert abs(body["timestamp"] - t0) <= 2
            assert raw == json.dumps(body, separators=(",", ":"))
        else:
            assert raw == '{"user_id":"' + ev.user_id + '"}'
    # ground truth
    assert [(p.kind, p.user_id) for p in res.published] == [
        (e.kind, e.user_id) for e in TINY.events
    ]
    assert res.connected == {"u2"}
    assert not res.stopped_early
    # timing: 4 s of workload at x20 = 0.2 s of wall time, spacing kept
    rel = [(p.wall_ms - res.started_ms) / 1000.0 for p in res.published]
    for r, ev in zip(rel, TINY.events, strict=True):
        assert ev.t_s / 20.0 - 0.005 <= r <= ev.t_s / 20.0 + 0.1
    assert 0.19 <= (res.ended_ms - res.started_ms) / 1000.0 <= 1.0


def test_stop_event_and_max_wall(redis_url: str, pool: str) -> None:
    async def main() -> tuple[SimResult, SimResult]:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_simulation(TINY, redis_url, time_scale=2.0, channel_prefix=pool, stop_event=stop)
        )
        await asyncio.sleep(0.3)  # past t=0.5 s (x2 -> 0.25 s), before t=1.0 s
        stop.set()
        a = await task
        b = await run_simulation(TINY, redis_url, 10.0, pool, max_wall_s=0.15)
        return a, b

    a, b = asyncio.run(main())
    assert a.stopped_early and [p.user_id for p in a.published] == ["u1", "u2"]
    assert a.connected == set()
    assert b.stopped_early and [p.kind for p in b.published] == [e.kind for e in TINY.events[:4]]
    assert b.connected == {"u1"}


def test_listener_scores_a_live_run(redis_url: str, pool: str) -> None:
    """Simulator + a fake provisioner answering connects + a fake ledger over HTTP."""
    prefix = pool + ":"

    async def main() -> tuple[Any, ScoreListener]:
        listener = ScoreListener(redis_url, channel_prefix=prefix, boot_time_s=0.05)
        await listener.start()
        pub = aioredis.Redis.from_url(redis_url, decode_responses=True)
        sub = pub.pubsub()
        await sub.subscribe(prefix + "user:connect")
        while (await sub.get_message(timeout=1.0)) is None:
            pass
        now = time.time() * 1000.0
        ledger = {
            "now_ms": now,
            "nodes": [
                {
                    "id": "n-ready",
                    "created_ms": now - 1000,
                    "ready_ms": now - 500,
                    "delete_ms": None,
                    "terminated_ms": None,
                    "status": "ready",
                    "outcome": "alive",
                },
            ],
        }

        async def fake_provisioner() -> None:
            first = True
            while True:
                msg = await sub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                if msg is None:
                    continue
                user = json.loads(msg["data"])["user_id"]
                if first:  # u1: a hit from the ready pool
                    await pub.publish(
                        prefix + "user:assigned",
                        json.dumps({"user_id": user, "node_id": "n-ready", "wait_ms": 0}),
                    )
                    first = False
                else:  # u2: a miss, served by a node that boots now
                    t = time.time() * 1000.0
                    ledger["nodes"].append(  # type: ignore[attr-defined]
                        {
                            "id": "n-new",
                            "created_ms": t,
                            "ready_ms": t + 30,
                            "delete_ms": None,
                            "terminated_ms": None,
                            "status": "booting",
                            "outcome": "alive",
                        }
                    )
                    await asyncio.sleep(0.03)
                    await pub.publish(
                        prefix + "user:assigned",
                        json.dumps({"user_id": user, "node_id": "n-new", "wait_ms": 30}),
                    )

        async def get_ledger(_: web.Request) -> web.Response:
            return web.json_response(ledger)

        app = web.Application()
        app.router.add_get("/api/ledger", get_ledger)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        prov = asyncio.create_task(fake_provisioner())
        await run_simulation(TINY, redis_url, time_scale=20.0, channel_prefix=prefix)
        card = await listener.finish(f"http://127.0.0.1:{port}")
        prov.cancel()
        await asyncio.gather(prov, return_exceptions=True)
        await sub.aclose()  # type: ignore[no-untyped-call]
        await pub.aclose()
        await runner.cleanup()
        return card, listener

    card, listener = asyncio.run(main())
    assert listener.bad_messages == 0
    assert len(listener.activity) == 4 and len(listener.connects) == 2
    assert (card.connects, card.hits, card.misses, card.served_misses) == (2, 1, 1, 1)
    assert (card.connects_predictable, card.misses_predictable) == (2, 1)
    assert card.never_served == 0 and card.violations == 0, card.violation_details
    assert card.wait_max_ms is not None and 20 <= card.wait_max_ms <= 500
    assert card.nodes_created == 2 and card.node_seconds > card.busy_node_seconds > 0


def test_cli_command(redis_url: str, pool: str) -> None:
    result = CliRunner().invoke(
        simulate.command,
        [
            "--redis-url",
            redis_url,
            "--scenario",
            "starter",
            "--time-scale",
            "500",
            "--duration",
            "0.5",
            "--channel-prefix",
            pool,
            "--seed",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["stopped_early"] is True and summary["activity"] > 50
    # fresh-user finding: a run cut short left its connected users' nodes allocated for
    # ever in a live pool; by default it ends their sessions
    assert summary["connected_at_end"] == 0


@pytest.mark.parametrize("close", [True, False])
def test_a_run_cut_short_closes_the_open_sessions(redis_url: str, pool: str, close: bool) -> None:
    """Stopped at 2.5 s of TINY (u1 and u2 connected, u1's disconnect due at 3 s): with
    ``close_sessions`` both get a ``user:disconnect`` at the end, else none is sent."""
    res = asyncio.run(
        run_simulation(TINY, redis_url, 1.0, pool, max_wall_s=2.5, close_sessions=close)
    )
    assert res.stopped_early
    tail = [(p.kind, p.user_id) for p in res.published if p.kind == "disconnect"]
    if close:
        assert tail == [("disconnect", "u1"), ("disconnect", "u2")] and not res.connected
    else:
        assert tail == [] and res.connected == {"u1", "u2"}


def test_a_redis_restart_mid_run_is_retried_not_fatal(pool: str) -> None:
    """Break-test finding: ``simulate`` exited on any Redis restart (the replicas and the
    mock recovered). A publish that finds Redis down is retried until it is back, and every
    event still goes out, in order."""
    from provisioner.harness import local_redis

    with local_redis() as server:

        async def main() -> SimResult:
            task = asyncio.create_task(run_simulation(TINY, server.url, 2.0, pool, retry_s=20))
            await asyncio.sleep(0.6)  # t = 1.2 s: u1 connected; u2's connect due at 1.0 s
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(0.7)  # u2's connect finds Redis down
            await asyncio.to_thread(server.restart)  # starts it again on the same port
            return await task

        res = asyncio.run(main())
    assert not res.stopped_early
    kinds = [(p.kind, p.user_id) for p in res.published]
    assert kinds == [(e.kind, e.user_id) for e in TINY.events]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_simulate_like_its_duration(redis_url: str, pool: str, sig: str) -> None:
    """Re-test finding: SIGTERM or Ctrl-C killed ``simulate`` mid-way with its users still
    connected (10 and 15 left allocated in a live pool); a signal now ends the run as
    ``--duration`` does, open sessions closed."""
    import signal
    import subprocess
    import sys

    import redis as sync_redis

    sub = sync_redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    sub.subscribe(f"{pool}user:connect")
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "--redis-url", redis_url, "simulate",
         "--scenario", "steady", "--time-scale", "50", "--channel-prefix", pool],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while sub.get_message(timeout=1.0) is None:  # a user connected
            assert time.monotonic() < deadline and proc.poll() is None, "no connect"
    finally:
        sub.close()
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stopped_early"] is True and summary["connect"] > 0, summary
    assert summary["connected_at_end"] == 0 and summary["disconnect"] > 0, summary
