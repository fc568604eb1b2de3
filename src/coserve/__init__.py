"""coserve: coroutine-oriented asynchronous network services.

Handlers that read like blocking code (Copas's simplicity), on a small, fast
kernel of coserve's own. The public names live here; the modules behind them
are private and layered: ``_kernel`` (loop, tasks, traps) <- ``_time``,
``_timer`` <- ``_sync``, ``_taskgroup``, ``_threads`` <- ``_api``.
"""

from ._api import (
    cancel_all,
    current_task,
    exit,
    exiting,
    finished,
    get_error_handler,
    is_running,
    run,
    set_error_handler,
    spawn,
    status,
    step,
    wait_for_exit,
)
from ._errors import (
    AlreadyArmed,
    AlreadyRunning,
    Cancelled,
    CoserveError,
    Destroyed,
    ForeignAwaitable,
    NotOwner,
    ResourceBusy,
    Stopping,
    TooMany,
)
from ._kernel import Task
from ._sync import Condition, Event, Lock, Queue, Semaphore
from ._taskgroup import TaskGroup
from ._threads import from_callback, run_in_thread
from ._time import TimeoutScope, gettime, move_on_after, sleep, sleep_forever, timeout_after, wakeup
from ._timer import Timer, timer

__version__ = "0.1.0"

__all__ = [
    "AlreadyArmed",
    "AlreadyRunning",
    "Cancelled",
    "Condition",
    "CoserveError",
    "Destroyed",
    "Event",
    "ForeignAwaitable",
    "Lock",
    "NotOwner",
    "Queue",
    "ResourceBusy",
    "Semaphore",
    "Stopping",
    "Task",
    "TaskGroup",
    "TimeoutScope",
    "Timer",
    "TooMany",
    "cancel_all",
    "current_task",
    "exit",
    "exiting",
    "finished",
    "from_callback",
    "get_error_handler",
    "gettime",
    "is_running",
    "move_on_after",
    "run",
    "run_in_thread",
    "set_error_handler",
    "sleep",
    "sleep_forever",
    "spawn",
    "status",
    "step",
    "timeout_after",
    "timer",
    "wait_for_exit",
    "wakeup",
]
