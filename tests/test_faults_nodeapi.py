"""Fault injection on the Node API (docs/design.md#3-3), with the real mock API and a real
``provisioner run``: each fault of the real world, how it is handled and where it is
counted (``P:stats``, ``provisioner_node_api_calls_total``, the mock's ledger).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.faultkit import QUICK_STUCK, QUICK_STUCK_S, Stack, wait_until
from tests.helpers import SyncCoord

pytestmark = pytest.mark.slow

BOOT = ("--boot-min", "0.3", "--boot-max", "0.5", "--seed", "11")


def _pool(spare: int, keep_alive: float = 1000) -> tuple[str, ...]:
    return ("--policy", "static", "--min-spare", str(spare), "--keep-alive", str(keep_alive))


def _one(stack_factory: Any, mock: tuple[str, ...], spare: int = 2, **kw: Any) -> Stack:
    stack: Stack = stack_factory(BOOT + mock, _pool(spare, **kw))
    stack.start_all(["a"])
    return stack


def _api_calls(stack: Stack, verb: str, outcome: str) -> float:
    return stack.metric("a", "provisioner_node_api_calls_total", verb=verb, outcome=outcome)


def _settled(stack: Stack, ready: int, timeout_s: float = 20) -> None:
    mock = stack.mock
    assert mock is not None
    wait_until(
        lambda: (
            stack.r.zcard(stack.keys.nodes_ready) == ready
            and len(mock.alive()) == ready
            and stack.r.zcard(stack.keys.intents) == 0
            and not stack.node_mismatches()
        ),
        timeout_s,
        f"{ready} ready nodes, matching the API",
    )
    assert stack.invariants() == []
    assert "Traceback" not in stack.logs()


def test_503s_back_off_then_recover(stack_factory: Any) -> None:
    stack = _one(stack_factory, ("--error-5xx-p", "1"))
    assert stack.mock is not None
    time.sleep(3)
    posts = (stack.logdir / "mock.log").read_text().count("POST /api/nodes: emulated 503")
    failed = _api_calls(stack, "create", "failed")
    stack.mock.patch(error_5xx_p=0.0)
    t0 = time.monotonic()
    _settled(stack, 2)
    recovered = time.monotonic() - t0
    print(
        f"FAULT api-503: 3 s of 503s: {posts} POSTs ({failed:.0f} creates failed after "
        f"retries, backoff), nothing created; recovered to 2 ready {recovered:.1f}s after"
    )
    assert failed >= 1
    assert posts <= 30  # without the backoff: 2 creates x 4 tries x 5 ticks/s = 120 in 3 s
    assert len(stack.mock.ledger()) == 2


def test_timeout_after_create_is_adopted_not_retried(stack_factory: Any) -> None:
    """The API creates the node but answers after the client's 2 s timeout: the POST is
    not retried (uncertain), the node's statuses arrive unknown and it is adopted into
    the open intent; exactly one node per intent."""
    stack = _one(stack_factory, ("--timeout-after-create-p", "1", "--hang", "3"))
    assert stack.mock is not None
    wait_until(lambda: _api_calls(stack, "create", "uncertain") >= 2, 10, "uncertain creates")
    stack.mock.patch(timeout_after_create_p=0.0)
    _settled(stack, 2)
    adopted = stack.log("a").count("adopted unknown node")
    print(
        f"FAULT api-timeout-after-create: 2 POSTs timed out after creating; 0 retried, "
        f"{adopted} nodes adopted into their open intents, {len(stack.mock.ledger())} created"
    )
    assert adopted == 2
    assert len(stack.mock.ledger()) == 2
    assert stack.stat("status_unknown_node") >= 2


def test_statuses_before_the_202_are_applied_at_registration(stack_factory: Any) -> None:
    """The POST answers after 0.8 s, within the timeout, but ``booting`` and ``ready``
    (boot 0.3-0.5 s) were published before: parked, then applied by registerNode."""
    stack = _one(stack_factory, ("--timeout-after-create-p", "1", "--hang", "0.8"))
    assert stack.mock is not None
    _settled(stack, 2)
    early = stack.stat("status_early_applied")
    print(f"FAULT api-status-before-202: {early} early statuses applied at registration")
    assert early >= 2
    assert _api_calls(stack, "create", "uncertain") == 0
    assert len(stack.mock.ledger()) == 2


def test_delete_404_means_gone(stack_factory: Any) -> None:
    """Two idle nodes the API does not know (it answers 404 to their DELETE) are reaped:
    recorded as terminated, counted as gone."""
    stack = _one(stack_factory, (), spare=0, keep_alive=0.5)
    sc = SyncCoord(stack.redis_url, stack.pool, stack.prefix)
    try:
        now = int(time.time() * 1000)
        for node in ("gone-1", "gone-2"):
            sc.register_node("", node, now)
            sc.node_status(node, "ready", now)
    finally:
        sc.close()
    wait_until(
        lambda: stack.states().get("gone-1") == stack.states().get("gone-2") == "terminated",
        10,
        "the gone nodes to be recorded terminated",
    )
    gone = _api_calls(stack, "delete", "gone")
    print(f"FAULT api-delete-404: 2 DELETEs answered 404: counted gone {gone:.0f}, terminated")
    assert gone == 2
    assert stack.invariants() == []


def test_boots_that_end_terminated_are_replaced(stack_factory: Any) -> None:
    stack = _one(stack_factory, ("--boot-fail-p", "1"))
    assert stack.mock is not None
    wait_until(lambda: stack.stat("boot_failed") >= 4, 15, "failed boots")
    stack.mock.patch(boot_fail_p=0.0)
    _settled(stack, 2)
    failed = stack.stat("boot_failed")
    print(
        f"FAULT api-boot-fails: {failed} boots ended terminated, counted boot_failed, each "
        f"replaced; {len(stack.mock.ledger())} created for 2 ready"
    )
    assert len(stack.mock.ledger()) >= failed + 2


def test_a_ready_that_never_comes_is_a_stuck_boot(stack_factory: Any) -> None:
    """The mock never publishes ``ready``: the node is deleted as stuck and replaced
    (``boot_timeouts``) after :data:`tests.faultkit.QUICK_STUCK_S`, the timeout before
    any boot is seen."""
    stack: Stack = stack_factory(
        (*BOOT, "--lost-ready-p", "1"),
        (*_pool(2), *QUICK_STUCK),
    )
    stack.start_all(["a"])
    assert stack.mock is not None
    timeout_s = QUICK_STUCK_S
    wait_until(lambda: len(stack.mock.ledger()) == 2, 10, "two boots")  # type: ignore[union-attr]
    t0 = time.monotonic()
    stack.mock.patch(lost_ready_p=0.0)
    wait_until(lambda: stack.stat("boot_timeouts") >= 2, 3 * timeout_s, "stuck boots reaped")
    took = time.monotonic() - t0
    _settled(stack, 2)
    deleted = [n for n in stack.mock.ledger() if n["outcome"] == "deleted"]
    print(
        f"FAULT api-lost-ready: 2 readys never published; both nodes deleted as stuck boots "
        f"{took:.1f}s later (timeout {timeout_s:.0f} s before any boot is seen), counted "
        f"boot_timeouts, replaced"
    )
    assert len(deleted) == 2
    assert all(n["ready_ms"] and not n["ready_published"] for n in deleted)
    # not deleted before the timeout: a first boot is not judged on the default guess
    assert all(n["delete_ms"] - n["created_ms"] >= timeout_s * 1000 for n in deleted)


def test_a_status_for_a_node_we_never_created(stack_factory: Any) -> None:
    """A ``ready`` for a node we never created is not handed to a waiting user; with no
    open intent it is recorded terminated and deleted (the API answers 404)."""
    stack = _one(stack_factory, (), spare=0)
    stack.r.publish(stack.ch.connect, json.dumps({"user_id": "waiter"}))
    for status in ("booting", "ready"):
        stack.r.publish(stack.ch.node_status, json.dumps({"node_id": "ghost", "status": status}))
    wait_until(lambda: stack.states().get("ghost") == "terminated", 10, "the ghost dropped")
    wait_until(lambda: stack.r.hget(stack.keys.user_node, "waiter") is not None, 10, "served")
    assert stack.r.hget(stack.keys.user_node, "waiter") != "ghost"
    unknown = stack.stat("status_unknown_node")
    print(
        f"FAULT api-unknown-node: statuses for a node we never created: {unknown} counted "
        f"status_unknown_node, not served to the waiting user, dropped and DELETEd (404)"
    )
    assert unknown == 2
    # dropUnknown records the node terminated, then the leader DELETEs it: the call's
    # count comes after the state (seen missing on a loaded machine in CI)
    wait_until(lambda: _api_calls(stack, "delete", "gone") >= 1, 10, "the ghost's DELETE")
    assert _api_calls(stack, "delete", "gone") == 1
    assert stack.invariants() == []


def test_preemption_of_an_allocated_node(stack_factory: Any) -> None:
    """The API terminates a node under its user: the user goes to the front of the
    waitlist and gets a replacement (a second ``user:assigned``); the API ended it, not us
    (I2: the leader's confirming DELETE of a node that ended on its own gets a 404)."""
    stack = _one(stack_factory, (), spare=1)
    assert stack.mock is not None
    _settled(stack, 1)
    stack.r.publish(stack.ch.connect, json.dumps({"user_id": "victim"}))
    wait_until(lambda: stack.r.hget(stack.keys.user_node, "victim") is not None, 10, "a hit")
    first = stack.r.hget(stack.keys.user_node, "victim")
    stack.mock.patch(preempt_rate_per_node_hour=3600 * 20.0)  # mean 50 ms per ready node
    t0 = time.monotonic()
    wait_until(lambda: stack.stat("preempted") >= 1, 10, "the preemption")
    stack.mock.patch(preempt_rate_per_node_hour=0.0)
    wait_until(
        lambda: (
            (n := stack.r.hget(stack.keys.user_node, "victim")) not in (None, first)
            and stack.mock is not None
            and n in {x["id"] for x in stack.mock.alive()}
        ),
        15,
        "a replacement",
    )
    took = time.monotonic() - t0
    rec = {n["id"]: n for n in stack.mock.ledger()}[first]  # type: ignore[index]
    events = [e for _, e in stack.assigned.events if e["user_id"] == "victim"]
    print(
        f"FAULT api-preemption: allocated node terminated under its user; replacement "
        f"assigned {took:.2f}s later (wait_ms {events[-1]['wait_ms']}), preempted counted "
        f"{stack.stat('preempted')}"
    )
    assert rec["outcome"] == "preempted"  # I2: the API did it, not us
    assert len(events) >= 2 and events[-1]["wait_ms"] >= 1
    assert stack.invariants() == []


def test_a_duplicate_from_an_expired_intent_does_not_stay_alive(stack_factory: Any) -> None:
    """I3's last clause: the POST hangs past the client timeout and past its intent's
    timeout (1 s), so the intent is closed and the leader creates again; the first node
    then reports, with no intent of its own.  It is adopted into the newer open intent or
    deleted, and past the keep-alive (1 s) only the one node the target needs is alive."""
    stack: Stack = stack_factory(
        (*BOOT, "--timeout-after-create-p", "1", "--hang", "4"),
        (*_pool(1, keep_alive=1), "--intent-timeout", "1", "--unknown-grace", "2"),
    )
    stack.start_all(["a"])
    mock = stack.mock
    assert mock is not None
    wait_until(lambda: len(mock.ledger()) >= 1, 10, "the first POST")
    mock.patch(timeout_after_create_p=0.0)
    first = mock.ledger()[0]["id"]
    wait_until(lambda: len(mock.ledger()) >= 2, 10, "the create after the intent expired")
    _settled(stack, 1, timeout_s=20)
    log = stack.log("a")
    fate = (
        "deleted"
        if f"deleting unknown node {first}" in log
        else "adopted"
        if f"adopted unknown node {first}" in log
        else "?"
    )
    print(
        f"FAULT api-duplicate: a POST outlived its intent; the leader created again "
        f"({len(mock.ledger())} created), the first node was {fate}; 1 alive for a target of 1"
    )
    assert "intent" in log and "expired" in log
    assert fate != "?", log[-3000:]
