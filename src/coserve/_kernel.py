"""The kernel: one loop, one trap gate, and every wait with its undo.

A coserve task is a native coroutine. When it must wait, it does not call the
kernel: it *yields a trap*, a small tuple whose first item names one of four
requests (``_READ`` fd, ``_WRITE`` fd, ``_SLEEP`` seconds, ``_SUSPEND`` on a
waitable). The kernel looks the number up in a table of ``_trap_*`` methods and
runs it. That gate is the only door between tasks and the kernel; sockets,
locks, queues and timers are ordinary async code built on the four traps.

Invariants, which the rest of the package relies on:

1. A task is in exactly one of these places: the ready queue (``_state`` is
   ``"ready"``), running (``_current``), parked in one wait (``_undo`` is set),
   or done. Spawning schedules a task; it never runs it at once.
2. Every park sets ``task._undo`` (and ``task._undo_arg``): the one function
   that takes the task back out of whatever it waits in (the fd table, the
   timer heap, a wait queue). Cancellation and timeouts call it, then throw
   into the task. Whoever *wakes* a task clears ``_undo`` first; so a task
   that has been woken can no longer be cancelled out of its wait.
3. Cancelling a task that is not parked (it is ready, perhaps because a lock
   was just handed to it) only records the cancellation in ``_pending``; it
   is delivered at the task's next trap. This is what makes hand-off safe: a
   waiter woken with a lock, a permit or a queue item always returns from its
   wait with it, and a cancellation arrives at the next wait instead of
   swallowing the resource.
4. ``_pending_io`` counts the parks that wait on the outside world (an fd, a
   thread, a callback, ``wait_all_tasks_blocked``). Together with the ready
   queue and the live timers it tells whether anything is left to do: a task
   parked on a lock that nobody holds anymore cannot make progress, and
   ``run()`` cancels such tasks once nothing else is left.

epoll registrations persist across waits and are dropped lazily, when an event
arrives that nobody waits for (see ``_poller.py``): a handler that loops on
``receive`` costs one ``recv`` that would block, no ``epoll_ctl``, and its
share of one ``epoll_wait`` per loop iteration.

Timers live in one binary heap of ``[when, seq, func, arg]`` lists. Cancelling
one sets ``func`` to None (O(1)); the heap is rebuilt without the dead entries
when they are the majority, so a server that arms and cancels a timeout per
request does not grow the heap without bound.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import inspect
import itertools
import logging
import os
import threading
import time
import traceback
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, ParamSpec, TypeVar, cast

from ._errors import Cancelled, CoserveError, Deadlock, ForeignAwaitable, ResourceBusy, SocketClosed
from ._poller import IN, OUT, RD_EVENTS, WR_EVENTS, make_poller, set_mask

__all__ = ["Kernel", "Task", "WaitQueue", "current_kernel", "get_kernel"]

logger = logging.getLogger("coserve")
T = TypeVar("T")
P = ParamSpec("P")

# Trap numbers: the index of the handler in Kernel._traps.
_READ, _WRITE, _SLEEP, _SUSPEND = range(4)

# Task states, as status() reports them.
READY = "ready"
RUNNING = "running"
READING = "reading"
WRITING = "writing"
SLEEPING = "sleeping"
WAITING = "waiting"
DONE = "done"


class Sentinel:
    """A named default ("use the object's own setting"): help() and signatures show its name."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


# --- generator-based coroutines that are native ones ---------------------------
#
# The hottest awaitables (sleep, Socket.send, Socket.receive_partial and the traps below) are
# written as generators that yield the trap themselves: an ``async def`` would need a second
# frame to reach a ``yield``. ``types.coroutine`` makes such a generator awaitable, but it stays a
# generator, and a generator that is never started is dropped silently: a forgotten ``await``
# sent nothing, slept not at all, and said nothing. A native coroutine warns ("coroutine ... was
# never awaited", a RuntimeWarning): CPython checks, when it finalizes the object, whether its
# frame ever started, and that check is made for every generator anyway, so it costs nothing.
#
# So native_coroutine() gives the generator's code the coroutine flag: calling the function
# then makes a real coroutine object, which behaves as an ``async def`` one does (await, send,
# throw, close, the unawaited warning, inspect.iscoroutinefunction and help() showing it as
# async), while its body still yields the trap directly. The bytecode of a generator and a
# coroutine differ only in what the flags tell the interpreter at run time, which is why this
# works; a probe at import checks that it does, and falls back to types.coroutine (no warning,
# same speed) on an interpreter where it would not.


def _as_native(func: Callable[..., Any]) -> Callable[..., Any]:
    code = func.__code__
    flags = (code.co_flags & ~inspect.CO_GENERATOR) | inspect.CO_COROUTINE
    # A new function object, not an assignment to __code__ (3.13 deprecates changing a function's kind).
    native = types.FunctionType(
        code.replace(co_flags=flags), func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    native.__kwdefaults__ = func.__kwdefaults__
    native.__qualname__ = func.__qualname__
    native.__module__ = func.__module__
    native.__doc__ = func.__doc__
    native.__annotations__ = func.__annotations__
    native.__dict__.update(func.__dict__)
    return native


def _native_works() -> bool:
    def probe() -> Generator[int, int, int]:
        return (yield 1) + 1

    try:
        coro = _as_native(probe)()
        if type(coro) is not types.CoroutineType or coro.send(None) != 1:
            return False
        coro.send(1)
    except StopIteration as e:
        return bool(e.value == 2)
    except Exception:  # pragma: no cover - an interpreter without this layout
        pass
    return False  # pragma: no cover


_NATIVE = _native_works()


def native_coroutine(func: Callable[P, Generator[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Make a generator function that yields traps create native coroutines (see above).

    ``@native_coroutine`` replaces ``@types.coroutine`` on coserve's generator-based
    awaitables, so that one that is never awaited warns as an ``async def`` does.
    """
    if _NATIVE:
        return cast("Callable[P, Coroutine[Any, Any, T]]", _as_native(func))
    return cast("Callable[P, Coroutine[Any, Any, T]]", types.coroutine(func))  # pragma: no cover


# --- traps: the only way a task talks to the kernel -------------------------


@native_coroutine
def wait_readable(fd: int, timeout: float | None = None) -> Generator[Any, Any, None]:
    """Park the current task until *fd* is readable (or has an error or hang-up).

    With *timeout*, raise :class:`TimeoutError` if that takes longer (the
    per-operation socket timeouts; cheaper than a timeout scope per wait).
    """
    yield (_READ, fd, timeout)


@native_coroutine
def wait_writable(fd: int, timeout: float | None = None) -> Generator[Any, Any, None]:
    """Park the current task until *fd* is writable (or has an error or hang-up); see wait_readable."""
    yield (_WRITE, fd, timeout)


@native_coroutine
def suspend(state: str, waitable: Any, arg: Any = None) -> Generator[Any, Any, Any]:
    """Park on *waitable*: the kernel calls ``waitable._park(task, arg)``, which must set the undo.

    Returns the value the task is woken with.
    """
    return (yield (_SUSPEND, state, waitable, arg))


# --- tasks ------------------------------------------------------------------


class Task(Generic[T]):
    """A coroutine run by the scheduler. Create tasks with :func:`coserve.spawn`.

    ``await task`` waits for it to end and returns its result or raises its
    exception; any number of tasks may await the same task. ``Task[T]`` is
    the task of a coroutine returning T, so ``await task`` is typed T.
    """

    __slots__ = (
        "_coro", "_error_handler", "_exception", "_io_timer", "_joiners", "_name", "_on_done", "_pending",
        "_result",
        "_scopes", "_sock", "_state", "_throw", "_undo", "_undo_arg", "_value", "_watched", "id",
    )  # fmt: skip

    # Set later, before they are read (Task.__init__ sets only what is read first: it is a hot path).
    _exception: BaseException | None
    _result: T
    _undo_arg: Any

    def __init__(self, coro: Coroutine[Any, Any, T], name: str | None, tid: int) -> None:
        self._coro: Coroutine[Any, Any, T] | None = coro
        self._name = name
        #: A number unique among the tasks of one run.
        self.id = tid
        self._state = READY
        self._value: Any = None
        self._throw: BaseException | None = None
        self._undo: Callable[[Any], None] | None = None
        self._io_timer: list[Any] | None = None  # the timeout entry of a timed fd wait
        self._pending: BaseException | None = None
        self._scopes: list[Any] | None = None
        self._joiners: list[Task[Any]] | None = None
        self._on_done: Callable[[Task[Any]], None] | None = None
        self._watched = False
        self._sock: Any = None
        self._error_handler: Callable[..., Any] | None = None

    #: What :meth:`try_get` reports (Copas's ``future.PENDING``, ``SUCCESS`` and ``ERROR``).
    PENDING = "pending"
    SUCCESS = "success"
    ERROR = "error"

    @property
    def name(self) -> str:
        """The name given to :func:`coserve.spawn`, or ``task-<id>``; settable (Copas's ``setthreadname``)."""
        return self._name or f"task-{self.id}"

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a task's name is a str, not {value!r}")
        self._name = value

    def try_get(self) -> tuple[str, Any]:
        """The outcome so far, without waiting (Copas's ``future:try()``).

        ``(Task.PENDING, None)`` while the task runs, ``(Task.SUCCESS, result)``
        once it returned, ``(Task.ERROR, exception)`` once it raised or was
        cancelled (the exception is then a :class:`coserve.Cancelled`).
        """
        if self._state is not DONE:
            return (Task.PENDING, None)
        if self._exception is not None:
            return (Task.ERROR, self._exception)
        return (Task.SUCCESS, self._result)

    @property
    def state(self) -> str:
        """What the task is doing: ready, running, reading, writing, sleeping, waiting, ... or done."""
        return self._state

    def __repr__(self) -> str:
        return f"<coserve.Task {self.name!r} {self._state}>"

    def done(self) -> bool:
        """True once the task has ended, by returning, raising or being cancelled."""
        return self._state is DONE

    def cancelled(self) -> bool:
        """True if the task ended with :class:`coserve.Cancelled`."""
        return self._state is DONE and isinstance(self._exception, Cancelled)

    def cancel(self) -> bool:
        """Ask the task to stop: :class:`coserve.Cancelled` is raised at the wait it is in.

        If it is not waiting (it is ready to run, or it is the caller), the
        cancellation is delivered at its next wait. Returns False if the task
        had already ended.
        """
        if self._state is DONE:
            return False
        exc = Cancelled()
        exc._task = self
        return _K._cancel_task(self, exc)

    def result(self) -> T:
        """The task's return value; raises its exception, or Cancelled, if it ended with one."""
        if self._state is not DONE:
            raise CoserveError(f"task {self.name!r} has not finished; await it first")
        if self._exception is not None:
            if isinstance(self._exception, Cancelled):
                raise Cancelled(f"task {self.name!r} was cancelled")
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        """The exception the task ended with, or None; raises if it has not ended."""
        if self._state is not DONE:
            raise CoserveError(f"task {self.name!r} has not finished; await it first")
        return self._exception

    def __await__(self) -> Generator[Any, Any, T]:
        if self._state is not DONE:
            if self._state is RUNNING:  # only the running task itself can be awaiting it now
                raise Deadlock(
                    f"task {self.name!r} awaited itself, which would wait forever "
                    "(current_task() is not async: call it without await)"
                )
            yield (_SUSPEND, "joining", self, None)
        return self.result()

    # The waitable protocol, for tasks awaiting this one.
    def _park(self, waiter: Task[Any], _arg: Any) -> None:
        if self._state is DONE:
            _K._wake(waiter, None)
            return
        if self._joiners is None:
            self._joiners = []
        self._joiners.append(waiter)
        waiter._undo = self._unjoin
        waiter._undo_arg = waiter

    def _unjoin(self, waiter: Task[Any]) -> None:
        if self._joiners is not None:
            self._joiners.remove(waiter)


# --- wait queues: what every primitive parks on -----------------------------


class WaitQueue:
    """A FIFO of parked tasks, with O(1) removal on cancellation.

    Each park appends a token ``[task, data, queue]``; cancelling empties the token
    instead of searching the deque, and the dead tokens are skipped when the
    queue is woken (and swept when they are most of it).
    """

    __slots__ = ("_live", "_tokens")

    def __init__(self) -> None:
        self._tokens: deque[list[Any]] = deque()
        self._live = 0

    def __len__(self) -> int:
        return self._live

    @native_coroutine
    def wait(self, state: str = WAITING, data: Any = None) -> Generator[Any, Any, Any]:
        """Park the current task here until woken (``await queue.wait()``); returns the wake value."""
        return (yield (_SUSPEND, state, self, data))  # the trap itself: no extra frame per park

    def _park(self, task: Task[Any], data: Any) -> None:
        token = [task, data, self]
        self._tokens.append(token)
        self._live += 1
        task._undo = _remove_token
        task._undo_arg = token

    def peek(self) -> Any:
        """The data the first live waiter parked with (raises IndexError if there is none)."""
        tokens = self._tokens
        while tokens[0][0] is None:
            tokens.popleft()
        return tokens[0][1]

    def wake_one(self, value: Any = None) -> Task[Any] | None:
        """Wake the first waiter with *value*; return it, or None if nobody waits."""
        tokens = self._tokens
        while tokens:
            task: Task[Any] | None = tokens.popleft()[0]
            if task is not None:
                self._live -= 1
                _K._wake(task, value)
                return task
        return None

    def wake_all(self, value: Any = None) -> int:
        """Wake every waiter with *value*; return how many."""
        n = 0
        while self.wake_one(value) is not None:
            n += 1
        return n

    def throw_all(self, exc_factory: Callable[[], BaseException]) -> int:
        """Wake every waiter by raising a fresh ``exc_factory()`` in it; return how many."""
        n = 0
        tokens, self._tokens = self._tokens, deque()
        self._live = 0
        for token in tokens:
            task = token[0]
            if task is not None:
                _K._wake_throw(task, exc_factory())
                n += 1
        return n


def _remove_token(token: list[Any]) -> None:
    """The undo of a WaitQueue park: empty the token (O(1)); sweep when dead tokens dominate."""
    token[0] = None
    queue = token[2]
    queue._live -= 1
    tokens = queue._tokens
    if len(tokens) > 64 and len(tokens) > 2 * queue._live:
        queue._tokens = deque(t for t in tokens if t[0] is not None)


class _Forever:
    """The waitable of sleep_forever(): nothing but an undo."""

    @staticmethod
    def _park(task: Task[Any], _arg: Any) -> None:
        task._undo = _noop
        task._undo_arg = None


def _noop(_arg: Any) -> None:
    pass


FOREVER = _Forever()


class Completion:
    """A one-shot wake-up for one task, which may be triggered from any thread.

    Used for results that come from outside the scheduler: a worker thread
    (run_in_thread) or a callback (from_callback). While the task waits it
    counts as outside work, which keeps ``run()`` going.
    """

    __slots__ = ("_exc", "_kernel", "_task", "_value", "done")

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel
        self._task: Task[Any] | None = None
        self._value: Any = None
        self._exc: BaseException | None = None
        self.done = False

    def _park(self, task: Task[Any], _arg: Any) -> None:
        if self.done:
            if self._exc is not None:
                self._kernel._wake_throw(task, self._exc)
            else:
                self._kernel._wake(task, self._value)
            return
        self._task = task
        task._undo = self._abandon
        task._undo_arg = None
        self._kernel._pending_io += 1

    def _abandon(self, _arg: Any) -> None:
        self._task = None
        self._kernel._pending_io -= 1

    def settle(self, value: Any = None, exc: BaseException | None = None) -> None:
        """Deliver the outcome (in the scheduler's thread). A second call is an error."""
        if self.done:
            raise CoserveError("this result was already delivered: a callback was called more than once")
        self.done = True
        self._value, self._exc = value, exc
        task = self._task
        if task is not None:
            self._task = None
            self._kernel._pending_io -= 1
            if exc is not None:
                self._kernel._wake_throw(task, exc)
            else:
                self._kernel._wake(task, value)

    def settle_threadsafe(self, value: Any = None, exc: BaseException | None = None) -> None:
        """:meth:`settle` from any thread."""
        k = self._kernel
        if threading.get_ident() == k._thread_id:
            self.settle(value, exc)
        else:
            k.call_threadsafe(self._settle_pair, (value, exc))

    def _settle_pair(self, pair: tuple[Any, BaseException | None]) -> None:
        if not self.done:
            self.settle(*pair)


# --- the kernel ---------------------------------------------------------------


def _closed_behind_our_back() -> BaseException:
    return SocketClosed("the socket this task waited on was closed directly, behind coserve's back")


def describe(task: Task[Any] | None, sock: Any = None) -> str:
    """Where an error happened, for reports: ``task 'name' (socket 'name')``, or a timer callback."""
    where = f"task {task.name!r}" if task is not None else "a timer callback"
    name = getattr(sock, "name", None)
    return f"{where} (socket {name!r})" if name is not None else where


def format_traceback(exc: BaseException, task: Task[Any] | None = None, sock: Any = None) -> str:
    """The report of an uncaught error as text (Copas's ``gettraceback``), for custom error handlers.

    The first line says where it happened (the task's and the socket's names),
    then comes the exception's traceback, as :func:`traceback.format_exception` gives it.
    """
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"uncaught error in {describe(task, sock)}\n{''.join(lines)}"


def _default_error_handler(exc: BaseException, task: Task[Any] | None, sock: Any) -> None:
    logger.error("uncaught error in %s", describe(task, sock), exc_info=(type(exc), exc, exc.__traceback__))


#: The handler for errors no task catches; set_error_handler(..., default=True) replaces it.
error_handler: Callable[[BaseException, Task[Any] | None, Any], Any] = _default_error_handler


class Kernel:
    """The scheduler: ready queue, timer heap, poller and the trap handlers.

    There is one kernel at a time (see :func:`get_kernel`); ``run()`` creates
    it on demand and discards it at the end, so each run starts clean.
    (coserve.asyncore makes more, one for each other thread that runs an
    ``asyncore.loop()``; they serve that thread's dispatchers and no task.)
    """

    def __init__(self, clock: Any = None, poller: str | None = None) -> None:
        self._ready: deque[Task[Any]] = deque()
        self._timers: list[list[Any]] = []
        self._ntimers_dead = 0
        self._grace: list[Any] | None = None  # exit(grace)'s timer: it does not keep the run going
        self._weak_timers = 0  # live heap entries that do not count as work (the grace timer)
        self._seq = itertools.count().__next__
        self._ids = itertools.count(1).__next__
        self._fds: dict[int, list[Any]] = {}  # fd -> [reader, writer, registered mask]
        self._poller = make_poller(poller)
        self._pending_io = 0
        self._tasks: dict[Task[Any], None] = {}  # insertion-ordered: shutdown goes in spawn order
        self._current: Task[Any] | None = None
        self._clock = clock
        self.time: Callable[[], float] = clock.time if clock is not None else time.monotonic
        self._traps = (self._trap_read, self._trap_write, self._trap_sleep, self._trap_suspend)
        # Bound once: a wait stores one of these as its undo, and allocating a bound method per
        # wait shows up in the benchmarks.
        self._undo_read_b = self._undo_read
        self._undo_write_b = self._undo_write
        self._cancel_timer_b = self.cancel_timer
        self._wake_sleeper_b = self._wake_sleeper
        self._fd_timeout_b = self._fd_timeout
        self._threadsafe: deque[tuple[Callable[[Any], Any], Any]] = deque()
        self._thread_id = threading.get_ident()  # the thread that runs it (run() and step() set it)
        self._wake_fd = -1
        self._signal_fd = -1  # the signal wake-up socket (see _signals), when signals are handled
        self._signals: Any = None
        #: The signal (SIGINT, SIGTERM) that made run() shut down, if one did.
        self.shutdown_signal: int | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.thread_limit = min(32, (os.cpu_count() or 1) + 4)
        self.exiting = False
        self._exit_waiters = WaitQueue()
        self._idle_waiters = WaitQueue()
        self.servers: dict[Any, Callable[[], Any]] = {}  # server -> its close(); sockets layer fills it
        self._stats: list[float] | None = None  # steps, total, min, max since the last status(stats=True)
        self._stats_ever = [float("inf"), 0.0]  # the shortest and longest step since measuring began
        self._stats_start = 0.0
        self.running = False
        self.errors_reported = 0
        #: Tasks cancelled at the end of the run because nothing could ever wake them (a deadlock).
        self.stranded = 0
        #: Tasks for which waiting when the run ends is normal (idle queue workers): no warning.
        self.idle_ok: set[Task[Any]] = set()
        self._wind_down_rounds = 0
        self._closed = False
        self._at_close: list[Callable[[], Any]] = []  # at_close(): run when the run ends
        # Readiness for fds that are not tasks' (coserve.asyncore's dispatchers): see hook_factory.
        self._hook = hook_factory(self) if hook_factory is not None else None

    # -- waking and cancelling ------------------------------------------------

    def _wake(self, task: Task[Any], value: Any) -> None:
        task._undo = None
        task._value = value
        task._state = READY
        self._ready.append(task)

    def _wake_throw(self, task: Task[Any], exc: BaseException) -> None:
        task._undo = None
        task._throw = exc
        task._state = READY
        self._ready.append(task)

    def _cancel_task(self, task: Task[Any], exc: BaseException) -> bool:
        """Deliver *exc* (a Cancelled) at the wait *task* is parked in, or at its next one."""
        if task._state is DONE:
            return False
        undo = task._undo
        if undo is not None:
            task._undo = None
            undo(task._undo_arg)
            self._wake_throw(task, exc)
        elif task._throw is None and _not_started(task._coro):
            # Never run (it is in the ready queue, first in line to start): throwing into a coroutine
            # that has not started ends it at once, so none of its body runs (Copas's removethread,
            # asyncio's and trio's cancel). Delivered at its next wait instead, the body would run up
            # to its first await.
            task._throw = exc
        else:
            pending = task._pending
            if pending is None or _depth(exc) < _depth(pending):
                task._pending = exc
        return True

    # -- traps ------------------------------------------------------------------

    def _trap_read(self, task: Task[Any], trap: tuple[Any, ...]) -> None:
        self._wait_fd(task, trap[1], 0, IN, READING, trap[2])

    def _trap_write(self, task: Task[Any], trap: tuple[Any, ...]) -> None:
        self._wait_fd(task, trap[1], 1, OUT, WRITING, trap[2])

    def _wait_fd(
        self, task: Task[Any], fd: int, slot: int, bit: int, state: str, timeout: float | None
    ) -> None:
        entry = self._fds.get(fd)
        try:
            if entry is None:
                self._poller.register(fd, bit)
                entry = self._fds[fd] = [None, None, bit]
            elif entry[slot] is not None:
                other = entry[slot]
                raise ResourceBusy(
                    f"task {other.name!r} is already waiting to {'read' if slot == 0 else 'write'} "
                    f"fd {fd}; two tasks cannot wait for the same socket in the same direction"
                )
            elif not entry[2] & bit:
                set_mask(self._poller, fd, entry[2] | bit, registered=True)
                entry[2] |= bit
        except (OSError, ValueError, ResourceBusy) as e:
            self._wake_throw(task, e)
            return
        entry[slot] = task
        task._state = state
        task._undo = self._undo_read_b if slot == 0 else self._undo_write_b
        task._undo_arg = fd
        self._pending_io += 1
        if timeout is not None:
            task._io_timer = self.call_at(self.time() + timeout, self._fd_timeout_b, task)

    def _fd_timeout(self, task: Task[Any]) -> None:
        task._io_timer = None
        undo = task._undo
        if undo is not None:
            task._undo = None
            undo(task._undo_arg)
            self._wake_throw(task, TimeoutError("timed out waiting for the socket"))

    def _undo_read(self, fd: int) -> None:
        self._undo_fd(fd, 0)

    def _undo_write(self, fd: int) -> None:
        self._undo_fd(fd, 1)

    def _undo_fd(self, fd: int, slot: int) -> None:
        entry = self._fds[fd]
        task = entry[slot]
        entry[slot] = None
        self._pending_io -= 1
        if task._io_timer is not None:
            self.cancel_timer(task._io_timer)
            task._io_timer = None

    def _trap_sleep(self, task: Task[Any], trap: tuple[Any, ...]) -> None:
        seconds = trap[1]
        if seconds <= 0:
            task._state = READY
            self._ready.append(task)
            return
        task._state = SLEEPING
        if seconds == _INF:  # no deadline: sleep_forever(), which does not keep the run going
            task._undo = _noop
            task._undo_arg = None
            return
        entry = [self.time() + seconds, self._seq(), self._wake_sleeper_b, task]
        heapq.heappush(self._timers, entry)
        task._undo = self._cancel_timer_b
        task._undo_arg = entry

    def _wake_sleeper(self, task: Task[Any]) -> None:
        task._undo = None
        task._state = READY
        self._ready.append(task)

    def _trap_suspend(self, task: Task[Any], trap: tuple[Any, ...]) -> None:
        task._state = trap[1]
        trap[2]._park(task, trap[3])

    def _trap_foreign(self, task: Task[Any], trap: Any) -> None:
        self._wake_throw(
            task,
            ForeignAwaitable(
                f"task {task.name!r} awaited {trap!r}, which is not a coserve operation. coserve tasks "
                "can only await coserve's own functions and objects; an asyncio or trio object needs its "
                "own event loop (run that code with coserve.run_in_thread(asyncio.run, ...))"
            ),
        )

    # -- file descriptors -------------------------------------------------------------

    def forget_fd(self, fd: int, exc_factory: Callable[[], BaseException] | None = None) -> None:
        """Drop *fd* from the poller before it is closed; wake its waiters with ``exc_factory()``.

        Every fd the kernel has waited on must be forgotten before it is closed:
        registrations persist across waits, and epoll silently drops a closed
        fd, so the kernel would otherwise believe a reused number is registered
        (asyncio's ``remove_reader`` and trio's ``notify_closing`` have the same rule).
        """
        entry = self._fds.pop(fd, None)
        if entry is None:
            return
        for task in entry[:2]:
            if task is not None:
                self._pending_io -= 1
                if task._io_timer is not None:
                    self.cancel_timer(task._io_timer)
                    task._io_timer = None
                self._wake_throw(task, exc_factory() if exc_factory else OSError(f"fd {fd} was closed"))
        try:
            self._poller.unregister(fd)
        except (OSError, ValueError):
            pass

    def claim_fd(self, fd: int) -> None:
        """A socket object now stands behind *fd*: make sure the kernel's belief about it is true.

        The kernel believes an fd it has waited on is registered with the poller.
        If the file behind that number was closed without :meth:`forget_fd` (a raw
        socket closed behind a ``Socket``'s back, a listening socket closed after
        ``remove_server(keep_open=True)``), epoll dropped the registration silently,
        and a new file that got the same number would never wake its waiter. So
        whoever adopts an fd calls this: a registration nobody waits on is dropped
        (the next wait registers anew); one with waiters is probed (an epoll modify
        fails with ENOENT exactly when it belonged to a closed file), and the
        waiters of a closed file are woken with :class:`coserve.SocketClosed`.
        """
        entry = self._fds.get(fd)
        if entry is None:
            return
        if entry[0] is None and entry[1] is None:
            del self._fds[fd]
            try:
                self._poller.unregister(fd)
            except (OSError, ValueError):
                pass
            return
        if self._poller.stale(fd, entry[2]):
            self.forget_fd(fd, _closed_behind_our_back)

    # -- timers -----------------------------------------------------------------

    def call_at(self, when: float, func: Callable[[Any], Any], arg: Any = None) -> list[Any]:
        """Call ``func(arg)`` from the loop at kernel time *when*; returns the entry to cancel.

        An infinite *when* is no deadline: the entry is returned already dead and
        never fires (nor keeps the run going).
        """
        if when == _INF:
            return [when, 0, None, None]
        entry = [when, self._seq(), func, arg]
        heapq.heappush(self._timers, entry)
        return entry

    def cancel_timer(self, entry: list[Any]) -> None:
        """Cancel a timer entry from :meth:`call_at` (a no-op if it fired or was cancelled)."""
        if entry[2] is not None:
            entry[2] = None
            entry[3] = None
            self._ntimers_dead += 1
            timers = self._timers
            if self._ntimers_dead > 256 and 2 * self._ntimers_dead > len(timers):
                timers[:] = [e for e in timers if e[2] is not None]
                heapq.heapify(timers)
                self._ntimers_dead = 0

    def user_timers(self) -> list[Any]:
        """The armed coserve.Timer objects (found on the heap: arming one costs no registry)."""
        return [e[3] for e in self._timers if getattr(e[2], "user_timer", False)]

    def active_timers(self) -> int:
        """How many timer-heap entries are still to fire."""
        return len(self._timers) - self._ntimers_dead

    # -- threads ------------------------------------------------------------------

    def call_threadsafe(self, func: Callable[[Any], Any], arg: Any = None) -> None:
        """From any thread: have the loop call ``func(arg)`` soon."""
        self._threadsafe.append((func, arg))
        fd = self._wake_fd
        if fd >= 0:
            try:
                os.eventfd_write(fd, 1) if _HAVE_EVENTFD else os.write(self._wake_w, b"\0")
            except OSError:  # pragma: no cover - closing down
                pass

    def ensure_waker(self) -> None:
        """Open the fd other threads use to wake the poller (once, on first use)."""
        if self._wake_fd >= 0:
            return
        if _HAVE_EVENTFD:
            self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - non-Linux
            self._wake_fd, self._wake_w = os.pipe()
            os.set_blocking(self._wake_fd, False)
            os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_fd, IN)

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The bounded pool run_in_thread uses (created on first use)."""
        if self._executor is None:
            self.ensure_waker()
            self._executor = concurrent.futures.ThreadPoolExecutor(self.thread_limit, "coserve-worker")
        return self._executor

    def _run_threadsafe(self) -> None:
        q = self._threadsafe
        while q:
            func, arg = q.popleft()
            func(arg)

    def _drain_waker(self) -> None:
        try:
            if _HAVE_EVENTFD:
                os.eventfd_read(self._wake_fd)
            else:  # pragma: no cover
                os.read(self._wake_fd, 4096)
        except BlockingIOError:
            pass

    # -- the loop -------------------------------------------------------------------

    def has_work(self) -> bool:
        """True while something can still make progress: ready tasks, I/O or thread waits, timers."""
        return bool(
            self._ready
            or self._pending_io
            or len(self._timers) > self._ntimers_dead + self._weak_timers
            or self._threadsafe
            or (self._hook is not None and self._hook.alive())
        )

    def iterate(self, max_wait: float | None) -> bool:
        """One pass: poll (at most *max_wait*, None = until something is due), fire timers, run tasks.

        Returns True if any task ran or timer fired.
        """
        ready = self._ready
        timers = self._timers
        delay = None
        if ready or self._threadsafe:
            timeout: float | None = 0
        else:
            timeout = max_wait
            while timers and timers[0][2] is None:
                heapq.heappop(timers)
                self._ntimers_dead -= 1
            if timers:
                delay = timers[0][0] - self.time()
                if delay < 0:
                    delay = 0
                if timeout is None or delay < timeout:
                    timeout = delay
            if self._idle_waiters._live:
                timeout = 0
        if self._hook is not None:
            limit = self._hook.before_poll()  # how long its channels let the poll wait (None: no bound)
            if limit is not None and (timeout is None or limit < timeout):
                timeout = limit
        if timeout is not None and timeout > MAX_WAIT:
            timeout = MAX_WAIT  # a far deadline: wake early, the next pass computes the rest
        clock = self._clock
        jump = clock is not None and timeout != 0
        if jump:
            timeout = clock._real_timeout(max_wait)
        events = self._poller.poll(timeout)
        stats = self._stats
        if stats is not None:  # a step's duration is its work, not its wait in the poll (as Copas's)
            t0 = time.perf_counter()
        if events:
            self._dispatch_io(events)
        elif jump and delay is not None:
            clock._autojump(delay)
        elif self._idle_waiters._live and not ready:
            self._idle_waiters.wake_all()
        if self._threadsafe:
            self._run_threadsafe()
        fired = False
        if timers and timers[0][0] <= self.time():
            fired = self._fire_timers()
        ran = bool(ready)
        if ran:
            self._run_ready()
        if stats is not None:
            dt = time.perf_counter() - t0
            stats[0] += 1
            stats[1] += dt
            stats[2] = min(stats[2], dt)
            stats[3] = max(stats[3], dt)
        return ran or fired

    def _dispatch_io(self, events: list[tuple[int, int]]) -> None:
        fds = self._fds
        ready = self._ready
        woken = 0
        channel_events = None
        owned = self._hook.owned if self._hook is not None else ()
        for fd, ev in events:
            entry = fds.get(fd)
            if entry is None:
                if fd == self._wake_fd:
                    self._drain_waker()
                elif fd == self._signal_fd:
                    self._signals.drain()
                elif fd in owned:
                    if channel_events is None:
                        channel_events = []
                    channel_events.append((fd, ev))
                else:  # registered, then forgotten while the event was in flight
                    try:
                        self._poller.unregister(fd)
                    except (OSError, ValueError):
                        pass
                continue
            stale = 0
            # The two directions are written out (not looped over): this is the hottest loop.
            if ev & RD_EVENTS:
                task = entry[0]
                if task is not None:
                    entry[0] = None
                    task._undo = None
                    task._state = READY
                    ready.append(task)
                    woken += 1
                    if task._io_timer is not None:
                        self.cancel_timer(task._io_timer)
                        task._io_timer = None
                elif entry[2] & IN:
                    stale = IN
            if ev & WR_EVENTS:
                task = entry[1]
                if task is not None:
                    entry[1] = None
                    task._undo = None
                    task._state = READY
                    ready.append(task)
                    woken += 1
                    if task._io_timer is not None:
                        self.cancel_timer(task._io_timer)
                        task._io_timer = None
                elif entry[2] & OUT:
                    stale |= OUT
            if stale:
                self._drop_interest(fd, entry, stale)
        self._pending_io -= woken
        if channel_events is not None:
            self._hook.dispatch(channel_events)  # type: ignore[union-attr]

    def _drop_interest(self, fd: int, entry: list[Any], stale: int) -> None:
        """An event came for a direction nobody waits for: stop asking for it."""
        mask = entry[2] & ~stale
        try:
            if mask:
                self._poller.modify(fd, mask)
                entry[2] = mask
                return
            self._poller.unregister(fd)
        except (OSError, ValueError):
            pass
        del self._fds[fd]

    def _fire_timers(self) -> bool:
        timers = self._timers
        now = self.time()
        fired = False
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            func = entry[2]
            if func is None:
                self._ntimers_dead -= 1
                continue
            entry[2] = None
            fired = True
            func(entry[3])
        return fired

    def _run_ready(self, count: int = 0) -> None:
        """Run each task that is ready now once (or only the first *count*: debug mode times each)."""
        ready = self._ready
        traps = self._traps
        popleft = ready.popleft
        append = ready.append
        foreign = self._trap_foreign
        for _ in range(count or len(ready)):
            task = popleft()
            self._current = task
            task._state = RUNNING
            try:
                exc = task._throw
                if exc is None:
                    trap = task._coro.send(task._value)  # type: ignore[union-attr]
                else:
                    task._throw = None
                    trap = task._coro.throw(exc)  # type: ignore[union-attr]
            except StopIteration as e:
                self._finish(task, e.value, None)
            except BaseException as e:
                # The traceback's first entry is this frame, whose locals hold the task: drop it,
                # or every failed task would sit in a reference cycle until the cyclic GC runs
                # (and users would see a kernel frame on top of their own).
                e.__traceback__ = e.__traceback__.tb_next if e.__traceback__ else None
                self._finish(task, None, e)
                del e
            else:
                task._value = None
                if task._pending is None:
                    try:
                        handler = traps[trap[0]]
                    except Exception:
                        handler = foreign
                    handler(task, trap)
                else:
                    # A cancellation arrived while the task was running or ready: deliver it
                    # here, at its next wait, instead of starting the wait.
                    task._throw = task._pending
                    task._pending = None
                    task._state = READY
                    append(task)
        self._current = None

    def _finish(self, task: Task[Any], result: Any, exc: BaseException | None) -> None:
        self._current = None
        task._state = DONE
        task._result = result
        task._exception = exc
        task._coro = None
        task._pending = None
        task._undo_arg = None  # a sleep's heap entry refers back to the task: no cycle left behind
        self._tasks.pop(task, None)
        joiners = task._joiners
        if joiners:
            task._joiners = None
            for t in joiners:
                self._wake(t, None)
        if task._on_done is not None:
            task._on_done(task)
        if exc is not None:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise exc
            if not (joiners or task._watched or isinstance(exc, Cancelled)):
                # Nobody is waiting for this task: its error is uncaught now (Copas calls the
                # error handler when the coroutine dies). Awaiting it later still raises it.
                self.report(exc, task)

    def report(
        self, exc: BaseException, task: Task[Any] | None, handler: Callable[..., Any] | None = None
    ) -> None:
        """Hand an error nobody caught to *handler*, or the task's own error handler, or the default."""
        self.errors_reported += 1
        handler = handler or (task._error_handler if task is not None else None) or error_handler
        try:
            handler(exc, task, task._sock if task is not None else None)
        except Exception:
            logger.exception("the error handler itself failed while handling %r", exc)

    # -- tasks ------------------------------------------------------------------

    def spawn(self, func: Any, args: tuple[Any, ...], name: str | None) -> Task[Any]:
        """Create a task for ``func(*args)`` and put it at the back of the ready queue."""
        if self._closed:
            raise CoserveError("this scheduler has finished; spawn from a new run()")
        coro = func(*args) if callable(func) else func
        if type(coro) is not types.CoroutineType:  # the fast path is an 'async def' coroutine
            coro = _check_coroutine(func, coro)
        task = Task(coro, name, self._ids())
        self._tasks[task] = None
        self._ready.append(task)
        return task

    # -- shutting down ------------------------------------------------------------

    def begin_exit(self, grace: float | None = None) -> None:
        """exit(): servers stop accepting and wait_for_exit() returns, in every task.

        With *grace*, the tasks still running *grace* seconds later are cancelled
        (:meth:`cancel_all`). The grace timer is no work of its own: a run whose
        tasks end sooner returns at once. A later, shorter grace wins.
        """
        self.exiting = True
        if grace is not None:
            when = self.time() + grace
            if self._grace is None or when < self._grace[0]:
                if self._grace is not None:
                    self.cancel_timer(self._grace)
                    self._weak_timers -= 1
                self._grace = self.call_at(when, self._grace_over, grace)
                self._weak_timers += 1
        self._close_servers()
        self._exit_waiters.wake_all()

    def _grace_over(self, grace: float) -> None:
        self._grace = None
        self._weak_timers -= 1
        if self._tasks and grace:  # grace 0 asked for the cancellation: nothing to warn about
            logger.warning(
                "%d task(s) still running %g s after exit(); cancelling them", len(self._tasks), grace
            )
        self.cancel_all()

    def _close_servers(self) -> None:
        for close in list(self.servers.values()):
            try:
                close()
            except Exception as e:  # pragma: no cover - defensive
                self.report(e, None)
        self.servers.clear()

    def cancel_all(self) -> None:
        """Cancel every task and timer and close every server."""
        self.exiting = True
        self._close_servers()
        for t in self.user_timers():
            t.cancel()
        if self._hook is not None:
            self._hook.cancel_all()  # dispatchers: closed, so that run() returns promptly
        for task in list(self._tasks):
            self._cancel_task(task, Cancelled("cancelled by cancel_all()"))

    def run_until_done(self) -> None:
        """Iterate until nothing is left to do, then wind down (see :meth:`wind_down`)."""
        while True:
            if self.has_work():
                self.iterate(None)
            elif self.wind_down():
                return

    def wind_down(self) -> bool:
        """Called when nothing can make progress; True once the run is over.

        First it does what exit() does (servers close, wait_for_exit() returns),
        and the run goes on with whatever that woke. Tasks still parked after
        that wait for something that cannot happen: they are cancelled so that
        they clean up. A task that ignores three cancellations is closed.
        """
        if not self.exiting or len(self._exit_waiters):
            self.begin_exit()
            return False
        if not self._tasks:
            return True
        self._wind_down_rounds += 1
        if self._wind_down_rounds > 3:
            for task in list(self._tasks):
                logger.error("task %r ignored its cancellation; closing it", task.name)
                self._close_task(task)
            return True
        tasks = list(self._tasks)
        stuck = [t for t in tasks if t not in self.idle_ok]
        if self._wind_down_rounds == 1 and stuck:
            # Nothing can wake them: a lock nobody releases, a semaphore nobody gives, an event nobody
            # sets. Usually a bug (a deadlock), so say so, with where each one waits.
            self.stranded = len(stuck)
            more = len(stuck) - _LIST_AT_MOST
            logger.warning(
                "the run has nothing left that could wake %d task(s); cancelling them:\n%s%s",
                len(stuck),
                "\n".join(f"  {t.name!r} {t._state} at {_where(t)}" for t in stuck[:_LIST_AT_MOST]),
                f"\n  ... and {more} more" if more > 0 else "",
            )
        for task in tasks:
            self._cancel_task(task, Cancelled("nothing left that could wake this task"))
        return False

    def _close_task(self, task: Task[Any]) -> None:
        coro = task._coro
        if coro is not None:
            try:
                coro.close()
            except BaseException:  # a task refusing to close cannot stop the shutdown
                pass
        task._state = DONE
        task._result = None
        task._exception = Cancelled("closed at shutdown")
        task._coro = None
        self._tasks.pop(task, None)

    def at_close(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` when this kernel closes, at the end of its run (after every task ended).

        For resources a library keeps for the length of a run (coserve.http's shared connection
        pool): the callback closes them synchronously, while the kernel can still forget their fds.
        Callbacks run in the order they were added; an error in one is reported, not raised.
        """
        if self._closed:
            raise CoserveError("at_close() on a kernel that has already closed")
        self._at_close.append(callback)

    def close(self) -> None:
        """Release the poller, the wake-up fd and the worker threads; close unfinished coroutines."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            self._close_task(task)
        callbacks, self._at_close = self._at_close, []
        for callback in callbacks:
            try:
                callback()
            except Exception as e:
                self.report(e, None)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._run_threadsafe()
        if self._hook is not None:
            self._hook.close()
        if self._signals is not None:
            self._signals.close()
            self._signals = None
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            if not _HAVE_EVENTFD:  # pragma: no cover
                os.close(self._wake_w)
            self._wake_fd = -1
        self._poller.close()

    # -- introspection --------------------------------------------------------------

    def status(self, stats: bool = False) -> dict[str, Any]:
        """Counts of tasks by state, timers and servers, with Copas's keys too; see :func:`coserve.status`."""
        counts: dict[str, int] = {}
        timed_sleepers = 0
        for task in self._tasks:
            state = task._state
            counts[state] = counts.get(state, 0) + 1
            if state is SLEEPING and task._undo is self._cancel_timer_b:
                timed_sleepers += 1
        user_timers = len(self.user_timers())
        states = (READY, RUNNING, READING, WRITING, SLEEPING, WAITING)
        ready, running = counts.get(READY, 0), counts.get(RUNNING, 0)
        reading, writing = counts.get(READING, 0), counts.get(WRITING, 0)
        out: dict[str, Any] = {
            "tasks": len(self._tasks),
            **{s: counts.get(s, 0) for s in states},
            **{s: n for s, n in counts.items() if s not in states},
            "timers": user_timers,
            "servers": len(self.servers),
            "exiting": self.exiting,
            # Copas's keys (copas.status()). "running" is Copas's flag: True while the scheduler
            # runs, so it is also 1 when called from a task, as the count of running tasks was.
            "running": self.running,
            "read": reading,
            "write": writing,
            "active": ready,
            "timer": timed_sleepers,
            "inactive": len(self._tasks) - ready - running - reading - writing - timed_sleepers,
            "timeout": max(
                0, self.active_timers() - timed_sleepers - user_timers - (1 if self._grace is not None else 0)
            ),
        }
        if stats:
            out.update(self._take_stats())
        return out

    def _take_stats(self) -> dict[str, Any]:
        """The loop's timing since the previous call (and "ever"), then start measuring anew."""
        now = self.time()
        st = self._stats
        n = int(st[0]) if st is not None else 0
        total, low, high = (st[1], st[2], st[3]) if st is not None and n else (0.0, 0.0, 0.0)
        ever = self._stats_ever
        if n:
            ever[0] = min(ever[0], low)
            ever[1] = max(ever[1], high)
        start = self._stats_start if st is not None else now
        self._stats = [0, 0.0, float("inf"), 0.0]
        self._stats_start = now
        return {
            "stats": {
                "steps": n,
                "step_time_min": low,
                "step_time_avg": total / n if n else 0.0,
                "step_time_max": high,
            },
            # Copas's fields, in seconds (Copas: milliseconds) and on the kernel's clock.
            "steps": n,
            "duration_tot": total,
            "duration_min": low,
            "duration_max": high,
            "duration_avg": total / n if n else 0.0,
            "duration_min_ever": ever[0] if ever[0] != float("inf") else 0.0,
            "duration_max_ever": ever[1],
            "time_start": start,
            "time_end": now,
            "time_avg": (now - start) / n if n else 0.0,
        }


def idle_status(stats: bool = False) -> dict[str, Any]:
    """What :meth:`Kernel.status` says of a scheduler with nothing in it (status() outside a run)."""
    out: dict[str, Any] = {
        "tasks": 0,
        **dict.fromkeys((READY, RUNNING, READING, WRITING, SLEEPING, WAITING), 0),
    }
    out.update(timers=0, servers=0, exiting=False, running=False, read=0, write=0, active=0, timer=0)
    out.update(inactive=0, timeout=0)
    if stats:
        zero = dict.fromkeys(("duration_tot", "duration_min", "duration_max", "duration_avg"), 0.0)
        zero.update(duration_min_ever=0.0, duration_max_ever=0.0, time_start=0.0, time_end=0.0, time_avg=0.0)
        out.update(zero, steps=0)
        out["stats"] = {"steps": 0, "step_time_min": 0.0, "step_time_avg": 0.0, "step_time_max": 0.0}
    return out


_HAVE_EVENTFD = hasattr(os, "eventfd")
_INF = float("inf")
#: The longest single wait in the poller, in seconds. epoll_wait takes a C int of milliseconds
#: (about 24.8 days at most); a later deadline is reached through several waits.
MAX_WAIT = 86400.0

#: Set by coserve.asyncore (through :func:`install_hook`): ``hook_factory(kernel)`` makes the object
#: that serves readiness for fds the kernel does not own (dispatchers). The kernel asks it
#: ``alive()`` (does it keep the run going), ``before_poll()`` (apply registration changes; returns
#: the longest the poll may wait, 0 for not at all, or None for no bound of its own), its ``owned``
#: fds (a mapping), ``dispatch([(fd, events)])``, ``cancel_all()`` and ``close()``.
hook_factory: Callable[[Kernel], Any] | None = None


def install_hook(factory: Callable[[Kernel], Any]) -> None:
    """Give every kernel a hook from now on, including the one that already exists.

    The kernel may have been made before the module providing the hook was
    imported (a task spawned, a timer armed, then ``import coserve.asyncore``):
    import order must not matter.
    """
    global hook_factory
    with _create_lock:
        hook_factory = factory
        k = _K
        if k is not None and k._hook is None and not k._closed:
            k._hook = factory(k)


def _depth(exc: BaseException) -> int:
    """How deep the timeout scope behind a Cancelled is; -1 (outermost) for a plain cancel."""
    scope = getattr(exc, "_scope", None)
    return -1 if scope is None else scope._depth


_LIST_AT_MOST = 20  # tasks named in one warning


def _where(task: Task[Any]) -> str:
    """Where a parked task waits: the coserve call it is in, and the line of the task's own code."""
    frames = []
    obj: Any = task._coro
    while obj is not None:
        f = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if f is not None:
            frames.append(f)
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
    if not frames:
        return "?"
    here = os.path.dirname(__file__)
    mine = [i for i, f in enumerate(frames) if os.path.dirname(f.f_code.co_filename) != here]
    caller = frames[mine[-1]] if mine else frames[-1]
    where = f"{caller.f_code.co_qualname} ({caller.f_code.co_filename}:{caller.f_lineno})"
    if mine and mine[-1] + 1 < len(frames):
        return f"{frames[mine[-1] + 1].f_code.co_qualname}, called from {where}"
    return where


def _not_started(coro: Any) -> bool:
    """True if *coro* (a coroutine, or a ``@types.coroutine`` generator) has not begun to run."""
    if type(coro) is types.CoroutineType:
        return coro.cr_frame is not None and not coro.cr_running and not coro.cr_suspended
    if type(coro) is types.GeneratorType:
        return coro.gi_frame is not None and not coro.gi_running and not coro.gi_suspended
    return False  # another Coroutine implementation: cancelled at its first wait, as before


def _check_coroutine(func: Any, coro: Any) -> Coroutine[Any, Any, Any]:
    if isinstance(coro, Coroutine):
        return coro
    if isinstance(coro, types.GeneratorType) and coro.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE:
        return coro  # type: ignore[return-value]  # a @types.coroutine generator, like coserve.sleep
    what = getattr(func, "__qualname__", repr(func))
    if isinstance(coro, Generator):
        raise TypeError(f"spawn() got a generator from {what}; coserve tasks are 'async def' functions")
    raise TypeError(
        f"spawn() needs an async function or a coroutine, but {what} returned {type(coro).__name__} "
        "(did you forget 'async def'?)"
    )


# --- the one kernel -----------------------------------------------------------------

_K: Kernel = None  # type: ignore[assignment]
_create_lock = threading.Lock()  # two threads making the kernel at once must end up with one


def current_kernel() -> Kernel | None:
    """The kernel of the run in progress (or being prepared), or None."""
    return _K


def get_kernel(clock: Any = None) -> Kernel:
    """The current kernel, created on first use (tasks spawned before run() wait in it)."""
    global _K
    if _K is None:
        with _create_lock:
            if _K is None:
                _K = Kernel(clock)
    return _K


def drop_kernel(kernel: Kernel) -> None:
    """Close *kernel* and forget it, so the next use starts from a clean state."""
    global _K
    try:
        kernel.close()
    finally:
        if _K is kernel:
            _K = None  # type: ignore[assignment]
