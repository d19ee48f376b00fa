"""One wall-clock deadline per verify_math call, checked cheaply inside parsing and judging.

The sympy worker is bounded by killing its process; the in-process path (our parser, exact and
mpmath arithmetic, interval and list matching) runs in the caller's thread, which nothing can
kill. So every loop and recursion there calls ``check_time()`` (one clock read), and every single
step between two checks is kept small by size guards (bits of an exact value, root index, digits
of a literal), so a call overruns its deadline by at most one such step (milliseconds).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

_CLOCK = threading.local()


class Overtime(Exception):
    """The call's time budget ran out while parsing or judging in-process (verdict: timeout)."""


def check_time():
    """Raise Overtime once the deadline set by ``deadline()`` has passed (no-op without one)."""
    end = getattr(_CLOCK, "end", None)
    if end is not None and time.perf_counter() > end:
        raise Overtime("the time budget ran out while parsing or judging in-process")


@contextmanager
def deadline(end: float):
    """Within the block, check_time() raises after ``end`` (a time.perf_counter() value).

    Per thread; nested blocks keep the earlier deadline.
    """
    prior = getattr(_CLOCK, "end", None)
    _CLOCK.end = end if prior is None else min(prior, end)
    try:
        yield
    finally:
        _CLOCK.end = prior
