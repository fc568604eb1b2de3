"""The SocketServer application: a protocol (decode/encode) or a plain handler, served per connection.

pulsar's contract: a protocol is made per connection by calling ``protocol()``;
``decode(buffer)`` returns ``(message, rest)``, with ``message`` None when more
bytes are needed, and ``encode(response)`` returns bytes. The application's
``respond(message, conn)`` answers each message, in order. The connection
loop here is the only code that touches the socket:

1. receive what the client sent (at most 64 KiB at a time) and append it to
   the buffer;
2. decode every whole message in the buffer, at most ``max_pipeline`` of
   them before the answers are sent: a client that pipelines gets its answers
   in the order of its requests, and one that sends faster than it reads is
   not read from until its answers have gone (no unbounded buffering on
   either side);
3. ``respond`` to each, ``encode`` the answers that are not None, and send
   them together in one write;
4. back to 1, until the client closes, stays idle longer than ``keep_alive``
   seconds, or a ``decode`` fails (reported, then only that connection is
   closed).

The events (``connection_made``, ``pre_request``, ``post_request``,
``connection_lost``) are optional callables, plain or async; an exception in
one is logged and does not end the connection or the worker.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .. import (
    ConnectionClosed,
    CoserveError,
    Event,
    Server,
    Socket,
    gettime,
    serve_unix,
)
from ._proxy import ProxyHeader, ProxyProtocolError, is_trusted, parse_proxy_header
from ._settings import SettingsError, load_settings

__all__ = ["EVENTS", "Connection", "MessageProtocol", "SocketServer"]

logger = logging.getLogger("coserve.app")

#: The events a SocketServer calls, each with the arguments it is given.
EVENTS = {
    "connection_made": "(conn)",
    "pre_request": "(conn, message)",
    "post_request": "(conn, message, response)",
    "connection_lost": "(conn, exc)",
    "on_starting": "(server)",
    "when_ready": "(server)",
    "post_fork": "(server, worker)",
    "worker_exit": "(server, worker)",
    "on_exit": "(server)",
}
_READ_SIZE = 65536
_PEER_WENT_AWAY = (ConnectionClosed, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class MessageProtocol(Protocol):
    """What ``protocol()`` makes for each connection: pulsar's codec."""

    def decode(self, data: bytes) -> tuple[Any, bytes]:
        """``(message, rest)``: a whole message and the bytes after it, or ``(None, data)`` for more."""

    def encode(self, response: Any) -> bytes:
        """The bytes of *response*."""


class Connection:
    """One client of a :class:`SocketServer`: ``peer``, ``local``, ``requests``, ``socket``, ``close()``."""

    __slots__ = ("_closed", "local", "peer", "requests", "socket", "started")

    def __init__(self, sock: Socket, peer: Any, local: Any) -> None:
        #: The coserve Socket.
        self.socket = sock
        #: The client's address (the one the PROXY protocol carried, when that is on).
        self.peer = peer
        #: The server's address this connection came to.
        self.local = local
        #: Messages answered so far.
        self.requests = 0
        #: The kernel time it was accepted.
        self.started = gettime()
        self._closed = False

    def close(self) -> None:
        """Close the connection once the answers already decided have been sent."""
        self._closed = True

    def __repr__(self) -> str:
        return f"<coserve.app.Connection peer={self.peer!r} requests={self.requests}>"


async def _read_proxy_header(sock: Socket) -> ProxyHeader | None:
    """The PROXY protocol header the load balancer sends first; what came after it is put back."""
    data = b""
    while True:
        chunk = await sock.receive_partial(_READ_SIZE)
        if not chunk:
            return None
        data += chunk
        header, used = parse_proxy_header(data)
        if header is not None:
            sock.unreceive(data[used:])
            return header


def _address(sock: Socket, what: str) -> Any:
    try:
        return sock.getpeername() if what == "peer" else sock.getsockname()
    except OSError:
        return None


class SocketServer:
    """An application that serves a protocol on listening sockets (pulsar's ``SocketServer``).

    Give either *protocol* (a factory called per connection, making an object
    with ``decode``/``encode``) with *respond* (``async def respond(message,
    conn)``, returning the response or None to send nothing), or *handler*, a
    plain Copas-style ``async def handler(sock)``. *settings* are the
    application's defaults (see docs/app.md): the command line, the
    environment and a config file override them when it is started with
    :meth:`start`.
    """

    def __init__(
        self,
        *,
        protocol: Callable[[], MessageProtocol] | None = None,
        respond: Callable[[Any, Connection], Awaitable[Any]] | None = None,
        handler: Callable[[Socket], Awaitable[Any]] | None = None,
        name: str | None = None,
        **settings: Any,
    ) -> None:
        if handler is not None:
            if protocol is not None or respond is not None:
                raise TypeError("give either handler=, or protocol= with respond=, not both")
            if not callable(handler):
                raise TypeError(f"handler must be an async function of the socket, not {handler!r}")
        elif protocol is None or respond is None:
            raise TypeError(
                "a SocketServer needs protocol= (a factory of decode/encode objects) and respond= "
                "(async def respond(message, conn)), or handler= (async def handler(sock))"
            )
        else:
            if not callable(protocol):
                raise TypeError(f"protocol must be a factory called per connection, not {protocol!r}")
            if not callable(respond):
                raise TypeError(f"respond must be an async function (message, conn), not {respond!r}")
        self._protocol = protocol
        self._respond = respond
        self._handler = handler
        #: The application's name (process titles, logs).
        self.name = name or "coserve"
        self._events: dict[str, list[Callable[..., Any]]] = {e: [] for e in EVENTS}
        for event in EVENTS:
            fn = settings.pop(event, None)
            if fn is not None:
                self.on(event, fn)
        self._defaults = settings
        #: The settings in force (the defaults until :meth:`start` reads the command line).
        self.settings = load_settings([], {}, defaults=settings)
        self._servers: list[Server] = []
        self._stopped: Event | None = None
        self._connections: set[Connection] = set()
        #: Connections accepted since the server started.
        self.received_connections = 0
        self._requests_of_closed = 0  # messages answered on connections closed since (see requests)
        self._started_at: float | None = None

    # -- events -----------------------------------------------------------------------------

    def on(self, event: str, fn: Callable[..., Any]) -> None:
        """Call *fn* (plain or async) on *event* (one of :data:`EVENTS`), after those added before."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; the events are {', '.join(EVENTS)}")
        if not callable(fn):
            raise TypeError(f"the {event} hook must be callable, not {fn!r}")
        self._events[event].append(fn)

    async def _fire(self, event: str, *args: Any) -> None:
        for fn in self._events[event]:
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("%s: the %s hook %r failed", self.name, event, fn)

    # -- serving ------------------------------------------------------------------------------

    def bind(self) -> list[Server]:
        """Start listening on every ``bind`` address of the settings (inside a run); returns the servers."""
        s = self.settings
        servers: list[Server] = []
        try:
            for b in s.bind:
                servers.append(self._listen(b))
        except BaseException:
            for server in servers:
                server.close()
            raise
        self._servers = servers
        return servers

    def _listen(self, b: Any) -> Server:
        s = self.settings
        ssl = self._ssl_context()
        name = f"{self.name}:{b}"
        if b.kind == "unix":
            return serve_unix(self._serve_connection, b.path, backlog=s.backlog, ssl=ssl, name=name)
        if b.kind == "fd":
            sock = socket.socket(fileno=b.fd)
        else:
            family = socket.AF_INET6 if ":" in (b.host or "") else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if s.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((b.host or "", b.port))
                sock.listen(s.backlog)
            except BaseException:
                sock.close()
                raise
        try:
            return Server(sock, self._serve_connection, None, name, ssl)  # add_server, with TLS
        except BaseException:
            sock.close()
            raise

    def _ssl_context(self) -> Any:
        s = self.settings
        if not s.ssl_certfile:
            return None
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(s.ssl_certfile, s.ssl_keyfile or None)
        if s.ssl_ca_certs:
            ctx.load_verify_locations(s.ssl_ca_certs)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def serve(self) -> None:
        """Serve inside the current :func:`coserve.run` (``workers=0``) until :meth:`stop` or ``exit()``."""
        if self._stopped is not None:
            raise CoserveError(f"{self.name} is already serving")
        self._stopped = Event()
        self._started_at = gettime()
        self._wall_started = time.time()
        await self._fire("on_starting", self)
        try:
            self.bind()
            await self._fire("when_ready", self)
            logger.info("%s: listening on %s", self.name, ", ".join(self.listen_on))
            await self._wait_stopped()
        finally:
            for server in self._servers:
                server.close()
            for server in self._servers:
                await server.wait_closed()
            self._servers = []
            self._stopped = None
            await self._fire("on_exit", self)

    async def _wait_stopped(self) -> None:
        from .. import spawn, wait_for_exit

        stopped = self._stopped
        assert stopped is not None

        async def exit_means_stop() -> None:
            await wait_for_exit()
            stopped.set()

        watcher = spawn(exit_means_stop, name=f"{self.name}:exit-watch")
        try:
            await stopped.wait()
        finally:
            watcher.cancel()

    def stop(self) -> None:
        """Stop serving: the listeners close, connections being answered finish, :meth:`serve` returns."""
        if self._stopped is not None:
            self._stopped.set()

    def start(self, argv: list[str] | None = None) -> None:
        """Read the command line, environment and config, then serve until stopped (pulsar's ``start()``)."""
        from .. import run

        try:
            self.settings = load_settings(argv, os.environ, defaults=self._defaults)
        except SettingsError as e:
            print(f"{self.name}: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        for event in EVENTS:  # hooks named by the environment or a config file ("module:function")
            fn = getattr(self.settings, event, None)
            if fn is not None and fn not in self._events[event]:
                self.on(event, fn)
        if self.settings.workers:
            raise CoserveError("workers > 0 needs the arbiter, which is not in this version: use workers=0")
        if self.settings.proxy_protocol and self.settings.ssl_certfile:
            raise CoserveError("proxy_protocol with TLS is not supported yet: terminate TLS at the proxy")
        pidfile = self.settings.pidfile
        if pidfile:
            with open(pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
        try:
            run(self.serve)
        finally:
            if pidfile:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(pidfile)

    # -- one connection -------------------------------------------------------------------------

    async def _serve_connection(self, sock: Socket) -> None:
        s = self.settings
        if len(self._connections) >= s.max_connections:
            logger.warning(
                "%s: max_connections (%d) reached; a new connection is closed", self.name, s.max_connections
            )
            return
        sock.settimeouts(receive=s.keep_alive, send=s.keep_alive)
        conn = Connection(sock, _address(sock, "peer"), _address(sock, "local"))
        if s.proxy_protocol:
            peer = conn.peer[0] if isinstance(conn.peer, tuple) else None
            if is_trusted(peer, s.forwarded_allow_ips):
                try:
                    header = await _read_proxy_header(sock)
                except ProxyProtocolError as e:
                    logger.warning(
                        "%s: %r sent a bad PROXY protocol header (%s); closing it", self.name, conn, e
                    )
                    return
                except (*_PEER_WENT_AWAY, TimeoutError):
                    return
                if header is None:
                    return  # closed before the header was whole
                if header.source is not None:
                    conn.peer = header.source
        self._connections.add(conn)
        self.received_connections += 1
        await self._fire("connection_made", conn)
        exc: BaseException | None = None
        try:
            if self._handler is not None:
                await self._handler(sock)
            else:
                await self._converse(sock, conn)
        except _PEER_WENT_AWAY:
            pass
        except TimeoutError:
            logger.debug("%s: %r idle for keep_alive (%s s): closed", self.name, conn, s.keep_alive)
        except BaseException as e:
            exc = e
            raise
        finally:
            self._connections.discard(conn)
            self._requests_of_closed += conn.requests
            await self._fire("connection_lost", conn, exc)

    async def _converse(self, sock: Socket, conn: Connection) -> None:
        assert self._protocol is not None and self._respond is not None
        proto = self._protocol()
        decode, encode, respond = proto.decode, proto.encode, self._respond
        receive, send = sock.receive_partial, sock.send
        pre, post = self._events["pre_request"], self._events["post_request"]
        hooks = bool(pre or post)
        max_pipeline = self.settings.max_pipeline
        buffer = b""
        while True:
            data = await receive(_READ_SIZE)
            if not data:
                return
            try:
                message, buffer = decode(buffer + data if buffer else data)
            except Exception as e:
                return self._decode_failed(conn, e)
            if message is None:
                continue
            if not buffer and not hooks:  # one whole message, no hooks: the short way
                response = await respond(message, conn)
                conn.requests += 1
                if response is not None:
                    await send(encode(response))
                if conn._closed:
                    return
                continue
            out: list[bytes] = []
            while True:  # every whole message received so far, in order
                if pre:
                    await self._fire("pre_request", conn, message)
                response = await respond(message, conn)
                conn.requests += 1
                if post:
                    await self._fire("post_request", conn, message, response)
                if response is not None:
                    out.append(encode(response))
                if conn._closed or not buffer:
                    break
                if len(out) >= max_pipeline:  # answer these before decoding more
                    await send(b"".join(out))
                    out = []
                try:
                    message, buffer = decode(buffer)
                except Exception as e:
                    if out:
                        await send(b"".join(out))
                    return self._decode_failed(conn, e)
                if message is None:
                    break
            if out:
                await send(out[0] if len(out) == 1 else b"".join(out))
            if conn._closed:
                return

    def _decode_failed(self, conn: Connection, e: Exception) -> None:
        logger.error("%s: could not decode what %r sent; closing it", self.name, conn, exc_info=e)

    # -- what it tells -----------------------------------------------------------------------

    @property
    def listen_on(self) -> list[str]:
        """The addresses listened on (``host:port`` or the Unix path)."""
        out = []
        for server in self._servers:
            a = server.address
            out.append(f"{a[0]}:{a[1]}" if isinstance(a, tuple) else str(a))
        return out

    @property
    def requests(self) -> int:
        """Messages answered since the server started."""
        return self._requests_of_closed + sum(c.requests for c in self._connections)

    @property
    def active_connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def info(self) -> dict[str, Any]:
        """The figures of pulsar's ``info``: the server's, and this worker's."""
        now = gettime()
        return {
            "name": self.name,
            "listen_on": self.listen_on,
            "read_timeout": self.settings.keep_alive,
            "active_connections": self.active_connections,
            "received_connections": self.received_connections,
            "requests": self.requests,
            "pid": os.getpid(),
            "uptime": now - self._started_at if self._started_at is not None else 0.0,
        }
