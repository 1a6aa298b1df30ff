"""The Node API client (docs/design.md#3-3) against the emulated API over real HTTP, with
node status published on real Redis.

Retries: a POST is retried only when it surely did not arrive (connection refused) or was
refused (5xx); a timeout is *uncertain* and never retried (the API takes no idempotency
key), so the ledger must then hold exactly the one node that POST created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from provisioner.core.nodeapi import (
    CreateFailed,
    CreateUncertain,
    NodeApi,
    NodeApiConfig,
    NodeApiError,
    NodeGone,
)
from provisioner.sim.mock_api import MockConfig, MockNodeApi

FAST = {"boot_min_s": 0.2, "boot_max_s": 0.3, "terminate_delay_s": 0.05, "seed": 7}


def client_config(url: str, **kw: Any) -> NodeApiConfig:
    base: dict[str, Any] = {
        "timeout_s": 5.0,
        "attempts": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return NodeApiConfig(base_url=url, **(base | kw))


@dataclass
class World:
    mock: MockNodeApi
    url: str
    statuses: Any  # PubSub on the mock's node:status channel

    async def status_of(
        self, node_id: str, timeout_s: float = 5.0, until: str = "terminated"
    ) -> list[str]:
        """Statuses published for ``node_id`` until ``until`` or the timeout."""
        out: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            m = await self.statuses.get_message(ignore_subscribe_messages=True, timeout=left)
            if m is None:
                continue
            data = json.loads(m["data"])
            if data["node_id"] == node_id:
                out.append(data["status"])
                if data["status"] == until:
                    break
        return out


@contextlib.asynccontextmanager
async def world(redis_url: str, pool: str, **config: Any) -> AsyncIterator[World]:
    cfg = MockConfig(**(FAST | {"channel_prefix": pool + "."} | config))
    mock = MockNodeApi(cfg, redis_url)
    sub = aioredis.Redis.from_url(redis_url, decode_responses=True)
    ps = sub.pubsub()
    await ps.subscribe(cfg.status_channel)
    try:
        async with mock.running("127.0.0.1", 0) as url:
            yield World(mock, url, ps)
    finally:
        await ps.aclose()  # type: ignore[no-untyped-call]
        await sub.aclose()


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens here any more


def emulated_503s(caplog: pytest.LogCaptureFixture, verb: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "provisioner.sim.mock_api"
        and "emulated 503" in r.getMessage()
        and r.getMessage().startswith(verb)
    )


def test_create_returns_the_new_node_id(redis_url: str, pool: str) -> None:
    async def body() -> None:
        async with world(redis_url, pool) as w, NodeApi(client_config(w.url)) as api:
            node = await api.create()
            assert isinstance(node, str) and node
            entry = w.mock.node(node)
            assert entry is not None and entry.outcome == "alive"
            assert [n["id"] for n in w.mock.ledger()["nodes"]] == [node]
            assert await w.status_of(node, 3.0, until="ready") == ["booting", "ready"]
            other = await api.create()
            assert other != node and len(w.mock.ledger()["nodes"]) == 2

    run(body)


def test_create_with_5xx_fails_after_retries_and_creates_nothing(
    redis_url: str, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provisioner.sim.mock_api")

    async def body() -> None:
        async with (
            world(redis_url, pool, error_5xx_p=1.0) as w,
            NodeApi(client_config(w.url, attempts=4)) as api,
        ):
            with pytest.raises(CreateFailed, match="503"):
                await api.create()
            assert w.mock.ledger()["nodes"] == []
            assert emulated_503s(caplog, "POST") == 4  # every attempt was made

    run(body)


def test_create_recovers_when_the_5xx_stop(redis_url: str, pool: str) -> None:
    async def body() -> None:
        async with (
            world(redis_url, pool, error_5xx_p=1.0) as w,
            NodeApi(client_config(w.url, attempts=50, backoff_initial_s=0.05)) as api,
        ):
            task = asyncio.create_task(api.create())
            await asyncio.sleep(0.2)
            assert not task.done()
            w.mock.update_config({"error_5xx_p": 0.0})
            node = await asyncio.wait_for(task, 10)
            assert [n["id"] for n in w.mock.ledger()["nodes"]] == [node]

    run(body)


def test_create_against_a_closed_port_fails(redis_url: str) -> None:
    async def body() -> None:
        url = f"http://127.0.0.1:{closed_port()}"
        async with NodeApi(client_config(url, attempts=3)) as api:
            with pytest.raises(CreateFailed):
                await api.create()

    run(body)


def test_create_that_times_out_is_uncertain_and_not_retried(redis_url: str, pool: str) -> None:
    async def body() -> None:
        async with (
            world(redis_url, pool, timeout_after_create_p=1.0, hang_s=30.0) as w,
            NodeApi(client_config(w.url, timeout_s=0.3, attempts=4)) as api,
        ):
            with pytest.raises(CreateUncertain):
                await api.create()
            nodes = w.mock.ledger()["nodes"]
            assert len(nodes) == 1, "a timed-out POST must not be retried"
            assert nodes[0]["outcome"] == "alive" and nodes[0]["delete_ms"] is None
            # the node exists and boots: its statuses arrive though the answer never did
            assert await w.status_of(nodes[0]["id"], 3.0, until="ready") == ["booting", "ready"]

    run(body)


def test_delete_terminates_the_node(redis_url: str, pool: str) -> None:
    async def body() -> None:
        async with world(redis_url, pool) as w, NodeApi(client_config(w.url)) as api:
            node = await api.create()
            await api.delete(node)
            entry = w.mock.node(node)
            assert entry is not None and entry.delete_ms is not None
            assert entry.outcome == "deleted"
            assert (await w.status_of(node, timeout_s=3.0))[-1] == "terminated"
            assert w.mock.node(node).status == "terminated"  # type: ignore[union-attr]
            with pytest.raises(NodeGone):  # a second DELETE: already terminated
                await api.delete(node)

    run(body)


@pytest.mark.parametrize("node_id", ["node-0000-999", "a/b", "../ledger", "x?y=1", "é"])
def test_delete_of_an_unknown_node_is_node_gone(redis_url: str, pool: str, node_id: str) -> None:
    async def body() -> None:
        async with world(redis_url, pool) as w, NodeApi(client_config(w.url)) as api:
            kept = await api.create()
            with pytest.raises(NodeGone):
                await api.delete(node_id)
            assert w.mock.node(kept).delete_ms is None  # type: ignore[union-attr]

    run(body)


@pytest.mark.parametrize("node_id", [".", ".."])
def test_delete_of_a_dot_segment_is_refused_without_a_request(
    redis_url: str, pool: str, node_id: str
) -> None:
    """Break-test finding: ``quote`` leaves ``.`` and ``..`` as they are and the URL is
    normalised, so DELETE of node ``..`` went to ``/api/`` (the collection on a real API)."""

    async def body() -> None:
        async with world(redis_url, pool) as w, NodeApi(client_config(w.url)) as api:
            kept = await api.create()
            with pytest.raises(NodeApiError, match="dot segment") as info:
                await api.delete(node_id)
            assert not isinstance(info.value, NodeGone)
            assert w.mock.node(kept).delete_ms is None  # type: ignore[union-attr]

    run(body)


def test_delete_with_5xx_fails_after_retries_but_is_not_gone(
    redis_url: str, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provisioner.sim.mock_api")

    async def body() -> None:
        async with world(redis_url, pool) as w, NodeApi(client_config(w.url, attempts=3)) as api:
            node = await api.create()
            w.mock.update_config({"error_5xx_p": 1.0})
            with pytest.raises(NodeApiError) as info:
                await api.delete(node)
            assert not isinstance(info.value, NodeGone)
            assert emulated_503s(caplog, "DELETE") == 3
            assert w.mock.node(node).delete_ms is None  # type: ignore[union-attr]
            w.mock.update_config({"error_5xx_p": 0.0})
            await api.delete(node)
            assert w.mock.node(node).delete_ms is not None  # type: ignore[union-attr]

    run(body)


def test_delete_against_a_closed_port_fails(redis_url: str) -> None:
    async def body() -> None:
        url = f"http://127.0.0.1:{closed_port()}"
        async with NodeApi(client_config(url, attempts=2)) as api:
            with pytest.raises(NodeApiError) as info:
                await api.delete("node-1")
            assert not isinstance(info.value, NodeGone)

    run(body)


def test_use_outside_async_with_is_an_error() -> None:
    async def body() -> None:
        api = NodeApi(NodeApiConfig())
        with pytest.raises(RuntimeError, match="outside"):
            await api.create()
        async with api:
            pass
        with pytest.raises(RuntimeError):
            await api.delete("n1")  # closed again after the block

    run(body)
