"""Sockets that read like blocking code: Copas's ``receive``/``send`` on coserve's kernel.

A :class:`Socket` wraps a non-blocking ``socket.socket`` (or ``ssl.SSLSocket``).
Every operation goes through one helper, :meth:`Socket._io`, that tries the
system call and, when it would block, parks the task on the kernel until the
socket is ready: *try the syscall, then wait*, written once. TLS's
"want read"/"want write" are the same two waits.

Timeouts are per operation and restart whenever the operation makes progress
(Copas's semantics): each wait for readiness may last the whole timeout, so a
``receive("*a")`` that keeps receiving never times out, and one that stalls
does. The timeout is part of the kernel's fd wait (no timeout scope per wait).

Two performance choices:

- After a plain socket's ``recv`` returned less than it asked for, the socket
  is almost certainly drained, so the next receive waits for readability
  *first* instead of making a ``recv`` that fails with EAGAIN (and costs a
  Python exception). epoll is level-triggered, so if data did arrive
  meanwhile the wait ends at once. TLS sockets never do this: the TLS library
  may hold decrypted bytes that epoll cannot see.
- A task whose socket always has data never has to wait, and would starve the
  others; so after 16 operations in a row without a wait, the next operation
  yields (Copas's "starve" rule). It yields *before* its system call, never
  with received bytes in hand, so a cancellation delivered there loses nothing.

Every pattern appends what it receives to the socket's buffer at once and takes
its result out only when it is complete, so a receive that timed out, was
cancelled or failed loses nothing: the next one sees the bytes (at the end of
the stream or on a reset they go into the error's ``partial`` instead).
"""

from __future__ import annotations

import errno
import functools
import inspect
import ipaddress
import os
import socket
import ssl as _ssl
import sys
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any

from . import _kernel
from ._errors import (
    ConnectionClosed,
    ConnectionReset,
    CoserveError,
    DataBeforeHandshake,
    DatagramTooLarge,
    ForeignAwaitable,
    LineTooLong,
    SocketClosed,
)
from ._kernel import _READ, Sentinel, native_coroutine, wait_readable, wait_writable
from ._sync import Event
from ._threads import run_in_thread
from ._time import _YIELD, check_seconds, move_on_after, sleep, timeout_after

__all__ = ["Socket", "connect", "connect_unix", "handler", "open_udp", "sni_context", "wrap"]

_KEEP: Any = Sentinel("<unchanged>")
_CONNECT_TIMEOUT: Any = Sentinel("<connect_timeout>")  # handshake(): the socket's connect_timeout
_STREAK = 16  # operations in a row without waiting before one yields
_CHUNK = 65536  # what a pattern asks the system for at a time
_MAX_READ = 1 << 20  # the most one recv may allocate, whatever was asked for
_MAX_DATAGRAM = 65536  # more than an IP datagram's payload can be (65,535 bytes at most)
_SEND_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)  # a vanished peer is an error, never a SIGPIPE


def _closed_error() -> SocketClosed:
    return SocketClosed("the socket was closed while this task was waiting on it")


def _outside_task(what: str) -> CoserveError:
    """The error for a socket operation that no coserve task is running (made only on that path)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        return ForeignAwaitable(
            f"{what} was awaited in asyncio's event loop; coserve sockets work only in coserve tasks "
            "(run the code with coserve.run(), or use asyncio's own streams there)"
        )
    return CoserveError(f"{what} must be awaited inside a coserve task (spawn() it, or pass it to run())")


def _bad_max(what: str, value: Any, least: int) -> Exception:
    if type(value) is not int:
        return TypeError(f"{what} takes a number of bytes (an int), not {value!r}")
    return ValueError(f"{what} needs a number of bytes >= {least}, not {value!r}")


def _check_timeout(what: str, value: Any) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0
    ):
        raise ValueError(f"{what} must be a number of seconds >= 0 or None, not {value!r}")


def make_ssl_context(ssl: Any, server_side: bool) -> _ssl.SSLContext:
    """``True`` means the system's default context (verifying); an SSLContext is used as given."""
    if isinstance(ssl, _ssl.SSLContext):
        return ssl
    if ssl is True:
        if server_side:
            raise ValueError("a TLS server needs an ssl.SSLContext with its certificate, not ssl=True")
        return _ssl.create_default_context()
    raise TypeError(f"ssl must be True or an ssl.SSLContext, not {ssl!r}")


class _SniRecorder:
    """A server context's ``sni_callback`` that keeps the name each client asked for.

    Python's ssl hands the SNI name of a server-side handshake only to the
    context's callback; this one records it on the TLS socket (for
    :attr:`Socket.server_hostname`) and then calls the application's own
    callback, if it set one, whose answer (an alert or None) is returned.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Callable[..., Any] | None) -> None:
        self.inner = inner

    def __call__(self, sslsock: Any, name: str | None, ctx: _ssl.SSLContext) -> Any:
        sslsock._coserve_sni = name
        return self.inner(sslsock, name, ctx) if self.inner is not None else None


def _record_sni(ctx: _ssl.SSLContext) -> None:
    """Put a :class:`_SniRecorder` in front of *ctx*'s callback (again, if it was replaced)."""
    cb = ctx.sni_callback
    if type(cb) is not _SniRecorder:
        ctx.sni_callback = _SniRecorder(cb)


def sni_context(names: Mapping[str, _ssl.SSLContext], *, strict: bool = False) -> _ssl.SSLContext:
    """A server context that picks its certificate by the name the client asks for (SNI).

    *names* maps host names (``"*.example.com"`` matches one label) to the
    server context holding that name's certificate; the first one is the
    default, served to a client that sends no name. With *strict*, a client
    whose name matches none is refused with TLS's ``unrecognized_name`` alert
    (Copas's ``sni = {names = ..., strict = true}``, LuaSec's ``ctx:sni(names, true)``);
    without, it gets the default certificate (which it will usually not accept).
    Returns that default context, with its ``sni_callback`` set: give it to
    :func:`serve_tcp`, :func:`handler` or :meth:`Socket.handshake`.
    """
    if not names:
        raise ValueError("sni_context() needs at least one name and its context")
    table: dict[str, _ssl.SSLContext] = {}
    for name, ctx in names.items():
        if not isinstance(ctx, _ssl.SSLContext):
            raise TypeError(f"the context for {name!r} must be an ssl.SSLContext, not {ctx!r}")
        table[name.lower().rstrip(".")] = ctx
    default = next(iter(names.values()))

    def lookup(name: str) -> _ssl.SSLContext | None:
        name = name.lower().rstrip(".")
        found = table.get(name)
        if found is None and "." in name:
            found = table.get("*." + name.split(".", 1)[1])
        return found

    def choose(sslsock: Any, name: str | None, ctx: _ssl.SSLContext) -> int | None:
        if name is None:
            return None  # no SNI: the default certificate
        chosen = lookup(name)
        if chosen is None:
            return _ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME if strict else None
        if chosen is not ctx:
            sslsock.context = chosen
        return None

    default.sni_callback = choose
    return default


class Socket:
    """A socket for coserve tasks: ``receive``, ``send`` and friends wait without blocking the loop.

    Create one with :func:`connect`, :func:`connect_unix`, :func:`open_udp` or
    :func:`wrap`; servers pass one to each handler.
    """

    __slots__ = (
        "_born",
        "_closed",
        "_drained",
        "_fd",
        "_name",
        "_plain",
        "_rbuf",
        "_received",
        "_sent",
        "_sock",
        "_ssl",
        "_streak",
        "_stream",
        "connect_timeout",
        "max_line",
        "receive_timeout",
        "send_timeout",
    )

    def __init__(self, sock: socket.socket, ssl: Any = None) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        k = _kernel._K
        if k is not None and self._fd in k._fds:
            k.claim_fd(self._fd)  # the number was known: perhaps a file closed behind our back
        self._rbuf: bytes | bytearray = b""  # a bytearray once a pattern leaves bytes over
        self._ssl = ssl  # the context a later handshake() uses by default
        self._stream = sock.type == socket.SOCK_STREAM
        self._plain = self._stream and not isinstance(sock, _ssl.SSLSocket)  # the direct paths apply
        self._closed = False
        # A new socket has (almost always) nothing to read yet: its first receive waits first.
        self._drained = self._plain
        self._streak = 0
        self._name: str | None = None
        self._received = 0
        self._sent = 0
        self._born = k.time() if k is not None else _kernel.time.monotonic()
        #: The longest line ``receive("*l")`` accepts before raising :class:`coserve.LineTooLong`.
        self.max_line = 65536
        #: Seconds a receive may wait for data (None: forever); see :meth:`settimeouts`.
        self.receive_timeout: float | None = None
        #: Seconds a send may wait for the peer (None: forever).
        self.send_timeout: float | None = None
        #: Seconds a connect or TLS handshake may take (None: forever).
        self.connect_timeout: float | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<coserve.Socket {self.name!r} {state} {'tls' if self.tls else 'plain'}>"

    @property
    def name(self) -> str:
        """A name for error reports and logs (Copas's ``getsocketname``); settable (``setsocketname``).

        A server names each connection's socket as its task, ``{server}:client_N``;
        otherwise it is ``socket-<fd>`` until one is set.
        """
        return self._name or f"socket-{self._fd}"

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a socket's name is a str, not {value!r}")
        self._name = value

    def stats(self) -> dict[str, Any]:
        """Bytes ``received`` and ``sent`` so far, and ``age`` in seconds (Copas's ``getstats``)."""
        k = _kernel._K
        now = k.time() if k is not None else _kernel.time.monotonic()
        return {"received": self._received, "sent": self._sent, "age": now - self._born}

    def gettimeouts(self) -> dict[str, float | None]:
        """The ``connect``, ``send`` and ``receive`` timeouts, as :meth:`settimeouts` takes them."""
        return {"connect": self.connect_timeout, "send": self.send_timeout, "receive": self.receive_timeout}

    # -- the one place that waits ---------------------------------------------------

    async def _io(self, op: Callable[..., Any], *args: Any, write: bool = False) -> Any:
        """Call ``op(*args)``; whenever it would block, wait for the socket and call it again.

        Would-block waits in the operation's own direction (*write*); TLS says
        which direction it needs with want-read and want-write.
        """
        if self._streak >= _STREAK:
            # Never starve the other tasks. The turn is taken *before* the call, never with its
            # result in hand: a cancellation delivered here loses nothing.
            self._streak = 0
            await sleep(0)
        if self._closed:
            raise SocketClosed("the socket is closed")
        while True:
            try:
                result = op(*args)
            except BlockingIOError:
                want_write = write
            except _ssl.SSLWantReadError:
                want_write = False
            except _ssl.SSLWantWriteError:
                want_write = True
            else:
                self._streak += 1
                return result
            self._streak = 0
            timeout = self.send_timeout if write else self.receive_timeout
            if want_write:
                await wait_writable(self._fd, timeout)
            else:
                await wait_readable(self._fd, timeout)
            # close() wakes a waiter with SocketClosed; but a task woken by the same poll may have
            # closed the socket after this one was woken and before it ran.
            if self._closed:
                raise _closed_error()

    async def _recv(self, n: int) -> bytes:
        """At least one byte (up to *n*), or b"" at the end of the stream."""
        if self._drained:
            if self._closed:  # closed by another task since this one last ran: no wait on its fd
                raise SocketClosed("the socket is closed")
            self._drained = False
            self._streak = 0
            await wait_readable(self._fd, self.receive_timeout)
        data: bytes = await self._io(self._sock.recv, n)
        got = len(data)
        self._received += got
        if got < n and self._plain:
            self._drained = True
        return data

    # -- receiving ---------------------------------------------------------------

    async def receive(self, pattern: str | int = "*l", prefix: bytes = b"") -> bytes:
        """Receive by Copas's patterns, with *prefix* put in front of the result.

        - ``"*l"``: one line; it ends with LF, CR characters are ignored, and the
          end of line is not returned. Longer than :attr:`max_line`: :class:`coserve.LineTooLong`.
        - ``"*a"``: everything until the peer closes the connection.
        - an int *n*: exactly *n* bytes, the prefix included (as LuaSocket: ``receive(5, b"ab")``
          receives 3 bytes and returns 5; a prefix of *n* bytes or more is returned as it is).
          On a UDP socket: one datagram of at most *n* bytes, after the prefix.

        If the connection closes first, :class:`coserve.ConnectionClosed` is raised
        and its ``partial`` holds what arrived (prefix included); if the peer resets
        it, :class:`coserve.ConnectionReset` (a ConnectionClosed and a
        ConnectionResetError). A receive that times out or is cancelled loses
        nothing: what it received stays buffered for the next receive.
        """
        k = _kernel._K
        if k is None or k._current is None:
            raise _outside_task("Socket.receive()")
        if self._streak >= _STREAK:  # a turn for the others, before serving anything (see _io)
            self._streak = 0
            await sleep(0)
        if self._closed:
            raise SocketClosed("the socket is closed")
        if not self._stream and (pattern == "*l" or pattern == "*a"):
            raise ValueError(
                f"receive({pattern!r}) would merge datagrams on a UDP socket; "
                "receive one with receive(n) or receive_from()"
            )
        try:
            if pattern == "*l":
                buf = self._rbuf
                i = buf.find(b"\n")
                if i >= 0:  # served from the buffer: no system call, but it counts as an operation
                    self._streak += 1
                    line = bytes(buf[:i])
                    del buf[: i + 1]  # type: ignore[union-attr]  # a non-empty buffer is a bytearray
                    if b"\r" in line:
                        line = line.replace(b"\r", b"")
                else:
                    line = await self._receive_line(prefix, len(buf))
                return prefix + line if prefix else line
            if pattern == "*a":
                return prefix + await self._receive_all()
            if isinstance(pattern, int) and not isinstance(pattern, bool) and pattern >= 0:
                if not self._stream:
                    data, _ = await self.receive_from(pattern)
                    return prefix + data
                if prefix:
                    # LuaSocket counts the prefix toward n (receive(5, b"ab") returns 5 bytes in all):
                    # that is what lets a timed-out partial read be resumed with its partial as prefix.
                    pattern -= len(prefix)
                    if pattern <= 0:
                        return prefix
                buf = self._rbuf
                if len(buf) < pattern:
                    return await self._receive_exactly(pattern, prefix)
                self._streak += 1  # served from the buffer
                out = bytes(buf[:pattern])
                del buf[:pattern]  # type: ignore[union-attr]
                return prefix + out if prefix else out
        except ConnectionResetError as e:
            if isinstance(e, ConnectionClosed):
                raise
            raise ConnectionReset(self._take_partial(prefix)) from e
        raise ValueError(f'receive pattern must be "*l", "*a" or a number of bytes >= 0, not {pattern!r}')

    def _buffer(self) -> bytearray:
        buf = self._rbuf
        if type(buf) is not bytearray:
            buf = self._rbuf = bytearray(buf)
        return buf

    def _take_partial(self, prefix: bytes) -> bytes:
        """The pattern cannot complete: hand over everything buffered (it goes into ``partial``)."""
        partial = prefix + bytes(self._rbuf)
        self._rbuf = b""
        return partial

    # Every pattern appends what it receives to the socket's buffer at once, and takes its result
    # out only when it is complete: a timeout, a cancellation or an error at any wait leaves the
    # bytes where the next receive finds them.

    async def _receive_line(self, prefix: bytes, start: int) -> bytes:
        """A line, searching the buffer from *start* (receive() looked at the bytes before it)."""
        buf = self._buffer()
        while True:
            i = buf.find(b"\n", start)
            if i >= 0:
                line = bytes(buf[:i])
                del buf[: i + 1]
                return line.replace(b"\r", b"") if b"\r" in line else line
            if len(buf) > self.max_line:
                raise LineTooLong(
                    f"no end of line in the first {len(buf)} bytes (max_line is {self.max_line})"
                )
            start = len(buf)
            data = await self._recv(_CHUNK)
            if not data:
                raise ConnectionClosed(self._take_partial(prefix))
            buf += data

    async def _receive_exactly(self, n: int, prefix: bytes) -> bytes:
        buf = self._buffer()
        while len(buf) < n:
            # Read ahead a little, but never allocate more than _MAX_READ at once: memory grows
            # with what arrives, not with what was asked for.
            want = n - len(buf)
            data = await self._recv(_CHUNK if want < _CHUNK else want if want < _MAX_READ else _MAX_READ)
            if not data:
                raise ConnectionClosed(self._take_partial(prefix))
            if not buf and len(data) == n:
                return prefix + data if prefix else data
            buf += data
        out = bytes(buf[:n])
        del buf[:n]
        return prefix + out if prefix else out

    async def _receive_all(self) -> bytes:
        buf = self._buffer()
        while True:
            data = await self._recv(_CHUNK)
            if not data:
                self._rbuf = b""
                return bytes(buf)
            buf += data

    def unreceive(self, data: bytes) -> None:
        """Put *data* back in front of what the next receive returns.

        For bytes read ahead by a layer above, such as what followed a PROXY protocol header.
        """
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"unreceive() takes bytes, not {type(data).__name__}")
        if data:
            self._rbuf = bytearray(data) + self._rbuf

    @native_coroutine
    def receive_partial(self, max: int = 65536) -> Generator[Any, Any, bytes]:
        """Whatever has arrived, at least one byte and at most *max*; ``b""`` at the end of the stream."""
        # A generator-based coroutine that yields the kernel's trap itself: an idle connection's
        # handler waits here, so every frame saved is memory saved per connection.
        if type(max) is not int or max < 1:  # 0 would return b"", which means the end of the stream
            raise _bad_max("receive_partial()", max, 1)
        k = _kernel._K
        if k is None or k._current is None:
            raise _outside_task("Socket.receive_partial()")
        if self._streak >= _STREAK:  # a turn for the others, before the recv (see _io)
            self._streak = 0
            yield _YIELD
        if self._closed:
            raise SocketClosed("the socket is closed")
        buf = self._rbuf
        if buf:  # served from the buffer: no system call, but it counts toward the starve rule
            self._streak += 1
            out = bytes(buf[:max])
            del buf[:max]  # type: ignore[union-attr]  # a non-empty buffer is a bytearray
            return out
        if max > _MAX_READ:  # "at most max": never allocate a huge buffer for one recv
            max = _MAX_READ
        if self._plain:
            # The direct path of a plain stream socket: the recv inline, no extra frame.
            if self._drained:
                self._drained = False
                self._streak = 0
                yield (_READ, self._fd, self.receive_timeout)
                if self._closed:  # by a task that ran after this one was woken (see _io)
                    raise _closed_error()
            try:
                data = self._sock.recv(max)
            except BlockingIOError:
                data = None  # the slow path is awaited outside this except: no exception kept alive
            if data is not None:
                n = len(data)
                self._received += n
                if n < max:
                    self._drained = True
                self._streak += 1
                return data
        if not self._stream:
            data, _ = yield from self.receive_from(max).__await__()
            return data
        return (yield from self._recv(max).__await__())

    async def receive_from(self, max: int = 8192) -> tuple[bytes, Any]:
        """One datagram and its sender's address (UDP only).

        A datagram larger than *max* raises :class:`coserve.DatagramTooLarge`
        (holding its first *max* bytes) instead of being cut silently.
        """
        if type(max) is not int or max < 0:
            raise _bad_max("receive_from()", max, 0)
        k = _kernel._K
        if k is None or k._current is None:
            raise _outside_task("Socket.receive_from()")
        if self._stream:
            raise CoserveError("receive_from() is for UDP sockets; use receive() on a stream socket")
        size = max + 1  # one more: a datagram larger than max is reported, not cut silently
        if size > _MAX_DATAGRAM and self._sock.family in (socket.AF_INET, socket.AF_INET6):
            size = _MAX_DATAGRAM  # an IP datagram cannot be larger: allocate no more
        data, addr = await self._io(self._sock.recvfrom, size)
        self._received += len(data)
        if len(data) > max:
            raise DatagramTooLarge(data[:max], addr, max)
        return data, addr

    # -- sending -----------------------------------------------------------------

    @native_coroutine
    def send(self, data: bytes | bytearray | memoryview) -> Generator[Any, Any, int]:
        """Send all of *data*, waiting for the peer as needed; returns the number of bytes sent.

        Nothing is buffered: while the peer does not read, the sender waits
        (that is the backpressure).
        """
        k = _kernel._K
        if k is None or k._current is None:
            raise _outside_task("Socket.send()")
        if self._streak >= _STREAK:  # a turn for the others, before the send (see _io)
            self._streak = 0
            yield _YIELD
        if self._plain and not self._closed:
            total = len(data) if type(data) is bytes else memoryview(data).nbytes
            try:  # the direct path: most sends complete at once
                n = self._sock.send(data, _SEND_FLAGS)
            except BlockingIOError:
                n = 0
            if n == total:
                self._streak += 1
                self._sent += n
                return n
            return (yield from self._send_rest(data, n).__await__())
        return (yield from self._send_rest(data, 0).__await__())

    async def _send_rest(self, data: bytes | bytearray | memoryview, n: int) -> int:
        sock = self._sock
        if not self._stream:
            sent: int = await self._io(sock.send, data, write=True)
            self._sent += sent
            return sent
        view = memoryview(data).cast("B")
        total = len(view)
        flags = (_SEND_FLAGS,) if self._plain else ()
        self._sent += n
        while n < total:
            sent = await self._io(sock.send, view[n:], *flags, write=True)
            n += sent
            self._sent += sent
        return total

    async def send_to(self, data: bytes, addr: Any) -> int:
        """Send one datagram to *addr* (UDP only)."""
        k = _kernel._K
        if k is None or k._current is None:
            raise _outside_task("Socket.send_to()")
        if self._stream:
            raise CoserveError("send_to() is for UDP sockets; use send() on a stream socket")
        sent: int = await self._io(self._sock.sendto, data, addr, write=True)
        self._sent += sent
        return sent

    # -- timeouts ------------------------------------------------------------------

    def settimeout(self, timeout: float | None) -> None:
        """Set the connect, send and receive timeouts at once (seconds; None waits forever)."""
        _check_timeout("the timeout given to settimeout()", timeout)
        self.connect_timeout = self.send_timeout = self.receive_timeout = timeout

    def settimeouts(
        self, connect: float | None = _KEEP, send: float | None = _KEEP, receive: float | None = _KEEP
    ) -> None:
        """Set the per-operation timeouts; each wait restarts when the operation makes progress.

        Expiry raises :class:`TimeoutError`; the socket stays usable.
        """
        changes = (("connect", connect), ("send", send), ("receive", receive))
        for name, value in changes:  # all checked before any is set
            if value is not _KEEP:
                _check_timeout(f"the {name} timeout", value)
        for name, value in changes:
            if value is not _KEEP:
                setattr(self, f"{name}_timeout", value)

    # -- TLS -------------------------------------------------------------------------

    async def handshake(
        self,
        ssl: Any = None,
        *,
        server_side: bool | None = None,
        server_hostname: str | None = None,
        timeout: float | None = _CONNECT_TIMEOUT,
        session: _ssl.SSLSession | None = None,
    ) -> Socket:
        """Do the TLS handshake (Copas's ``dohandshake``); returns the socket.

        *ssl* is True (the system's default client context, which verifies the
        peer's certificate and host name) or an :class:`ssl.SSLContext`.
        *timeout* defaults to the connect timeout. *session* (a client's only)
        resumes the TLS session of another connection (its :attr:`tls_session`)
        made with the same context: FTPS servers require it of data connections.

        Received bytes that no receive has returned yet arrived in clear before
        the handshake: the peer had no right to send them (after STARTTLS it must
        wait for the handshake), and they must never pass for protected data. So
        the handshake refuses to start, before it sends anything: the bytes are
        discarded and :class:`coserve.DataBeforeHandshake` (an ``ssl.SSLError``)
        is raised.
        """
        k = _kernel._K
        if k is None or k._current is None:
            raise _outside_task("Socket.handshake()")
        ctx = make_ssl_context(ssl if ssl is not None else self._ssl or True, bool(server_side))
        if self._closed:
            raise SocketClosed("the socket is closed")
        if self._rbuf:
            discarded = len(self._rbuf)
            self._rbuf = b""
            raise DataBeforeHandshake(discarded)
        sock = self._sock
        if not isinstance(sock, _ssl.SSLSocket):
            if server_side:
                _record_sni(ctx)
            sock = ctx.wrap_socket(
                sock,
                server_side=bool(server_side),
                server_hostname=server_hostname if not server_side else None,
                do_handshake_on_connect=False,
                suppress_ragged_eofs=False,
                session=session if not server_side else None,
            )
            self._sock = sock
        self._ssl = ctx
        self._plain = False
        self._drained = False  # the TLS library may hold decrypted bytes that the poller cannot see
        limit = self.connect_timeout if timeout is _CONNECT_TIMEOUT else timeout
        async with timeout_after(limit):
            await self._io(sock.do_handshake)
        return self

    @property
    def tls(self) -> bool:
        """True once the socket speaks TLS."""
        return isinstance(self._sock, _ssl.SSLSocket)

    @property
    def tls_session(self) -> _ssl.SSLSession | None:
        """The TLS session once the handshake is done (for :meth:`handshake`'s *session*), or None."""
        sock = self._sock
        return sock.session if isinstance(sock, _ssl.SSLSocket) else None

    @property
    def tls_session_reused(self) -> bool:
        """True if the TLS handshake resumed the session it was given."""
        sock = self._sock
        return isinstance(sock, _ssl.SSLSocket) and bool(sock.session_reused)

    @property
    def alpn(self) -> str | None:
        """The ALPN protocol the TLS handshake selected (Copas's ``getalpn``), or None."""
        sock = self._sock
        return sock.selected_alpn_protocol() if isinstance(sock, _ssl.SSLSocket) else None

    @property
    def server_hostname(self) -> str | None:
        """The host name of the TLS handshake's SNI, or None.

        On a client, the name it sent and checked the certificate against; on a
        server, the name the client asked for (None if it sent none, as a client
        connecting to an IP address does). The server learns it through its
        context's ``sni_callback``, which coserve wraps: a callback the
        application set is still called, with the same arguments.
        """
        sock = self._sock
        if not isinstance(sock, _ssl.SSLSocket):
            return None
        if sock.server_side:
            return getattr(sock, "_coserve_sni", None)
        return sock.server_hostname

    def getpeercert(self) -> Any:
        """The peer's certificate, as :meth:`ssl.SSLSocket.getpeercert` gives it (None without TLS)."""
        sock = self._sock
        return sock.getpeercert() if isinstance(sock, _ssl.SSLSocket) else None

    # -- a wrapped socket's own connect, bind, listen and accept (Copas's sock:connect ...) -----

    async def connect(self, host: str, port: int | None = None) -> Socket:
        """Connect this socket to *host*:*port* (a Unix socket: the path, no port); returns it.

        Waits at most the connect timeout. If the socket was wrapped with *ssl*
        (``wrap(sock, ssl)``), the TLS handshake is done too, for *host*, so the
        connection is secured when this returns (Copas's outgoing pattern
        ``wrap(socket, sslparams):connect(host, port)``). For new connections,
        :func:`coserve.connect` does more (every address, happy eyeballs).
        """
        k = _kernel._K
        if k is None or k._current is None:
            raise _outside_task("Socket.connect()")
        if self._closed:
            raise SocketClosed("the socket is closed")
        sock = self._sock
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            if port is None:
                raise TypeError("connect() on an internet socket takes a host and a port")
            infos = [i for i in await _resolve(host, port, sock.type) if i[0] == sock.family]
            if not infos:
                raise OSError(f"no {sock.family.name} address found for {host!r}")
            address: Any = infos[0][4]
        else:
            address = host
        async with timeout_after(self.connect_timeout):
            err = sock.connect_ex(address)
            if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                await wait_writable(self._fd)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {address!r} failed: {os.strerror(err)}")
        if self._stream and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            await self.handshake(self._ssl, server_side=False, server_hostname=host)
        return self

    def bind(self, address: Any) -> None:
        """Bind the socket to *address* (as :meth:`socket.socket.bind`)."""
        self._sock.bind(address)

    def listen(self, backlog: int = 128) -> None:
        """Listen for connections (as :meth:`socket.socket.listen`); then :meth:`accept` them."""
        self._sock.listen(backlog)

    async def accept(self) -> Socket:
        """Wait for a connection and return its :class:`Socket` (with the listener's timeouts).

        If the listening socket was wrapped with an ``ssl.SSLContext``, the
        server side of the TLS handshake is done before it is returned. For
        a server, :func:`coserve.serve_tcp` / :func:`coserve.add_server` does more.
        """
        k = _kernel._K
        if k is None or k._current is None:
            raise _outside_task("Socket.accept()")
        conn, _ = await self._io(self._sock.accept)
        client = Socket(conn, self._ssl)
        try:
            client.settimeouts(**self.gettimeouts())
            if isinstance(self._ssl, _ssl.SSLContext):
                await client.handshake(self._ssl, server_side=True)
        except BaseException:
            client.close()
            raise
        return client

    # -- the rest ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the socket; a task waiting on it is woken with :class:`coserve.SocketClosed`."""
        if self._closed:
            return
        self._closed = True
        k = _kernel._K
        # A raw socket closed directly has given its number up: it may be another file's now.
        if k is not None and self._sock.fileno() == self._fd:
            k.forget_fd(self._fd, _closed_error)
        self._sock.close()

    def detach(self) -> socket.socket:
        """Hand the underlying socket back, open, and close this :class:`Socket` without closing it.

        The kernel forgets the fd first (a task waiting on this Socket gets
        :class:`coserve.SocketClosed`), so the socket may then be closed, given to
        another library or wrapped again. Received bytes that no receive has
        returned yet would be lost, so detaching with some buffered raises
        :class:`coserve.CoserveError`: read them first (``receive_partial()``).
        """
        if self._closed:
            raise SocketClosed("the socket is closed")
        if self._rbuf:
            raise CoserveError(
                f"{len(self._rbuf)} received bytes are still buffered in this Socket; "
                "read them (receive_partial()) before detach()"
            )
        self._closed = True
        k = _kernel._K
        if k is not None:
            k.forget_fd(self._fd, _closed_error)
        return self._sock

    async def aclose(self) -> None:
        """Close the socket; on TLS, first try to say close_notify (without waiting for the peer)."""
        self._close_politely()

    def _close_politely(self) -> None:
        sock = self._sock
        if isinstance(sock, _ssl.SSLSocket) and not self._closed:
            try:
                sock.unwrap()
            except (OSError, ValueError):
                pass  # the peer is gone or not listening: closing is all that is left
        self.close()

    def __del__(self) -> None:
        # Dropped without close(): the socket object will close the fd (with its own
        # ResourceWarning), so the kernel must forget it first, or a later socket that gets the
        # same number would be believed registered and never woken.
        if not self._closed and self._sock.fileno() == self._fd:  # a raw close already gave the number up
            k = _kernel._K
            if k is not None:
                k.forget_fd(self._fd)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def shutdown(self, how: int) -> None:
        """Shut down one or both directions (``socket.SHUT_WR`` for a half-close).

        On TLS the TLS layer stays in place whatever *how* is (``ssl.SSLSocket.shutdown``
        would drop it: later receives would return raw TLS records, and sends after
        ``SHUT_RD`` would go out in clear). A TLS half-close (``SHUT_WR``, alone) is
        refused with :class:`coserve.CoserveError` before anything is sent: it would
        have to send close_notify and go on reading, and the ssl module cannot do that
        (``SSLSocket.unwrap()``, the only way to send close_notify, then reads for the
        peer's close_notify, and OpenSSL fails the connection with
        APPLICATION_DATA_AFTER_CLOSE_NOTIFY if application data comes first, losing it).
        """
        sock = self._sock
        if self._closed:
            raise SocketClosed("the socket is closed")
        if isinstance(sock, _ssl.SSLSocket):
            if how == socket.SHUT_WR:
                raise CoserveError(
                    "a TLS connection cannot be half-closed: that means sending close_notify and "
                    "reading on, which Python's ssl module cannot do without risking the peer's data; "
                    "end the request in the protocol itself, or aclose() when done"
                )
            socket.socket.shutdown(sock, how)  # below the TLS layer, which stays in place
            return
        sock.shutdown(how)

    def getpeername(self) -> Any:
        """The peer's address."""
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        """The address of this end of the socket."""
        return self._sock.getsockname()

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        """Set a socket option (as :meth:`socket.socket.setsockopt`)."""
        self._sock.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, *args: Any) -> Any:
        """Read a socket option (as :meth:`socket.socket.getsockopt`)."""
        return self._sock.getsockopt(level, option, *args)

    def fileno(self) -> int:
        """The file descriptor (-1 once closed)."""
        return -1 if self._closed else self._fd

    @property
    def socket(self) -> socket.socket:
        """The underlying socket object (non-blocking; use it only for what Socket does not offer)."""
        return self._sock

    async def __aenter__(self) -> Socket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def wrap(sock: socket.socket | Socket, ssl: Any = None) -> Socket:
    """Adopt a plain socket (made non-blocking) as a coserve :class:`Socket` (Copas's ``wrap``).

    With *ssl*, a later :meth:`Socket.handshake` uses that context, and so do
    :meth:`Socket.connect` (client) and :meth:`Socket.accept` (server), which
    do the handshake themselves. A :class:`Socket` is returned unchanged.
    """
    if isinstance(sock, Socket):  # already wrapped: returned as it is (Copas's wrap does the same)
        return sock
    if not isinstance(sock, socket.socket):
        raise TypeError(f"wrap() takes a socket.socket, not {type(sock).__name__}")
    return Socket(sock, ssl)


def check_handler(handler: Any, what: str = "a server's handler") -> None:
    """Refuse, before anything runs, a handler that cannot be called as ``await handler(sock)``.

    It must be an async function (``async def``, a ``functools.partial`` of one,
    a bound method, or an object with an ``async def __call__``) that takes one
    positional argument, the connection's :class:`Socket`.
    """
    if not callable(handler):
        raise TypeError(f"{what} must be an async function taking a Socket, not {handler!r}")
    name = getattr(handler, "__qualname__", None) or repr(handler)
    # An instance is called through its class's __call__; functions, methods and partials directly.
    direct = inspect.isroutine(handler) or isinstance(handler, functools.partial)
    call = handler if direct else type(handler).__call__
    if not inspect.iscoroutinefunction(call):
        raise TypeError(f"{what} must be an async function (async def handler(sock): ...), but {name} is not")
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # pragma: no cover - no signature to check (a C callable)
        return
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(
            f"{what} is called with one argument, the connection's Socket, "
            f"but {name}{signature} cannot take it"
        ) from None


def handler(
    func: Callable[[Socket], Awaitable[Any]], ssl: Any = None, *, handshake_timeout: float | None = 60.0
) -> Callable[[Socket], Awaitable[Any]]:
    """Wrap a handler so the TLS handshake is done before *func* runs (Copas's ``handler``).

    The handshake must finish within *handshake_timeout* seconds (None: no
    limit), or :class:`TimeoutError` is raised in the connection's task.
    """
    check_handler(func, "the handler given to coserve.handler()")
    limit = check_seconds(handshake_timeout, "handshake_timeout")
    context = make_ssl_context(ssl, server_side=True) if ssl is not None else None

    async def tls_handler(sock: Socket) -> Any:
        if context is not None:
            await sock.handshake(context, server_side=True, timeout=limit)
        return await func(sock)

    tls_handler.__name__ = getattr(func, "__name__", "handler")
    tls_handler.__qualname__ = getattr(func, "__qualname__", "handler")
    return tls_handler


# --- connecting ---------------------------------------------------------------------------

#: RFC 8305's "Connection Attempt Delay": start the next address if this one has not connected yet.
HAPPY_EYEBALLS_DELAY = 0.25


async def _resolve(host: str, port: int, type: int) -> list[tuple[Any, ...]]:
    """getaddrinfo, off the loop; a literal address needs no lookup (nor a thread)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = await run_in_thread(socket.getaddrinfo, host, port, 0, type)
        if not infos:  # pragma: no cover - getaddrinfo raises instead
            raise OSError(f"no address found for {host!r}") from None
        return infos
    if ip.version == 6:
        return [(socket.AF_INET6, type, 0, "", (host, port, 0, 0))]
    return [(socket.AF_INET, type, 0, "", (host, port))]


def _interleave(infos: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """RFC 8305 ordering: alternate address families, starting with the first one given."""
    by_family: dict[int, list[tuple[Any, ...]]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    out: list[tuple[Any, ...]] = []
    lists = list(by_family.values())
    while any(lists):
        for lst in lists:
            if lst:
                out.append(lst.pop(0))
    return out


async def _connect_one(info: tuple[Any, ...], local_addr: Any) -> socket.socket:
    family, type_, proto, _, addr = info
    sock = socket.socket(family, type_, proto)
    fd = sock.fileno()
    k = _kernel._K
    if k is not None and fd in k._fds:
        k.claim_fd(fd)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        err = sock.connect_ex(addr)
        if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            await wait_writable(fd)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {addr!r} failed: {os.strerror(err)}")
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except BaseException:
        k = _kernel._K
        if k is not None:
            k.forget_fd(fd)
        sock.close()
        raise


async def _happy_eyeballs(infos: list[tuple[Any, ...]], local_addr: Any) -> socket.socket:
    """Connect to the first address that answers, starting one more every 250 ms (RFC 8305)."""
    infos = _interleave(infos)
    if len(infos) == 1:
        return await _connect_one(infos[0], local_addr)
    winner: list[socket.socket] = []
    errors: list[OSError] = []
    changed = Event()
    attempts: list[_kernel.Task[Any]] = []
    k = _kernel.get_kernel()

    async def attempt(info: tuple[Any, ...]) -> None:
        try:
            sock = await _connect_one(info, local_addr)
        except OSError as e:
            errors.append(e)
        else:
            if winner:  # a faster one won meanwhile
                k.forget_fd(sock.fileno())
                sock.close()
            else:
                winner.append(sock)
        changed.set()

    try:
        for info in infos:
            attempts.append(k.spawn(attempt, (info,), None))
            async with move_on_after(HAPPY_EYEBALLS_DELAY):
                while not winner and len(errors) < len(attempts):
                    changed.clear()
                    await changed.wait()
            if winner:
                break
        while not winner and len(errors) < len(attempts):
            changed.clear()
            await changed.wait()
    finally:
        for t in attempts:
            t.cancel()
        for t in attempts:
            try:
                await t
            except BaseException:  # a cancelled attempt has cleaned up after itself
                pass
    if winner:
        return winner[0]
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"could not connect to any address: {'; '.join(str(e) for e in errors)}")


async def connect(
    host: str,
    port: int,
    *,
    ssl: Any = None,
    server_hostname: str | None = None,
    timeout: float | None = None,
    local_addr: Any = None,
) -> Socket:
    """Open a TCP connection and return its :class:`Socket`.

    The name is resolved off the loop; every address is tried, IPv6 and IPv4
    interleaved, a new one every 250 ms until one answers (RFC 8305 happy
    eyeballs). With *ssl* (True for the system's default context, or an
    ``ssl.SSLContext``) the TLS handshake is done too, verifying the server's
    certificate for *server_hostname* (default: *host*). *timeout* bounds the
    whole connect, and becomes the socket's connect timeout.
    """
    async with timeout_after(timeout):
        infos = await _resolve(host, port, socket.SOCK_STREAM)
        sock = Socket(await _happy_eyeballs(infos, local_addr))
        try:
            sock.settimeouts(connect=timeout)
            if ssl is not None and ssl is not False:
                await sock.handshake(
                    ssl, server_side=False, server_hostname=server_hostname or host, timeout=None
                )
        except BaseException:
            sock.close()
            raise
    return sock


async def connect_unix(path: str) -> Socket:
    """Open a connection to the Unix socket at *path*."""
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock = Socket(raw)
    try:
        err = raw.connect_ex(path)
        if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            await wait_writable(sock._fd)
            err = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {path!r} failed: {os.strerror(err)}")
    except BaseException:
        sock.close()
        raise
    return sock


async def open_udp(local_addr: Any = None, remote_addr: Any = None) -> Socket:
    """A UDP socket, bound to *local_addr* and/or connected to *remote_addr* (host, port)."""
    probe = remote_addr or local_addr or ("127.0.0.1", 0)
    family = socket.AF_INET6 if ":" in str(probe[0]) else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if local_addr is not None:
            raw.bind(local_addr)
        if remote_addr is not None:
            raw.connect(remote_addr)
    except BaseException:
        raw.close()
        raise
    return Socket(raw)
