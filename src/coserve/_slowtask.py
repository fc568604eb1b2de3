"""Debug mode: a warning when a task runs too long without yielding.

coserve's tasks share one thread, so a task that blocks (``time.sleep``, a
blocking socket, a long computation) stalls every other one, and nothing shows
it. ``run(debug=True)``, or ``COSERVE_DEBUG=1`` in the environment, times each
step of each task (from the moment the scheduler resumes it to the moment it
waits again, or ends) and logs a WARNING on the ``coserve`` logger naming the
task, how long it ran and where it is now, when a step takes longer than
``slow_task_duration`` (0.1 s by default, asyncio's ``slow_callback_duration``).

It costs nothing when it is off: enabling it shadows the kernel's
``_run_ready`` with the timed loop below, on that kernel alone, and the kernel
is dropped when the run ends. The timed loop runs the ready tasks through the
kernel's own loop one at a time, so that debug mode and normal mode schedule
exactly alike.
"""

from __future__ import annotations

import functools
import os
import time

from ._kernel import Kernel, _where, logger

__all__ = ["SLOW_TASK_DURATION", "check_duration", "enable", "enabled_by_environment"]

#: The default threshold, in seconds: asyncio's ``slow_callback_duration``.
SLOW_TASK_DURATION = 0.1


def enabled_by_environment() -> bool:
    """True if ``COSERVE_DEBUG`` is set to anything but empty or ``0``."""
    return os.environ.get("COSERVE_DEBUG", "") not in ("", "0")


def check_duration(value: object) -> float:
    """Validate a ``slow_task_duration``: a number of seconds >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"slow_task_duration must be a number of seconds, not {value!r}")
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"slow_task_duration must be a number of seconds >= 0, not {value!r}")
    return float(value)


def enable(kernel: Kernel, slow_task_duration: float) -> None:
    """Warn, from now on in *kernel*, about each task step longer than *slow_task_duration* seconds."""
    limit = check_duration(slow_task_duration)
    kernel._run_ready = functools.partial(_run_ready_timed, kernel, limit)  # type: ignore[method-assign]


def _run_ready_timed(kernel: Kernel, limit: float, count: int = 0) -> None:
    ready = kernel._ready
    run_one = Kernel._run_ready  # the class's loop, not this shadow
    clock = time.perf_counter
    for _ in range(count or len(ready)):
        task = ready[0]
        start = clock()
        run_one(kernel, 1)
        took = clock() - start
        if took >= limit:
            now = "then it ended" if task.done() else f"it is now at {_where(task)}"
            logger.warning(
                "task %r ran for %.3f s without yielding (debug mode warns above %g s), and every other "
                "task waited; %s. Blocking calls belong in coserve.run_in_thread().",
                task.name,
                took,
                limit,
                now,
            )
