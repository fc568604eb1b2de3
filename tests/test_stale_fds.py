"""Stale poller registrations: a file closed behind the kernel's back must not strand a new one.

epoll registers open files, not numbers, and forgets a closed file silently; the kernel keeps
registrations across waits. A raw socket closed directly (or a listening socket closed after
``remove_server(keep_open=True)``) left the kernel believing a number was registered, and the new
file that got the number never woke its waiter. Each test reuses the exact number.
"""

from __future__ import annotations

import socket

import pytest

import coserve


def _pair_on(fd: int) -> tuple[socket.socket, socket.socket]:
    """A connected pair whose first socket has the number *fd* (which must be free)."""
    a, b = socket.socketpair()
    if a.fileno() != fd:
        import os

        os.dup2(a.fileno(), fd)
        a.close()
        a = socket.socket(fileno=fd)
    return a, b


async def _echo_once(raw: socket.socket, peer: socket.socket) -> bytes:
    sock = coserve.wrap(raw)
    try:
        peer.send(b"hello\n")
        return await sock.receive()
    finally:
        sock.close()


def test_a_raw_close_behind_a_sockets_back_does_not_strand_the_next_socket_on_that_number():
    async def main():
        a, b = socket.socketpair()
        old = coserve.wrap(a)
        b.send(b"one\n")
        assert await old.receive() == b"one"  # the kernel registered a's number
        fd = a.fileno()
        a.close()  # behind the Socket's back: epoll forgets the file silently
        b.close()
        c, d = _pair_on(fd)
        with d:
            async with coserve.timeout_after(5):
                line = await _echo_once(c, d)
        old.close()  # closing the stale Socket later must not touch the new file's number
        return line

    assert coserve.run(main) == b"hello"


def test_the_old_sockets_close_leaves_the_new_file_on_its_number_alone():
    async def main():
        a, b = socket.socketpair()
        old = coserve.wrap(a)
        b.send(b"x")
        await old.receive(1)
        fd = a.fileno()
        a.close()
        b.close()
        c, d = _pair_on(fd)
        new = coserve.wrap(c)

        async def reader():
            return await new.receive()

        t = coserve.spawn(reader)
        await coserve.sleep(0)
        old.close()  # must not forget (or wake with an error) the new file's registration
        d.send(b"still here\n")
        result = await t
        new.close()
        d.close()
        return result

    assert coserve.run(main) == b"still here"


def test_a_waiter_on_a_file_closed_behind_its_back_gets_socket_closed_when_the_number_returns():
    async def main():
        a, b = socket.socketpair()
        old = coserve.wrap(a)

        async def stranded():
            return await old.receive()

        t = coserve.spawn(stranded)
        await coserve.sleep(0)
        assert t.state == "reading"
        fd = a.fileno()
        a.close()
        b.close()
        c, d = _pair_on(fd)
        with d:
            line = await _echo_once(c, d)
        with pytest.raises(coserve.SocketClosed, match="behind"):
            await t
        old.close()
        return line

    assert coserve.run(main) == b"hello"


def test_remove_server_keep_open_hands_the_socket_back_clean():
    async def handler(sock):
        await sock.send(b"served\n")

    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        coserve.add_server(lsock, handler)
        port = lsock.getsockname()[1]
        c = await coserve.connect("127.0.0.1", port)
        assert await c.receive() == b"served"
        c.close()
        fd = lsock.fileno()
        coserve.remove_server(lsock, keep_open=True)
        lsock.close()
        # A new listening socket on the same number is served: its accept loop wakes.
        lsock2 = socket.create_server(("127.0.0.1", 0))
        if lsock2.fileno() != fd:
            import os

            os.dup2(lsock2.fileno(), fd)
            lsock2.close()
            lsock2 = socket.socket(fileno=fd)
        server = coserve.add_server(lsock2, handler)
        await coserve.sleep(0)  # its accept loop finds nobody and waits for the socket
        c2 = await coserve.connect("127.0.0.1", lsock2.getsockname()[1])
        async with coserve.timeout_after(5):
            reply = await c2.receive()
        c2.close()
        server.close()
        return reply

    assert coserve.run(main) == b"served"


def test_serving_a_kept_open_socket_again_keeps_working():  # claim_fd must not drop a live registration
    async def handler(sock):
        await sock.send(b"again\n")

    async def main():
        lsock = socket.create_server(("127.0.0.1", 0))
        coserve.add_server(lsock, handler)
        await coserve.sleep(0)  # the accept loop waits on the socket: registered
        coserve.remove_server(lsock, keep_open=True)
        server = coserve.add_server(lsock, handler)
        await coserve.sleep(0)
        c = await coserve.connect("127.0.0.1", lsock.getsockname()[1])
        async with coserve.timeout_after(5):
            reply = await c.receive()
        c.close()
        server.close()
        return reply

    assert coserve.run(main) == b"again"


def test_detach_hands_the_raw_socket_back_and_it_can_be_wrapped_again():
    async def main():
        a, b = socket.socketpair()
        s = coserve.wrap(a)

        async def reader():
            return await s.receive()

        t = coserve.spawn(reader)
        await coserve.sleep(0)
        raw = s.detach()
        assert raw is a and s.closed and raw.fileno() >= 0
        with pytest.raises(coserve.SocketClosed):
            await t
        again = coserve.wrap(raw)
        b.send(b"after detach\n")
        line = await again.receive()
        again.close()
        b.close()
        with pytest.raises(coserve.SocketClosed):
            s.detach()
        return line

    assert coserve.run(main) == b"after detach"


def test_detach_refuses_to_lose_buffered_bytes():
    async def main():
        a, b = socket.socketpair()
        s = coserve.wrap(a)
        b.send(b"line\nrest")
        assert await s.receive() == b"line"
        with pytest.raises(coserve.CoserveError, match="buffered"):
            s.detach()
        assert await s.receive_partial() == b"rest"
        raw = s.detach()
        raw.close()
        b.close()

    coserve.run(main)
