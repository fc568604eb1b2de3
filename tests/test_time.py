"""Sleeping, waking and timeouts (nesting included), on the mock clock."""

from __future__ import annotations

import pytest

import coserve
from coserve.testing import MockClock


def run(main, *args):
    return coserve.run(main, *args, clock=MockClock(autojump_threshold=0))


def test_sleep_returns_time_slept_and_orders_wakeups():
    trace = []

    async def sleeper(n, s):
        slept = await coserve.sleep(s)
        trace.append((n, slept, coserve.gettime()))

    async def main():
        for n, s in enumerate([3, 1, 2]):
            coserve.spawn(sleeper, n, s)

    run(main)
    assert trace == [(1, 1, 1), (2, 2, 2), (0, 3, 3)]


def test_sleep_zero_yields_to_other_ready_tasks():
    trace = []

    async def other():
        trace.append("other")

    async def main():
        coserve.spawn(other)
        assert await coserve.sleep(0) == 0
        trace.append("main")

    run(main)
    assert trace == ["other", "main"]


def test_sleep_rejects_nan():
    async def main():
        with pytest.raises(ValueError, match="number of seconds"):
            await coserve.sleep(float("nan"))

    run(main)


def test_sleep_without_argument_or_negative_yields_like_sleep_0():
    # Copas's pause() and pause(-1), asyncio's sleep(-1): a turn for the others, 0 slept.
    trace = []

    async def other():
        trace.append("other")

    async def main():
        for arg in ((), (-1,), (-0.5,)):
            coserve.spawn(other)
            assert await coserve.sleep(*arg) == 0.0
            trace.append("main")

    run(main)
    assert trace == ["other", "main"] * 3


def test_sleep_forever_returns_the_seconds_slept_when_woken():
    async def sleeper():
        return await coserve.sleep_forever()

    async def main():
        t = coserve.spawn(sleeper)
        await coserve.sleep(2.5)
        assert coserve.wakeup(t)
        return await t

    assert run(main) == 2.5


def test_sleep_outside_a_task_is_a_clear_error():
    with pytest.raises(coserve.CoserveError, match="inside a coserve task"):
        coserve.sleep(1).send(None)


def test_wakeup_ends_a_sleep_early():
    async def sleeper():
        return await coserve.sleep(100)

    async def main():
        t = coserve.spawn(sleeper)
        await coserve.sleep(5)
        assert coserve.wakeup(t) is True
        assert coserve.wakeup(t) is False  # already woken
        return await t

    assert run(main) == 5


def test_wakeup_ends_sleep_forever_and_ignores_non_sleepers():
    async def sleeper():
        await coserve.sleep_forever()
        return "woken"

    async def main():
        t = coserve.spawn(sleeper)
        assert coserve.wakeup(coserve.current_task()) is False
        await coserve.sleep(1)
        assert coserve.wakeup(t)
        return await t

    assert run(main) == "woken"


def test_timeout_after_raises_timeout_error_at_the_deadline():
    async def main():
        with pytest.raises(TimeoutError):
            async with coserve.timeout_after(2) as scope:
                await coserve.sleep(10)
        assert scope.expired
        return coserve.gettime()

    assert run(main) == 2


def test_move_on_after_ends_quietly_and_reports_expired():
    async def main():
        async with coserve.move_on_after(1) as scope:
            await coserve.sleep(10)
        async with coserve.move_on_after(10) as scope2:
            await coserve.sleep(1)
        return scope.expired, scope2.expired, coserve.gettime()

    assert run(main) == (True, False, 2)


def test_timeout_none_never_expires():
    async def main():
        async with coserve.timeout_after(None) as scope:
            await coserve.sleep(1000)
        return scope.expired, scope.deadline

    assert run(main) == (False, None)


def test_bad_timeout_types_are_rejected():
    with pytest.raises(TypeError):
        coserve.timeout_after("5")
    with pytest.raises(TypeError):
        coserve.move_on_after(float("nan"))


def test_nested_inner_expires_first():
    async def main():
        trace = []
        async with coserve.timeout_after(10) as outer:
            try:
                async with coserve.timeout_after(1):
                    await coserve.sleep(5)
            except TimeoutError:
                trace.append(("inner", coserve.gettime()))
            await coserve.sleep(1)
        trace.append(("outer expired", outer.expired))
        return trace

    assert run(main) == [("inner", 1), ("outer expired", False)]


def test_nested_outer_expires_first_and_passes_through_inner():
    async def main():
        trace = []
        async with coserve.move_on_after(1) as outer:
            try:
                async with coserve.timeout_after(10) as inner:
                    await coserve.sleep(5)
            except TimeoutError:
                trace.append("inner must not report the outer timeout")
        trace.append((outer.expired, inner.expired, coserve.gettime()))
        return trace

    assert run(main) == [(True, False, 1)]


def test_nested_same_deadline_outer_wins_cleanly():
    async def main():
        async with coserve.move_on_after(3) as outer:
            async with coserve.move_on_after(3) as inner:
                await coserve.sleep(5)
            await coserve.sleep(5)  # inner reported it, so the outer block goes on until its own
        return outer.expired, inner.expired, coserve.gettime()

    expired_outer, expired_inner, t = run(main)
    assert (expired_inner, t) == (True, 3) or (expired_outer, t) == (True, 3)


def test_timeout_that_fires_after_the_result_arrived_is_withdrawn():
    # One pass of the loop first wakes the task (a timer sets the event), then reaches its
    # deadline: the task was already woken, so it keeps its result and no timeout arrives later.
    async def main():
        ev = coserve.Event()
        coserve.timer(lambda t, p: ev.set(), 1)  # due at 1, queued before the deadline below
        async with coserve.timeout_after(1) as scope:
            got = await ev.wait()
        await coserve.sleep(1)
        return got, scope.expired, coserve.gettime()

    assert run(main) == (True, False, 2)


def test_task_cancel_is_not_swallowed_by_a_timeout_scope():
    async def victim():
        async with coserve.move_on_after(100):
            await coserve.sleep(50)
        return "should not get here"

    async def main():
        t = coserve.spawn(victim)
        await coserve.sleep(1)
        t.cancel()
        with pytest.raises(coserve.Cancelled):
            await t

    run(main)


def test_except_exception_cannot_swallow_a_timeout():
    async def main():
        caught = []
        async with coserve.move_on_after(1):
            try:
                await coserve.sleep(5)
            except Exception as e:  # what a careless handler does
                caught.append(e)
        return caught

    assert run(main) == []


def test_real_clock_timeout_is_roughly_right():
    async def main():
        t0 = coserve.gettime()
        async with coserve.move_on_after(0.02):
            await coserve.sleep(5)
        return coserve.gettime() - t0

    elapsed = coserve.run(main)
    assert 0.02 <= elapsed < 1.0
