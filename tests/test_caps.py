"""Operator caps: ``--max-nodes`` (every node that costs, enforced by the scripts that
record create intents) and ``--min-ready`` (a floor of spare nodes over every policy),
on a real redis-server: the scripts alone, the leader against an emulated Node API whose
ledger is the ground truth (spikes, flaky creates, two leaders), the CLI, and one run of
the real processes against the mock Node API with 5xx and timeouts."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from provisioner.cli.main import cli
from provisioner.core.clock import VirtualClock
from provisioner.core.errors import BadArgumentError, FencedError
from provisioner.core.leader import Leader, LeaderConfig, nodes_counted
from provisioner.core.metrics import Metrics
from provisioner.core.nodeapi import CreateFailed, CreateUncertain, NodeApiError, NodeGone
from provisioner.policies.base import Decision, Policy
from provisioner.policies.reactive import ReactivePolicy
from provisioner.policies.static import StaticPoolPolicy
from tests.faultkit import Stack, wait_until
from tests.helpers import SyncCoord

T0 = 10_000_000


@pytest.fixture
def sc(redis_url: str, pool: str) -> Iterator[SyncCoord]:
    c = SyncCoord(redis_url, pool)
    yield c
    c.close()


def _node(sc: SyncCoord, node: str, status: str, now: int) -> None:
    """A node registered (seeded) and brought to ``status`` through the real scripts."""
    sc.register_node("", node, now)
    if status in ("ready", "allocated"):
        sc.node_status(node, "ready", now + 1)
    if status == "allocated":
        sc.connect(f"user-of-{node}", now + 2)


def _one_of_each(sc: SyncCoord, token: str) -> None:
    """Six nodes that cost: booting, ready, allocated, terminating, unknown, an intent."""
    _node(sc, "b", "booting", T0)
    _node(sc, "r", "ready", T0)
    _node(sc, "a", "allocated", T0)
    _node(sc, "t", "ready", T0)
    assert sc.mark_terminating(token, T0 + 10, ["t"]) == ["t"]
    sc.node_status("stranger", "booting", T0 + 20)
    assert sc.create_intents(token, T0 + 30, ["open"]) == 1
    assert nodes_counted(sc.snapshot()) == 6


def _apply(sc: SyncCoord, token: str, now: int, target: int, cap: int | None) -> Any:
    return sc.apply_decision(
        token, now, keep_alive_ms=10**9, reap_floor=0, boot_timeout_ms=10**9,
        target_spare=target, max_creates=50, fields={"policy": "t"}, max_nodes=cap,
    )  # fmt: skip


# -- the scripts ----------------------------------------------------------------------
def test_apply_decision_records_no_intent_beyond_the_cap(sc: SyncCoord, r: redis.Redis) -> None:
    token = sc.acquire_lease("L", T0, 10**9).token
    _one_of_each(sc, token)
    # spare = ready 1 + booting 1 + intent 1 = 3; target 10 wants 7; the cap 8 leaves 2
    res = _apply(sc, token, T0 + 100, 10, 8)
    assert (len(res.intents), res.withheld, res.counted, res.spare) == (2, 5, 6, 3)
    assert nodes_counted(sc.snapshot()) == 8
    pol = r.hgetall(sc.keys.policy)
    assert (pol["max_nodes"], pol["withheld"], pol["counted"], pol["created"]) == (
        "8", "5", "6", "2")  # fmt: skip
    full = _apply(sc, token, T0 + 200, 10, 8)  # at the cap: nothing more
    assert (full.intents, full.withheld, full.counted) == ([], 5, 8)
    lower = _apply(sc, token, T0 + 300, 10, 3)  # a cap already exceeded creates nothing
    assert (lower.intents, lower.withheld) == ([], 5)
    assert r.zcard(sc.keys.intents) == 3 and nodes_counted(sc.snapshot()) == 8
    uncapped = _apply(sc, token, T0 + 400, 10, None)  # no cap: as before
    assert (len(uncapped.intents), uncapped.withheld) == (5, 0)
    assert "max_nodes" not in r.xrevrange(sc.keys.decisions, count=1)[0][1]
    assert sc.invariants() == []


def test_reaped_nodes_count_until_they_are_gone(sc: SyncCoord, r: redis.Redis) -> None:
    """A node marked terminating in the same call still costs: reaping an idle node does
    not make room for a new one before its termination is reported."""
    token = sc.acquire_lease("L", T0, 10**9).token
    for i in range(3):
        _node(sc, f"r{i}", "ready", T0)
    res = sc.apply_decision(
        token, T0 + 100_000, keep_alive_ms=1000, reap_floor=0, boot_timeout_ms=10**9,
        target_spare=3, max_creates=50, fields={}, max_nodes=3,
    )  # fmt: skip
    # reaped down to the floor 0, then the target 3 wants 3 intents: none fits under 3
    assert len(res.idle) == 3 and res.intents == [] and res.withheld == 3
    sc.node_status("r0", "terminated", T0 + 100_500)
    assert len(_apply(sc, token, T0 + 101_000, 3, 3).intents) == 1


def test_capped_calls_refuse_bad_caps_and_stale_tokens_before_writing(
    sc: SyncCoord, r: redis.Redis
) -> None:
    token = sc.acquire_lease("L", T0, 1000).token
    for bad in (-1, "x", 2.5):
        with pytest.raises(BadArgumentError):
            sc.apply_decision(
                token, T0, keep_alive_ms=0, reap_floor=0, boot_timeout_ms=1,
                target_spare=3, max_creates=3, fields={}, max_nodes=bad,
            )  # fmt: skip
        with pytest.raises(BadArgumentError):
            sc.create_intents(token, T0, ["i1"], max_nodes=bad)
    new = sc.acquire_lease("M", T0 + 2000, 10**9).token  # the lease lapsed: M leads
    with pytest.raises(FencedError):
        _apply(sc, token, T0 + 2000, 5, 10)
    with pytest.raises(FencedError):
        sc.create_intents(token, T0 + 2000, ["i1"], max_nodes=10)
    assert r.zcard(sc.keys.intents) == 0 and r.xlen(sc.keys.decisions) == 0
    assert len(_apply(sc, new, T0 + 2000, 5, 10).intents) == 5


def test_create_intents_records_only_the_room_under_the_cap(sc: SyncCoord, r: redis.Redis) -> None:
    token = sc.acquire_lease("L", T0, 10**9).token
    _one_of_each(sc, token)
    assert sc.create_intents(token, T0 + 100, ["x1", "x2", "x3"], max_nodes=8) == 2
    assert set(r.zrange(sc.keys.intents, 0, -1)) == {"open", "x1", "x2"}  # the first ones
    assert sc.create_intents(token, T0 + 100, ["x4"], max_nodes=8) == 0
    assert sc.create_intents(token, T0 + 100, ["x5"], max_nodes=0) == 0
    assert sc.create_intents(token, T0 + 100, ["x6"]) == 1  # no cap: as before


# -- the leader against an emulated Node API -------------------------------------------
class World:
    """A Node API with a ledger, the ground truth of nodes, and the node manager's
    statuses, applied through the real ``recordNodeStatus`` when due (:meth:`deliver`).

    A create fails with ``p_fail`` (a 5xx: nothing created) or, with ``p_timeout``,
    creates the node but its answer is lost (``CreateUncertain``); a DELETE fails with
    ``p_fail``. A node costs from its creation until its ``terminated`` is reported.
    With ``lifetime_ms`` a node ends that long after its ready (a preemption).
    """

    def __init__(
        self, clock: VirtualClock, p_fail: float = 0.0, p_timeout: float = 0.0, seed: int = 1
    ) -> None:
        self.clock = clock
        self.p_fail = p_fail
        self.p_timeout = p_timeout
        self.rng = random.Random(seed)
        self.alive: set[str] = set()
        self.deleting: set[str] = set()
        self.due: list[tuple[int, str, str]] = []
        self.created = 0
        self.uncertain = 0
        self.lifetime_ms: int | None = None

    async def create(self) -> str:
        if self.rng.random() < self.p_fail:
            raise CreateFailed("503")
        self.created += 1
        node = f"w{self.created}"
        self.alive.add(node)
        now = self.clock.now_ms()
        self.due += [(now + 100, node, "booting"), (now + 2000, node, "ready")]
        if self.rng.random() < self.p_timeout:
            self.uncertain += 1
            raise CreateUncertain("timed out after creating")
        return node

    async def delete(self, node_id: str) -> None:
        if node_id not in self.alive:
            raise NodeGone(node_id)
        if self.rng.random() < self.p_fail:
            raise NodeApiError("503")
        if node_id not in self.deleting:
            self.deleting.add(node_id)
            self.due.append((self.clock.now_ms() + 1500, node_id, "terminated"))

    def deliver(self, sc: SyncCoord, now: int) -> None:
        """Report every status due by ``now`` (a deleted node's ready never comes)."""
        due = sorted(d for d in self.due if d[0] <= now)
        self.due = [d for d in self.due if d[0] > now]
        for t, node, status in due:
            if node not in self.alive or (status == "ready" and node in self.deleting):
                continue  # ended already; a deleted node's ready never comes
            sc.node_status(node, status, t)
            if status == "terminated":
                self.alive.discard(node)
            elif status == "ready" and self.lifetime_ms is not None:
                self.due.append((t + self.lifetime_ms, node, "terminated"))


def _config(**caps: Any) -> LeaderConfig:
    return LeaderConfig(
        tick_s=1, lease_ttl_s=5, unknown_grace_s=3, default_boot_s=2, intent_timeout_s=60,
        max_create_backoff_s=4, **caps,
    )  # fmt: skip


def _step(sc: SyncCoord, leader: Leader) -> None:
    async def go() -> None:
        await leader.step()
        await leader.drain()

    sc.run(go())


class Spike:
    """``users`` connect at once at ``T0``; each disconnects ``hold_ms`` after it got a
    node. Checks the cap after every tick: the ledger's live nodes and Redis's known
    nodes plus open intents (unknown ones may be counted twice) stay within it."""

    def __init__(self, sc: SyncCoord, r: redis.Redis, world: World, cap: int, users: int):
        self.sc, self.r, self.world, self.cap = sc, r, world, cap
        self.users = [f"u{i}" for i in range(users)]
        self.since: dict[str, int] = {}
        self.done: set[str] = set()
        self.peak = 0
        self.max_waiting = 0

    def before_tick(self, now: int) -> None:
        self.world.deliver(self.sc, now)
        if now == T0:
            for i, u in enumerate(self.users):
                self.sc.connect(u, now + i)
        holding = self.r.hgetall(self.sc.keys.user_node)
        for u in holding:
            self.since.setdefault(u, now)
            if now - self.since[u] >= 5000 and u not in self.done:
                self.sc.disconnect(u, now)
                self.done.add(u)

    def after_tick(self) -> None:
        snap = self.sc.snapshot()
        known = snap.booting + snap.ready + snap.allocated + snap.terminating + snap.intents
        self.peak = max(self.peak, len(self.world.alive))
        self.max_waiting = max(self.max_waiting, snap.waiting)
        assert len(self.world.alive) <= self.cap, (len(self.world.alive), snap)
        assert known <= self.cap, snap


def _run(spike: Spike, leaders: list[Leader], clock: VirtualClock, first: int, last: int) -> None:
    """Ticks ``first`` to ``last - 1`` (one a second): statuses and users first, then each
    leader not frozen (``frozen_until``, clock ms) steps, in a shuffled order."""
    order = list(leaders)
    for i in range(first, last):
        now = T0 + i * 1000
        clock.advance_to(now)
        spike.before_tick(now)
        random.Random(i).shuffle(order)
        for leader in order:
            if getattr(leader, "frozen_until", 0) <= now:
                _step(spike.sc, leader)
        spike.after_tick()


def _leader(sc: SyncCoord, world: World, clock: VirtualClock, name: str, **caps: Any) -> Leader:
    policy: Policy = StaticPoolPolicy(4, 30)
    return Leader(sc.coord, world, policy, clock, name, _config(**caps), Metrics())


def test_a_spike_of_connects_waits_at_the_cap(sc: SyncCoord, r: redis.Redis) -> None:
    clock = VirtualClock(T0)
    world = World(clock)
    leader = _leader(sc, world, clock, "L", max_nodes=5)
    spike = Spike(sc, r, world, 5, users=30)
    _run(spike, [leader], clock, 0, 90)
    served = sc.snapshot().stats
    print(
        f"CAP spike: 30 connects, cap 5: peak {spike.peak} live nodes, up to "
        f"{spike.max_waiting} waiting, {world.created} created, withheld "
        f"{leader.metrics.boots_withheld._value.get():.0f} boot-ticks"
    )
    assert spike.peak == 5 and spike.max_waiting >= 25  # the cap bound, users waited
    assert served.get("hits", 0) + served.get("assigned_late", 0) == 30  # all served
    assert leader.metrics.boots_withheld._value.get() > 0
    assert leader.metrics.max_nodes._value.get() == 5
    assert sc.invariants() == []


def test_flaky_creates_and_two_leaders_never_exceed_the_cap(
    sc: SyncCoord, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """5xx and timed-out creates (nodes that exist though the POST failed: counted as
    open intents, then as unknown nodes until adopted), with two leaders that take the
    lease from each other (the deposed one's writes are fenced); nodes live 4 s after
    their ready, so creates go on all along."""
    clock = VirtualClock(T0)
    world = World(clock, p_fail=0.25, p_timeout=0.25, seed=3)
    world.lifetime_ms = 4000
    a = _leader(sc, world, clock, "A", max_nodes=4)
    b = _leader(sc, world, clock, "B", max_nodes=4)
    a.frozen_until = T0 + 20_000  # type: ignore[attr-defined]  # A starts late
    spike = Spike(sc, r, world, 4, users=20)
    _run(spike, [a, b], clock, 0, 30)
    b.frozen_until = T0 + 45_000  # type: ignore[attr-defined]  # B stalls: A takes over
    _run(spike, [a, b], clock, 30, 100)
    world.lifetime_ms = None
    _run(spike, [a, b], clock, 100, 200)  # nodes stop failing: everybody is served
    st = sc.snapshot().stats
    print(
        f"CAP flaky: 20 connects, cap 4, 25% 5xx + 25% timeouts: peak {spike.peak} live, "
        f"{world.created} created ({world.uncertain} uncertain), "
        f"{st.get('intents_failed', 0)} intents failed, {st.get('preempted', 0)} preempted; "
        f"fenced A {a.metrics.fenced._value.get():.0f} B {b.metrics.fenced._value.get():.0f}"
    )
    assert spike.peak == 4
    assert world.uncertain >= 2 and st.get("intents_failed", 0) >= 2  # the faults happened
    assert r.hget(sc.keys.leader, "holder") == "A"  # the lease changed hands
    assert a.metrics.fenced._value.get() + b.metrics.fenced._value.get() >= 1
    assert spike.done == set(spike.users) and sc.snapshot().waiting == 0  # all served
    assert "max-nodes cap of 4 binds" in caplog.text
    assert sc.invariants() == []


def test_min_ready_keeps_a_floor_under_a_policy_that_wants_none(
    sc: SyncCoord, r: redis.Redis
) -> None:
    """Reactive wants 0 spare and reaps idle nodes at once; min-ready 3 keeps 3 spare
    (ready + booting) and the reaper leaves them, surplus seeded nodes go."""
    clock = VirtualClock(T0)
    world = World(clock)
    leader = Leader(
        sc.coord, world, ReactivePolicy(0.0), clock, "L", _config(min_ready=3), Metrics()
    )
    for i in range(4):
        _node(sc, f"seed{i}", "ready", T0 - 60_000)  # idle for a minute: surplus
    spares = []
    for i in range(20):
        now = T0 + i * 1000
        clock.advance_to(now)
        world.deliver(sc, now)
        if i == 10:
            sc.connect("u1", now)  # takes a ready node: the floor is made up again
        _step(sc, leader)
        snap = sc.snapshot()
        spares.append(snap.ready + snap.booting)
    assert min(spares) >= 3
    assert spares[-1] == 3 and sc.snapshot().ready == 3
    assert r.hget(sc.keys.user_node, "u1") is not None
    pol = r.hgetall(sc.keys.policy)
    assert (pol["min_ready"], pol["policy_target"], pol["target"]) == ("3", "0", "3")
    assert leader.metrics.min_ready._value.get() == 3


def test_min_ready_is_still_under_the_cap(sc: SyncCoord, r: redis.Redis) -> None:
    clock = VirtualClock(T0)
    world = World(clock)
    leader = Leader(
        sc.coord, world, ReactivePolicy(0.0), clock, "L",
        _config(min_ready=3, max_nodes=3), Metrics(),
    )  # fmt: skip
    sc.connect("u1", T0)
    for i in range(10):
        now = T0 + i * 1000
        clock.advance_to(now)
        world.deliver(sc, now)
        _step(sc, leader)
        assert len(world.alive) <= 3
    snap = sc.snapshot()
    assert (snap.allocated, snap.ready) == (1, 2)  # the floor gives way to the cap


def test_caps_apply_to_every_policy_in_one_place() -> None:
    """``with_floor`` leaves a decision that holds the floor as it is."""
    from provisioner.core.leader import with_floor

    d = Decision(5, 30.0, {"x": 1}, keep_spare=2)
    assert with_floor(d, 0) is d
    raised = with_floor(d, 3)
    assert (raised.target_spare, raised.reap_floor, raised.inputs) == (
        5, 3, {"x": 1, "policy_target": 5})  # fmt: skip


@pytest.mark.parametrize(
    ("caps", "msg"),
    [
        ({"max_nodes": -1}, "max_nodes must be >= 0"),
        ({"min_ready": -1}, "min_ready must be >= 0"),
        ({"max_nodes": 2, "min_ready": 3}, "below min_ready"),
    ],
)
def test_leader_config_refuses_bad_caps(caps: dict[str, int], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        LeaderConfig(**caps)


def test_the_replay_bench_applies_the_caps(redis_url: str) -> None:
    """The replay takes a LeaderConfig: a static pool of 8 under a cap of 3 creates 3
    nodes and pays for at most 3 at a time, and connects wait; without it, none waits."""
    import asyncio

    from provisioner.policies.registry import make_policy
    from provisioner.sim.replay import ReplayConfig, replay
    from provisioner.sim.workload import BootProfile, Event, Workload

    events = []
    for i in range(6):
        t = 10.0 + 5 * i  # up to 6 sessions at once
        events += [Event(t, "activity", f"u{i}"), Event(t + 5, "connect", f"u{i}"),
                   Event(t + 35, "disconnect", f"u{i}")]  # fmt: skip
    wl = Workload("caps", 1, sorted(events), 200.0, BootProfile(10.0, 10.0))

    def run(**caps: int) -> Any:
        cfg = LeaderConfig(tick_s=1, lease_ttl_s=10, default_boot_s=10, defer_records=True, **caps)
        policy = make_policy("static", min_spare=8)
        return asyncio.run(replay(wl, policy, redis_url, ReplayConfig(tick_s=1), cfg)).scorecard

    capped, free = run(max_nodes=3), run()
    span_s = (capped.end_ms - capped.start_ms) / 1000
    assert capped.nodes_created == 3 and capped.node_seconds <= 3 * span_s
    assert free.nodes_created > 3 and capped.violations == free.violations == 0
    assert capped.misses > free.misses == 0  # the cap made connects wait


# -- the CLI --------------------------------------------------------------------------
ENV: dict[str, str | None] = {
    n: None for n in ("PROVISIONER_MAX_NODES", "PROVISIONER_MIN_READY", "PROVISIONER_REDIS_URL")
}


@pytest.mark.parametrize(
    ("args", "env", "msg"),
    [
        (["--max-nodes", "-1"], {}, "'--max-nodes': -1 is not in the range 0<=x<=1000000"),
        (["--min-ready", "-2"], {}, "'--min-ready': -2 is not in the range 0<=x<=1000000"),
        ([], {"PROVISIONER_MAX_NODES": "-3"}, "'--max-nodes': -3 is not in the range"),
        (["--max-nodes", "2", "--min-ready", "3"], {}, "2 is below --min-ready 3"),
        ([], {"PROVISIONER_MAX_NODES": "1", "PROVISIONER_MIN_READY": "4"}, "below --min-ready"),
    ],
)
def test_run_refuses_bad_caps_as_usage_errors(
    args: list[str], env: dict[str, str], msg: str
) -> None:
    res = CliRunner(env={**ENV, **env}).invoke(cli, ["run", *args])
    assert res.exit_code == 2, res.output
    assert msg in res.output


def test_run_help_documents_the_caps() -> None:
    out = " ".join(CliRunner().invoke(cli, ["run", "--help"]).output.split())
    assert "--max-nodes" in out and "Default: no cap" in out
    assert "--min-ready" in out and "default: 0" in out


def test_status_and_explain_show_the_caps(sc: SyncCoord, redis_url: str, pool: str) -> None:
    clock = VirtualClock(T0)
    world = World(clock)
    leader = _leader(sc, world, clock, "L", max_nodes=3, min_ready=1)
    _step(sc, leader)
    sc.node_status("stranger", "booting", T0 + 10)  # counted now, not at the decision
    runner = CliRunner(env=ENV)

    def invoke(*args: str) -> str:
        res = runner.invoke(cli, ["--redis-url", redis_url, "--pool", pool, *args])
        assert res.exit_code == 0, (res.output, res.exception)
        return res.output

    st = json.loads(invoke("status", "--json"))
    assert st["caps"] == {"max_nodes": 3, "min_ready": 1, "nodes_counted": 4, "withheld": 1}
    assert "max nodes 3 (counted now 4, boots withheld then 1)  min ready 1" in invoke("status")
    rows = json.loads(invoke("explain", "--json"))
    assert (rows[0]["max_nodes"], rows[0]["min_ready"], rows[0]["withheld"]) == (3, 1, 1)
    out = invoke("explain")
    assert "max nodes 3 (counted 0 before this tick's boots, withheld 1)  min ready 1" in out
    assert "policy static" in out and "lambda -" not in out and "B -s" not in out


def test_status_without_caps_says_unlimited(sc: SyncCoord, redis_url: str, pool: str) -> None:
    clock = VirtualClock(T0)
    _step(sc, _leader(sc, World(clock), clock, "L"))
    res = CliRunner(env=ENV).invoke(cli, ["--redis-url", redis_url, "--pool", pool, "status"])
    assert "max nodes unlimited" in res.output and "min ready 0" in res.output
    out = CliRunner(env=ENV).invoke(cli, ["--redis-url", redis_url, "--pool", pool, "explain"])
    assert "max nodes unlimited  min ready 0" in out.output


# -- the real processes ----------------------------------------------------------------
@pytest.mark.slow
def test_the_cap_holds_against_the_mock_api_with_5xx_and_timeouts(stack_factory: Any) -> None:
    """``provisioner run --max-nodes 3`` with a static pool of 6 wanted, against the mock
    Node API answering 30% 503s and timing out (after creating) on 30% of POSTs, and
    preempting ready nodes (mean 2 s) so creates go on: the mock's ledger never holds
    more than 3 nodes that are not terminated."""
    mock = ("--boot-min", "0.3", "--boot-max", "0.5", "--seed", "5", "--error-5xx-p", "0.3",
            "--timeout-after-create-p", "0.3", "--hang", "3",
            "--preempt-rate", "1800")  # fmt: skip
    stack: Stack = stack_factory(mock, ("--policy", "static", "--min-spare", "6",
                                        "--max-nodes", "3", "--min-ready", "1"))  # fmt: skip
    stack.start_all(["a"])
    assert stack.mock is not None
    peak = 0
    end = time.monotonic() + 12
    while time.monotonic() < end:
        live = [n for n in stack.mock.ledger() if n["status"] != "terminated"]
        peak = max(peak, len(live))
        assert len(live) <= 3, live
        time.sleep(0.05)
    stack.mock.patch(preempt_rate_per_node_hour=0.0, error_5xx_p=0.0, timeout_after_create_p=0.0)
    wait_until(lambda: stack.r.zcard(stack.keys.nodes_ready) == 3, 20, "3 ready nodes")
    withheld = stack.metric("a", "provisioner_boots_withheld_total")
    refused = (stack.logdir / "mock.log").read_text().count("POST /api/nodes: emulated 503")
    calls = {
        o: stack.metric("a", "provisioner_node_api_calls_total", verb="create", outcome=o)
        for o in ("ok", "failed", "uncertain")
    }
    print(
        f"CAP mock API: cap 3, static 6 wanted, 30% 503 + 30% timeouts, preemptions: peak "
        f"{peak} live nodes in the ledger, {len(stack.mock.ledger())} created, creates "
        f"{calls}, {refused} POSTs answered 503, withheld {withheld:.0f}"
    )
    assert peak == 3 and len(stack.mock.ledger()) >= 8
    assert refused >= 1 and calls["uncertain"] >= 1  # the faults happened
    assert withheld > 0 and stack.metric("a", "provisioner_max_nodes") == 3
    # the first tick boots 3 of the 6 wanted: the count names those boots (it said 0)
    assert "cap of 3 binds: 3 nodes counted against it with this tick's boots," in stack.log("a")
    assert stack.invariants() == []
