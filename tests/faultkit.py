"""The fault-injection suite's stack: mock Node API, replicas, traffic and ground truth.

Everything is a real process or a real connection: ``provisioner mock-node-api`` and
``provisioner run`` subprocesses on a real redis-server, driven over real Pub/Sub.  The
test itself is the simulator: :class:`Traffic` publishes connects and disconnects and
keeps the ground truth (what it published), :class:`Assigned` records every
``user:assigned`` the scripts published.  Every wait is a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from provisioner.core.invariants import check_invariants
from provisioner.core.keys import Channels, PoolKeys
from provisioner.core.leader import UNOBSERVED_TIMEOUT_FACTOR
from provisioner.harness import free_port
from tests.procs import Replicas, subscribers
from tests.procs import wait_until as _wait_until

# Short timings so the suite is fast, yet not so short that a loaded 2-core machine
# (load 10 seen while other engineers benchmark) fails over by itself: lease 2 s, tick
# 0.2 s, markers every 50 ms, a PING probe after 1 s without a marker (dead after 1 s
# more without its answer).
LEASE_S = 2.0
TICK_S = 0.2
MARKER_TIMEOUT_S = 1.0
REDIS_TIMEOUT_S = 3.0  # the default: shorter ones time out on a heavily loaded machine
FAST = (
    "--lease-ttl", str(LEASE_S), "--tick", str(TICK_S), "--marker-interval", "0.05",
    "--marker-timeout", str(MARKER_TIMEOUT_S), "--health-check-interval", "0.5",
    "--redis-timeout", str(REDIS_TIMEOUT_S), "--unknown-grace", "1.0",
    "--min-boot-timeout", "3.0", "--default-boot", "0.5", "--api-timeout", "2.0",
)  # fmt: skip
LIVE = ("booting", "ready", "allocated", "terminating")
# Replica options for tests of stuck boots: before any boot is seen, a node is stuck after
# the floor (0.3 s, over 3 x the 0.1 s default boot) x UNOBSERVED_TIMEOUT_FACTOR.  With
# FAST's floor of 3 s that is 30 s, as long as a test's deadline (a race seen in CI).
QUICK_STUCK = ("--min-boot-timeout", "0.3", "--default-boot", "0.1")
QUICK_STUCK_S = 0.3 * UNOBSERVED_TIMEOUT_FACTOR
# Deadlines are generous (a passing run never waits them out): on a 2-core machine at load
# 15, seen while other engineers benchmark, a replica took over 30 s just to start.
DEADLINE_SLACK = 2.0


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    """:func:`tests.procs.wait_until` with the deadline stretched by ``DEADLINE_SLACK``."""
    _wait_until(pred, timeout_s * DEADLINE_SLACK, what)


def _http(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


class MockApi:
    """A ``provisioner mock-node-api`` process on a free port."""

    def __init__(self, redis_url: str, prefix: str, logdir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(logdir / "mock.log", "wb")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "--redis-url", redis_url,
             "--channel-prefix", prefix, "mock-node-api", "--port", str(self.port),
             "--terminate-delay", "0.05", *args],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        try:
            wait_until(self._up, 20, "mock API to listen")
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        try:
            _http(f"{self.url}/api/admin/config")
            return True
        except (urllib.error.URLError, OSError):
            return False

    def ledger(self) -> list[dict[str, Any]]:
        """Every node the API ever created (the ground truth of nodes)."""
        nodes: list[dict[str, Any]] = _http(f"{self.url}/api/ledger")["nodes"]
        return nodes

    def alive(self) -> list[dict[str, Any]]:
        """Nodes alive at the API: created, not deleted, not terminated."""
        return [n for n in self.ledger() if n["status"] != "terminated" and not n["delete_ms"]]

    def patch(self, **changes: Any) -> None:
        """Change the emulated reality (``PATCH /api/admin/config``)."""
        _http(f"{self.url}/api/admin/config", "PATCH", changes)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Assigned(threading.Thread):
    """Records every ``user:assigned`` message: ``(monotonic time, payload)``."""

    def __init__(self, redis_url: str, channel: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.ps = self.client.pubsub(ignore_subscribe_messages=True)
        self.ps.subscribe(channel)
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._halt = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                m = self.ps.get_message(timeout=0.1)
            except (redis.ConnectionError, OSError):
                time.sleep(0.1)
                continue
            if m is not None:
                self.events.append((time.monotonic(), json.loads(m["data"])))

    def per_user(self) -> Counter[str]:
        return Counter(e["user_id"] for _, e in self.events)

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.ps.close()
        self.client.close()


class Traffic(threading.Thread):
    """The simulator: users connect, hold a node for a while, disconnect, again.

    Ground truth is what was published: ``connects``, ``disconnects`` and the set of
    users whose last published message was a connect (``connected``).  A publish that
    raised (Redis down) is not counted and the user keeps its state.
    """

    def __init__(
        self, redis_url: str, ch: Channels, users: int = 8, hold_s: tuple[float, float] = (0.2, 1.0)
    ) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.ch = ch
        self.users = [f"user-{i}" for i in range(users)]
        self.hold_s = hold_s
        self.rng = random.Random(7)
        self.connected: set[str] = set()
        self.connects = 0
        self.disconnects = 0
        self.unheard = 0  # publishes that reached no subscriber
        self._halt = threading.Event()
        self._paused = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        due = {u: time.monotonic() + self.rng.uniform(0, 0.5) for u in self.users}
        while not self._halt.is_set():
            if self._paused.is_set():
                time.sleep(0.02)
                continue
            now = time.monotonic()
            user = min(due, key=due.__getitem__)
            if due[user] > now:
                time.sleep(min(0.02, due[user] - now))
                continue
            with self.lock:
                on = user in self.connected
                channel = self.ch.disconnect if on else self.ch.connect
                try:
                    heard = self.client.publish(channel, json.dumps({"user_id": user}))
                except (redis.ConnectionError, OSError):
                    due[user] = now + 0.1
                    continue
                self.unheard += heard == 0
                if on:
                    self.connected.discard(user)
                    self.disconnects += 1
                else:
                    self.connected.add(user)
                    self.connects += 1
            due[user] = now + self.rng.uniform(*self.hold_s)

    def pause(self) -> None:
        """Stop publishing (returns once no publish is in progress)."""
        self._paused.set()
        with self.lock:
            pass

    def resume(self) -> None:
        self._paused.clear()

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.client.close()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` (with these labels) in a text exposition."""
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


class Stack:
    """A pool's processes: the mock API (optional) and replicas, with helpers.

    Args:
        redis_url: the server (the session's, or a private one).
        pool: the pool name; channels are prefixed ``<pool>.``.
        logdir: where the processes log.
        mock_args: extra ``mock-node-api`` options (None: no mock, a dead API URL).
        replica_args: extra ``run`` options for every replica (after :data:`FAST`).
    """

    def __init__(
        self,
        redis_url: str,
        pool: str,
        logdir: Path,
        mock_args: tuple[str, ...] | None = ("--boot-min", "0.3", "--boot-max", "0.5"),
        replica_args: tuple[str, ...] = ("--policy", "static", "--min-spare", "2"),
    ) -> None:
        self.redis_url = redis_url
        self.pool = pool
        self.prefix = f"{pool}."
        self.ch = Channels(self.prefix, pool)
        self.keys = PoolKeys(pool)
        self.logdir = logdir
        self.r = redis.Redis.from_url(redis_url, decode_responses=True)
        self.assigned = Assigned(redis_url, self.ch.assigned)
        self.group = Replicas(redis_url, pool, self.prefix, logdir)
        self.ports: dict[str, int] = {}
        self.replica_args = replica_args
        try:
            self.mock = (
                MockApi(redis_url, self.prefix, logdir, *mock_args)
                if mock_args is not None
                else None
            )
        except BaseException:
            self.assigned.close()
            self.r.close()
            raise
        self.api_url = self.mock.url if self.mock else f"http://127.0.0.1:{free_port()}"

    # -- replicas ------------------------------------------------------------------
    def start(self, name: str, *extra: str, redis_url: str | None = None) -> None:
        """Start replica ``name`` (its metrics on a free port)."""
        port = self.ports.setdefault(name, free_port())
        group = self.group
        url, group.redis_url = group.redis_url, redis_url or self.redis_url
        try:
            group.start_replica(
                name, "--node-api-url", self.api_url, "--metrics-host", "127.0.0.1",
                "--metrics-port", str(port), *FAST, *self.replica_args, *extra,
            )  # fmt: skip
        finally:
            group.redis_url = url

    def start_all(self, names: list[str], timeout_s: float = 60) -> None:
        """Start replicas and wait until each is subscribed and one leads."""
        for n in names:
            self.start(n)
        self.wait_subscribed(len(names), timeout_s)
        wait_until(lambda: self.leader() in names, timeout_s, "a leader")

    def wait_subscribed(self, n: int, timeout_s: float = 30) -> None:
        """Wait until ``n`` replicas subscribe and a marker was published since: a replica
        drops what it cannot name yet, so only then is every new message applied."""
        wait_until(lambda: subscribers(self.r, self.ch.marker) == n, timeout_s, f"{n} subscribers")
        seq = int(self.r.get(self.keys.seq) or 0)
        wait_until(lambda: int(self.r.get(self.keys.seq) or 0) > seq, timeout_s, "a marker")

    def metrics(self, name: str) -> str:
        """The replica's ``/metrics`` text ('' when it does not answer)."""
        try:
            req = f"http://127.0.0.1:{self.ports[name]}/metrics"
            with urllib.request.urlopen(req, timeout=3) as resp:
                return str(resp.read().decode())
        except (urllib.error.URLError, OSError):
            return ""

    def metric(self, name: str, metric_name: str, **labels: str) -> float:
        return metric(self.metrics(name), metric_name, **labels)

    def log(self, name: str) -> str:
        return self.group.log(name)

    def logs(self) -> str:
        return "\n".join(self.group.log(n) for n in self.group.procs)

    # -- state -------------------------------------------------------------------------
    def leader(self) -> str | None:
        """The lease holder, if the lease is live."""
        lease = self.r.hgetall(self.keys.leader)
        if not lease or int(lease.get("expires_ms", 0)) < time.time() * 1000:
            return None
        return lease.get("holder")

    def token(self) -> int:
        return int(self.r.hget(self.keys.leader, "token") or 0)

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.r.hgetall(self.keys.stats).items()}

    def stat(self, name: str) -> int:
        return int(self.r.hget(self.keys.stats, name) or 0)

    def states(self) -> dict[str, str]:
        return dict(self.r.hgetall(self.keys.node_state))

    def invariants(self) -> list[str]:
        """I1 and the set invariants, on one atomic read."""

        async def go() -> list[str]:
            # the observer must not fail on a slow moment of a loaded machine
            client = aioredis.Redis.from_url(
                self.redis_url, decode_responses=True, socket_timeout=30
            )
            try:
                return await check_invariants(client, self.keys)
            finally:
                await client.aclose()

        return asyncio.run(go())

    def node_mismatches(self) -> list[str]:
        """I3/I4 against the mock's ledger: every node alive at the API is live in
        Redis, and every node live in Redis (but terminating) is alive at the API."""
        assert self.mock is not None
        states = self.states()
        out = []
        ledger = {n["id"]: n for n in self.mock.ledger()}
        for node in self.mock.alive():
            st = states.get(node["id"])
            if st not in LIVE:
                out.append(f"{node['id']} alive at the API ({node['status']}) but {st} in Redis")
            elif (st == "booting") != (node["status"] == "booting"):
                out.append(f"{node['id']} {node['status']} at the API but {st} in Redis")
        for node, st in states.items():
            if st in ("booting", "ready", "allocated"):
                rec = ledger.get(node)
                if rec is None or rec["status"] == "terminated" or rec["delete_ms"]:
                    out.append(f"{node} {st} in Redis but not alive at the API")
        return out

    def user_mismatches(self, truth: set[str]) -> list[str]:
        """I4 for users: Redis's connected users (holding or waiting) are the truth."""
        holding = set(self.r.hkeys(self.keys.user_node))
        waiting = set(self.r.zrange(self.keys.users_waiting, 0, -1))
        out = []
        if holding & waiting:
            out.append(f"holding and waiting: {holding & waiting}")
        if holding | waiting != truth:
            out.append(f"connected in Redis {sorted(holding | waiting)}, truth {sorted(truth)}")
        return out

    def close(self) -> None:
        """Stop every process and connection, each even when another step fails."""
        steps = [self.group.stop_all, self.assigned.close]
        if self.mock is not None:
            steps.append(self.mock.stop)
        steps.append(self.r.close)
        errors = []
        for step in steps:
            try:
                step()
            except Exception as e:  # stop the rest, then report the first
                errors.append(e)
        if errors:
            raise errors[0]


def assert_accounting(stack: Stack, traffic: Traffic, observer_cut: bool = False) -> dict[str, int]:
    """Once-only: every published connect and disconnect reached a replica and was
    applied exactly once, each connect was served once (a hit or a late assignment) or
    left the waitlist first, and one ``user:assigned`` went out per served connect
    (unless ``observer_cut``: the test's own subscriber was cut too).  No preemption.

    Returns:
        The pool's counters.
    """
    s = stack.stats()
    served = s.get("hits", 0) + s.get("assigned_late", 0)
    assert s.get("connects", 0) == traffic.connects, (s, traffic.connects)
    assert s.get("disconnects", 0) == traffic.disconnects, (s, traffic.disconnects)
    assert served + s.get("never_served", 0) == traffic.connects, s
    assert traffic.unheard == 0, "a message was published while no replica listened"
    if not observer_cut:
        assert len(stack.assigned.events) == served, (s, len(stack.assigned.events))
    return s


def settle(stack: Stack, traffic: Traffic, timeout_s: float = 20) -> None:
    """After the traffic stopped: wait until Redis agrees with the ground truth (I4)."""

    def ok() -> bool:
        return (
            stack.stat("connects") == traffic.connects
            and stack.stat("disconnects") == traffic.disconnects
            and not stack.user_mismatches(traffic.connected)
            and stack.r.zcard(stack.keys.users_waiting) == 0
        )

    try:
        wait_until(ok, timeout_s, "Redis to match the ground truth")
    except AssertionError as e:
        raise AssertionError(
            f"{e}: {stack.stats()} truth {traffic.connects}/{traffic.disconnects} "
            f"{stack.user_mismatches(traffic.connected)}"
        ) from None
