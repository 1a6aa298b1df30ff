"""End to end with real processes: the demo, and the boot time learned live."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from provisioner.cli.main import cli
from provisioner.core.keys import Channels, PoolKeys
from provisioner.harness import free_port
from provisioner.sim.demo import DemoConfig, run_demo
from tests.procs import replicas, subscribers, wait_until

pytestmark = pytest.mark.slow


def test_demo_stack_serves_users_without_violations(tmp_path: Path) -> None:
    """Mock API + simulator + two replicas on a private redis-server, ~20 s at x10; then
    the fast replay of the same 200 world seconds, scored alike."""
    card, rep = run_demo(
        DemoConfig(
            scenario="starter", duration_s=20, time_scale=10, replicas=2, logdir=str(tmp_path)
        ),
        with_replay=True,
    )
    assert rep is not None and rep.violations == 0
    # the same events up to the same world time (the live run may lose the last few to
    # start-up and shut-down): the replay sees about as many connects
    assert 0.7 * rep.connects <= card.connects <= rep.connects + 2, (card, rep)
    assert rep.oracle_node_seconds > 0
    assert card.connects >= 5, card
    assert card.hits >= 1, card
    assert card.violations == 0, card
    assert card.nodes_created >= 1
    assert card.node_seconds > 0 and card.oracle_node_seconds > 0
    for i in (1, 2):
        log = (tmp_path / f"replica-{i}.log").read_text()
        assert "Traceback" not in log, log[-3000:]


def _patch(url: str, body: dict[str, float]) -> None:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="PATCH",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _boot_mean(r: redis.Redis, pool: str) -> float | None:
    v = r.hget(PoolKeys(pool).boot, "mean_ms")
    return None if v is None else float(v) / 1000.0


def _boot_n(r: redis.Redis, pool: str) -> int:
    return int(r.hget(PoolKeys(pool).boot, "n") or 0)


def test_learned_boot_time_follows_a_change_of_the_boot_delay(
    redis_url: str, r: redis.Redis, pool: str, tmp_path: Path
) -> None:
    prefix = f"{pool}."
    ch = Channels(prefix, pool)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    mock_log = open(tmp_path / "mock.log", "wb")  # noqa: SIM115
    mock = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "--redis-url", redis_url,
         "--channel-prefix", prefix, "mock-node-api", "--port", str(port),
         "--boot-min", "0.4", "--boot-max", "0.6", "--terminate-delay", "0.05", "--seed", "3"],
        stdout=mock_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    mock_log.close()
    try:
        with replicas(redis_url, pool, prefix, tmp_path) as group:
            group.start_replica(
                "r1", "--node-api-url", api, "--policy", "reactive", "--keep-alive", "0",
                "--tick", "0.1", "--marker-interval", "0.05", "--default-boot", "1",
            )  # fmt: skip
            wait_until(lambda: subscribers(r, ch.marker) == 1, 20, "replica to subscribe")
            time.sleep(0.5)

            pk = PoolKeys(pool)

            def rounds(n: int, first: int) -> None:
                for k in range(n):
                    users = [f"u{first + k}-{i}" for i in range(5)]
                    before = int(r.hget(PoolKeys(pool).stats, "assigned_late") or 0)
                    for u in users:
                        r.publish(ch.connect, json.dumps({"user_id": u}))
                    wait_until(
                        lambda b=before: (
                            int(r.hget(PoolKeys(pool).stats, "assigned_late") or 0) >= b + 5
                        ),
                        20,
                        f"round {k} to be served",
                    )
                    for u in users:
                        r.publish(ch.disconnect, json.dumps({"user_id": u}))
                    # keep-alive 0: the freed nodes are deleted, so the next round boots
                    wait_until(
                        lambda: (
                            r.zcard(pk.nodes_ready)
                            + r.zcard(pk.nodes_terminating)
                            + r.zcard(pk.nodes_allocated)
                            == 0
                        ),
                        20,
                        "freed nodes to be terminated",
                    )

            rounds(2, 0)
            early = _boot_mean(r, pool)
            assert early is not None and 0.35 <= early <= 0.9, early
            n_early = _boot_n(r, pool)
            _patch(f"{api}/api/admin/config", {"boot_min_s": 1.4, "boot_max_s": 1.6})
            rounds(3, 100)
            late = _boot_mean(r, pool)
            assert _boot_n(r, pool) >= n_early + 15
            assert late is not None and 1.1 <= late <= 1.8, (early, late)
    finally:
        mock.terminate()
        mock.wait(timeout=30)


def test_demo_on_a_shared_redis_keeps_to_a_pool_and_channels_of_its_own(
    redis_url: str, tmp_path: Path
) -> None:
    """Found by a new user: on a Redis of theirs (--redis-url) the demo ran in the
    `default` pool and on the plain channel names, so its replicas and nodes mixed with a
    seeded pool and anything else listening saw its traffic. It now takes a pool and a
    channel prefix of its own, and leaves every other key alone."""
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    mine = PoolKeys("default")
    r.hset(mine.stats, "mine", 7)
    before = {k for k in r.scan_iter("prov:*") if not k.startswith("prov:{demo-")}
    ps = r.pubsub()
    ps.psubscribe("user:*", "node:*")
    ps.get_message(timeout=1)
    result = CliRunner().invoke(
        cli,
        ["--redis-url", redis_url, "demo", "--scenario", "starter", "--duration", "6",
         "--logdir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "connects" in result.output
    assert r.hgetall(mine.stats) == {"mine": "7"}
    after = {k for k in r.scan_iter("prov:*") if not k.startswith("prov:{demo-")}
    assert after == before
    assert any(True for _ in r.scan_iter("prov:{demo-*}:stats"))
    heard = [m for m in iter(lambda: ps.get_message(timeout=0.2), None) if m["type"] == "pmessage"]
    assert heard == []
