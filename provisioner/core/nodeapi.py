"""Async client of the Node Management REST API (docs/design.md#1, docs/design.md#3-3).

``POST /api/nodes`` takes no idempotency key, so it is retried only when the request
surely did not arrive (the connection was refused) or was refused (a 5xx answer).  A
timeout leaves the outcome uncertain: :class:`CreateUncertain` is raised, the create
intent stays open, and a node that then reports a status unknown to us is adopted
into it (or deleted) by the leader's reconcile.  ``DELETE`` is idempotent, so it is
retried on timeouts too; 404 means the node is already gone.

Retries use tenacity with exponential backoff and full jitter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from provisioner.core.messages import DOT_SEGMENTS

__all__ = [
    "CreateFailed",
    "CreateUncertain",
    "NodeApi",
    "NodeApiConfig",
    "NodeApiError",
    "NodeGone",
]

log = logging.getLogger("provisioner.core.nodeapi")


class NodeApiError(Exception):
    """Base of the Node API client's errors."""


class CreateFailed(NodeApiError):
    """The POST surely created nothing (refused connection or 5xx/4xx after retries)."""


class CreateUncertain(NodeApiError):
    """The POST may or may not have created a node (timeout, broken answer)."""


class NodeGone(NodeApiError):
    """DELETE answered 404: the node does not exist (any more)."""


class _Retryable(Exception):
    pass


@dataclass(frozen=True)
class NodeApiConfig:
    """Client settings (seconds).

    Attributes:
        base_url: e.g. ``http://localhost:8080``.
        timeout_s: total time for one HTTP request.
        attempts: tries per call, first included.
        backoff_initial_s: first backoff; doubles each retry (plus jitter).
        backoff_max_s: backoff cap.
    """

    base_url: str = "http://localhost:8080"
    timeout_s: float = 5.0
    attempts: int = 4
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 3.0


class NodeApi:
    """POST and DELETE nodes.  Use as ``async with NodeApi(cfg) as api``.

    Args:
        config: URL, timeouts and retry settings.
    """

    def __init__(self, config: NodeApiConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NodeApi:
        self._session = aiohttp.ClientSession(
            base_url=self.config.base_url.rstrip("/") + "/",
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _retrying(self, *retry_on: type[BaseException]) -> AsyncRetrying:
        c = self.config
        return AsyncRetrying(
            stop=stop_after_attempt(c.attempts),
            wait=wait_random_exponential(multiplier=c.backoff_initial_s, max=c.backoff_max_s),
            retry=retry_if_exception_type(retry_on),
            reraise=True,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session.

        Raises:
            RuntimeError: outside ``async with``.
        """
        if self._session is None:
            raise RuntimeError("NodeApi used outside 'async with'")
        return self._session

    async def create(self) -> str:
        """POST a node and return its id.

        Raises:
            CreateFailed: surely no node was created.
            CreateUncertain: a node may exist (timeout or unreadable answer).
        """
        try:
            async for attempt in self._retrying(_Retryable, aiohttp.ClientConnectorError):
                with attempt:
                    return await self._post_once()
        except (_Retryable, aiohttp.ClientConnectorError) as e:
            raise CreateFailed(str(e)) from e
        raise CreateFailed("no attempt made")  # pragma: no cover - tenacity always tries

    async def _post_once(self) -> str:
        try:
            async with self.session.post("api/nodes") as resp:
                if resp.status >= 500:
                    raise _Retryable(f"POST /api/nodes: {resp.status}")
                if resp.status >= 400:
                    raise CreateFailed(f"POST /api/nodes: {resp.status} {await resp.text()}")
                try:
                    body: Any = await resp.json(content_type=None)
                    node_id = body["id"]
                except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError) as e:
                    raise CreateUncertain(f"POST answered {resp.status} without an id") from e
                if not isinstance(node_id, str) or not node_id or node_id in DOT_SEGMENTS:
                    raise CreateUncertain(f"POST answered a bad id {node_id!r}")
                return node_id
        except aiohttp.ClientConnectorError:
            raise
        except (TimeoutError, aiohttp.ClientError) as e:
            raise CreateUncertain(f"POST /api/nodes: {type(e).__name__} {e}") from e

    async def delete(self, node_id: str) -> None:
        """DELETE a node.

        Raises:
            NodeGone: 404, the node does not exist.
            NodeApiError: still failing after the retries; or ``node_id`` is ``.`` or
                ``..``, which no URL path can carry (no request is sent).
        """
        if node_id in DOT_SEGMENTS:
            raise NodeApiError(f"DELETE {node_id!r}: a dot segment cannot name a node")
        try:
            async for attempt in self._retrying(_Retryable):
                with attempt:
                    await self._delete_once(node_id)
        except _Retryable as e:
            raise NodeApiError(str(e)) from e

    async def _delete_once(self, node_id: str) -> None:
        try:
            async with self.session.delete(f"api/nodes/{quote(node_id, safe='')}") as resp:
                if resp.status == 404:
                    raise NodeGone(node_id)
                if resp.status >= 500:
                    raise _Retryable(f"DELETE {node_id}: {resp.status}")
                if resp.status >= 400:
                    raise NodeApiError(f"DELETE {node_id}: {resp.status}")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _Retryable(f"DELETE {node_id}: {type(e).__name__} {e}") from e
