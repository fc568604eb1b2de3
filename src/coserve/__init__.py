"""coserve: coroutine-oriented asynchronous network services.

Handlers that read like blocking code (Copas's simplicity), on a small, fast
kernel of coserve's own. The public names live here; the modules behind them
are private and layered: ``_kernel`` (loop, tasks, traps) <- ``_time``,
``_timer`` <- ``_sync``, ``_taskgroup``, ``_threads`` <- ``_socket`` <- ``_server``;
``_api`` (the scheduler's controls) sits on ``_kernel``.
"""

from ._api import (
    at_run_end,
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
    ConnectionClosed,
    ConnectionReset,
    CoserveError,
    DataBeforeHandshake,
    DatagramTooLarge,
    Deadlock,
    Destroyed,
    ForeignAwaitable,
    LineTooLong,
    NotOwner,
    ResourceBusy,
    SocketClosed,
    Stopping,
    TooMany,
)
from ._kernel import Task, format_traceback
from ._server import Server, add_server, remove_server, serve_tcp, serve_udp, serve_unix
from ._signals import SignalReceiver, on_signal, open_signal_receiver
from ._socket import Socket, connect, connect_unix, handler, open_udp, sni_context, wrap
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
    "ConnectionClosed",
    "ConnectionReset",
    "CoserveError",
    "DataBeforeHandshake",
    "DatagramTooLarge",
    "Deadlock",
    "Destroyed",
    "Event",
    "ForeignAwaitable",
    "LineTooLong",
    "Lock",
    "NotOwner",
    "Queue",
    "ResourceBusy",
    "Semaphore",
    "Server",
    "SignalReceiver",
    "Socket",
    "SocketClosed",
    "Stopping",
    "Task",
    "TaskGroup",
    "TimeoutScope",
    "Timer",
    "TooMany",
    "add_server",
    "at_run_end",
    "cancel_all",
    "connect",
    "connect_unix",
    "current_task",
    "exit",
    "exiting",
    "finished",
    "format_traceback",
    "from_callback",
    "get_error_handler",
    "gettime",
    "handler",
    "is_running",
    "move_on_after",
    "on_signal",
    "open_signal_receiver",
    "open_udp",
    "remove_server",
    "run",
    "run_in_thread",
    "serve_tcp",
    "serve_udp",
    "serve_unix",
    "set_error_handler",
    "sleep",
    "sleep_forever",
    "sni_context",
    "spawn",
    "status",
    "step",
    "timeout_after",
    "timer",
    "wait_for_exit",
    "wakeup",
    "wrap",
]
