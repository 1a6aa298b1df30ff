"""Workload model, scenario generators and the trace replay."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import statistics
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from provisioner.sim import scenarios, trace
from provisioner.sim.workload import BootProfile, Event, Workload, scale

NEW = ("cold", "flaky", "browse-heavy", "diurnal", "returning")
GENERATED = ("steady", "spike", "starter", *NEW)
"""Every synthetic scenario (all but the trace replay)."""

DOUBLE_RATE: dict[str, dict[str, object]] = {
    # overrides that double each scenario's default sessions per second
    "steady": {"arrival_rate_per_s": 1.0},
    "spike": {"arrival_rate_per_s": 1.0},
    "cold": {"arrival_rate_per_s": 1.0},
    "flaky": {"arrival_rate_per_s": 1.0},
    "browse-heavy": {"arrival_rate_per_s": 8.0},
    "diurnal": {"arrival_rate_per_s": 1.0},
    "returning": {"users": 600},
    # starter: twice the population, activity twice as often overall (per user unchanged)
    "starter": {"fast_users": 6, "slow_users": 34, "browsers": 60, "activity_gap_s": (0.15, 0.65)},
}


def _by_user(wl: Workload) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = defaultdict(list)
    for ev in wl.events:
        out[ev.user_id].append(ev)
    return out


def test_names_and_unknown() -> None:
    assert set(scenarios.NAMES) >= {"steady", "spike", "starter", "trace"} | set(NEW)
    assert scenarios.NAMES[:4] == ("steady", "spike", "starter", "trace")
    with pytest.raises(KeyError):
        scenarios.build("nope")
    with pytest.raises(TypeError):
        scenarios.build("steady", no_such_param=1)


@pytest.mark.parametrize("name", GENERATED)
def test_determinism_by_seed(name: str) -> None:
    a = scenarios.build(name, seed=7)
    b = scenarios.build(name, seed=7)
    c = scenarios.build(name, seed=8)
    assert a.events == b.events
    assert a.events != c.events
    times = [e.t_s for e in a.events]
    assert times == sorted(times)
    assert all(0 <= t <= a.duration_s for t in times)


@pytest.mark.parametrize("name", GENERATED)
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


def test_a_ten_hour_world_generates() -> None:
    """Generation speed is the benches' business (no timed unit tests); this checks that
    a large world builds at all."""
    wl = scenarios.build("steady", duration_s=36_000.0, arrival_rate_per_s=1.0)
    assert len(wl.sessions()) > 10_000


def test_existing_scenarios_unchanged() -> None:
    """Digests of seed 1 taken from the generators before ``visit``, the Fenwick pick of
    ``starter`` and the direct ``user_id`` formatting were introduced."""
    want = {
        "steady": "900bbd2207f9df21",
        "spike": "84e2fbceb84e3a41",
        "starter": "69afd5d1b04d214f",
    }
    for name, digest in want.items():
        events = scenarios.build(name, seed=1).events
        assert hashlib.sha256(repr(events).encode()).hexdigest()[:16] == digest, name


def test_user_id_is_uuid4() -> None:
    a, b = random.Random(9), random.Random(9)
    for _ in range(2000):
        u = scenarios.user_id(a)
        assert u == str(uuid.UUID(int=b.getrandbits(128), version=4))
        assert uuid.UUID(u).version == 4


def test_eligible_set_matches_brute_force() -> None:
    rng = random.Random(4)
    for n in (1, 2, 5, 16, 37):
        pick = scenarios._Eligible(n)
        flags = [True] * n
        for _ in range(300):
            i, on = rng.randrange(n), rng.random() < 0.5
            pick.set(i, on)
            flags[i] = on
            members = [j for j in range(n) if flags[j]]
            assert pick.count == len(members)
            assert [pick.kth(k) for k in range(len(members))] == members


@pytest.mark.parametrize("name", GENERATED)
def test_duration_and_rate_overrides(name: str) -> None:
    default = scenarios.build(name).params
    for knob, value in DOUBLE_RATE[name].items():
        if isinstance(value, (int, float)):
            assert value == 2 * default[knob]  # type: ignore[operator]
    one = scenarios.build(name, seed=2, duration_s=3600.0)
    two = scenarios.build(name, seed=2, duration_s=3600.0, **DOUBLE_RATE[name])
    assert one.duration_s == two.duration_s == 3600.0
    assert max(e.t_s for e in two.events) <= 3600.0
    ratio = len(two.sessions()) / len(one.sessions())
    assert 1.6 <= ratio <= 2.5, ratio


def _cold_share(wl: Workload) -> float:
    """Share of connects whose user was not seen on activity before (scorecard's rule)."""
    seen: set[str] = set()
    cold = total = 0
    for e in wl.events:
        if e.kind == "activity":
            seen.add(e.user_id)
        elif e.kind == "connect":
            total += 1
            cold += e.user_id not in seen
    return cold / total


def test_cold_share_of_connects() -> None:
    assert _cold_share(scenarios.build("steady", seed=1)) == 0.0
    for seed in (1, 2):
        wl = scenarios.build("cold", seed=seed, duration_s=7200.0)
        assert 0.26 <= _cold_share(wl) <= 0.34, _cold_share(wl)
        by = _by_user(wl)
        for user, cls in wl.user_class.items():
            kinds = {e.kind for e in by[user]}
            if cls == "cold":  # never seen on activity at all
                assert "activity" not in kinds and "connect" in kinds
    assert _cold_share(scenarios.build("cold", seed=1, cold_p=0.0)) == 0.0


def test_returning_users_come_back() -> None:
    p = scenarios.RETURNING
    wl = scenarios.build("returning", seed=1)
    assert len(wl.user_class) == 300 and wl.users() <= set(wl.user_class)
    assert 40 <= Counter(wl.user_class.values())["browser"] <= 80  # ~20% never connect
    per_user = Counter(s.user_id for s in wl.sessions())
    connectors = [u for u, c in wl.user_class.items() if c == "connector"]
    assert all(wl.user_class[u] == "connector" for u in per_user)
    counts = sorted(per_user[u] for u in connectors)
    assert counts[len(counts) // 2] >= 4  # the median connector has several sessions
    assert sum(1 for c in counts if c >= 2) >= 0.9 * len(counts)
    # rests: from a disconnect to the same user's next activity, Exponential(mean 600 s)
    rests = [
        b.t_s - a.t_s
        for evs in _by_user(wl).values()
        for a, b in itertools.pairwise(evs)
        if a.kind == "disconnect"
    ]
    assert all(r > 0 for r in rests) and len(rests) > 1000
    assert 0.85 * p.rest_mean_s <= statistics.fmean(rests) <= 1.15 * p.rest_mean_s
    # browsers browse repeatedly
    by = _by_user(wl)
    browsers = [u for u, c in wl.user_class.items() if c == "browser"]
    assert statistics.median(len(by[u]) for u in browsers) >= 20


def test_browse_heavy_connect_fraction() -> None:
    wl = scenarios.build("browse-heavy", seed=1)
    users = wl.users()
    connectors = {e.user_id for e in wl.events if e.kind == "connect"}
    assert 0.5 * 4.0 * 1800 <= len(users) <= 4.0 * 1800 * 1.2  # 4 new users/s
    assert 0.035 <= len(connectors) / len(users) <= 0.065
    assert wl.count("activity") >= 15 * wl.count("connect")


def test_diurnal_peak_and_trough() -> None:
    p = scenarios.DIURNAL
    assert scenarios.diurnal_rate(p, p.period_s / 4) == pytest.approx(0.9)
    assert scenarios.diurnal_rate(p, 3 * p.period_s / 4) == pytest.approx(0.1)
    for seed in (1, 2):
        wl = scenarios.build("diurnal", seed=seed)
        assert wl.duration_s == 7200.0
        assert 0.85 * 3600 <= len(wl.users()) <= 1.15 * 3600  # mean 0.5/s over one period
        first: dict[str, float] = {}
        for e in wl.events:
            first.setdefault(e.user_id, e.t_s)

        def rate(times: list[float], lo: float, hi: float) -> float:
            return sum(1 for t in times if lo <= t < hi) / (hi - lo)

        # 20 min windows around the peak (30 min) and the trough (90 min):
        # expected ratio (1 + 0.8 * 0.955) / (1 - 0.8 * 0.955) = 7.5
        arrivals = list(first.values())
        ratio = rate(arrivals, 1200, 2400) / rate(arrivals, 4800, 6000)
        assert 5.0 <= ratio <= 11.0, ratio
        times = [e.t_s for e in wl.events]
        ratio = rate(times, 1200, 2400) / rate(times, 4800, 6000)
        assert 4.0 <= ratio <= 12.0, ratio


def test_thinning_matches_intensity() -> None:
    rng = random.Random(1)
    ts = scenarios.thinned_arrivals(rng, lambda t: 1.0 if t < 5000 else 0.25, 2.0, 10_000.0)
    assert all(0 <= t < 10_000 for t in ts) and ts == sorted(ts)
    early = sum(1 for t in ts if t < 5000)
    assert 4700 <= early <= 5300 and 1100 <= len(ts) - early <= 1400


def test_flaky_boot_profile() -> None:
    wl = scenarios.build("flaky", seed=1)
    assert wl.boot == BootProfile(
        20.0, 40.0, fail_p=0.1, lost_ready_p=0.05, slow_tail_p=0.1, slow_tail_factor=3.0
    )
    assert wl.boot.mean_s == pytest.approx(36.0)
    assert scenarios.build("flaky", fail_p=0.3).boot.fail_p == 0.3
    connectors = {e.user_id for e in wl.events if e.kind == "connect"}
    assert 0.33 <= len(connectors) / len(wl.users()) <= 0.47  # steady's users
    for name in ("steady", "cold", "browse-heavy", "diurnal", "returning"):
        assert scenarios.build(name).boot == BootProfile(20.0, 40.0)


@pytest.mark.parametrize("name", [n for n in scenarios.NAMES if n != "trace"])
def test_bench_workload_reaches_min_sessions(name: str) -> None:
    wl = scenarios.bench_workload(name)
    n = len(wl.sessions())
    assert 10_000 <= n <= 12_500, n
    assert len(wl.events) <= 1_200_000
    assert scenarios.bench_workload(name, seed=2, min_sessions=500).duration_s > 0
    if name == "starter":
        assert Counter(wl.user_class.values()) == {"fast": 66, "slow": 374, "browser": 660}
    if name == "spike":
        assert wl.duration_s == 1800.0
    if name == "returning":
        assert len(wl.users()) <= 300


def test_bench_workload_trace_is_whole_trace() -> None:
    wl = scenarios.bench_workload("trace")
    assert len(wl.sessions()) == 6606
    assert wl.duration_s == pytest.approx(1_989_388, abs=1)


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
