"""Servers refuse bad arguments before they start, and one client's failed setup never stops accepting."""

from __future__ import annotations

import functools
import socket

import pytest

import coserve
import coserve._kernel
import coserve._server


async def echo(sock: coserve.Socket) -> None:
    while data := await sock.receive_partial():
        await sock.send(data)


async def echo_with_prefix(prefix: bytes, sock: coserve.Socket) -> None:
    while data := await sock.receive_partial():
        await sock.send(prefix + data)


class AsyncCallable:
    async def __call__(self, sock: coserve.Socket) -> None:
        await echo(sock)


class Service:
    async def handle(self, sock: coserve.Socket) -> None:
        await echo(sock)


def plain_function(sock):
    return None


async def no_argument():
    return None


async def two_arguments(sock, other):
    return None


def _listener() -> socket.socket:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    return lsock


BAD_HANDLERS = [
    (plain_function, TypeError, "must be an async function"),
    (lambda sock: echo(sock), TypeError, "must be an async function"),
    (no_argument, TypeError, "called with one argument"),
    (two_arguments, TypeError, "called with one argument"),
    (42, TypeError, "must be an async function"),
]
BAD_TIMEOUTS = [("5", TypeError), (True, TypeError), (-1, ValueError), (float("nan"), ValueError)]


@pytest.mark.parametrize("handler, error, message", BAD_HANDLERS)
def test_serve_tcp_refuses_a_bad_handler_before_binding(handler, error, message):
    async def main():
        with pytest.raises(error, match=message):
            coserve.serve_tcp(handler, "127.0.0.1", 0)
        return not coserve._kernel.get_kernel().servers

    assert coserve.run(main)


@pytest.mark.parametrize("handler, error, message", BAD_HANDLERS)
def test_add_server_refuses_a_bad_handler_and_leaves_the_socket_alone(handler, error, message):
    lsock = _listener()

    async def main():
        with pytest.raises(error, match=message):
            coserve.add_server(lsock, handler)
        return not coserve._kernel.get_kernel().servers

    try:
        assert coserve.run(main)
        assert lsock.fileno() >= 0  # still the caller's, open
    finally:
        lsock.close()


@pytest.mark.parametrize("timeout, error", BAD_TIMEOUTS)
def test_a_bad_timeout_is_refused_everywhere(timeout, error, tmp_path):
    lsock = _listener()

    async def main():
        with pytest.raises(error, match="timeout"):
            coserve.serve_tcp(echo, "127.0.0.1", 0, timeout=timeout)
        with pytest.raises(error, match="handshake_timeout"):
            coserve.serve_tcp(echo, "127.0.0.1", 0, handshake_timeout=timeout)
        with pytest.raises(error, match="timeout"):
            coserve.serve_udp(echo, "127.0.0.1", 0, timeout=timeout)
        with pytest.raises(error, match="timeout"):
            coserve.serve_unix(echo, str(tmp_path / "s"), timeout=timeout)
        with pytest.raises(error, match="timeout"):
            coserve.add_server(lsock, echo, timeout=timeout)
        with pytest.raises(error, match="handshake_timeout"):
            coserve.handler(echo, None, handshake_timeout=timeout)
        server = coserve.serve_tcp(echo, "127.0.0.1", 0)
        with pytest.raises(error, match="timeout"):
            server.timeout = timeout
        with pytest.raises(error, match="handshake_timeout"):
            server.handshake_timeout = timeout
        assert server.timeout is None and server.handshake_timeout == 60.0
        server.close()
        return not coserve._kernel.get_kernel().servers

    try:
        assert coserve.run(main)
    finally:
        lsock.close()
    assert not (tmp_path / "s").exists()


def test_infinite_timeouts_mean_no_limit():
    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, timeout=float("inf"), handshake_timeout=float("inf"))
        assert server.timeout is None and server.handshake_timeout is None
        server.close()

    coserve.run(main)


@pytest.mark.parametrize(
    "handler",
    [echo, functools.partial(echo_with_prefix, b""), AsyncCallable(), Service().handle],
    ids=["function", "partial", "async-call", "bound-method"],
)
def test_every_kind_of_async_callable_serves(handler):
    async def main():
        server = coserve.serve_tcp(handler, "127.0.0.1", 0)
        s = await coserve.connect(*server.address)
        await s.send(b"hi\n")
        line = await s.receive("*l")
        s.close()
        server.close()
        await server.wait_closed()
        return line

    assert coserve.run(main) == b"hi"


def test_a_client_whose_setup_fails_is_reported_and_the_server_goes_on(errors, monkeypatch):
    # The first connection's setup fails (as if building its Socket raised); the accept loop
    # reports it, closes that connection, and serves the next client.
    real_socket = coserve._server.Socket
    calls = []

    def flaky_socket(conn):
        calls.append(conn)
        if len(calls) == 1:
            raise RuntimeError("setting up this client failed")
        return real_socket(conn)

    monkeypatch.setattr(coserve._server, "Socket", flaky_socket)

    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0)
        first = await coserve.connect(*server.address)
        with pytest.raises(coserve.ConnectionClosed):
            await first.receive("*l")  # that connection was closed by the server
        first.close()
        second = await coserve.connect(*server.address)
        await second.send(b"still serving\n")
        line = await second.receive("*l")
        second.close()
        server.close()
        await server.wait_closed()
        return line, server.accepted

    assert coserve.run(main) == (b"still serving", 2)
    assert [(type(e), str(e)) for e, _ in errors] == [(RuntimeError, "setting up this client failed")]
    assert errors[0][1].endswith(":accept")
