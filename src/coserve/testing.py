"""Testing support: a mock clock, and waiting until every other task is blocked.

``MockClock`` replaces the kernel's clock with virtual time::

    clock = MockClock(autojump_threshold=0)
    coserve.run(main, clock=clock)   # sleeps and timeouts take no real time

With ``autojump_threshold=0`` the clock jumps to the next deadline as soon as
every task is blocked, so a test of a 30-second timeout runs in microseconds
and in a fixed order. A positive threshold jumps after that many real seconds
of idleness; the default (infinity) only moves when :meth:`MockClock.jump` is
called.
"""

from __future__ import annotations

import math

from . import _kernel
from ._errors import CoserveError

__all__ = ["MockClock", "wait_all_tasks_blocked"]


class MockClock:
    """Virtual time for the kernel; pass it as ``run(main, clock=...)``."""

    def __init__(self, start: float = 0.0, autojump_threshold: float = math.inf) -> None:
        if not autojump_threshold >= 0:
            raise ValueError(f"autojump_threshold must be >= 0, not {autojump_threshold!r}")
        self._now = float(start)
        #: Real seconds of idleness after which the clock jumps to the next deadline.
        self.autojump_threshold = autojump_threshold

    def __repr__(self) -> str:
        return f"<coserve.testing.MockClock t={self._now}>"

    def time(self) -> float:
        """The virtual time now."""
        return self._now

    def jump(self, seconds: float) -> None:
        """Move virtual time forward by *seconds*."""
        if not seconds >= 0:
            raise ValueError(f"time only moves forward; cannot jump by {seconds!r}")
        self._now += seconds

    # The kernel's side.
    def _real_timeout(self, max_wait: float | None) -> float | None:
        t = None if math.isinf(self.autojump_threshold) else self.autojump_threshold
        if max_wait is not None and (t is None or max_wait < t):
            return max_wait
        return t

    def _autojump(self, delay: float) -> None:
        if not math.isinf(self.autojump_threshold):
            self._now += delay


async def wait_all_tasks_blocked() -> None:
    """Return once every other task is parked and no I/O is ready (trio's ``wait_all_tasks_blocked``).

    Use it instead of ``sleep`` to let other tasks run as far as they can.
    """
    k = _kernel._K
    if k is None or k._current is None:
        raise CoserveError("wait_all_tasks_blocked() must be awaited inside a coserve task")
    k._pending_io += 1
    try:
        await k._idle_waiters.wait("waiting")
    finally:
        k._pending_io -= 1
