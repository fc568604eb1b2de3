"""Locks, semaphores, events, conditions and queues (Copas's ``lock``, ``semaphore`` and ``queue``).

All of them park tasks on a kernel :class:`~coserve._kernel.WaitQueue` and
follow one rule: *the resource is handed over before the waiter is woken*. A
released lock already belongs to the first waiter when it wakes; a pushed item
is already that waiter's return value; permits are subtracted before the
wake-up. Since the kernel never cancels a task out of a wait it was already
woken from (a cancellation then waits for the task's next wait), a waiter
cancelled right after it was woken still returns with what it was given, and
nothing is lost or leaked.

Waiting is FIFO everywhere. Timeouts are :func:`coserve.timeout_after` around
the park, so they are cancellation like any other and need no code here.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from . import _kernel
from ._errors import CoserveError, Destroyed, NotOwner, Stopping, TooMany
from ._kernel import WAITING, Sentinel, Task, WaitQueue
from ._time import timeout_after

__all__ = ["Condition", "Event", "Lock", "Queue", "Semaphore"]

_DEFAULT: Any = Sentinel("<its own timeout>")  # the lock's or semaphore's .timeout


def _current(what: str) -> Task[Any]:
    k = _kernel._K
    task = k._current if k is not None else None
    if task is None:
        raise CoserveError(f"{what} must be awaited inside a coserve task")
    return task


async def _park_timed(waiters: WaitQueue, timeout: float, data: Any = None) -> Any:
    """Wait in *waiters* for at most *timeout* seconds (<= 0: fail at once).

    Without a timeout, callers await ``waiters.wait()`` directly: that is the
    common case, and a frame less.
    """
    if timeout <= 0:
        raise TimeoutError("not available, and the timeout is 0")
    async with timeout_after(timeout):
        return await waiters.wait(WAITING, data)


class _AsyncContext:
    async def __aenter__(self) -> Any:
        await self.acquire()  # type: ignore[attr-defined]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()  # type: ignore[attr-defined]


class Lock(_AsyncContext):
    """A FIFO lock with an optional default timeout, re-entrant unless told otherwise.

    ``async with lock:`` acquires and releases it. A re-entrant lock may be
    acquired again by the task holding it and must be released as many times.
    """

    def __init__(self, timeout: float | None = None, reentrant: bool = True) -> None:
        #: The default timeout of :meth:`acquire`, in seconds (None waits forever).
        self.timeout = timeout
        #: Whether the owner may acquire the lock again.
        self.reentrant = reentrant
        self._owner: Task[Any] | None = None
        self._count = 0
        self._waiters = WaitQueue()
        self._destroyed = False

    def __repr__(self) -> str:
        owner = self._owner.name if self._owner else None
        return f"<coserve.Lock owner={owner!r} waiting={len(self._waiters)}>"

    @property
    def owner(self) -> Task[Any] | None:
        """The task holding the lock, or None."""
        return self._owner

    def locked(self) -> bool:
        """True while some task holds the lock."""
        return self._owner is not None

    @property
    def waiting(self) -> int:
        """How many tasks wait for the lock."""
        return len(self._waiters)

    async def acquire(self, timeout: float | None = _DEFAULT) -> float:
        """Wait for the lock and return the seconds waited.

        Raises :class:`TimeoutError` after *timeout* (default: the lock's), and
        :class:`coserve.Destroyed` if the lock is or gets destroyed.
        """
        k = _kernel._K
        task = k._current if k is not None else None
        if task is None:
            _current("Lock.acquire()")
        if self._destroyed:
            raise Destroyed("the lock was destroyed")
        owner = self._owner
        if owner is None:
            self._owner = task
            self._count = 1
            return 0.0
        if owner is task and self.reentrant:
            self._count += 1
            return 0.0
        if timeout is _DEFAULT:
            timeout = self.timeout
        start = k.time()
        if timeout is None:
            await self._waiters.wait(WAITING)
        else:
            await _park_timed(self._waiters, timeout)
        return k.time() - start

    def release(self) -> None:
        """Release the lock (once per acquire); the first waiter gets it. Only the owner may release."""
        if self._destroyed:
            raise Destroyed("the lock was destroyed")
        k = _kernel._K
        task = k._current if k is not None else None
        if self._owner is None or self._owner is not task:
            who = self._owner.name if self._owner else "nobody"
            raise NotOwner(f"this lock is held by {who!r}; only the task holding it may release it")
        self._count -= 1
        if self._count:
            return
        self._owner = self._waiters.wake_one(0.0)
        self._count = 1 if self._owner is not None else 0

    # ``async with lock:`` awaits acquire itself (a frame less than an __aenter__ calling it);
    # like asyncio's, ``async with lock as x`` does not bind the lock (here: the seconds waited).
    __aenter__ = acquire

    def destroy(self) -> None:
        """Destroy the lock: its waiters, and any later use, raise :class:`coserve.Destroyed`."""
        self._destroyed = True
        self._owner = None
        self._count = 0
        self._waiters.throw_all(lambda: Destroyed("the lock was destroyed"))


class Semaphore:
    """A counting semaphore with *max* permits, *start* of them available at first.

    *start* defaults to 0, as in Copas: ``Semaphore(50)`` has no permit until
    one is given; ``Semaphore(50, 50)`` limits to 50 at a time. Waiting is
    strictly FIFO: a task asking for several permits holds back the ones queued
    behind it until its request can be met. ``async with sem:`` takes one
    permit and gives it back.
    """

    def __init__(self, max: int, start: int = 0, timeout: float | None = None) -> None:
        if not isinstance(max, int) or max < 1:
            raise ValueError(f"a semaphore's max must be an int >= 1, not {max!r}")
        if not isinstance(start, int) or not 0 <= start <= max:
            raise ValueError(f"start must be an int from 0 to max ({max}), not {start!r}")
        #: The most permits the semaphore can hold.
        self.max = max
        #: The default timeout of :meth:`take`, in seconds (None waits forever).
        self.timeout = timeout
        self._count = start
        self._waiters = WaitQueue()
        self._destroyed = False

    def __repr__(self) -> str:
        return f"<coserve.Semaphore {self._count}/{self.max} waiting={self.waiting}>"

    @property
    def count(self) -> int:
        """The permits available now."""
        return self._count

    @property
    def waiting(self) -> int:
        """The permits requested by the tasks waiting (Copas's ``get_wait``)."""
        return sum(t[1] for t in self._waiters._tokens if t[0] is not None)

    def _check(self, n: int) -> None:
        if self._destroyed:
            raise Destroyed("the semaphore was destroyed")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"the number of permits must be an int >= 1, not {n!r}")

    async def take(self, n: int = 1, timeout: float | None = _DEFAULT) -> float:
        """Wait for *n* permits and return the seconds waited.

        Asking for more than *max* raises :class:`coserve.TooMany` at once; a
        timeout (default: the semaphore's) raises :class:`TimeoutError` (a
        timeout of 0 fails at once unless the permits are there).
        """
        _current("Semaphore.take()")
        self._check(n)
        if n > self.max:
            raise TooMany(f"asked for {n} permits of a semaphore that holds at most {self.max}")
        if not self._waiters and self._count >= n:
            self._count -= n
            return 0.0
        k = _kernel._K
        start = k.time()
        if timeout is _DEFAULT:
            timeout = self.timeout
        try:
            if timeout is None:
                await self._waiters.wait(WAITING, n)
            else:
                await _park_timed(self._waiters, timeout, n)
        except BaseException:
            self._dispatch()  # this waiter may have been holding back smaller requests behind it
            raise
        return k.time() - start

    def give(self, n: int = 1) -> None:
        """Return *n* permits; waiters are served in order while their requests fit.

        Giving beyond *max* raises :class:`coserve.TooMany` and changes nothing.
        """
        self._check(n)
        if self._count + n > self.max:
            raise TooMany(f"giving {n} would make {self._count + n} permits; the maximum is {self.max}")
        self._count += n
        self._dispatch()

    async def __aenter__(self) -> Semaphore:
        await self.take()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.give()

    def _dispatch(self) -> None:
        waiters = self._waiters
        while waiters:
            need = waiters.peek()
            if need > self._count:
                return
            self._count -= need
            waiters.wake_one(0.0)

    def destroy(self) -> None:
        """Destroy the semaphore: its waiters, and any later use, raise :class:`coserve.Destroyed`."""
        self._destroyed = True
        self._waiters.throw_all(lambda: Destroyed("the semaphore was destroyed"))


class Event:
    """A flag tasks can wait for (as :class:`asyncio.Event`)."""

    def __init__(self) -> None:
        self._set = False
        self._waiters = WaitQueue()

    def __repr__(self) -> str:
        return f"<coserve.Event {'set' if self._set else 'unset'} waiting={len(self._waiters)}>"

    def is_set(self) -> bool:
        """True if the flag is set."""
        return self._set

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._set = True
        self._waiters.wake_all(True)

    def clear(self) -> None:
        """Clear the flag; later :meth:`wait` calls block again."""
        self._set = False

    async def wait(self) -> bool:
        """Wait until the flag is set; returns True."""
        if self._set:
            return True
        _current("Event.wait()")
        woken: bool = await self._waiters.wait(WAITING)  # set() wakes with True
        return woken


class Condition(_AsyncContext):
    """A condition variable (as :class:`asyncio.Condition`) on a coserve :class:`Lock`.

    The lock is a new non-re-entrant one unless given.
    """

    def __init__(self, lock: Lock | None = None) -> None:
        self._lock = lock if lock is not None else Lock(reentrant=False)
        self._waiters = WaitQueue()

    def locked(self) -> bool:
        """True while the underlying lock is held."""
        return self._lock.locked()

    async def acquire(self) -> float:
        """Acquire the underlying lock."""
        return await self._lock.acquire(timeout=None)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def _check_owner(self, what: str) -> Task[Any]:
        task = _current(what)
        if self._lock._owner is not task:
            raise NotOwner(f"{what} needs the condition's lock to be held by the calling task")
        return task

    async def wait(self) -> bool:
        """Release the lock, wait for a notification, and take the lock back; returns True.

        The lock is held again when this returns *or raises*. A task cancelled
        after it was notified passes the notification on to the next waiter.
        """
        self._check_owner("Condition.wait()")
        lock = self._lock
        count = lock._count
        lock._count = 1
        lock.release()
        notified = False
        try:
            await self._waiters.wait(WAITING)
            notified = True
        finally:
            cancelled: BaseException | None = None
            while True:
                try:
                    await lock.acquire(timeout=None)
                    break
                except BaseException as e:  # keep the contract: hold the lock on the way out
                    if isinstance(e, Destroyed):
                        raise
                    cancelled = e
            lock._count = count
            if cancelled is not None:
                if notified:
                    self._waiters.wake_one(True)
                raise cancelled
        return True

    async def wait_for(self, predicate: Callable[[], Any]) -> Any:
        """Wait until ``predicate()`` is true; returns its value."""
        result = predicate()
        while not result:
            await self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to *n* waiters (the lock must be held)."""
        self._check_owner("Condition.notify()")
        for _ in range(n):
            if self._waiters.wake_one(True) is None:
                break

    def notify_all(self) -> None:
        """Wake every waiter (the lock must be held)."""
        self._check_owner("Condition.notify_all()")
        self._waiters.wake_all(True)


class Queue:
    """An unbounded FIFO queue of items (None included), with optional worker tasks.

    :meth:`push` never blocks. :meth:`stop` refuses new items and lets the
    queue drain; :meth:`finish` stops it and waits until it is empty and its
    workers have ended.
    """

    def __init__(self, name: str | None = None) -> None:
        #: A name for the queue's workers and for logs.
        self.name = name or f"queue-{id(self):x}"
        self._items: deque[Any] = deque()
        self._getters = WaitQueue()
        self._drained = WaitQueue()
        self._workers: set[Task[Any]] = set()
        self._stopping = False
        self._destroyed = False
        self._nworkers = 0

    def __repr__(self) -> str:
        return f"<coserve.Queue {self.name!r} size={len(self._items)} workers={len(self._workers)}>"

    @property
    def size(self) -> int:
        """The number of items waiting in the queue."""
        return len(self._items)

    @property
    def workers(self) -> frozenset[Task[Any]]:
        """The worker tasks still running."""
        return frozenset(self._workers)

    def _check(self) -> None:
        if self._destroyed:
            raise Destroyed(f"queue {self.name!r} was destroyed")

    def push(self, item: Any) -> None:
        """Add *item*; a waiting :meth:`pop` gets it at once. Raises :class:`coserve.Stopping` if stopped."""
        self._check()
        if self._stopping:
            raise Stopping(f"queue {self.name!r} is stopping and takes no more items")
        if not self._getters or self._getters.wake_one(item) is None:
            self._items.append(item)

    async def pop(self, timeout: float | None = None) -> Any:
        """Take the next item, waiting at most *timeout* seconds (:class:`TimeoutError`).

        Raises :class:`coserve.Stopping` once the queue is stopped and empty.
        """
        self._check()
        items = self._items
        if items:
            item = items.popleft()
            if not items and self._drained:
                self._drained.wake_all()
            return item
        if self._stopping:
            raise Stopping(f"queue {self.name!r} is stopped and empty")
        _current("Queue.pop()")
        if timeout is None:
            return await self._getters.wait(WAITING)
        return await _park_timed(self._getters, timeout)

    def stop(self) -> None:
        """Take no more items; once empty, :meth:`pop` raises :class:`coserve.Stopping` and workers end."""
        self._check()
        self._stopping = True
        if not self._items:
            self._getters.throw_all(lambda: Stopping(f"queue {self.name!r} is stopped and empty"))

    async def finish(self, timeout: float | None = None) -> None:
        """Stop the queue and wait until it is empty and its workers have ended.

        Raises :class:`TimeoutError` if that takes more than *timeout* seconds
        (the queue stays stopped; :meth:`destroy` discards what is left).
        """
        self.stop()
        async with timeout_after(timeout):
            while self._items:
                await self._drained.wait(WAITING)
            for worker in list(self._workers):
                await worker

    def destroy(self) -> None:
        """Discard the items, cancel the workers; waiters and later calls raise :class:`coserve.Destroyed`."""
        self._destroyed = True
        self._items.clear()
        # Workers first: cancelling undoes an idle worker's wait in pop(), so the
        # Destroyed thrown below reaches only outside callers, never a worker
        # (which would end with an error nobody asked for).
        for worker in list(self._workers):
            worker.cancel()
        self._getters.throw_all(lambda: Destroyed(f"queue {self.name!r} was destroyed"))
        self._drained.throw_all(lambda: Destroyed(f"queue {self.name!r} was destroyed"))

    def add_worker(self, func: Callable[[Any], Any]) -> Task[Any]:
        """Start a task that pops items and calls ``func(item)`` (plain or async) until the queue stops.

        An error raised by *func* goes to the error handler; the worker goes on.
        """
        self._check()
        if not callable(func):
            raise TypeError(f"a queue worker must be callable, not {func!r}")
        k = _kernel.get_kernel()

        async def worker() -> None:
            while True:
                try:
                    item = await self.pop()
                except (Stopping, Destroyed):  # the queue's end, not the worker's error
                    return
                try:
                    result = func(item)
                    if inspect.isawaitable(result):
                        await result
                except Exception as e:
                    k.report(e, k._current)

        self._nworkers += 1
        task = k.spawn(worker, (), f"{self.name}:worker-{self._nworkers}")
        self._workers.add(task)
        k.idle_ok.add(task)  # a worker waiting for items when the run ends is idle, not stuck
        task._on_done = self._worker_done
        return task

    def _worker_done(self, task: Task[Any]) -> None:
        self._workers.discard(task)
        k = _kernel._K
        if k is not None:
            k.idle_ok.discard(task)
