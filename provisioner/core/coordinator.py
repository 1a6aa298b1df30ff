"""Typed Python face of the Lua transitions: one method per script.

Every method is one atomic script call on Redis; nothing here reads, modifies and
writes back.  Times are unix **milliseconds** of the caller's clock (``now_ms``); the
same code runs on the wall clock live and on a virtual clock in the benchmark.
Message ids (``msg_id``) are ``seq * 1_000_000 + position`` from the shared sequence
(see :mod:`provisioner.core.sequencer`); 0 means "unordered" (seeding, benchmarks).
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from provisioner.core.errors import Code, raise_for_code
from provisioner.core.keys import Channels, PoolKeys
from provisioner.core.scripts import Call, ScriptRunner
from provisioner.policies.base import BootStats, PoolSnapshot

__all__ = [
    "ApplyResult",
    "BootStats",
    "Coordinator",
    "LeaseState",
    "PoolSnapshot",
    "ReapResult",
    "TickView",
    "UserRecord",
]

#: Width of one feature class's band of ``users:active`` scores (lua/includes/codes.lua).
CLASS_BAND = 10**13

#: Floor of the EWMA weight of the boot-time estimate: the estimate follows a change
#: of the boot time within about 1/alpha observations (here 10).
DEFAULT_BOOT_ALPHA = 0.1
#: The user TTL in boot times: past the last recency edge (4 B), where the learned hazard
#: has said its last, with room for slow returns.
DEFAULT_USER_TTL_B = 20.0


@dataclass(frozen=True)
class ReapResult:
    """Nodes :meth:`Coordinator.reap` marked terminating; the leader DELETEs them.

    Attributes:
        stuck: nodes that stayed booting past the timeout (to be replaced).
        idle: ready nodes idle past keep-alive beyond the target.
    """

    stuck: list[str]
    idle: list[str]


@dataclass(frozen=True)
class LeaseState:
    """Answer of :meth:`Coordinator.acquire_lease`.

    Attributes:
        held: True when the caller holds the lease now.
        token: the fencing token (the caller's when held, else the holder's).
        holder: the holder's replica id.
        expires_ms: when the lease lapses unless renewed (unix ms).
    """

    held: bool
    token: str
    holder: str
    expires_ms: int


@dataclass(frozen=True)
class TickView:
    """What :meth:`Coordinator.observe_tick` read, in one atomic step, as it renewed
    the lease.

    Attributes:
        expires_ms: the renewed lease's expiry, unix ms.
        snapshot: pool sizes, counters and the learned boot time.
        hazard: the hazard model's connect counters (``P:hazard``; empty when no class
            counts were asked for).
        premium_active: active premium users (0 when no class counts were asked for).
        active: active users per feature class and recency bucket, sparse:
            ``active[class][bucket]`` for the classes with active users only (empty
            when no class counts were asked for).
        oldest_booting_ms: when the longest-booting node was created, unix ms (None:
            none boots).
        oldest_ready_ms: since when the longest-idle ready node is idle, unix ms (None:
            none is ready).
    """

    expires_ms: int
    snapshot: PoolSnapshot
    hazard: dict[str, int]
    premium_active: int
    active: dict[int, list[int]]
    oldest_booting_ms: int | None = None
    oldest_ready_ms: int | None = None


@dataclass(frozen=True)
class ApplyResult:
    """What :meth:`Coordinator.apply_decision` did.

    Attributes:
        stuck: nodes marked terminating because they stayed booting past the timeout
            (DELETE and replace them).
        idle: surplus ready nodes marked terminating after keep-alive (DELETE them).
        intents: the create intents recorded (POST one node for each).
        spare: ready + booting + open intents after the reap, before the new intents.
        withheld: intents the ``max_nodes`` cap refused (0 without a cap).
        counted: nodes counted against the cap before the new intents (open intents,
            booting, ready, allocated, terminating and unknown nodes; lua/includes/caps.lua).
    """

    stuck: list[str]
    idle: list[str]
    intents: list[str]
    spare: int
    withheld: int = 0
    counted: int = 0


@dataclass(frozen=True)
class UserRecord:
    """One user's packed record (``P:user:info``, lua/includes/userrec.lua), decoded.

    Attributes:
        seq: id of the last message applied to the user (0: none yet).
        last_ms: latest time a message touched the user, unix ms (the history TTL's start).
        first_ms: the first activity of the user's current session, unix ms (a session
            is one stay in the active set: it restarts when the user enters it again).
        activity_count: ``user:activity`` events applied in the current session.
        connects: connects applied.
        last_disconnect_ms: time of the last disconnect, unix ms (0: none).
    """

    seq: int
    last_ms: int
    first_ms: int
    activity_count: int
    connects: int
    last_disconnect_ms: int

    @classmethod
    def decode(cls, value: str | bytes | None) -> UserRecord | None:
        """Parse a record (six base-36 integers joined by ``|``); None when absent or
        malformed (the scripts then treat the user as new)."""
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else value
        m = _REC_RE.fullmatch(text)  # what lua/includes/userrec.lua's REC_RE accepts
        if not m:
            return None
        nums = [int(p, 36) for p in m.groups()]
        if any(abs(x) > _MAX_EXACT for x in nums):  # beyond 2^53: malformed there too
            return None
        return cls(*nums)


_REC_RE = re.compile(
    r"(-?[0-9A-Za-z]+)\|(-?[0-9A-Za-z]+)\|(-?[0-9A-Za-z]+)\|([0-9A-Za-z]+)\|([0-9A-Za-z]+)"
    r"\|(-?[0-9A-Za-z]+)"
)
_MAX_EXACT = 2**53


def _s(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


#: The sorted sets whose sizes a :class:`PoolSnapshot` holds, in its field order (the
#: order ``observeTick`` returns them in, too).
_SNAPSHOT_SETS = (
    "nodes_booting",
    "nodes_ready",
    "nodes_allocated",
    "nodes_terminating",
    "users_waiting",
    "users_active",
    "intents",
    "nodes_unknown",
)


_Hash = Sequence[Any] | dict[Any, Any]


def _pairs(flat: _Hash) -> dict[str, str]:
    """A HGETALL answer (a dict, or a flat field/value list from a script) as a dict."""
    if isinstance(flat, dict):
        return {_s(a): _s(b) for a, b in flat.items()}
    return {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _sparse_counts(flat: Sequence[Any], k: int) -> tuple[int, dict[int, list[int]]]:
    """Decode ``{premium_active, class, k counts, class, k counts, ...}`` (the reply of
    ``count_active``, lua/includes/active.lua) into ``(premium_active, {class: counts})``;
    ``(0, {})`` for an empty reply."""
    if not flat:
        return 0, {}
    vals = [int(x) for x in flat]
    return vals[0], {vals[i]: vals[i + 1 : i + 1 + k] for i in range(1, len(vals), k + 1)}


def _positive(v: Any) -> float:
    """A hash value as a positive finite number, else 0 (absent or corrupt)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if 0.0 < x < math.inf else 0.0


def _count(v: Any) -> int:
    """A counter's value; 0 when it is not an integer (a hand-edited hash)."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _snapshot(sizes: Sequence[Any], stats: _Hash, boot: _Hash) -> PoolSnapshot:
    """Build a snapshot from the set sizes (``_SNAPSHOT_SETS`` order) and the stats and
    boot hashes."""
    boot_h = _pairs(boot)
    bs = BootStats()
    mean_ms = _positive(boot_h.get("mean_ms"))
    if mean_ms:  # a corrupt mean is no mean: B is the default, as the scripts read it
        bs = BootStats(
            n=int(_positive(boot_h.get("n"))),
            mean_s=mean_ms / 1000.0,
            sd_s=_positive(boot_h.get("var_ms2")) ** 0.5 / 1000.0,
            last_s=_positive(boot_h.get("last_ms")) / 1000.0,
        )
    n = [int(x) for x in sizes]
    return PoolSnapshot(
        booting=n[0],
        ready=n[1],
        allocated=n[2],
        terminating=n[3],
        waiting=n[4],
        active=n[5],
        intents=n[6],
        unknown=n[7],
        stats={a: _count(b) for a, b in _pairs(stats).items() if not a.startswith("_")},
        boot=bs,
    )


class Coordinator:
    """The pool's state transitions, each one Lua script.

    Args:
        client: a ``redis.asyncio.Redis`` created with ``decode_responses=True``.
        pool: the pool name (the hash tag of every key).
        channels: channel names (``user:assigned`` is published from inside scripts).
        boot_alpha: floor of the boot-time EWMA weight, in (0, 1].
        default_boot_s: boot time assumed before the first observation, seconds (sets
            the hazard model's recency buckets until a boot is observed).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        pool: str = "default",
        channels: Channels | None = None,
        boot_alpha: float = DEFAULT_BOOT_ALPHA,
        default_boot_s: float = 30.0,
    ) -> None:
        self.client = client
        self.keys = PoolKeys(pool)
        self.channels = channels or Channels(pool=pool)
        self.runner = ScriptRunner(client, self.keys)
        self.boot_alpha = boot_alpha
        self.default_boot_ms = max(1, int(default_boot_s * 1000))
        # the activity scripts take 1 s to 1 day: a default outside is clamped for them
        self._activity_boot_ms = min(86_400_000, max(1_000, self.default_boot_ms))
        self._new_secret = secrets.token_hex(16)  # used only if the pool has none yet
        # observeTick's copy of P:hazard: (version "n:since_ms", hash)
        self._hazard: tuple[str, dict[str, int]] = ("", {})

    async def _run(self, name: str, *args: str | int | float) -> list[Any]:
        res: list[Any] = await self.runner.call(name, *args)
        raise_for_code(name, int(res[0]))
        return res

    # -- inbound messages -------------------------------------------------------
    # Each inbound transition has a *call builder* (name and arguments, nothing run) so a
    # replica can apply several buffered messages in one pipeline (``runner.call_many``),
    # and a method that runs it alone.  Both paths build the same call.
    def activity_call(self, user: str, now_ms: int, msg_id: int = 0) -> Call:
        """The ``recordActivity`` call of one ``user:activity`` (result: ``[code, is_new]``);
        its user's feature class uses ``default_boot_s`` as B until a boot is observed."""
        return ("recordActivity", (user, now_ms, msg_id, self._activity_boot_ms))

    def activities_call(self, items: Sequence[tuple[str, int, int]]) -> Call:
        """One ``recordActivities`` call for a run of ``(user, now_ms, msg_id)`` activity
        messages, applied in order, each as :meth:`activity_call` would (result:
        ``[OK, code_1, ..., code_n]``)."""
        args: list[str | int | float] = [self._activity_boot_ms]
        for user, now_ms, msg_id in items:
            args += [user, now_ms, msg_id]
        return ("recordActivities", args)

    async def record_activities(self, items: Sequence[tuple[str, int, int]]) -> list[Code]:
        """Apply a run of ``user:activity`` messages in one call; one code per message."""
        res = await self._run_call(self.activities_call(items))
        return [Code(int(c)) for c in res[1:]]

    def connect_call(self, user: str, now_ms: int, msg_id: int = 0) -> Call:
        """The ``connectUser`` call of one ``user:connect`` (result: ``[code, node]``)."""
        return (
            "connectUser",
            (user, now_ms, msg_id, self.channels.assigned, self.default_boot_ms),
        )

    def disconnect_call(self, user: str, now_ms: int, msg_id: int = 0) -> Call:
        """The ``disconnectUser`` call of one ``user:disconnect``."""
        return ("disconnectUser", (user, now_ms, msg_id, self.channels.assigned))

    def node_status_call(self, node: str, status: str, now_ms: int, msg_id: int = 0) -> Call:
        """The ``recordNodeStatus`` call of one ``node:status``."""
        return (
            "recordNodeStatus",
            (node, status, now_ms, msg_id, self.channels.assigned, self.boot_alpha),
        )

    def bad_input_call(self, kind: str, msg_id: int = 0) -> Call:
        """The ``countBadInput`` call of one rejected message."""
        return ("countBadInput", (kind, msg_id))

    async def _run_call(self, call: Call) -> list[Any]:
        return await self._run(call[0], *call[1])

    async def record_activity(self, user: str, now_ms: int, msg_id: int = 0) -> Code:
        """Apply one ``user:activity``: OK or STALE (already applied/older)."""
        res = await self._run_call(self.activity_call(user, now_ms, msg_id))
        return Code(int(res[0]))

    async def connect(self, user: str, now_ms: int, msg_id: int = 0) -> tuple[Code, str | None]:
        """Apply one ``user:connect``.

        Returns:
            ``(HIT, node)``, ``(MISS, None)``, ``(DUPLICATE, node_or_None)`` or
            ``(STALE, None)``.  A hit publishes ``user:assigned`` with ``wait_ms`` 0.
        """
        res = await self._run_call(self.connect_call(user, now_ms, msg_id))
        return Code(int(res[0])), res[1] or None

    async def disconnect(
        self, user: str, now_ms: int, msg_id: int = 0
    ) -> tuple[Code, str | None, str | None]:
        """Apply one ``user:disconnect``.

        Returns:
            ``(code, node_released, user_it_went_to)``: code OK, UNKNOWN_USER or STALE.
        """
        res = await self._run_call(self.disconnect_call(user, now_ms, msg_id))
        return Code(int(res[0])), res[1] or None, res[2] or None

    async def node_status(
        self, node: str, status: str, now_ms: int, msg_id: int = 0
    ) -> tuple[Code, str | None]:
        """Apply one ``node:status`` (status booting, ready or terminated).

        Returns:
            ``(code, user)``: the user the node went to (ready) or was taken from
            (terminated), else None.

        Raises:
            BadArgumentError: unknown status.
        """
        code, user, _ = await self.apply_node_status(node, status, now_ms, msg_id)
        return code, user

    async def apply_node_status(
        self, node: str, status: str, now_ms: int, msg_id: int = 0
    ) -> tuple[Code, str | None, str | None]:
        """Like :meth:`node_status`, also returning the replacement node a user whose
        node was terminated got at once (None when it waits)."""
        res = await self._run_call(self.node_status_call(node, status, now_ms, msg_id))
        return Code(int(res[0])), res[1] or None, res[2] or None

    async def count_bad_input(self, kind: str, msg_id: int = 0) -> Code:
        """Count one rejected message of ``kind`` (once across replicas)."""
        res = await self._run_call(self.bad_input_call(kind, msg_id))
        return Code(int(res[0]))

    # -- node lifecycle (leader) ------------------------------------------------
    async def create_intents(
        self, token: str, now_ms: int, intent_ids: Sequence[str], max_nodes: int | None = None
    ) -> int:
        """Record create intents before POSTing (fenced).

        Args:
            token: the caller's fencing token; ``now_ms``: now, unix ms.
            intent_ids: unique ids (never ``"max_nodes"``).
            max_nodes: the cap on nodes that cost (open intents, booting, ready, allocated,
                terminating and unknown nodes): only the first ``max_nodes - counted`` ids
                are recorded, atomically with the count (None: no cap).

        Returns:
            How many ids were recorded (the first ones).

        Raises:
            FencedError: the token is not the live lease's.
            BadArgumentError: a negative cap or no ids.
        """
        cap: list[str | int] = [] if max_nodes is None else ["max_nodes", max_nodes]
        res = await self._run("createIntents", token, now_ms, *cap, *intent_ids)
        return int(res[1])

    async def register_node(self, intent_id: str, node_id: str, now_ms: int) -> Code:
        """Record a 202 answer: node ``node_id`` exists and boots (closes the intent)."""
        res = await self._run(
            "registerNode", intent_id, node_id, now_ms, self.channels.assigned, self.boot_alpha
        )
        return Code(int(res[0]))

    async def close_intent(self, intent_id: str, reason: str) -> bool:
        """Close an intent that produced no node; True if it was open."""
        res = await self._run("closeIntent", intent_id, reason)
        return bool(int(res[1]))

    async def reap(
        self,
        token: str,
        now_ms: int,
        keep_alive_ms: int,
        target_spare: int,
        boot_timeout_ms: int,
        max_count: int = 50,
    ) -> ReapResult:
        """Mark stuck-booting and surplus idle nodes terminating (fenced).

        Raises:
            FencedError: the token is not the live lease's.
        """
        res = await self._run(
            "reapNodes", token, now_ms, keep_alive_ms, target_spare, boot_timeout_ms, max_count
        )
        n_stuck = int(res[1])
        nodes = [_s(n) for n in res[2:]]
        return ReapResult(stuck=nodes[:n_stuck], idle=nodes[n_stuck:])

    async def record_decision(
        self, token: str, now_ms: int, fields: dict[str, str | int | float], maxlen: int = 1000
    ) -> None:
        """Store a scaling decision and its inputs (fenced)."""
        flat: list[str | int | float] = []
        for k, v in fields.items():
            flat += [k, v]
        await self._run("recordDecision", token, now_ms, maxlen, *flat)

    async def observe_tick(
        self,
        holder: str,
        token: str,
        now_ms: int,
        ttl_ms: int,
        default_boot_s: float,
        n_classes: int = 0,
        edges_b: Sequence[float] = (),
    ) -> TickView:
        """Renew the lease and read what a tick decides from, in one script.

        Args:
            holder, token: the caller's replica id and fencing token.
            now_ms: now, unix ms; ``ttl_ms``: the lease lapses this long after now.
            default_boot_s: the boot time B planned with before one is learned, seconds.
            n_classes: feature classes to count active users in (0: none, and no
                hazard counters are read).
            edges_b: inner recency-bucket edges in multiples of B, ascending
                (``len(edges_b) + 1`` buckets); the script turns them into ms with the
                same B as ``snapshot.boot.mean_s or default_boot_s``.

        Returns:
            The renewed expiry and the reads (:class:`TickView`).

        Raises:
            FencedError: the lease is not ours any more (nothing was read).
        """
        res = await self._run(
            "observeTick", holder, token, now_ms, ttl_ms, repr(float(default_boot_s)),
            n_classes, self._hazard[0], *[repr(float(e)) for e in edges_b],
        )  # fmt: skip
        snap = _snapshot(res[2], res[3], res[4])
        if res[5] is None or res[5] is False:  # our copy is current (RESP3: False)
            hazard = self._hazard[1]
        else:
            raw = _pairs(res[5])
            hazard = {a: _count(b) for a, b in raw.items()}
            # the version observeTick compares: "n:since_ms", as stored
            self._hazard = (f"{raw.get('n', '')}:{raw.get('since_ms', '')}", hazard)
        premium, grid = _sparse_counts(res[6], len(edges_b) + 1)
        oldest = [int(float(x)) if x not in (None, "", False) else None for x in res[7]]
        return TickView(int(res[1]), snap, hazard, premium, grid, oldest[0], oldest[1])

    async def apply_decision(self, token: str, now_ms: int, **knobs: Any) -> ApplyResult:
        """Reap, record the create intents still needed and store the decision, in one
        script (fenced; all or nothing): :meth:`apply_decision_call` run and its reply
        parsed (the keyword arguments are that method's).

        Returns:
            The nodes to DELETE and the intents to POST for.

        Raises:
            FencedError: the token is not the live lease's (nothing written).
        """
        call, prefix = self.apply_decision_call(token, now_ms, **knobs)
        return self.parse_applied((await self.runner.call_many([call]))[0], prefix)

    def apply_decision_call(
        self,
        token: str,
        now_ms: int,
        *,
        keep_alive_ms: int,
        reap_floor: int,
        boot_timeout_ms: int,
        target_spare: int,
        max_creates: int,
        fields: dict[str, str | int | float],
        max_reap: int = 50,
        maxlen: int = 1000,
        max_nodes: int | None = None,
    ) -> tuple[Call, str]:
        """The ``applyDecision`` call (nothing run), and the prefix of the intent ids it
        records (for :meth:`parse_applied`).

        Args:
            token: the caller's fencing token; ``now_ms``: now, unix ms.
            keep_alive_ms: idle time before a surplus ready node may be reaped, ms.
            reap_floor: ready + booting nodes the reaper leaves.
            boot_timeout_ms: a node booting longer is stuck and reaped, ms.
            target_spare: spare nodes (ready + booting + intents) to hold; intents are
                recorded for ``min(max_creates, target_spare + waiting - spare)``.
            max_creates: most intents recorded (0 while creates are paused).
            fields: the decision's inputs, stored in ``P:policy`` and the decisions
                stream (with ``spare``, ``created``, ``reaped_idle``, ``reaped_stuck``).
            max_reap: most nodes marked terminating; ``maxlen``: cap of the stream.
            max_nodes: the cap on nodes that cost (open intents, booting, ready,
                allocated, terminating and unknown nodes, lua/includes/caps.lua): intents
                beyond it are withheld, atomically with the count; stored as the field
                ``max_nodes`` (None: no cap).
        """
        prefix = secrets.token_hex(8)
        flat: list[str | int | float] = []
        for name, value in fields.items():
            if name != "max_nodes":  # the script reads that field as the cap
                flat += [name, value]
        if max_nodes is not None:
            flat += ["max_nodes", max_nodes]
        args = (
            token, now_ms, keep_alive_ms, reap_floor, boot_timeout_ms, max_reap,
            target_spare, max_creates, prefix, maxlen, *flat,
        )  # fmt: skip
        return ("applyDecision", args), prefix

    @staticmethod
    def parse_applied(res: list[Any], prefix: str) -> ApplyResult:
        """The :class:`ApplyResult` of an ``applyDecision`` reply.

        Raises:
            FencedError: the token was not the live lease's (nothing written).
            ScriptError: another refusal (bad argument, wrong key type).
        """
        raise_for_code("applyDecision", int(res[0]))
        n_stuck, n_idle, created = int(res[1]), int(res[2]), int(res[3])
        nodes = [_s(n) for n in res[7:]]
        return ApplyResult(
            stuck=nodes[:n_stuck],
            idle=nodes[n_stuck : n_stuck + n_idle],
            intents=[f"{prefix}-{i}" for i in range(1, created + 1)],
            spare=int(res[4]),
            withheld=int(res[5]),
            counted=int(res[6]),
        )

    # -- lease --------------------------------------------------------------------
    async def acquire_lease(
        self, holder: str, now_ms: int, ttl_ms: int, instance: str = ""
    ) -> LeaseState:
        """Take the lease if free or expired (new token), or extend our own.

        Args:
            holder: the replica id.
            now_ms: unix ms.
            ttl_ms: the lease's length, ms.
            instance: drawn once per process: a lease held by the same replica id with
                another instance is another process's (``held`` False, ``holder`` our
                own id), never shared.
        """
        res = await self._run("acquireLease", holder, now_ms, ttl_ms, instance)
        return LeaseState(
            held=int(res[0]) == Code.OK,
            token=_s(res[1]),
            holder=_s(res[2]),
            expires_ms=int(res[3]),
        )

    async def renew_lease(self, holder: str, token: str, now_ms: int, ttl_ms: int) -> int:
        """Compare-and-extend; returns the new expiry (unix ms).

        Raises:
            FencedError: the lease is not ours any more.
        """
        res = await self._run("renewLease", holder, token, now_ms, ttl_ms)
        return int(res[1])

    async def release_lease(self, holder: str, token: str) -> bool:
        """Give the lease up; False if it was not ours.

        Raises:
            WrongTypeError: the lease key holds another type (a clear error, not False).
        """
        res: list[Any] = await self.runner.call("releaseLease", holder, token)
        if int(res[0]) == Code.ERR_FENCED:
            return False
        raise_for_code("releaseLease", int(res[0]))
        return True

    # -- maintenance (any replica) ----------------------------------------------
    async def emit_marker(
        self, now_ms: int, interval_ms: int, floor_seq: int = 0
    ) -> tuple[int, bool]:
        """Publish a shared-sequence marker if the last is old enough.

        Args:
            now_ms: unix ms.
            interval_ms: publish only when the last marker is at least this old.
            floor_seq: the highest sequence number the caller has seen: a counter below it
                (the pool's keys were deleted, or Redis restarted without persistence) is
                raised to it first, so message ids only grow.

        Returns:
            ``(seq, raised)``: the published sequence number (0 when it was too soon) and
            whether the floor raised the counter.
        """
        res = await self._run(
            "emitMarker", now_ms, interval_ms, self.channels.marker, self._new_secret,
            floor_seq,
        )  # fmt: skip
        return int(res[1]), bool(int(res[2])) if len(res) > 2 else False

    async def marker_secret(self) -> str | None:
        """Read-only: the pool's marker secret (None until the first marker)."""
        v = await self.client.get(self.keys.seq_secret)
        return None if v is None else str(v)

    async def heartbeat(
        self, replica: str, now_ms: int, stale_ms: int = 30_000, leave: bool = False
    ) -> int:
        """Record a replica heartbeat (unix ms), dropping replicas silent for ``stale_ms``;
        with ``leave``, remove the replica's entry instead (a clean stop).  Returns the
        number of replicas listed."""
        mode = "leave" if leave else "alive"
        res = await self._run("heartbeat", replica, now_ms, stale_ms, mode)
        return int(res[1])

    async def expire_users(
        self, now_ms: int, ttl_ms: int, max_count: int = 1000, min_interval_ms: int = 1000,
        ttl_b: float = DEFAULT_USER_TTL_B,
    ) -> int:  # fmt: skip
        """Drop users inactive for the user TTL from the active set; returns how many.

        Args:
            now_ms: unix ms.
            ttl_ms: the TTL, ms; 0: ``ttl_b`` boot times (the learned mean boot time,
                else the default boot time), computed in the script.
            max_count: most users dropped per call.
            min_interval_ms: skip when another replica ran it more recently.
            ttl_b: the TTL in boot times when ``ttl_ms`` is 0.

        Their records stay until the history TTL (:meth:`forget_users`)."""
        res = await self._run(
            "expireUsers", now_ms, ttl_ms, max_count, min_interval_ms, ttl_b,
            self._activity_boot_ms,
        )  # fmt: skip
        return int(res[1])

    async def forget_users(
        self, now_ms: int, history_ttl_ms: int, count: int = 1000
    ) -> tuple[int, bool]:
        """The history TTL: delete user records untouched for ``history_ttl_ms`` (users
        neither active, connected nor waiting), walking ``count`` records per call.

        Returns:
            ``(records deleted, True when this call finished a full walk)``.
        """
        res = await self._run("forgetUsers", now_ms, history_ttl_ms, count)
        return int(res[1]), bool(int(res[2]))

    async def prune_nodes(
        self, now_ms: int, retain_ms: int = 3_600_000, max_count: int = 500
    ) -> int:
        """Forget nodes terminated more than ``retain_ms`` ago; returns how many."""
        res = await self._run("pruneNodes", now_ms, retain_ms, max_count)
        return int(res[1])

    # -- reads ----------------------------------------------------------------------
    async def snapshot(self) -> PoolSnapshot:
        """Read the pool's sizes, counters and boot time in one MULTI (read-only)."""
        k = self.keys
        pipe = self.client.pipeline(transaction=True)
        for z in _SNAPSHOT_SETS:
            pipe.zcard(getattr(k, z))
        pipe.hgetall(k.stats)
        pipe.hgetall(k.boot)
        r = await pipe.execute()
        return _snapshot(r[:8], r[8], r[9])

    async def mark_terminating(self, token: str, now_ms: int, nodes: Sequence[str]) -> list[str]:
        """Mark booting/ready nodes terminating (fenced); returns those marked.

        Raises:
            FencedError: the token is not the live lease's.
        """
        return await self._fenced_nodes("markTerminating", token, now_ms, nodes)

    async def members_before(self, key: str, before_ms: int, limit: int = 100) -> list[str]:
        """Read-only: members of sorted set ``key`` with score <= ``before_ms``, lowest first."""
        res = await self.client.zrangebyscore(key, "-inf", before_ms, start=0, num=limit)
        return [_s(m) for m in res]

    async def members_after(
        self, key: str, after_ms: int, until_ms: int, limit: int = 100
    ) -> list[tuple[str, int]]:
        """Read-only: ``(member, score)`` of sorted set ``key`` with ``after_ms < score <=
        until_ms``, lowest score first, at most ``limit``."""
        res: Any = await self.client.zrangebyscore(
            key, f"({after_ms}", until_ms, start=0, num=limit, withscores=True
        )
        return [(_s(m), int(sc)) for m, sc in res]

    async def members_before_many(self, queries: Sequence[tuple[str, int, int]]) -> list[list[str]]:
        """Read-only: :meth:`members_before` for several ``(key, before_ms, limit)`` in one
        round trip (a pipeline); one list per query, in order."""
        pipe = self.client.pipeline(transaction=False)
        for key, before_ms, limit in queries:
            pipe.zrangebyscore(key, "-inf", before_ms, start=0, num=limit)
        return [[_s(m) for m in res] for res in await pipe.execute()]

    async def active_by_class_recency(
        self, now_ms: int, edges_ms: Sequence[float], n_classes: int
    ) -> tuple[int, dict[int, list[int]]]:
        """Read-only: active users per feature class and recency bucket (ZCOUNTs).

        Args:
            now_ms: now, unix ms.
            edges_ms: inner bucket edges of the time since last activity, ms, ascending
                (k edges give k + 1 buckets, the last one open).
            n_classes: feature classes (``users:active`` scores are class * 1e13 + ms).

        Returns:
            ``(premium_active, counts[class][bucket])``, sparse: only classes with
            active users are keys; one script, O((occupied classes + 1) * buckets * log N).
        """
        res = await self._run("countActive", now_ms, n_classes, *[int(e) for e in edges_ms])
        return _sparse_counts(res[1:], len(edges_ms) + 1)

    async def set_premium(self, users: Sequence[str], premium: bool = True) -> int:
        """Mark users premium (or not); returns how many changed."""
        if not users:
            return 0
        res = await self._run("setPremium", "add" if premium else "remove", *users)
        return int(res[1])

    async def user_record(self, user: str) -> UserRecord | None:
        """Read-only: one user's decoded record (None when the pool has none)."""
        return UserRecord.decode(await self.client.hget(self.keys.user_info, user))

    async def drop_unknown(self, token: str, now_ms: int, nodes: Sequence[str]) -> list[str]:
        """Record unknown nodes with no open intent as terminated (fenced); returns them.

        Raises:
            FencedError: the token is not the live lease's.
        """
        return await self._fenced_nodes("dropUnknown", token, now_ms, nodes)

    async def _fenced_nodes(
        self, script: str, token: str, now_ms: int, nodes: Sequence[str]
    ) -> list[str]:
        """Run a fenced script over node ids; the ids it acted on."""
        if not nodes:
            return []
        res = await self._run(script, token, now_ms, *nodes)
        return [_s(n) for n in res[1:]]
