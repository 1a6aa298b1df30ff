"""The leader's job: hold the lease and scale the pool (docs/design.md#3-3).

Only the replica holding the lease runs :meth:`Leader.tick`, in two round trips:
``observeTick`` renews the lease and reads the pool and the policy's features in one
atomic step; the policy decides; ``applyDecision`` marks stuck-booting and surplus idle
nodes terminating, records the create intents still needed and stores the decision
with its inputs, in one atomic step, before the leader DELETEs and POSTs.  Every write
is fenced by the lease token, so a deposed leader's late writes are refused.

Reconcile, also each tick: open intents older than the intent timeout (two boot times) are closed;
nodes that reported a status while unknown to us for ``unknown_grace_s`` are adopted
into an old open intent (a POST that timed out after the API created the node) or,
when there is none, registered and deleted; nodes stuck in ``terminating`` get their
DELETE again.

Operator caps (:class:`LeaderConfig` ``max_nodes`` and ``min_ready``) apply to every
policy's decision in one place, after :meth:`Policy.decide`: the floor raises the target
and the reap floor (:func:`with_floor`); the cap is enforced by ``applyDecision`` itself,
atomically with its count of the nodes that cost (:func:`nodes_counted`), so no tick,
leader or flaky API can record an intent beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Protocol

from redis.exceptions import RedisError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from provisioner.core.clock import Clock
from provisioner.core.coordinator import ApplyResult, Coordinator, TickView
from provisioner.core.errors import FencedError, ScriptError
from provisioner.core.logutil import LogLimiter, plural
from provisioner.core.metrics import Metrics
from provisioner.core.nodeapi import CreateFailed, CreateUncertain, NodeApiError, NodeGone
from provisioner.policies.base import Decision, Observation, Policy, PoolSnapshot

__all__ = [
    "Leader",
    "LeaderConfig",
    "NodeApiLike",
    "nodes_counted",
    "planning_boot_s",
    "with_floor",
]

#: While no boot has been observed, the stuck-boot timeout is this many times longer.
UNOBSERVED_TIMEOUT_FACTOR = 10.0

#: An open create intent is closed after this many boot times (B, as the policy plans
#: with it), at least ``min_boot_timeout_s``, unless ``intent_timeout_s`` is set.
INTENT_TIMEOUT_B = 2.0

#: With ``max_clock_skew_s`` set, the replica's clock is compared with Redis's this often
#: (seconds of its own clock).
CLOCK_CHECK_S = 10.0

log = logging.getLogger("provisioner.core.leader")


class NodeApiLike(Protocol):
    """What the leader needs of the Node API: :class:`provisioner.core.nodeapi.NodeApi`
    live, an in-process emulation in the replay benchmark."""

    async def create(self) -> str:
        """POST a node; its id.  Raises CreateFailed or CreateUncertain."""
        ...

    async def delete(self, node_id: str) -> None:
        """DELETE a node.  Raises NodeGone or NodeApiError."""
        ...


@dataclass(frozen=True)
class LeaderConfig:
    """Timing of the leader (seconds).

    Attributes:
        lease_ttl_s: the lease lapses this long after its last renewal.
        tick_s: scaling period; the lease is renewed every tick.
        default_boot_s: boot time assumed before the first observation.
        boot_timeout_factor: a node booting longer than ``factor * B + 4 sd`` is stuck.
        min_boot_timeout_s: floor of that timeout.
        intent_timeout_s: an open create intent older than this is closed (its POST timed
            out and no status of its node came); None: ``INTENT_TIMEOUT_B`` boot times,
            at least ``min_boot_timeout_s``.  While it is open its node counts as coming,
            so the waitlist waits on it.
        unknown_grace_s: wait this long before adopting/deleting an unknown node.
        redelete_after_s: DELETE again a node terminating for this long.
        max_creates_per_tick: cap on POSTs started in one tick.
        max_inflight: cap on Node API calls in flight.
        max_create_backoff_s: longest pause of creates after repeated failures.
        record_retry_s: how long to retry recording an API call's outcome in Redis.
        reconcile_every: run the reconcile every this many ticks.
        record_every_s: a tick that would change nothing still stores its decision when
            the last stored one is this old (a changed decision is stored at once).
        defer_records: a tick whose ``applyDecision`` would only store the decision (no
            reap, no create, nothing stuck, by this tick's atomic read) queues it for the
            next round trip (``ScriptRunner.defer``) instead of one of its own: the replay
            benchmark, where the next call follows at once and nothing runs between
            (live, a record would wait a tick and could die with the replica: off).
        max_nodes: the cap on every node that costs (:func:`nodes_counted`: open create
            intents, booting, ready, allocated, terminating and unknown nodes); a connect
            beyond it waits on the waitlist instead of causing a boot. None: no cap.
        min_ready: spare nodes (ready + booting) kept whatever the policy says, and left
            by the reaper (nodes stuck booting are still replaced); still under
            ``max_nodes``.
        max_clock_skew_s: when set, a replica whose clock is further than this from
            Redis's (``TIME``, read every :data:`CLOCK_CHECK_S`, less half the round trip)
            neither takes nor keeps the lease (and :attr:`Leader.clock_off` stops the
            worker's writes): the lease's expiry and every age the leader
            acts on (idle, stuck, intents) are unix ms of the replica's clock, and one
            30 s ahead reaped a whole pool on its first tick.  None: unchecked (a virtual
            clock, in the replay).

    Raises:
        ValueError: a negative cap or floor, or ``max_nodes`` below ``min_ready``.
    """

    lease_ttl_s: float = 5.0
    tick_s: float = 1.0
    default_boot_s: float = 30.0
    boot_timeout_factor: float = 3.0
    min_boot_timeout_s: float = 10.0
    intent_timeout_s: float | None = None
    unknown_grace_s: float = 15.0
    redelete_after_s: float = 30.0
    max_creates_per_tick: int = 50
    max_inflight: int = 64
    max_create_backoff_s: float = 30.0
    record_retry_s: float = 30.0
    reconcile_every: int = 1
    record_every_s: float = 60.0
    defer_records: bool = False
    max_nodes: int | None = None
    min_ready: int = 0
    max_clock_skew_s: float | None = None

    def __post_init__(self) -> None:
        if self.min_ready < 0:
            raise ValueError(f"min_ready must be >= 0, got {self.min_ready}")
        if self.max_nodes is not None and self.max_nodes < 0:
            raise ValueError(f"max_nodes must be >= 0, got {self.max_nodes}")
        if self.max_nodes is not None and self.max_nodes < self.min_ready:
            raise ValueError(
                f"max_nodes ({self.max_nodes}) is below min_ready ({self.min_ready}): "
                "the floor could never be held"
            )
        if self.max_clock_skew_s is not None and not self.max_clock_skew_s > 0:
            raise ValueError(f"max_clock_skew_s must be > 0, got {self.max_clock_skew_s}")


def nodes_counted(snap: PoolSnapshot) -> int:
    """Nodes that count against ``max_nodes``, as ``applyDecision`` counts them
    (lua/includes/caps.lua): every node that costs, from its create intent to the end of
    its termination: open intents + booting + ready + allocated + terminating + unknown."""
    return (
        snap.intents + snap.booting + snap.ready + snap.allocated + snap.terminating
        + snap.unknown
    )  # fmt: skip


def planning_boot_s(
    snap: PoolSnapshot, oldest_booting_ms: int | None, now_ms: int, default_s: float
) -> float:
    """The boot time B the policy plans with, seconds: the learned mean once a boot has
    been observed; before that the default, or the age of the longest-booting node when
    that is longer (a censored observation: the boot takes at least that long), so that
    with boots far longer than the default the policy looks ahead far enough before the
    first node is ready."""
    if snap.boot.mean_s:
        return snap.boot.mean_s
    if oldest_booting_ms is not None and now_ms > oldest_booting_ms:
        return max(default_s, (now_ms - oldest_booting_ms) / 1000.0)
    return default_s


def with_floor(dec: Decision, min_ready: int) -> Decision:
    """A policy's decision under the operator's floor of spare nodes.

    Args:
        dec: what :meth:`Policy.decide` returned.
        min_ready: spare nodes (ready + booting) to keep whatever the policy says.

    Returns:
        ``dec`` when it already holds the floor; else a copy whose target and reap floor
        are at least ``min_ready``, with the policy's own target kept in its inputs as
        ``policy_target``.
    """
    if dec.target_spare >= min_ready and dec.reap_floor >= min_ready:
        return dec
    inputs = {**dec.inputs, "policy_target": dec.target_spare}
    return replace(
        dec,
        target_spare=max(dec.target_spare, min_ready),
        keep_spare=max(dec.reap_floor, min_ready),
        inputs=inputs,
    )


class Leader:
    """Lease holder and scaling loop of one replica.

    Args:
        coord: the pool's coordinator.
        api: an open Node API client (:class:`NodeApiLike`).
        policy: the scaling policy.
        clock: source of ``now_ms``.
        replica_id: this replica's id (the lease holder name).
        config: timing.
        metrics: where to count.
        rng: draws the jitter of the create backoff; a fresh unseeded generator when
            None (a replay passes a seeded one, so it replays the same).
    """

    def __init__(
        self,
        coord: Coordinator,
        api: NodeApiLike,
        policy: Policy,
        clock: Clock,
        replica_id: str,
        config: LeaderConfig,
        metrics: Metrics,
        rng: random.Random | None = None,
    ) -> None:
        self.coord = coord
        self.api = api
        self.policy = policy
        self.clock = clock
        self.replica_id = replica_id
        # the lease knows this process by it too: a second process started with the same
        # replica id never shares this one's lease and fencing token
        self.instance = secrets.token_hex(6)
        self.config = config
        self.metrics = metrics
        self._rng = rng if rng is not None else random.Random()
        self.token: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(config.max_inflight)
        self._deleting: dict[str, int] = {}  # node -> clock ms of our last DELETE
        # nodes_terminated scores up to this one were confirmed (None: not yet this lease)
        self._ended_after_ms: int | None = None
        self._ticks = 0
        self._create_fail_streak = 0
        self._create_paused_until_ms = 0  # clock ms
        self._last_record: tuple[Any, ...] | None = None
        self._last_record_ms = 0
        self._limiter = LogLimiter(log)
        #: The last tick's atomic read and decision (None before the first tick).
        self.last_tick: tuple[TickView, Decision] | None = None
        self._last_acted = True  # whether the last tick changed the pool (or was refused)
        self._boot_s = config.default_boot_s  # B of the last plan, seconds
        self._cap_binding = False  # whether the last tick's creates were cut by max_nodes
        self._skew_checked_ms: int | None = None  # clock ms of the last clock check
        self._skew_ms = 0.0  # this clock less Redis's, ms
        self._skew_slack_ms = 0.0
        self._clock_off = False
        cap = config.max_nodes
        metrics.max_nodes.set(math.inf if cap is None else cap)
        metrics.min_ready.set(config.min_ready)

    @property
    def clock_off(self) -> bool:
        """True while the last clock check found this replica's clock further from Redis's
        than ``max_clock_skew_s``: the whole replica then writes nothing that carries its
        time (the worker skips ingest and maintenance, and ``/healthz`` fails)."""
        return self._clock_off

    @property
    def is_leader(self) -> bool:
        """True while this replica believes it holds the lease."""
        return self.token is not None

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire/renew the lease and tick until ``stop`` is set; then release it."""
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except FencedError:
                    self.metrics.fenced.inc()
                    self._lost("fenced")
                except (RedisError, OSError) as e:  # Redis down: say so, briefly
                    self._limiter.warn("step", "leader step skipped: %s: %s", type(e).__name__, e)
                except ScriptError as e:  # the pool's state refused it: every tick would
                    self._limiter.warn(  # say the same, so once per period
                        "refused", "leader step refused: %s (`provisioner check` names the key)", e
                    )
                except Exception:  # a bug: keep the loop alive, with the traceback
                    log.exception("leader step failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.tick_s)
        finally:
            await self.shutdown()

    async def step(self) -> None:
        """One lease round and, when leading, one tick (the tick renews the lease)."""
        now = self.clock.now_ms()
        if not await self._clock_ok(now):
            if self.token is not None:
                await self.coord.release_lease(self.replica_id, self.token)
                self._lost("this replica's clock is off Redis's")
            return
        if self.token is None:
            ttl_ms = int(self.config.lease_ttl_s * 1000)
            st = await self.coord.acquire_lease(self.replica_id, now, ttl_ms, self.instance)
            if not st.held:
                if st.holder == self.replica_id:
                    self.metrics.lease_conflicts.inc()
                    self._limiter.warn(
                        "duplicate",
                        "leader: another process holds the lease as replica %s; replica "
                        "ids must be unique (--replica-id), so this one waits for the lease",
                        self.replica_id,
                    )
                return
            self.token = st.token
            self.metrics.lease_held.set(1)
            last = await self.coord.client.hgetall(self.coord.keys.policy)
            self.policy.restore({str(a): str(b) for a, b in last.items()})
            log.info("leader: acquired lease, token %s", st.token)
        await self.tick(now)

    async def check_clock(self) -> bool:
        """Measure the clock's skew now (the worker's first step, before it writes
        anything); whether it is within ``max_clock_skew_s``."""
        self._skew_checked_ms = None
        return await self._clock_ok(self.clock.now_ms())

    async def _clock_ok(self, now: int) -> bool:
        """Whether this replica's clock agrees with Redis's within ``max_clock_skew_s``
        (always, when unset); measured every :data:`CLOCK_CHECK_S`, the skew in
        ``provisioner_clock_skew_seconds``."""
        limit = self.config.max_clock_skew_s
        if limit is None:
            return True
        if (
            self._skew_checked_ms is None
            or abs(now - self._skew_checked_ms) >= CLOCK_CHECK_S * 1000
        ):
            t0 = self.clock.now_ms()
            sec, usec = await self.coord.client.time()
            t1 = self.clock.now_ms()
            redis_ms = int(sec) * 1000 + int(usec) // 1000
            self._skew_ms = (t0 + t1) / 2 - redis_ms
            self._skew_slack_ms = (t1 - t0) / 2  # Redis read its clock within the round trip
            self._skew_checked_ms = now
            self.metrics.clock_skew.set(self._skew_ms / 1000)
        self._clock_off = abs(self._skew_ms) - self._skew_slack_ms > limit * 1000
        if not self._clock_off:
            return True
        self._limiter.warn(
            "skew",
            "this replica's clock is %.1f s %s Redis's (more than --max-clock-skew %.1f s): "
            "it applies no message, does no maintenance, and neither takes nor keeps the "
            "lease; sync its clock (NTP)",
            abs(self._skew_ms) / 1000,
            "ahead of" if self._skew_ms > 0 else "behind",
            limit,
        )
        return False

    async def _store_state(self, token: str) -> None:
        """At a clean stop, the last decision again with the policy's whole state (a policy
        with a ``state_json()``), so the next leader's ``restore`` goes on from here rather
        than from the last periodic state (up to 30 ticks old).  Best effort: a stop never
        waits on it for more than the Redis timeout."""
        state_json = getattr(self.policy, "state_json", None)
        if self.last_tick is None or not callable(state_json):
            return
        view, dec = self.last_tick
        fields = self._fields(dec, view.snapshot, False, token)
        fields["state"] = str(state_json())
        fields["stopped"] = 1
        try:
            await self.coord.record_decision(token, self.clock.now_ms(), fields)
        except Exception as e:  # the release still goes ahead
            log.warning("leader: policy state not stored at stop: %s: %s", type(e).__name__, e)

    def _lost(self, why: str, warn: bool = True) -> None:
        if self.token is not None and warn:
            log.warning("leader: lost lease (%s)", why)
        self.token = None
        self._ended_after_ms = None  # a next lease confirms from its own start
        self.metrics.lease_held.set(0)

    def boot_timeout_ms(self, snap: PoolSnapshot) -> int:
        """How long a node may boot before it is declared stuck, ms.

        ``boot_timeout_factor`` times the learned mean boot time plus 4 standard
        deviations; while no boot has been observed yet, the default boot time is a
        guess rather than evidence, so the timeout is ``UNOBSERVED_TIMEOUT_FACTOR`` times
        longer (else, with boots over ``boot_timeout_factor`` times the default, every
        first boot is deleted as stuck and the boot time is never learned).
        """
        c = self.config
        mean = snap.boot.mean_s or c.default_boot_s
        timeout = max(c.min_boot_timeout_s, c.boot_timeout_factor * mean + 4 * snap.boot.sd_s)
        if not snap.boot.n:
            timeout *= UNOBSERVED_TIMEOUT_FACTOR
        return int(timeout * 1000)

    async def tick(self, now: int) -> Decision | None:
        """Renew the lease and observe, decide, then reap, record create intents and
        the decision (fenced by the current token): two scripts, ``observeTick`` and
        ``applyDecision`` (skipped when it would write nothing; queued for the next round
        trip when it would only store the decision and ``defer_records`` is on).  Then
        start the DELETEs and POSTs.

        Returns:
            The decision, or None when the renewal was refused (the lease is lost).

        Raises:
            FencedError: the lease was lost between observing and applying.
        """
        token = self.token
        assert token is not None
        c = self.config
        want = self.policy.features
        try:
            view = await self.coord.observe_tick(
                self.replica_id, token, now, int(self.config.lease_ttl_s * 1000),
                self.config.default_boot_s, want.n_classes, want.recency_edges_b,
            )  # fmt: skip
        except FencedError:
            self.metrics.fenced.inc()
            self._lost("renewal refused")
            return None
        snap = view.snapshot
        boot_s = planning_boot_s(snap, view.oldest_booting_ms, now, self.config.default_boot_s)
        self._boot_s = boot_s
        features: dict[str, Any] = {}
        if want.n_classes:
            features = {"n": view.active, "premium": view.premium_active, "hazard": view.hazard}
        dec = with_floor(self.policy.decide(Observation(now, snap, boot_s, features)), c.min_ready)
        self.last_tick = (view, dec)
        self._last_acted = True
        self.metrics.target.set(dec.target_spare)
        if snap.boot.mean_s:
            self.metrics.boot_time.set(snap.boot.mean_s)
        paused = now < self._create_paused_until_ms
        max_creates = 0 if paused else self.config.max_creates_per_tick
        keep_alive_ms = int(dec.keep_alive_s * 1000)
        boot_timeout_ms = self.boot_timeout_ms(snap)
        creates, withheld = self._planned_creates(snap, dec, max_creates)
        act = self._must_act(view, dec, now, keep_alive_ms, boot_timeout_ms, creates)
        self._last_acted = act
        if not act:  # what the cap withheld, as applyDecision would count it
            self._note_cap(withheld, nodes_counted(snap), paused)
        if not act and not self._must_record(dec, now, paused, withheld):
            self.metrics.ticks_skipped.inc()
            return await self._after_tick(dec, token, now)
        call, prefix = self.coord.apply_decision_call(
            token, now,
            keep_alive_ms=keep_alive_ms, reap_floor=dec.reap_floor,
            boot_timeout_ms=boot_timeout_ms, target_spare=dec.target_spare,
            max_creates=max_creates, fields=self._fields(dec, snap, paused, token),
            max_nodes=c.max_nodes,
        )  # fmt: skip
        self._last_record = self._record_key(dec, paused, withheld)
        self._last_record_ms = now
        if not act and c.defer_records:
            self.coord.runner.defer([call], lambda res: self._deferred_applied(res[0], prefix))
        else:
            reply = (await self.coord.runner.call_many([call]))[0]
            applied = self.coord.parse_applied(reply, prefix)
            if act:
                self._note_cap(applied.withheld, applied.counted + len(applied.intents), paused)
            self._start_api_calls(applied)
        return await self._after_tick(dec, token, now)

    def _fields(
        self, dec: Decision, snap: PoolSnapshot, paused: bool, token: str
    ) -> dict[str, str | int | float]:
        """The decision's inputs to store (``applyDecision`` adds what it did, and the cap
        as ``max_nodes``): the decision, the pool it saw, the floor, the policy's own."""
        fields: dict[str, str | int | float] = {
            "policy": self.policy.name,
            "target": dec.target_spare,
            "keep_spare": dec.reap_floor,
            "keep_alive_s": dec.keep_alive_s,
            "ready": snap.ready,
            "booting": snap.booting,
            "intents": snap.intents,
            "allocated": snap.allocated,
            "waiting": snap.waiting,
            "active": snap.active,
            "creates_paused": int(paused),
            "token": token,
            "leader": self.replica_id,
        }
        if self.config.min_ready:
            fields["min_ready"] = self.config.min_ready
        fields.update(dec.inputs)
        return fields

    def _start_api_calls(self, applied: ApplyResult) -> None:
        """The DELETEs of the reaped nodes and the POSTs of the recorded intents."""
        for node in applied.stuck + applied.idle:
            self._spawn(self._delete(node))
        for intent in applied.intents:
            self._spawn(self._create(intent))

    def _deferred_applied(self, reply: Any, prefix: str) -> None:
        """The reply of a deferred ``applyDecision`` (``defer_records``): what it did is
        acted on as a direct one's would be; a refusal ends the lease as it would."""
        try:
            if isinstance(reply, Exception):
                raise reply
            self._start_api_calls(self.coord.parse_applied(reply, prefix))
        except FencedError:
            self.metrics.fenced.inc()
            self._lost("fenced")
        except Exception:
            log.exception("deferred applyDecision failed")

    async def _after_tick(self, dec: Decision, token: str, now: int) -> Decision:
        self._ticks += 1
        if self._ticks % self.config.reconcile_every == 0:
            await self.reconcile(token, now)
        return dec

    @staticmethod
    def _record_key(dec: Decision, paused: bool, withheld: int) -> tuple[Any, ...]:
        """What a stored decision must show: a change of it is recorded at once."""
        return (dec.target_spare, dec.reap_floor, round(dec.keep_alive_s, 1), paused, withheld)

    def _planned_creates(
        self, snap: PoolSnapshot, dec: Decision, max_creates: int
    ) -> tuple[int, int]:
        """The intents ``applyDecision`` would record on this tick's read, if it reaped
        nothing, and those the ``max_nodes`` cap would withhold (the script's formula)."""
        need = max(0, min(max_creates, dec.target_spare + snap.waiting - snap.spare))
        cap = self.config.max_nodes
        if cap is None:
            return need, 0
        withheld = max(0, need - max(0, cap - nodes_counted(snap)))
        return need - withheld, withheld

    def _note_cap(self, withheld: int, counted: int, paused: bool) -> None:
        """Count the boots the cap withheld this tick, and log when it starts (and stops)
        binding: once per episode, not once per tick (a pause of creates, which withholds
        nothing itself, neither starts nor ends one)."""
        if withheld:
            self.metrics.boots_withheld.inc(withheld)
        if paused:
            return
        binding = withheld > 0
        if binding and not self._cap_binding:
            log.warning(
                "max-nodes cap of %s binds: %s counted against it with this tick's "
                "boots, %s withheld (connects wait until a node is freed)",
                self.config.max_nodes, plural(counted, "node"), plural(withheld, "boot"),
            )  # fmt: skip
        elif self._cap_binding and not binding:
            log.info("max-nodes cap no longer binds (%s counted)", plural(counted, "node"))
        self._cap_binding = binding

    def _must_act(
        self, view: TickView, dec: Decision, now: int, keep_alive_ms: int,
        boot_timeout_ms: int, creates: int,
    ) -> bool:  # fmt: skip
        """Whether ``applyDecision`` would change the pool this tick: a node is stuck
        booting, an idle ready node is past keep-alive while ready + booting exceed the
        reap floor and nobody waits (the reaper's own conditions, on this tick's atomic
        read), or intents are missing (``creates``, under the cap)."""
        snap = view.snapshot
        if view.oldest_booting_ms is not None and view.oldest_booting_ms < now - boot_timeout_ms:
            return True
        if (
            snap.waiting == 0
            and snap.ready + snap.booting > dec.reap_floor
            and view.oldest_ready_ms is not None
            and view.oldest_ready_ms <= now - keep_alive_ms
        ):
            return True
        return creates > 0

    def _must_record(self, dec: Decision, now: int, paused: bool, withheld: int) -> bool:
        """Whether the decision must be stored though nothing changes: it changed
        (:meth:`_record_key`), carries the policy's state, or the last record is
        ``record_every_s`` old.  A tick that neither acts nor records writes nothing and
        is skipped: one round trip instead of two."""
        return (
            "state" in dec.inputs
            or self._last_record != self._record_key(dec, paused, withheld)
            or now - self._last_record_ms >= self.config.record_every_s * 1000
        )

    def intent_timeout_ms(self) -> int:
        """How long a create intent may stay open, ms: ``intent_timeout_s`` if set, else
        ``INTENT_TIMEOUT_B`` times the boot time of the last tick's plan, at least
        ``min_boot_timeout_s`` (a node created by a POST that timed out reports within a
        boot; a fixed 120 s kept the waitlist waiting on such intents for 120 s where boots
        take 3 s)."""
        c = self.config
        if c.intent_timeout_s is not None:
            return int(c.intent_timeout_s * 1000)
        return int(max(c.min_boot_timeout_s, INTENT_TIMEOUT_B * self._boot_s) * 1000)

    async def reconcile(self, token: str, now: int) -> None:
        """Close stale intents, adopt or delete unknown nodes, re-DELETE stuck ones."""
        c = self.config
        k = self.coord.keys
        grace = now - int(c.unknown_grace_s * 1000)
        expired, unknown, stuck = await self.coord.members_before_many(
            [
                (k.intents, now - self.intent_timeout_ms(), 100),
                (k.nodes_unknown, grace, 100),
                (k.nodes_terminating, now - int(c.redelete_after_s * 1000), 50),
            ]
        )
        for intent in expired:
            await self.coord.close_intent(intent, "expired")
            log.warning("reconcile: create intent %s expired without a node", intent)
        if unknown:
            old_intents = await self.coord.members_before(k.intents, grace, len(unknown))
            doomed: list[str] = []
            for node in unknown:
                if old_intents:
                    intent = old_intents.pop(0)
                    await self.coord.register_node(intent, node, now)
                    log.warning("reconcile: adopted unknown node %s into intent %s", node, intent)
                else:
                    doomed.append(node)
            for node in await self.coord.drop_unknown(token, now, doomed):
                log.warning("reconcile: deleting unknown node %s (no open create intent)", node)
                self._spawn(self._delete(node, known=False))
        for node in stuck:
            if now - self._deleting.get(node, 0) > c.redelete_after_s * 1000:
                self._spawn(self._delete(node))
        await self._confirm_ended(now)

    async def _confirm_ended(self, now: int) -> None:
        """DELETE, once, every node reported ``terminated`` that this leader did not delete
        (a preemption, a failed boot, or a wrong or forged status): the Node API answers 404
        for a node that really ended, and a node a wrong status left running is not left
        billing untracked. Nodes that ended up to ``redelete_after_s`` before this leader's
        first reconcile are covered too (what a former leader deleted gets one more 404)."""
        lo = self._ended_after_ms
        if lo is None:
            lo = now - int(self.config.redelete_after_s * 1000)
        # a tick behind: a node recorded terminated this tick may have its DELETE of ours
        # still to start (an unknown node is recorded terminated, then deleted)
        now -= int(self.config.tick_s * 1000)
        if now <= lo:
            return
        ended = await self.coord.members_after(self.coord.keys.nodes_terminated, lo, now, 200)
        if len(ended) == 200:  # more to come: go on from the last score, minus its ties
            last = ended[-1][1]
            ended = [(n, sc) for n, sc in ended if sc < last] or ended
            now = ended[-1][1]
        self._ended_after_ms = now
        for node, _ in ended:
            # ours ended: forget it (the map would grow by every node ever deleted)
            if self._deleting.pop(node, None) is None:
                self._spawn(self._delete(node, known=False, confirm=True))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _redis_retry(self, what: str, fn: Callable[[], Awaitable[Any]]) -> None:
        """Record the outcome of a Node API call in Redis, riding out a Redis outage:
        the call was made, so forgetting its result would leak a node."""
        try:
            async for attempt in AsyncRetrying(
                wait=wait_random_exponential(multiplier=0.2, max=5.0),
                stop=stop_after_delay(self.config.record_retry_s),
                retry=retry_if_exception_type((RedisError, OSError)),
                reraise=True,
            ):
                with attempt:
                    await fn()
        except Exception:
            log.exception("could not record %s in Redis; reconcile will catch up", what)

    async def _create(self, intent: str) -> None:
        async with self._sem:
            try:
                node = await self.api.create()
            except CreateFailed as e:
                self.metrics.node_api_calls.labels("create", "failed").inc()
                self._create_failed()
                self._limiter.warn("create", "create failed (intent %s): %s", intent, e)
                await self._redis_retry(
                    f"failed intent {intent}", lambda: self.coord.close_intent(intent, "failed")
                )
                return
            except CreateUncertain as e:
                self.metrics.node_api_calls.labels("create", "uncertain").inc()
                log.warning(
                    "create uncertain (intent %s: open until its node reports or it expires): %s",
                    intent, e,
                )  # fmt: skip
                return
            except Exception:
                log.exception("create (intent %s) failed unexpectedly", intent)
                return
            self.metrics.node_api_calls.labels("create", "ok").inc()
            self._create_fail_streak = 0
            await self._redis_retry(
                f"node {node}",
                lambda: self.coord.register_node(intent, node, self.clock.now_ms()),
            )

    def _create_failed(self) -> None:
        """Back off from a failing API: creates pause 2^k seconds (capped), with jitter."""
        self._create_fail_streak += 1
        pause = min(self.config.max_create_backoff_s, 2.0 ** min(self._create_fail_streak, 10))
        pause_ms = int(pause * self._rng.uniform(0.5, 1.0) * 1000)
        self._create_paused_until_ms = self.clock.now_ms() + pause_ms

    async def _delete(self, node: str, known: bool = True, confirm: bool = False) -> None:
        """DELETE ``node``; a 404 of a ``known`` node records it terminated. A ``confirm``
        DELETE (of a node that ended without ours, :meth:`_confirm_ended`) is not
        remembered: the others stay in ``_deleting`` until the node shows as terminated."""
        if not confirm:
            self._deleting[node] = self.clock.now_ms()
        async with self._sem:
            try:
                await self.api.delete(node)
                self.metrics.node_api_calls.labels("delete", "ok").inc()
            except NodeGone:
                self.metrics.node_api_calls.labels("delete", "gone").inc()
                if known:
                    await self._redis_retry(
                        f"gone node {node}",
                        lambda: self.coord.node_status(node, "terminated", self.clock.now_ms()),
                    )
            except NodeApiError as e:
                self.metrics.node_api_calls.labels("delete", "failed").inc()
                self._limiter.warn("delete", "delete %s failed (will retry): %s", node, e)
            except Exception:
                log.exception("delete %s failed unexpectedly", node)

    def idle_until_ms(self) -> float:
        """Until when (clock ms), if no inbound event arrives and no node status, every
        tick would change nothing: the last tick neither acted nor left anything open,
        and the conditions it acts on cannot turn by time alone before then. ``-inf``
        when no such promise holds; ``math.inf`` for good.

        The last tick must have written nothing to the pool (no reap, no create, no
        stuck node) and started no API call, with no intent, unknown or terminating node
        and nobody waiting. Then the next change by time alone is the earliest of: the
        policy's own (``Policy.steady_until_ms``: a decision that moves by time), the
        longest-idle ready node passing keep-alive while ready + booting exceed the reap
        floor, the longest-booting node passing the boot timeout, and the end of a pause
        of creates. Decision records a periodic ``record_every_s`` would add are not
        promised (they change no state). Used by the replay's fast-forward.
        """
        if self.last_tick is None or self._last_acted or self._tasks:
            return -math.inf
        view, dec = self.last_tick
        s = view.snapshot
        if s.waiting or s.intents or s.unknown or s.terminating:
            return -math.inf
        steady = getattr(self.policy, "steady_until_ms", None)
        now = self.clock.now_ms()
        out = float(steady(now)) if steady is not None else -math.inf
        if s.ready + s.booting > dec.reap_floor and view.oldest_ready_ms is not None:
            out = min(out, float(view.oldest_ready_ms + int(dec.keep_alive_s * 1000)))
        if view.oldest_booting_ms is not None:
            out = min(out, float(view.oldest_booting_ms + self.boot_timeout_ms(s)))
        if now < self._create_paused_until_ms:
            out = min(out, float(self._create_paused_until_ms))
        return out

    def skip_ticks(self, n: int) -> None:
        """Count ``n`` ticks that were not run (the replay's fast-forward), so the
        reconcile cadence stays on the same ticks as without it."""
        self._ticks += n

    @property
    def in_flight(self) -> int:
        """Node API calls (creates, deletes) running now."""
        return len(self._tasks)

    def cancel_calls(self) -> None:
        """Cancel every Node API call in flight (a replay that gives up: they must not
        write to the pool once its keys are deleted)."""
        for task in list(self._tasks):
            task.cancel()

    async def drain(self) -> None:
        """Wait for every Node API call in flight (the replay benchmark's step)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def shutdown(self) -> None:
        """Let in-flight API calls finish (bounded), store what the policy has learned,
        then release the lease."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        if self.token is not None:
            await self._store_state(self.token)
            try:
                await self.coord.release_lease(self.replica_id, self.token)
                log.info("leader: released lease")
            except Exception:
                log.exception("leader: could not release the lease")
            self._lost("released", warn=False)  # given back, not lost (a new user's finding)
