"""Servers: a listening socket and a handler task per connection (Copas's ``addserver``).

A stream server is one accept-loop task. Each accepted connection becomes a
:class:`~coserve.Socket` and a task running ``handler(sock)``, named
``{name}:client_N``; the socket inherits the server's timeout and is closed
when the handler returns, however it returns. A UDP server is a single task
running the handler on the server socket itself, which is never closed for it.

The accept loop accepts while connections are waiting (yielding to other tasks
every 64), then waits for the listening socket. When the process runs out of
file descriptors (EMFILE/ENFILE) it neither spins nor gives up: it backs off
(50 ms doubling to 1 s), logs once per episode, and resumes when descriptors
free up; the connections waiting in the backlog are accepted then.

Servers are registered with the kernel: ``exit()`` closes them (they stop
accepting, their handlers finish), and they count as work for ``run()``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from ssl import SSLEOFError
from typing import Any

from . import _kernel
from ._errors import ConnectionClosed, CoserveError
from ._kernel import Task, WaitQueue, wait_readable
from ._socket import Socket, check_handler, make_ssl_context
from ._time import check_seconds, sleep

__all__ = ["Server", "add_server", "remove_server", "serve_tcp", "serve_udp", "serve_unix"]

logger = logging.getLogger("coserve")

Handler = Callable[[Socket], Awaitable[Any]]
RawSocket = socket.socket  # the module's name, for annotations where Server.socket shadows it
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ACCEPT_BATCH = 64
# What escapes a handler when the client, not the server, ended the conversation.
# (Not every ConnectionError: a handler refused by a backend it connects to has a real problem.)
_PEER_WENT_AWAY = (
    ConnectionClosed, ConnectionResetError, BrokenPipeError, ConnectionAbortedError, SSLEOFError,
)  # fmt: skip
#: How long a TLS client has to finish its handshake unless the server says otherwise (seconds).
DEFAULT_HANDSHAKE_TIMEOUT = 60.0


class Server:
    """A running server: ``address``, connection counts, ``close()`` and ``await wait_closed()``."""

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        timeout: float | None,
        name: str | None,
        ssl: Any = None,
        unix_path: str | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        # Everything is checked before the server starts: a bad argument is the caller's error,
        # raised here, never a dead accept loop behind a listener that is still open.
        check_handler(handler)
        self._timeout = check_seconds(timeout, "a server's timeout")
        self._handshake_timeout = check_seconds(handshake_timeout, "handshake_timeout")
        self._sock = sock
        self._handler = handler
        self._ssl = make_ssl_context(ssl, server_side=True) if ssl is not None else None
        self._unix_path = unix_path
        self._stream = sock.type == socket.SOCK_STREAM
        #: The listening address (host, port), or the Unix socket's path.
        self.address = sock.getsockname()
        #: A name for the server's tasks and logs.
        self.name = name or _default_name(sock, self.address)
        #: Connections accepted so far.
        self.accepted = 0
        #: Connections whose handler is still running.
        self.active = 0
        self._closed = False
        self._closed_waiters = WaitQueue()
        self._client_done_b = self._client_done  # bound once, not once per connection
        sock.setblocking(False)
        k = _kernel.get_kernel()
        self._kernel = k
        k.claim_fd(sock.fileno())  # the number may have belonged to a file closed behind our back
        if self._stream:
            self._task = k.spawn(self._accept_loop, (), f"{self.name}:accept")
        else:
            self._task = k.spawn(self._serve_datagrams, (), f"{self.name}:udp")
        k.servers[self] = self.close

    def __repr__(self) -> str:
        return f"<coserve.Server {self.name!r} {self.address!r} active={self.active}>"

    @property
    def timeout(self) -> float | None:
        """The timeout each connection's socket inherits (see Socket.settimeout); None: no limit."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = check_seconds(value, "a server's timeout")

    @property
    def handshake_timeout(self) -> float | None:
        """How long a TLS client has to finish its handshake (seconds, 60 by default; None: no limit).

        It bounds what a client can hold before the handler runs, whatever
        :attr:`timeout` is (as nginx bounds a client's first bytes with its
        ``client_header_timeout``). A client that runs out of time is closed.
        """
        return self._handshake_timeout

    @handshake_timeout.setter
    def handshake_timeout(self, value: float | None) -> None:
        self._handshake_timeout = check_seconds(value, "handshake_timeout")

    @property
    def socket(self) -> socket.socket:
        """The listening (or UDP) socket."""
        return self._sock

    @property
    def closed(self) -> bool:
        """True once the server stopped accepting."""
        return self._closed

    async def _accept_loop(self) -> None:
        k = self._kernel
        lsock = self._sock
        fd = lsock.fileno()
        backoff = 0.0
        batch = 0
        # Checked after every wait: close() may run while this task is woken but not yet running
        # (its cancellation would only arrive at the next wait, after an accept on a closed fd).
        while not self._closed:
            try:
                conn, _ = lsock.accept()
            except BlockingIOError:
                batch = 0
                await wait_readable(fd)
                continue
            except OSError as e:
                if e.errno in _OUT_OF_FDS:
                    if not backoff:
                        logger.warning("server %r: out of file descriptors (%s); backing off", self.name, e)
                    backoff = min(backoff * 2 or 0.05, 1.0)
                    await sleep(backoff)
                    continue
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that client gave up before we got to it
                raise
            if backoff:
                logger.warning("server %r: accepting again", self.name)
                backoff = 0.0
            self.accepted += 1
            try:
                self._start_client(k, conn)
            except Exception as e:  # one client's setup must never stop the server
                conn.close()
                k.report(e, k._current)
            batch += 1
            if batch >= _ACCEPT_BATCH:
                batch = 0
                await sleep(0)

    def _start_client(self, k: _kernel.Kernel, conn: RawSocket) -> None:
        # The handler's own coroutine is the connection's task (no wrapper coroutine: an idle
        # connection costs a frame less); the clean-up runs when the task ends, however it ends.
        if conn.family != socket.AF_UNIX:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = Socket(conn)
        try:
            sock.settimeout(self._timeout)
            coro = self._handler(sock) if self._ssl is None else self._serve_tls(sock)
            task = k.spawn(coro, (), f"{self.name}:client_{self.accepted}")
            sock._name = task._name  # Copas names the client socket as its handler
        except BaseException:
            sock.close()
            raise
        task._sock = sock
        task._on_done = self._client_done_b
        self.active += 1

    def _client_done(self, task: Task[Any]) -> None:
        # Called as the task ends, before the kernel decides whether its error is uncaught.
        exc = task._exception
        if exc is not None and isinstance(exc, _PEER_WENT_AWAY):
            # The client left (closed mid-pattern, reset, stopped reading): that ends its
            # connection, and is no bug of the server's (Copas's handlers see nil, "closed").
            task._watched = True
            logger.debug("server %r: %s ended: the client went away (%r)", self.name, task.name, exc)
        self.active -= 1
        task._sock._close_politely()
        if self._closed and not self.active:
            self._closed_waiters.wake_all()

    async def _serve_tls(self, sock: Socket) -> None:
        try:
            await sock.handshake(self._ssl, server_side=True, timeout=self._handshake_timeout)
        except (OSError, TimeoutError) as e:  # ssl.SSLError is an OSError
            # A client that fails its handshake (a scanner, a wrong port, a reset) is the client's
            # problem, not the program's: no error handler, a debug line only.
            logger.debug("server %r: TLS handshake failed: %s", self.name, e)
            return
        await self._handler(sock)

    async def _serve_datagrams(self) -> None:
        sock = Socket(self._sock)
        task = self._kernel._current
        assert task is not None
        task._sock = sock
        sock.settimeout(self._timeout)
        await self._handler(sock)

    def close(self, keep_open: bool = False) -> None:
        """Stop accepting; close the listening socket unless *keep_open*. Running handlers go on."""
        if self._closed:
            return
        self._closed = True
        k = self._kernel
        k.servers.pop(self, None)
        self._task.cancel()  # the accept loop; for UDP, the handler itself (it *is* the server)
        # The kernel forgets the fd either way: a socket kept open is handed back clean, and may
        # be closed, served again or given to another library.
        k.forget_fd(self._sock.fileno())
        if not keep_open:
            self._sock.close()
            if self._unix_path is not None:
                try:
                    os.unlink(self._unix_path)
                except FileNotFoundError:
                    pass
        if not self.active:
            self._closed_waiters.wake_all()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and the handlers of its connections have ended."""
        while not (self._closed and not self.active):
            await self._closed_waiters.wait()


def _check_server_arguments(handler: Any, timeout: Any, handshake_timeout: Any) -> None:
    # Before anything is bound: a port is never taken by a server that cannot start.
    check_handler(handler)
    check_seconds(timeout, "a server's timeout")
    check_seconds(handshake_timeout, "handshake_timeout")


def _default_name(sock: socket.socket, address: Any) -> str:
    kind = {socket.SOCK_STREAM: "tcp", socket.SOCK_DGRAM: "udp"}.get(sock.type, "sock")
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    return f"{kind}:{address[0]}:{address[1]}"


def add_server(
    sock: socket.socket, handler: Handler, timeout: float | None = None, name: str | None = None
) -> Server:
    """Serve *sock* (Copas's ``addserver``).

    A listening TCP or Unix socket runs ``handler(Socket)`` in its own task for
    every connection, and closes the connection when the handler returns. A UDP
    socket runs one task with ``handler(Socket)`` on the socket itself, which is
    never closed for it. *timeout* is the timeout of each connection's socket.
    """
    if not isinstance(sock, socket.socket):
        raise TypeError(f"add_server() takes a socket.socket, not {type(sock).__name__}")
    return Server(sock, handler, timeout, name)


def remove_server(sock: socket.socket, keep_open: bool = False) -> None:
    """Stop serving *sock* (Copas's ``removeserver``); close it unless *keep_open*."""
    k = _kernel._K
    for server in list(k.servers) if k is not None else []:
        if isinstance(server, Server) and server._sock is sock:
            server.close(keep_open)
            return
    raise CoserveError(f"{sock!r} is not being served")


def _bind(family: int, type_: int, address: Any, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, type_)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise CoserveError("reuse_port is not supported on this system")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _address(host: str | None, port: int, type_: int) -> tuple[int, Any]:
    info = socket.getaddrinfo(host or None, port, 0, type_, 0, socket.AI_PASSIVE)[0]
    return info[0], info[4]


def serve_tcp(
    handler: Handler,
    host: str | None,
    port: int,
    *,
    backlog: int = 1024,
    ssl: Any = None,
    reuse_port: bool = False,
    timeout: float | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    name: str | None = None,
) -> Server:
    """Listen on *host*:*port* (port 0: any free port; see ``Server.address``) and serve each connection.

    With *ssl* (an ``ssl.SSLContext`` holding the certificate; its
    ``sni_callback`` can pick another by name) every connection does its TLS
    handshake before the handler runs, within *handshake_timeout* seconds.
    *timeout* is the timeout of each connection's socket. The handler and the
    timeouts are checked before the port is bound.
    """
    _check_server_arguments(handler, timeout, handshake_timeout)
    family, address = _address(host, port, socket.SOCK_STREAM)
    sock = _bind(family, socket.SOCK_STREAM, address, reuse_port)
    try:
        sock.listen(backlog)
        return Server(sock, handler, timeout, name, ssl, handshake_timeout=handshake_timeout)
    except BaseException:
        sock.close()
        raise


def serve_unix(
    handler: Handler,
    path: str,
    *,
    backlog: int = 1024,
    ssl: Any = None,
    timeout: float | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    name: str | None = None,
) -> Server:
    """Listen on the Unix socket *path* (a stale socket file there is replaced) and serve each connection.

    The socket file is removed when the server closes. The arguments mean
    what they mean for :func:`serve_tcp`.
    """
    _check_server_arguments(handler, timeout, handshake_timeout)
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = _bind(socket.AF_UNIX, socket.SOCK_STREAM, path)
    try:
        sock.listen(backlog)
        return Server(sock, handler, timeout, name, ssl, unix_path=path, handshake_timeout=handshake_timeout)
    except BaseException:
        sock.close()
        raise


def serve_udp(
    handler: Handler,
    host: str | None,
    port: int,
    *,
    reuse_port: bool = False,
    timeout: float | None = None,
    name: str | None = None,
) -> Server:
    """Bind a UDP socket to *host*:*port* and run ``handler(Socket)`` on it in one task."""
    _check_server_arguments(handler, timeout, None)
    family, address = _address(host, port, socket.SOCK_DGRAM)
    sock = _bind(family, socket.SOCK_DGRAM, address, reuse_port)
    try:
        return Server(sock, handler, timeout, name)
    except BaseException:
        sock.close()
        raise
