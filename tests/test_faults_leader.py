"""Fault injection on the leader: kill -9 mid scale-up, SIGSTOP past its lease.

Real ``provisioner run`` processes, the real mock Node API and a real redis-server; the
lease is 1 s and the tick 0.2 s (:data:`tests.faultkit.FAST`).  Each test prints its
measured figure (``pytest -rP``), which the fault table of docs/reliability.md#faults quotes.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.faultkit import LEASE_S, Stack, wait_until

pytestmark = pytest.mark.slow

STATIC = ("--policy", "static", "--min-spare", "1", "--keep-alive", "1000")


def _connect(stack: Stack, users: list[str]) -> None:
    for u in users:
        stack.r.publish(stack.ch.connect, json.dumps({"user_id": u}))


@pytest.mark.parametrize("when", ["before_202", "after_202"])
def test_kill_leader_mid_scale_up(stack_factory: type[Stack], when: str) -> None:
    """Kill -9 the leader while its POSTs are in flight (the API created the nodes but
    holds the 202) or just answered: a new leader acts within two lease periods, and at
    most one node per intent stays alive (duplicates are adopted or deleted: I3)."""
    stack = stack_factory(
        ("--boot-min", "0.3", "--boot-max", "0.5", "--seed", "1", "--hang", "30"), STATIC
    )
    stack.start_all(["a", "b"])
    mock = stack.mock
    assert mock is not None
    wait_until(lambda: stack.r.zcard(stack.keys.nodes_ready) == 1, 20, "the first spare node")
    old = stack.leader()
    other = "b" if old == "a" else "a"
    old_token = stack.token()
    if when == "before_202":
        mock.patch(timeout_after_create_p=1.0)
    users = [f"user-{i}" for i in range(4)]
    _connect(stack, users)  # one hit, three wait: the leader POSTs 3 + 1 spare
    wait_until(lambda: len(mock.ledger()) >= 5, 10, "the scale-up POSTs to reach the API")
    stack.group.signal(old, signal.SIGKILL)  # type: ignore[arg-type]
    killed = time.monotonic()
    wait_until(
        lambda: stack.r.hget(stack.keys.policy, "leader") == other and stack.token() > old_token,
        10,
        "the new leader's first decision",
    )
    took = time.monotonic() - killed
    mock.patch(timeout_after_create_p=0.0)
    # the waiting users are served and the pool settles: 4 allocated + 1 spare
    wait_until(
        lambda: (
            stack.r.hlen(stack.keys.user_node) == 4
            and stack.r.zcard(stack.keys.nodes_ready) == 1
            and stack.r.zcard(stack.keys.intents) == 0
            and not stack.node_mismatches()
        ),
        20,
        "the pool to settle",
    )
    assert stack.invariants() == []
    alive = mock.alive()
    created = len(mock.ledger())
    adopted = stack.log(other).count("adopted unknown node")
    print(
        f"FAULT kill-leader-{when}: new leader acted {took:.2f}s after kill -9 "
        f"(lease {LEASE_S}s); API created {created}, alive {len(alive)} for 4 users + 1 spare; "
        f"{adopted} node(s) adopted into the dead leader's intents"
    )
    if when == "before_202":  # every POST hung: the new leader adopted all four
        assert adopted == 4, stack.log(other)[-3000:]
    assert took <= 2 * LEASE_S, took
    assert len(alive) == 5, alive  # I3: no node beyond what users and the target need
    assert sorted(stack.assigned.per_user().values()) == [1, 1, 1, 1]


@pytest.mark.parametrize("when", ["idle", "mid_post"])
def test_sigstop_leader_past_its_lease(stack_factory: type[Stack], when: str) -> None:
    """SIGSTOP the leader for three lease periods (idle, or while its POST is held by the
    API), SIGCONT: its renewal is refused by the fencing token, it records no decision
    with its old token after the new leader's first, the call it was in the middle of is
    reconciled (the new leader adopted that node into its intent) and the API sees no
    extra node."""
    stack = stack_factory(("--boot-min", "0.3", "--boot-max", "0.5", "--seed", "2"), STATIC)
    stack.start_all(["a", "b"])
    mock = stack.mock
    assert mock is not None
    wait_until(lambda: stack.r.zcard(stack.keys.nodes_ready) == 1, 20, "the first spare node")
    old = stack.leader()
    assert old is not None
    other = "b" if old == "a" else "a"
    old_token = stack.token()
    users = ["user-0", "user-1", "user-2"]
    if when == "mid_post":
        # the API creates the node at once but holds the 202 for 1 s (client timeout 2 s)
        mock.patch(timeout_after_create_p=1.0, hang_s=1.0)
        _connect(stack, ["user-x"])  # takes the spare: the leader POSTs a new one
        wait_until(lambda: len(mock.ledger()) == 2, 10, "the POST to reach the API")
        users.append("user-x")
    stack.group.signal(old, signal.SIGSTOP)  # type: ignore[arg-type]
    stopped = time.monotonic()
    try:
        mock.patch(timeout_after_create_p=0.0)
        wait_until(lambda: stack.leader() == other, 5, "the other replica to take the lease")
        took_over = time.monotonic() - stopped
        # work for the new leader while the old one sleeps: 3 users wait, it boots nodes
        _connect(stack, users[:3])
        wait_until(lambda: stack.r.hlen(stack.keys.user_node) == len(users), 20, "users served")
        time.sleep(max(0.0, 3 * LEASE_S - (time.monotonic() - stopped)))
    finally:
        stack.group.signal(old, signal.SIGCONT)  # type: ignore[arg-type]
    wait_until(
        lambda: stack.metric(old, "provisioner_fenced_total") >= 1, 10, "the refused renewal"
    )
    time.sleep(5 * 0.2)  # five ticks of the resumed replica
    assert stack.leader() == other
    assert "lost lease (renewal refused)" in stack.log(old)
    # the decision log: once the new token appears, the old one never does again
    tokens = [int(f["token"]) for _, f in stack.r.xrange(stack.keys.decisions)]
    first_new = next(i for i, t in enumerate(tokens) if t > old_token)
    assert all(t > old_token for t in tokens[first_new:]), tokens
    wait_until(lambda: not stack.node_mismatches(), 10, "Redis to match the ledger")
    assert stack.invariants() == []
    alive = mock.alive()
    # every user holds a node and one spare: nothing extra from the stale leader
    assert len(alive) == len(users) + 1, alive
    assert stack.r.zcard(stack.keys.intents) == 0
    if when == "mid_post":
        assert stack.log(other).count("adopted unknown node") == 1
    print(
        f"FAULT sigstop-leader-{when}: lease taken over {took_over:.2f}s after SIGSTOP (lease "
        f"{LEASE_S}s); after SIGCONT {int(stack.metric(old, 'provisioner_fenced_total'))} "
        f"fenced write(s) refused, 0 decisions with the old token, alive {len(alive)} = "
        f"{len(users)} users + 1 spare"
    )
