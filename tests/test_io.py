"""The kernel's file-descriptor waits, over socketpairs (the socket layer builds on these).

The test-suite runs this module twice: on epoll, and with COSERVE_POLLER=selectors.
"""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

import coserve
from coserve import _kernel
from coserve._kernel import wait_readable, wait_writable
from coserve.testing import wait_all_tasks_blocked


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_wait_readable_wakes_when_data_arrives(pair):
    a, b = pair

    async def reader():
        await wait_readable(a.fileno())
        return a.recv(100)

    async def main():
        t = coserve.spawn(reader)
        await wait_all_tasks_blocked()
        assert t.state == "reading" and coserve.status()["reading"] == 1
        b.send(b"ping")
        return await t

    assert coserve.run(main) == b"ping"


def test_registration_persists_across_waits_and_is_dropped_lazily(pair):
    a, b = pair

    async def main():
        k = _kernel._K
        for i in range(3):
            b.send(b"x")
            await wait_readable(a.fileno())
            assert a.recv(10) == b"x"
            assert k._fds[a.fileno()][2] == _kernel.IN, f"still registered after wait {i}"
        b.send(b"unwanted")  # nobody waits: the next event drops the interest
        for _ in range(3):
            await coserve.sleep(0)
        return a.fileno() in k._fds

    assert coserve.run(main) is False


def test_wait_writable_and_both_directions_at_once(pair):
    a, b = pair

    async def writer():
        await wait_writable(a.fileno())
        return "writable"

    async def reader():
        await wait_readable(a.fileno())
        return a.recv(10)

    async def main():
        r = coserve.spawn(reader)
        w = coserve.spawn(writer)
        assert await w == "writable"
        b.send(b"both")
        return await r

    assert coserve.run(main) == b"both"


def test_two_readers_on_one_fd_is_resource_busy(pair):
    a, b = pair

    async def reader():
        await wait_readable(a.fileno())

    async def main():
        first = coserve.spawn(reader, name="first")
        await wait_all_tasks_blocked()
        with pytest.raises(coserve.ResourceBusy, match="first"):
            await wait_readable(a.fileno())
        b.send(b"x")
        await first

    coserve.run(main)


def test_cancelled_wait_undoes_its_registration(pair):
    a, _ = pair

    async def main():
        async with coserve.move_on_after(0.01) as scope:
            await wait_readable(a.fileno())
        k = _kernel._K
        return scope.expired, k._fds[a.fileno()][0], k._pending_io

    assert coserve.run(main) == (True, None, 0)


def test_forget_fd_wakes_its_waiters_with_the_given_error(pair):
    a, _ = pair

    async def reader():
        await wait_readable(a.fileno())

    async def main():
        t = coserve.spawn(reader)
        await wait_all_tasks_blocked()
        _kernel._K.forget_fd(a.fileno(), lambda: ConnectionAbortedError("closed by us"))
        with pytest.raises(ConnectionAbortedError, match="closed by us"):
            await t

    coserve.run(main)


def test_fd_number_reused_after_forget_and_close():
    # Registrations persist, so an fd must be forgotten before it is closed (the socket layer's
    # close() does it): then its number can come back for another file.
    async def main():
        a, b = socket.socketpair()
        b.send(b"1")
        await wait_readable(a.fileno())
        num = a.fileno()
        _kernel._K.forget_fd(num)
        a.close()
        b.close()
        c, d = socket.socketpair()
        try:
            if c.fileno() != num:
                c, d = d, c
            assert c.fileno() == num
            d.send(b"2")
            await wait_readable(c.fileno())
            return c.recv(1)
        finally:
            _kernel._K.forget_fd(c.fileno())
            c.close()
            d.close()

    assert coserve.run(main) == b"2"


def test_interest_added_to_an_fd_epoll_already_forgot(pair):
    # The kernel believes fd is registered for reading; epoll lost it (dup2 over it, say).
    # Adding the write interest must fall back from modify to register.
    a, b = pair

    async def main():
        b.send(b"x")
        await wait_readable(a.fileno())
        k = _kernel._K
        k._poller.unregister(a.fileno())  # behind the kernel's back
        await wait_writable(a.fileno())
        return "writable"

    assert coserve.run(main) == "writable"


def test_unpollable_fd_raises_in_the_task():
    with tempfile.TemporaryFile() as f:

        async def main():
            with pytest.raises(OSError):
                await wait_readable(f.fileno())
            return "loop still fine"

        if os.environ.get("COSERVE_POLLER") == "selectors":
            pytest.skip("select() accepts regular files")
        assert coserve.run(main) == "loop still fine"


def test_hang_up_wakes_the_reader(pair):
    a, b = pair

    async def reader():
        await wait_readable(a.fileno())
        return a.recv(10)

    async def main():
        t = coserve.spawn(reader)
        await wait_all_tasks_blocked()
        b.shutdown(socket.SHUT_WR)
        return await t

    assert coserve.run(main) == b""


def test_run_keeps_going_while_a_task_waits_for_io(pair):
    a, b = pair

    async def reader():
        await wait_readable(a.fileno())
        return a.recv(10)

    def later(timer, params):
        b.send(b"late")

    async def main():
        coserve.timer(later, 0.01)
        return await coserve.spawn(reader)

    assert coserve.run(main) == b"late"
