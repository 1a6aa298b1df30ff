"""Scorecard and oracle on hand-made cases with known answers."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from provisioner.sim.scorecard import (
    Scorecard,
    format_scorecard,
    oracle_node_seconds,
    percentile,
    score,
)


def node(
    nid: str,
    created: float,
    ready: float | None,
    delete: float | None = None,
    terminated: float | None = None,
) -> dict[str, Any]:
    return {
        "id": nid,
        "created_ms": created,
        "ready_ms": ready,
        "delete_ms": delete,
        "terminated_ms": terminated,
        "status": "terminated" if terminated or delete else "ready",
        "outcome": "",
    }


def test_hit_busy_idle() -> None:
    sc = score(
        connects=[(20_000, "u1")],
        disconnects=[(50_000, "u1")],
        assignments=[(20_000, "u1", "n1", 0)],
        activity=[(5_000, "u1")],
        nodes=[node("n1", 0, 10_000, delete=100_000, terminated=100_100)],
        boot_time_s=10.0,
    )
    assert (sc.connects, sc.hits, sc.misses, sc.miss_rate) == (1, 1, 0, 0.0)
    assert (sc.connects_predictable, sc.connects_cold) == (1, 0)
    assert sc.wait_p50_ms is None and sc.never_served == 0
    assert sc.node_seconds == pytest.approx(100.0)
    assert sc.busy_node_seconds == pytest.approx(30.0)
    assert sc.idle_node_seconds == pytest.approx(70.0)
    assert sc.oracle_node_seconds == pytest.approx(40.0)  # 30 s session + 10 s boot
    assert sc.cost_over_oracle == pytest.approx(2.5)
    assert sc.violations == 0 and sc.nodes_created == 1


def test_miss_with_wait_and_cold() -> None:
    sc = score(
        connects=[(0, "u2"), (1_000, "u3")],
        disconnects=[(60_000, "u2"), (61_000, "u3")],
        assignments=[(30_000, "u2", "n2", 30_000), (41_000, "u3", "n3", 40_000)],
        activity=[(500, "u3")],
        nodes=[node("n2", 0, 30_000, delete=60_000), node("n3", 1_000, 41_000, delete=61_000)],
        boot_time_s=None,  # learned from the ledger: mean(30, 40) = 35 s
    )
    assert (sc.hits, sc.misses, sc.served_misses) == (0, 2, 2)
    assert (sc.misses_cold, sc.misses_predictable) == (1, 1)
    assert sc.wait_max_ms == 40_000 and sc.wait_p50_ms == 35_000
    assert sc.wait_p95_ms == pytest.approx(39_500)
    assert sc.boot_time_s == pytest.approx(35.0)
    assert sc.busy_node_seconds == pytest.approx(50.0)
    assert sc.idle_node_seconds == pytest.approx(70.0)
    assert sc.violations == 0


def test_predictable_means_seen_at_or_before_the_connect() -> None:
    # a: activity at the connect's own ms (counts as before); b: only after it; c: seen
    # long before, connects twice; d: never seen
    sc = score(
        connects=[(1_000, "a"), (1_000, "b"), (2_000, "c"), (9_000, "c"), (3_000, "d")],
        disconnects=[(5_000, "a"), (5_000, "b"), (4_000, "c"), (5_000, "d")],
        assignments=[],
        activity=[(1_000, "a"), (1_500, "b"), (3_000, "c"), (100, "c"), (8_000, "d2")],
        nodes=[],
        boot_time_s=1.0,
    )
    assert (sc.connects, sc.connects_predictable, sc.connects_cold) == (5, 3, 2)
    assert sc.start_ms == 100 and sc.end_ms == 9_000  # activity bounds the span too


def test_predictability_matches_a_sorted_timeline_on_random_records() -> None:
    """The first-activity rule gives what replaying every record in time order gives
    (activity before connects at equal times): the definition it replaced."""
    rnd = random.Random(7)
    for _ in range(200):
        users = [f"u{i}" for i in range(rnd.randint(1, 6))]
        activity = [(rnd.randint(0, 50), rnd.choice(users)) for _ in range(rnd.randint(0, 12))]
        t, connects, disconnects = 0, [], []
        for u in users:
            for _ in range(rnd.randint(0, 2)):
                t += rnd.randint(1, 8)  # after the last disconnect: no duplicate connect
                connects.append((t, u))
                t += rnd.randint(1, 8)
                disconnects.append((t, u))
        timeline = sorted([(a, 0, u) for a, u in activity] + [(c, 1, u) for c, u in connects])
        seen: set[str] = set()
        expected = 0
        for _, kind, u in timeline:
            if kind == 0:
                seen.add(u)
            else:
                expected += u in seen
        sc = score(connects, disconnects, [], activity, [], boot_time_s=1.0)
        assert sc.connects_predictable == expected


def test_never_served() -> None:
    sc = score(
        connects=[(0, "a"), (5_000, "b")],
        disconnects=[(10_000, "a")],
        assignments=[],
        activity=[],
        nodes=[],
        boot_time_s=20.0,
        end_ms=30_000,
    )
    assert (sc.connects, sc.misses, sc.never_served, sc.served_misses) == (2, 2, 2, 0)
    # oracle: a (0-10 s) boots; b (5-30 s, open at the end) boots: 10 + 25 + 2 * 20
    assert sc.oracle_node_seconds == pytest.approx(75.0)
    assert sc.cost_over_oracle == 0.0


def test_double_assignment_violation() -> None:
    sc = score(
        connects=[(1_000, "a"), (2_000, "b")],
        disconnects=[(10_000, "a"), (12_000, "b")],
        assignments=[(1_000, "a", "n1", 0), (2_000, "b", "n1", 0)],
        activity=[],
        nodes=[node("n1", 0, 500, delete=20_000)],
        boot_time_s=1.0,
    )
    assert sc.violations == 1
    assert "held by a" in sc.violation_details[0]
    assert sc.hits == 2
    assert sc.busy_node_seconds == pytest.approx(11.0)  # union of 1-10 s and 2-12 s


def test_node_reuse_after_disconnect_is_fine() -> None:
    sc = score(
        connects=[(1_000, "a"), (12_000, "b")],
        disconnects=[(10_000, "a"), (15_000, "b")],
        assignments=[(1_000, "a", "n1", 0), (12_000, "b", "n1", 0)],
        activity=[],
        nodes=[node("n1", 0, 500, delete=20_000)],
        boot_time_s=1.0,
    )
    assert sc.violations == 0
    assert sc.busy_node_seconds == pytest.approx(12.0)
    assert sc.idle_node_seconds == pytest.approx(8.0)


def test_booting_and_terminated_node_violations() -> None:
    sc = score(
        connects=[(20_000, "a"), (20_000, "b"), (20_000, "c"), (20_000, "d")],
        disconnects=[],
        assignments=[
            (20_000, "a", "boot", 0),
            (20_000, "b", "never", 0),
            (20_000, "c", "dead", 0),
            (20_040, "d", "almost", 0),
        ],
        activity=[],
        nodes=[
            node("boot", 0, 40_000),
            node("never", 0, None, terminated=50_000),
            node("dead", 0, 5_000, terminated=10_000),
            node("almost", 0, 20_080),  # within the 50 ms skew tolerance
        ],
        boot_time_s=20.0,
        end_ms=60_000,
    )
    assert sc.violations == 3, sc.violation_details
    assert {d.split()[1] for d in sc.violation_details} == {"a", "b", "c"}


def test_replacement_and_two_nodes() -> None:
    sc = score(
        connects=[(1_000, "a"), (1_000, "b")],
        disconnects=[(60_000, "a"), (60_000, "b")],
        assignments=[
            (1_000, "a", "n1", 0),
            (31_000, "a", "n2", 1_000),  # n1 died under a at 30 s: replacement
            (1_000, "b", "n3", 0),
            (5_000, "b", "n4", 0),  # b still holds a live n3: violation
        ],
        activity=[],
        nodes=[
            node("n1", 0, 500, terminated=30_000),
            node("n2", 0, 500, delete=60_000),
            node("n3", 0, 500, delete=60_000),
            node("n4", 0, 500, delete=60_000),
        ],
        boot_time_s=1.0,
    )
    assert sc.replacements == 1
    assert sc.violations == 1 and "while holding n3" in sc.violation_details[0]
    assert sc.hits == 2
    # n1 busy 1-30 s, n2 busy 31-60 s, n3 busy 1-5 s, n4 busy 5-60 s
    assert sc.busy_node_seconds == pytest.approx(29 + 29 + 4 + 55)


def test_stray_records_and_duplicate() -> None:
    sc = score(
        connects=[(0, "a"), (1, "a")],
        disconnects=[(5, "z"), (9_000, "a")],
        assignments=[(10, "a", "n1", 0), (11, "a", "n1", 0), (9_500, "a", "n1", 0)],
        activity=[],
        nodes=[node("n1", 0, 0)],
        boot_time_s=1.0,
    )
    assert sc.anomalies == {"duplicate_connect": 1, "stray_disconnect": 1, "stray_assignment": 1}
    assert sc.violations == 1 and "twice" in sc.violation_details[0]


def test_format_and_dict() -> None:
    sc = score([(0, "a")], [(1000, "a")], [(0, "a", "n", 0)], [], [node("n", 0, 0)], 1.0)
    text = format_scorecard(sc)
    assert "hits" in text and "violations" in text and "cost/oracle" in text
    d = sc.to_dict()
    assert d["hits"] == 1 and isinstance(d["violation_details"], list)
    assert Scorecard(**d) == sc


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)


def test_oracle_reuse_vs_new_boot() -> None:
    # gap 5 s < boot 10 s: reuse; total = 10 + 5 (sessions) + 10 (first boot) + 5 (idle)
    assert oracle_node_seconds([(0, 10), (15, 20)], 10) == pytest.approx(30.0)
    # gap 12 s >= boot: new boot
    assert oracle_node_seconds([(0, 10), (22, 30)], 10) == pytest.approx(38.0)
    # overlapping sessions: two boots; the later connect takes the most recent free node
    assert oracle_node_seconds([(0, 10), (5, 20), (21, 25)], 10) == pytest.approx(
        10 + 15 + 4 + 10 + 10 + 1
    )
    assert oracle_node_seconds([], 10) == 0.0


def _brute(sessions: list[tuple[float, float]], boot: float) -> float:
    """Exhaustive minimum over all reuse choices (tiny inputs)."""
    order = sorted(range(len(sessions)), key=lambda i: sessions[i][0])
    best = math.inf

    def go(k: int, used: frozenset[int], cost: float) -> None:
        nonlocal best
        if cost >= best:
            return
        if k == len(order):
            best = cost
            return
        i = order[k]
        c, d = sessions[i]
        go(k + 1, used, cost + (d - c) + boot)
        for j in order[:k]:
            dj = sessions[j][1]
            if j not in used and dj <= c:
                go(k + 1, used | {j}, cost + (d - c) + (c - dj))

    go(0, frozenset(), 0.0)
    return best


def test_oracle_matches_brute_force() -> None:
    rng = random.Random(5)
    for _ in range(300):
        n = rng.randint(1, 6)
        sess = []
        for _ in range(n):
            c = rng.uniform(0, 60)
            sess.append((c, c + rng.uniform(1, 20)))
        boot = rng.uniform(1, 15)
        assert oracle_node_seconds(sess, boot) == pytest.approx(_brute(sess, boot)), sess
