"""A drop-in home for the standard library's ``asyncore``, on coserve's kernel.

Python 3.12 removed ``asyncore``. This module offers its whole public API
with the behaviour of CPython 3.11's: ``socket_map``, ``ExitNow``, ``read``,
``write``, ``readwrite``, ``poll``, ``poll2``/``poll3``, ``loop``,
``compact_traceback``, ``close_all``, ``dispatcher``, ``dispatcher_with_send``,
``file_wrapper`` and ``file_dispatcher``. Subclasses written for the standard
library work unchanged; to keep ``import asyncore`` working, see
:func:`coserve.compat.install`.

What differs is how :func:`loop` waits. The standard library asks every
channel ``readable()`` and ``writable()`` and rebuilds its select or poll set
on every pass, so each pass costs as much as there are connections (and
``select()`` fails above fd 1023). Here ``loop()`` runs coserve's kernel, and
channels stay registered with its epoll instance between passes:

- a channel whose class keeps the library's own ``readable``/``writable``
  (``dispatcher``, ``dispatcher_with_send``, ``asynchat.async_chat``) has its
  interest recomputed only when its state changes: after each of its events,
  and when ``send``/``push``/``connect``/... change it. An idle one costs
  nothing per pass;
- a channel that overrides ``readable`` or ``writable`` is asked on every pass,
  as documented, and re-registered only if the answer changed.

Registrations follow the map, which stays the truth as in the standard
library: channels put into it or deleted from it directly, and sockets closed
behind its back, are noticed (see ``_Channels``). What changed is noted by
descriptor, in the hook of the loop running in the thread, so coserve never
keeps a channel alive, whoever drives the loop (pyftpdlib's IOLoop, or a
program calling ``poll2()`` itself).

Coroutine tasks, timers and servers of coserve run in the same loop, whether
the program calls ``asyncore.loop()`` or ``coserve.run()``, so legacy code can
move one piece at a time. That is in the thread that owns coserve's
scheduler; a loop in any other thread runs on a kernel of that thread's own
(see ``_loop_kernel``), so several threads can each run a loop over their own
map. ``poll()`` and ``poll2()`` remain the classic one-pass functions (full
scans) for code that calls them directly.

Two behaviours changed on purpose, and both are documented in docs/asyncore.md:
running out of file descriptors in ``accept`` no longer makes the listening
dispatcher fail for good (it returns ``None`` as for EWOULDBLOCK, and the
listener itself pauses for a back-off, so that no loop, coserve's or a
foreign one, retries it on every pass); and ``dispatcher_with_send`` keeps its
outgoing data without re-copying it on every send (no quadratic
``out_buffer + data``).
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from errno import (
    EAGAIN,
    EALREADY,
    EBADF,
    ECONNABORTED,
    ECONNRESET,
    EINPROGRESS,
    EINVAL,
    EISCONN,
    EMFILE,
    ENFILE,
    ENOBUFS,
    ENOMEM,
    ENOTCONN,
    EPIPE,
    ESHUTDOWN,
    EWOULDBLOCK,
    errorcode,
)
from typing import Any

from . import _kernel
from ._poller import set_mask

__all__ = [
    "ExitNow",
    "close_all",
    "compact_traceback",
    "dispatcher",
    "dispatcher_with_send",
    "file_dispatcher",
    "file_wrapper",
    "loop",
    "poll",
    "poll2",
    "poll3",
    "read",
    "readwrite",
    "socket_map",
    "write",
]

_DISCONNECTED = frozenset({ECONNRESET, ENOTCONN, ESHUTDOWN, ECONNABORTED, EPIPE, EBADF})
_OUT_OF_FDS = frozenset({EMFILE, ENFILE, ENOBUFS, ENOMEM})
#: The pause of a listener out of descriptors: the first, and the longest (it doubles in between).
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0

#: The default map of file descriptors to channels.
socket_map: dict[int, Any] = {}


def _strerror(err: int) -> str:
    try:
        return os.strerror(err)
    except (ValueError, OverflowError, NameError):
        return errorcode.get(err, f"Unknown error {err}")


class ExitNow(Exception):
    """Raised by a handler to leave :func:`loop` at once (it is not passed to ``handle_error``)."""


_reraised_exceptions = (ExitNow, KeyboardInterrupt, SystemExit)


def read(obj: Any) -> None:
    """Call ``obj.handle_read_event()``; any error but ExitNow goes to ``obj.handle_error()``."""
    try:
        obj.handle_read_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def write(obj: Any) -> None:
    """Call ``obj.handle_write_event()``; any error but ExitNow goes to ``obj.handle_error()``."""
    try:
        obj.handle_write_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def _exception(obj: Any) -> None:
    try:
        obj.handle_expt_event()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def readwrite(obj: Any, flags: int) -> None:
    """Dispatch poll()-style event *flags* to *obj*'s handlers (read, write, priority, close)."""
    try:
        if flags & select.POLLIN:
            obj.handle_read_event()
        if flags & select.POLLOUT:
            obj.handle_write_event()
        if flags & select.POLLPRI:
            obj.handle_expt_event()
        if flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
            obj.handle_close()
    except OSError as e:
        if e.errno not in _DISCONNECTED:
            obj.handle_error()
        else:
            obj.handle_close()
    except _reraised_exceptions:
        raise
    except BaseException:
        obj.handle_error()


def poll(timeout: float = 0.0, map: dict[int, Any] | None = None) -> None:
    """One classic pass with ``select()``: ask every channel, wait, dispatch (a full scan)."""
    if map is None:
        map = socket_map
    if not map:
        return
    r: list[int] = []
    w: list[int] = []
    e: list[int] = []
    for fd, obj in list(map.items()):
        is_r = obj.readable()
        is_w = obj.writable()
        if is_r:
            r.append(fd)
        if is_w and not obj.accepting:  # a listening socket is never "writable"
            w.append(fd)
        if is_r or is_w:
            e.append(fd)
    if not (r or w or e):
        time.sleep(timeout)
        return
    r, w, e = select.select(r, w, e, timeout)
    for fds, handler in ((r, read), (w, write), (e, _exception)):
        for fd in fds:
            obj = map.get(fd)
            if obj is not None:
                handler(obj)


def poll2(timeout: float = 0.0, map: dict[int, Any] | None = None) -> None:
    """One classic pass with ``poll()``: ask every channel, wait, dispatch (a full scan)."""
    if map is None:
        map = socket_map
    if timeout is not None:
        timeout = int(timeout * 1000)  # poll() takes milliseconds
    pollster = select.poll()
    if map:
        for fd, obj in list(map.items()):
            flags = _poll_flags(obj)
            if flags:
                pollster.register(fd, flags)
        for fd, flags in pollster.poll(timeout):
            obj = map.get(fd)
            if obj is not None:
                readwrite(obj, flags)


poll3 = poll2  # an alias the standard library kept


def _poll_flags(obj: Any) -> int:
    flags = 0
    if obj.readable():
        flags |= select.POLLIN | select.POLLPRI
    if obj.writable() and not obj.accepting:
        flags |= select.POLLOUT
    return flags


def loop(
    timeout: float = 30.0, use_poll: bool = False, map: dict[int, Any] | None = None, count: int | None = None
) -> None:
    """Serve the channels in *map* until it is empty, or for *count* passes.

    Each pass waits at most *timeout* seconds. It runs on coserve's kernel
    (epoll), whatever *use_poll* says; *use_poll* only chooses how a hang-up
    or an error is reported, as in the standard library (see the module
    text). In the thread that owns coserve's scheduler, its tasks and timers
    run in the same passes; any other thread gets a kernel of its own, so
    several threads can each run a loop over their own map.
    """
    if map is None:
        map = socket_map
    k = _loop_kernel()
    if k.running:
        raise RuntimeError(
            "asyncore.loop() was called while coserve's scheduler runs in this thread (from a task, a "
            "timer or a handler); dispatchers already run in that loop: return instead"
        )
    shared = k is _kernel._K
    hook = k._hook
    assert isinstance(hook, _Channels)
    previous = hook.serve(map)
    previous_style = hook.select_style
    # The standard library's two loops report a hang-up or an error differently: select() shows
    # it only as "readable" (read() is called), poll() as POLLHUP/POLLERR (handle_close()).
    hook.select_style = not (use_poll and hasattr(select, "poll"))
    k.running = True
    k._thread_id = threading.get_ident()
    try:
        if count is None:
            while map:
                k.iterate(timeout)
        else:
            while map and count > 0:
                k.iterate(timeout)
                count -= 1
    finally:
        k.running = False
        hook.select_style = previous_style
        if shared:
            hook.serve(previous)
            if not k._tasks and not k.has_work():
                _kernel.drop_kernel(k)  # nothing left in it: the next loop() or run() starts clean
        elif not map:
            _drop_own(k)  # this thread's own kernel; kept while its map has channels (count=...)


# --- which kernel a thread's loop runs on ----------------------------------------------------------


class _PerThread(threading.local):
    #: This thread's own kernel: it runs loop() in a thread that does not own coserve's scheduler.
    kernel: _kernel.Kernel | None = None
    #: The hook that ran the last pass in this thread: channel changes are noted there.
    hook: _Channels | None = None


_here = _PerThread()


def _loop_kernel() -> _kernel.Kernel:
    """The kernel loop() runs on in this thread.

    coserve's scheduler (the one kernel tasks, timers and servers use) if this
    thread owns it: it made the scheduler or runs it, or it is the main
    thread and there is none yet. Any other thread gets a kernel of its own,
    which serves channels only: the standard library lets each thread run a
    loop over its own map, and a kernel runs in one thread at a time.
    """
    me = threading.get_ident()
    shared = _kernel._K
    own = _here.kernel
    if shared is not None and shared._thread_id == me:
        if own is not None:
            _drop_own(own)
        return shared
    if own is not None:
        return own
    if shared is None and threading.current_thread() is threading.main_thread():
        shared = _kernel.get_kernel()
        if shared._thread_id == me:  # (not made by another thread at the same moment)
            return shared
    own = _here.kernel = _kernel.Kernel()
    return own


def _drop_own(k: _kernel.Kernel) -> None:
    if _here.kernel is k:
        _here.kernel = None
    _kernel.drop_kernel(k)


def _hooks_here() -> list[_Channels]:
    """The hooks that may have this thread's channels registered."""
    hooks = [] if _here.hook is None else [_here.hook]
    shared = _kernel._K
    for k in (
        _here.kernel,
        shared if shared is not None and shared._thread_id == threading.get_ident() else None,
    ):
        if k is not None and k._hook is not None and k._hook not in hooks:
            hooks.append(k._hook)
    return hooks


# --- the kernel's side: keeping channels registered between passes ---------------------------------

_IN = select.POLLIN | select.POLLPRI
_OUT = select.POLLOUT
#: Seconds between two sweeps for sockets closed behind the map's back, per channel. A sweep costs
#: about 0.1 µs a channel, so this keeps it near 1% of a busy loop's time (an idle loop: none).
_SWEEP_INTERVAL = 1e-5
_NO_SOCKET = object()


def _socket_gone(obj: Any, fd: int) -> bool:
    """True if *obj*'s socket is no longer the open file at *fd* (it was closed behind the map's back)."""
    sock: Any = getattr(obj, "socket", _NO_SOCKET)
    if sock is _NO_SOCKET:
        return False  # a channel of its own kind (no socket attribute): nothing to check
    try:
        return sock is None or sock.fileno() != fd
    except Exception:
        return True


class _Channels:
    """Serves one kernel the readiness of a map's channels (installed as the kernel's hook).

    The map is the truth, as in the standard library, which rebuilds its poll
    set from it on every pass. Here registrations persist, so changes are
    followed: those made through the channels' methods are noted (by fd) in
    the hook of the loop running in the thread; a map whose size changed
    (``map[fd] = obj``, ``del map[fd]`` done directly) is compared with the
    registrations; an event for a channel that is no longer the map's at its
    fd makes the registration follow the map; and a sweep (after activity,
    rate-limited) finds sockets closed behind the map's back, which epoll
    forgets without an event. No channel is referenced here once it has left
    the map, whoever closed it.
    """

    def __init__(self, kernel: _kernel.Kernel) -> None:
        self._kernel = kernel
        self._map: dict[int, Any] = socket_map
        self._synced = False
        self._fds: dict[int, Any] = {}  # fd -> channel registered with the poller
        self._masks: dict[int, int] = {}
        self.owned = self._fds  # the kernel checks membership here (no call per event)
        self._dynamic: set[int] = set()  # fds whose channel overrides readable/writable
        self._dirty: set[int] = set()  # fds whose channel changed state: recompute before the next poll
        self._retry: dict[int, float] = {}  # listeners out of descriptors: when their pause ends
        self._always: dict[int, int] = {}  # fds epoll refuses (regular files): always ready, as poll() says
        self._gone: set[int] = set()  # fds whose socket was closed behind the map's back
        self._activity = False  # something ran since the last sweep
        self._swept = 0.0
        #: Dispatch like the standard library's select() loop (True) or its poll() loop (False).
        self.select_style = False

    def _activate(self) -> None:
        """Run this thread's passes from now on: changes noted in another hook meanwhile are unknown here."""
        if _here.hook is not self:
            _here.hook = self
            self._synced = False

    def serve(self, map: dict[int, Any]) -> dict[int, Any]:
        """Serve *map* from now on (loop(map=...) does this); returns the map served before."""
        self._activate()
        previous = self._map
        if map is not previous or not self._synced:
            self._map = map
            self._sync(full=True)
        return previous

    def alive(self) -> bool:
        return bool(self._map)

    def _sync(self, full: bool) -> None:
        """Make the registrations match the map; *full*: ask every channel again (and look at its socket)."""
        self._synced = True
        map = self._map
        fds = self._fds
        for fd in [fd for fd, obj in fds.items() if map.get(fd) is not obj]:
            self._unregister(fd)
        for fd, obj in list(map.items()):
            if fd not in fds:
                self._place(fd, obj)
            elif full:
                self._update(fd, obj)
            if _socket_gone(obj, fd):
                self._gone.add(fd)
        if full:
            self._dirty.clear()

    def _place(self, fd: int, obj: Any) -> None:
        cls = type(obj)
        dynamic = not (
            getattr(cls, "readable", None) in _LIBRARY_READABLE
            and getattr(cls, "writable", None) in _LIBRARY_WRITABLE
        )
        self._fds[fd] = obj
        self._masks[fd] = 0
        if dynamic:
            self._dynamic.add(fd)
        self._update(fd, obj)

    def _update(self, fd: int, obj: Any) -> None:
        # _poll_flags written out (this runs after every event); an error in readable()/writable()
        # leaves loop(), as in the standard library.
        mask = _IN if obj.readable() else 0
        if obj.writable() and not obj.accepting:
            mask |= _OUT
        if obj.accepting:
            until = getattr(obj, "_accept_paused_until", 0.0)
            if until and until > time.monotonic():
                mask = 0  # out of descriptors: the listener waits for its pause to end
                self._retry[fd] = until
        old = self._masks.get(fd, 0)
        if mask == old:
            return
        if fd in self._always:
            if mask:
                self._always[fd] = mask
            else:
                del self._always[fd]
            self._masks[fd] = mask
            return
        poller = self._kernel._poller
        try:
            if mask:
                set_mask(poller, fd, mask, registered=bool(old))
            else:
                poller.unregister(fd)
        except PermissionError:
            self._always[fd] = mask  # a regular file: epoll will not watch it, and it is always ready
        except (OSError, ValueError, KeyError):
            if mask:
                self._gone.add(fd)  # the fd is not open: its socket was closed behind the map's back
            mask = 0
        self._masks[fd] = mask

    def _unregister(self, fd: int) -> None:
        self._fds.pop(fd, None)
        self._dynamic.discard(fd)
        self._retry.pop(fd, None)
        if self._always.pop(fd, None) is not None:
            self._masks.pop(fd, None)
        elif self._masks.pop(fd, 0) and fd not in self._kernel._fds:  # (the number may be a task's now)
            try:
                self._kernel._poller.unregister(fd)
            except (OSError, ValueError, KeyError):
                pass

    def forget(self, fd: int) -> None:
        """A channel left its map (del_channel): unregister before its fd is closed."""
        if fd in self._fds:
            self._unregister(fd)

    def _lost(self, fd: int, obj: Any) -> None:
        """*obj*'s socket was closed behind the map's back: epoll forgot it, and no event will come.

        The standard library's poll() loop reports POLLNVAL for such an fd, which
        calls ``handle_close()`` (its select() loop fails with EBADF); so does
        this, in both styles. A channel still in the map after that would be
        reported on every pass (the standard library spins): it is taken out,
        with an error through ``log_info``.
        """
        self._unregister(fd)
        readwrite(obj, select.POLLNVAL)
        map = self._map
        if fd in map and map[fd] is obj:
            del map[fd]
            self._unregister(fd)
            if getattr(obj, "_fileno", None) == fd:
                obj._fileno = None  # as del_channel does: a later close() must not touch the fd's next owner
            obj.log_info(
                f"the socket of {obj!r} was closed behind the map's back and handle_close() left it in "
                "the map; it was removed (close the channel with close(), not its socket)",
                "error",
            )

    def before_poll(self) -> float | None:
        """Apply what changed since the last pass; returns how long the poll may wait (None: no bound)."""
        self._activate()
        if not self._synced:
            self._sync(full=True)  # first pass here (or under coserve.run()): ask every channel
        map = self._map
        fds = self._fds
        if self._dirty:
            self._activity = True
            dirty, self._dirty = self._dirty, set()
            for fd in dirty:
                obj = map.get(fd)
                if obj is None:
                    if fd in fds:
                        self._unregister(fd)
                elif fds.get(fd) is not obj:
                    if fd in fds:
                        self._unregister(fd)
                    self._place(fd, obj)
                else:
                    self._update(fd, obj)
        if len(map) != len(fds):
            self._activity = True
            self._sync(full=False)  # the map was changed directly: map[fd] = obj, del map[fd]
        for fd in list(self._dynamic):
            obj = fds.get(fd)
            if obj is not None and map.get(fd) is obj:
                self._update(fd, obj)
        limit: float | None = None
        now = time.monotonic()
        if self._retry:
            for fd, when in list(self._retry.items()):
                if when <= now:
                    del self._retry[fd]
                    obj = fds.get(fd)
                    if obj is not None:
                        self._update(fd, obj)
                elif limit is None or when - now < limit:
                    limit = when - now  # the pause ends then, whatever else the loop waits for
        if self._activity:
            due = self._swept + len(fds) * _SWEEP_INTERVAL
            if now >= due:
                self._activity = False
                self._swept = now
                for fd, obj in fds.items():
                    if _socket_gone(obj, fd):
                        self._gone.add(fd)
            elif limit is None or due - now < limit:
                limit = due - now
        if self._gone:
            gone, self._gone = self._gone, set()
            for fd in gone:
                obj = fds.get(fd)
                if obj is not None and map.get(fd) is obj and _socket_gone(obj, fd):
                    self._lost(fd, obj)
            return 0  # its handlers ran: let the next pass see what they changed
        if self._always:
            self.dispatch(
                [(fd, mask & (select.POLLIN | select.POLLOUT)) for fd, mask in self._always.items()]
            )
            return 0
        return limit

    def dispatch(self, events: list[tuple[int, int]]) -> None:
        self._activity = True
        map = self._map
        fds = self._fds
        dynamic = self._dynamic
        for fd, flags in events:
            obj = fds.get(fd)
            if obj is None:
                continue  # closed by an earlier handler in this pass
            current: Any = map.get(fd)
            if current is not obj:
                # Taken out of the map (or replaced) without del_channel: follow the map, or this
                # level-triggered event would come back on every pass.
                self._unregister(fd)
                new = map.get(fd)
                if new is not None:
                    self._place(fd, new)
                continue
            if self.select_style:
                if flags & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    read(obj)
                if flags & select.POLLOUT and not obj.accepting and map.get(fd) is obj:
                    write(obj)
                if flags & select.POLLPRI and map.get(fd) is obj:
                    _exception(obj)
            else:
                readwrite(obj, flags)
            # The handlers may have changed what the channel waits for (a channel that closed
            # itself has left fds already).
            if fd not in dynamic and fds.get(fd) is obj:
                self._update(fd, obj)

    def cancel_all(self) -> None:
        close_all(self._map, ignore_all=True)

    def close(self) -> None:
        for fd in list(self._fds):
            self._unregister(fd)
        self._dirty.clear()
        self._gone.clear()
        self._map = {}
        if _here.hook is self:
            _here.hook = None


def _changed(obj: Any) -> None:
    """The channel's state changed (connected, buffers, accepting...): recompute its interest.

    Only its fd is noted, in the hook of the loop that runs in this thread: nothing here keeps a
    channel alive, whoever drives the loop (a foreign loop, which has no hook, leaves nothing).
    """
    hook = _here.hook
    if hook is not None:
        fd = getattr(obj, "_fileno", None)
        if fd is not None:
            hook._dirty.add(fd)


def _forget(fd: int) -> None:
    for hook in _hooks_here():
        hook.forget(fd)


_kernel.install_hook(_Channels)


# --- dispatchers -------------------------------------------------------------------------------------


class dispatcher:  # the standard library's name
    """A thin wrapper around a non-blocking socket, driven by :func:`loop` through ``handle_*`` events."""

    debug = False
    connected = False
    accepting = False
    connecting = False
    closing = False
    addr: Any = None
    ignore_log_types = frozenset({"warning"})
    _fileno: int | None = None
    # Out of descriptors in accept(): accepting pauses until this monotonic time (see accept()).
    _accept_paused_until = 0.0
    _accept_backoff = 0.0

    def __init__(self, sock: socket.socket | None = None, map: dict[int, Any] | None = None) -> None:
        self._map = socket_map if map is None else map
        self._fileno: int | None = None
        if sock:
            # Set to nonblocking just to make sure for cases where we get a socket from a blocking source.
            sock.setblocking(False)
            self.set_socket(sock, map)
            self.connected = True
            # The constructor no longer requires that the socket passed be connected.
            try:
                self.addr = sock.getpeername()
            except OSError as err:
                if err.errno in (ENOTCONN, EINVAL):
                    # To handle the case where we got an unconnected socket.
                    self.connected = False
                else:
                    # The socket is broken in some unknown way, alert the user and remove it from the map
                    # (to prevent polling of broken sockets).
                    self.del_channel(map)
                    raise
        else:
            self.socket: Any = None

    def __repr__(self) -> str:
        cls = self.__class__
        module = "asyncore" if cls.__module__ == __name__ else cls.__module__
        status = [module + "." + cls.__qualname__]
        if self.accepting and self.addr:
            status.append("listening")
        elif self.connected:
            status.append("connected")
        if self.addr is not None:
            try:
                status.append("%s:%d" % self.addr)  # noqa: UP031 - a TypeError means "not a pair"
            except TypeError:
                status.append(repr(self.addr))
        return "<{} at {:#x}>".format(" ".join(status), id(self))

    def add_channel(self, map: dict[int, Any] | None = None) -> None:
        """Put the channel in *map* (default: the map given at creation)."""
        if map is None:
            map = self._map
        map[self._fileno] = self  # type: ignore[index]
        _changed(self)

    def del_channel(self, map: dict[int, Any] | None = None) -> None:
        """Take the channel out of *map* (default: the map given at creation)."""
        fd = self._fileno
        if map is None:
            map = self._map
        if fd in map:
            del map[fd]
        if fd is not None:
            _forget(fd)
        self._fileno = None

    def create_socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> None:
        """Create a non-blocking socket and adopt it."""
        self.family_and_type = family, type
        sock = socket.socket(family, type)
        sock.setblocking(False)
        self.set_socket(sock)

    def set_socket(self, sock: Any, map: dict[int, Any] | None = None) -> None:
        """Adopt *sock* and add the channel to *map*."""
        self.socket = sock
        self._fileno = sock.fileno()
        self.add_channel(map)

    def set_reuse_addr(self) -> None:
        """Try to set SO_REUSEADDR on the socket."""
        try:
            self.socket.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_REUSEADDR,
                self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) | 1,
            )
        except OSError:
            pass

    # -- predicates for the poll set

    def readable(self) -> bool:
        """True if the channel wants read events (the library's own: always, but see accept())."""
        return not self._accept_paused_until or not self._accept_paused()

    def writable(self) -> bool:
        """True if the channel wants write events (the library's own: always)."""
        return True

    # -- socket methods

    def listen(self, num: int) -> None:
        """Listen for connections (at most *num* queued)."""
        self.accepting = True
        _changed(self)
        if os.name == "nt" and num > 5:  # pragma: no cover - Windows
            num = 5
        self.socket.listen(num)

    def bind(self, addr: Any) -> None:
        """Bind the socket to *addr*."""
        self.addr = addr
        self.socket.bind(addr)

    def connect(self, address: Any) -> None:
        """Start connecting to *address*; ``handle_connect`` is called once connected."""
        self.connected = False
        self.connecting = True
        _changed(self)
        err = self.socket.connect_ex(address)
        if err in (EINPROGRESS, EALREADY, EWOULDBLOCK) or (err == EINVAL and os.name == "nt"):
            self.addr = address
            return
        if err in (0, EISCONN):
            self.addr = address
            self.handle_connect_event()
        else:
            raise OSError(err, errorcode[err])

    def accept(self) -> tuple[socket.socket, Any] | None:
        """Accept a connection: ``(sock, addr)``, or None if there is none (or no descriptor for it).

        Out of descriptors (EMFILE, ENFILE, ...), it returns None and accepting
        pauses for a back-off, 50 ms doubling to 1 s: ``readable()`` is False,
        read events do not call ``handle_accept``, and accept() itself returns
        None at once. The pause lives here, not in a loop, so that any loop
        driving the listener (coserve's, ``poll2()`` called by the program's own
        loop, a framework's) stops retrying a call that cannot succeed.
        """
        if self._accept_paused_until and self._accept_paused():
            return None
        try:
            conn, addr = self.socket.accept()
        except TypeError:
            return None
        except OSError as why:
            if why.errno in (EWOULDBLOCK, ECONNABORTED, EAGAIN):
                return None
            if why.errno in _OUT_OF_FDS:
                self._pause_accepting(why.errno)
                return None
            raise
        else:
            if self._accept_backoff:
                self._accept_backoff = 0.0
            return conn, addr

    def _pause_accepting(self, err: int) -> None:
        # The standard library let this error reach handle_error, which closes the listener for
        # good; retrying at once would spin, as the listener stays readable. The connections wait
        # in the backlog meanwhile.
        delay = min(max(self._accept_backoff * 2, _BACKOFF_MIN), _BACKOFF_MAX)
        self._accept_backoff = delay
        self._accept_paused_until = time.monotonic() + delay
        _changed(self)
        self.log_info(
            f"accept: out of file descriptors ({_strerror(err)}); retrying in {delay * 1000:.0f} ms",
            "warning",
        )

    def _accept_paused(self) -> bool:
        if time.monotonic() < self._accept_paused_until:
            return True
        self._accept_paused_until = 0.0
        return False

    def send(self, data: bytes) -> int:
        """Send *data*; returns the bytes sent (0 if the socket would block, or the peer is gone)."""
        try:
            sent: int = self.socket.send(data)
            return sent
        except OSError as why:
            if why.errno == EWOULDBLOCK:
                return 0
            if why.errno in _DISCONNECTED:
                self.handle_close()
                return 0
            raise

    def recv(self, buffer_size: int) -> bytes:
        """Receive at most *buffer_size* bytes; ``b""`` when the peer closed (handle_close is called)."""
        try:
            data: bytes = self.socket.recv(buffer_size)
            if not data:
                # A closed connection is indicated by signaling a read condition, and having recv() return 0.
                self.handle_close()
                return b""
            return data
        except OSError as why:
            if why.errno in _DISCONNECTED:
                self.handle_close()
                return b""
            raise

    def close(self) -> None:
        """Leave the map and close the socket."""
        self.connected = False
        self.accepting = False
        self.connecting = False
        self.del_channel()
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError as why:
                if why.errno not in (ENOTCONN, EBADF):
                    raise

    # -- logging

    def log(self, message: str) -> None:
        """Write *message* to standard error (as ``log: ...``)."""
        sys.stderr.write(f"log: {message}\n")

    def log_info(self, message: str, type: str = "info") -> None:
        """Print *message* as ``type: message`` unless *type* is in ``ignore_log_types``."""
        if type not in self.ignore_log_types:
            print(f"{type}: {message}")

    # -- events

    def handle_read_event(self) -> None:
        """Dispatch a read event: accept, finish a connect, or read."""
        if self.accepting:
            # accepting sockets are never connected, they "spawn" new sockets that are connected
            if self._accept_paused_until and self._accept_paused():
                return  # out of descriptors a moment ago (see accept())
            self.handle_accept()
        elif not self.connected:
            if self.connecting:
                self.handle_connect_event()
            self.handle_read()
        else:
            self.handle_read()

    def handle_connect_event(self) -> None:
        """The connection is established: update the state and call handle_connect."""
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            raise OSError(err, _strerror(err))
        self.handle_connect()
        self.connected = True
        self.connecting = False
        _changed(self)

    def handle_write_event(self) -> None:
        """Dispatch a write event: finish a connect, then write."""
        if self.accepting:
            # Accepting sockets shouldn't get a write event. We will pretend it didn't happen.
            return
        if not self.connected:
            if self.connecting:
                self.handle_connect_event()
        self.handle_write()

    def handle_expt_event(self) -> None:
        """Dispatch a priority event, or the error it stands for."""
        # handle_expt_event() is called if there might be an error on the socket, or if there is OOB data;
        # check for the error condition first.
        err = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            # We can get here when select.select() says that there is an exceptional condition on the
            # socket since there is an error, we'll go ahead and close the socket like we would in a
            # subclassed handle_read() that received no data.
            self.handle_close()
        else:
            self.handle_expt()

    def handle_error(self) -> None:
        """Report the exception being handled, then close the channel."""
        _nil, t, v, tbinfo = compact_traceback()
        # sometimes a user repr method will crash.
        try:
            self_repr = repr(self)
        except BaseException:
            self_repr = f"<__repr__(self) failed for object at {id(self):0x}>"
        self.log_info(f"uncaptured python exception, closing channel {self_repr} ({t}:{v} {tbinfo})", "error")
        self.handle_close()

    def handle_expt(self) -> None:
        """Priority (OOB) data arrived; the default logs a warning."""
        self.log_info("unhandled incoming priority event", "warning")

    def handle_read(self) -> None:
        """Data can be read; the default logs a warning."""
        self.log_info("unhandled read event", "warning")

    def handle_write(self) -> None:
        """Data can be written; the default logs a warning."""
        self.log_info("unhandled write event", "warning")

    def handle_connect(self) -> None:
        """The connection was established; the default logs a warning."""
        self.log_info("unhandled connect event", "warning")

    def handle_accept(self) -> None:
        """A connection can be accepted; the default accepts it and calls handle_accepted."""
        pair = self.accept()
        if pair is not None:
            self.handle_accepted(*pair)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        """A connection was accepted; the default closes it and logs a warning."""
        sock.close()
        self.log_info("unhandled accepted event", "warning")

    def handle_close(self) -> None:
        """The peer closed (or the channel failed); the default closes the channel."""
        self.log_info("unhandled close event", "warning")
        self.close()


class dispatcher_with_send(dispatcher):  # the standard library's name
    """A dispatcher that buffers what ``send`` could not send at once and sends it when writable.

    ``out_buffer`` reads as the bytes still to send, as in the standard
    library; internally the data is kept in pieces so that appending does not
    copy everything already buffered.
    """

    def __init__(self, sock: socket.socket | None = None, map: dict[int, Any] | None = None) -> None:
        super().__init__(sock, map)
        self._out: list[bytes] = []
        self._out_len = 0

    @property
    def out_buffer(self) -> bytes:
        """The bytes still to send."""
        if len(self._out) > 1:
            self._out[:] = [b"".join(self._out)]
        return self._out[0] if self._out else b""

    @out_buffer.setter
    def out_buffer(self, value: bytes) -> None:
        self._out = [bytes(value)] if value else []
        self._out_len = len(value)
        _changed(self)

    def initiate_send(self) -> None:
        """Send from the buffer what the socket takes now (at most 64 KiB)."""
        if not self._out:
            return
        first = self._out[0]
        if len(first) < 65536 and len(self._out) > 1:
            first = b"".join(self._out)
            self._out[:] = [first]
        num_sent = dispatcher.send(self, first[:65536])
        if num_sent:
            rest = first[num_sent:]
            if rest:
                self._out[0] = rest
            else:
                del self._out[0]
            self._out_len -= num_sent

    def handle_write(self) -> None:
        """Send more of the buffer."""
        self.initiate_send()

    def writable(self) -> bool:
        """True while connecting or while there is something to send."""
        return (not self.connected) or bool(self._out_len)

    def send(self, data: bytes) -> int:
        """Queue *data* and send what the socket takes now; returns None, as the standard library's."""
        if self.debug:
            self.log_info(f"sending {data!r}")
        had = self._out_len
        if data:
            self._out.append(data if type(data) is bytes else bytes(data))
            self._out_len = had + len(data)
        self.initiate_send()
        if bool(had) != bool(self._out_len):
            _changed(self)  # it became writable (or stopped being): its registration follows
        return None  # type: ignore[return-value]


# --- helpers --------------------------------------------------------------------------------------


def compact_traceback() -> tuple[tuple[str, str, str], type[BaseException] | None, BaseException | None, str]:
    """The exception being handled, compactly: ``((file, function, line), type, value, info)``."""
    exc = sys.exc_info()[1]
    if exc is None:
        raise AssertionError("traceback does not exist")
    tb = exc.__traceback__
    tbinfo = []
    while tb:
        tbinfo.append((tb.tb_frame.f_code.co_filename, tb.tb_frame.f_code.co_name, str(tb.tb_lineno)))
        tb = tb.tb_next
    del tb
    file, function, line = tbinfo[-1]
    info = " ".join("[{}|{}|{}]".format(*x) for x in tbinfo)
    return (file, function, line), type(exc), exc, info


def close_all(map: dict[int, Any] | None = None, ignore_all: bool = False) -> None:
    """Close every channel in *map* (default: socket_map) and empty it."""
    if map is None:
        map = socket_map
    for x in list(map.values()):
        try:
            x.close()
        except OSError as x_err:
            if x_err.errno == EBADF:
                pass
            elif not ignore_all:
                raise
        except _reraised_exceptions:
            raise
        except BaseException:
            if not ignore_all:
                raise
    map.clear()


# --- file descriptors as channels (POSIX) ---------------------------------------------------------------

if os.name == "posix":

    class file_wrapper:  # the standard library's name
        """Makes a file descriptor look like a socket (it works on a ``dup`` of it)."""

        def __init__(self, fd: int) -> None:
            self.fd = os.dup(fd)

        def __del__(self) -> None:
            if self.fd >= 0:
                warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self, stacklevel=1)
            self.close()

        def recv(self, *args: Any) -> bytes:
            """Read from the descriptor."""
            return os.read(self.fd, *args)

        def send(self, *args: Any) -> int:
            """Write to the descriptor."""
            return os.write(self.fd, *args)

        def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int:
            """Answer SO_ERROR (no error); other options are not supported."""
            if level == socket.SOL_SOCKET and optname == socket.SO_ERROR and not buflen:
                return 0
            raise NotImplementedError("Only asyncore specific behaviour implemented.")

        read = recv
        write = send

        def close(self) -> None:
            """Close the descriptor (a second close does nothing)."""
            if self.fd < 0:
                return
            fd = self.fd
            self.fd = -1
            os.close(fd)

        def fileno(self) -> int:
            """The descriptor."""
            return self.fd

    class file_dispatcher(dispatcher):  # the standard library's name
        """A dispatcher over a file descriptor (a pipe, say), made non-blocking."""

        def __init__(self, fd: Any, map: dict[int, Any] | None = None) -> None:
            super().__init__(None, map)
            self.connected = True
            try:
                fd = fd.fileno()
            except AttributeError:
                pass
            self.set_file(fd)
            # set it to non-blocking mode
            os.set_blocking(fd, False)

        def set_file(self, fd: int) -> None:
            """Adopt (a duplicate of) *fd* and add the channel to the map."""
            self.socket = file_wrapper(fd)
            self._fileno = self.socket.fileno()
            self.add_channel()


# The library's own readable()/writable() (asynchat adds its own): a channel class that keeps them
# needs no call per pass to know its interest.
_LIBRARY_READABLE: set[Callable[..., bool]] = {dispatcher.readable}
_LIBRARY_WRITABLE: set[Callable[..., bool]] = {dispatcher.writable, dispatcher_with_send.writable}
