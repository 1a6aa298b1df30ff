"""Once-only effects across replicas (docs/design.md#3-1), with real processes.

Three real ``provisioner run`` processes on real Pub/Sub, one of them lagging behind
(it applies each message 60 ms late), are fed a sequence that includes
connect -> disconnect -> connect of one user, duplicated statuses and bad input.
Half way, the two prompt replicas are killed with SIGKILL, so the lagging one must
apply the rest, interleaved with its stale replay of the first half.  The final state
must equal that of a single replica fed the same sequence.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from provisioner.core.keys import Channels, PoolKeys
from provisioner.harness import free_port
from tests.helpers import SyncCoord
from tests.procs import live_replicas, replicas, subscribers, wait_until

pytestmark = pytest.mark.slow


def _u(user: str) -> str:
    return json.dumps({"user_id": user})


def _act(user: str) -> str:
    return json.dumps({"user_id": user, "timestamp": int(time.time())})


def _st(node: str, status: str) -> str:
    return json.dumps({"node_id": node, "status": status})


# (channel name without prefix, payload)
PART1: list[tuple[str, str]] = [
    *[("user:activity", _act(f"u{i}")) for i in range(1, 6)],
    ("user:connect", _u("u1")),  # hit n1
    ("user:connect", _u("u2")),  # hit n2
    ("user:connect", _u("u3")),  # hit n3
    ("user:connect", _u("u4")),  # miss
    ("user:connect", "not json"),  # bad input
    ("user:disconnect", _u("u1")),  # n1 -> u4
    ("user:connect", _u("u1")),  # miss
]
PART2: list[tuple[str, str]] = [
    ("user:disconnect", _u("u1")),  # leaves the waitlist
    ("user:connect", _u("u1")),  # miss again
    ("node:status", _st("n4", "ready")),  # n4 -> u1
    ("node:status", _st("n4", "ready")),  # duplicate
    ("user:disconnect", _u("u2")),  # n2 back to the pool
    ("user:connect", _u("u5")),  # hit n2
    ("node:status", _st("n3", "terminated")),  # u3 preempted, waits in front
    ("node:status", _st("stranger", "booting")),  # unknown node
    ("user:disconnect", _u("u3")),  # leaves the waitlist
    ("user:connect", _u("u3")),  # miss, waits
    ("user:activity", '{"user_id": 7}'),  # bad input
]
COMPARED_STATS = (
    "activity", "connects", "hits", "misses", "disconnects", "never_served",
    "assigned_late", "preempted", "connects_duplicate", "users_new", "status_duplicate",
    "status_unknown_node",
)  # fmt: skip


def _seed(redis_url: str, pool: str, prefix: str) -> None:
    sc = SyncCoord(redis_url, pool, prefix)
    now = int(time.time() * 1000)
    try:
        for node in ("n1", "n2", "n3"):
            sc.register_node("", node, now)
            sc.node_status(node, "ready", now)
        sc.register_node("", "n4", now)
    finally:
        sc.close()


def _state(r: redis.Redis, pool: str) -> dict[str, Any]:
    k = PoolKeys(pool)
    stats = r.hgetall(k.stats)
    bad = r.hgetall(k.bad)
    return {
        "user_node": r.hgetall(k.user_node),
        "node_user": r.hgetall(k.node_user),
        "node_state": r.hgetall(k.node_state),
        "waiting": r.zrange(k.users_waiting, 0, -1),
        "ready": r.zrange(k.nodes_ready, 0, -1),
        "stats": {s: stats.get(s) for s in COMPARED_STATS},
        "bad": {kind: n for kind, n in bad.items() if not kind.startswith("_")},
    }


def _run(
    redis_url: str, r: redis.Redis, pool: str, logdir: Path, n_replicas: int
) -> dict[str, Any]:
    prefix = f"{pool}."
    ch = Channels(prefix, pool)
    _seed(redis_url, pool, prefix)
    dead_api = f"http://127.0.0.1:{free_port()}"
    common = (
        "--node-api-url", dead_api, "--policy", "static", "--min-spare", "0",
        "--keep-alive", "100000", "--marker-interval", "0.05", "--tick", "0.5",
    )  # fmt: skip
    names = ["prompt-a", "prompt-b", "laggard"][-n_replicas:] if n_replicas > 1 else ["solo"]
    with replicas(redis_url, pool, prefix, logdir / pool) as group:
        (logdir / pool).mkdir(parents=True, exist_ok=True)
        for name in names:
            lag = ("--lag", "0.06") if name == "laggard" else ()
            group.start_replica(name, *common, *lag)
        wait_until(
            lambda: (
                subscribers(r, ch.marker) == len(names) and live_replicas(r, pool) == len(names)
            ),
            20,
            "replicas to subscribe",
        )
        time.sleep(0.5)  # every replica has seen a marker
        for channel, payload in PART1:
            r.publish(prefix + channel, payload)
            time.sleep(0.02)
        if n_replicas > 1:
            time.sleep(0.2)  # the prompt ones are done with part 1, the laggard is not
            for name in ("prompt-a", "prompt-b"):
                group.signal(name, signal.SIGKILL)
        for channel, payload in PART2:
            r.publish(prefix + channel, payload)
            time.sleep(0.02)
        k = PoolKeys(pool)
        wait_until(
            lambda: (
                r.hget(k.stats, "connects") == "8" and r.zrange(k.users_waiting, 0, -1) == ["u3"]
            ),
            30,
            "all messages to be applied",
        )
        time.sleep(1.5)  # let a laggard finish its replay
        return _state(r, pool)


def test_three_replicas_one_lagging_match_one_replica(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    solo = _run(redis_url, r, "solo" + tmp_path.name[-6:].replace("_", ""), tmp_path, 1)
    trio = _run(redis_url, r, "trio" + tmp_path.name[-6:].replace("_", ""), tmp_path, 3)
    # what the sequence must produce, so that both runs doing nothing cannot pass
    assert solo["user_node"] == {"u4": "n1", "u1": "n4", "u5": "n2"}
    assert solo["waiting"] == ["u3"]
    assert solo["node_state"]["n3"] == "terminated"
    assert solo["stats"]["connects"] == "8" and solo["stats"]["hits"] == "4"
    assert solo["bad"] == {"not_json": "1", "wrong_type": "1"}
    assert trio == solo
