"""Scoring a run (docs/design.md#2): hits, misses, waits, cost, violations.

The score reads only what an outside observer sees: the contract's channels
(``user:activity``, ``user:connect``, ``user:disconnect``, ``user:assigned``) and the mock
node API's own ledger (``GET /api/ledger``), never the provisioner's keys.

:func:`score` is a pure function over records with times in **milliseconds** (wall or
virtual, one clock for all); :class:`ScoreListener` records the channels live on Redis and
scores against the ledger at the end.  Node-seconds and the oracle are in **seconds**.

Definitions:

* A **hit** is a session whose first ``user:assigned`` has ``wait_ms == 0``; misses =
  connects - hits (never-served sessions are misses).  A connect is **predictable** when the
  user was seen on ``user:activity`` before it (at equal times activity counts as before),
  else **cold**.  Waits (p50/p95/max) are measured by the scorecard, assignment time minus
  connect time, over the misses that were served.  **Never served**: disconnected while
  waiting, or still waiting at the end.
* **Node-seconds** of a node: from ``created_ms`` (its ``POST``) to the earlier of
  ``delete_ms`` and ``terminated_ms``, or to the end when it has neither, clipped to
  ``[start_ms, end_ms]``.  **Busy**: while assigned to a connected user, from the assignment
  to the user's disconnect, or the node's end of life if earlier; overlapping busy intervals
  of one node (only possible with violations) are merged.  **Idle** = total - busy.
* **Violations** (must be 0): assigning a node that is not ready per the ledger (``ready_ms``
  missing or later than the assignment + :data:`SKEW_MS`), or already terminated/deleted
  (end of life earlier than the assignment - :data:`SKEW_MS`), or unknown to the ledger; a
  node assigned while another connected user holds it; a user given a second node while
  holding a live one; the same node announced twice to the same user (the contract says
  once per assignment).  A second assignment after the user's node ended (by the ledger,
  within :data:`SKEW_MS`) is a **replacement**, not a violation.
* Records at equal times are taken in the order activity, connect, assigned, disconnect;
  the live listener makes its times strictly increasing in arrival order.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis

SKEW_MS = 50.0
"""Tolerance for clock and message skew between the ledger and the channels, ms."""

Connect = tuple[float, str]
"""``(t_ms, user_id)``."""
Disconnect = tuple[float, str]
"""``(t_ms, user_id)``."""
Activity = tuple[float, str]
"""``(t_ms, user_id)``."""
Assignment = tuple[float, str, str, int]
"""``(t_ms, user_id, node_id, wait_ms)`` as published on ``user:assigned``."""


@dataclass
class Scorecard:
    """The score of one run.  Times in ms except the ``*_node_seconds`` (seconds).

    Attributes:
        connects: Sessions started (``user:connect`` of a user not connected).
        hits: Sessions whose first assignment had ``wait_ms == 0``.
        misses: ``connects - hits``.
        miss_rate: ``misses / connects`` (0 without connects).
        connects_predictable: Connects of users seen on ``user:activity`` before.
        connects_cold: Connects of users never seen on activity before.
        misses_predictable: Misses among the predictable connects.
        misses_cold: Misses among the cold connects.
        wait_p50_ms: Median wait of the served misses, ms (None without any).
        wait_p95_ms: 95th percentile of the same, ms (linear interpolation).
        wait_max_ms: Maximum of the same, ms.
        served_misses: Misses that got a node.
        never_served: Sessions that ended (or the run ended) while waiting.
        replacements: Second assignments after the user's node ended.
        node_seconds: Total node-seconds, seconds.
        busy_node_seconds: Node-seconds assigned to a connected user, seconds.
        idle_node_seconds: ``node_seconds - busy_node_seconds``, seconds.
        nodes_created: Nodes in the ledger.
        oracle_node_seconds: Clairvoyant lower bound (:func:`oracle_node_seconds`), seconds.
        cost_over_oracle: ``node_seconds / oracle_node_seconds`` (None if the oracle is 0).
        boot_time_s: Boot time the oracle used, seconds.
        violations: Number of violations.
        violation_details: One description per violation.
        anomalies: Counts of odd but legal records (``duplicate_connect``,
            ``stray_disconnect``, ``stray_assignment``: assigned to a user not connected).
        start_ms: Start of the scored span, ms.
        end_ms: End of the scored span, ms.
    """

    connects: int = 0
    hits: int = 0
    misses: int = 0
    miss_rate: float = 0.0
    connects_predictable: int = 0
    connects_cold: int = 0
    misses_predictable: int = 0
    misses_cold: int = 0
    wait_p50_ms: float | None = None
    wait_p95_ms: float | None = None
    wait_max_ms: float | None = None
    served_misses: int = 0
    never_served: int = 0
    replacements: int = 0
    node_seconds: float = 0.0
    busy_node_seconds: float = 0.0
    idle_node_seconds: float = 0.0
    nodes_created: int = 0
    oracle_node_seconds: float = 0.0
    cost_over_oracle: float | None = None
    boot_time_s: float = 0.0
    violations: int = 0
    violation_details: list[str] = field(default_factory=list)
    anomalies: dict[str, int] = field(default_factory=dict)
    start_ms: float = 0.0
    end_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of all fields."""
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) by linear interpolation between order statistics.

    Source: Hyndman & Fan (1996), "Sample Quantiles in Statistical Packages", definition 7
    (the default of R and NumPy).  None for an empty sequence.
    """
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def oracle_node_seconds(sessions: Iterable[tuple[float, float]], boot_time_s: float) -> float:
    """Clairvoyant lower bound on node-seconds for zero misses, seconds.

    Every session ``(connect_s, disconnect_s)`` needs a ready node during it.  Its node is
    either booted exactly ``boot_time_s`` before the connect (extra cost ``boot_time_s``) or
    is a node freed at an earlier disconnect ``d <= connect_s`` kept idle until the connect
    (extra cost ``connect_s - d``); a freed node that is not reused is deleted at once.
    Total = sum of session durations + sum over sessions of that extra cost.

    Method: sweep the disconnects and connects in time order (a disconnect at the same time
    as a connect comes first), keep freed nodes on a stack, and give each connect the most
    recently freed node (LIFO) if its idle gap is ``< boot_time_s``, else a new boot.  When
    the top of the stack is too old every node below it is older still, and so for every
    later connect, so the stack is then cleared.  O(n log n).

    Why the greedy is optimal: it is a min-cost matching of disconnects to later connects
    with edge cost ``f(c - d) = min(boot, c - d)`` (an unmatched connect costs ``boot``).
    Take an optimal matching that agrees with the greedy on all connects before ``c_i``;
    let ``d_j`` be the greedy's pick (latest free ``d <= c_i``).  If the optimum leaves
    ``d_j`` unused, moving ``c_i`` onto it does not raise the cost (``c_i - d_j`` is the
    smallest available gap).  If it matches ``d_j`` to a later ``c_k`` and ``c_i`` to
    ``d_l <= d_j`` (or to nothing, cost ``boot``), swapping to ``(d_j, c_i), (d_l, c_k)``
    (or leaving ``c_k`` unmatched) keeps the sum of the gaps and moves them apart:
    ``c_i - d_j <= {c_i - d_l, c_k - d_j} <= c_k - d_l``; as ``f`` is concave,
    ``f(c_i - d_j) + f(c_k - d_l) <= f(c_i - d_l) + f(c_k - d_j)``.  By induction the greedy
    is optimal.  (When the greedy boots anew the best gap is ``>= boot``, so any match costs
    ``boot`` too and leaving the node free is never worse.)

    Args:
        sessions: ``(connect_s, disconnect_s)`` pairs in seconds, any order.
        boot_time_s: Boot time in seconds (the scenario's mean).

    Returns:
        Node-seconds, seconds.
    """
    points: list[tuple[float, int]] = []  # (time, 0 = disconnect first at ties, 1 = connect)
    total = 0.0
    for c, d in sessions:
        d = max(c, d)
        total += d - c
        points.append((c, 1))
        points.append((d, 0))
    points.sort()
    freed: list[float] = []
    for t, kind in points:
        if kind == 0:
            freed.append(t)
            continue
        if freed and t - freed[-1] < boot_time_s:
            total += t - freed.pop()
        else:
            freed.clear()
            total += boot_time_s
    return total


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def _node_end_ms(node: Mapping[str, Any]) -> float | None:
    """End of life of a ledger node: the earlier of ``delete_ms`` and ``terminated_ms``."""
    ends = [
        v for v in (_num(node.get("delete_ms")), _num(node.get("terminated_ms"))) if v is not None
    ]
    return min(ends) if ends else None


def _merge(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals."""
    total, cur_a, cur_b = 0.0, -math.inf, -math.inf
    for a, b in sorted(intervals):
        if a > cur_b:
            total += max(0.0, cur_b - cur_a) if cur_b > -math.inf else 0.0
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b > -math.inf:
        total += cur_b - cur_a
    return total


@dataclass
class _User:
    connect_ms: float
    predictable: bool
    served: bool = False
    node: str | None = None
    since_ms: float = 0.0


def _first_seen(activity: Iterable[Activity]) -> tuple[dict[str, float], float]:
    """Each user's first ``user:activity`` time and the latest time of all, ms
    (``-inf`` without activity).

    Activity only decides predictability: a connect is predictable when its user's first
    activity is at or before it (at equal times activity counts as before), so the first
    time per user stands for all of it (not a million records in the sort).
    """
    first_seen: dict[str, float] = {}
    last_seen = -math.inf
    for r in activity:
        t_a, u_a = float(r[0]), r[1]
        if t_a < first_seen.get(u_a, math.inf):
            first_seen[u_a] = t_a
        last_seen = max(last_seen, t_a)
    return first_seen, last_seen


def _span(
    records: Iterable[tuple[Any, ...]],
    first_seen: Mapping[str, float],
    last_seen: float,
    nodes: Sequence[Mapping[str, Any]],
    start_ms: float | None,
    end_ms: float | None,
) -> tuple[float, float]:
    """The scored span ``(start, end)``, ms: ``start_ms`` and ``end_ms`` where given, else
    the earliest and latest time of the channel records, the activity and the ledger."""
    all_times: list[float] = [float(r[0]) for r in records]
    if first_seen:
        all_times += [min(first_seen.values()), last_seen]
    for n in nodes:
        all_times.extend(
            v
            for v in (
                _num(n.get(k)) for k in ("created_ms", "ready_ms", "delete_ms", "terminated_ms")
            )
            if v is not None
        )
    start = start_ms if start_ms is not None else (min(all_times) if all_times else 0.0)
    end = end_ms if end_ms is not None else (max(all_times) if all_times else start)
    return start, end


def _mean_boot_s(nodes: Sequence[Mapping[str, Any]]) -> float:
    """Mean ``ready_ms - created_ms`` of the ledger's nodes that became ready, seconds (0
    if none)."""
    boots = [
        (float(n["ready_ms"]) - float(n["created_ms"])) / 1000.0
        for n in nodes
        if n.get("ready_ms") is not None and n.get("created_ms") is not None
    ]
    return sum(boots) / len(boots) if boots else 0.0


class _Walk:
    """The channel records in time order (:func:`score`): sessions, hits, waits, busy
    intervals per node, violations (into ``sc``) and anomalies.

    Attributes:
        waits: wait of each served miss, ms.
        sessions: ``(connect_ms, disconnect_ms)`` of every session (open ones to the end).
        busy: per node, its intervals assigned to a connected user, ms.
        hits_pred: hits among the predictable connects.
    """

    def __init__(
        self,
        sc: Scorecard,
        ledger: Mapping[str, Mapping[str, Any]],
        first_seen: Mapping[str, float],
        skew_ms: float,
    ) -> None:
        self.sc = sc
        self.ledger = ledger
        self.first_seen = first_seen
        self.skew_ms = skew_ms
        self.anomalies = {"duplicate_connect": 0, "stray_disconnect": 0, "stray_assignment": 0}
        self.users: dict[str, _User] = {}
        self.holder: dict[str, str] = {}
        self.busy: dict[str, list[tuple[float, float]]] = {}
        self.waits: list[float] = []
        self.sessions: list[tuple[float, float]] = []
        self.hits_pred = 0

    def run(self, timeline: Iterable[tuple[float, int, int, tuple[Any, ...]]], end: float) -> None:
        """Walk ``timeline`` (``(t_ms, rank, index, record)``: rank 1 connect, 2
        assignment, 3 disconnect), then close the sessions still open at ``end`` (ms)."""
        for t, rank, _, rec in timeline:
            if rank == 1:
                self._connect(t, rec[1])
            elif rank == 2:
                _, u, node, wait_ms = rec
                self._assigned(t, u, str(node), wait_ms)
            else:
                self._disconnect(t, rec[1])
        for u, st in self.users.items():
            if not st.served:
                self.sc.never_served += 1
            self._release(u, st, max(end, st.since_ms))
            self.sessions.append((st.connect_ms, max(end, st.connect_ms)))

    def _gone_ms(self, node_id: str) -> float | None:
        n = self.ledger.get(node_id)
        return _node_end_ms(n) if n is not None else None

    def _violate(self, msg: str) -> None:
        self.sc.violation_details.append(msg)

    def _release(self, user: str, st: _User, t: float) -> None:
        """``user`` no longer holds its node (if any) from ``t``: close its busy interval."""
        if st.node is None:
            return
        g = self._gone_ms(st.node)
        b = min(t, g) if g is not None else t
        if b > st.since_ms:
            self.busy.setdefault(st.node, []).append((st.since_ms, b))
        if self.holder.get(st.node) == user:
            del self.holder[st.node]
        st.node = None

    def _connect(self, t: float, u: str) -> None:
        if u in self.users:
            self.anomalies["duplicate_connect"] += 1
            return
        pred = self.first_seen.get(u, math.inf) <= t
        self.users[u] = _User(connect_ms=t, predictable=pred)
        self.sc.connects += 1
        self.sc.connects_predictable += pred

    def _check_ledger(self, t: float, u: str, node: str) -> None:
        """A violation when ``node`` is unknown, not ready or already ended at ``t``."""
        led = self.ledger.get(node)
        if led is None:
            self._violate(f"t={t:.0f}ms: {u} assigned {node}, unknown to the ledger")
            return
        ready = _num(led.get("ready_ms"))
        g = _node_end_ms(led)
        if ready is None or ready > t + self.skew_ms:
            self._violate(f"t={t:.0f}ms: {u} assigned {node}, not ready (ready_ms={ready})")
        elif g is not None and g < t - self.skew_ms:
            self._violate(f"t={t:.0f}ms: {u} assigned {node}, ended at {g:.0f}ms")

    def _assigned(self, t: float, u: str, node: str, wait_ms: Any) -> None:
        sc, skew_ms = self.sc, self.skew_ms
        self._check_ledger(t, u, node)
        st = self.users.get(u)
        if st is None:
            self.anomalies["stray_assignment"] += 1
            return
        other = self.holder.get(node)
        if other is not None and other != u:
            g = self._gone_ms(node)
            if g is None or g > t + skew_ms:
                self._violate(f"t={t:.0f}ms: {node} assigned to {u} while held by {other}")
        if st.node is not None:
            if st.node == node:
                self._violate(f"t={t:.0f}ms: {node} announced twice to {u}")
                return
            g = self._gone_ms(st.node)
            if g is not None and g <= t + skew_ms:
                sc.replacements += 1
            else:
                self._violate(f"t={t:.0f}ms: {u} given {node} while holding {st.node}")
            self._release(u, st, t)
        elif not st.served:
            if int(wait_ms) == 0:
                sc.hits += 1
                self.hits_pred += st.predictable
            else:
                self.waits.append(t - st.connect_ms)
        else:
            sc.replacements += 1
        st.served = True
        st.node = node
        st.since_ms = t
        self.holder[node] = u

    def _disconnect(self, t: float, u: str) -> None:
        st = self.users.pop(u, None)
        if st is None:
            self.anomalies["stray_disconnect"] += 1
            return
        if not st.served:
            self.sc.never_served += 1
        self._release(u, st, t)
        self.sessions.append((st.connect_ms, t))


def _node_ms(
    ledger: Mapping[str, Mapping[str, Any]],
    busy: Mapping[str, list[tuple[float, float]]],
    start: float,
    end: float,
) -> tuple[float, float]:
    """Total and busy node-milliseconds of the ledger's nodes within ``[start, end]``."""
    total_ms = busy_ms = 0.0
    for node_id, n in ledger.items():
        created = _num(n.get("created_ms"))
        if created is None:
            continue
        a = max(created, start)
        g = _node_end_ms(n)
        b = min(g, end) if g is not None else end
        if b <= a:
            continue
        total_ms += b - a
        ivs = [(max(x, a), min(y, b)) for x, y in busy.get(node_id, []) if min(y, b) > max(x, a)]
        busy_ms += _merge(ivs)
    return total_ms, busy_ms


def score(
    connects: Sequence[Connect],
    disconnects: Sequence[Disconnect],
    assignments: Sequence[Assignment],
    activity: Iterable[Activity],
    nodes: Sequence[Mapping[str, Any]],
    boot_time_s: float | None = None,
    *,
    start_ms: float | None = None,
    end_ms: float | None = None,
    skew_ms: float = SKEW_MS,
) -> Scorecard:
    """Score a run from its records (pure).

    Args:
        connects: ``(t_ms, user)`` of ``user:connect``.
        disconnects: ``(t_ms, user)`` of ``user:disconnect``.
        assignments: ``(t_ms, user, node, wait_ms)`` of ``user:assigned``.
        activity: ``(t_ms, user)`` of ``user:activity`` (only decides predictability).
        nodes: The mock API's ledger: dicts with ``id``, ``created_ms``, ``ready_ms``,
            ``delete_ms``, ``terminated_ms`` (ms or None), ``status``, ``outcome``.
        boot_time_s: Boot time for the oracle, seconds; default: the mean
            ``ready_ms - created_ms`` of the ledger's nodes that became ready (0 if none).
        start_ms: Start of the scored span (node-seconds before it are not counted);
            default: the earliest time in the records and ledger.
        end_ms: End of the scored span; nodes alive and sessions open are counted until
            then; default: the latest time in the records and ledger.
        skew_ms: Tolerance for skew between ledger and channel times, ms.

    Returns:
        The scorecard (definitions in the module docstring).
    """
    ledger = {str(n["id"]): n for n in nodes}
    first_seen, last_seen = _first_seen(activity)
    start, end = _span(
        (*connects, *disconnects, *assignments), first_seen, last_seen, nodes, start_ms, end_ms
    )
    if boot_time_s is None:
        boot_time_s = _mean_boot_s(nodes)

    timeline: list[tuple[float, int, int, tuple[Any, ...]]] = []
    for rank, recs in enumerate((connects, assignments, disconnects), start=1):
        timeline.extend((float(r[0]), rank, i, tuple(r)) for i, r in enumerate(recs))
    timeline.sort(key=lambda x: (x[0], x[1], x[2]))

    sc = Scorecard(start_ms=start, end_ms=end, boot_time_s=boot_time_s)
    walk = _Walk(sc, ledger, first_seen, skew_ms)
    walk.run(timeline, end)
    waits = walk.waits

    sc.misses = sc.connects - sc.hits
    sc.miss_rate = sc.misses / sc.connects if sc.connects else 0.0
    sc.connects_cold = sc.connects - sc.connects_predictable
    sc.misses_predictable = sc.connects_predictable - walk.hits_pred
    sc.misses_cold = sc.misses - sc.misses_predictable
    sc.served_misses = len(waits)
    sc.wait_p50_ms = percentile(waits, 0.50)
    sc.wait_p95_ms = percentile(waits, 0.95)
    sc.wait_max_ms = max(waits) if waits else None

    total_ms, busy_ms = _node_ms(ledger, walk.busy, start, end)
    sc.nodes_created = len(ledger)
    sc.node_seconds = total_ms / 1000.0
    sc.busy_node_seconds = busy_ms / 1000.0
    sc.idle_node_seconds = sc.node_seconds - sc.busy_node_seconds
    sc.oracle_node_seconds = oracle_node_seconds(
        ((c / 1000.0, d / 1000.0) for c, d in walk.sessions), boot_time_s
    )
    sc.cost_over_oracle = (
        sc.node_seconds / sc.oracle_node_seconds if sc.oracle_node_seconds > 0 else None
    )
    sc.violations = len(sc.violation_details)
    sc.anomalies = walk.anomalies
    return sc


def format_scorecard(sc: Scorecard) -> str:
    """A human-readable table of a scorecard."""

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:,.0f} ms"

    ratio = "-" if sc.cost_over_oracle is None else f"{sc.cost_over_oracle:.2f}x"
    rows = [
        (
            "connects",
            f"{sc.connects} ({sc.connects_predictable} predictable, {sc.connects_cold} cold)",
        ),
        ("hits", str(sc.hits)),
        (
            "misses",
            f"{sc.misses} ({sc.miss_rate:.1%}; {sc.misses_predictable} predictable, "
            f"{sc.misses_cold} cold)",
        ),
        (
            "wait p50 / p95 / max",
            f"{ms(sc.wait_p50_ms)} / {ms(sc.wait_p95_ms)} / "
            f"{ms(sc.wait_max_ms)} over {sc.served_misses} served misses",
        ),
        ("never served", str(sc.never_served)),
        ("replacements", str(sc.replacements)),
        ("nodes created", str(sc.nodes_created)),
        (
            "node-seconds",
            f"{sc.node_seconds:,.1f} s (busy {sc.busy_node_seconds:,.1f}, "
            f"idle {sc.idle_node_seconds:,.1f})",
        ),
        (
            "oracle",
            f"{sc.oracle_node_seconds:,.1f} s (boot {sc.boot_time_s:.1f} s); cost/oracle {ratio}",
        ),
        ("violations", str(sc.violations)),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.extend(f"  ! {d}" for d in sc.violation_details[:20])
    if len(sc.violation_details) > 20:
        lines.append(f"  ! ... {len(sc.violation_details) - 20} more")
    odd = {k: v for k, v in sc.anomalies.items() if v}
    if odd:
        lines.append(f"{'anomalies'.ljust(width)}  {odd}")
    return "\n".join(lines)


class ScoreListener:
    """Records the contract's channels live (one Redis connection) and scores at the end.

    Usage::

        listener = ScoreListener(redis_url)
        await listener.start()          # subscribed when this returns
        ...                             # run the simulation and the provisioner
        card = await listener.finish("http://localhost:8080")

    Times are the local wall clock in ms at receipt, made strictly increasing so that the
    arrival order (Redis' publish order) survives sorting.
    """

    def __init__(
        self,
        redis_url: str,
        channel_prefix: str = "",
        boot_time_s: float | None = None,
    ) -> None:
        """Args:
        redis_url: Redis to subscribe on.
        channel_prefix: Prefix of every channel name.
        boot_time_s: Boot time for the oracle, seconds (default: learned from the ledger).
        """
        self.redis_url = redis_url
        self.prefix = channel_prefix
        self.boot_time_s = boot_time_s
        self.activity: list[Activity] = []
        self.connects: list[Connect] = []
        self.disconnects: list[Disconnect] = []
        self.assignments: list[Assignment] = []
        self.bad_messages = 0
        self.start_ms = 0.0
        self._last_ms = 0.0
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def channels(self) -> list[str]:
        """The four subscribed channel names."""
        return [
            self.prefix + c
            for c in ("user:activity", "user:connect", "user:disconnect", "user:assigned")
        ]

    def _now_ms(self) -> float:
        t = max(time.time() * 1000.0, self._last_ms + 0.001)
        self._last_ms = t
        return t

    async def start(self) -> None:
        """Subscribe and start recording; returns once all subscriptions are confirmed."""
        self._client = aioredis.Redis.from_url(self.redis_url)
        self._pubsub = self._client.pubsub()
        await self._pubsub.subscribe(*self.channels)
        confirmed = 0
        deadline = time.monotonic() + 10.0
        while confirmed < len(self.channels):
            if time.monotonic() > deadline:
                raise TimeoutError("subscription not confirmed")
            msg = await self._pubsub.get_message(timeout=1.0)
            if msg is not None and msg["type"] == "subscribe":
                confirmed += 1
        self.start_ms = time.time() * 1000.0
        self._task = asyncio.create_task(self._read())

    def record(self, channel: str, data: bytes | str, t_ms: float | None = None) -> None:
        """Record one message (used by the reader; public for tests and replays)."""
        t = self._now_ms() if t_ms is None else t_ms
        kind = channel[len(self.prefix) :] if channel.startswith(self.prefix) else channel
        try:
            body = json.loads(data)
            user = body["user_id"]
            if not isinstance(user, str) or not user:
                raise ValueError("user_id")
            if kind == "user:activity":
                self.activity.append((t, user))
            elif kind == "user:connect":
                self.connects.append((t, user))
            elif kind == "user:disconnect":
                self.disconnects.append((t, user))
            elif kind == "user:assigned":
                node, wait = body["node_id"], body["wait_ms"]
                if not isinstance(node, str) or not isinstance(wait, int):
                    raise ValueError("node_id/wait_ms")
                self.assignments.append((t, user, node, wait))
            else:
                raise ValueError(f"channel {channel}")
        except (ValueError, KeyError, TypeError):
            self.bad_messages += 1

    async def _read(self) -> None:
        while not self._stopping:
            msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if msg is None or msg["type"] != "message":
                continue
            ch = msg["channel"]
            self.record(ch.decode() if isinstance(ch, bytes) else str(ch), msg["data"])

    async def stop(self, settle_s: float = 0.2) -> None:
        """Wait ``settle_s`` seconds for messages in flight, stop reading and disconnect."""
        if settle_s > 0:
            await asyncio.sleep(settle_s)
        self._stopping = True
        if self._task is not None:
            await self._task
            self._task = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def score(self, nodes: Sequence[Mapping[str, Any]], end_ms: float | None = None) -> Scorecard:
        """Score what was recorded against a ledger (see :func:`score`)."""
        return score(
            self.connects,
            self.disconnects,
            self.assignments,
            self.activity,
            nodes,
            self.boot_time_s,
            start_ms=self.start_ms,
            end_ms=end_ms if end_ms is not None else time.time() * 1000.0,
        )

    async def finish(self, node_api_url: str, end_ms: float | None = None) -> Scorecard:
        """Stop recording, fetch ``GET {node_api_url}/api/ledger`` and score.

        Args:
            node_api_url: Base URL of the mock node API.
            end_ms: End of the scored span (default: now, wall ms).

        Returns:
            The scorecard.
        """
        end = end_ms if end_ms is not None else time.time() * 1000.0
        await self.stop()
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(node_api_url.rstrip("/") + "/api/ledger") as resp,
        ):
            resp.raise_for_status()
            body = await resp.json()
        nodes = body.get("nodes", []) if isinstance(body, dict) else body
        return self.score(nodes, end_ms=end)
