"""The workload model: timed user events plus the boot-time profile of a scenario.

Pure data, no I/O.  A :class:`Workload` is what a scenario generator
(:mod:`provisioner.sim.scenarios`) produces, what the live simulator
(:mod:`provisioner.sim.simulate`) replays on Redis Pub/Sub and what the mock node API reads
its boot-time distribution from (:class:`BootProfile`).

All times here are **seconds** (floats) from the start of the workload.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

EventKind = Literal["activity", "connect", "disconnect"]
"""The three user-facing channels of the contract: ``user:activity``, ``user:connect``,
``user:disconnect``."""

KINDS: tuple[EventKind, ...] = ("activity", "connect", "disconnect")


class Event(NamedTuple):
    """One user event.

    A NamedTuple, so events sort by ``(t_s, kind, user_id)``; workloads themselves keep
    generation order for equal times (see :func:`sort_events`).

    Attributes:
        t_s: Time in seconds from the workload start (>= 0).
        kind: ``"activity"``, ``"connect"`` or ``"disconnect"``.
        user_id: The user's id (non-empty, at most 128 printable characters).
    """

    t_s: float
    kind: EventKind
    user_id: str


class Session(NamedTuple):
    """One connected period of a user, in seconds from the workload start.

    Attributes:
        user_id: The user.
        connect_s: Time of the ``connect`` event.
        disconnect_s: Time of the ``disconnect`` event, or the workload's ``duration_s``
            when the workload ends before the user disconnects.
    """

    user_id: str
    connect_s: float
    disconnect_s: float

    @property
    def duration_s(self) -> float:
        """Length of the session in seconds."""
        return self.disconnect_s - self.connect_s


@dataclass(frozen=True)
class BootProfile:
    """The boot-time distribution a (mock) node API uses for a scenario.

    A boot takes ``U(min_s, max_s)`` seconds; with probability ``slow_tail_p`` that draw is
    multiplied by ``slow_tail_factor`` (a heavy tail of slow boots).  Independently a boot
    fails (ends in ``terminated`` instead of ``ready``) with probability ``fail_p``, and with
    probability ``lost_ready_p`` the node becomes ready but its ``ready`` status message is
    never published.

    Attributes:
        min_s: Lower bound of the uniform boot time, seconds.
        max_s: Upper bound of the uniform boot time, seconds.
        fail_p: Probability that a boot ends in ``terminated``.
        lost_ready_p: Probability that the ``ready`` message is lost.
        slow_tail_p: Probability that a boot is slow.
        slow_tail_factor: Multiplier of a slow boot's time (>= 1).
    """

    min_s: float
    max_s: float
    fail_p: float = 0.0
    lost_ready_p: float = 0.0
    slow_tail_p: float = 0.0
    slow_tail_factor: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_s <= self.max_s:
            raise ValueError(f"need 0 <= min_s <= max_s, got {self.min_s}, {self.max_s}")
        for name in ("fail_p", "lost_ready_p", "slow_tail_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability, got {p}")
        if self.slow_tail_factor < 1.0:
            raise ValueError(f"slow_tail_factor must be >= 1, got {self.slow_tail_factor}")

    @property
    def mean_s(self) -> float:
        """Mean boot time in seconds of the successful boots.

        ``E = (min_s + max_s) / 2 * (1 + slow_tail_p * (slow_tail_factor - 1))``: the uniform
        mean, scaled by the expected multiplier of the slow tail.
        """
        base = (self.min_s + self.max_s) / 2.0
        return base * (1.0 + self.slow_tail_p * (self.slow_tail_factor - 1.0))

    def scaled(self, factor: float) -> BootProfile:
        """This profile with times divided by ``factor`` (probabilities unchanged)."""
        return dataclasses.replace(self, min_s=self.min_s / factor, max_s=self.max_s / factor)


@dataclass
class Workload:
    """A scenario: user events in time order, its length and its boot-time profile.

    Attributes:
        name: Scenario name (e.g. ``"steady"``).
        seed: Seed the scenario was generated with.
        events: Events sorted by ``t_s`` (ties keep generation order).
        duration_s: Length of the workload in seconds; no event is later than this.
        boot: Boot-time distribution for the mock node API.
        user_class: Optional label per user id (e.g. starter's ``"fast"``/``"slow"``/
            ``"browser"``), for analysis and tests; may be empty.
        params: The generator parameters used, for reporting.
    """

    name: str
    seed: int
    events: list[Event]
    duration_s: float
    boot: BootProfile
    user_class: dict[str, str] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)

    def sessions(self) -> list[Session]:
        """Pair each user's connects with the following disconnects.

        Returns:
            Sessions sorted by ``connect_s``.  A session without a disconnect ends at
            ``duration_s``.  A second connect of an already connected user and a disconnect of
            a user who is not connected are ignored (generators never produce them).
        """
        open_at: dict[str, float] = {}
        out: list[Session] = []
        for ev in self.events:
            if ev.kind == "connect":
                open_at.setdefault(ev.user_id, ev.t_s)
            elif ev.kind == "disconnect":
                start = open_at.pop(ev.user_id, None)
                if start is not None:
                    out.append(Session(ev.user_id, start, ev.t_s))
        out.extend(Session(u, c, max(c, self.duration_s)) for u, c in open_at.items())
        out.sort(key=lambda s: s.connect_s)
        return out

    def users(self) -> set[str]:
        """All user ids that appear in the events."""
        return {ev.user_id for ev in self.events}

    def count(self, kind: EventKind) -> int:
        """Number of events of one kind."""
        return sum(1 for ev in self.events if ev.kind == kind)


def sort_events(events: Iterable[Event]) -> list[Event]:
    """Sort events by time only (stable: equal times keep their input order)."""
    return sorted(events, key=lambda ev: ev.t_s)


def scale(workload: Workload, factor: float) -> Workload:
    """Compress time by ``factor``: all event times, the duration and the boot times are
    divided by it (``factor`` 5 runs the world 5x faster).

    Args:
        workload: The workload to compress (not modified).
        factor: Positive speed-up factor.

    Returns:
        A new workload.
    """
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    return dataclasses.replace(
        workload,
        events=[Event(ev.t_s / factor, ev.kind, ev.user_id) for ev in workload.events],
        duration_s=workload.duration_s / factor,
        boot=workload.boot.scaled(factor),
        user_class=dict(workload.user_class),
        params={**workload.params, "time_scale": factor},
    )
