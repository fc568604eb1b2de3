"""Bounded shutdown: a TLS client cannot hold a connection without handshaking, and exit(grace) ends a run."""

from __future__ import annotations

import socket
import ssl

import pytest
import trustme

import coserve
from coserve.testing import MockClock, wait_all_tasks_blocked


@pytest.fixture(scope="module")
def server_ctx():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


async def never_called(sock: coserve.Socket) -> None:
    raise AssertionError("the handler ran without a handshake")


async def _silent_client(server: coserve.Server) -> coserve.Socket:
    """Connect and say nothing (no ClientHello); return once the server's task waits for it."""
    s = await coserve.connect(*server.address)
    while server.active == 0:
        await wait_all_tasks_blocked()
    return s


@pytest.mark.parametrize("limit, expected", [({}, 60.0), ({"handshake_timeout": 5}, 5.0)])
def test_a_tls_client_that_never_handshakes_is_dropped(server_ctx, limit, expected):
    clock = MockClock(autojump_threshold=0)

    async def main():
        server = coserve.serve_tcp(never_called, "127.0.0.1", 0, ssl=server_ctx, **limit)
        assert server.timeout is None  # no timeout of its own: the handshake bound applies anyway
        s = await _silent_client(server)
        start = coserve.gettime()
        rest = await s.receive("*a")  # the server hangs up on us
        waited = coserve.gettime() - start
        s.close()
        server.close()
        await server.wait_closed()
        return rest, waited, server.active

    rest, waited, active = coserve.run(main, clock=clock)
    assert (rest, active) == (b"", 0)
    assert waited == pytest.approx(expected)


def test_the_handler_wrapper_bounds_its_handshake(server_ctx, errors):
    clock = MockClock(autojump_threshold=0)

    async def main():
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        server = coserve.add_server(lsock, coserve.handler(never_called, server_ctx, handshake_timeout=3))
        s = await _silent_client(server)
        rest = await s.receive("*a")
        s.close()
        server.close()
        await server.wait_closed()
        return rest, coserve.gettime()

    assert coserve.run(main, clock=clock) == (b"", pytest.approx(3.0))
    assert [type(e) for e, _ in errors] == [TimeoutError]


def test_exit_with_grace_cancels_what_is_still_running():
    clock = MockClock(autojump_threshold=0)
    cleaned = []

    async def stubborn():
        try:
            await coserve.sleep(1000)
        finally:
            cleaned.append(coserve.gettime())

    async def main():
        coserve.spawn(stubborn)
        await wait_all_tasks_blocked()
        coserve.exit(grace=5)

    coserve.run(main, clock=clock)
    assert cleaned == [5.0]
    assert clock.time() == 5.0


def test_exit_with_grace_returns_as_soon_as_the_tasks_end():
    clock = MockClock(autojump_threshold=0)
    ended = []

    async def quick():
        await coserve.sleep(1)
        ended.append(coserve.gettime())

    async def main():
        coserve.spawn(quick)
        coserve.exit(grace=10)

    coserve.run(main, clock=clock)
    assert ended == [1.0]
    assert clock.time() == 1.0  # the grace timer did not keep the run going


def test_a_shorter_grace_wins_and_exit_without_grace_waits():
    clock = MockClock(autojump_threshold=0)
    ended = []

    async def slow(n):
        try:
            await coserve.sleep(n)
        finally:
            ended.append((n, coserve.gettime()))

    async def main():
        coserve.spawn(slow, 50)
        coserve.spawn(slow, 100)
        coserve.exit()  # no grace: wait for them
        coserve.exit(grace=80)
        coserve.exit(grace=90)  # longer than the grace already set: changes nothing

    coserve.run(main, clock=clock)
    assert ended == [(50, 50.0), (100, 80.0)]


def test_exit_without_grace_waits_for_every_task():
    clock = MockClock(autojump_threshold=0)

    async def main():
        coserve.spawn(coserve.sleep, 300)
        coserve.exit()

    coserve.run(main, clock=clock)
    assert clock.time() == 300.0


@pytest.mark.parametrize("grace, error", [("5", TypeError), (-1, ValueError), (float("nan"), ValueError)])
def test_a_bad_grace_is_refused(grace, error):
    async def main():
        with pytest.raises(error, match="grace"):
            coserve.exit(grace=grace)
        return coserve.exiting()

    assert coserve.run(main) is False
