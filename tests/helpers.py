"""Test helpers: drive the async coordinator from synchronous tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.asyncio as aioredis

from provisioner.core.coordinator import Coordinator
from provisioner.core.invariants import check_invariants
from provisioner.core.keys import Channels

T = TypeVar("T")


class SyncCoord:
    """A :class:`Coordinator` on its own event loop, callable from sync tests.

    ``sc.connect("u1", 1000)`` runs ``Coordinator.connect`` to completion.
    """

    def __init__(self, redis_url: str, pool: str, prefix: str = "") -> None:
        self.loop = asyncio.new_event_loop()
        self.client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self.channels = Channels(prefix=prefix or f"{pool}.", pool=pool)
        self.coord = Coordinator(self.client, pool, self.channels)
        self.keys = self.coord.keys

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.coord, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            return self.run(attr(*a, **kw))

        return call

    def invariants(self) -> list[str]:
        return self.run(check_invariants(self.client, self.keys))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()
