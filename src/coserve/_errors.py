"""The exceptions coserve raises, named after what happened.

Every error coserve raises on its own account derives from :class:`CoserveError`,
except :class:`Cancelled`, which derives from :class:`BaseException` so that a
handler's ``except Exception:`` cannot swallow a cancellation by accident.
Where an error is also a kind of a built-in error (a bad argument, a wrong
state) it derives from that built-in too, so code written for the standard
library keeps catching it.
"""

from __future__ import annotations

import errno
import ssl

__all__ = [
    "AlreadyArmed",
    "AlreadyRunning",
    "Cancelled",
    "ConnectionClosed",
    "ConnectionReset",
    "CoserveError",
    "DataBeforeHandshake",
    "DatagramTooLarge",
    "Deadlock",
    "Destroyed",
    "ForeignAwaitable",
    "LineTooLong",
    "NotOwner",
    "ResourceBusy",
    "SocketClosed",
    "Stopping",
    "TooMany",
]


class CoserveError(Exception):
    """The root of every error coserve raises (except :class:`Cancelled`)."""


class Cancelled(BaseException):
    """Raised inside a task at the wait it was blocked in when it is cancelled.

    It derives from :class:`BaseException`: ``except Exception`` does not catch it.
    A task may catch it to clean up, but should re-raise it. Timeouts are
    delivered as a ``Cancelled`` too, and turned into :class:`TimeoutError` by
    the :func:`coserve.timeout_after` block that set them.
    """

    #: The timeout scope that caused this cancellation, or None for Task.cancel().
    _scope: object = None
    #: The task that Task.cancel() was called on (the message is made from it only when shown).
    _task: object = None

    def __str__(self) -> str:
        if not self.args and self._task is not None:
            return f"task {self._task.name!r} was cancelled"  # type: ignore[attr-defined]
        return super().__str__()


class Destroyed(CoserveError):
    """The lock, semaphore or queue was destroyed while (or before) it was used."""


class TooMany(CoserveError, ValueError):
    """More was asked of a semaphore than it can ever hold, or given beyond its maximum."""


class Stopping(CoserveError):
    """The queue was stopped: no more items may be pushed, and it has run empty."""


class AlreadyArmed(CoserveError):
    """A timer that is already armed was armed again; cancel it first."""


class NotOwner(CoserveError, RuntimeError):
    """A lock was released by a task that does not hold it."""


class ResourceBusy(CoserveError):
    """Two tasks tried to wait for the same file descriptor in the same direction at once."""


class AlreadyRunning(CoserveError, RuntimeError):
    """``run()`` was called while the scheduler was already running."""


class ForeignAwaitable(CoserveError, TypeError):
    """coserve and another event loop were mixed.

    A coserve task awaited an object from another event loop (an asyncio future,
    say), or a coserve operation was awaited in another event loop's task.
    """


class Deadlock(CoserveError, RuntimeError):
    """A task waited for something only it could bring about: its own end (``await current_task()``)."""


class ConnectionClosed(CoserveError, ConnectionError):
    """The peer closed the connection before the receive pattern was complete.

    ``partial`` holds what did arrive (the prefix included), so no data is lost.
    """

    def __init__(self, partial: bytes, message: str = "the peer closed the connection") -> None:
        super().__init__(f"{message} ({len(partial)} bytes arrived before it did)")
        #: The bytes that arrived before the connection closed.
        self.partial = partial


class ConnectionReset(ConnectionClosed, ConnectionResetError):
    """The peer reset the connection before the receive pattern was complete.

    Both a :class:`ConnectionClosed` (``partial`` holds what did arrive) and the
    :class:`ConnectionResetError` the system reported (``errno`` is ECONNRESET),
    raised from it.
    """

    def __init__(self, partial: bytes) -> None:
        super().__init__(partial, "the peer reset the connection")
        self.errno = errno.ECONNRESET


class SocketClosed(CoserveError):
    """The socket was closed by this program (perhaps while another task was waiting on it)."""


class LineTooLong(CoserveError, ValueError):
    """A ``receive("*l")`` line grew past the socket's ``max_line`` without an end of line."""


class DataBeforeHandshake(CoserveError, ssl.SSLError):
    """The peer sent bytes in clear that it had no right to send before the TLS handshake.

    After asking for TLS (SMTP's STARTTLS, say) a peer must wait for the
    handshake: whatever it sent before it arrived unprotected, and a program that
    read it after the handshake would take injected plaintext for data protected
    by TLS (CVE-2011-0411, "STARTTLS command injection"). ``handshake()`` raises
    this, before anything is sent, when the socket holds such bytes; they are
    discarded (``discarded`` is how many), and the connection should be closed.
    It is an :class:`ssl.SSLError`, so code that handles failed handshakes handles it.
    """

    def __init__(self, discarded: int) -> None:
        super().__init__(
            f"the peer sent {discarded} bytes in clear after asking for TLS and before the handshake; "
            "they were discarded (plaintext injection?): close the connection"
        )
        #: How many bytes were buffered, and discarded.
        self.discarded = discarded


class DatagramTooLarge(CoserveError, ValueError):
    """A datagram was larger than the ``max`` given to ``receive_from``; ``data`` holds its first bytes."""

    def __init__(self, data: bytes, addr: object, limit: int) -> None:
        super().__init__(f"a datagram from {addr!r} was larger than {limit} bytes; raise the limit")
        #: The first *limit* bytes of the datagram.
        self.data = data
        #: The sender's address.
        self.addr = addr
