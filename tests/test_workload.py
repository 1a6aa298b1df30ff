"""Workload model, scenario generators and the trace replay."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from provisioner import scenarios, trace
from provisioner.workload import BootProfile, Event, Workload, scale


def _by_user(wl: Workload) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for ev in wl.events:
        out[ev.user_id].append(ev)
    return out


def test_names_and_unknown() -> None:
    assert set(scenarios.NAMES) >= {"steady", "spike", "starter", "trace"}
    with pytest.raises(KeyError):
        scenarios.build("nope")
    with pytest.raises(TypeError):
        scenarios.build("steady", no_such_param=1)


@pytest.mark.parametrize("name", ["steady", "spike", "starter"])
def test_determinism_by_seed(name: str) -> None:
    a = scenarios.build(name, seed=7)
    b = scenarios.build(name, seed=7)
    c = scenarios.build(name, seed=8)
    assert a.events == b.events
    assert a.events != c.events
    times = [e.t_s for e in a.events]
    assert times == sorted(times)
    assert all(0 <= t <= a.duration_s for t in times)


@pytest.mark.parametrize("name", ["steady", "spike", "starter"])
def test_event_grammar(name: str) -> None:
    """Per user: connect/disconnect alternate, no activity while connected."""
    wl = scenarios.build(name, seed=3)
    for user, evs in _by_user(wl).items():
        connected = False
        for ev in evs:
            if ev.kind == "connect":
                assert not connected, user
                connected = True
            elif ev.kind == "disconnect":
                assert connected, user
                connected = False
            else:
                assert not connected, f"{user} browses while connected"


def test_starter_population_and_timing() -> None:
    p = scenarios.STARTER
    for seed in (1, 2, 3):
        wl = scenarios.build("starter", seed=seed)
        assert wl.boot == BootProfile(10.0, 29.0)
        assert Counter(wl.user_class.values()) == {"fast": 3, "slow": 17, "browser": 30}
        assert len(wl.users()) == 50
        connectors = set()
        for user, evs in _by_user(wl).items():
            cls = wl.user_class[user]
            after = p.fast_connect_after_s if cls == "fast" else p.slow_connect_after_s
            stay = p.fast_stay_s if cls == "fast" else p.slow_stay_s
            last_act: float | None = None
            last_disc: float | None = None
            conn_t = 0.0
            for ev in evs:
                if ev.kind == "activity":
                    if last_disc is not None:
                        assert ev.t_s - last_disc >= p.rest_s[0] - 1e-9
                        last_disc = None
                    last_act = ev.t_s
                elif ev.kind == "connect":
                    assert cls != "browser"
                    connectors.add(user)
                    assert last_act is not None
                    gap = ev.t_s - last_act
                    assert after[0] - 1e-9 <= gap <= after[1] + 1e-9, (cls, gap)
                    conn_t, last_act = ev.t_s, None
                else:
                    assert stay[0] - 1e-9 <= ev.t_s - conn_t <= stay[1] + 1e-9
                    last_disc = ev.t_s
        assert len(connectors) >= 10  # most of the 20 connectors get to connect
        acts = [e.t_s for e in wl.events if e.kind == "activity"]
        act_gaps = [b - a for a, b in itertools.pairwise(acts)]
        assert min(act_gaps) >= 0.3 - 1e-9
        assert max(act_gaps) <= 1.3 + 1e-9  # the 30 browsers are always eligible


def test_steady_connect_share_and_sessions() -> None:
    wl = scenarios.build("steady", seed=1)
    users = wl.users()
    connectors = {e.user_id for e in wl.events if e.kind == "connect"}
    share = len(connectors) / len(users)
    assert 0.33 <= share <= 0.47, share
    assert 0.5 * 1800 * 0.8 <= len(users) <= 0.5 * 1800 * 1.2
    sess = [s for s in wl.sessions() if s.disconnect_s < wl.duration_s]
    med = sorted(s.duration_s for s in sess)[len(sess) // 2]
    assert 120 <= med <= 270, med
    assert wl.boot == BootProfile(20.0, 40.0)
    # every connect comes some seconds after that user's last activity
    for evs in _by_user(wl).values():
        for a, b in itertools.pairwise(evs):
            if b.kind == "connect":
                assert a.kind == "activity" and 2.0 <= b.t_s - a.t_s <= 15.0


def test_spike_rate_jump() -> None:
    wl = scenarios.build("spike", seed=1)
    first: dict[str, float] = {}
    for e in wl.events:
        first.setdefault(e.user_id, e.t_s)
    before = sum(1 for t in first.values() if 0 <= t < 600) / 600
    during = sum(1 for t in first.values() if 600 <= t < 900) / 300
    after = sum(1 for t in first.values() if 900 <= t < 1800) / 900
    assert 0.4 <= before <= 0.6 and 0.4 <= after <= 0.6
    assert 6.0 <= during / before <= 10.0


def test_sessions_and_scale() -> None:
    evs = [
        Event(1.0, "activity", "a"),
        Event(2.0, "connect", "a"),
        Event(5.0, "connect", "b"),
        Event(8.0, "disconnect", "a"),
    ]
    wl = Workload("x", 1, evs, 10.0, BootProfile(20, 40))
    s = wl.sessions()
    assert [(x.user_id, x.connect_s, x.disconnect_s) for x in s] == [
        ("a", 2.0, 8.0),
        ("b", 5.0, 10.0),
    ]
    fast = scale(wl, 5)
    assert [e.t_s for e in fast.events] == [0.2, 0.4, 1.0, 1.6]
    assert fast.duration_s == 2.0
    assert (fast.boot.min_s, fast.boot.max_s) == (4.0, 8.0)
    assert wl.events[0].t_s == 1.0  # original untouched
    assert BootProfile(20, 40, slow_tail_p=0.5, slow_tail_factor=3).mean_s == 60.0


def test_generation_is_fast() -> None:
    import time

    t = time.perf_counter()
    wl = scenarios.build("steady", duration_s=36_000.0, arrival_rate_per_s=1.0)
    assert len(wl.sessions()) > 10_000
    assert time.perf_counter() - t < 3.0


CSV = """gmt_create,predict_type,predict_status,exec_time_seconds,groupId,prompt_length
2024-11-15 10:00:00,TXT_2_IMG,SUCCEED,30.0,A,1
2024-11-15 10:05:00,TXT_2_IMG,SUCCEED,100.0,A,1
2024-11-15 10:16:39,TXT_2_IMG,FAILED,10.0,A,1
2024-11-15 10:26:50,TXT_2_IMG,SUCCEED,0.0,A,1
2024-11-15 10:00:30,TXT_2_IMG,SUCCEED,700.0,B,1
2024-11-15 10:21:00,TXT_2_IMG,SUCCEED,5.0,B,1
2024-11-16 12:00:00,TXT_2_IMG,SUCCEED,20.0,C,1
2024-11-16 12:30:00,TXT_2_IMG,SUCCEED,20.0,C,1
2024-11-16 13:00:00,TXT_2_IMG,SUCCEED,20.0,D,1
"""


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    p = tmp_path / "t.csv"
    p.write_text(CSV)
    return p


def test_trace_sessionize(small_csv: Path) -> None:
    wl = trace.build_workload(path=small_csv, lead_activity=False)
    got = sorted((s.user_id, s.connect_s, s.disconnect_s) for s in wl.sessions())
    assert got == [
        # A: 10:00 ends 10:00:30; 10:05 (gap 270) ends 10:06:40; 10:16:39 (gap 599 s) joins,
        # ends 10:16:49; 10:26:50 is 601 s after that end: new session, 0 s exec -> 1 s.
        ("A", 0.0, 999.0 + 10.0),
        ("A", 1610.0, 1611.0),
        # B: 10:00:30 + 700 s ends 10:12:10; 10:21:00 is 530 s later: same session.
        ("B", 30.0, 1265.0),
        ("C", 93600.0, 93620.0),
        ("C", 95400.0, 95420.0),
        ("D", 97200.0, 97220.0),
    ]
    assert wl.count("activity") == 0
    assert wl.boot == BootProfile(20.0, 40.0)
    assert wl.duration_s == 97220.0


def test_trace_lead_activity_and_window(small_csv: Path) -> None:
    wl = trace.build_workload(path=small_csv, seed=3)
    assert wl.events == trace.build_workload(path=small_csv, seed=3).events
    by = _by_user(wl)
    for evs in by.values():
        conn = [e.t_s for e in evs if e.kind == "connect"]
        for e in evs:
            if e.kind == "activity":
                assert e.t_s >= 0
                nxt = min(c for c in conn if c > e.t_s)
                assert 30.0 <= nxt - e.t_s <= 120.0
    # sessions at t=0/30 lose their lead activity (before time 0); later ones have >= 1
    assert any(e.kind == "activity" for e in by["C"])
    day = trace.build_workload(path=small_csv, window="busiest-day", lead_activity=False)
    s = day.sessions()
    # 3 connects in [0, 24 h) and 3 in the day from C's first connect: ties go to the earliest
    assert [x.user_id for x in s] == ["A", "B", "A"]
    assert s[0].connect_s == 0.0 and day.duration_s >= 86400.0
    w2 = trace.build_workload(path=small_csv, window=(90000.0, 200000.0), lead_activity=False)
    assert [x.user_id for x in w2.sessions()] == ["C", "C", "D"]
    assert w2.sessions()[0].connect_s == 3600.0


def test_trace_whole_file_counts() -> None:
    wl = scenarios.build("trace")
    summ = trace.summary(wl)
    assert summ["users"] == 4247
    assert 5000 <= summ["sessions"] <= 8000
    assert 22.5 <= summ["days"] <= 23.5
    assert wl.events[0].t_s >= 0 and math.isclose(
        min(e.t_s for e in wl.events if e.kind == "connect"), 0.0
    )
    assert all(e.kind != "activity" for e in scenarios.build("trace", lead_activity=False).events)
    day = scenarios.build("trace", window="busiest-day")
    dsum = trace.summary(day)
    assert 300 <= dsum["sessions"] <= 2000
    # the busiest day beats every other day-long window starting at a day boundary
    starts = sorted(s.connect_s for s in wl.sessions())
    for d in range(23):
        n = sum(1 for t in starts if d * 86400 <= t < (d + 1) * 86400)
        assert n <= dsum["sessions"]
