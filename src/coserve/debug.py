"""Debug tracing (Copas's ``copas.debug``): task life-cycle and socket I/O, logged when asked for.

::

    import logging, coserve.debug
    logging.basicConfig(level=logging.DEBUG)
    coserve.debug.start()          # every task spawned, cancelled and ended; every socket operation
    ...
    coserve.debug.stop()

    traced = coserve.debug.socket(sock)   # one socket's calls and results only

The records go to the ``coserve`` logger at DEBUG. Tracing costs nothing while
it is off: :func:`start` replaces the kernel's and the sockets' methods with
logging wrappers, and :func:`stop` puts the originals back, so the hot paths
never test a flag. This is separate from ``run(debug=...)`` (issue 13's slow-task
warnings): the two can be used together.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from ._kernel import Kernel, Task
from ._socket import Socket

__all__ = ["is_tracing", "socket", "start", "stop"]

logger = logging.getLogger("coserve")

#: The socket operations :func:`start` traces (awaitables), and close (plain).
_SOCKET_OPS = (
    "receive",
    "receive_partial",
    "receive_from",
    "send",
    "send_to",
    "connect",
    "accept",
    "handshake",
)
_saved: dict[tuple[type, str], Any] = {}


def is_tracing() -> bool:
    """True between :func:`start` and :func:`stop`."""
    return bool(_saved)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _patch(cls: type, name: str, wrapper: Callable[..., Any]) -> None:
    _saved[(cls, name)] = cls.__dict__[name]
    setattr(cls, name, wrapper)


def start(sockets: bool = True) -> None:
    """Log every task spawned, cancelled and ended, and (with *sockets*) every socket operation.

    Calling it again while tracing changes nothing; :func:`stop` ends it.
    """
    if _saved:
        return
    spawn, finish, cancel = Kernel.spawn, Kernel._finish, Kernel._cancel_task

    @functools.wraps(spawn)
    def traced_spawn(self: Kernel, func: Any, args: tuple[Any, ...], name: str | None) -> Task[Any]:
        task = spawn(self, func, args, name)
        logger.debug("task %r spawned: %s", task.name, getattr(func, "__qualname__", _short(func)))
        return task

    @functools.wraps(finish)
    def traced_finish(self: Kernel, task: Task[Any], result: Any, exc: BaseException | None) -> None:
        if exc is None:
            logger.debug("task %r returned %s", task.name, _short(result))
        else:
            logger.debug("task %r ended with %r", task.name, exc)
        finish(self, task, result, exc)

    @functools.wraps(cancel)
    def traced_cancel(self: Kernel, task: Task[Any], exc: BaseException) -> bool:
        if task._state != "done":
            logger.debug("task %r cancelled while %s: %s", task.name, task._state, exc)
        return cancel(self, task, exc)

    _patch(Kernel, "spawn", traced_spawn)
    _patch(Kernel, "_finish", traced_finish)
    _patch(Kernel, "_cancel_task", traced_cancel)
    if sockets:
        for op in _SOCKET_OPS:
            _patch(Socket, op, _traced_op(op, Socket.__dict__[op]))
        _patch(Socket, "close", _traced_close(Socket.__dict__["close"]))
    logger.debug("tracing started")


def stop() -> None:
    """Stop tracing: the original methods are back, and nothing is logged or tested any more."""
    while _saved:
        (cls, name), original = _saved.popitem()
        setattr(cls, name, original)
    logger.debug("tracing stopped")


def _traced_op(op: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def traced(self: Socket, *args: Any, **kwargs: Any) -> Any:
        shown = ", ".join([_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()])
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as e:
            logger.debug("socket %r %s(%s) raised %r", self.name, op, shown, e)
            raise
        logger.debug("socket %r %s(%s) -> %s", self.name, op, shown, _short(result))
        return result

    return traced


def _traced_close(original: Callable[[Socket], None]) -> Callable[[Socket], None]:
    @functools.wraps(original)
    def traced(self: Socket) -> None:
        if not self._closed:
            logger.debug("socket %r closed", self.name)
        original(self)

    return traced


class _TracedSocket:
    """What :func:`socket` returns: the socket's methods, each call and its result logged."""

    def __init__(self, sock: Socket) -> None:
        self._traced = sock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._traced, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        sock = self._traced

        def call(*args: Any, **kwargs: Any) -> Any:
            shown = ", ".join([_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()])
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                return _await_logged(sock, name, shown, result)
            logger.debug("socket %r %s(%s) -> %s", sock.name, name, shown, _short(result))
            return result

        return call

    def __repr__(self) -> str:
        return f"<coserve.debug.socket {self._traced!r}>"


async def _await_logged(sock: Socket, name: str, shown: str, awaitable: Any) -> Any:
    try:
        result = await awaitable
    except BaseException as e:
        logger.debug("socket %r %s(%s) raised %r", sock.name, name, shown, e)
        raise
    logger.debug("socket %r %s(%s) -> %s", sock.name, name, shown, _short(result))
    return result


def socket(sock: Socket) -> Any:
    """Wrap *sock* so that each method call on the wrapper, with its arguments and result, is logged.

    Copas's ``debug.socket``; independent of :func:`start`. Use the wrapper
    where the socket would be used; the socket itself is unchanged.
    """
    if not isinstance(sock, Socket):
        raise TypeError(f"coserve.debug.socket() takes a coserve.Socket, not {type(sock).__name__}")
    return _TracedSocket(sock)
