"""Shared fixtures: a real redis-server for the whole test session.

The server is started from ``redis-server`` on PATH on a free port (no persistence),
or taken from ``REDIS_URL`` when that is set, or (when neither works but a Docker
engine answers) from a testcontainers Redis container.  Each test gets its own pool
name, so keys never collide between tests.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from provisioner.harness import local_redis, wait_ready
from tests.procs import NEAR_DEADLINE


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis 7 server that lives for the whole test session."""
    env = os.environ.get("REDIS_URL")
    if env:
        wait_ready(env)
        yield env
        return
    if shutil.which("redis-server"):
        with local_redis() as server:
            yield server.url
        return
    try:
        from testcontainers.redis import RedisContainer
    except ImportError:  # pragma: no cover - depends on the machine
        pytest.exit("no redis-server on PATH, no REDIS_URL and no testcontainers", 2)
    with RedisContainer("redis:7") as container:  # pragma: no cover - needs Docker
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(6379))
        url = f"redis://{host}:{port}/0"
        wait_ready(url)
        yield url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client (decoded strings) on the session's server."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def pool() -> str:
    """A fresh pool name per test, so each test has its own key namespace."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def stack_factory(redis_url: str, pool: str, tmp_path: Path) -> Iterator[type[Any]]:
    """``stack_factory(mock_args, replica_args)``: a :class:`tests.faultkit.Stack` on the
    session's server, the test's pool and ``tmp_path``; closed after the test."""
    from tests.faultkit import Stack

    made: list[Stack] = []

    class Made(Stack):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(redis_url, pool, tmp_path, *a, **kw)
            made.append(self)

    yield Made
    for s in made:
        s.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the waits that passed after more than half their deadline (see
    :data:`tests.procs.NEAR_DEADLINE`): on a loaded machine they are the next to fail."""
    if NEAR_DEADLINE:
        terminalreporter.section("waits past half their deadline")
        for what, waited, deadline in NEAR_DEADLINE:
            terminalreporter.write_line(f"{waited:6.1f} s of {deadline:5.1f} s: {what}")
