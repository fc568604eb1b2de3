"""The smallest SocketServer: a line echo protocol.

    python examples/echo_protocol.py [--bind 127.0.0.1:8060]

``LineProtocol`` is the codec (a message is one line); ``respond`` answers it.
Try it with ``nc 127.0.0.1 8060``; ``quit`` closes the connection.
"""

from __future__ import annotations

import sys

from coserve.app import Connection, SocketServer


class LineProtocol:
    """Lines in, lines out."""

    def decode(self, data: bytes) -> tuple[bytes | None, bytes]:
        line, sep, rest = data.partition(b"\n")
        return (line.rstrip(b"\r"), rest) if sep else (None, data)

    def encode(self, line: bytes) -> bytes:
        return line + b"\n"


async def respond(line: bytes, conn: Connection) -> bytes | None:
    if line == b"quit":
        conn.close()
        return b"bye"
    return line


app = SocketServer(protocol=LineProtocol, respond=respond, name="echo")

if __name__ == "__main__":
    app.start(sys.argv[1:])
