"""A hypothesis state machine over the real Lua scripts (issue 4's model check).

Random sequences of activity, connect, disconnect, node statuses (in and out of order,
duplicated, for unknown nodes), registrations, reaping, lease changes, user expiry and the
history TTL, with message ids from a shared sequence (sometimes replayed: a lagging replica).  After
every step, in one atomic read: I1 (a node held by at most one user, a user holding at
most one node, both allocation hashes agree), every node in exactly the set its state
names, no user both waiting and holding; and I2: no allocated node was ever marked
terminating.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from provisioner.core.errors import FencedError
from tests.helpers import SyncCoord

USERS = st.sampled_from([f"u{i}" for i in range(6)])
NODES = st.sampled_from([f"n{i}" for i in range(6)])
STATUS = st.sampled_from(["booting", "ready", "terminated"])


class Coordinator(RuleBasedStateMachine):
    redis_url: str = ""
    counter = 0

    @initialize()
    def setup(self) -> None:
        Coordinator.counter += 1
        self.sc = SyncCoord(self.redis_url, f"sm{Coordinator.counter}x")
        self.now = 1_000_000
        self.seq = 1_000_000
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.token = self.sc.acquire_lease("L", self.now, 10**9).token
        self.reaped_allocated: list[str] = []

    def teardown(self) -> None:
        if hasattr(self, "sc"):
            self.sc.close()

    def _next(self) -> int:
        self.now += 1000
        self.seq += 1
        return self.seq

    @rule(user=USERS)
    def activity(self, user: str) -> None:
        args = (user, self.now, self._next())
        self.sc.record_activity(*args)
        self.sent.append(("record_activity", args))

    @rule(user=USERS)
    def connect(self, user: str) -> None:
        args = (user, self.now, self._next())
        self.sc.connect(*args)
        self.sent.append(("connect", args))

    @rule(user=USERS)
    def disconnect(self, user: str) -> None:
        args = (user, self.now, self._next())
        self.sc.disconnect(*args)
        self.sent.append(("disconnect", args))

    @rule(node=NODES, status=STATUS)
    def node_status(self, node: str, status: str) -> None:
        args = (node, status, self.now, self._next())
        self.sc.node_status(*args)
        self.sent.append(("node_status", args))

    @rule(node=NODES)
    def register(self, node: str) -> None:
        self.sc.register_node("", node, self.now)

    @rule(data=st.data())
    def lagging_replica_replays(self, data: st.DataObject) -> None:
        """A lagging replica applies an old message again: it must change nothing."""
        if not self.sent:
            return
        name, args = data.draw(st.sampled_from(self.sent))
        before = self._state()
        getattr(self.sc, name)(*args)
        assert self._state() == before, f"replayed {name}{args} changed the state"

    @rule(keep_alive=st.integers(0, 5000), spare=st.integers(0, 3))
    def reap(self, keep_alive: int, spare: int) -> None:
        allocated = set(self.sc.run(self.sc.client.zrange(self.sc.keys.nodes_allocated, 0, -1)))
        res = self.sc.reap(self.token, self.now, keep_alive, spare, 4000)
        self.reaped_allocated += [n for n in res.stuck + res.idle if n in allocated]

    @rule()
    def lease_changes_hands(self) -> None:
        self.now += 20_000
        new = self.sc.acquire_lease("M", self.now, 10**9)
        if new.held:
            old, self.token = self.token, new.token
            with pytest.raises(FencedError):
                self.sc.reap(old, self.now, 0, 0, 4000)

    @rule()
    def expire(self) -> None:
        self.sc.expire_users(self.now, 5000, min_interval_ms=0)

    @rule()
    def forget(self) -> None:
        """The history TTL: records untouched for 8 s go (a small slice per call), so
        replays of forgotten users meet the floor."""
        self.sc.forget_users(self.now, 8000, count=2)

    def _state(self) -> dict[str, Any]:
        k = self.sc.keys
        c = self.sc.client

        async def read() -> dict[str, Any]:
            pipe = c.pipeline(transaction=True)
            for h in (k.user_node, k.node_user, k.node_state, k.stats):
                pipe.hgetall(h)
            for z in (k.users_waiting, k.nodes_ready, k.nodes_booting, k.nodes_allocated):
                pipe.zrange(z, 0, -1, withscores=True)
            names = ["user_node", "node_user", "node_state", "stats", "waiting", "ready",
                     "booting", "allocated"]  # fmt: skip
            return dict(zip(names, await pipe.execute(), strict=True))

        return self.sc.run(read())

    @invariant()
    def invariants_hold(self) -> None:
        if hasattr(self, "sc"):
            assert self.sc.invariants() == []
            assert self.reaped_allocated == [], "I2: an allocated node was reaped"


@pytest.mark.slow
def test_coordinator_state_machine(redis_url: str) -> None:
    Coordinator.redis_url = redis_url
    run = Coordinator.TestCase()
    run.settings = settings(
        max_examples=150,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run.runTest()
