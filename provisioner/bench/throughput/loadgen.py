"""The load generators of ``bench throughput``, each run as a child process so that
neither competes with the measuring process for its interpreter:

* the *flood* publishes ``user:activity`` paced to a rate (pipelined PUBLISH,
  pre-encoded RESP on a raw socket);
* the *probe* publishes a steady trickle of ``user:connect`` and, subscribed to
  ``user:assigned``, measures each connect's latency with one monotonic clock (then
  disconnects the user, so its node goes back to the pool).

A child is ``python -m provisioner.bench.throughput flood|probe JSON`` (:func:`main`,
started with :func:`start_loadgen`); it prints its result as one JSON object, read back with
:func:`loadgen_result`.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis

from provisioner.bench.throughput.common import FLOOD_USERS, SLOW_S
from provisioner.core.keys import Channels
from provisioner.harness import json_result, start_json_child

__all__ = ["flood", "loadgen_result", "main", "probe", "start_loadgen"]

#: The module run by ``python -m`` for a child (its ``__main__`` calls :func:`main`).
CHILD_MODULE = "provisioner.bench.throughput"


def _resp(*parts: bytes) -> bytes:
    """One Redis command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


def flood(
    redis_url: str, channel: str, rate: float, duration_s: float, seed: int
) -> dict[str, Any]:
    """Publish ``rate * duration_s`` ``user:activity`` events paced at ``rate`` events/s.

    Pre-encoded RESP PUBLISH commands go out on a raw socket in one write per 5 ms
    slice; the replies (one integer each) are read back before the next slice, so the
    publisher never runs ahead of Redis.  A publisher starved past the duration sends
    the rest at once.

    Returns:
        ``{"published": n, "seconds": s}``.
    """
    conn = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs
    rng = random.Random(seed)
    ts = int(time.time())
    cmds = [
        _resp(
            b"PUBLISH",
            channel.encode(),
            json.dumps(
                {"user_id": str(uuid.UUID(int=rng.getrandbits(128))), "timestamp": ts}
            ).encode(),
        )
        for _ in range(FLOOD_USERS)
    ]
    sock = socket.create_connection((conn.get("host", "127.0.0.1"), conn.get("port", 6379)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if conn.get("password"):
        sock.sendall(_resp(b"AUTH", str(conn["password"]).encode()))
        sock.recv(64)
    sent = 0
    total = int(rate * duration_s)
    started = time.monotonic()

    def send(n: int) -> None:
        sock.sendall(b"".join(rng.choice(cmds) for _ in range(n)))
        buf = b""
        while buf.count(b"\r\n") < n:  # one integer reply per PUBLISH
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the flood connection")
            buf += chunk

    try:
        while sent < total:
            el = time.monotonic() - started
            # what is due by now; after the duration (a starved publisher) the rest at once
            due = (total if el >= duration_s else min(int(rate * el) + 1, total)) - sent
            if due > 0:
                send(due)
                sent += due
            if sent < total:
                time.sleep(0.005)
    finally:
        sock.close()
    return {"published": sent, "seconds": time.monotonic() - started}


async def probe(
    redis_url: str, prefix: str, rate: float, duration_s: float, tag: str
) -> dict[str, Any]:
    """Publish connects at ``rate``/s and time each to its ``user:assigned`` (ms).

    A user that got its node is disconnected at once, so the node returns to the pool.

    Returns:
        ``{"connects": n, "latencies_ms": [...]}``.
    """
    ch = Channels(prefix=prefix)
    # a loaded machine can stall Redis for seconds: the probe waits (and records it)
    pub = aioredis.Redis.from_url(redis_url, socket_timeout=SLOW_S)
    sub_client = aioredis.Redis.from_url(redis_url, socket_timeout=SLOW_S)
    sub = sub_client.pubsub(ignore_subscribe_messages=True)
    await sub.subscribe(ch.assigned)
    sent_at: dict[str, float] = {}
    lat: list[float] = []
    stop = asyncio.Event()

    async def listen() -> None:
        while not stop.is_set():
            msg = await sub.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if msg is None or msg.get("type") != "message":
                continue
            t = time.monotonic()
            try:
                user = json.loads(msg["data"])["user_id"]
            except (ValueError, KeyError, TypeError):
                continue
            t0 = sent_at.pop(user, None)
            if t0 is not None:
                lat.append((t - t0) * 1000.0)
                await pub.publish(ch.disconnect, json.dumps({"user_id": user}))

    task = asyncio.create_task(listen())
    started = time.monotonic()
    i = 0
    try:
        while True:
            due = started + i / rate
            if due - started >= duration_s:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            user = f"probe-{tag}-{i}"
            payload = json.dumps({"user_id": user})
            sent_at[user] = time.monotonic()
            await pub.publish(ch.connect, payload)
            i += 1
        deadline = time.monotonic() + 5.0
        while sent_at and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await sub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
        await sub_client.aclose()
        await pub.aclose()
    return {"connects": i, "latencies_ms": lat}


def main(argv: list[str]) -> None:
    """``python -m provisioner.bench.throughput flood|probe JSON``: run one load generator
    with the arguments in JSON and print its result as JSON on stdout."""
    what, cfg = argv[0], json.loads(argv[1])
    if what == "flood":
        out = flood(cfg["url"], cfg["channel"], cfg["rate"], cfg["duration_s"], cfg["seed"])
    else:
        out = asyncio.run(
            probe(cfg["url"], cfg["prefix"], cfg["rate"], cfg["duration_s"], cfg["tag"])
        )
    sys.stdout.write(json.dumps(out))


def start_loadgen(what: str, cfg: dict[str, Any]) -> subprocess.Popen[str]:
    """Start the load generator ``what`` (``flood`` or ``probe``) with the arguments
    ``cfg`` (the keyword arguments of :func:`flood` or :func:`probe`, the URL as ``url``)
    as a child process; read its result with :func:`loadgen_result`."""
    return start_json_child(CHILD_MODULE, [what, json.dumps(cfg)])


def loadgen_result(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, Any]:
    """The result of a child from :func:`start_loadgen`, waiting up to ``timeout_s`` seconds.

    Raises:
        click.ClickException: the child hung (it is killed) or failed.
    """
    return json_result(proc, timeout_s)
