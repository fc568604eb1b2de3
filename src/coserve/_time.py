"""Sleeping, waking and timeouts.

A timeout is a *scope* on the task's stack of scopes with one entry on the
kernel's timer heap. When the entry fires, the kernel cancels the task with a
:class:`Cancelled` that names the scope; the exception unwinds the task's
code like any cancellation (``except Exception`` cannot swallow it) until it
reaches the scope that set it, whose ``__aexit__`` turns it into
:class:`TimeoutError` (``timeout_after``) or ends the block quietly
(``move_on_after``). A scope that sees another scope's cancellation lets it
pass, which is what makes nesting work: the outer deadline firing inside an
inner block unwinds through the inner block to the outer one.

If the deadline passes while the task is not parked (it was just woken with a
result), the cancellation waits for the task's next wait; and if the task
leaves the block before that, the scope withdraws it. So a block that got its
result in time is never failed after the fact.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from types import TracebackType
from typing import Any

from . import _kernel
from ._errors import Cancelled, CoserveError
from ._kernel import _SLEEP, FOREVER, SLEEPING, Task, native_coroutine, suspend

__all__ = ["TimeoutScope", "gettime", "move_on_after", "sleep", "sleep_forever", "timeout_after", "wakeup"]


def _kernel_in_task(what: str) -> _kernel.Kernel:
    k = _kernel._K
    if k is None or k._current is None:
        raise CoserveError(f"{what} must be used inside a coserve task (spawn() it, or pass it to run())")
    return k


def check_seconds(value: Any, what: str) -> float | None:
    """Validate a duration setting: a real number of seconds >= 0, or None (no limit).

    ``inf`` is no limit too, and comes back as None. Raises :class:`TypeError`
    for a non-number (a string, a bool) and :class:`ValueError` for a negative
    number or NaN, naming *what* was being set.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {value!r}")
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{what} must be a number of seconds >= 0 or None, not {value!r}")
    return None if value == math.inf else float(value)


def gettime() -> float:
    """The kernel's clock, in seconds (monotonic; virtual under a mock clock)."""
    k = _kernel._K
    return k.time() if k is not None else _kernel.time.monotonic()


@native_coroutine
def sleep(seconds: float = 0.0) -> Generator[Any, Any, float]:
    """Sleep for *seconds*, then return the time actually slept.

    ``sleep()`` and ``sleep(0)`` let the other ready tasks run first, and
    return 0.0 (Copas's ``pause()``); a negative delay is 0 too, as in Copas
    and asyncio. :func:`wakeup` ends a sleep early.
    """
    # A generator-based coroutine: it yields the trap itself, saving a coroutine frame per sleep
    # (sleep(0) is how tasks take turns, so this is a hot path).
    k = _kernel._K
    if k is None or k._current is None:
        _kernel_in_task("sleep()")
    if not seconds > 0:  # 0, negative, or NaN
        if seconds != seconds:
            raise ValueError(f"sleep() needs a number of seconds, got {seconds!r}")
        yield _YIELD
        return 0.0
    start = k.time()
    yield (_SLEEP, seconds)
    return k.time() - start


_YIELD = (_SLEEP, 0)


async def sleep_forever() -> float:
    """Sleep until :func:`wakeup` or cancellation; returns the seconds slept (Copas's ``pauseforever``).

    A task sleeping forever does not keep ``run()`` going: once nothing else is
    left to do, such tasks are cancelled.
    """
    k = _kernel_in_task("sleep_forever()")
    start = k.time()
    await suspend(SLEEPING, FOREVER)
    return k.time() - start


def wakeup(task: Task[Any]) -> bool:
    """End *task*'s :func:`sleep` or :func:`sleep_forever` now; False if it was not sleeping."""
    k = _kernel._K
    if k is None or task._state is not SLEEPING or task._undo is None:
        return False
    undo, task._undo = task._undo, None
    undo(task._undo_arg)
    k._wake(task, None)
    return True


class TimeoutScope:
    """The block of :func:`timeout_after` or :func:`move_on_after`; use it with ``async with``."""

    __slots__ = ("_depth", "_entry", "_raise", "_task", "deadline", "expired", "seconds")

    def __init__(self, seconds: float | None, raise_: bool) -> None:
        if seconds is not None and (not isinstance(seconds, (int, float)) or math.isnan(seconds)):
            raise TypeError(f"a timeout is a number of seconds or None, not {seconds!r}")
        #: The timeout given, in seconds (None: no timeout).
        self.seconds = seconds
        self._raise = raise_
        #: True once the deadline passed and interrupted the block.
        self.expired = False
        #: The kernel time at which the block is interrupted (None before entering, or without timeout).
        self.deadline: float | None = None
        self._entry: list[object] | None = None
        self._task: Task[Any] | None = None
        self._depth = 0

    async def __aenter__(self) -> TimeoutScope:
        k = _kernel_in_task("timeout_after()/move_on_after()")
        task = k._current
        assert task is not None
        if task._scopes is None:
            task._scopes = []
        self._depth = len(task._scopes)
        task._scopes.append(self)
        self._task = task
        if self.seconds is not None:
            self.deadline = k.time() + max(self.seconds, 0)
            self._entry = k.call_at(self.deadline, self._fire)
        return self

    def _fire(self, _arg: object) -> None:
        self._entry = None
        exc = Cancelled(f"timed out after {self.seconds}s")
        exc._scope = self
        task = self._task
        assert task is not None
        _kernel._K._cancel_task(task, exc)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool:
        task = self._task
        assert task is not None and task._scopes is not None
        task._scopes.pop()
        if self._entry is not None:
            _kernel._K.cancel_timer(self._entry)
            self._entry = None
        pending = task._pending
        if pending is not None and getattr(pending, "_scope", None) is self:
            task._pending = None  # fired after the block got its result: withdraw it
        if e is not None and isinstance(e, Cancelled) and e._scope is self:
            self.expired = True
            if self._raise:
                raise TimeoutError(f"timed out after {self.seconds}s") from None
            return True
        return False


def timeout_after(seconds: float | None) -> TimeoutScope:
    """An ``async with`` block that raises :class:`TimeoutError` if it runs longer than *seconds*.

    None means no timeout. Blocks nest: whichever deadline passes first
    interrupts, and its own block reports it.
    """
    return TimeoutScope(seconds, True)


def move_on_after(seconds: float | None) -> TimeoutScope:
    """An ``async with`` block that ends quietly after *seconds*; ``.expired`` tells whether it did."""
    return TimeoutScope(seconds, False)
