"""The benches' error: a bench cannot go on, and its message is for the person who ran
it (the command line prints it as ``Error: <message>``, exit status 1)."""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(Exception):
    """A bench cannot go on: a worker or replica died, or a saved results file does not
    hold what it should.  The message says what happened and what to do."""
