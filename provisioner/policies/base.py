"""The policy interface and its types; nothing here touches Redis.

Every policy implements :class:`Policy`: the leader calls :meth:`Policy.decide` once a
tick with an :class:`Observation` (counters and pool sizes read from Redis in one
consistent snapshot, the learned boot time, the features the policy asked for) and
gets a :class:`Decision`.  A policy keeps only a few numbers, so a tick costs O(1) or
O(buckets), not O(users); a new leader recovers them from the last decision stored in
Redis (:meth:`Policy.restore`).  One module per policy sits beside this one;
:mod:`provisioner.policies.registry` builds them by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "NO_FEATURES",
    "BootStats",
    "Decision",
    "Features",
    "Observation",
    "Policy",
    "PoolSnapshot",
]


@dataclass(frozen=True)
class BootStats:
    """The learned boot time (lead time), from ``P:boot``.

    Attributes:
        n: booting->ready observations so far.
        mean_s: EWMA of the boot time, seconds (None before the first observation).
        sd_s: EW standard deviation, seconds.
        last_s: the latest observation, seconds.
    """

    n: int = 0
    mean_s: float | None = None
    sd_s: float = 0.0
    last_s: float | None = None


@dataclass(frozen=True)
class PoolSnapshot:
    """A consistent read of the pool's sizes (one MULTI), for policy and status.

    Attributes:
        booting, ready, allocated, terminating: nodes by state.
        waiting: users on the waitlist.
        active: users in the active set (seen recently, not connected).
        intents: open create intents (POSTs not yet answered).
        unknown: nodes reported by the node manager that we never registered.
        stats: the counters hash (connects, hits, misses, ...).
        boot: the learned boot time.
    """

    booting: int
    ready: int
    allocated: int
    terminating: int
    waiting: int
    active: int
    intents: int
    unknown: int
    stats: dict[str, int] = field(default_factory=dict)
    boot: BootStats = field(default_factory=BootStats)

    @property
    def spare(self) -> int:
        """Nodes that will be free for a new connect: ready + booting + open intents."""
        return self.ready + self.booting + self.intents


@dataclass(frozen=True)
class Features:
    """What a policy reads each tick beyond the snapshot (the leader reads it in the
    same script that renews the lease, ``observeTick``).

    Attributes:
        n_classes: feature classes of active users to count (0: none).
        recency_edges_b: inner edges of the recency buckets (time since a user's last
            activity), in multiples of the boot time B, ascending.

    With ``n_classes > 0`` the observation's ``features`` hold ``n`` (active users,
    ``n[class][bucket]``, a dict holding only the classes with active users),
    ``premium`` (active premium users) and ``hazard`` (the connect counters of
    ``P:hazard``; the same dict object while they did not change); else they are empty.
    """

    n_classes: int = 0
    recency_edges_b: tuple[float, ...] = ()


#: A policy that decides from the snapshot alone.
NO_FEATURES = Features()


@dataclass(frozen=True)
class Observation:
    """What the leader knows at a tick.

    Attributes:
        now_ms: the tick's time, unix ms.
        snapshot: pool sizes and counters (one consistent read).
        boot_s: the boot time to plan with, seconds (learned mean, or the default).
        features: what the policy's :attr:`Policy.features` asked for (see
            :class:`Features`).
    """

    now_ms: int
    snapshot: PoolSnapshot
    boot_s: float
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """A policy's answer.

    Attributes:
        target_spare: ready + booting (+ pending creates) to hold, nodes. Waiting users
            come on top: the leader creates ``target_spare + waiting - spare``.
        keep_alive_s: how long a surplus ready node may idle before it is reaped, s.
        inputs: the numbers the decision came from (stored for ``provisioner explain``).
        keep_spare: spare nodes the reaper must leave (hysteresis); None: the target.
    """

    target_spare: int
    keep_alive_s: float
    inputs: dict[str, Any] = field(default_factory=dict)
    keep_spare: int | None = None

    @property
    def reap_floor(self) -> int:
        """Spare nodes the reaper leaves: ``keep_spare`` or the target."""
        return self.target_spare if self.keep_spare is None else max(self.keep_spare, 0)


class Policy(Protocol):
    """A scaling policy (see the module docstring)."""

    name: str
    #: What the policy reads beyond the snapshot each tick.
    features: Features
    #: True when a target of 0 cannot rise by time alone, only after inbound events (no
    #: timers of its own): the replay may then fast-forward over an empty, quiet pool.
    target_rises_only_on_events: bool

    def decide(self, obs: Observation) -> Decision:
        """Return the decision for this tick."""
        ...

    def steady_until_ms(self, now_ms: int) -> float:
        """Until when (unix ms), if no inbound event moves a counter or a user, every
        later decision equals the last one :meth:`decide` returned (at ``now_ms``):
        ``math.inf`` for good, ``now_ms`` or less for no promise. The replay
        fast-forwards over ticks that would change nothing (``Leader.idle_until_ms``)."""
        ...

    def restore(self, last: dict[str, str]) -> None:
        """Recover state from the last stored decision (``P:policy`` hash)."""
        ...
