"""Work from outside the scheduler: blocking calls in threads, and callback APIs.

Both park the task on a :class:`~coserve._kernel.Completion`, which a worker
thread or a callback settles. A thread wakes the loop through an eventfd that
is opened the first time it is needed. Cancelling the waiting task abandons
the result: the thread cannot be interrupted and runs on, and what it returns
is dropped; ``run()`` waits for the pool's threads before it returns.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import _kernel
from ._errors import Cancelled, CoserveError
from ._kernel import Completion, suspend

__all__ = ["from_callback", "run_in_thread"]

T = TypeVar("T")


def _kernel_in_task(what: str) -> _kernel.Kernel:
    k = _kernel._K
    if k is None or k._current is None:
        raise CoserveError(f"{what} must be awaited inside a coserve task")
    return k


async def run_in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run the blocking ``func(*args)`` in a worker thread; the loop keeps running meanwhile.

    The pool is bounded (``min(32, CPUs + 4)`` threads); more calls queue up.
    Returns what *func* returns, or raises what it raises.
    """
    k = _kernel_in_task("run_in_thread()")
    done = Completion(k)

    def finished(fut: concurrent.futures.Future[T]) -> None:
        if fut.cancelled():
            done.settle_threadsafe(None, Cancelled("the thread pool shut down before the call ran"))
            return
        exc = fut.exception()
        done.settle_threadsafe(None if exc is not None else fut.result(), exc)

    k.executor().submit(func, *args).add_done_callback(finished)
    return await suspend("thread", done)  # type: ignore[no-any-return]


async def from_callback(func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func(*args, callback)`` and wait until *callback* is called (turbo's ``async.task``).

    Returns what the callback was called with: None for no argument, the
    argument itself for one, a tuple for several. The callback may be called
    at once, later from the loop, or from another thread; calling it twice is
    an error. While waiting, the task keeps ``run()`` going.
    """
    k = _kernel_in_task("from_callback()")
    k.ensure_waker()
    done = Completion(k)

    first = threading.Lock()  # taken by the first call, from whichever thread makes it

    def callback(*values: Any) -> None:
        if not first.acquire(blocking=False):
            raise CoserveError(
                f"the callback given to {getattr(func, '__qualname__', func)!r} by from_callback() "
                "was called more than once"
            )
        done.settle_threadsafe(None if not values else values[0] if len(values) == 1 else values)

    func(*args, callback)
    return await suspend("callback", done)
