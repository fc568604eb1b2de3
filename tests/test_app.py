"""coserve.app's SocketServer: protocols and handlers, pipelining, events, limits, info, stopping.

The codecs of the examples are fed whole, split at every byte and pipelined;
the RESP example is driven by redis-benchmark (Debian's redis-tools) in
test_app_redis.py.
"""

from __future__ import annotations

import logging
import pathlib
import sys

import pytest

import coserve
from coserve.app import Connection, SocketServer
from coserve.testing import MockClock, wait_all_tasks_blocked

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "examples"))
from echo_protocol import LineProtocol
from echo_protocol import respond as echo_respond
from resp_server import RespError, RespProtocol, Status, make_app


def port_of(app: SocketServer) -> int:
    return int(app.listen_on[0].rsplit(":", 1)[1])


async def started(app: SocketServer) -> coserve.Task:
    """Serve *app* in a task; return once it listens."""
    task = coserve.spawn(app.serve)
    await wait_all_tasks_blocked()
    assert app.listen_on, "the app did not start listening"
    return task


# -- the contract ----------------------------------------------------------------------------------


def test_either_a_protocol_with_respond_or_a_handler():
    with pytest.raises(TypeError, match=r"needs protocol= .* or handler="):
        SocketServer()
    with pytest.raises(TypeError, match="needs protocol="):
        SocketServer(protocol=LineProtocol)
    with pytest.raises(TypeError, match="not both"):
        SocketServer(protocol=LineProtocol, respond=echo_respond, handler=echo_respond)
    with pytest.raises(TypeError, match="factory"):
        SocketServer(protocol=3, respond=echo_respond)
    with pytest.raises(ValueError, match="unknown event 'on_nothing'"):
        SocketServer(handler=echo_respond).on("on_nothing", print)


# -- codecs, sans I/O ------------------------------------------------------------------------------


def decode_all(proto, data: bytes, cut: int | None):
    messages, buffer = [], b""
    for part in [data] if cut is None else [data[:cut], data[cut:]]:
        buffer += part
        while buffer:
            message, buffer = proto.decode(buffer)
            if message is None:
                break
            messages.append(message)
    return messages, buffer


@pytest.mark.parametrize(
    ("proto", "raw", "expected"),
    [
        (LineProtocol(), b"one\r\ntwo\nthree\n", [b"one", b"two", b"three"]),
        (
            RespProtocol(),
            b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nxy\r\nPING inline\r\n",
            [[b"PING"], [b"SET", b"k", b"v\r\nxy"], [b"PING", b"inline"]],
        ),
    ],
)
def test_codecs_whole_split_at_every_byte_and_pipelined(proto, raw, expected):
    for cut in [None, *range(1, len(raw))]:
        assert decode_all(proto, raw, cut) == (expected, b""), f"cut at {cut}"


def test_resp_encoding_and_a_malformed_request():
    p = RespProtocol()
    assert p.encode(Status("OK")) == b"+OK\r\n" and p.encode(None) == b"$-1\r\n"
    assert p.encode([b"a", 3, None]) == b"*3\r\n$1\r\na\r\n:3\r\n$-1\r\n"
    with pytest.raises(RespError):
        p.decode(b"*1\r\n+PING\r\n")


# -- serving -----------------------------------------------------------------------------------------


def test_a_protocol_served_with_pipelining_in_order():
    async def main():
        app = SocketServer(protocol=LineProtocol, respond=echo_respond, bind="127.0.0.1:0", name="echo")
        task = await started(app)
        sock = await coserve.connect("127.0.0.1", port_of(app))
        lines = [f"line {i}".encode() for i in range(500)]
        await sock.send(b"".join(line + b"\n" for line in lines))  # 500 requests before reading one
        for line in lines:
            assert await sock.receive() == line
        await sock.send(b"split ac")
        await sock.send(b"ross sends\nquit\n")
        assert await sock.receive() == b"split across sends"
        assert await sock.receive() == b"bye"
        assert await sock.receive("*a") == b""  # conn.close() after the answer
        await sock.aclose()
        info = app.info()
        assert info["requests"] == 502 and info["received_connections"] == 1
        assert info["listen_on"] == app.listen_on and info["read_timeout"] == 15
        app.stop()
        await task

    coserve.run(main)


def test_a_burst_larger_than_max_pipeline_is_answered_whole_and_in_order():
    made = []

    async def main():
        app = SocketServer(
            protocol=LineProtocol, respond=echo_respond, bind="127.0.0.1:0", max_pipeline=4, name="echo"
        )
        app.on("connection_made", made.append)
        task = await started(app)
        sock = await coserve.connect("127.0.0.1", port_of(app))
        await sock.send(b"x\n" * 10)
        got = await sock.receive(20)
        assert got == b"x\n" * 10
        await sock.aclose()
        app.stop()
        await task

    coserve.run(main)
    assert len(made) == 1


def test_a_decode_error_closes_only_that_connection_after_reporting_it(caplog):
    async def main():
        app = make_app(bind="127.0.0.1:0")
        task = await started(app)
        good = await coserve.connect("127.0.0.1", port_of(app))
        bad = await coserve.connect("127.0.0.1", port_of(app))
        await bad.send(b"*1\r\n+NOT A BULK STRING\r\n")
        assert await bad.receive("*a") == b""  # closed by the server
        await good.send(b"*1\r\n$4\r\nPING\r\n")
        assert await good.receive() == b"+PONG"
        await good.aclose()
        await bad.aclose()
        app.stop()
        await task

    with caplog.at_level(logging.ERROR, logger="coserve.app"):
        coserve.run(main)
    assert any("could not decode" in r.getMessage() for r in caplog.records)


def test_events_and_a_failing_hook(caplog):
    seen = []

    def boom(conn, message):
        raise RuntimeError("a hook bug")

    async def lost(conn, exc):
        seen.append(("lost", conn.requests, exc))

    async def main():
        app = SocketServer(
            protocol=LineProtocol,
            respond=echo_respond,
            bind="127.0.0.1:0",
            connection_made=lambda conn: seen.append(("made", conn.peer[0])),
            post_request=lambda conn, m, r: seen.append(("post", m, r)),
            connection_lost=lost,
        )
        app.on("pre_request", boom)
        task = await started(app)
        sock = await coserve.connect("127.0.0.1", port_of(app))
        await sock.send(b"hi\nquit\n")
        assert await sock.receive() == b"hi"  # the failing hook did not end the connection
        assert await sock.receive() == b"bye"
        assert await sock.receive("*a") == b""
        await sock.aclose()
        app.stop()
        await task

    with caplog.at_level(logging.ERROR, logger="coserve.app"):
        coserve.run(main)
    assert seen == [
        ("made", "127.0.0.1"),
        ("post", b"hi", b"hi"),
        ("post", b"quit", b"bye"),
        ("lost", 2, None),
    ]
    assert sum("the pre_request hook" in r.getMessage() for r in caplog.records) == 2


def test_keep_alive_closes_an_idle_connection():
    async def main():
        app = SocketServer(protocol=LineProtocol, respond=echo_respond, bind="127.0.0.1:0", keep_alive=5)
        task = await started(app)
        sock = await coserve.connect("127.0.0.1", port_of(app))
        await sock.send(b"a\n")
        assert await sock.receive() == b"a"
        start = coserve.gettime()
        assert await sock.receive("*a") == b""
        assert coserve.gettime() - start == pytest.approx(5, abs=0.1)
        assert app.active_connections == 0
        await sock.aclose()
        app.stop()
        await task

    coserve.run(main, clock=MockClock(autojump_threshold=0))


def test_max_connections_closes_connections_beyond_it():
    async def main():
        app = SocketServer(protocol=LineProtocol, respond=echo_respond, bind="127.0.0.1:0", max_connections=2)
        task = await started(app)
        socks = [await coserve.connect("127.0.0.1", port_of(app)) for _ in range(3)]
        await wait_all_tasks_blocked()
        assert app.active_connections == 2
        assert await socks[2].receive("*a") == b""  # the third was closed
        await socks[0].send(b"still\n")
        assert await socks[0].receive() == b"still"
        for s in socks:
            await s.aclose()
        app.stop()
        await task

    coserve.run(main)


def test_a_plain_handler_and_exit_stops_serve():
    async def handler(sock):
        await sock.send(await sock.receive() + b"!\n")

    async def main():
        app = SocketServer(handler=handler, bind="127.0.0.1:0")
        task = await started(app)
        sock = await coserve.connect("127.0.0.1", port_of(app))
        await sock.send(b"hey\n")
        assert await sock.receive() == b"hey!"
        await sock.aclose()
        coserve.exit()
        await task  # serve() returned when the run began to exit
        assert app.listen_on == []

    coserve.run(main)


def test_unix_socket_bind(tmp_path):
    path = tmp_path / "app.sock"

    async def main():
        app = SocketServer(protocol=LineProtocol, respond=echo_respond, bind=f"unix:{path}")
        task = await started(app)
        sock = await coserve.connect_unix(str(path))
        await sock.send(b"over unix\n")
        assert await sock.receive() == b"over unix"
        await sock.aclose()
        app.stop()
        await task
        assert not path.exists()  # removed by the server that created it

    coserve.run(main)


def test_connection_repr_and_fields():
    async def main():
        got: list[Connection] = []
        app = SocketServer(
            protocol=LineProtocol, respond=echo_respond, bind="127.0.0.1:0", connection_made=got.append
        )
        task = await started(app)
        sock = await coserve.connect("127.0.0.1", port_of(app))
        await sock.send(b"x\n")
        await sock.receive()
        conn = got[0]
        assert conn.local[1] == port_of(app) and conn.peer == sock.getsockname()
        assert conn.requests == 1 and isinstance(conn.socket, coserve.Socket)
        assert "requests=1" in repr(conn)
        await sock.aclose()
        app.stop()
        await task

    coserve.run(main)


def test_proxy_protocol_from_a_trusted_peer_sets_conn_peer_and_keeps_the_bytes_after_it():
    peers = []

    async def main():
        app = SocketServer(
            protocol=LineProtocol,
            respond=echo_respond,
            bind="127.0.0.1:0",
            proxy_protocol=True,
            forwarded_allow_ips="127.0.0.1",
            connection_made=lambda conn: None,
            post_request=lambda conn, m, r: peers.append(conn.peer),
        )
        task = await started(app)
        sock = await coserve.connect("127.0.0.1", port_of(app))
        # The header and the first request in one segment, as HAProxy sends them.
        await sock.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8060\r\nfirst\n")
        assert await sock.receive() == b"first"
        await sock.aclose()
        bad = await coserve.connect("127.0.0.1", port_of(app))
        await bad.send(b"NOT A PROXY HEADER AT ALL\r\n")
        assert await bad.receive("*a") == b""  # refused
        await bad.aclose()
        app.stop()
        await task

    coserve.run(main)
    assert peers == [("203.0.113.7", 51234)]


def test_proxy_protocol_from_an_untrusted_peer_is_not_parsed():
    async def main():
        app = SocketServer(
            protocol=LineProtocol,
            respond=echo_respond,
            bind="127.0.0.1:0",
            proxy_protocol=True,
            forwarded_allow_ips="10.9.9.9",
        )
        task = await started(app)
        sock = await coserve.connect("127.0.0.1", port_of(app))
        await sock.send(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8060\r\n")
        assert await sock.receive() == b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8060"  # just a line
        await sock.aclose()
        app.stop()
        await task

    coserve.run(main)


def test_unreceive_puts_bytes_back_in_front():
    async def main():
        import socket as _s

        x, y = _s.socketpair()
        sa, sb = coserve.wrap(x), coserve.wrap(y)
        await sb.send(b"world\n")
        sa.unreceive(b"hello ")
        assert await sa.receive() == b"hello world"
        with pytest.raises(TypeError):
            sa.unreceive("text")
        sa.close()
        sb.close()

    coserve.run(main)
