"""The keep-alive pool: connections by origin, their slots, and the requests waiting for one.

Every connection the pool counts is in exactly one of three states, and every
change of state happens in this module:

- **connecting**: a slot is reserved for it (:meth:`Pool.acquire` is connecting);
- **active**: a request owns it, from :meth:`Pool.acquire` until :meth:`Pool.release`;
- **idle**: open, in ``_idle[key]``, with the time it went idle.

``_total`` and ``_per_key`` count all three, so the limits (``max_connections``,
``max_connections_per_host``) hold however requests end. The one rule that
keeps them right under cancellation (httpcore#1093 is what breaks without
it): a slot is handed to a waiting request *before* it is woken (the waiter
records what it was given), and a waiter that leaves for any reason — pool
timeout, cancellation — gives back whatever it was handed. A request that
fails or is cancelled while it owns a connection releases it as not reusable,
which closes it: a half-read connection is never reused.

Waiters are served first come, first served: a request that finds a slot
free but others waiting joins the queue instead of overtaking it. When the
pool is full and a waiter's host has no idle connection, the oldest idle
connection of another host is closed to make room.

Idle connections expire after ``idle_timeout`` seconds, checked whenever the
pool is used (no timer: an idle pool must not keep a run going). One taken from
the pool is first checked for readability: a server that closed it (or sent
bytes nobody asked for) makes it readable, and it is closed instead of used.
The check cannot see a close that is still on its way; that is why the
client retries an idempotent request once when a reused connection fails
before the first byte of its response.
"""

from __future__ import annotations

import select
import ssl as _ssl
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

from .. import Event, Socket, gettime, timeout_after
from ._errors import ClientClosed, PoolTimeout

__all__ = ["Connection", "Pool"]

Key = Hashable  # (scheme, host, port, TLS context)


class Connection:
    """One HTTP/1.1 connection: its socket, the key it is pooled under, and how often it was reused."""

    __slots__ = ("idle_since", "key", "sock", "timeouts", "uses")

    def __init__(self, sock: Socket, key: Key) -> None:
        #: The coserve Socket.
        self.sock = sock
        #: The pool key: (scheme, host, port, TLS context).
        self.key = key
        #: Exchanges completed on it (0: new).
        self.uses = 0
        #: The pool's clock when it last went idle.
        self.idle_since = 0.0
        #: The read timeout last set on the socket (set again only when it changes).
        self.timeouts: object = None

    @property
    def reused(self) -> bool:
        """True if an earlier request completed on it (so the server may have closed it meanwhile)."""
        return self.uses > 0

    def unusable(self) -> bool:
        """True if it cannot carry a request: closed, or readable (end of stream, or unsolicited bytes)."""
        sock = self.sock
        if sock.closed:
            return True
        raw = sock.socket
        if isinstance(raw, _ssl.SSLSocket) and raw.pending():
            return True
        fd = raw.fileno()
        return fd < 0 or bool(select.select((fd,), (), (), 0)[0])

    def __repr__(self) -> str:
        return f"<Connection {self.key[:3] if isinstance(self.key, tuple) else self.key} uses={self.uses}>"


class _Waiter:
    __slots__ = ("closed", "conn", "event", "fresh", "key", "slot")

    def __init__(self, key: Key, fresh: bool) -> None:
        self.key = key
        self.fresh = fresh  # wants a new connection (the retry after a stale one)
        self.event = Event()
        self.conn: Connection | None = None  # an idle connection handed over
        self.slot = False  # a reserved slot: connect it
        self.closed = False  # the pool closed while it waited


class Pool:
    """Connections kept alive between requests, within limits (see the module's text for the rules)."""

    def __init__(
        self, *, max_connections: int = 100, max_connections_per_host: int = 10, idle_timeout: float = 15.0
    ) -> None:
        for name, value in (
            ("max_connections", max_connections),
            ("max_connections_per_host", max_connections_per_host),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, not {value!r}")
        if (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, (int, float))
            or not idle_timeout >= 0
        ):
            raise ValueError(f"idle_timeout must be a number of seconds >= 0, not {idle_timeout!r}")
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.idle_timeout = float(idle_timeout)
        self._idle: dict[Key, list[Connection]] = {}
        self._per_key: dict[Key, int] = {}
        self._total = 0
        self._waiters: deque[_Waiter] = deque()
        self.closed = False

    # -- what requests call --------------------------------------------------------------------

    async def acquire(
        self,
        key: Key,
        connect: Callable[[], Awaitable[Socket]],
        timeout: float | None = None,
        *,
        fresh: bool = False,
    ) -> Connection:
        """A connection for *key*: an idle one, or a new one made with ``connect()`` when a slot is free.

        Waits (first come, first served) at most *timeout* seconds for a slot,
        then raises :class:`PoolTimeout`. With *fresh*, never an idle one.
        """
        if self.closed:
            raise ClientClosed("the client is closed")
        self._expire()
        if not self._waiters:
            conn = None if fresh else self._take_idle(key)
            if conn is not None:
                return conn
            if self._reserve(key):
                return await self._open(key, connect)
        waiter = _Waiter(key, fresh)
        self._waiters.append(waiter)
        try:
            self._dispatch()
            if not waiter.event.is_set():
                async with timeout_after(timeout):
                    await waiter.event.wait()
        except TimeoutError:
            self._leave(waiter)
            raise PoolTimeout(f"no connection became free within the pool timeout ({timeout} s)") from None
        except BaseException:
            self._leave(waiter)
            raise
        if waiter.closed:
            raise ClientClosed("the client was closed while this request waited for a connection")
        if waiter.conn is not None:
            return waiter.conn
        return await self._open(key, connect)

    def release(self, conn: Connection, reusable: bool) -> None:
        """The request is done with *conn*: idle again if *reusable*, else closed; its slot goes on."""
        if reusable and not self.closed and not conn.sock.closed:
            conn.uses += 1
            conn.idle_since = gettime()
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            self._discard(conn)
        self._dispatch()

    def close(self) -> None:
        """Close the idle connections now, and every active one as its request releases it."""
        self.closed = True
        for conns in self._idle.values():
            for conn in conns:
                self._forget(conn)
                conn.sock.close()
        self._idle.clear()
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.closed = True
            waiter.event.set()

    def stats(self) -> dict[str, int]:
        """Counts: ``connections`` (all), ``idle``, ``active`` (in use or connecting), ``waiting``."""
        idle = sum(len(c) for c in self._idle.values())
        return {
            "connections": self._total,
            "idle": idle,
            "active": self._total - idle,
            "waiting": len(self._waiters),
        }

    def connections_for(self, key: Key) -> int:
        """How many connections (all states) the pool counts for *key*."""
        return self._per_key.get(key, 0)

    # -- the states -------------------------------------------------------------------------------

    async def _open(self, key: Key, connect: Callable[[], Awaitable[Socket]]) -> Connection:
        try:
            sock = await connect()
        except BaseException:
            self._unreserve(key)
            self._dispatch()
            raise
        return Connection(sock, key)

    def _reserve(self, key: Key) -> bool:
        if self._per_key.get(key, 0) >= self.max_connections_per_host:
            return False
        if self._total >= self.max_connections and not self._evict_one():
            return False
        self._total += 1
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return True

    def _unreserve(self, key: Key) -> None:
        self._total -= 1
        n = self._per_key[key] - 1
        if n:
            self._per_key[key] = n
        else:
            del self._per_key[key]

    def _forget(self, conn: Connection) -> None:
        self._unreserve(conn.key)

    def _discard(self, conn: Connection) -> None:
        self._forget(conn)
        conn.sock.close()

    def _take_idle(self, key: Key) -> Connection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()  # the most recent: the least likely to have been closed by the server
            if not conns:
                del self._idle[key]
            if conn.unusable():
                self._discard(conn)
            else:
                return conn
            conns = self._idle.get(key)
        return None

    def _evict_one(self) -> bool:
        """Close the longest-idle connection (of any key) to make room; False if none is idle."""
        oldest: Connection | None = None
        for conns in self._idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is None:
            return False
        conns = self._idle[oldest.key]
        conns.pop(0)
        if not conns:
            del self._idle[oldest.key]
        self._discard(oldest)
        return True

    def _expire(self) -> None:
        if not self._idle:
            return
        deadline = gettime() - self.idle_timeout
        for key in list(self._idle):
            conns = self._idle[key]
            while conns and conns[0].idle_since <= deadline:
                self._discard(conns.pop(0))
            if not conns:
                del self._idle[key]

    def _dispatch(self) -> None:
        """Hand what is free to the waiters, in order: an idle connection of their key, or a slot."""
        for waiter in list(self._waiters):
            conn = None if waiter.fresh else self._take_idle(waiter.key)
            if conn is not None:
                waiter.conn = conn
            elif self._reserve(waiter.key):
                waiter.slot = True
            else:
                continue
            self._waiters.remove(waiter)
            waiter.event.set()

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter leaves early (timeout, cancellation): out of the queue, and give back what it got."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            return
        if waiter.conn is not None:
            conn, waiter.conn = waiter.conn, None
            self._idle.setdefault(conn.key, []).append(conn)  # untouched: still idle
            self._dispatch()
        elif waiter.slot:
            waiter.slot = False
            self._unreserve(waiter.key)
            self._dispatch()


def is_idempotent(method: str) -> bool:
    """RFC 9110 section 9.2.2: a request that may be sent again (the retry on a stale connection)."""
    return method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
