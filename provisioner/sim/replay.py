"""Fast replay: the real Lua scripts and the real leader/policy on a virtual clock.

A discrete-event simulation of one workload against one policy.  The world (users,
the node manager) is simulated in-process; the provisioner is not: every transition is
the real Lua script on a real redis-server, and scaling is the real
:class:`provisioner.core.leader.Leader` with the policy under test, driven by a
:class:`provisioner.core.clock.VirtualClock`.  Time only moves when the simulation says so,
so hours of traffic replay in seconds.

Per tick (``tick_s`` of virtual time): every event due before the next tick (activity,
connects, disconnects, node statuses) goes to Redis in one pipeline, in time order, each
with its own ``now_ms``; then the clock moves to the tick and the leader takes one step
(lease, policy, reap, create).  The emulated Node API answers at once: a created node
reports ``ready`` after a boot time drawn from the workload's
:class:`~provisioner.sim.workload.BootProfile` (or ``terminated`` for a failed boot, or
nothing for a lost ``ready``); a deleted node reports ``terminated`` after
``terminate_delay_s``.  Its ledger has the mock API's shape, so the run is scored by the
same :func:`provisioner.sim.scorecard.score` as a live run.

**Fast-forward.**  When a tick finds the pool empty and quiet (no active, waiting or
booting user or node, no ready, terminating or unknown node, no intent, no API call or
node status on its way) and the policy holds target 0 and reap floor 0, every tick up to
the next inbound event would read the same empty pool: no user can become active, no
node appear, and the policy's target only decays (its rates are averages of counters
that do not move; a policy with timers of its own, such as ``hybrid``'s pre-warm window,
says so by ``target_rises_only_on_events = False`` and is not fast-forwarded this way).
The replay then jumps to the last tick before that event, with the lease renewed over the
gap; that tick runs, so the averages decay over the whole gap as they would have tick
by tick (an EWMA over one long interval with no counts equals the same over many short
ones, up to rounding), and the maintenance cadence (user expiry, the leader's reconcile)
counts the skipped ticks.  What is not replayed is the skipped ticks' own forecasts of
near-zero demand, which the calibration would have added to its sums;
``extra["ticks_fast_forwarded"]`` counts them, and ``ReplayConfig(fast_forward=False)``
runs every tick.

**A pool at rest** (not empty) is fast-forwarded too, for any policy: when the last tick
neither acted nor left anything open, :meth:`Leader.idle_until_ms` says until when no
tick would change anything by time alone (keep-alive, boot timeout, a pause of creates,
the policy's ``steady_until_ms``), and the replay jumps to the last tick at or before the
earliest of that, the next inbound event, the next node status and the next history walk.
The user expiry of the last skipped maintenance tick is run at that tick's time (nothing
else happens in the gap, so the active set is what the ticks would have left). For a
static pool, ``reactive``, ``hybrid`` and base stock the scorecards equal the every-tick
runs' (tests, and the trace's whole sweeps).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import heapq
import itertools
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from provisioner.core.clock import VirtualClock
from provisioner.core.coordinator import DEFAULT_USER_TTL_B, Coordinator
from provisioner.core.errors import Code
from provisioner.core.keys import Channels
from provisioner.core.leader import Leader, LeaderConfig
from provisioner.core.metrics import Metrics
from provisioner.core.nodeapi import CreateFailed, NodeApiConfig, NodeApiError, NodeGone
from provisioner.core.scripts import Call
from provisioner.policies.base import Policy
from provisioner.sim.scorecard import Scorecard, score
from provisioner.sim.workload import Event, Workload

log = logging.getLogger(__name__)

__all__ = ["ReplayConfig", "ReplayResult", "ReplayStalled", "is_premium", "replay"]

#: Virtual time of the workload's t = 0, unix ms (any fixed value works).
T0_MS = 1_700_000_000_000


@dataclass(frozen=True)
class ReplayConfig:
    """Settings of one replay (seconds).

    Attributes:
        tick_s: leader period in virtual time (live: 1 s; 2 s here halves the cost
            of a replay, small against boot times of tens of seconds).
        maintenance_every: reconcile and user expiry every this many ticks.
        terminate_delay_s: DELETE -> ``terminated`` delay.
        user_ttl_s: inactivity before a user leaves the active set, seconds; None:
            ``user_ttl_b`` boot times, as live.
        user_ttl_b: the user TTL in boot times when ``user_ttl_s`` is None.
        history_ttl_s: a user record untouched this long is forgotten (``forgetUsers``,
            as live: ``run --history-ttl``, 7 days by default).
        seed: boot-time draws.
        batch: most script calls per pipeline.
        premium_share: share of users marked premium (chosen by a hash of the id, so the
            same users in every run); their misses are reported apart.
        fast_forward: while the pool is empty and quiet (no active, waiting or booting
            user or node, no intent, nothing in flight, target and reap floor 0), jump to
            the last tick before the next inbound event, for a policy whose target rises
            only on events; and while the pool is at rest, to the last tick before
            anything could change (module docstring).
        error_5xx_p: share of Node API calls answering 503. The client's retries are
            emulated (:class:`~provisioner.core.nodeapi.NodeApiConfig`: ``attempts``
            tries, waits of ``U(0, min(max, initial * 2^i))``, as tenacity's random
            exponential wait): a create whose every try fails raises ``CreateFailed``,
            else its boot starts after the waits; a delete whose every try fails raises
            ``NodeApiError``.  Creates draw from a generator of their own, in the order
            they reach the API; a delete from one keyed by its node and how many times
            it was asked to delete it, so the order in
            which the leader's create and delete tasks interleave changes no draw, and
            0 leaves every other draw as it was.
        stall_timeout_s: wall seconds (> 0) the replay may go without finishing a tick, a
            history walk call or an expiry call before it gives up (:class:`ReplayStalled`;
            ValueError at construction otherwise). Its Redis client reads without a
            deadline per reply: redis-py's asyncio client (8.x) arms a timer for each
            read, about 40 us of Python a round trip (measured, one core), some 10% of a
            ``browse-heavy`` replay; this watchdog, checked every few seconds, takes
            its place.
    """

    tick_s: float = 2.0
    terminate_delay_s: float = 0.5
    user_ttl_s: float | None = None
    user_ttl_b: float = DEFAULT_USER_TTL_B
    history_ttl_s: float = 7 * 86_400.0
    seed: int = 1
    batch: int = 2000
    maintenance_every: int = 10
    premium_share: float = 0.1
    fast_forward: bool = True
    stall_timeout_s: float = 120.0
    error_5xx_p: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_5xx_p < 1.0:
            raise ValueError(f"error_5xx_p must be in [0, 1), not {self.error_5xx_p!r}")
        if not self.stall_timeout_s > 0:
            raise ValueError(f"stall_timeout_s must be > 0, not {self.stall_timeout_s!r}")


class ReplayStalled(RuntimeError):
    """A replay finished no tick for ``ReplayConfig.stall_timeout_s`` wall seconds (its
    Redis does not answer)."""


@dataclass
class ReplayResult:
    """One replay's outcome.

    Attributes:
        scorecard: the score (as live).
        wall_s: wall-clock seconds the replay took.
        events: inbound events applied.
        ticks: leader ticks.
        policy: the policy's name.
        extra: ``tiers`` (connects, misses and wait p95 of premium and standard users)
            ``ticks_skipped`` (ticks whose decision needed no write) and
            ``users_forgotten`` (user records the history TTL deleted).
    """

    scorecard: Scorecard
    wall_s: float
    events: int
    ticks: int
    policy: str
    extra: dict[str, Any] = field(default_factory=dict)


def is_premium(user: str, share: float) -> bool:
    """Whether ``user`` is premium in a replay (a stable hash below ``share``)."""
    h = int(hashlib.sha1(user.encode()).hexdigest()[:8], 16)
    return h < share * 0xFFFFFFFF


def _chunks(items: list[str], n: int) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


class _World:
    """The emulated node manager: ledger, boot draws and scheduled statuses."""

    def __init__(self, wl: Workload, clock: VirtualClock, cfg: ReplayConfig) -> None:
        self.wl = wl
        self.clock = clock
        self.cfg = cfg
        self.rng = random.Random(f"replay:{cfg.seed}")
        self.ledger: dict[str, dict[str, Any]] = {}
        self.heap: list[tuple[int, int, str, str]] = []  # (t_ms, seq, node, status)
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._create_faults = random.Random(f"replay-5xx:{cfg.seed}")
        self._client = NodeApiConfig()

    def _retries_s(self, faults: random.Random | None) -> float | None:
        """The client's waits before a call gets through the emulated 503s, seconds; None
        when every try fails.  ``faults`` draws them; None when ``error_5xx_p`` is 0."""
        p = self.cfg.error_5xx_p
        waited = 0.0
        c = self._client
        for i in range(c.attempts):
            if faults is None or faults.random() >= p:
                return waited
            if i + 1 < c.attempts:
                waited += faults.uniform(0.0, min(c.backoff_max_s, c.backoff_initial_s * 2**i))
        return None

    def _at(self, t_ms: int, node: str, status: str) -> None:
        heapq.heappush(self.heap, (t_ms, next(self._seq), node, status))

    async def create(self) -> str:
        waited = self._retries_s(self._create_faults if self.cfg.error_5xx_p else None)
        if waited is None:
            raise CreateFailed("503 Service Unavailable (emulated)")
        now = self.clock.now_ms() + int(waited * 1000)
        node = f"node-{next(self._ids)}"
        b = self.wl.boot
        boot_s = self.rng.uniform(b.min_s, b.max_s)
        if self.rng.random() < b.slow_tail_p:
            boot_s *= b.slow_tail_factor
        fail = self.rng.random() < b.fail_p
        lost = self.rng.random() < b.lost_ready_p
        t_ready = now + int(boot_s * 1000)
        rec: dict[str, Any] = {
            "id": node, "created_ms": now, "ready_ms": None, "delete_ms": None,
            "terminated_ms": None, "status": "booting", "outcome": "alive",
        }  # fmt: skip
        self.ledger[node] = rec
        if fail:
            rec["outcome"] = "boot_failed"
            self._at(t_ready, node, "terminated")
        else:
            rec["ready_ms"] = t_ready
            if not lost:
                self._at(t_ready, node, "ready")
        return node

    async def delete(self, node_id: str) -> None:
        rec = self.ledger.get(node_id)
        if rec is None or rec["delete_ms"] is not None or rec["terminated_ms"] is not None:
            raise NodeGone(node_id)
        faults = None
        if self.cfg.error_5xx_p:  # the n-th DELETE of this node
            n = rec["delete_calls"] = rec.get("delete_calls", 0) + 1
            faults = random.Random(f"replay-5xx:{self.cfg.seed}:delete:{node_id}:{n}")
        waited = self._retries_s(faults)
        if waited is None:
            raise NodeApiError("503 Service Unavailable (emulated)")
        now = self.clock.now_ms() + int(waited * 1000)
        rec["delete_ms"] = now
        rec["outcome"] = "deleted"
        self._at(now + int(self.cfg.terminate_delay_s * 1000), node_id, "terminated")

    def applied(self, node: str, status: str, t_ms: int) -> None:
        rec = self.ledger[node]
        if status == "terminated" and rec["terminated_ms"] is None:
            rec["terminated_ms"] = t_ms
            rec["status"] = "terminated"
        elif status == "ready" and rec["status"] == "booting":
            rec["status"] = "ready"


_Meta = tuple[str, str, int]  # (event kind or node status, user or node, t ms)
_MAX_RUN = 1000  # most activity events in one recordActivities call
#: A full walk of the history TTL every this share of the TTL (virtual time).
_FORGET_WALK_SHARE = 0.1


def _quiet(leader: Leader, world: _World) -> bool:
    """Whether the pool is empty and nothing is on its way, so the ticks until the next
    inbound event are no-ops for the pool (``replay``, fast-forward)."""
    if leader.last_tick is None or world.heap or leader.in_flight:
        return False
    view, dec = leader.last_tick
    s = view.snapshot
    return (
        dec.target_spare == 0
        and dec.reap_floor == 0
        and s.active == s.waiting == s.booting == s.ready == 0
        and s.intents == s.terminating == s.unknown == 0
    )


def _due_calls(
    coord: Coordinator,
    events: list[Event],
    times: list[int],
    ei: int,
    heap: list[tuple[int, int, str, str]],
    next_tick: int,
) -> tuple[list[Call], list[list[_Meta]], int]:
    """The script calls of every event and node status due before ``next_tick``, in
    time order (statuses popped from ``heap``; an event goes before a status of its
    own ms); a run of consecutive activity events is one ``recordActivities`` call, as
    a live replica sends it.

    Args:
        times: ``events``' times, virtual ms (``T0_MS`` + ``t_s`` in ms).

    Returns:
        ``(calls, metas, ei)``: per call the events it applies, and the next event index.
    """
    calls: list[Call] = []
    metas: list[list[_Meta]] = []
    n = len(events)
    while True:
        # an event is due before the next tick and not after the next node status
        limit = min(next_tick, heap[0][0] + 1) if heap else next_tick
        if ei < n and times[ei] < limit:
            ev = events[ei]
            if ev.kind == "activity":
                j, stop = ei, min(n, ei + _MAX_RUN)
                while j < stop and times[j] < limit and events[j].kind == "activity":
                    j += 1
                meta = [("activity", events[k].user_id, times[k]) for k in range(ei, j)]
                calls.append(coord.activities_call([(u, t, 0) for _, u, t in meta]))
                metas.append(meta)
                ei = j
                continue
            t_ev = times[ei]
            ei += 1
            if ev.kind == "connect":
                calls.append(coord.connect_call(ev.user_id, t_ev))
            else:
                calls.append(coord.disconnect_call(ev.user_id, t_ev))
            metas.append([(ev.kind, ev.user_id, t_ev)])
        elif heap and heap[0][0] < next_tick:
            t_st, _, node, status = heapq.heappop(heap)
            calls.append(coord.node_status_call(node, status, t_st))
            metas.append([(status, node, t_st)])
        else:
            return calls, metas, ei


class _Records:
    """What the scripts answered, in the shape :func:`provisioner.sim.scorecard.score`
    reads: connects, disconnects, activity ``(t, user)`` and assignments
    ``(t, user, node, wait)``, times in virtual ms, strictly increasing in processing
    order (as the live listener's are, so a handover sorts after its disconnect).

    Attributes:
        applied: inbound events applied so far.
    """

    def __init__(self, world: _World) -> None:
        self.world = world
        self.connects: list[tuple[float, str]] = []
        self.disconnects: list[tuple[float, str]] = []
        self.assignments: list[tuple[float, str, str, float]] = []
        self.activity: list[tuple[float, str]] = []
        self.waiting_since: dict[str, float] = {}
        self.last_t = 0.0
        self.applied = 0

    def handle(self, results: list[Any], metas: list[list[_Meta]]) -> None:
        """Record what the scripts answered for the events of ``metas``.

        Raises:
            Exception: a deferred call's error, handed over in place of its result.
        """
        for meta, res in zip(metas, results, strict=True):
            if isinstance(res, Exception):
                raise res  # a deferred call's error, handed over in place
            if meta[0][0] == "activity":
                # a run: one code per event (OK or STALE: the records take both)
                assert len(res) == len(meta) + 1 and int(res[0]) == Code.OK, res
                last_t, activity = self.last_t, self.activity
                for _, who, t_int in meta:
                    t = float(t_int) if t_int > last_t + 0.001 else last_t + 0.001
                    last_t = t
                    activity.append((t, who))
                self.last_t = last_t
                self.applied += len(meta)
                continue
            code = int(res[0])
            for kind, who, t_int in meta:
                t = max(float(t_int), self.last_t + 0.001)
                self.last_t = t
                self.applied += 1
                self._one(kind, who, t_int, t, code, res)

    def _one(self, kind: str, who: str, t_int: int, t: float, code: int, res: Any) -> None:
        """Record one connect, disconnect or node status (``who``: the user or the node)
        the script answered ``res`` (code ``code``) at ``t`` (``t_int``: its own time)."""
        waiting_since, assignments = self.waiting_since, self.assignments
        if kind == "connect":
            self.connects.append((t, who))
            if code == Code.HIT:
                assignments.append((t, who, str(res[1]), 0))
            elif code == Code.MISS:
                waiting_since[who] = t
        elif kind == "disconnect":
            self.disconnects.append((t, who))
            waiting_since.pop(who, None)
            if res[2]:
                to = str(res[2])
                since = waiting_since.pop(to, t)
                t_hand = t + 0.0005  # after the disconnect, before the next
                assignments.append((t_hand, to, str(res[1]), max(1.0, t - since)))
        else:  # a node status: who is the node
            self.world.applied(who, kind, t_int)
            user = res[1] or None
            if kind == "ready" and user:
                since = waiting_since.pop(str(user), t)
                assignments.append((t, str(user), who, max(1.0, t - since)))
            elif kind == "terminated" and user and code == Code.OK:
                if res[2]:
                    assignments.append((t, str(user), str(res[2]), 1.0))
                else:
                    waiting_since[str(user)] = t


@dataclass
class _Progress:
    """Work the replay finished (ticks, history walk and expiry calls), watched by
    :func:`_watchdog`; ``stalled`` once the watchdog gave up."""

    done: int = 0
    stalled: bool = False


async def _watchdog(progress: _Progress, main: asyncio.Task[Any], stall_timeout_s: float) -> None:
    """Cancel ``main`` (and mark ``progress`` stalled) when nothing finished for
    ``stall_timeout_s`` wall seconds."""
    seen, since = -1, time.monotonic()
    while True:
        await asyncio.sleep(min(5.0, stall_timeout_s / 4))
        if progress.done != seen:
            seen, since = progress.done, time.monotonic()
        elif time.monotonic() - since >= stall_timeout_s:
            progress.stalled = True
            main.cancel()
            return


class _Ticks:
    """The replay's loop, from ``T0_MS`` to the workload's end: the events due before each
    tick, the tick, user expiry, the history walk and the fast-forward (module docstring).

    Attributes:
        ticks: leader ticks run.
        forgotten: user records the history TTL deleted.
        fast_forwarded: ticks skipped by the fast-forward.
    """

    def __init__(
        self,
        wl: Workload,
        cfg: ReplayConfig,
        leader: Leader,
        world: _World,
        records: _Records,
        progress: _Progress,
    ) -> None:
        self.cfg = cfg
        self.leader = leader
        self.coord = leader.coord
        self.clock = world.clock
        self.world = world
        self.records = records
        self.progress = progress
        self.events = wl.events
        self.times = [T0_MS + int(e.t_s * 1000) for e in self.events]
        self.ei = 0  # the next event's index
        self.tick_ms = int(cfg.tick_s * 1000)
        self.end_ms = T0_MS + int(wl.duration_s * 1000)
        self.next_tick = T0_MS
        self.user_ttl_ms = int(cfg.user_ttl_s * 1000) if cfg.user_ttl_s else 0
        self.user_ttl_b = cfg.user_ttl_b
        self.history_ttl_ms = int(cfg.history_ttl_s * 1000)
        self.last_forget = T0_MS
        self.forget_every_ms = max(self.tick_ms, int(_FORGET_WALK_SHARE * self.history_ttl_ms))
        self.ticks = 0
        self.forgotten = 0
        self.fast_forwarded = 0

    async def run(self) -> None:
        """Replay every tick up to the workload's end, then send the last queued calls."""
        while self.next_tick <= self.end_ms:
            await self._send_due()
            await self._tick()
            self.next_tick += self.tick_ms
            if self.cfg.fast_forward:
                jump = self._jump()
                if jump > self.next_tick and self.leader.token is not None:
                    await self._skip_to(jump)
        await self.coord.runner.flush()  # the last tick's record, if queued

    async def _send_due(self) -> None:
        """Every event due before the next tick, in time order; a run of consecutive
        activity events is one recordActivities call (as live); every batch but the last
        now, the last in one round trip with the tick's observeTick (ScriptRunner.defer:
        Redis runs it first, and its results are handled before the leader reads its
        own)."""
        coord, batch, handle = self.coord, self.cfg.batch, self.records.handle
        calls, metas, self.ei = _due_calls(
            coord, self.events, self.times, self.ei, self.world.heap, self.next_tick
        )
        last = max(0, (len(calls) - 1) // batch * batch)
        for i in range(0, last, batch):
            part = slice(i, i + batch)
            handle(await coord.runner.call_many(calls[part]), metas[part])
        coord.runner.defer(calls[last:], functools.partial(handle, metas=metas[last:]))

    async def _tick(self) -> None:
        """The tick: the real leader with the policy under test, then user expiry every
        ``maintenance_every`` ticks and the history walk when it is due."""
        self.clock.advance_to(self.next_tick)
        await self.leader.step()  # sends the queued events first (it always sends)
        await self.leader.drain()
        self.ticks += 1
        self.progress.done += 1
        now = self.next_tick
        if ((now - T0_MS) // self.tick_ms + 1) % self.cfg.maintenance_every == 0:
            await self.coord.expire_users(
                now, self.user_ttl_ms, min_interval_ms=0, ttl_b=self.user_ttl_b
            )
        if now - self.last_forget >= self.forget_every_ms:
            # the history TTL, one full walk every tenth of the TTL of virtual time
            # (live: a slice a second per replica); a record outlives its TTL by at most
            # that tenth
            self.last_forget = now
            for _ in range(10_000):
                gone, walked = await self.coord.forget_users(now, self.history_ttl_ms, count=5000)
                self.forgotten += gone
                self.progress.done += 1
                if walked:
                    break

    def _jump(self) -> int:
        """The tick to fast-forward to (virtual ms), 0 when nothing may be skipped."""
        leader, world = self.leader, self.world
        t_next = self.times[self.ei] if self.ei < len(self.events) else self.end_ms
        if leader.policy.target_rises_only_on_events and _quiet(leader, world):
            # nothing can happen before the next inbound event: the ticks up to
            # it would read an empty pool and hold target 0 (module docstring);
            # the last of them runs, so the policy's averages decay over the gap
            # as they would
            t_stop: float = t_next
        else:
            # a pool at rest: no tick would change anything before the next
            # event, node status or time-driven change (Leader.idle_until_ms)
            t_stop = min(t_next, world.heap[0][0] if world.heap else t_next)
            t_stop = min(t_stop, leader.idle_until_ms())
            # nor past the next history walk (a forgotten user's connect counts as
            # a new user's)
            t_stop = min(t_stop, self.last_forget + self.forget_every_ms)
        # the last grid tick at or before t_stop: an event at t_next is applied
        # before the tick after it, and a change due at t_stop happens at the
        # first tick at or after it, which runs
        if t_stop > self.next_tick:
            return T0_MS + (int(t_stop) - T0_MS) // self.tick_ms * self.tick_ms
        return 0

    async def _skip_to(self, jump: int) -> None:
        """Skip the ticks before ``jump`` (virtual ms, a later grid tick)."""
        leader, coord, tick_ms = self.leader, self.coord, self.tick_ms
        assert leader.token is not None
        now = self.clock.now_ms()
        # the lease is renewed over the gap, as the skipped ticks would have
        ttl = jump - now + int(leader.config.lease_ttl_s * 1000)
        await coord.renew_lease(leader.replica_id, leader.token, now, ttl)
        n_skip = (jump - self.next_tick) // tick_ms
        # the user expiry of the last skipped maintenance tick, at its time:
        # nothing else happens in the gap, so the active set is then what the
        # ticks would have left (a user kept past its expiry would count its
        # next activity as a return, not a new session)
        every = self.cfg.maintenance_every
        k_last = (jump - T0_MS) // tick_ms - 1  # index of the last skipped
        k_maint = (k_last + 1) // every * every - 1
        if k_maint >= (self.next_tick - T0_MS) // tick_ms:
            t_maint = T0_MS + k_maint * tick_ms
            # each skipped tick expired up to 1000: all of them, here
            while await coord.expire_users(
                t_maint, self.user_ttl_ms, min_interval_ms=0, ttl_b=self.user_ttl_b
            ):
                self.progress.done += 1
        self.fast_forwarded += n_skip
        leader.skip_ticks(n_skip)
        self.next_tick = jump


def _tiers(
    rec: _Records, premium: set[str], boot_time_s: float, end_ms: int
) -> dict[str, dict[str, Any]]:
    """Connects, misses and wait p95 (ms) of the premium and the standard users."""
    tiers = {}
    for tier, members in (("premium", premium), ("standard", None)):

        def keep(u: str, members: set[str] | None = members) -> bool:
            return (u in premium) if members is not None else (u not in premium)

        sub = score(
            [c for c in rec.connects if keep(c[1])],
            [d for d in rec.disconnects if keep(d[1])],
            [a for a in rec.assignments if keep(a[1])],  # type: ignore[misc]
            [],  # activity only tells cold from predictable, which tiers do not report
            [], boot_time_s=boot_time_s, start_ms=T0_MS, end_ms=end_ms,
        )  # fmt: skip
        wait95 = sub.wait_p95_ms
        tiers[tier] = {"connects": sub.connects, "misses": sub.misses, "wait_p95_ms": wait95}
    return tiers


async def _delete_pool(
    client: aioredis.Redis, coord: Coordinator, pool: str, timeout_s: float
) -> None:
    """Delete the pool's keys (a warning, not an error, when Redis does not answer within
    ``timeout_s`` seconds), then close the client."""
    try:
        async with asyncio.timeout(timeout_s):
            keys = coord.keys.all()
            for i in range(0, len(keys), 50):
                await client.delete(*keys[i : i + 50])
    except (TimeoutError, RedisError, OSError) as e:
        log.warning("replay: the keys of pool %s are left (%r)", pool, e)
    finally:
        await client.aclose()


async def replay(
    wl: Workload,
    policy: Policy,
    redis_url: str,
    cfg: ReplayConfig | None = None,
    leader_cfg: LeaderConfig | None = None,
) -> ReplayResult:
    """Replay ``wl`` against ``policy`` on the real scripts (module docstring).

    Args:
        wl: the workload (times in seconds from 0).
        policy: a fresh policy instance (it learns during the run).
        redis_url: a real Redis; the run uses a pool of its own, deleted at the end.
        cfg: replay settings.
        leader_cfg: leader timing; ``default_boot_s`` defaults to the workload's mean boot.

    Returns:
        The scorecard and run statistics.

    Raises:
        ReplayStalled: nothing finished for ``cfg.stall_timeout_s`` wall seconds.
    """
    cfg = cfg or ReplayConfig()
    mean_boot = wl.boot.mean_s
    leader_cfg = leader_cfg or LeaderConfig(
        tick_s=cfg.tick_s, lease_ttl_s=10 * cfg.tick_s, default_boot_s=mean_boot,
        intent_timeout_s=10 * mean_boot, redelete_after_s=10 * mean_boot,
        reconcile_every=cfg.maintenance_every, defer_records=True,
    )  # fmt: skip
    pool = "replay-" + uuid.uuid4().hex[:8]
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=None)
    clock = VirtualClock(T0_MS)
    channels = Channels(prefix=f"{pool}.", pool=pool)
    coord = Coordinator(client, pool, channels, default_boot_s=leader_cfg.default_boot_s)
    world = _World(wl, clock, cfg)
    leader = Leader(
        coord, world, policy, clock, "replay", leader_cfg, Metrics(),
        rng=random.Random(f"replay-leader:{cfg.seed}"),
    )  # fmt: skip
    started = time.perf_counter()
    records = _Records(world)
    progress = _Progress()
    loop = _Ticks(wl, cfg, leader, world, records, progress)
    main = asyncio.current_task()
    assert main is not None
    guard = asyncio.create_task(_watchdog(progress, main, cfg.stall_timeout_s))
    try:
        await coord.runner.load_all()
        premium = {u for u in wl.users() if is_premium(u, cfg.premium_share)}
        for chunk in _chunks(sorted(premium), 500):
            await coord.set_premium(chunk)
        await loop.run()
        card = score(
            records.connects, records.disconnects, records.assignments,  # type: ignore[arg-type]
            records.activity, list(world.ledger.values()),
            boot_time_s=mean_boot, start_ms=T0_MS, end_ms=loop.end_ms,
        )  # fmt: skip
        tiers = _tiers(records, premium, mean_boot, loop.end_ms)
        skipped = leader.metrics.registry.get_sample_value("provisioner_leader_ticks_skipped_total")
        return ReplayResult(
            card, time.perf_counter() - started, records.applied, loop.ticks, policy.name,
            {
                "tiers": tiers,
                "ticks_skipped": int(skipped or 0),
                "ticks_fast_forwarded": loop.fast_forwarded,
                "users_forgotten": loop.forgotten,
            },
        )  # fmt: skip
    except asyncio.CancelledError:
        if not progress.stalled:
            raise
        main.uncancel()
        raise ReplayStalled(
            f"replay of pool {pool} gave up: nothing finished in {cfg.stall_timeout_s:g} s "
            "of wall time (its Redis does not answer)"
        ) from None
    finally:
        guard.cancel()
        leader.cancel_calls()
        await _delete_pool(client, coord, pool, max(10.0, cfg.stall_timeout_s))
