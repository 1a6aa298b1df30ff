"""Fault injection on replicas under traffic: kill -9 one of three, rolling SIGTERM.

The test is the simulator (:class:`tests.faultkit.Traffic`): users connect, hold a node
for 0.2-1 s and disconnect, again and again, over real Pub/Sub.  The ground truth is
what it published; the check is exact: every connect and disconnect applied once
(``P:stats``), one ``user:assigned`` per served connect, Redis's connected users equal
the published ones, and the mock API's nodes equal Redis's (I4).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from provisioner.sim import scenarios
from provisioner.sim.simulate import SimResult, run_simulation
from tests.faultkit import (
    LEASE_S,
    MARKER_TIMEOUT_S,
    Stack,
    Traffic,
    assert_accounting,
    settle,
    wait_until,
)

pytestmark = pytest.mark.slow

POOL = ("--policy", "static", "--min-spare", "3", "--keep-alive", "2")
NAMES = ["a", "b", "c"]


def _run_traffic(stack: Stack, seconds: float) -> None:
    """Let the traffic flow for ``seconds`` while checking I1 every 0.5 s."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert stack.invariants() == []
        time.sleep(0.5)


def _churn(stack: Stack) -> str:
    assert stack.mock is not None
    return (
        f"{len(stack.mock.ledger())} nodes created, {stack.stat('reaped_idle')} reaped idle, "
        f"{len(stack.mock.alive())} alive at the end = connected + 3 spare"
    )


def _check_after(stack: Stack, traffic: Traffic) -> dict[str, int]:
    traffic.close()
    settle(stack, traffic)
    stats = assert_accounting(stack, traffic)
    assert stack.invariants() == []
    wait_until(lambda: not stack.node_mismatches(), 10, "Redis to match the API's ledger")
    # nothing leaks (I4): past the 2 s keep-alive only the connected users' nodes and the
    # 3 spares stay alive at the API
    assert stack.mock is not None
    want = len(traffic.connected) + 3
    wait_until(lambda: len(stack.mock.alive()) == want, 15, f"{want} nodes alive at the API")
    assert "Traceback" not in stack.logs()
    return stats


def test_kill_one_of_three_replicas_during_a_steady_run(stack_factory: Any) -> None:
    stack: Stack = stack_factory(replica_args=POOL)
    stack.start_all(NAMES)
    traffic = Traffic(stack.redis_url, stack.ch)
    traffic.start()
    _run_traffic(stack, 3)
    victim = stack.leader()
    assert victim is not None
    before = traffic.connects + traffic.disconnects
    stack.group.signal(victim, signal.SIGKILL)
    _run_traffic(stack, 4)
    during = traffic.connects + traffic.disconnects - before
    stats = _check_after(stack, traffic)
    print(
        f"FAULT kill-replica: killed the leader of 3 under traffic; {traffic.connects} "
        f"connects / {traffic.disconnects} disconnects ({during} after the kill) each applied "
        f"once, {len(stack.assigned.events)} user:assigned = hits {stats.get('hits', 0)} + "
        f"late {stats.get('assigned_late', 0)}, never served {stats.get('never_served', 0)}; "
        f"{_churn(stack)}"
    )
    assert during >= 20


def test_rolling_restart_hands_the_lease_over_and_loses_nothing(stack_factory: Any) -> None:
    stack: Stack = stack_factory(replica_args=POOL)
    stack.start_all(NAMES)
    traffic = Traffic(stack.redis_url, stack.ch)
    traffic.start()
    _run_traffic(stack, 1.5)
    handovers: list[float] = []
    for name in NAMES:
        leading = stack.leader() == name
        proc = stack.group.procs[name]
        token = stack.token()
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        if leading:
            wait_until(
                lambda n=name, t=token: stack.leader() not in (None, n) and stack.token() > t,
                5,
                "the lease to pass on",
            )
            handovers.append(time.monotonic() - t0)
        assert proc.wait(timeout=15) == 0
        stack.start(name)
        stack.wait_subscribed(3)
        _run_traffic(stack, 1.0)
    stats = _check_after(stack, traffic)
    assert len(handovers) >= 1
    assert "released lease" in stack.logs()
    print(
        f"FAULT rolling-restart: SIGTERM of each of 3 replicas in turn under traffic; lease "
        f"handed over in {', '.join(f'{h:.2f}s' for h in handovers)} (lease {LEASE_S}s); "
        f"{traffic.connects} connects / {traffic.disconnects} disconnects each applied once, "
        f"never served {stats.get('never_served', 0)}; {_churn(stack)}"
    )
    # each leader released its lease on SIGTERM (after its API calls in flight, bounded),
    # so the next took over without waiting for the expiry
    assert stack.logs().count("leader: released lease") >= len(handovers)
    assert max(handovers) < 2 * LEASE_S


def test_kill_one_of_three_under_the_simulator(stack_factory: Any, tmp_path: Path) -> None:
    """The real simulator (scenario ``cold`` at x40: activity, connects, disconnects of
    UUID users) against three replicas; kill -9 of a follower half way.  Its ground truth
    (every message it published, who is connected) must equal Redis's."""
    scale = 40.0
    wl = scenarios.build("cold", 3)
    boot = wl.boot
    mock = (
        "--boot-min", str(boot.min_s), "--boot-max", str(boot.max_s), "--seed", "3",
        "--time-scale", str(scale),
    )  # fmt: skip
    stack: Stack = stack_factory(mock, POOL)
    stack.start_all(NAMES)
    sim = SimResult(wl.name, scale)
    runner = threading.Thread(
        target=lambda: asyncio.run(
            run_simulation(wl, stack.redis_url, scale, stack.prefix, max_wall_s=8.0, result=sim)
        ),
        daemon=True,
    )
    runner.start()
    time.sleep(4)
    leader = stack.leader()
    victim = next(n for n in NAMES if n != leader)
    stack.group.signal(victim, signal.SIGKILL)
    runner.join(timeout=30)
    assert not runner.is_alive()
    connects, disconnects = sim.count("connect"), sim.count("disconnect")

    def matches() -> bool:
        return (
            stack.stat("connects") == connects
            and stack.stat("disconnects") == disconnects
            and not stack.user_mismatches(sim.connected)
            and stack.r.zcard(stack.keys.users_waiting) == 0
        )

    wait_until(matches, 20, "Redis to match the simulator's ground truth")
    s = stack.stats()
    assert s["activity"] == sim.count("activity")
    served = s.get("hits", 0) + s.get("assigned_late", 0)
    assert served + s.get("never_served", 0) == connects
    assert len(stack.assigned.events) == served
    assert stack.invariants() == []
    wait_until(lambda: not stack.node_mismatches(), 10, "Redis to match the API's ledger")
    assert "Traceback" not in stack.logs()
    print(
        f"FAULT kill-replica-simulator: scenario cold x{scale:.0f}, a follower of 3 killed "
        f"half way; {sim.count('activity')} activity / {connects} connects / {disconnects} "
        f"disconnects each applied once, {served} served ({s.get('hits', 0)} hits), "
        f"{len(sim.connected)} connected at the end = Redis"
    )
    assert connects >= 20


def test_a_stall_of_every_replica_drops_no_message(stack_factory: Any) -> None:
    """Regression (found under load 15): every replica froze at once, so no marker flowed;
    on waking, all took the subscription for dead at the same moment and resubscribed,
    dropping what was published until the next marker (8 connects lost).  Now a PING on
    the subscription answers first: nobody resubscribes and nothing is lost."""
    stack: Stack = stack_factory(replica_args=POOL)
    stack.start_all(["a", "b"])
    traffic = Traffic(stack.redis_url, stack.ch)
    traffic.start()
    _run_traffic(stack, 1.0)
    for name in ("a", "b"):
        stack.group.signal(name, signal.SIGSTOP)
    try:
        time.sleep(3 * MARKER_TIMEOUT_S)  # the traffic keeps publishing into their buffers
    finally:
        for name in ("a", "b"):
            stack.group.signal(name, signal.SIGCONT)
    _run_traffic(stack, 2.0)
    _check_after(stack, traffic)
    lost = stack.logs().count("subscription lost")
    print(
        f"FAULT stall-all: both replicas frozen {3 * MARKER_TIMEOUT_S:.0f}s under traffic; "
        f"{lost} resubscribes, {traffic.connects} connects each applied once"
    )
    assert lost == 0


def test_a_second_process_with_the_same_replica_id_waits_for_the_lease(
    stack_factory: Any,
) -> None:
    """Break-test finding: two processes started with one ``--replica-id`` both led, with
    one fencing token that could not tell them apart.  The second now waits, says why
    (log and ``provisioner_lease_conflicts_total``), and takes over with a token of its
    own when the first is killed."""
    stack: Stack = stack_factory(replica_args=POOL)
    stack.start_all(["a"])
    token = stack.token()
    stack.start("twin", "--replica-id", "a")
    wait_until(
        lambda: stack.metric("twin", "provisioner_lease_conflicts_total") >= 1,
        15,
        "the twin to find the lease held under its id",
    )
    assert "replica ids must be unique" in stack.log("twin")
    assert stack.metric("twin", "provisioner_lease_held") == 0
    assert stack.metric("a", "provisioner_lease_held") == 1
    assert stack.token() == token
    stack.group.procs["a"].kill()
    wait_until(
        lambda: stack.metric("twin", "provisioner_lease_held") == 1,
        4 * LEASE_S,
        "the twin to take the lease",
    )
    assert stack.leader() == "a" and stack.token() > token
    assert stack.invariants() == []
    # fresh-user finding: a replica stopped cleanly stayed listed in `status`
    twin = stack.group.procs["twin"]
    twin.send_signal(signal.SIGTERM)
    assert twin.wait(timeout=15) == 0
    assert stack.r.zscore(stack.keys.replicas, "a") is None
