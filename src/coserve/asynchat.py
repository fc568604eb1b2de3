"""A drop-in home for the standard library's ``asynchat``, on :mod:`coserve.asyncore`.

``async_chat`` splits incoming data at a terminator (bytes, a byte count, or
None for "everything") and sends a queue of data and producers; this module
has the whole public API of CPython 3.11's: ``async_chat`` (``push``,
``push_with_producer``, ``close_when_done``, ``discard_buffers``,
``set_terminator``/``get_terminator``, ``collect_incoming_data``,
``found_terminator``, ``ac_in_buffer_size``, ``ac_out_buffer_size``,
``use_encoding``), ``simple_producer`` and ``find_prefix_at_end``.

The terminator logic is the standard library's. What changed is the incoming
buffer: the standard library re-slices ``ac_in_buffer`` after every
terminator it finds, so one read that brings many lines copies the rest of
the buffer once per line (quadratic). Here the buffer is a ``bytearray`` read
through a position, and ``ac_in_buffer`` is a property that code reading or
assigning it still sees as bytes (paying a copy only when it does).
"""

from __future__ import annotations

from collections import deque
from typing import Any, cast

from . import asyncore
from .asyncore import _changed

__all__ = ["async_chat", "find_prefix_at_end", "simple_producer"]


class async_chat(asyncore.dispatcher):  # the standard library's name
    """A dispatcher that cuts input at a terminator and queues output (see the module text).

    Subclasses implement :meth:`collect_incoming_data` and :meth:`found_terminator`.
    """

    # these are overridable defaults
    ac_in_buffer_size = 65536
    ac_out_buffer_size = 65536
    # we don't want to enable the use of encoding by default, because that is a sign of an
    # application bug that we don't want to pass silently
    use_encoding = 0
    encoding = "latin-1"

    def __init__(self, sock: Any = None, map: dict[int, Any] | None = None) -> None:
        self._inbuf = bytearray()
        self._inpos = 0
        self.incoming: list[bytes] = []
        self.producer_fifo: deque[Any] = deque()
        super().__init__(sock, map)

    # -- the incoming buffer ------------------------------------------------------------------

    @property
    def ac_in_buffer(self) -> bytes:
        """The bytes received and not yet passed on (a copy)."""
        return bytes(self._inbuf[self._inpos :])

    @ac_in_buffer.setter
    def ac_in_buffer(self, value: bytes) -> None:
        self._inbuf = bytearray(value)
        self._inpos = 0

    def collect_incoming_data(self, data: bytes) -> None:
        """Data before the terminator arrived; subclasses must implement it."""
        raise NotImplementedError("must be implemented in subclass")

    def _collect_incoming_data(self, data: bytes) -> None:
        self.incoming.append(data)

    def _get_data(self) -> bytes:
        d = b"".join(self.incoming)
        del self.incoming[:]
        return d

    def found_terminator(self) -> None:
        """The terminator was found; subclasses must implement it."""
        raise NotImplementedError("must be implemented in subclass")

    def set_terminator(self, term: bytes | int | str | None) -> None:
        """Set the input delimiter: bytes, a number of bytes to read, or None (everything)."""
        if isinstance(term, str) and self.use_encoding:
            term = bytes(term, self.encoding)
        elif isinstance(term, int) and term < 0:
            raise ValueError("the number of received bytes must be positive")
        self.terminator = term

    def get_terminator(self) -> Any:
        """The current terminator."""
        return self.terminator

    # -- reading ---------------------------------------------------------------------------------

    def handle_read(self) -> None:
        """Receive, then hand the data to collect_incoming_data/found_terminator by the terminator."""
        try:
            data = self.recv(self.ac_in_buffer_size)
        except BlockingIOError:
            return
        except OSError:
            self.handle_error()
            return
        if isinstance(data, str) and self.use_encoding:
            data = bytes(data, self.encoding)
        buf = self._inbuf
        if self._inpos:
            del buf[: self._inpos]  # O(1) at the front of a bytearray
            self._inpos = 0
        buf += data
        # Several data+terminator pieces may have come in one recv(). The handlers may change the
        # terminator, or read or replace ac_in_buffer, at any point: reload the state each turn.
        while True:
            buf, pos = self._inbuf, self._inpos
            left = len(buf) - pos
            if not left:
                break
            terminator = self.get_terminator()
            if not terminator:
                self._take(left)  # no terminator: collect it all
            elif isinstance(terminator, int):
                if left < terminator:
                    self._take(left)
                    self.terminator = cast(int, self.terminator) - left  # as the standard library
                else:
                    self._take(terminator)
                    self.terminator = 0
                    self.found_terminator()
            else:
                index = buf.find(terminator, pos)
                if index != -1:
                    if index > pos:  # don't report the empty string (a source of subtle bugs)
                        self._take(index - pos)
                    self._inpos += len(terminator)
                    self.found_terminator()  # right even if it changes the terminator
                else:
                    # Keep a possible beginning of the terminator at the end; collect the rest.
                    keep = min(len(terminator) - 1, left)
                    while keep and not buf.endswith(terminator[:keep]):
                        keep -= 1
                    if keep:
                        if keep != left:
                            self._take(left - keep)
                        break
                    self._take(left)
        if self._inpos == len(self._inbuf):
            self._inbuf = bytearray()
            self._inpos = 0

    def _take(self, n: int) -> None:
        """Pass the next *n* buffered bytes to collect_incoming_data."""
        pos = self._inpos
        chunk = bytes(self._inbuf[pos : pos + n])
        self._inpos = pos + n
        self.collect_incoming_data(chunk)

    # -- writing -----------------------------------------------------------------------------------

    def handle_write(self) -> None:
        """Send more of the queue."""
        self.initiate_send()

    def handle_close(self) -> None:
        """The peer closed: close the channel."""
        self.close()

    def push(self, data: bytes | bytearray | memoryview) -> None:
        """Queue *data* (in pieces of at most ac_out_buffer_size) and start sending."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be byte-ish ({type(data)!r})")
        size = self.ac_out_buffer_size
        if len(data) > size:
            for i in range(0, len(data), size):
                self.producer_fifo.append(data[i : i + size])
        else:
            self.producer_fifo.append(data)
        self.initiate_send()
        _changed(self)

    def push_with_producer(self, producer: Any) -> None:
        """Queue a producer (an object whose ``more()`` returns data, ``b""`` at the end)."""
        self.producer_fifo.append(producer)
        self.initiate_send()
        _changed(self)

    def readable(self) -> bool:
        """Always True: an async_chat always reads."""
        return True

    def writable(self) -> bool:
        """True while something is queued, or while connecting."""
        return bool(self.producer_fifo) or (not self.connected)

    def close_when_done(self) -> None:
        """Close the channel once everything queued has been sent."""
        self.producer_fifo.append(None)
        _changed(self)

    def initiate_send(self) -> None:
        """Send from the head of the queue what the socket takes now."""
        fifo = self.producer_fifo
        while fifo and self.connected:
            first = fifo[0]
            if not first:  # an empty piece, or None: close_when_done's mark
                del fifo[0]
                if first is None:
                    self.handle_close()
                    return
            size = self.ac_out_buffer_size
            try:
                data = first[:size]
            except TypeError:  # a producer
                data = first.more()
                if data:
                    fifo.appendleft(data)
                else:
                    del fifo[0]
                continue
            if isinstance(data, str) and self.use_encoding:
                data = bytes(data, self.encoding)
            try:
                num_sent = self.send(data)
            except OSError:
                self.handle_error()
                return
            if num_sent:
                if num_sent < len(data) or size < len(first):
                    fifo[0] = first[num_sent:]
                else:
                    del fifo[0]
            return  # one send per call: the socket said how much it takes

    def discard_buffers(self) -> None:
        """Drop everything buffered, in and out (emergencies only)."""
        self.ac_in_buffer = b""
        del self.incoming[:]
        self.producer_fifo.clear()
        _changed(self)


class simple_producer:  # the standard library's name
    """A producer that hands out *data* in pieces of *buffer_size* bytes."""

    def __init__(self, data: bytes, buffer_size: int = 512) -> None:
        self.data = data
        self.buffer_size = buffer_size

    def more(self) -> bytes:
        """The next piece, ``b""`` at the end."""
        if len(self.data) > self.buffer_size:
            result = self.data[: self.buffer_size]
            self.data = self.data[self.buffer_size :]
            return result
        result = self.data
        self.data = b""
        return result


def find_prefix_at_end(haystack: bytes | bytearray, needle: bytes) -> int:
    """How long a beginning of *needle* ends *haystack* (0 if none; *needle* itself is not looked for).

    ``find_prefix_at_end(b"qwertyx", b"xyz") == 1``.
    """
    n = len(needle) - 1
    while n and not haystack.endswith(needle[:n]):
        n -= 1
    return n


asyncore._LIBRARY_READABLE.add(async_chat.readable)
asyncore._LIBRARY_WRITABLE.add(async_chat.writable)
