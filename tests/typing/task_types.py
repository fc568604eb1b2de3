"""Checked by mypy --strict in tests/test_typing.py: what users' type checkers see."""

from __future__ import annotations

import socket
from typing import assert_type

import coserve


async def answer() -> int:
    return 42


async def main(sock: coserve.Socket) -> None:
    task = coserve.spawn(answer)
    assert_type(task, coserve.Task[int])
    assert_type(await task, int)
    assert_type(task.result(), int)
    assert_type(coserve.spawn(answer()), coserve.Task[int])
    async with coserve.TaskGroup() as group:
        assert_type(group.spawn(answer), coserve.Task[int])
        assert_type(group.spawn(answer()), coserve.Task[int])
    assert_type(await coserve.sleep(1), float)
    assert_type(await sock.send(b"x"), int)
    assert_type(await sock.receive_partial(), bytes)


coserve.run(main, coserve.wrap(socket.socket()))
