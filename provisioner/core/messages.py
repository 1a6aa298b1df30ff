"""Validation of inbound Pub/Sub messages (docs/design.md#1, docs/design.md#3-8).

Each channel's payload is decoded by msgspec into a typed struct; anything else is
bad input, classified into one :data:`BadKind`, counted, logged (rate-limited, with a
truncated payload) and dropped.  Validation never raises anything but
:class:`BadInput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, TypeVar

import msgspec

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_USER_ID",
    "BadInput",
    "BadKind",
    "NodeStatusMsg",
    "UserMsg",
    "decode_activity",
    "decode_node_status",
    "decode_user",
    "truncate",
]

#: User ids are 1-128 printable characters (docs/design.md#1).
MAX_USER_ID = 128
#: Node ids are whatever the API returned; we accept up to this many characters.
MAX_NODE_ID = 256
#: Node ids refused: in ``DELETE /api/nodes/{id}`` every URL normaliser resolves them
#: (RFC 3986, section 5.2.4), so ``..`` would DELETE ``/api/``.
DOT_SEGMENTS = frozenset({".", ".."})
#: Payloads longer than this are rejected before parsing (bytes).
MAX_PAYLOAD_BYTES = 4096

BadKind = Literal[
    "oversize",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_user_id",
    "bad_node_id",
    "unknown_status",
    "bad_marker",
]
BAD_KINDS: tuple[str, ...] = BadKind.__args__  # type: ignore[attr-defined]


class BadInput(Exception):
    """A message failed validation.

    Attributes:
        kind: one of :data:`BadKind`.
        detail: the decoder's explanation.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_USER_ID)]
NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NODE_ID)]


class UserMsg(msgspec.Struct, frozen=True):
    """``user:connect`` / ``user:disconnect``: ``{"user_id": str}``."""

    user_id: UserId


class ActivityMsg(msgspec.Struct, frozen=True):
    """``user:activity``: ``{"user_id": str, "timestamp": unix seconds}``.

    The timestamp is informative only (we use the receiving replica's clock); it may be
    absent, but when present it must be a number.
    """

    user_id: UserId
    timestamp: int | float | None = None


class NodeStatusMsg(msgspec.Struct, frozen=True):
    """``node:status``: ``{"node_id": str, "status": "booting"|"ready"|"terminated"}``."""

    node_id: NodeId
    status: Literal["booting", "ready", "terminated"]


T = TypeVar("T")

_user_dec = msgspec.json.Decoder(UserMsg)
_activity_dec = msgspec.json.Decoder(ActivityMsg)
_status_dec = msgspec.json.Decoder(NodeStatusMsg)


@dataclass(frozen=True)
class _Field:
    name: str
    bad_kind: str


def _classify(err: msgspec.ValidationError, id_field: _Field) -> BadInput:
    text = str(err)
    if text.startswith("Expected `object`"):
        return BadInput("not_object", text)
    if text.startswith("Object missing required field"):
        return BadInput("missing_field", text)
    if text.startswith("Invalid enum value"):
        return BadInput("unknown_status", text)
    if f"$.{id_field.name}" in text and "of length" in text:
        return BadInput(id_field.bad_kind, text)
    return BadInput("wrong_type", text)


def _decode(dec: msgspec.json.Decoder[T], data: bytes | str, idf: _Field) -> T:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise BadInput("oversize", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    if isinstance(data, str):
        # The limit is on bytes; and text that is not valid Unicode (lone surrogates, as
        # from a non-UTF-8 payload decoded with "surrogateescape") is not JSON.
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadInput("not_json", f"not UTF-8: {e.reason}") from None
        if len(data) > MAX_PAYLOAD_BYTES:
            raise BadInput("oversize", f"{len(data)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return dec.decode(data)
    except msgspec.ValidationError as e:
        raise _classify(e, idf) from None
    except msgspec.DecodeError as e:
        raise BadInput("not_json", str(e)) from None


_USER = _Field("user_id", "bad_user_id")
_NODE = _Field("node_id", "bad_node_id")


def _check_printable(value: str, kind: str) -> None:
    if not value.isprintable() or value.strip() != value:
        raise BadInput(kind, f"not printable or padded: {truncate(value, 40)}")


def decode_user(data: bytes | str) -> UserMsg:
    """Decode a ``user:connect``/``user:disconnect`` payload.

    Raises:
        BadInput: with the kind of the first problem found.
    """
    msg = _decode(_user_dec, data, _USER)
    _check_printable(msg.user_id, "bad_user_id")
    return msg


def decode_activity(data: bytes | str) -> ActivityMsg:
    """Decode a ``user:activity`` payload.

    Raises:
        BadInput: with the kind of the first problem found.
    """
    msg = _decode(_activity_dec, data, _USER)
    _check_printable(msg.user_id, "bad_user_id")
    return msg


def decode_node_status(data: bytes | str) -> NodeStatusMsg:
    """Decode a ``node:status`` payload.

    Raises:
        BadInput: with the kind of the first problem found.
    """
    msg = _decode(_status_dec, data, _NODE)
    _check_printable(msg.node_id, "bad_node_id")
    if msg.node_id in DOT_SEGMENTS:
        raise BadInput("bad_node_id", f"a dot segment cannot name a node: {msg.node_id!r}")
    return msg


def truncate(data: bytes | str, limit: int = 120) -> str:
    """A loggable, truncated ``repr`` of a payload (at most ``limit`` characters)."""
    text = repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."
