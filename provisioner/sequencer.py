"""Name every inbound message identically on every replica (design-notes 3.1).

Redis delivers published messages to every subscriber in publish order, and each
replica subscribes to all inbound channels plus the marker channel on **one**
connection, so all replicas see one sequence.  ``emitMarker`` publishes markers
``"<seq>:<now_ms>"`` with a shared counter.  A message's id is
``seq * 1_000_000 + position`` where ``seq`` is the last marker seen and ``position``
counts messages after it (1, 2, ...): the same id on every replica.  Scripts apply a
message only if its id is above the last id applied to the same user or node, so a
duplicate delivery (another replica) or a lagging replica's replay is a no-op, and
each user's and node's transitions happen in publish order.

A replica that (re)subscribes has missed an unknown number of messages, so its
positions would differ from the others': it drops messages until its first marker.
"""

from __future__ import annotations

__all__ = ["POSITIONS_PER_MARKER", "Sequencer"]

#: Positions available after one marker; past this a message cannot be named.
POSITIONS_PER_MARKER = 1_000_000


class Sequencer:
    """Turns the subscription's message stream into message ids.

    Attributes:
        seq: the last marker's sequence number, None before the first marker.
        marker_ms: the last marker's time (unix ms of the emitting replica's clock).
        position: messages counted since that marker.
    """

    def __init__(self) -> None:
        self.seq: int | None = None
        self.marker_ms: int = 0
        self.position = 0

    def reset(self) -> None:
        """Forget the sequence (after a resubscribe): wait for the next marker."""
        self.seq = None
        self.position = 0

    def on_marker(self, data: str) -> bool:
        """Take a marker payload ``"<seq>:<ms>"``.

        Returns:
            True when accepted; False when malformed or not newer than the current one.
        """
        head, _, tail = data.partition(":")
        try:
            seq, ms = int(head), int(tail)
        except ValueError:
            return False
        if self.seq is not None and seq <= self.seq:
            return False
        self.seq, self.marker_ms, self.position = seq, ms, 0
        return True

    def name(self) -> int | None:
        """The id of the next inbound message, or None when it cannot be named.

        Every non-marker message on the subscription must be passed through here, in
        order, whatever its content (bad input too), or positions diverge.
        """
        if self.seq is None:
            return None
        self.position += 1
        if self.position >= POSITIONS_PER_MARKER:
            return None
        return self.seq * POSITIONS_PER_MARKER + self.position
