"""Fault 10: bad input on every channel, against two real running replicas.

Hypothesis generates the payloads (arbitrary bytes, text, JSON values and objects with
missing, mistyped, empty, unicode and control-character fields, plus 1 MB strings); the
test keeps those the in-process validator rejects, computes the kind each must be
counted as, and publishes them all on the channels.  Then: every kind counted exactly
as expected in ``P:bad`` (once across replicas), in each replica's metrics and in
``provisioner status --json``; garbage on the marker channel counted as bad markers; no
state changed; both replicas still running and a valid connect still served.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.core.messages import (
    BAD_KINDS,
    BadInput,
    decode_activity,
    decode_node_status,
    decode_user,
)
from tests.faultkit import Stack, metric, wait_until
from tests.test_messages import json_values, objects

pytestmark = pytest.mark.slow

payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.tuples(objects, st.booleans()).map(lambda t: json.dumps(t[0], ensure_ascii=t[1]).encode()),
)
CHANNELS = ("activity", "connect", "disconnect", "node_status", "marker")
# one of each kind whatever hypothesis draws: control characters, padding, empty and
# unicode-only ids, unknown statuses, undecodable bytes, arrays and scalars
FIXED = [
    b"\xff\xfe{", b"[]", b"42", b"{}", b'{"user_id": 7}', b'{"user_id": ""}',
    b'{"user_id": "a\\u0000b"}', b'{"user_id": " pad "}', b'{"user_id": "\\u200b\\n"}',
    b'{"node_id": "n\\u0007", "status": "ready"}', b'{"node_id": "n1", "status": "exploded"}',
    b'{"node_id": "n1", "status": 3}', b'{"user_id": "u", "timestamp": "yesterday"}',
]  # fmt: skip
BIG = [
    b"x" * 1_000_000,
    json.dumps({"user_id": "u" * 1_000_000}).encode(),
    json.dumps({"node_id": "n" * 1_000_000, "status": "ready"}).encode(),
]


def _kind(decode: Callable[[str], Any], data: bytes) -> str | None:
    """The kind the replica will count ``data`` as (it reads with surrogateescape)."""
    try:
        decode(data.decode("utf-8", "surrogateescape"))
    except BadInput as e:
        return e.kind
    return None


def _state(stack: Stack) -> dict[str, Any]:
    k = stack.keys
    return {
        "user_node": stack.r.hgetall(k.user_node),
        "node_state": stack.r.hgetall(k.node_state),
        "waiting": stack.r.zrange(k.users_waiting, 0, -1),
        "active": stack.r.zrange(k.users_active, 0, -1),
        "stats": stack.stats(),
    }


def test_garbage_flood_is_counted_and_changes_nothing(stack_factory: Any) -> None:
    stack: Stack = stack_factory(
        replica_args=("--policy", "static", "--min-spare", "1", "--keep-alive", "1000")
    )
    stack.start_all(["a", "b"])
    wait_until(lambda: stack.r.zcard(stack.keys.nodes_ready) == 1, 20, "a spare node")
    time.sleep(0.5)
    before = _state(stack)
    decoders = {
        "activity": decode_activity,
        "connect": decode_user,
        "disconnect": decode_user,
        "node_status": decode_node_status,
    }
    expected: Counter[str] = Counter()
    markers = 0
    sent = 0

    def send(channel: str, data: bytes) -> None:
        nonlocal markers, sent
        if channel == "marker":
            markers += 1
        else:
            kind = _kind(decoders[channel], data)
            if kind is None:
                return  # valid by chance: it would change state legitimately
            expected[kind] += 1
        sent += 1
        name = stack.ch.marker if channel == "marker" else getattr(stack.ch, channel)
        stack.r.publish(name, data)

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(channel=st.sampled_from(CHANNELS), data=payloads)
    def flood(channel: str, data: bytes) -> None:
        send(channel, data)

    t0 = time.monotonic()
    flood()
    for data in FIXED + BIG:
        for channel in CHANNELS:
            send(channel, data)
    total = sum(expected.values())

    def counted() -> dict[str, int]:
        bad = stack.r.hgetall(stack.keys.bad)
        return {k: int(v) for k, v in bad.items() if not k.startswith("_")}

    wait_until(lambda: sum(counted().values()) >= total, 30, "the bad input to be counted")
    took = time.monotonic() - t0
    assert counted() == dict(expected)
    for name in ("a", "b"):
        assert stack.group.procs[name].poll() is None, f"replica {name} died"

        def seen(name: str = name) -> dict[str, float]:
            text = stack.metrics(name)
            return {k: metric(text, "provisioner_bad_input_total", kind=k) for k in expected}

        # each replica sees every message; a lagging one may still be at its backlog
        wait_until(lambda s=seen: sum(s().values()) >= total, 30, f"{name} to count them")
        assert seen() == {k: float(n) for k, n in expected.items()}
        assert stack.metric(name, "provisioner_bad_markers_total") >= markers
        assert "Traceback" not in stack.log(name)
    assert _state(stack) == before
    out = subprocess.run(
        [sys.executable, "-m", "provisioner", "--redis-url", stack.redis_url, "--pool",
         stack.pool, "status", "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout)["bad_input"] == dict(expected)
    stack.r.publish(stack.ch.connect, json.dumps({"user_id": "real-user"}))
    wait_until(
        lambda: any(e["user_id"] == "real-user" for _, e in stack.assigned.events),
        10,
        "a valid connect to be served",
    )
    print(
        f"FAULT bad-input: {sent} bad payloads ({markers} on the marker channel, "
        f"{len(expected)} kinds: {dict(expected)}) counted exactly in P:bad, metrics and "
        f"status in {took:.1f}s; no state change, both replicas up, a valid connect served"
    )
    assert set(expected) | {"bad_marker"} == set(BAD_KINDS)  # every kind, on its channel
