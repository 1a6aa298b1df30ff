"""Fault injection on Redis: restart with AOF, SCRIPT FLUSH, CLIENT KILL TYPE pubsub, and a
half-open connection (a TCP proxy in the test black-holes a replica's traffic).

Real ``provisioner run`` processes and the mock Node API.  The restart and the pubsub
kill run on a private redis-server (they would disturb the session's), the others on the
session's server.  Each test prints its measured figure (``pytest -rP``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from provisioner.core.scripts import REGISTRY
from provisioner.harness import free_port, local_redis
from tests.faultkit import (
    MARKER_TIMEOUT_S,
    QUICK_STUCK,
    QUICK_STUCK_S,
    Stack,
    Traffic,
    assert_accounting,
    settle,
    wait_until,
)
from tests.procs import subscribers

pytestmark = pytest.mark.slow

POOL = ("--policy", "static", "--min-spare", "2", "--keep-alive", "1000")
HALF_OPEN_TIMEOUT_S = 1.5  # the black-holed replica's command timeout


def _finish(stack: Stack, traffic: Traffic, observer_cut: bool = False) -> dict[str, int]:
    traffic.close()
    settle(stack, traffic)
    stats = assert_accounting(stack, traffic, observer_cut)
    assert stack.invariants() == []
    wait_until(lambda: not stack.node_mismatches(), 15, "Redis to match the API's ledger")
    logs = stack.logs()
    assert "NOSCRIPT" not in logs
    assert "Traceback" not in logs
    return stats


def test_redis_restart_with_aof(tmp_path: Path, pool: str) -> None:
    """Stop and restart redis-server (AOF on) mid-run: replicas resubscribe within a few
    seconds, state survives, no NOSCRIPT escapes, assignments resume."""
    with local_redis(appendonly=True) as server:
        stack = Stack(server.url, pool, tmp_path, replica_args=POOL)
        traffic = Traffic(server.url, stack.ch)
        try:
            stack.start_all(["a", "b"])
            traffic.start()
            time.sleep(2)
            traffic.pause()  # nothing is published while nobody can listen: exact truth
            wait_until(lambda: stack.stat("connects") == traffic.connects, 10, "ingest")
            before = stack.stats()
            t0 = time.monotonic()
            server.restart()
            up = time.monotonic()
            stack.wait_subscribed(2, 20)
            resubscribed = time.monotonic() - t0
            assert stack.stats() == before  # the AOF kept every counter
            traffic.resume()
            served = len(stack.assigned.events)
            time.sleep(2)
            stats = _finish(stack, traffic, observer_cut=True)  # the restart cut it too
            after = len(stack.assigned.events) - served
            print(
                f"FAULT redis-restart-aof: down {up - t0:.2f}s, both replicas resubscribed "
                f"{resubscribed:.2f}s after the stop; {after} assignments after it; "
                f"{traffic.connects} connects each applied once, no NOSCRIPT"
            )
            assert after >= 3
            assert resubscribed < 5.0
            assert stats["connects"] > before["connects"]
        finally:
            traffic.close()
            stack.close()


def _script_loads(stack: Stack) -> int:
    stats = stack.r.info("commandstats").get("cmdstat_script|load", {})
    return int(stats.get("calls", 0))


def test_script_flush_under_traffic(stack_factory: Any) -> None:
    """SCRIPT FLUSH five times while traffic flows: scripts are reloaded transparently,
    nothing is lost or applied twice, no NOSCRIPT escapes."""
    stack: Stack = stack_factory(replica_args=POOL)
    stack.start_all(["a", "b"])
    traffic = Traffic(stack.redis_url, stack.ch)
    traffic.start()
    loads = _script_loads(stack)
    for _ in range(5):
        time.sleep(0.6)
        stack.r.script_flush()
    time.sleep(1)
    stats = _finish(stack, traffic)
    reloads = _script_loads(stack) - loads
    assert reloads >= 5 * len(REGISTRY)  # the flushes were hit: NOSCRIPT, then reloaded
    print(
        f"FAULT script-flush: 5 flushes in 3 s under traffic; {traffic.connects} connects / "
        f"{traffic.disconnects} disconnects each applied once, "
        f"{len(stack.assigned.events)} user:assigned, {reloads} scripts reloaded, no NOSCRIPT "
        f"in the logs"
    )
    assert stats["connects"] >= 10


def test_client_kill_pubsub_and_a_ready_lost_in_the_gap(tmp_path: Path, pool: str) -> None:
    """``CLIENT KILL TYPE pubsub`` cuts every subscriber: each replica counts the cut and
    resubscribes.  A ``ready`` published into the gap (PUBLISH reached 0 subscribers) is
    lost; the stuck-boot reconcile deletes that node and boots a replacement."""
    with local_redis() as server:
        stack = Stack(
            server.url,
            pool,
            tmp_path,
            ("--boot-min", "0.3", "--boot-max", "0.5", "--seed", "5", "--lost-ready-p", "1"),
            ("--policy", "static", "--min-spare", "1", "--keep-alive", "1000", *QUICK_STUCK),
        )
        try:
            stack.start_all(["a", "b"])
            mock = stack.mock
            assert mock is not None
            wait_until(lambda: stack.r.zcard(stack.keys.nodes_booting) == 1, 10, "a boot")
            node = stack.r.zrange(stack.keys.nodes_booting, 0, 0)[0]
            wait_until(lambda: mock.ledger()[0]["status"] == "ready", 5, "the node ready")
            mock.patch(lost_ready_p=0.0)
            payload = json.dumps({"node_id": node, "status": "ready"})
            for _ in range(20):  # publish into the gap: no subscriber may hear it
                killed = int(stack.r.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
                t0 = time.monotonic()
                if killed and stack.r.publish(stack.ch.node_status, payload) == 0:
                    break
                stack.wait_subscribed(2, 10)
            else:
                pytest.fail("could not publish into the gap")
            stack.wait_subscribed(2, 10)
            resubscribed = time.monotonic() - t0
            wait_until(
                lambda: all(
                    stack.metric(n, "provisioner_redis_reconnects_total") >= 1 for n in "ab"
                ),
                5,
                "each replica to count the cut",
            )
            wait_until(lambda: stack.r.zcard(stack.keys.nodes_ready) == 1, 20, "a replacement")
            replaced = time.monotonic() - t0
            assert stack.states()[node] in ("terminating", "terminated")
            assert stack.stat("boot_timeouts") >= 1
            wait_until(lambda: not stack.node_mismatches(), 10, "Redis to match the ledger")
            assert stack.invariants() == []
            assert "Traceback" not in stack.logs()
            gaps = sum(stack.metric(n, "provisioner_subscription_gap_markers_total") for n in "ab")
            print(
                f"FAULT client-kill-pubsub: {killed} subscribers cut, both resubscribed in "
                f"{resubscribed:.2f}s, reconnects counted, {gaps:.0f} gap markers counted; the "
                f"ready lost in the gap: node deleted as a stuck boot and replaced "
                f"{replaced:.1f}s later (stuck after {QUICK_STUCK_S:.0f} s)"
            )
        finally:
            stack.close()


class BlackHoleProxy:
    """A loopback TCP proxy to Redis that can black-hole its current connections: the
    bytes are swallowed both ways and nothing is closed (a half-open connection).
    Connections made after :meth:`black_hole` pass normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.pairs: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            frozen = threading.Event()
            with self.lock:
                self.pairs.append((client, upstream, frozen))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, frozen), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, frozen: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if not frozen.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def black_hole(self) -> int:
        with self.lock:
            for _, _, frozen in self.pairs:
                frozen.set()
            return len(self.pairs)

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        with self.lock:
            for a, b, _ in self.pairs:
                a.close()
                b.close()


def test_half_open_connection_is_detected_and_remade(stack_factory: Any, redis_url: str) -> None:
    """The leader ``a`` reaches Redis through a proxy that black-holes all its connections:
    it detects the dead subscription (no marker for 1 s, then no answer to a PING for 1 s),
    drops its other connections and resubscribes; its heartbeat resumes; there is one live
    leader (``a`` renewed on a fresh connection in time, or lost the lease to ``b`` and its
    late renewal was refused); ``b`` stays subscribed throughout, so no message is lost."""
    target = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = BlackHoleProxy(target)
    stack: Stack = stack_factory(replica_args=POOL)
    traffic = Traffic(stack.redis_url, stack.ch)
    try:
        stack.start("a", "--redis-timeout", str(HALF_OPEN_TIMEOUT_S), redis_url=proxy.url)
        stack.wait_subscribed(1)
        wait_until(lambda: stack.leader() == "a", 10, "a to lead")
        stack.start("b")
        stack.wait_subscribed(2)
        traffic.start()
        time.sleep(1)
        cuts = stack.metric("a", "provisioner_redis_reconnects_total")
        subs = stack.log("a").count("INFO provisioner.core.worker: subscribed to")
        fences = stack.metric("a", "provisioner_fenced_total")
        holed = proxy.black_hole()
        t0 = time.monotonic()
        wall0 = time.time() * 1000
        wait_until(
            lambda: stack.metric("a", "provisioner_redis_reconnects_total") > cuts,
            15,
            "a to notice the dead subscription",
        )
        detected = time.monotonic() - t0
        wait_until(
            lambda: stack.log("a").count("INFO provisioner.core.worker: subscribed to") > subs,
            15,
            "a to resubscribe",
        )
        resubscribed = time.monotonic() - t0
        wait_until(
            lambda: (stack.r.zscore(stack.keys.replicas, "a") or 0) > wall0 + 500,
            20,
            "a's heartbeat to resume",
        )
        beat = time.monotonic() - t0
        # a either renewed its lease on a fresh connection in time, or lost it to b and its
        # late renewal was refused; either way one live leader
        wait_until(lambda: stack.leader() is not None, 10, "a live leader")
        holder = stack.leader()
        refused = stack.metric("a", "provisioner_fenced_total") - fences
        time.sleep(1)
        stats = _finish(stack, traffic)
        print(
            f"FAULT half-open: {holed} connections of the leader black-holed; dead "
            f"subscription detected after {detected:.2f}s (marker timeout {MARKER_TIMEOUT_S} s "
            f"+ PING probe, command timeout {HALF_OPEN_TIMEOUT_S} s), resubscribed after "
            f"{resubscribed:.2f}s, heartbeat back after {beat:.2f}s; leader after it {holder} "
            f"({refused:.0f} refused renewal); {stats['connects']} connects each applied once"
        )
        # no marker for the timeout, then no answer to the PING for as long; plus a margin
        assert detected < 3 * MARKER_TIMEOUT_S
        # the marker timeout and one maintenance round, not redis-py's default 5 s per
        # pooled connection (or forever before redis-py 8.0)
        assert beat < 3 * MARKER_TIMEOUT_S + 2.0  # 6.3 s before the fix
    finally:
        traffic.close()
        proxy.close()


def test_a_slow_subscriber_cut_by_the_output_buffer_limit(tmp_path: Path, pool: str) -> None:
    """Replica ``b`` is frozen (SIGSTOP) while a flood is published; Redis cuts it at the
    pubsub output-buffer limit.  After SIGCONT it counts the cut and resubscribes, and
    since ``a`` stayed subscribed every message was applied exactly once."""
    with local_redis() as server:
        stack = Stack(server.url, pool, tmp_path, None, POOL)
        try:
            stack.r.config_set("client-output-buffer-limit", "pubsub 256kb 128kb 1")
            stack.start_all(["a", "b"])
            stack.group.signal("b", signal.SIGSTOP)
            n = 0
            try:
                pad = "x" * 900
                deadline = time.monotonic() + 20
                # Redis 7.0 has no counter of these cuts: b's subscription simply vanishes
                while subscribers(stack.r, stack.ch.marker) == 2:
                    assert time.monotonic() < deadline, "Redis never cut the frozen replica"
                    for _ in range(200):
                        payload = json.dumps({"user_id": f"flood-{n}", "timestamp": 1, "p": pad})
                        stack.r.publish(stack.ch.activity, payload)
                        n += 1
            finally:
                stack.group.signal("b", signal.SIGCONT)
            t0 = time.monotonic()
            wait_until(
                lambda: stack.metric("b", "provisioner_redis_reconnects_total") >= 1,
                15,
                "b to count the cut",
            )
            stack.wait_subscribed(2, 15)
            back = time.monotonic() - t0
            wait_until(lambda: stack.stat("activity") == n, 20, "every message applied once")
            time.sleep(0.5)
            assert stack.stat("activity") == n
            assert stack.r.zcard(stack.keys.users_active) == n
            assert "Traceback" not in stack.logs()
            print(
                f"FAULT output-buffer-cut: frozen replica cut by Redis after {n} messages "
                f"(pubsub limit 256 kB); after SIGCONT it counted the cut and resubscribed "
                f"in {back:.2f}s; the other replica applied all {n} exactly once"
            )
        finally:
            stack.close()


def test_sigterm_stops_a_replica_that_cannot_reach_redis(tmp_path: Path) -> None:
    """With Redis unreachable, the subscription's reconnects back off up to 5 s; SIGTERM
    ends the retries at once (it waited them out, and the replica stopped only at its
    10 s limit for its tasks)."""
    import subprocess
    import sys

    log = tmp_path / "replica.log"
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "--redis-url", url, "run", "--tick", "0.2"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_until(lambda: "attempt 6;" in log.read_text(), 30, "backoffs of seconds")
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=30)
            took = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"FAULT sigterm-no-redis: stopped {took:.2f}s after SIGTERM, exit {rc}")
    assert rc == 0
    assert took < 8.0, log.read_text()[-2000:]  # under the 10 s it took
