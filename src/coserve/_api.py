"""The scheduler's controls: run, step, exit and friends (Copas's ``loop``, ``step``, ``exit``, ...).

There is one scheduler at a time. Tasks, timers and (later) servers created
before :func:`run` wait in it, Copas-style, and run when it starts. When
:func:`run` returns, the scheduler is closed and forgotten: the next
:func:`run` starts from a clean state.

How a run ends: it goes on while anything can make progress (a ready task, a
task waiting for a socket, a thread or a callback, a sleeping task, an armed
timer, a server). When nothing can, it does what :func:`exit` does (servers
close, :func:`wait_for_exit` returns) and carries on with whatever that woke.
Tasks still parked after that wait for something that cannot happen (a lock
nobody will release, :func:`~coserve.sleep_forever`): they are cancelled, so
their ``finally`` blocks run, and then :func:`run` returns.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, overload

from . import _kernel, _signals, _slowtask
from ._errors import AlreadyRunning, Cancelled, CoserveError
from ._kernel import Kernel, Task, drop_kernel, get_kernel
from ._time import check_seconds

T = TypeVar("T")

__all__ = [
    "at_run_end",
    "cancel_all",
    "current_task",
    "exit",
    "exiting",
    "finished",
    "get_error_handler",
    "is_running",
    "run",
    "set_error_handler",
    "spawn",
    "status",
    "step",
    "wait_for_exit",
]


def _kernel_for_run(clock: Any) -> Kernel:
    k = _kernel._K
    if k is not None and clock is not None and k._clock is not clock:
        if k.active_timers() or k._clock is not None:
            raise CoserveError("run(clock=...) must come before any timer or sleep is scheduled")
        k._clock = clock
        k.time = clock.time
    return get_kernel(clock)


def run(
    main: Any = None,
    *args: Any,
    clock: Any = None,
    debug: bool | None = None,
    slow_task_duration: float = _slowtask.SLOW_TASK_DURATION,
) -> Any:
    """Run ``main(*args)`` as a task, and the scheduler until nothing is left to do.

    Returns main's result or raises its exception. If main fails, everything
    else is cancelled (as by :func:`cancel_all`) before the error is raised; if
    main was cancelled, returns None. Without *main*, runs what was spawned
    before. *clock* replaces the kernel's clock (``coserve.testing.MockClock``).

    *debug* (default: on if the environment has ``COSERVE_DEBUG=1``) logs a
    WARNING naming any task that runs longer than *slow_task_duration* seconds
    without yielding, which stalls every other task (a ``time.sleep``, a
    blocking call). Off, it costs nothing.
    """
    watch = debug if debug is not None else _slowtask.enabled_by_environment()
    limit = _slowtask.check_duration(slow_task_duration)  # before a kernel exists to be left behind
    k = _kernel_for_run(clock)
    if k.running:
        raise AlreadyRunning(
            "run() was called while the scheduler is running; spawn() the work instead (a script run by "
            "the coserve command already runs in a task: run one that calls run() with python)"
        )
    if watch:
        _slowtask.enable(k, limit)
    main_task = None
    if main is not None:
        main_task = k.spawn(main, args, "main")
        main_task._watched = True
        main_task._on_done = _main_done
    k.running = True
    k._thread_id = threading.get_ident()  # the kernel may have been made in another thread
    try:
        _signals.install_shutdown(k)  # SIGINT and SIGTERM: a clean shutdown (main thread only)
        k.run_until_done()
    except BaseException:
        # Ctrl-C, SystemExit from a task, or a bug: let every task unwind before leaving.
        try:
            k.cancel_all()
            k.run_until_done()
        except BaseException:  # the first error is the one to raise
            pass
        raise
    finally:
        k.running = False
        drop_kernel(k)
    if k.shutdown_signal is not None:
        _signals.raise_for_signal(k.shutdown_signal)
    if main_task is None:
        return None
    exc = main_task._exception
    if exc is None:
        return main_task._result
    if isinstance(exc, Cancelled):
        return None
    raise exc


def _main_done(task: Task[Any]) -> None:
    exc = task._exception
    if exc is not None and not isinstance(exc, Cancelled):
        _kernel._K.cancel_all()


def step(timeout: float = 0.0) -> bool:
    """Run one pass of the scheduler, waiting at most *timeout* seconds for I/O or timers.

    For programs with a main loop of their own. Returns True if any task or
    timer ran. Once nothing is left to do, the scheduler winds down as at the
    end of :func:`run` over the next calls, and then :func:`finished` is True.
    """
    if not timeout >= 0:
        raise ValueError(f"step() needs a timeout >= 0, not {timeout!r}")
    k = get_kernel()
    if k.running:
        raise AlreadyRunning("step() was called while the scheduler is running")
    k.running = True
    k._thread_id = threading.get_ident()
    try:
        # With nothing to do, waiting could only end at the timeout (forever, for inf).
        ran = k.iterate(timeout if k.has_work() else 0)
        while not k.has_work():
            if k.wind_down():
                drop_kernel(k)
                break
    except BaseException:
        drop_kernel(k)
        raise
    finally:
        k.running = False
    return ran


def is_running() -> bool:
    """True while :func:`run` or :func:`step` is running the scheduler."""
    k = _kernel._K
    return k is not None and k.running


def finished() -> bool:
    """True when nothing is left to do: no ready or waiting work, no sleeper with a deadline, no timer."""
    k = _kernel._K
    return k is None or not k.has_work()


def exit(grace: float | None = None) -> None:
    """Begin an orderly shutdown: servers stop accepting and :func:`wait_for_exit` returns.

    :func:`run` returns once the remaining tasks have ended. By default (None)
    it waits for them however long they take, as Copas does; with *grace*, the
    tasks still running *grace* seconds after the call are cancelled (as
    :func:`cancel_all` does), so that their ``finally`` blocks run and the run
    ends. A run whose tasks end sooner returns sooner.
    """
    limit = check_seconds(grace, "exit()'s grace")
    k = _kernel._K
    if k is not None:
        k.begin_exit(limit)


def exiting() -> bool:
    """True once :func:`exit` was called (or the run is winding down)."""
    k = _kernel._K
    return k is not None and k.exiting


async def wait_for_exit() -> None:
    """Wait until :func:`exit` is called (returns at once if it was)."""
    k = _kernel._K
    if k is None or k._current is None:
        raise CoserveError("wait_for_exit() must be awaited inside a coserve task")
    if not k.exiting:
        await k._exit_waiters.wait("waiting")


def at_run_end(callback: Callable[[], Any]) -> None:
    """Call ``callback()`` once, when the current run ends (after its last task), before :func:`run` returns.

    For things a library keeps open for the length of a run, such as the idle
    connections of ``coserve.http``'s shared client: the callback closes them
    synchronously. Outside a run it applies to the run being prepared (the one
    the next :func:`run` or :func:`step` drives). Callbacks run in the order
    they were added; an error in one goes to the error handler.
    """
    if not callable(callback):
        raise TypeError(f"at_run_end() needs a callable, not {callback!r}")
    get_kernel().at_close(callback)


def cancel_all() -> None:
    """Cancel every task and timer and close every server; :func:`run` returns promptly."""
    k = _kernel._K
    if k is not None:
        k.cancel_all()


@overload
def spawn(func: Coroutine[Any, Any, T], *, name: str | None = None) -> Task[T]: ...
@overload
def spawn(func: Callable[..., Awaitable[T]], *args: Any, name: str | None = None) -> Task[T]: ...
def spawn(func: Any, *args: Any, name: str | None = None) -> Task[Any]:
    """Schedule ``func(*args)`` (an async function, or a coroutine object) as a new task.

    The task starts at the scheduler's next pass, not now. Returns the
    :class:`Task`; ``await`` it for its result.
    """
    return get_kernel().spawn(func, args, name)


def current_task() -> Task[Any] | None:
    """The task running now, or None outside any task."""
    k = _kernel._K
    return k._current if k is not None else None


ErrorHandler = Callable[[BaseException, "Task[Any] | None", Any], Any]


def set_error_handler(handler: ErrorHandler | None, default: bool = False) -> None:
    """Set the handler for errors no task catches: ``handler(exc, task, sock)``.

    With *default* (or outside a task) it becomes the handler of every task
    without one of its own; otherwise it is the current task's. None restores
    the default handler, which logs the traceback with the task's name to the
    ``coserve`` logger.
    """
    if handler is not None and not callable(handler):
        raise TypeError(f"an error handler must be callable, not {handler!r}")
    task = current_task()
    if default or task is None:
        _kernel.error_handler = handler or _kernel._default_error_handler
    else:
        task._error_handler = handler


def get_error_handler(task: Task[Any] | None = None) -> ErrorHandler:
    """The error handler of *task* (default: the current task), or the default handler."""
    task = task or current_task()
    return (task._error_handler if task is not None else None) or _kernel.error_handler


def status(stats: bool = False) -> dict[str, Any]:
    """The scheduler's state (Copas's ``status``): counts of tasks by state, timers, servers.

    coserve's keys: ``tasks``; the tasks by state (``ready``, ``running``,
    ``reading``, ``writing``, ``sleeping``, ``waiting``, ``joining``, ...);
    ``timers`` (armed :class:`Timer` objects), ``servers``, ``exiting``.
    Copas's keys as well: ``running`` (True while the scheduler runs),
    ``read`` and ``write`` (tasks waiting on a socket), ``active`` (tasks
    ready to run), ``timer`` (tasks sleeping until a time), ``inactive``
    (tasks waiting with no deadline: ``sleep_forever``, locks, queues,
    events, other tasks), ``timeout`` (armed timeouts: socket operations,
    timeout blocks).

    With *stats*: the loop's timing since the previous ``status(stats=True)``
    call (the first such call switches the measuring on), in seconds on the
    kernel's clock: ``steps``, ``duration_tot``/``_min``/``_max``/``_avg``
    (the work of a step, without its wait in the poll), ``duration_min_ever``
    and ``duration_max_ever``, ``time_start``, ``time_end`` and ``time_avg``
    (Copas's fields; Copas gives milliseconds), and ``stats`` = ``steps`` and
    ``step_time_min``/``_avg``/``_max``.
    """
    k = _kernel._K
    if k is None:
        return _kernel.idle_status(stats)
    return k.status(stats)
