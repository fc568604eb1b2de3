"""coserve.testing: the mock clock and wait_all_tasks_blocked."""

from __future__ import annotations

import math
import socket

import pytest

import coserve
from coserve import _kernel
from coserve.testing import MockClock, wait_all_tasks_blocked


def test_autojump_zero_runs_long_sleeps_instantly_and_in_order():
    clock = MockClock(start=10, autojump_threshold=0)
    trace = []

    async def sleeper(s):
        await coserve.sleep(s)
        trace.append((s, coserve.gettime()))

    async def main():
        for s in (3600, 60, 86400):
            coserve.spawn(sleeper, s)

    coserve.run(main, clock=clock)
    assert trace == [(60, 70), (3600, 3610), (86400, 86410)]
    assert clock.time() == 86410


def test_positive_threshold_jumps_after_real_idleness():
    clock = MockClock(autojump_threshold=0.01)

    async def main():
        return await coserve.sleep(1000)

    assert coserve.run(main, clock=clock) == 1000


def test_manual_jump_moves_time_for_a_task_that_checks_the_clock():
    clock = MockClock()
    assert math.isinf(clock.autojump_threshold)

    async def main():
        t0 = coserve.gettime()
        clock.jump(5)
        return coserve.gettime() - t0

    assert coserve.run(main, clock=clock) == 5


def test_bad_values_are_refused():
    with pytest.raises(ValueError):
        MockClock(autojump_threshold=-1)
    with pytest.raises(ValueError):
        MockClock().jump(-1)


def test_clock_cannot_change_once_timers_are_scheduled():
    coserve.timer(lambda t, p: None, 1)
    with pytest.raises(coserve.CoserveError, match="before any timer"):
        coserve.run(clock=MockClock())
    coserve.cancel_all()
    _kernel.drop_kernel(_kernel._K)


def test_wait_all_tasks_blocked_waits_for_io_that_is_already_ready():
    a, b = socket.socketpair()
    try:
        b.send(b"x")
        got = []

        async def reader():
            await _kernel.wait_readable(a.fileno())
            got.append(a.recv(1))

        async def main():
            coserve.spawn(reader)
            await wait_all_tasks_blocked()
            _kernel._K.forget_fd(a.fileno())
            return got

        assert coserve.run(main) == [b"x"]
    finally:
        a.close()
        b.close()


def test_wait_all_tasks_blocked_outside_a_task_is_an_error():
    with pytest.raises(coserve.CoserveError):
        wait_all_tasks_blocked().send(None)
