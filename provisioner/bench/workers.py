"""Run a bench's replays, one at a time or on ``--jobs`` worker processes, each with a
private redis-server of its own and pinned to that server's CPU (``bench policy`` and
``bench worlds``).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from typing import Any, TypeVar

from provisioner.bench.errors import BenchError
from provisioner.core.logutil import set_levels
from provisioner.harness import cpus, pin, private_redis, private_servers

__all__ = ["quiet_logs", "run_replays"]

T = TypeVar("T")
R = TypeVar("R")

#: One replay: ``replay_fn(task, redis_url)``; a module-level function, so that it can
#: be sent to a worker process.
ReplayFn = Callable[[T, str], Coroutine[Any, Any, R]]

#: A ``--jobs`` worker's own (url, cpu), taken from the queue at its start (``_worker_init``).
_WORKER: dict[str, Any] = {}
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _worker_init(slots: Any, spare: tuple[str, int | None], bench_pid: int) -> None:
    """Start of a ``--jobs`` worker: take one (url, cpu) slot and pin to that CPU, where
    the slot's private redis-server runs too (``private_servers``); a worker started
    after the slots are gone takes ``spare``. On Linux the worker asks to be killed
    when the bench (``bench_pid``) dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``): a worker
    waiting for work never sees the queue close, as its sibling holds the pipe too, and
    a bench killed with SIGKILL left its workers waiting for ever."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != bench_pid:  # the bench died before the call
            os._exit(1)
    quiet_logs()
    try:
        url, cpu = slots.get(timeout=5.0)
    except queue.Empty:
        url, cpu = spare
    _WORKER["url"] = url
    pin(0, cpu)


def quiet_logs() -> Callable[[], None]:
    """The logs of a bench: warnings and errors, but not the leader's warnings of failed
    API calls, which in a replay are the emulated faults a world draws (each 503 behind
    the client's tries), counted in its scorecard and not news.

    Returns:
        A function that sets the levels back as they were (:func:`set_levels`).
    """
    return set_levels({"provisioner": logging.WARNING, "provisioner.core.leader": logging.ERROR})


def _work(args: tuple[ReplayFn[T, R], T, str]) -> R:
    """One replay in a ``--jobs`` worker (quiet logs, its own event loop), on the
    worker's own Redis if it has one, else on the url it was given."""
    quiet_logs()
    replay_fn, task, url = args
    return asyncio.run(replay_fn(task, _WORKER.get("url") or url))


def _run_pool(
    replay_fn: ReplayFn[T, R], tasks: Sequence[T], slots: list[tuple[str, int | None]],
    done: Callable[[R], None], lost_hint: str,
) -> None:  # fmt: skip
    """Run ``tasks`` on one worker process per slot, handing each result to ``done`` as
    it comes.

    A ``ProcessPoolExecutor`` reports a worker that dies (OOM killer, ``kill -9``) as a
    broken pool, busy or idle; a ``multiprocessing.Pool`` replaced it, lost its replay and
    waited for it for ever, and one killed while idle left the task queue's lock held, so
    even its clean-up hung. On any other way out (an error, SIGTERM, Ctrl-C) the workers
    are killed at once rather than left to finish their replays.

    Raises:
        BenchError: a worker died; the message ends with ``lost_hint`` (how the rows done
            so far are kept).
    """
    free: Any = multiprocessing.Queue()
    for slot in slots:
        free.put(slot)
    ctx = multiprocessing.get_context("fork")  # the workers inherit the loaded scripts
    init = (free, slots[0], os.getpid())
    with ProcessPoolExecutor(len(slots), ctx, _worker_init, init) as workers:
        try:
            futures = [workers.submit(_work, (replay_fn, t, slots[0][0])) for t in tasks]
            for fut in as_completed(futures):
                done(fut.result())
        except BaseException as e:
            # on a broken pool the executor SIGTERMs the other workers, which a replay
            # turns into its own clean-up (the CLI's handler): they must not keep its
            # shutdown waiting
            for proc in multiprocessing.active_children():
                proc.kill()
            if isinstance(e, BrokenProcessPool):
                raise BenchError(f"a --jobs worker process died (killed?); {lost_hint}") from None
            raise


def run_replays(
    replay_fn: ReplayFn[T, R], tasks: Sequence[T], done: Callable[[R], None], *,
    jobs: int, redis_url: str | None, lost_hint: str, pin_cpus: bool = True,
) -> None:  # fmt: skip
    """Run ``replay_fn(task, url)`` for every task, handing each result to ``done`` as
    it comes.

    With ``redis_url`` every replay uses that server (its pools keep them apart);
    without it each of the ``jobs`` slots gets a private redis-server, pinned to a CPU
    of its own unless ``pin_cpus`` is False. With ``jobs`` 1 the replays run in this
    process, pinned to the slot's CPU for the while; else on one worker process per
    slot.

    Raises:
        click.ClickException: ``redis_url`` does not answer, or no redis-server on PATH
            (:mod:`provisioner.harness`).
        BenchError: a worker process died (the message ends with ``lost_hint``).
    """
    with ExitStack() as stack:
        slots: list[tuple[str, int | None]]
        if redis_url:
            slots = [(stack.enter_context(private_redis(redis_url)), None)] * jobs
        else:
            slots = stack.enter_context(private_servers(jobs, pinned=pin_cpus))
        if jobs == 1:
            url, cpu = slots[0]
            before = cpus()
            if pin(0, cpu):
                stack.callback(os.sched_setaffinity, 0, before)
            for task in tasks:
                done(asyncio.run(replay_fn(task, url)))
        elif tasks:
            _run_pool(replay_fn, tasks, slots, done, lost_hint)
