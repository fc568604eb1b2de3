"""Debug tracing (Copas's copas.debug): life-cycle and socket I/O at DEBUG, and nothing when off."""

from __future__ import annotations

import logging
import socket

import pytest

import coserve
import coserve.debug
from coserve import _kernel


def _scenario():
    async def child():
        return "fine"

    async def sleeper():
        await coserve.sleep(10)

    async def main():
        a, b = socket.socketpair()
        sa, sb = coserve.wrap(a), coserve.wrap(b)
        sa.name = "left"
        await sa.send(b"hi\n")
        line = await sb.receive()
        await coserve.spawn(child, name="kid")
        t = coserve.spawn(sleeper, name="zzz")
        await coserve.sleep(0)
        t.cancel()
        sa.close()
        sb.close()
        return line

    return coserve.run(main)


def test_tracing_logs_life_cycle_and_io_when_on_and_nothing_when_off(caplog):
    originals = (_kernel.Kernel.spawn, coserve.Socket.receive, coserve.Socket.send)
    with caplog.at_level(logging.DEBUG, logger="coserve"):
        coserve.debug.start()
        try:
            assert coserve.debug.is_tracing()
            assert _scenario() == b"hi"
        finally:
            coserve.debug.stop()
        on = caplog.text
        caplog.clear()
        assert _scenario() == b"hi"
        off = [r.getMessage() for r in caplog.records]
    assert "task 'kid' spawned" in on and "task 'kid' returned 'fine'" in on
    assert "task 'zzz' cancelled while sleeping" in on and "task 'zzz' ended with Cancelled" in on
    assert "socket 'left' send(b'hi\\n') -> 3" in on and "socket 'left' closed" in on
    assert "receive() -> b'hi'" in on
    assert off == []  # stopped: not a record
    # Zero cost when off: the very same functions as before start(), no flag to test.
    assert (_kernel.Kernel.spawn, coserve.Socket.receive, coserve.Socket.send) == originals
    assert not coserve.debug.is_tracing()


def test_debug_socket_traces_one_socket(caplog):
    async def main():
        a, b = socket.socketpair()
        sa, sb = coserve.wrap(a), coserve.wrap(b)
        sa.name = "traced"
        traced = coserve.debug.socket(sa)
        await traced.send(b"x")
        got = await sb.receive(1)
        assert traced.name == "traced"
        traced.close()
        sb.close()
        return got

    with caplog.at_level(logging.DEBUG, logger="coserve"):
        assert coserve.run(main) == b"x"
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["socket 'traced' send(b'x') -> 1", "socket 'traced' close() -> None"]
    with pytest.raises(TypeError):
        coserve.debug.socket(object())
