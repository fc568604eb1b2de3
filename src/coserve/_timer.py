"""Timers: callbacks run by the scheduler after a delay, once or recurring (Copas's ``copas.timer``).

A timer is one entry on the kernel's timer heap, not a task: a hundred
thousand armed timers cost a hundred thousand small lists. A plain callback
runs inside the loop; an ``async def`` callback is spawned as a task each time
the timer fires. A recurring timer re-arms itself *before* its callback runs
(so the callback may cancel it) at the previous due time plus the delay, so it
does not drift; if the loop fell behind it skips ahead rather than firing in a
burst. Its firings never overlap (as in Copas, where a timer is one coroutine):
while an async callback runs, the next firing waits for it to end.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from heapq import heappush
from typing import Any

from . import _kernel
from ._errors import AlreadyArmed
from ._kernel import get_kernel

__all__ = ["Timer", "timer"]

_INF = float("inf")


class Timer:
    """A timer that calls ``callback(timer, params)`` after *delay* seconds.

    *recurring* repeats it every *delay* seconds until :meth:`cancel`;
    *initial_delay* sets the first delay instead. The callback may be an
    ``async def`` function (run as a task). An error in the callback goes to
    the error handler (*error_handler*, or the default one) and does not
    disarm a recurring timer. A timer is
    created disarmed: call :meth:`arm`, or create it with :func:`timer`.
    """

    __slots__ = (
        "_entry",
        "_error_handler",
        "_kernel",
        "_name",
        "callback",
        "delay",
        "initial_delay",
        "params",
        "recurring",
    )

    def __init__(
        self,
        callback: Callable[[Timer, Any], Any],
        delay: float,
        *,
        recurring: bool = False,
        initial_delay: float | None = None,
        params: Any = None,
        name: str | None = None,
        error_handler: Callable[[BaseException, Any, Any], Any] | None = None,
    ) -> None:
        if not callable(callback):
            raise TypeError(f"a timer's callback must be callable, not {callback!r}")
        if not delay >= 0 or (recurring and not delay):
            raise ValueError(f"a timer's delay must be >= 0 (> 0 when recurring), not {delay!r}")
        if initial_delay is not None and not initial_delay >= 0:
            raise ValueError(f"initial_delay must be >= 0, not {initial_delay!r}")
        if error_handler is not None:  # unset otherwise: creating timers is a hot path
            self.error_handler = error_handler
        #: The function called as ``callback(timer, params)``.
        self.callback = callback
        #: Seconds between firings (and before the first, without *initial_delay*).
        self.delay = delay
        #: Whether the timer re-arms itself after firing.
        self.recurring = recurring
        #: The delay before the first firing, if different from *delay*.
        self.initial_delay = initial_delay
        #: The value passed to the callback as its second argument.
        self.params = params
        self._name = name
        # The due time lives in the heap entry; _kernel is set by arm(), and read only when armed.
        self._entry: list[Any] | None = None

    def __repr__(self) -> str:
        return f"<coserve.Timer {self.name!r} {'armed' if self.armed else 'disarmed'}>"

    @property
    def name(self) -> str:
        """The name given, or ``timer-<id>``; used for logs and for the task of an async callback."""
        return self._name or f"timer-{id(self):x}"

    @property
    def error_handler(self) -> Callable[[BaseException, Any, Any], Any] | None:
        """What handles an error in the callback instead of the default handler (None: the default).

        Called as ``error_handler(exc, task, sock)`` (Copas's per-timer ``errorhandler``);
        *task* is the callback's task for an async callback, None for a plain one.
        """
        return getattr(self, "_error_handler", None)

    @error_handler.setter
    def error_handler(self, handler: Callable[[BaseException, Any, Any], Any] | None) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"a timer's error_handler must be callable, not {handler!r}")
        self._error_handler = handler

    @property
    def armed(self) -> bool:
        """True while the timer is waiting to fire."""
        return self._entry is not None

    def arm(self, initial_delay: float | None = None) -> Timer:
        """Start the timer; it first fires after *initial_delay* (or the timer's own, or *delay*).

        Arming an armed timer raises :class:`coserve.AlreadyArmed`. A one-shot
        timer may re-arm itself from its callback. Returns the timer.
        """
        if self._entry is not None:
            raise AlreadyArmed(f"timer {self.name!r} is already armed; cancel() it before arming again")
        if initial_delay is None:
            initial_delay = self.delay if self.initial_delay is None else self.initial_delay
        elif not initial_delay >= 0:
            raise ValueError(f"initial_delay must be >= 0, not {initial_delay!r}")
        k = _kernel._K or get_kernel()
        self._kernel = k
        # The entry calls the plain function _fire(timer): no bound method per arm.
        if initial_delay == _INF:  # no deadline: armed, but it never fires (nor keeps a run going)
            self._entry = [_INF, 0, None, None]
            return self
        entry = self._entry = [k.time() + initial_delay, k._seq(), _fire, self]
        heappush(k._timers, entry)
        return self

    def cancel(self) -> bool:
        """Disarm the timer; False if it was not armed."""
        entry = self._entry
        if entry is None:
            return False
        self._entry = None
        self._kernel.cancel_timer(entry)
        return True


def _fire(t: Timer) -> None:
    k = t._kernel
    fired = t._entry
    t._entry = None
    entry = None
    if t.recurring:
        entry = _rearm(t, k, fired[0] + t.delay)  # type: ignore[index]
    try:
        result = t.callback(t, t.params)
        if result is not None and isinstance(result, Coroutine):
            task = k.spawn(result, (), t.name)
            task._error_handler = t.error_handler
            if entry is not None and t._entry is entry:
                _hold_until_done(t, k, task, entry)
    except Exception as e:
        k.report(e, None, t.error_handler)


def _rearm(t: Timer, k: _kernel.Kernel, due: float) -> list[Any]:
    """Arm *t* for *due*, or, if the loop fell behind, one delay from now (skip, do not burst)."""
    now = k.time()
    if due <= now:
        due = now + t.delay
    if due == _INF:
        entry = t._entry = [_INF, 0, None, None]
    else:
        entry = t._entry = [due, k._seq(), _fire, t]
        heappush(k._timers, entry)
    return entry


def _hold_until_done(t: Timer, k: _kernel.Kernel, task: _kernel.Task[Any], entry: list[Any]) -> None:
    """An async callback of a recurring timer is running: fire again only once it has ended.

    Copas runs a timer's callbacks one after another. The timer stays armed (it can
    be cancelled, which lets the running callback finish and fires no more) but
    its next firing leaves the heap until the callback's task ends; then it is
    due at the planned time, or one delay later if the callback overran it. A
    callback that was cancelled (cancel_all, the end of the run) disarms the timer.
    """
    k.cancel_timer(entry)
    held = t._entry = [entry[0], 0, None, None]  # armed, but not on the heap

    def done(task: _kernel.Task[Any]) -> None:
        if t._entry is not held:  # cancelled, or cancelled and re-armed, meanwhile
            return
        t._entry = None
        if not task.cancelled():
            _rearm(t, k, held[0])

    task._on_done = done


#: Marks the timer-heap entries that are coserve.Timer objects (see Kernel.user_timers).
_fire.user_timer = True  # type: ignore[attr-defined]


def timer(
    callback: Callable[[Timer, Any], Any],
    delay: float,
    *,
    recurring: bool = False,
    initial_delay: float | None = None,
    params: Any = None,
    name: str | None = None,
    error_handler: Callable[[BaseException, Any, Any], Any] | None = None,
) -> Timer:
    """Create a :class:`Timer` and arm it (Copas's ``copas.timer.new``, which arms too)."""
    t = Timer(callback, delay, recurring=recurring, initial_delay=initial_delay, params=params, name=name)
    if error_handler is not None:
        t.error_handler = error_handler
    return t.arm()
