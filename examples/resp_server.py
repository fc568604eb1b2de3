"""A small Redis-protocol (RESP) key-value server on coserve.app's SocketServer.

    python examples/resp_server.py [--bind 127.0.0.1:6380]

The codec is sans I/O (``RespProtocol.decode``/``encode``); the application is
one ``respond`` coroutine over a dict. It answers PING, ECHO, SET, GET, DEL,
EXISTS, INCR, DECR, MSET, MGET, LPUSH, RPUSH, LPOP, RPOP, LLEN, LRANGE, DBSIZE,
FLUSHALL and CONFIG GET (what redis-benchmark asks), and pipelined requests are
answered in order.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

from coserve.app import Connection, SocketServer


class RespError(Exception):
    """A request that is not RESP."""


class Err(str):
    """An error reply (``-ERR ...``)."""


class Status(str):
    """A simple string reply (``+OK``)."""


class RespProtocol:
    """RESP2 requests (arrays of bulk strings, or inline commands) to lists of bytes; replies to bytes."""

    def decode(self, data: bytes) -> tuple[list[bytes] | None, bytes]:
        if data[:1] != b"*":
            end = data.find(b"\r\n")
            if end < 0:
                if len(data) > 65536:
                    raise RespError("an inline command longer than 64 KiB")
                return None, data
            return data[:end].split(), data[end + 2 :]
        end = data.find(b"\r\n")
        if end < 0:
            return None, data
        count = int(data[1:end])
        pos = end + 2
        args = []
        for _ in range(count):
            end = data.find(b"\r\n", pos)
            if end < 0:
                return None, data
            if data[pos : pos + 1] != b"$":
                raise RespError(f"expected a bulk string, got {data[pos : pos + 1]!r}")
            size = int(data[pos + 1 : end])
            start = end + 2
            if len(data) < start + size + 2:
                return None, data
            args.append(data[start : start + size])
            pos = start + size + 2
        return args, data[pos:]

    def encode(self, reply: Any) -> bytes:
        if isinstance(reply, Status):
            return b"+" + reply.encode() + b"\r\n"
        if isinstance(reply, Err):
            return b"-" + reply.encode() + b"\r\n"
        if reply is None:
            return b"$-1\r\n"
        if isinstance(reply, int):
            return b":%d\r\n" % reply
        if isinstance(reply, bytes):
            return b"$%d\r\n%s\r\n" % (len(reply), reply)
        if isinstance(reply, list):
            return b"*%d\r\n" % len(reply) + b"".join(self.encode(r) for r in reply)
        raise TypeError(f"cannot encode {reply!r}")


class Store:
    """The data and the commands."""

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}

    async def respond(self, args: list[bytes], conn: Connection) -> Any:
        if not args:
            return None
        name = args[0].upper().decode("latin-1")
        command = getattr(self, "cmd_" + name.lower(), None)
        if command is None:
            return Err(f"ERR unknown command '{name}'")
        try:
            return command(*args[1:])
        except TypeError:
            return Err(f"ERR wrong number of arguments for '{name.lower()}' command")
        except ValueError:
            return Err("ERR value is not an integer or out of range")

    def cmd_ping(self, msg: bytes | None = None) -> Any:
        return Status("PONG") if msg is None else msg

    def cmd_echo(self, msg: bytes) -> bytes:
        return msg

    def cmd_set(self, key: bytes, value: bytes) -> Status:
        self.data[key] = value
        return Status("OK")

    def cmd_get(self, key: bytes) -> Any:
        return self.data.get(key)

    def cmd_del(self, *keys: bytes) -> int:
        return sum(self.data.pop(k, None) is not None for k in keys)

    def cmd_exists(self, *keys: bytes) -> int:
        return sum(k in self.data for k in keys)

    def cmd_incr(self, key: bytes) -> int:
        return self._add(key, 1)

    def cmd_decr(self, key: bytes) -> int:
        return self._add(key, -1)

    def _add(self, key: bytes, n: int) -> int:
        value = int(self.data.get(key, b"0")) + n
        self.data[key] = b"%d" % value
        return value

    def cmd_mset(self, *pairs: bytes) -> Status:
        if not pairs or len(pairs) % 2:
            raise TypeError
        for i in range(0, len(pairs), 2):
            self.data[pairs[i]] = pairs[i + 1]
        return Status("OK")

    def cmd_mget(self, *keys: bytes) -> list[Any]:
        return [self.data.get(k) for k in keys]

    def _list(self, key: bytes) -> deque[bytes]:
        return self.data.setdefault(key, deque())  # type: ignore[no-any-return]

    def cmd_lpush(self, key: bytes, *values: bytes) -> int:
        lst = self._list(key)
        lst.extendleft(values)
        return len(lst)

    def cmd_rpush(self, key: bytes, *values: bytes) -> int:
        lst = self._list(key)
        lst.extend(values)
        return len(lst)

    def cmd_lpop(self, key: bytes) -> Any:
        lst = self.data.get(key)
        return lst.popleft() if lst else None

    def cmd_rpop(self, key: bytes) -> Any:
        lst = self.data.get(key)
        return lst.pop() if lst else None

    def cmd_llen(self, key: bytes) -> int:
        return len(self.data.get(key) or ())

    def cmd_lrange(self, key: bytes, start: bytes, stop: bytes) -> list[bytes]:
        lst = list(self.data.get(key) or ())
        a, b = int(start), int(stop)
        return lst[a : (b + 1 if b != -1 else None)]

    def cmd_dbsize(self) -> int:
        return len(self.data)

    def cmd_flushall(self, *_: bytes) -> Status:
        self.data.clear()
        return Status("OK")

    def cmd_config(self, *args: bytes) -> list[Any]:
        return []  # redis-benchmark asks CONFIG GET save/appendonly; nothing to report


def make_app(**settings: Any) -> SocketServer:
    """The application: ``SocketServer(protocol=RespProtocol, respond=store.respond)``."""
    store = Store()
    settings.setdefault("bind", "127.0.0.1:6380")
    return SocketServer(protocol=RespProtocol, respond=store.respond, name="resp", **settings)


app = make_app()

if __name__ == "__main__":
    app.start(sys.argv[1:])
