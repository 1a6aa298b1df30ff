"""Name every inbound message identically on every replica (docs/design.md#3-1).

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

Markers carry a keyed hash, ``"<seq>:<ms>:<sha1(secret:seq:ms:secret)>"``, with the
pool's secret from Redis (``P:seq:secret``); a marker whose tag does not match, or whose
sequence number would overflow the ids' exact range, is ignored by every replica alike,
so a stray or forged publish cannot make the replicas jump the sequence.
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_SEQ", "POSITIONS_PER_MARKER", "Sequencer", "marker_tag"]

#: Positions available after one marker; past this a message cannot be named.
POSITIONS_PER_MARKER = 1_000_000
#: Largest sequence number: ids ``seq * 1e6 + position`` stay below 2**53, so Lua's
#: doubles compare them exactly.
MAX_SEQ = (2**53) // POSITIONS_PER_MARKER - 1


def marker_tag(secret: str, body: str) -> str:
    """The keyed hash a marker ``body`` (``"seq:ms"``) carries (as emitMarker computes)."""
    return hashlib.sha1(f"{secret}:{body}:{secret}".encode()).hexdigest()


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

    def on_marker(self, data: str, secret: str | None = None) -> bool:
        """Take a marker payload ``"<seq>:<ms>:<tag>"``.

        Args:
            data: the payload.
            secret: the pool's marker secret; None skips the tag check (tests).

        Returns:
            True when accepted; False when malformed, badly tagged, out of range or not
            newer than the current one.
        """
        parts = data.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[:2]):
            return False
        seq, ms = int(parts[0]), int(parts[1])
        if secret is not None and (
            len(parts) != 3 or parts[2] != marker_tag(secret, f"{parts[0]}:{parts[1]}")
        ):
            return False
        if seq > MAX_SEQ or (self.seq is not None and seq <= self.seq):
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
