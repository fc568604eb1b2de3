"""A client that leaves ends its connection quietly; a real bug in a handler is still reported."""

from __future__ import annotations

import logging
import socket
import struct

import pytest

import coserve


async def line_echo(sock: coserve.Socket) -> None:
    # The README's echo: a client that leaves without "quit" makes receive() raise ConnectionClosed.
    while True:
        line = await sock.receive()
        if line == b"quit":
            break
        await sock.send(line + b"\n")


def _reset(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
    s.close()


@pytest.mark.parametrize("leave", ["close", "reset"])
def test_a_client_leaving_mid_pattern_is_not_an_error(errors, caplog, leave):
    async def main():
        server = coserve.serve_tcp(line_echo, "127.0.0.1", 0)
        client = await coserve.connect(*server.address)
        await client.send(b"hello\n")
        assert await client.receive() == b"hello"
        await client.send(b"half a line")
        raw = client.detach()
        raw.close() if leave == "close" else _reset(raw)
        server.close()
        await server.wait_closed()  # the handler ends on its own, seeing the client leave
        return server.accepted

    with caplog.at_level(logging.DEBUG, logger="coserve"):
        assert coserve.run(main) == 1
    assert errors == []
    assert any("the client went away" in r.getMessage() for r in caplog.records)


def test_other_errors_of_a_handler_are_still_reported(errors):
    async def buggy(sock):
        await sock.receive()
        raise KeyError("a real bug")

    async def backend_refused(sock):
        await sock.receive()
        raise ConnectionRefusedError("the handler's own backend is down")

    async def main():
        for handler in (buggy, backend_refused):
            server = coserve.serve_tcp(handler, "127.0.0.1", 0)
            client = await coserve.connect(*server.address)
            await client.send(b"go\n")
            assert await client.receive("*a") == b""  # the server closed the connection
            client.close()
            server.close()
            await server.wait_closed()

    coserve.run(main)
    assert [type(e) for e, _ in errors] == [KeyError, ConnectionRefusedError]
    assert all(":client_1" in name for _, name in errors)
