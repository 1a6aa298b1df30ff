"""Validation of inbound payloads (docs/design.md#3-8): every BadInput kind on every
channel decoder, and a property test that nothing but BadInput ever escapes.

Pure functions, so no Redis here: the worker tests feed the same payloads through real
Pub/Sub.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.messages import (
    BAD_KINDS,
    MAX_NODE_ID,
    MAX_PAYLOAD_BYTES,
    MAX_USER_ID,
    ActivityMsg,
    BadInput,
    NodeStatusMsg,
    UserMsg,
    decode_activity,
    decode_node_status,
    decode_user,
    truncate,
)

Decoder = Callable[[bytes | str], Any]

USER_DECODERS: list[Decoder] = [decode_user, decode_activity]
ALL_DECODERS: list[Decoder] = [decode_user, decode_activity, decode_node_status]


def kind_of(decode: Decoder, data: bytes | str) -> str:
    """The BadInput kind ``decode`` raises for ``data`` (fails the test if it accepts it)."""
    with pytest.raises(BadInput) as info:
        decode(data)
    assert info.value.kind in BAD_KINDS
    assert str(info.value).startswith(info.value.kind + ": ")
    return info.value.kind


def valid(decode: Decoder) -> dict[str, Any]:
    """A minimal valid payload for ``decode``'s channel."""
    if decode is decode_node_status:
        return {"node_id": "node-1", "status": "ready"}
    return {"user_id": "u1"}


def id_field(decode: Decoder) -> tuple[str, str, int]:
    """(field name, BadInput kind, max length) of the id a decoder checks."""
    if decode is decode_node_status:
        return "node_id", "bad_node_id", MAX_NODE_ID
    return "user_id", "bad_user_id", MAX_USER_ID


def with_id(decode: Decoder, value: object) -> str:
    name, _, _ = id_field(decode)
    return json.dumps({**valid(decode), name: value})


# -- valid payloads ---------------------------------------------------------------------


def test_valid_payloads_decode_to_typed_structs() -> None:
    assert decode_user('{"user_id": "G0001"}') == UserMsg("G0001")
    assert decode_user(b'{"user_id": "550e8400-e29b-41d4-a716-446655440000"}') == UserMsg(
        "550e8400-e29b-41d4-a716-446655440000"
    )
    assert decode_activity('{"user_id": "u", "timestamp": 1234567890}') == ActivityMsg(
        "u", 1234567890
    )
    assert decode_activity('{"user_id": "u", "timestamp": 1.5}').timestamp == 1.5
    assert decode_activity('{"user_id": "u"}').timestamp is None
    assert decode_activity('{"user_id": "u", "timestamp": null}').timestamp is None
    for status in ("booting", "ready", "terminated"):
        msg = decode_node_status(json.dumps({"node_id": "node-123", "status": status}))
        assert msg == NodeStatusMsg("node-123", status)  # type: ignore[arg-type]


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
def test_extra_fields_are_accepted(decode: Decoder) -> None:
    payload = {**valid(decode), "extra": {"nested": [1, 2]}, "timestamp": 1, "zz": None}
    if decode is decode_activity:
        payload["timestamp"] = 17
    out = decode(json.dumps(payload))
    name, _, _ = id_field(decode)
    assert getattr(out, name) == valid(decode)[name]


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
def test_unicode_printable_ids_are_accepted(decode: Decoder) -> None:
    name, _, _ = id_field(decode)
    for ident in ("usér-ü", "用户-42", "a b", "x" * 20 + "é"):
        assert getattr(decode(with_id(decode, ident)), name) == ident
        # the same text as UTF-8 bytes, as it comes off a socket
        assert getattr(decode(with_id(decode, ident).encode()), name) == ident


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
def test_id_length_bounds(decode: Decoder) -> None:
    name, kind, limit = id_field(decode)
    assert getattr(decode(with_id(decode, "a" * limit)), name) == "a" * limit
    assert getattr(decode(with_id(decode, "a")), name) == "a"
    assert kind_of(decode, with_id(decode, "a" * (limit + 1))) == kind
    assert kind_of(decode, with_id(decode, "")) == kind


# -- each bad kind on each decoder ------------------------------------------------------


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    "data",
    [
        "",
        b"",
        "   ",
        "nul",
        "{",
        '{"user_id": "u1"',
        "{'user_id': 'u1'}",
        "user_id=u1",
        b"\xff\xfe",
    ],
)
def test_not_json(decode: Decoder, data: bytes | str) -> None:
    assert kind_of(decode, data) == "not_json"


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
@pytest.mark.parametrize("tail", ["\x00", " trailing", "{}", ","])
def test_valid_object_followed_by_garbage_is_not_json(decode: Decoder, tail: str) -> None:
    good = json.dumps(valid(decode))
    decode(good + " \n")  # trailing white space is fine
    assert kind_of(decode, good + tail) == "not_json"
    assert kind_of(decode, (good + tail).encode()) == "not_json"


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
@pytest.mark.parametrize("data", ["null", "true", "0", "1.5", '"u1"', "[]", '[{"user_id": "u1"}]'])
def test_json_that_is_not_an_object(decode: Decoder, data: str) -> None:
    assert kind_of(decode, data) == "not_object"
    assert kind_of(decode, data.encode()) == "not_object"


@pytest.mark.parametrize("decode", USER_DECODERS, ids=lambda d: d.__name__)
def test_user_missing_field(decode: Decoder) -> None:
    assert kind_of(decode, "{}") == "missing_field"
    assert kind_of(decode, '{"userId": "u1"}') == "missing_field"
    assert kind_of(decode, '{"node_id": "u1", "timestamp": 1}') == "missing_field"


def test_node_status_missing_fields() -> None:
    assert kind_of(decode_node_status, "{}") == "missing_field"
    assert kind_of(decode_node_status, '{"node_id": "n1"}') == "missing_field"
    assert kind_of(decode_node_status, '{"status": "ready"}') == "missing_field"


@pytest.mark.parametrize("decode", USER_DECODERS, ids=lambda d: d.__name__)
@pytest.mark.parametrize("value", [None, 5, 1.5, True, [], ["u1"], {"id": "u1"}])
def test_user_id_of_wrong_type(decode: Decoder, value: object) -> None:
    assert kind_of(decode, json.dumps({"user_id": value})) == "wrong_type"


@pytest.mark.parametrize("value", ['"1234567890"', "true", "[1]", '{"s": 1}', "1e400"])
def test_activity_timestamp_of_wrong_type(value: str) -> None:
    payload = '{"user_id": "u1", "timestamp": ' + value + "}"
    assert kind_of(decode_activity, payload) == "wrong_type"
    # the connect/disconnect decoders ignore a timestamp, whatever it holds
    assert decode_user(payload) == UserMsg("u1")


@pytest.mark.parametrize("value", [None, 123, 1.0, False, ["n1"], {"id": "n1"}])
def test_node_status_fields_of_wrong_type(value: object) -> None:
    assert kind_of(decode_node_status, json.dumps({"node_id": value, "status": "ready"})) == (
        "wrong_type"
    )
    assert kind_of(decode_node_status, json.dumps({"node_id": "n1", "status": value})) == (
        "wrong_type"
    )


@pytest.mark.parametrize(
    "status", ["", "up", "READY", "Ready", " ready", "ready ", "allocated", "terminating", "é"]
)
def test_unknown_status(status: str) -> None:
    payload = json.dumps({"node_id": "n1", "status": status})
    assert kind_of(decode_node_status, payload) == "unknown_status"


@pytest.mark.parametrize("node_id", [".", ".."])
def test_a_dot_segment_is_not_a_node_id(node_id: str) -> None:
    """Break-test finding: a DELETE of node ``..`` is normalised to ``DELETE /api/``."""
    payload = json.dumps({"node_id": node_id, "status": "booting"})
    assert kind_of(decode_node_status, payload) == "bad_node_id"
    assert decode_node_status(json.dumps({"node_id": "...", "status": "ready"})).node_id == "..."


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    "ident",
    [
        "a\x00b",
        "a\nb",
        "a\tb",
        "\r",
        "a\x7fb",
        "a\x1bb",
        "a\u200bb",  # zero-width space (format character)
        "a\u2028b",  # line separator
        "a\u0085b",  # next line (C1 control)
        " u1",
        "u1 ",
        " ",
        "\u3000u1",  # ideographic space padding
    ],
)
def test_ids_with_control_characters_or_padding(decode: Decoder, ident: str) -> None:
    _, kind, _ = id_field(decode)
    assert kind_of(decode, with_id(decode, ident)) == kind
    assert kind_of(decode, with_id(decode, ident).encode()) == kind


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
def test_oversize_payloads(decode: Decoder) -> None:
    one_mb = json.dumps({**valid(decode), "pad": "x" * 1_000_000})
    assert kind_of(decode, one_mb) == "oversize"
    assert kind_of(decode, one_mb.encode()) == "oversize"
    assert kind_of(decode, b"\xff" * 1_000_000) == "oversize"  # checked before parsing
    # exactly at the limit is parsed; one byte more is not
    base = json.dumps({**valid(decode), "pad": ""})
    at_limit = json.dumps({**valid(decode), "pad": "x" * (MAX_PAYLOAD_BYTES - len(base))})
    assert len(at_limit) == MAX_PAYLOAD_BYTES
    decode(at_limit)
    decode(at_limit.encode())
    assert kind_of(decode, at_limit[:-1] + 'x"}') == "oversize"
    assert kind_of(decode, (at_limit[:-1] + 'x"}').encode()) == "oversize"


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
def test_oversize_counts_bytes_not_characters(decode: Decoder) -> None:
    """A text payload under the limit in characters but over it in UTF-8 bytes is
    rejected like its bytes would be (the worker receives decoded text)."""
    payload = json.dumps({**valid(decode), "pad": "é" * 3000}, ensure_ascii=False)
    assert len(payload) < MAX_PAYLOAD_BYTES < len(payload.encode())
    assert kind_of(decode, payload.encode()) == "oversize"
    assert kind_of(decode, payload) == "oversize"


@pytest.mark.parametrize("decode", ALL_DECODERS, ids=lambda d: d.__name__)
def test_text_that_is_not_unicode_is_bad_input(decode: Decoder) -> None:
    """Lone surrogates (what a non-UTF-8 payload becomes under ``surrogateescape``)."""
    assert kind_of(decode, "\udcff\udcfe") == "not_json"
    name, _, _ = id_field(decode)
    assert kind_of(decode, '{"' + name + '": "a\udcffb", "status": "ready"}') == "not_json"


def test_truncate_bounds_the_logged_payload() -> None:
    assert truncate("short") == "'short'"
    long = truncate("x" * 1_000_000)
    assert len(long) == 120 and long.endswith("...")
    assert len(truncate(b"\x00" * 500, 40)) == 40


# -- property: nothing but BadInput -----------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

id_like = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=140),
    st.sampled_from(["u1", "", " ", "a" * 129, "node-1"]),
)

objects = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.one_of(id_like, json_values),
        "node_id": st.one_of(id_like, json_values),
        "status": st.one_of(
            st.sampled_from(["booting", "ready", "terminated", "up", ""]), json_values
        ),
        "timestamp": json_values,
        "extra": json_values,
    },
)


def check_never_raises_other(data: bytes | str) -> None:
    for decode in ALL_DECODERS:
        try:
            out = decode(data)
        except BadInput as e:
            assert e.kind in BAD_KINDS
            continue
        # whatever is accepted satisfies the contract
        ident = out.node_id if isinstance(out, NodeStatusMsg) else out.user_id
        limit = MAX_NODE_ID if isinstance(out, NodeStatusMsg) else MAX_USER_ID
        assert 1 <= len(ident) <= limit
        assert ident.isprintable() and ident.strip() == ident
        if isinstance(out, NodeStatusMsg):
            assert out.status in ("booting", "ready", "terminated")
        if isinstance(out, ActivityMsg):
            assert out.timestamp is None or type(out.timestamp) in (int, float)


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_bad_input(data: bytes) -> None:
    check_never_raises_other(data)


@settings(deadline=None, max_examples=300)
@given(st.text(alphabet=st.characters() | st.characters(categories=["Cs"]), max_size=300))
def test_arbitrary_text_raises_only_bad_input(data: str) -> None:
    check_never_raises_other(data)


@settings(deadline=None, max_examples=300)
@given(json_values)
def test_arbitrary_json_values_raise_only_bad_input(value: object) -> None:
    text = json.dumps(value)
    check_never_raises_other(text)
    check_never_raises_other(text.encode())


@settings(deadline=None, max_examples=300)
@given(objects, st.booleans())
def test_arbitrary_objects_raise_only_bad_input(obj: dict[str, Any], ascii_only: bool) -> None:
    text = json.dumps(obj, ensure_ascii=ascii_only)
    check_never_raises_other(text)
    check_never_raises_other(text.encode("utf-8", "surrogatepass"))
