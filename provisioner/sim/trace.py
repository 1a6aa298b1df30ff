"""Replay of a real trace: Alibaba's GenAI (diffusion + LoRA) serving requests.

Data: ``provisioner/data/alibaba-genai-lora-requests.csv.gz`` (see ``data/README.md``):
26,823 requests, 2024-11-15 16:57:50 to 2024-12-08 17:33:57, 4,247 users (``groupId``).

Mapping onto our world (all times in seconds):

* A request starts at ``gmt_create`` and ends at ``gmt_create + exec_time_seconds``.  All
  requests count, whatever their ``predict_status`` (a failed request still held a GPU).
* Per user, requests are taken in start order; a request joins the current session when the
  idle gap from the latest end of the session's requests so far to its start is shorter than
  :data:`GAP_S` (600 s; overlapping requests give a negative gap and always join), else it
  opens a new session.  ``connect`` is at the session's first request start, ``disconnect``
  at the latest end of its requests, but at least :data:`MIN_SESSION_S` after the connect
  (some requests have ``exec_time_seconds`` 0).
* Lead-up browsing (the trace has none) is synthesised when ``lead_activity`` is true: for
  each session, ``k = 1 + Poisson(LEAD_EXTRA_MEAN)`` activity events at times drawn
  ``U(LEAD_MIN_S, LEAD_MAX_S)`` seconds before its connect, i.e. in the 30-120 s before it,
  from ``random.Random(f"trace:{seed}")`` taken over all sessions of the whole trace in
  ``(connect, user)`` order (so a window sees the same activity as the whole trace).
  Connected users do not browse: no activity inside sessions (the gap of >= 600 s between a
  user's sessions keeps lead-up activity out of the previous session).  Activity that would
  fall before time 0 of the replay is dropped.
* Time 0 is the first request of the trace (``window=None``), or the first connect of the
  window.  ``window="busiest-day"`` is the 24 h span, starting at a session start, holding
  the most session starts; a session belongs to a window when its connect does, and keeps
  its full length (the workload's duration extends to its last disconnect).

Counts with the defaults (GAP_S = 600 s), measured on the packaged file: the whole trace
gives 6,606 sessions of 4,247 users over 23.03 days (duration 1,989,388 s) and 26,131
synthetic activity events (seed 1); the busiest day starts 2024-12-02 17:27:36 (t =
1,470,586 s) and holds 665 sessions of 507 users (duration 89,455 s, as its last session
ends after the 24 h).

Boots for this scenario: ``U(20, 40)`` s (:data:`BOOT`).
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal

from provisioner.sim.workload import BootProfile, Event, Session, Workload, sort_events

DATA_FILE = "alibaba-genai-lora-requests.csv.gz"
"""The packaged trace, under ``provisioner/data/``."""

GAP_S = 600.0
"""Session gap threshold, seconds: a longer idle gap between a user's requests splits sessions."""

MIN_SESSION_S = 1.0
"""Minimum session length, seconds (keeps each disconnect strictly after its connect)."""

LEAD_EXTRA_MEAN = 3.0
"""Lead-up activity events per session: ``k = 1 + Poisson(LEAD_EXTRA_MEAN)`` (mean 4)."""

LEAD_MIN_S = 30.0
"""Lead-up activity is drawn ``U(LEAD_MIN_S, LEAD_MAX_S)`` seconds before the connect."""

LEAD_MAX_S = 120.0
"""See :data:`LEAD_MIN_S`."""

DAY_S = 86_400.0
"""Length of the ``busiest-day`` window, seconds."""

BOOT = BootProfile(min_s=20.0, max_s=40.0)
"""Boot-time profile of the trace scenario: U(20, 40) s."""

Window = None | Literal["busiest-day"] | tuple[float, float]


@dataclass(frozen=True)
class Request:
    """One trace request.

    Attributes:
        start_s: ``gmt_create`` as seconds since the Unix epoch (the trace's anonymised
            offset dates, read as UTC).
        exec_s: ``exec_time_seconds`` (>= 0).
        user_id: ``groupId``.
        status: ``predict_status``.
    """

    start_s: float
    exec_s: float
    user_id: str
    status: str

    @property
    def end_s(self) -> float:
        """``start_s + exec_s``."""
        return self.start_s + self.exec_s


def _open_text(path: Path | None) -> io.TextIOBase:
    if path is None:
        ref = resources.files("provisioner.sim") / "data" / DATA_FILE
        raw = ref.read_bytes()
        return io.StringIO(gzip.decompress(raw).decode("utf-8"))
    path = Path(path)
    if path.suffix == ".gz":
        return io.StringIO(gzip.decompress(path.read_bytes()).decode("utf-8"))
    return io.StringIO(path.read_text(encoding="utf-8"))


_EPOCH = datetime(1970, 1, 1)


def load_requests(path: Path | str | None = None) -> list[Request]:
    """Read the trace CSV (``.csv`` or ``.csv.gz``; default: the packaged file).

    Needs the columns ``gmt_create`` (``YYYY-MM-DD HH:MM:SS``), ``exec_time_seconds``
    (empty counts as 0), ``groupId`` and optionally ``predict_status``.

    Returns:
        Requests sorted by ``start_s`` (stable).
    """
    with _open_text(Path(path) if path is not None else None) as fh:
        out: list[Request] = []
        for row in csv.DictReader(fh):
            start = (datetime.fromisoformat(row["gmt_create"]) - _EPOCH).total_seconds()
            exec_s = float(row.get("exec_time_seconds") or 0.0)
            if not math.isfinite(exec_s) or exec_s < 0:
                exec_s = 0.0
            out.append(Request(start, exec_s, row["groupId"], row.get("predict_status") or ""))
    out.sort(key=lambda r: r.start_s)
    return out


def sessionize(requests: Iterable[Request], gap_s: float = GAP_S) -> list[Session]:
    """Group each user's requests into sessions (rule in the module docstring).

    Args:
        requests: Requests in any order.
        gap_s: Idle gap threshold in seconds, from the latest end so far to the next start.

    Returns:
        Sessions in the requests' time base (seconds), sorted by ``(connect_s, user_id)``.
    """
    by_user: dict[str, list[Request]] = {}
    for r in requests:
        by_user.setdefault(r.user_id, []).append(r)
    out: list[Session] = []
    for user, reqs in by_user.items():
        reqs.sort(key=lambda r: r.start_s)
        start = reqs[0].start_s
        end = reqs[0].end_s
        for r in reqs[1:]:
            if r.start_s - end < gap_s:
                end = max(end, r.end_s)
            else:
                out.append(Session(user, start, max(end, start + MIN_SESSION_S)))
                start, end = r.start_s, r.end_s
        out.append(Session(user, start, max(end, start + MIN_SESSION_S)))
    out.sort(key=lambda s: (s.connect_s, s.user_id))
    return out


def busiest_window(sessions: Sequence[Session], length_s: float = DAY_S) -> tuple[float, float]:
    """The span ``[start, start + length_s)`` holding the most session connects.

    ``start`` is taken at a connect time (an optimal window can always be shifted there);
    ties go to the earliest.  ``sessions`` must be sorted by ``connect_s``.

    Returns:
        ``(start_s, end_s)`` in the sessions' time base.
    """
    if not sessions:
        return (0.0, length_s)
    starts = [s.connect_s for s in sessions]
    best_i, best_n = 0, -1
    for i, t in enumerate(starts):
        n = bisect.bisect_left(starts, t + length_s) - i
        if n > best_n:
            best_i, best_n = i, n
    return (starts[best_i], starts[best_i] + length_s)


def lead_activity_times(rng: random.Random, connect_s: float) -> list[float]:
    """Synthetic lead-up activity before a connect: ``1 + Poisson(LEAD_EXTRA_MEAN)`` times,
    each ``U(LEAD_MIN_S, LEAD_MAX_S)`` seconds before ``connect_s``, sorted."""
    mean = LEAD_EXTRA_MEAN
    limit, k, prod = math.exp(-mean), 0, rng.random()  # Knuth's Poisson sampler
    while prod > limit:
        k += 1
        prod *= rng.random()
    return sorted(connect_s - rng.uniform(LEAD_MIN_S, LEAD_MAX_S) for _ in range(1 + k))


def build_workload(
    seed: int = 1,
    window: Window = None,
    lead_activity: bool = True,
    gap_s: float = GAP_S,
    path: Path | str | None = None,
) -> Workload:
    """Build the ``trace`` scenario.

    Args:
        seed: Seed of the synthetic lead-up activity (the sessions are the data's).
        window: ``None`` for the whole trace, ``"busiest-day"``, or ``(start_s, end_s)``
            seconds relative to the first request: sessions whose connect is in the window.
        lead_activity: Synthesise lead-up activity before each session.
        gap_s: Session gap threshold, seconds.
        path: Another CSV (``.csv``/``.csv.gz``) instead of the packaged one.

    Returns:
        The workload; times in seconds from the window's start (see module docstring).
    """
    reqs = load_requests(path)
    if not reqs:
        raise ValueError("trace has no requests")
    t0 = reqs[0].start_s
    sessions = [
        Session(s.user_id, s.connect_s - t0, s.disconnect_s - t0) for s in sessionize(reqs, gap_s)
    ]
    rng = random.Random(f"trace:{seed}")
    leads = [lead_activity_times(rng, s.connect_s) if lead_activity else [] for s in sessions]
    if window is None:
        lo, hi = 0.0, math.inf
    elif window == "busiest-day":
        lo, hi = busiest_window(sessions)
    elif isinstance(window, tuple):
        lo, hi = float(window[0]), float(window[1])
    else:
        raise ValueError(f"unknown window {window!r}")
    picked = [(s, lead) for s, lead in zip(sessions, leads, strict=True) if lo <= s.connect_s < hi]
    if window is not None and picked:
        base = picked[0][0].connect_s if window == "busiest-day" else lo
    else:
        base = 0.0
    events: list[Event] = []
    for s, lead in picked:
        events.extend(Event(t - base, "activity", s.user_id) for t in lead if t - base >= 0)
        events.append(Event(s.connect_s - base, "connect", s.user_id))
        events.append(Event(s.disconnect_s - base, "disconnect", s.user_id))
    events = sort_events(events)
    duration = events[-1].t_s if events else 0.0
    if window == "busiest-day":
        duration = max(duration, DAY_S)
    elif isinstance(window, tuple):
        duration = max(duration, hi - lo)
    return Workload(
        name="trace",
        seed=seed,
        events=events,
        duration_s=duration,
        boot=BOOT,
        user_class={},
        params={
            "window": window,
            "window_start_s": lo,
            "lead_activity": lead_activity,
            "gap_s": gap_s,
            "source": str(path) if path is not None else DATA_FILE,
        },
    )


def summary(workload: Workload) -> dict[str, float]:
    """Counts of a trace workload: sessions, users, days, activity events."""
    sess = workload.sessions()
    return {
        "sessions": len(sess),
        "users": len({s.user_id for s in sess}),
        "days": workload.duration_s / DAY_S,
        "activity": workload.count("activity"),
    }
