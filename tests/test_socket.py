"""Sockets and servers: Copas's socket scenarios, over loopback."""

from __future__ import annotations

import errno
import os
import socket
import tempfile

import pytest

import coserve
from coserve.testing import wait_all_tasks_blocked


async def echo(sock: coserve.Socket) -> None:
    while True:
        data = await sock.receive_partial()
        if not data:
            return
        await sock.send(data)


def serve(handler, **kw):
    return coserve.serve_tcp(handler, "127.0.0.1", 0, **kw)


# --- receive patterns --------------------------------------------------------------------


def test_receive_patterns_lines_counts_and_all():
    async def talker(sock):
        await sock.send(b"first line\r\nsecond\nexact12bytesrest of it")
        sock.shutdown(socket.SHUT_WR)
        await sock.receive("*a")

    async def main():
        server = serve(talker)
        s = await coserve.connect(*server.address)
        got = [
            await s.receive(),
            await s.receive("*l", prefix=b">"),
            await s.receive(12),
            await s.receive("*a", prefix=b"["),
            await s.receive("*a"),
        ]
        s.close()
        server.close()
        return got

    assert coserve.run(main) == [b"first line", b">second", b"exact12bytes", b"[rest of it", b""]


def test_receive_n_counts_the_prefix_toward_n_as_luasocket_does():
    async def talker(sock):
        await sock.send(b"cdefg")
        sock.shutdown(socket.SHUT_WR)
        await sock.receive("*a")

    async def main():
        server = serve(talker)
        s = await coserve.connect(*server.address)
        got = [
            await s.receive(5, b"ab"),  # 3 bytes received, 5 returned
            await s.receive(2, b"xyz"),  # the prefix is already n bytes or more: nothing is read
            await s.receive(2, b"x"),
            await s.receive(0, b"p"),
        ]
        with pytest.raises(coserve.ConnectionClosed) as info:
            await s.receive(4, b"12")  # 1 byte left, then the end: the partial keeps the prefix
        got.append(info.value.partial)
        s.close()
        server.close()
        return got

    assert coserve.run(main) == [b"abcde", b"xyz", b"xf", b"p", b"12g"]


def test_a_partial_read_resumes_with_its_partial_as_prefix():
    # Copas's idiom: a read of n bytes that ends early is resumed by passing what arrived as the
    # prefix of a new read of the same n, which then returns n bytes in all.
    async def talker(sock):
        await sock.send(b"1234")
        await sock.receive(1)  # the client's go-ahead
        await sock.send(b"5678")

    async def main():
        server = serve(talker)
        s = await coserve.connect(*server.address)
        first = await s.receive_partial(8)
        await s.send(b"!")
        whole = await s.receive(8, first)
        s.close()
        server.close()
        return first, whole

    assert coserve.run(main) == (b"1234", b"12345678")


def test_connection_closed_mid_pattern_keeps_the_partial_data():
    async def talker(sock):
        await sock.send(b"no end of line")

    async def main():
        server = serve(talker)
        s = await coserve.connect(*server.address)
        with pytest.raises(coserve.ConnectionClosed) as info:
            await s.receive("*l", prefix=b"<")
        assert info.value.partial == b"<no end of line"
        assert isinstance(info.value, ConnectionError)
        s.close()
        s2 = await coserve.connect(*server.address)
        with pytest.raises(coserve.ConnectionClosed) as info2:
            await s2.receive(100)
        s2.close()
        server.close()
        return info2.value.partial

    assert coserve.run(main) == b"no end of line"


def test_line_longer_than_max_line_raises_and_memory_stays_bounded():
    async def talker(sock):
        await sock.send(b"x" * 300_000)

    async def main():
        server = serve(talker)
        s = await coserve.connect(*server.address)
        s.max_line = 100_000
        with pytest.raises(coserve.LineTooLong):
            await s.receive()
        assert len(s._rbuf) < 100_000 + 65536 + 1
        s.close()
        server.close()

    coserve.run(main)


def test_receive_partial_returns_what_is_there_and_empty_at_eof():
    async def talker(sock):
        await sock.send(b"abc")
        await sock.receive(1)

    async def main():
        server = serve(talker)
        s = await coserve.connect(*server.address)
        first = await s.receive_partial()
        await s.send(b"!")
        last = await s.receive_partial()
        s.close()
        server.close()
        return first, last

    assert coserve.run(main) == (b"abc", b"")


def test_bad_pattern_is_a_clear_error():
    async def main():
        server = serve(echo)
        s = await coserve.connect(*server.address)
        for bad in ("*x", -1, 1.5, True):
            with pytest.raises(ValueError, match="pattern"):
                await s.receive(bad)
        s.close()
        server.close()

    coserve.run(main)


# --- timeouts -----------------------------------------------------------------------------


def test_receive_timeout_leaves_the_socket_usable():
    async def slow(sock):
        await sock.send(b"part")
        await sock.receive(1)  # wait for the go-ahead
        await sock.send(b"ial line\n")
        await sock.receive(1)

    async def main():
        server = serve(slow)
        s = await coserve.connect(*server.address)
        s.settimeouts(receive=0.05)
        with pytest.raises(TimeoutError):
            await s.receive()  # "part" arrived, no end of line
        await s.send(b"g")
        line = await s.receive()  # nothing was lost
        s.close()
        server.close()
        return line

    assert coserve.run(main) == b"partial line"


def test_timeout_restarts_on_progress():
    async def trickle(sock):
        for _ in range(5):
            await sock.send(b"x")
            await coserve.sleep(0.03)  # each gap is below the timeout; the total is above it

    async def main():
        server = serve(trickle)
        s = await coserve.connect(*server.address)
        s.settimeout(0.1)
        data = await s.receive("*a")
        s.close()
        server.close()
        return data

    assert coserve.run(main) == b"xxxxx"


def test_server_timeout_is_inherited_by_client_sockets():
    outcome = []

    async def handler(sock):
        try:
            await sock.receive()
        except TimeoutError:
            outcome.append(("timeout", sock.receive_timeout))

    async def main():
        server = serve(handler, timeout=0.05)
        s = await coserve.connect(*server.address)
        assert await s.receive("*a") == b""  # the server closes after its handler returns
        s.close()
        server.close()

    coserve.run(main)
    assert outcome == [("timeout", 0.05)]


def test_connect_timeout():
    # A listener whose accept queue is full: Linux drops further SYNs, so connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(listener.getsockname())
            fillers.append(c)

        async def main():
            with pytest.raises(TimeoutError):
                await coserve.connect(*listener.getsockname(), timeout=0.2)

        coserve.run(main)
    finally:
        for c in fillers:
            c.close()
        listener.close()


def test_bad_timeouts_are_refused():
    async def main():
        server = serve(echo)
        s = await coserve.connect(*server.address)
        with pytest.raises(ValueError):
            s.settimeout(-1)
        with pytest.raises(ValueError):
            s.settimeouts(receive="soon")
        s.close()
        server.close()

    coserve.run(main)


# --- closing, half-close, errors ---------------------------------------------------------------


def test_closing_a_socket_wakes_the_task_reading_it():
    async def reader(s):
        with pytest.raises(coserve.SocketClosed, match="closed"):
            await s.receive()
        return "woken"

    async def main():
        server = serve(echo)
        s = await coserve.connect(*server.address)
        t = coserve.spawn(reader, s)
        await wait_all_tasks_blocked()
        s.close()
        result = await t
        with pytest.raises(coserve.SocketClosed):
            await s.send(b"x")
        server.close()
        return result

    assert coserve.run(main) == "woken"


def test_half_close_then_read_the_rest_of_the_reply():
    async def upper(sock):
        data = await sock.receive("*a")
        await sock.send(data.upper())

    async def main():
        server = serve(upper)
        s = await coserve.connect(*server.address)
        await s.send(b"hello ")
        await s.send(b"world")
        s.shutdown(socket.SHUT_WR)
        reply = await s.receive("*a")
        s.close()
        server.close()
        return reply

    assert coserve.run(main) == b"HELLO WORLD"


def test_peer_reset_ends_only_that_connection():
    served = []

    async def handler(sock):
        try:
            while True:
                data = await sock.receive_partial()
                if not data:
                    break
                await sock.send(data)
        except ConnectionResetError:
            served.append("reset")

    async def main():
        server = serve(handler)
        raw = socket.create_connection(server.address)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.sendall(b"x" * 10)
        raw.close()  # linger 0: RST
        good = await coserve.connect(*server.address)
        await good.send(b"still fine")
        reply = await good.receive(10)
        good.close()
        server.close()
        return reply

    assert coserve.run(main) == b"still fine"
    assert served in ([], ["reset"])  # the reset may arrive as EOF or as ECONNRESET


def test_connection_refused_raises_the_os_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    async def main():
        with pytest.raises(ConnectionRefusedError):
            await coserve.connect("127.0.0.1", port)

    coserve.run(main)


def test_two_readers_on_one_socket_is_resource_busy():
    async def main():
        server = serve(echo)
        s = await coserve.connect(*server.address)
        t = coserve.spawn(s.receive)
        await wait_all_tasks_blocked()
        with pytest.raises(coserve.ResourceBusy):
            await s.receive()
        s.close()
        with pytest.raises(coserve.SocketClosed):
            await t
        server.close()

    coserve.run(main)


def test_udp_calls_on_a_stream_socket_are_refused():
    async def main():
        server = serve(echo)
        s = await coserve.connect(*server.address)
        with pytest.raises(coserve.CoserveError, match="UDP"):
            await s.receive_from()
        with pytest.raises(coserve.CoserveError, match="UDP"):
            await s.send_to(b"x", ("127.0.0.1", 9))
        s.close()
        server.close()

    coserve.run(main)


# --- servers ----------------------------------------------------------------------------------


def test_server_names_counts_and_error_handler_gets_the_socket(errors):
    seen = []

    async def handler(sock):
        seen.append(coserve.current_task().name)
        line = await sock.receive()
        if line == b"boom":
            raise ValueError("handler failed")
        await sock.send(line + b"\n")

    async def main():
        server = serve(handler, name="svc")
        for msg in (b"hi", b"boom"):
            s = await coserve.connect(*server.address)
            await s.send(msg + b"\n")
            await s.receive("*a")
            s.close()
        counts = server.accepted, server.active
        server.close()
        await server.wait_closed()
        return counts

    assert coserve.run(main) == (2, 0)
    assert seen == ["svc:client_1", "svc:client_2"]
    [(exc, name)] = errors
    assert str(exc) == "handler failed" and name == "svc:client_2"


def test_error_handler_receives_the_client_socket():
    got = []

    async def handler(sock):
        coserve.set_error_handler(lambda exc, task, s: got.append(s is sock))
        raise RuntimeError("x")

    async def main():
        server = serve(handler)
        s = await coserve.connect(*server.address)
        await s.receive("*a")
        s.close()
        server.close()

    coserve.run(main)
    assert got == [True]


def test_remove_server_keep_open_then_serve_it_again():
    async def main():
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        coserve.add_server(listener, echo)
        coserve.remove_server(listener, keep_open=True)
        assert listener.fileno() >= 0
        with pytest.raises(coserve.CoserveError):
            coserve.remove_server(listener)
        server = coserve.add_server(listener, echo)  # the same socket, served again
        s = await coserve.connect(*listener.getsockname())
        await s.send(b"again")
        reply = await s.receive(5)
        s.close()
        coserve.remove_server(listener)
        assert listener.fileno() == -1 and server.closed
        return reply

    assert coserve.run(main) == b"again"


def test_connecting_twice():
    async def main():
        server = serve(echo)
        replies = []
        for n in range(2):
            s = await coserve.connect(*server.address)
            await s.send(b"%d" % n)
            replies.append(await s.receive(1))
            s.close()
        server.close()
        return replies

    assert coserve.run(main) == [b"0", b"1"]


def test_exit_stops_the_server_and_run_returns_when_handlers_end():
    trace = []

    async def handler(sock):
        await coserve.wait_for_exit()
        await sock.send(b"bye\n")
        trace.append("handler done")

    async def main():
        server = serve(handler)
        s = await coserve.connect(*server.address)
        await wait_all_tasks_blocked()
        coserve.exit()
        trace.append(await s.receive())
        s.close()
        with pytest.raises(OSError):
            await coserve.connect(*server.address)

    coserve.run(main)
    assert trace == ["handler done", b"bye"]


def test_a_server_keeps_run_going_until_cancel_all():
    async def stopper():
        await wait_all_tasks_blocked()  # the server waits for connections
        coserve.cancel_all()

    serve(echo)
    coserve.spawn(stopper)
    coserve.run()
    assert coserve.finished()


def test_handler_wrapper_without_tls_just_calls():
    async def greet(sock):
        await sock.send(b"hi")

    async def main():
        server = serve(coserve.handler(greet))
        s = await coserve.connect(*server.address)
        data = await s.receive("*a")
        s.close()
        server.close()
        return data

    assert coserve.run(main) == b"hi"


def test_wrap_adopts_a_plain_socket():
    async def main():
        server = serve(echo)
        raw = socket.create_connection(server.address)
        s = coserve.wrap(raw)
        assert not raw.getblocking()
        await s.send(b"wrapped")
        reply = await s.receive(7)
        s.close()
        server.close()
        return reply

    assert coserve.run(main) == b"wrapped"
    with pytest.raises(TypeError):
        coserve.wrap("not a socket")


# --- fairness ---------------------------------------------------------------------------------


def test_a_reader_whose_socket_always_has_data_does_not_starve_others():
    async def flood(sock):
        chunk = b"x" * 65536
        try:
            while True:
                await sock.send(chunk)
        except (ConnectionError, coserve.SocketClosed):
            pass

    async def main():
        server = serve(flood)
        s = await coserve.connect(*server.address)
        ticks = []

        async def ticker():
            for i in range(20):
                ticks.append(i)
                await coserve.sleep(0)

        t = coserve.spawn(ticker)
        received = 0
        while not t.done():
            received += len(await s.receive_partial())
        s.close()
        server.close()
        return received, ticks

    received, ticks = coserve.run(main)
    assert ticks == list(range(20)) and received > 0


def test_receives_served_from_the_buffer_take_turns_too():
    # 4,000 lines arrive in a few segments; almost every receive() is served from the socket's
    # buffer, without a system call. Those count toward the starve rule like any operation that
    # did not wait: the other task gets a turn at least every 16 of them.
    lines = 4000

    async def main():
        s, raw = await _tcp_pair()
        raw.sendall(b"a short line\n" * lines)
        raw.close()
        await wait_all_tasks_blocked()
        turns = 0
        done = False

        async def other():
            nonlocal turns
            while not done:
                turns += 1
                await coserve.sleep(0)

        t = coserve.spawn(other)
        for _ in range(lines):
            await s.receive()
        done = True
        await t
        s.close()
        return turns

    assert coserve.run(main) >= lines // 16 - 1


# --- UDP, Unix, IPv6 ----------------------------------------------------------------------------


def test_udp_echo_and_receive_from_timeout():
    async def udp_echo(sock):
        while True:
            data, addr = await sock.receive_from()
            await sock.send_to(data.upper(), addr)

    async def main():
        server = coserve.serve_udp(udp_echo, "127.0.0.1", 0)
        client = await coserve.open_udp(remote_addr=server.address)
        await client.send(b"ping")
        reply = await client.receive(100)
        await client.send(b"pong")
        reply2, addr = await client.receive_from()
        client.settimeouts(receive=0.05)
        with pytest.raises(TimeoutError):
            await client.receive_from()
        with pytest.raises(TimeoutError):
            await client.receive(10)
        client.close()
        server.close()
        return reply, reply2, addr == server.address

    assert coserve.run(main) == (b"PING", b"PONG", True)


def test_udp_datagram_larger_than_max_is_reported():
    async def main():
        a = await coserve.open_udp(local_addr=("127.0.0.1", 0))
        b = await coserve.open_udp(remote_addr=a.getsockname())
        await b.send(b"y" * 100)
        with pytest.raises(coserve.DatagramTooLarge) as info:
            await a.receive_from(10)
        a.close()
        b.close()
        return info.value.data

    assert coserve.run(main) == b"y" * 10


def test_unix_socket_server_and_client():
    path = os.path.join(tempfile.mkdtemp(), "s.sock")

    async def main():
        server = coserve.serve_unix(echo, path)
        s = await coserve.connect_unix(path)
        await s.send(b"over unix")
        reply = await s.receive(9)
        s.close()
        server.close()
        return reply, os.path.exists(path)

    try:
        assert coserve.run(main) == (b"over unix", False)
    finally:
        os.rmdir(os.path.dirname(path))


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="this machine has no IPv6 loopback")
def test_ipv6_loopback():
    async def main():
        server = coserve.serve_tcp(echo, "::1", 0)
        s = await coserve.connect("::1", server.address[1])
        await s.send(b"six")
        reply = await s.receive(3)
        s.close()
        server.close()
        return reply

    assert coserve.run(main) == b"six"


def test_happy_eyeballs_falls_back_to_the_address_that_answers():
    # localhost may resolve to ::1 and 127.0.0.1; only IPv4 listens: the connect still succeeds.
    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0)
        s = await coserve.connect("localhost", server.address[1])
        await s.send(b"ok")
        reply = await s.receive(2)
        s.close()
        server.close()
        return reply

    assert coserve.run(main) == b"ok"


def test_happy_eyeballs_interleaves_families():
    from coserve._socket import _interleave

    six, four = socket.AF_INET6, socket.AF_INET
    infos = [(six, 1, 0, "", "a"), (six, 1, 0, "", "b"), (four, 1, 0, "", "c"), (four, 1, 0, "", "d")]
    assert [i[4] for i in _interleave(infos)] == ["a", "c", "b", "d"]


def test_happy_eyeballs_starts_the_next_address_when_the_first_hangs(monkeypatch):
    # The first address never answers (a full accept queue); the second does, 250 ms later.
    from coserve import _socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    hanging = listener.getsockname()
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(hanging)
        fillers.append(c)

    async def main():
        server = serve(echo)
        infos = [
            (socket.AF_INET, socket.SOCK_STREAM, 0, "", hanging),
            (socket.AF_INET, socket.SOCK_STREAM, 0, "", server.address),
        ]

        async def fake_resolve(host, port, type):
            return infos

        monkeypatch.setattr(_socket, "_resolve", fake_resolve)
        t0 = coserve.gettime()
        s = await coserve.connect("example.invalid", 1)
        elapsed = coserve.gettime() - t0
        peer = s.getpeername()
        s.close()
        server.close()
        return elapsed, peer

    try:
        elapsed, peer = coserve.run(main)
    finally:
        for c in fillers:
            c.close()
        listener.close()
    assert peer[1] != hanging[1]
    assert 0.2 <= elapsed < 2


def test_sigpipe_does_not_kill_and_broken_pipe_is_an_os_error():
    async def hang_up(sock):
        return  # the server closes the connection at once

    async def main():
        server = serve(hang_up)
        s = await coserve.connect(*server.address)
        server.close()
        with pytest.raises(OSError) as info:
            for _ in range(200):  # once the buffers are full, send waits until the reset wakes it
                await s.send(b"z" * 65536)
        s.close()
        return info.value.errno

    assert coserve.run(main) in (errno.EPIPE, errno.ECONNRESET)


def test_a_socket_dropped_without_close_does_not_confuse_the_kernel():
    import gc

    async def main():
        server = serve(echo)
        s = await coserve.connect(*server.address)
        await s.send(b"x")
        await s.receive(1)  # the fd is now registered with the kernel
        number = s.fileno()
        with pytest.warns(ResourceWarning):
            del s
            gc.collect()
        a, b = socket.socketpair()
        try:
            reused = a if a.fileno() == number else b if b.fileno() == number else None
            other = b if reused is a else a
            assert reused is not None, "the fd number was not reused"
            sock = coserve.wrap(reused)
            other.send(b"y")
            got = await sock.receive(1)  # would hang if the kernel still believed it registered
            sock.close()
        finally:
            a.close()
            b.close()
        server.close()
        return got

    assert coserve.run(main) == b"y"


# --- a receive that fails loses nothing (issue 7, item 9) ----------------------------------------


def _reset(raw: socket.socket) -> None:
    """Close *raw* with a TCP reset instead of an orderly FIN."""
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raw.close()


async def _tcp_pair():
    """A coserve Socket and the raw socket at the other end of a loopback TCP connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        s = await coserve.connect(*listener.getsockname())
        raw, _ = listener.accept()
    finally:
        listener.close()
    return s, raw


def test_receive_all_that_times_out_keeps_what_it_received():
    async def main():
        s, raw = await _tcp_pair()
        raw.sendall(b"first half, ")
        s.settimeouts(receive=0.05)
        with pytest.raises(TimeoutError):
            await s.receive("*a")
        raw.sendall(b"second half")
        raw.close()
        data = await s.receive("*a")
        s.close()
        return data

    assert coserve.run(main) == b"first half, second half"


@pytest.mark.parametrize("pattern", ["*a", "*l", 1000])
def test_a_cancelled_receive_keeps_what_it_received(pattern):
    async def main():
        s, raw = await _tcp_pair()
        reader = coserve.spawn(s.receive, pattern)
        raw.sendall(b"received before the cancellation; ")
        await wait_all_tasks_blocked()  # the reader has those bytes and waits for more
        reader.cancel()
        with pytest.raises(coserve.Cancelled):
            await reader
        raw.sendall(b"and after\n")
        raw.close()
        data = await s.receive("*a")
        s.close()
        return data

    assert coserve.run(main) == b"received before the cancellation; and after\n"


@pytest.mark.parametrize("pattern", ["*a", "*l", 1000])
def test_a_reset_mid_pattern_hands_over_what_arrived(pattern):
    async def main():
        s, raw = await _tcp_pair()
        reader = coserve.spawn(s.receive, pattern, b"<")
        raw.sendall(b"arrived before the reset")
        await wait_all_tasks_blocked()  # the reader has those bytes and waits for more
        _reset(raw)
        with pytest.raises(coserve.ConnectionReset) as info:
            await reader
        assert isinstance(info.value, ConnectionResetError) and isinstance(
            info.value, coserve.ConnectionClosed
        )
        assert info.value.errno == errno.ECONNRESET
        assert s._rbuf == b""  # handed over, not kept as well
        s.close()
        return info.value.partial

    assert coserve.run(main) == b"<arrived before the reset"


def test_cancellations_at_every_receive_lose_no_byte():
    # A cancellation delivered at any of a receive's waits, including the turn a busy socket gives
    # the other tasks, must never land after bytes were taken from the socket.
    payload = bytes(range(256)) * 4

    async def main():
        s, raw = await _tcp_pair()
        raw.sendall(payload)
        raw.close()
        await wait_all_tasks_blocked()
        me = coserve.current_task()
        got = bytearray()
        for i in range(200):
            me.cancel()  # delivered at this task's next wait, wherever that is
            try:
                got += await s.receive_partial(1 + i % 3)  # each one a recv that fills its request
                await coserve.sleep(0)  # the cancellation lands here if the receive had no wait
            except coserve.Cancelled:
                pass
        got += await s.receive("*a")
        s.close()
        return bytes(got)

    assert coserve.run(main) == payload


# --- clear errors for bad input, before anything happens (issue 7, item 17) -----------------------


@pytest.mark.parametrize("bad", [-1, 0])
def test_receive_partial_needs_a_positive_max(bad):
    async def main():
        s, raw = await _tcp_pair()
        raw.sendall(b"ab")
        await wait_all_tasks_blocked()
        with pytest.raises(ValueError, match="receive_partial"):
            await s.receive_partial(bad)
        data = await s.receive(2)  # nothing was dropped
        s.close()
        raw.close()
        return data

    assert coserve.run(main) == b"ab"


def test_receive_partial_max_must_be_an_int():
    async def main():
        s, raw = await _tcp_pair()
        raw.sendall(b"ab")
        await wait_all_tasks_blocked()
        with pytest.raises(TypeError, match="receive_partial"):
            await s.receive_partial(1.5)
        s.close()
        raw.close()

    coserve.run(main)


def test_a_huge_receive_does_not_allocate_what_it_asks_for():
    async def main():
        s, raw = await _tcp_pair()
        raw.sendall(b"ten bytes!")
        raw.close()
        with pytest.raises(coserve.ConnectionClosed) as info:
            await s.receive(10**12)  # memory grows with what arrives, not with the request
        got = await s.receive_partial(10**12)
        s.close()
        return info.value.partial, got

    assert coserve.run(main) == (b"ten bytes!", b"")


def test_receive_from_needs_a_max_of_at_least_zero():
    async def main():
        a = await coserve.open_udp(local_addr=("127.0.0.1", 0))
        b = await coserve.open_udp(remote_addr=a.getsockname())
        await b.send(b"datagram")
        with pytest.raises(ValueError, match="receive_from"):
            await a.receive_from(-1)
        data, _ = await a.receive_from()  # not consumed by the refused call
        a.close()
        b.close()
        return data

    assert coserve.run(main) == b"datagram"


@pytest.mark.parametrize("pattern", ["*l", "*a"])
def test_stream_patterns_on_udp_are_refused(pattern):
    async def main():
        a = await coserve.open_udp(local_addr=("127.0.0.1", 0))
        b = await coserve.open_udp(remote_addr=a.getsockname())
        await b.send(b"one\n")
        await b.send(b"two\n")
        a.settimeouts(receive=0.5)
        with pytest.raises(ValueError, match="datagram"):
            await a.receive(pattern)
        first = await a.receive(100)  # no datagram was consumed, none merged
        a.close()
        b.close()
        return first

    assert coserve.run(main) == b"one\n"


def test_socket_operations_awaited_under_asyncio_are_refused():
    import asyncio

    a, b = socket.socketpair()
    s = coserve.wrap(a)
    try:
        b.sendall(b"x")

        async def under_asyncio(op, *args):
            return await op(*args)

        for op, args in ((s.receive_partial, ()), (s.receive, ()), (s.send, (b"y",))):
            with pytest.raises(coserve.ForeignAwaitable, match="asyncio"):
                asyncio.run(under_asyncio(op, *args))
        assert a.recv(10) == b"x"  # nothing was received...
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)  # ...nor sent
    finally:
        s.close()
        b.close()


def test_send_outside_a_task_fails_before_sending():
    a, b = socket.socketpair()
    s = coserve.wrap(a)
    try:
        op = s.send(b"not sent")
        with pytest.raises(coserve.CoserveError, match="inside a coserve task"):
            op.send(None)  # driven by hand, not by coserve's scheduler
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)
    finally:
        s.close()
        b.close()


def test_awaiting_current_task_is_a_clear_error():
    async def main():
        with pytest.raises(coserve.Deadlock, match="itself"):
            await coserve.current_task()
        return "not stuck"

    assert coserve.run(main) == "not stuck"


def test_settimeout_names_itself_in_its_error():
    a, b = socket.socketpair()
    s = coserve.wrap(a)
    try:
        with pytest.raises(ValueError, match=r"settimeout\(\)"):
            s.settimeout("1")
        with pytest.raises(ValueError, match="receive timeout"):
            s.settimeouts(receive="1")
        assert s.connect_timeout is None and s.receive_timeout is None
    finally:
        s.close()
        b.close()


def test_receive_partial_after_close_is_socket_closed():
    async def main():
        s, raw = await _tcp_pair()
        raw.sendall(b"ab")
        assert await s.receive(1) == b"a"  # b"b" stays buffered
        s.close()
        other, peer = await _tcp_pair()  # perhaps with the fd number s had
        waiting = coserve.spawn(other.receive_partial)
        await wait_all_tasks_blocked()
        with pytest.raises(coserve.SocketClosed):
            await s.receive_partial()
        with pytest.raises(coserve.SocketClosed):
            await s.receive()
        peer.sendall(b"z")
        got = await waiting
        for sock in (raw, other, peer):
            sock.close()
        return got

    assert coserve.run(main) == b"z"


# --- a socket closed by a task that ran between a waiter's wake-up and its turn (issue 13 item 5) ---


def _woken_then_closed(direction):
    """Wake a waiter on *s* and, in the same poll and before it runs, a task that closes *s*."""

    async def main():
        raw, s_peer = socket.socketpair()  # a Unix pair: writable again as soon as the peer reads
        s = coserve.wrap(raw)
        r, r_peer = await _tcp_pair()
        if direction == "send":
            waiter = coserve.spawn(s.send, b"x" * 1_000_000)
        else:
            waiter = coserve.spawn(s.receive_partial)

        async def closer():
            await r.receive_partial()
            s.close()

        closing = coserve.spawn(closer)
        await wait_all_tasks_blocked()  # both wait, the closer on r first
        r_peer.sendall(b"!")  # ready first...
        if direction == "send":
            s_peer.setblocking(False)
            while True:  # ...then s becomes writable, before the next poll
                try:
                    s_peer.recv(1 << 20)
                except BlockingIOError:
                    break
        else:
            s_peer.sendall(b"data")
        with pytest.raises(coserve.SocketClosed):  # awaited before it ends: not reported as well
            await waiter
        await closing
        for sock in (r, r_peer, s_peer):
            sock.close()

    coserve.run(main)


@pytest.mark.parametrize("direction", ["send", "receive"])
def test_a_waiter_woken_before_its_socket_was_closed_gets_socket_closed(direction):
    _woken_then_closed(direction)


# --- closing a server whose accept loop has not run (issue 12 defect 3) -------------------------


async def _ignore(sock):
    pass


def test_closing_a_server_before_its_accept_task_ran_reports_nothing(errors):
    async def main():
        server = coserve.serve_tcp(_ignore, "127.0.0.1", 0)
        server.close()  # its accept task is still in the ready queue, never started
        await server.wait_closed()
        await wait_all_tasks_blocked()
        assert server._task.cancelled()

    coserve.run(main)
    assert errors == []


def test_closing_a_server_whose_accept_task_was_just_woken_reports_nothing(errors):
    async def main():
        server = coserve.serve_tcp(_ignore, "127.0.0.1", 0)
        await wait_all_tasks_blocked()  # the accept loop waits for the listening socket
        with socket.create_connection(server.address):
            # The connection is in the backlog: the next poll wakes the accept loop, which is then
            # ready behind this task. Closing the server now must not let it accept on a closed fd.
            await coserve.sleep(0)
            assert server._task.state == "ready"
            server.close()
            await server.wait_closed()
            await wait_all_tasks_blocked()
            assert server._task.done() and server._task.exception() is None  # it saw the close and ended
            assert server.accepted == 0  # the backlog went with the listener

    coserve.run(main)
    assert errors == []


# --- Copas parity: names, stats, timeouts, wrapped-socket connect/accept (issue 12) ------------


def test_socket_name_stats_and_gettimeouts():
    names = []

    async def echo(sock):
        names.append(sock.name)
        await sock.send(await sock.receive(5))

    async def main():
        server = serve(echo, name="srv")
        s = await coserve.connect(*server.address)
        assert s.name == f"socket-{s.fileno()}"
        s.name = "my_TCP_client"  # Copas's setsocketname
        with pytest.raises(TypeError):
            s.name = 1
        await s.send(b"hello")
        assert await s.receive(5) == b"hello"
        await s.send(memoryview(b"abc"))
        st = s.stats()
        s.settimeouts(connect=1, receive=2.5)
        timeouts = s.gettimeouts()
        s.settimeouts(**timeouts)  # gettimeouts() gives what settimeouts() takes
        assert s.gettimeouts() == timeouts
        r = repr(s)
        s.close()
        server.close()
        return st, timeouts, r

    st, timeouts, r = coserve.run(main)
    assert names == ["srv:client_1"]
    assert (st["received"], st["sent"]) == (5, 8) and st["age"] >= 0
    assert timeouts == {"connect": 1, "send": None, "receive": 2.5}
    assert "my_TCP_client" in r


def test_udp_stats_count_datagrams():
    async def main():
        a = await coserve.open_udp(local_addr=("127.0.0.1", 0))
        b = await coserve.open_udp(remote_addr=a.getsockname())
        await b.send(b"one")
        await b.send_to(b"two!", a.getsockname())
        got = [await a.receive_from(), await a.receive(10)]
        stats = (a.stats()["received"], b.stats()["sent"])
        a.close()
        b.close()
        return got, stats

    got, stats = coserve.run(main)
    assert [g if isinstance(g, bytes) else g[0] for g in got] == [b"one", b"two!"]
    assert stats == (7, 7)


def test_the_error_report_names_the_socket(errors, caplog):
    async def failing(sock):
        raise RuntimeError("handler failed")

    async def main():
        server = serve(failing, name="srv")
        s = await coserve.connect(*server.address)
        with pytest.raises(coserve.ConnectionClosed):
            await s.receive()
        s.close()
        server.close()

    coserve.set_error_handler(None, default=True)  # the default handler, which logs
    with caplog.at_level("ERROR", logger="coserve"):
        coserve.run(main)
    assert "uncaught error in task 'srv:client_1' (socket 'srv:client_1')" in caplog.text


def test_wrap_of_a_wrapped_socket_returns_it_unchanged():
    a, b = socket.socketpair()
    try:
        s = coserve.wrap(a)
        assert coserve.wrap(s) is s
    finally:
        s.close()
        b.close()


def test_wrapped_socket_bind_listen_accept_and_connect():
    # Copas's pattern: wrap a plain socket, then connect it (or bind, listen and accept on one).
    async def main():
        listener = coserve.wrap(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeouts(receive=7)

        async def server():
            conn = await listener.accept()
            assert conn.gettimeouts()["receive"] == 7  # the listener's timeouts are inherited
            await conn.send(await conn.receive() + b"!\n")
            conn.close()

        t = coserve.spawn(server)
        client = coserve.wrap(socket.socket())
        assert await client.connect(*listener.getsockname()) is client
        await client.send(b"ping\n")
        reply = await client.receive()
        await t
        client.close()
        listener.close()
        return reply

    assert coserve.run(main) == b"ping!"


def test_wrapped_socket_connect_refused():
    async def main():
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        addr = closed.getsockname()
        closed.close()  # nothing listens there now
        s = coserve.wrap(socket.socket())
        with pytest.raises(ConnectionRefusedError):
            await s.connect(*addr)
        s.close()

    coserve.run(main)


def test_wrapped_socket_connect_gives_up_after_its_connect_timeout():
    from coserve.testing import MockClock

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    addr = listener.getsockname()
    fillers = []
    try:
        for _ in range(4):  # a full backlog: the next SYN is not answered
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(addr)
            fillers.append(f)

        async def main():
            s = coserve.wrap(socket.socket())
            s.settimeouts(connect=2)
            start = coserve.gettime()
            with pytest.raises(TimeoutError):
                await s.connect(*addr)
            assert coserve.gettime() - start == pytest.approx(2)
            s.close()

        coserve.run(main, clock=MockClock(autojump_threshold=0))
    finally:
        for f in fillers:
            f.close()
        listener.close()
