"""Signals: delivered to the loop, never into the middle of a task.

A Python signal handler runs in the main thread between two bytecodes,
wherever the program happens to be. coserve's handler only queues the signal
for the loop (``Kernel.call_threadsafe``); the loop then calls what was
registered for it, as it calls a timer's callback. ``signal.set_wakeup_fd``
makes the poll return however the signal arrives: the C-level handler writes
the signal's number to a socket the poller watches, so a signal that lands
just before ``epoll_wait`` (or in another thread) cannot leave the loop
asleep. That socket is internal: it keeps no run going.

``run()`` in the main thread turns SIGINT and SIGTERM, when the program left
them to Python's defaults, into a clean shutdown: what ``exit()`` does
(servers close, :func:`~coserve.wait_for_exit` returns), then every task is
cancelled so its ``finally`` blocks run; ``run()`` then raises
``KeyboardInterrupt`` (SIGINT) or ``SystemExit(128 + SIGTERM)``. A second
SIGINT while that runs raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from . import _kernel
from ._errors import CoserveError
from ._kernel import WAITING, Kernel, WaitQueue
from ._poller import IN

__all__ = ["SignalReceiver", "on_signal", "open_signal_receiver"]

logger = logging.getLogger("coserve")

#: The exit status a shell reports for a process ended by a signal: 128 + its number.
SIGNAL_EXIT_BASE = 128

_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Hub:
    """One kernel's signal handling: its wake-up socket, the handlers it replaced, the callbacks."""

    def __init__(self, k: Kernel) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise CoserveError(
                "signals can only be received by a scheduler running in the main thread "
                "(Python runs signal handlers there only)"
            )
        self._kernel = k
        self._callbacks: dict[int, list[Callable[[int], Any]]] = {}
        self._previous: dict[int, Any] = {}
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._previous_wakeup = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        k._signal_fd = self._r.fileno()
        k._poller.register(k._signal_fd, IN)
        self._handler_b = self._handler

    def _handler(self, signum: int, frame: Any) -> None:
        # Runs between two bytecodes of whatever the main thread was doing: only queue it.
        k = self._kernel
        if (
            signum == signal.SIGINT
            and k.shutdown_signal is not None
            and self._callbacks.get(signum) == [_shutdown]
        ):
            raise KeyboardInterrupt  # a second Ctrl-C while shutting down: stop now
        k.call_threadsafe(self._deliver, signum)

    def _deliver(self, signum: int) -> None:
        for callback in list(self._callbacks.get(signum, ())):
            try:
                callback(signum)
            except Exception as e:
                self._kernel.report(e, None)

    def add(self, signum: int, callback: Callable[[int], Any]) -> None:
        callbacks = self._callbacks.setdefault(signum, [])
        if signum not in self._previous:
            self._previous[signum] = signal.signal(signum, self._handler_b)
        callbacks.append(callback)

    def remove(self, signum: int, callback: Callable[[int], Any]) -> None:
        callbacks = self._callbacks.get(signum)
        if callbacks and callback in callbacks:
            callbacks.remove(callback)

    def has_callbacks(self, signum: int) -> bool:
        return bool(self._callbacks.get(signum))

    def drain(self) -> None:
        """The poller saw the wake-up socket: empty it (the handlers themselves queued the work)."""
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        """Give back the handlers and the wake-up fd this kernel replaced; close its socket."""
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, OSError):  # pragma: no cover - not the main thread any more
                pass
        self._previous.clear()
        self._callbacks.clear()
        try:
            signal.set_wakeup_fd(self._previous_wakeup)
        except ValueError:  # pragma: no cover - not the main thread any more
            pass
        k = self._kernel
        try:
            k._poller.unregister(self._r.fileno())
        except (OSError, ValueError, KeyError):  # pragma: no cover - the poller closed first
            pass
        k._signal_fd = -1
        self._r.close()
        self._w.close()


def _hub(k: Kernel) -> _Hub:
    hub = k._signals
    if hub is None:
        hub = k._signals = _Hub(k)
    assert isinstance(hub, _Hub)
    return hub


def _check_signal(signum: Any) -> int:
    if isinstance(signum, bool) or not isinstance(signum, int):
        raise TypeError(f"a signal is a number such as signal.SIGINT, not {signum!r}")
    if signum in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"{signal.Signals(signum).name} cannot be caught")
    valid = signal.valid_signals()
    if signum not in valid:
        raise ValueError(f"{signum!r} is not a signal of this system")
    return int(signum)


def on_signal(signum: int, callback: Callable[[int], Any]) -> Callable[[], None]:
    """Call ``callback(signum)`` from the loop each time the process receives *signum*.

    Returns a function that removes the callback. While a callback is set for
    SIGINT or SIGTERM, :func:`coserve.run` leaves that signal to it instead of
    shutting down. Errors of the callback go to the error handler. A callback
    does not keep the run going. Only a scheduler in the main thread can
    receive signals (:class:`coserve.CoserveError` otherwise). The previous
    handlers are restored when the run ends.
    """
    signum = _check_signal(signum)
    if not callable(callback):
        raise TypeError(f"on_signal() needs a callable, not {callback!r}")
    hub = _hub(_kernel.get_kernel())
    hub.add(signum, callback)
    return lambda: hub.remove(signum, callback)


class SignalReceiver:
    """The signals received since the block began, in order: ``async for signum in receiver``.

    A task waiting for the next signal keeps the run going.
    """

    def __init__(self, signals: tuple[int, ...]) -> None:
        self._signals = signals
        self._received: deque[int] = deque()
        self._waiters = WaitQueue()
        self._removers: list[Callable[[], None]] = []
        self._closed = False

    async def __aenter__(self) -> SignalReceiver:
        for signum in self._signals:
            self._removers.append(on_signal(signum, self._received_one))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        for remove in self._removers:
            remove()
        self._removers.clear()

    def _received_one(self, signum: int) -> None:
        self._received.append(signum)
        self._waiters.wake_one()

    def __aiter__(self) -> AsyncIterator[int]:
        return self

    async def __anext__(self) -> int:
        if self._closed:
            raise StopAsyncIteration
        k = _kernel.get_kernel()
        while not self._received:
            k._pending_io += 1  # a signal can come from outside: this wait keeps the run going
            try:
                await self._waiters.wait(WAITING)
            finally:
                k._pending_io -= 1
        return self._received.popleft()


def open_signal_receiver(*signals: int) -> SignalReceiver:
    """Receive *signals* in a task, as trio's ``open_signal_receiver`` does.

    ::

        async with coserve.open_signal_receiver(signal.SIGHUP) as received:
            async for signum in received:
                reload_config()

    Inside the block those signals are taken from their previous handlers.
    """
    if not signals:
        raise TypeError("open_signal_receiver() needs at least one signal")
    return SignalReceiver(tuple(_check_signal(s) for s in signals))


def install_shutdown(k: Kernel) -> None:
    """For run() in the main thread: SIGINT and SIGTERM left to Python's defaults shut down cleanly."""
    if threading.current_thread() is not threading.main_thread():
        return
    hub = None
    for signum in _SHUTDOWN_SIGNALS:
        current = signal.getsignal(signum)
        if current not in (signal.default_int_handler, signal.SIG_DFL):
            continue  # the program (or a test runner) handles it: leave it alone
        if k._signals is not None and _hub(k).has_callbacks(signum):
            continue
        hub = hub or _hub(k)
        hub.add(signum, _shutdown)


def _shutdown(signum: int) -> None:
    k = _kernel._K
    if k is None or k.shutdown_signal is not None:
        return
    k.shutdown_signal = signum
    logger.info("received %s: shutting down", signal.Signals(signum).name)
    k.begin_exit(0.0)  # servers close, wait_for_exit() returns; then every task is cancelled


def raise_for_signal(signum: int) -> None:
    """After a shutdown by *signum*: what run() raises (as Python would have ended)."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(SIGNAL_EXIT_BASE + signum)
