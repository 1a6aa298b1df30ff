"""Tests of the emulated Node Management REST API against a real redis-server.

Each test runs the app in-process on a free port inside ``asyncio.run``, talks to it over
real HTTP and listens on real Redis Pub/Sub.  Delays are shrunk with ``time_scale``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from provisioner.cli.mock_api import command
from provisioner.sim.mock_api import ConfigError, MockConfig, MockNodeApi

REPO = Path(__file__).resolve().parents[1]
NODE_ID = re.compile(r"^node-[0-9a-f]+-\d+$")


@dataclass
class Message:
    node_id: str
    status: str
    raw: str
    at: float  # time.monotonic() when received


@dataclass
class Harness:
    api: MockNodeApi
    url: str
    http: aiohttp.ClientSession
    pubsub: aioredis.client.PubSub
    channel: str

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, **kw) as resp:
            text = await resp.text()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, json.loads(text) if "json" in ctype and text else text

    async def create(self) -> str:
        status, body = await self.request("POST", "/api/nodes")
        assert status == 202, body
        node_id: str = body["id"]
        return node_id

    async def next_message(self, node_id: str, timeout_s: float) -> Message | None:
        """The next status message about ``node_id``, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            msg = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if msg is None:
                continue
            data = json.loads(msg["data"])
            if data["node_id"] == node_id:
                return Message(node_id, data["status"], msg["data"], time.monotonic())
        return None

    async def expect(self, node_id: str, status: str, timeout_s: float) -> Message:
        """The next status message about ``node_id``, which must arrive and be ``status``."""
        msg = await self.next_message(node_id, timeout_s)
        assert msg is not None, f"no message about {node_id} within {timeout_s} s"
        assert msg.status == status, msg
        return msg

    async def ledger_entry(self, node_id: str) -> dict[str, Any]:
        status, body = await self.request("GET", "/api/ledger")
        assert status == 200
        entries = [n for n in body["nodes"] if n["id"] == node_id]
        assert len(entries) == 1, body
        entry: dict[str, Any] = entries[0]
        return entry


@contextlib.asynccontextmanager
async def harness(redis_url: str, **config: Any) -> AsyncIterator[Harness]:
    api = MockNodeApi(MockConfig(**config), redis_url)
    sub = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = sub.pubsub()
    channel = api.config.status_channel
    await pubsub.subscribe(channel)
    try:
        async with (
            api.running("127.0.0.1", 0) as url,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        ):
            yield Harness(api, url, http, pubsub, channel)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await sub.aclose()


def run(redis_url: str, body: Callable[[Harness], Awaitable[None]], **config: Any) -> None:
    """Run ``body`` against a fresh server; check that no task outlives the shutdown."""

    async def main() -> None:
        async with harness(redis_url, **config) as h:
            await body(h)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftover == [], leftover

    asyncio.run(main())


FAST = {"boot_min_s": 2.0, "boot_max_s": 3.0, "time_scale": 10.0}  # boots of 0.2-0.3 s


def test_post_gives_202_then_booting_then_ready_on_the_exact_channel(redis_url: str) -> None:
    async def body(h: Harness) -> None:
        assert h.channel == "node:status"
        t0 = time.monotonic()
        node_id = await h.create()
        other = await h.create()
        assert NODE_ID.match(node_id) and NODE_ID.match(other)
        assert node_id != other

        booting = await h.next_message(node_id, 2.0)
        assert booting is not None
        assert booting.raw == json.dumps({"node_id": node_id, "status": "booting"}).replace(" ", "")
        assert booting.at - t0 < 0.15  # at once, well before the boot delay

        ready = await h.next_message(node_id, 3.0)
        assert ready is not None and ready.status == "ready"
        assert 0.15 <= ready.at - t0 <= 2.0  # configured 0.2-0.3 s; generous bounds

        entry = await h.ledger_entry(node_id)
        assert entry["status"] == "ready" and entry["outcome"] == "alive"
        assert entry["ready_published"] is True
        assert entry["delete_ms"] is None and entry["terminated_ms"] is None
        assert 150 <= entry["ready_ms"] - entry["created_ms"] <= 2000
        assert abs(entry["created_ms"] - time.time() * 1000) < 10_000  # wall-clock unix ms

        status, single = await h.request("GET", f"/api/nodes/{node_id}")
        assert status == 200 and single == entry

    run(redis_url, body, **FAST)


def test_delete_gives_202_then_terminated_and_ledger_times(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        node_id = await h.create()
        await h.expect(node_id, "booting", 2.0)
        await h.expect(node_id, "ready", 3.0)

        t0 = time.monotonic()
        status, _ = await h.request("DELETE", f"/api/nodes/{node_id}")
        assert status == 202
        terminated = await h.next_message(node_id, 3.0)
        assert terminated is not None and terminated.status == "terminated"
        assert terminated.at - t0 >= 0.01  # the terminate delay (0.2 s / 10) is honoured

        entry = await h.ledger_entry(node_id)
        assert entry["status"] == "terminated" and entry["outcome"] == "deleted"
        assert entry["created_ms"] <= entry["ready_ms"] <= entry["delete_ms"]
        assert entry["delete_ms"] <= entry["terminated_ms"]

        status, err = await h.request("DELETE", f"/api/nodes/{node_id}")
        assert status == 404 and "terminated" in err["error"]

    run(redis_url, body, channel_prefix=f"{pool}:", **FAST)


def test_delete_while_booting_never_becomes_ready(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        node_id = await h.create()
        await h.expect(node_id, "booting", 2.0)
        status, _ = await h.request("DELETE", f"/api/nodes/{node_id}")
        assert status == 202
        await h.expect(node_id, "terminated", 2.0)
        entry = await h.ledger_entry(node_id)
        assert entry["ready_ms"] is None and entry["outcome"] == "deleted"
        assert entry["status"] == "terminated"

    # A 0.5 s boot: the delete lands well before it, and the boot must not complete later.
    run(redis_url, body, channel_prefix=f"{pool}:", boot_min_s=5, boot_max_s=5, time_scale=10)


def test_delete_unknown_node_is_404_json(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        status, err = await h.request("DELETE", "/api/nodes/node-does-not-exist")
        assert status == 404 and "node-does-not-exist" in err["error"]
        status, err = await h.request("GET", "/api/nodes/node-does-not-exist")
        assert status == 404 and "error" in err
        status, err = await h.request("GET", "/api/no/such/route")
        assert status == 404 and "error" in err
        status, err = await h.request("PUT", "/api/nodes")
        assert status == 405 and "error" in err
        status, text = await h.request("GET", "/healthz")
        assert status == 200 and text == "ok"

    run(redis_url, body, channel_prefix=f"{pool}:", **FAST)


def test_boot_failure_ends_in_terminated_instead_of_ready(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        node_id = await h.create()
        await h.expect(node_id, "booting", 2.0)
        end = await h.next_message(node_id, 3.0)
        assert end is not None and end.status == "terminated"
        assert await h.next_message(node_id, 0.3) is None
        entry = await h.ledger_entry(node_id)
        assert entry["outcome"] == "boot_failed" and entry["status"] == "terminated"
        assert entry["ready_ms"] is None and entry["terminated_ms"] is not None
        status, _ = await h.request("DELETE", f"/api/nodes/{node_id}")
        assert status == 404

    run(redis_url, body, channel_prefix=f"{pool}:", boot_fail_p=1.0, **FAST)


def test_lost_ready_is_never_published_but_ledger_says_ready(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        node_id = await h.create()
        await h.expect(node_id, "booting", 2.0)
        assert await h.next_message(node_id, 1.0) is None  # boot is 0.2-0.3 s
        entry = await h.ledger_entry(node_id)
        assert entry["status"] == "ready" and entry["ready_ms"] is not None
        assert entry["ready_published"] is False

    run(redis_url, body, channel_prefix=f"{pool}:", lost_ready_p=1.0, **FAST)


def test_5xx_does_nothing(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        node_id = await h.create()  # created before the faults are switched on
        await h.expect(node_id, "booting", 2.0)
        status, _ = await h.request("PATCH", "/api/admin/config", json={"error_5xx_p": 1.0})
        assert status == 200

        for _ in range(3):
            status, err = await h.request("POST", "/api/nodes")
            assert status == 503 and "error" in err
        status, err = await h.request("DELETE", f"/api/nodes/{node_id}")
        assert status == 503 and "error" in err

        _, ledger = await h.request("GET", "/api/ledger")
        assert [n["id"] for n in ledger["nodes"]] == [node_id]
        assert ledger["nodes"][0]["delete_ms"] is None
        ready = await h.next_message(node_id, 3.0)  # the refused DELETE did not stop it
        assert ready is not None and ready.status == "ready"

    run(redis_url, body, channel_prefix=f"{pool}:", **FAST)


def test_patch_changes_boot_delay_for_new_nodes(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        slow = await h.create()  # 100 s / 10 = 10 s boot, keeps it
        status, cfg = await h.request(
            "PATCH", "/api/admin/config", json={"boot_min_s": 1, "boot_max_s": 2.0}
        )
        assert status == 200 and cfg["boot_min_s"] == 1.0 and cfg["boot_max_s"] == 2.0
        status, cfg = await h.request("GET", "/api/admin/config")
        assert status == 200 and (cfg["boot_min_s"], cfg["boot_max_s"]) == (1.0, 2.0)

        t0 = time.monotonic()
        fast = await h.create()
        while True:
            msg = await h.next_message(fast, 3.0)
            assert msg is not None
            if msg.status == "ready":
                break
        assert 0.05 <= msg.at - t0 <= 1.5  # 0.1-0.2 s
        assert (await h.ledger_entry(slow))["status"] == "booting"

    run(
        redis_url,
        body,
        channel_prefix=f"{pool}:",
        boot_min_s=100,
        boot_max_s=100,
        time_scale=10,
    )


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"no_such_field": 1}, "no_such_field"),
        ({"boot_min_s": "fast"}, "boot_min_s"),
        ({"boot_fail_p": True}, "boot_fail_p"),
        ({"boot_fail_p": 1.5}, "boot_fail_p"),
        ({"boot_min_s": 50}, "boot_max_s"),  # min above the current max
        ({"time_scale": 0}, "time_scale"),
        ({"seed": 1.5}, "seed"),
        ({"channel_prefix": 3}, "channel_prefix"),
        ([1, 2], "object"),
        ("not json at all", "JSON"),
    ],
)
def test_bad_patch_is_400_and_changes_nothing(
    redis_url: str, pool: str, payload: Any, needle: str
) -> None:
    async def body(h: Harness) -> None:
        _, before = await h.request("GET", "/api/admin/config")
        kw: dict[str, Any] = (
            {"data": payload} if isinstance(payload, str) else {"data": json.dumps(payload)}
        )
        status, err = await h.request("PATCH", "/api/admin/config", **kw)
        assert status == 400, err
        assert needle in err["error"]
        _, after = await h.request("GET", "/api/admin/config")
        assert after == before

    run(redis_url, body, channel_prefix=f"{pool}:", **FAST)


def test_timeout_after_create_leaves_a_node_behind(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        with pytest.raises(TimeoutError):
            async with h.http.post(
                h.url + "/api/nodes", timeout=aiohttp.ClientTimeout(total=0.3)
            ) as resp:
                await resp.read()
        _, ledger = await h.request("GET", "/api/ledger")
        assert len(ledger["nodes"]) == 1
        node_id = ledger["nodes"][0]["id"]
        await h.expect(node_id, "booting", 1.0)
        await h.expect(node_id, "ready", 3.0)

    t0 = time.monotonic()
    # The answer hangs 30 s; shutting down must release it rather than wait.
    run(redis_url, body, channel_prefix=f"{pool}:", timeout_after_create_p=1.0, **FAST)
    assert time.monotonic() - t0 < 2.0  # about 0.3 s; without the release, 3 s or more


def test_preemption_terminates_ready_nodes_unasked(redis_url: str, pool: str) -> None:
    async def body(h: Harness) -> None:
        node_id = await h.create()
        statuses = []
        while (msg := await h.next_message(node_id, 3.0)) is not None:
            statuses.append(msg.status)
            if msg.status == "terminated":
                break
        assert statuses == ["booting", "ready", "terminated"]
        entry = await h.ledger_entry(node_id)
        assert entry["outcome"] == "preempted" and entry["delete_ms"] is None
        assert entry["ready_ms"] <= entry["terminated_ms"]

    # Mean time to preemption: 3600 / 36000 h-rate = 0.1 s emulated, 0.01 s real.
    run(
        redis_url,
        body,
        channel_prefix=f"{pool}:",
        preempt_rate_per_node_hour=36_000.0,
        **FAST,
    )


def test_seed_makes_fault_draws_reproducible(redis_url: str, pool: str) -> None:
    def pattern() -> list[int]:
        out: list[int] = []

        async def body(h: Harness) -> None:
            for _ in range(20):
                status, _ = await h.request("POST", "/api/nodes")
                out.append(status)
            # Re-seeding at run time restarts the same sequence.
            status, _ = await h.request("PATCH", "/api/admin/config", json={"seed": 42})
            assert status == 200
            for expected in out[:20]:
                status, _ = await h.request("POST", "/api/nodes")
                assert status == expected

        run(redis_url, body, channel_prefix=f"{pool}:", seed=42, error_5xx_p=0.5, **FAST)
        return out

    first, second = pattern(), pattern()
    assert first == second
    assert set(first) == {202, 503}


def test_config_validation() -> None:
    assert MockConfig().status_channel == "node:status"
    assert MockConfig(channel_prefix="eu:").status_channel == "eu:node:status"
    cfg = MockConfig()
    assert (cfg.boot_min_s, cfg.boot_max_s, cfg.hang_s, cfg.terminate_delay_s) == (20, 40, 30, 0.2)
    with pytest.raises(ConfigError):
        MockConfig(boot_min_s=-1)
    with pytest.raises(ConfigError):
        MockConfig(boot_min_s=10, boot_max_s=5)
    with pytest.raises(ConfigError):
        MockConfig(lost_ready_p=2)
    with pytest.raises(ConfigError):
        MockConfig(time_scale=float("inf"))
    with pytest.raises(ConfigError, match="unknown"):
        cfg.updated({"boot_min": 1})
    assert cfg.updated({"seed": 7, "boot_max_s": 50}).to_dict()["seed"] == 7
    assert cfg.seed is None  # frozen: updated() returns a copy


def test_cli_rejects_inconsistent_options() -> None:
    result = CliRunner().invoke(command, ["--boot-min", "10", "--boot-max", "5"])
    assert result.exit_code == 2
    # new-user finding: the error named the fields (boot_max_s), not the flags
    assert "--boot-max: 5 is below --boot-min 10" in result.output
    assert "boot_max_s" not in result.output and "boot_min_s" not in result.output
    result = CliRunner().invoke(command, ["--boot-min", "-1"])
    assert result.exit_code == 2 and "--boot-min" in result.output
    help_text = CliRunner().invoke(command, ["--help"]).output
    for option in ("--redis-url", "--port", "--boot-fail-p", "--preempt-rate", "--time-scale"):
        assert option in help_text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_python_dash_m_serves_and_stops_on_sigterm(redis_url: str, pool: str) -> None:
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), PROVISIONER_REDIS_URL=redis_url)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner.sim.mock_api",
            "--port",
            str(port),
            "--channel-prefix",
            f"{pool}:",
            "--boot-min",
            "1",
            "--boot-max",
            "1",
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        async def probe() -> tuple[int, str]:
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        async with http.post(f"http://127.0.0.1:{port}/api/nodes") as resp:
                            return resp.status, (await resp.json())["id"]
                    except aiohttp.ClientConnectionError:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.05)

        status, node_id = asyncio.run(probe())
        assert status == 202 and NODE_ID.match(node_id)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
