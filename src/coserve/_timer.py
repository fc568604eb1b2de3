"""Timers: callbacks run by the scheduler after a delay, once or recurring (Copas's ``copas.timer``).

A timer is one entry on the kernel's timer heap, not a task: a hundred
thousand armed timers cost a hundred thousand small lists. A plain callback
runs inside the loop; an ``async def`` callback is spawned as a task each time
the timer fires. A recurring timer re-arms itself *before* its callback runs
(so the callback may cancel it) at the previous due time plus the delay, so it
does not drift; if the loop fell behind it skips ahead rather than firing in a
burst.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._errors import AlreadyArmed
from ._kernel import Kernel, get_kernel

__all__ = ["Timer", "timer"]


class Timer:
    """A timer that calls ``callback(timer, params)`` after *delay* seconds.

    *recurring* repeats it every *delay* seconds until :meth:`cancel`;
    *initial_delay* sets the first delay instead. The callback may be an
    ``async def`` function (run as a task). An error in the callback goes to
    the error handler and does not disarm a recurring timer. A timer is
    created disarmed: call :meth:`arm`, or create it with :func:`timer`.
    """

    __slots__ = (
        "_due",
        "_entry",
        "_kernel",
        "callback",
        "delay",
        "initial_delay",
        "name",
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
    ) -> None:
        if not callable(callback):
            raise TypeError(f"a timer's callback must be callable, not {callback!r}")
        if not delay >= 0 or (recurring and delay == 0):
            raise ValueError(f"a timer's delay must be >= 0 (> 0 when recurring), not {delay!r}")
        if initial_delay is not None and not initial_delay >= 0:
            raise ValueError(f"initial_delay must be >= 0, not {initial_delay!r}")
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
        #: A name for logs and errors.
        self.name = name or f"timer-{id(self):x}"
        self._entry: list[Any] | None = None
        self._kernel: Kernel | None = None
        self._due = 0.0

    def __repr__(self) -> str:
        return f"<coserve.Timer {self.name!r} {'armed' if self.armed else 'disarmed'}>"

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
            initial_delay = self.initial_delay if self.initial_delay is not None else self.delay
        elif not initial_delay >= 0:
            raise ValueError(f"initial_delay must be >= 0, not {initial_delay!r}")
        k = get_kernel()
        self._kernel = k
        self._schedule(k, k.time() + initial_delay)
        return self

    def _schedule(self, k: Kernel, due: float) -> None:
        self._due = due
        self._entry = k.call_at(due, self._fire)
        k.timers.add(self)

    def cancel(self) -> bool:
        """Disarm the timer; False if it was not armed."""
        entry = self._entry
        if entry is None:
            return False
        self._entry = None
        k = self._kernel
        assert k is not None
        k.cancel_timer(entry)
        k.timers.discard(self)
        return True

    def _fire(self, _arg: Any) -> None:
        k = self._kernel
        assert k is not None
        self._entry = None
        if self.recurring:
            due = self._due + self.delay
            now = k.time()
            if due <= now:
                due = now + self.delay
            self._schedule(k, due)
        else:
            k.timers.discard(self)
        try:
            result = self.callback(self, self.params)
            if hasattr(result, "__await__") and hasattr(result, "send"):
                k.spawn(result, (), self.name)
        except Exception as e:
            k.report(e, None)


def timer(
    callback: Callable[[Timer, Any], Any],
    delay: float,
    *,
    recurring: bool = False,
    initial_delay: float | None = None,
    params: Any = None,
    name: str | None = None,
) -> Timer:
    """Create a :class:`Timer` and arm it."""
    return Timer(
        callback, delay, recurring=recurring, initial_delay=initial_delay, params=params, name=name
    ).arm()
