"""Task groups: structured concurrency for a handful of tasks that belong together.

``async with TaskGroup() as g`` waits, on the way out, for every task spawned
with ``g.spawn``. If one of them fails, the others and the body of the block
are cancelled, and the failure is raised from the ``async with`` (several
failures: an :class:`ExceptionGroup`). The group sits on the parent task's
stack of scopes like a timeout does, so cancelling the body uses the same
mechanism and nests with timeouts in the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, overload

from . import _kernel
from ._errors import Cancelled, CoserveError
from ._kernel import WAITING, Task, WaitQueue

T = TypeVar("T")

__all__ = ["TaskGroup"]


class TaskGroup:
    """Spawn tasks that the ``async with`` block waits for; one failure cancels the rest."""

    def __init__(self) -> None:
        self._tasks: set[Task[Any]] = set()
        self._errors: list[BaseException] = []
        self._parent: Task[Any] | None = None
        self._in_body = False
        self._closed = False
        self._done = WaitQueue()
        self._depth = 0

    def __repr__(self) -> str:
        return f"<coserve.TaskGroup tasks={len(self._tasks)} errors={len(self._errors)}>"

    @property
    def tasks(self) -> frozenset[Task[Any]]:
        """The group's tasks still running."""
        return frozenset(self._tasks)

    async def __aenter__(self) -> TaskGroup:
        k = _kernel._K
        parent = k._current if k is not None else None
        if parent is None:
            raise CoserveError("TaskGroup must be used inside a coserve task")
        if self._parent is not None:
            raise CoserveError("a TaskGroup can be entered only once")
        self._parent = parent
        if parent._scopes is None:
            parent._scopes = []
        self._depth = len(parent._scopes)
        parent._scopes.append(self)
        self._in_body = True
        return self

    @overload
    def spawn(self, func: Coroutine[Any, Any, T], *, name: str | None = None) -> Task[T]: ...
    @overload
    def spawn(self, func: Callable[..., Awaitable[T]], *args: Any, name: str | None = None) -> Task[T]: ...
    def spawn(self, func: Any, *args: Any, name: str | None = None) -> Task[Any]:
        """Start ``func(*args)`` as a task of this group and return it."""
        if self._parent is None:
            raise CoserveError("enter the TaskGroup with 'async with' before spawning into it")
        if self._closed:
            raise CoserveError("this TaskGroup has finished; it cannot take new tasks")
        task = _kernel._K.spawn(func, args, name)
        task._watched = True
        task._on_done = self._child_done
        self._tasks.add(task)
        return task

    def _child_done(self, task: Task[Any]) -> None:
        self._tasks.discard(task)
        exc = task._exception
        if exc is not None and not isinstance(exc, Cancelled):
            self._errors.append(exc)
            self._abort()
        if not self._tasks:
            self._done.wake_all()

    def _abort(self) -> None:
        k = _kernel._K
        for t in list(self._tasks):
            k._cancel_task(t, Cancelled("a sibling task in the TaskGroup failed"))
        if self._in_body and self._parent is not None and self._parent is not k._current:
            exc = Cancelled("a task in the TaskGroup failed")
            exc._scope = self
            k._cancel_task(self._parent, exc)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._in_body = False
        parent = self._parent
        assert parent is not None
        ours = isinstance(e, Cancelled) and e._scope is self
        outer: BaseException | None = None
        if e is not None and not ours:
            if isinstance(e, Cancelled):
                outer = e
            else:
                self._errors.append(e)
            self._abort()
        while self._tasks:
            try:
                await self._done.wait(WAITING)
            except Cancelled as c:
                if c._scope is not self:
                    outer = c
                self._abort()
        self._closed = True
        parent._scopes.pop()  # type: ignore[union-attr]
        if parent._pending is not None and getattr(parent._pending, "_scope", None) is self:
            parent._pending = None
        errors = self._errors
        if errors:
            if len(errors) == 1:
                if errors[0] is e:
                    return False
                raise errors[0]
            raise BaseExceptionGroup("several tasks of a TaskGroup failed", errors)
        if outer is not None:
            if outer is e:
                return False
            raise outer
        return ours
