"""Timers (Copas's copas.timer scenarios), on the mock clock."""

from __future__ import annotations

import pytest

import coserve
from coserve.testing import MockClock


def run(main):
    return coserve.run(main, clock=MockClock(autojump_threshold=0))


def test_one_shot_timer_passes_itself_and_params():
    seen = []

    async def main():
        t = coserve.Timer(lambda timer, p: seen.append((timer, p, coserve.gettime())), 2, params="hello")
        assert not t.armed
        assert t.arm() is t and t.armed
        return t

    t = run(main)
    assert seen == [(t, "hello", 2)] and not t.armed


def test_initial_delay_then_recurring_count():
    seen = []

    def tick(timer, params):
        seen.append(coserve.gettime())
        if len(seen) == 4:
            timer.cancel()

    async def main():
        coserve.timer(tick, 2, recurring=True, initial_delay=1)

    run(main)
    assert seen == [1, 3, 5, 7]


def test_arm_with_initial_delay_overrides():
    seen = []

    async def main():
        coserve.Timer(lambda t, p: seen.append(coserve.gettime()), 5).arm(0.5)

    run(main)
    assert seen == [0.5]


def test_arming_an_armed_timer_is_an_error():
    async def main():
        t = coserve.timer(lambda t, p: None, 1)
        with pytest.raises(coserve.AlreadyArmed):
            t.arm()
        assert t.cancel() is True
        assert t.cancel() is False
        t.arm()

    run(main)


def test_one_shot_timer_may_rearm_itself_from_its_callback():
    seen = []

    def cb(timer, params):
        seen.append(coserve.gettime())
        if len(seen) < 3:
            timer.arm()

    async def main():
        coserve.timer(cb, 1)

    run(main)
    assert seen == [1, 2, 3]


def test_recurring_timer_rearm_from_callback_is_an_error(errors):
    def cb(timer, params):
        timer.cancel() if len(errors) else timer.arm()

    async def main():
        coserve.timer(cb, 1, recurring=True)

    run(main)
    assert [type(e) for e, _ in errors] == [coserve.AlreadyArmed]


def test_errors_go_to_the_handler_and_do_not_cancel_a_recurring_timer(errors):
    count = []

    def cb(timer, params):
        count.append(1)
        if len(count) == 3:
            timer.cancel()
        raise RuntimeError(f"fail {len(count)}")

    async def main():
        coserve.timer(cb, 1, recurring=True)

    run(main)
    assert [str(e) for e, task in errors] == ["fail 1", "fail 2", "fail 3"]


def test_async_callback_runs_as_a_task():
    seen = []

    async def cb(timer, params):
        seen.append(coserve.current_task().name)
        await coserve.sleep(1)
        seen.append(coserve.gettime())

    async def main():
        coserve.timer(cb, 1, name="ticker")

    run(main)
    assert seen == ["ticker", 2]


def test_recurring_async_callbacks_run_one_after_another():
    # Copas runs a timer's callbacks one after another: a 0.1 s callback every 0.02 s never
    # overlaps itself; the next firing waits for the callback to end (then one delay later,
    # since it overran its due time).
    trace = []
    running = []

    async def cb(timer, params):
        running.append(1)
        trace.append(("start", round(coserve.gettime(), 6), len(running)))
        await coserve.sleep(0.1)
        running.pop()
        if len(trace) >= 3:
            timer.cancel()

    async def main():
        coserve.timer(cb, 0.02, recurring=True)

    run(main)
    assert trace == [("start", 0.02, 1), ("start", 0.14, 1), ("start", 0.26, 1)]


def test_recurring_async_callback_shorter_than_the_delay_does_not_drift():
    starts = []

    async def cb(timer, params):
        starts.append(coserve.gettime())
        await coserve.sleep(0.5)
        if len(starts) >= 3:
            timer.cancel()

    async def main():
        coserve.timer(cb, 2, recurring=True)

    run(main)
    assert starts == [2, 4, 6]


def test_cancelling_a_timer_lets_its_running_async_callback_finish_and_fires_no_more():
    trace = []

    async def cb(timer, params):
        trace.append(("start", coserve.gettime()))
        await coserve.sleep(1)
        trace.append(("end", coserve.gettime(), timer.armed))

    async def main():
        t = coserve.timer(cb, 1, recurring=True)
        await coserve.sleep(1.5)  # the first callback is running
        assert t.armed
        assert t.cancel() is True
        assert not t.armed

    run(main)
    assert trace == [("start", 1), ("end", 2, False)]


def test_a_cancelled_async_callback_disarms_its_timer():
    async def cb(timer, params):
        await coserve.sleep(10)

    async def main():
        t = coserve.timer(cb, 1, recurring=True, name="slow")
        await coserve.sleep(2)
        coserve.cancel_all()
        return t

    t = run(main)
    assert not t.armed


def test_armed_timer_keeps_run_going_and_cancel_ends_it():
    async def main():
        t = coserve.timer(lambda t, p: None, 100, recurring=True)
        coserve.timer(lambda tt, p: t.cancel(), 250)

    clock = MockClock(autojump_threshold=0)
    coserve.run(main, clock=clock)
    assert clock.time() == 250


def test_timer_before_run_fires_in_run():
    seen = []
    coserve.timer(lambda t, p: seen.append(p), 0, params="x")
    coserve.run()
    assert seen == ["x"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"callback": 5, "delay": 1}, TypeError),
        ({"callback": print, "delay": -1}, ValueError),
        ({"callback": print, "delay": 0, "recurring": True}, ValueError),
        ({"callback": print, "delay": 1, "initial_delay": -2}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error):
    with pytest.raises(error):
        coserve.Timer(**kwargs)


def test_many_timers_mostly_cancelled_keep_the_heap_small():
    from coserve import _kernel

    async def main():
        ts = [coserve.timer(lambda t, p: None, 10 + i) for i in range(2000)]
        for t in ts[:1800]:
            t.cancel()
        k = _kernel._K
        assert k.active_timers() == 200 + 0  # main itself is not sleeping
        assert len(k._timers) < 1200  # the dead entries were swept
        for t in ts[1800:]:
            t.cancel()

    run(main)


def test_a_timer_error_handler_gets_its_errors_instead_of_the_default(errors):
    mine = []

    def handler(exc, task, sock):
        mine.append((str(exc), task.name if task else None))

    def plain(timer, params):
        raise ValueError("plain")

    async def later(timer, params):
        raise ValueError("async")

    async def main():
        coserve.timer(plain, 1, error_handler=handler)
        coserve.timer(later, 2, error_handler=handler, name="later")
        coserve.timer(plain, 3)  # no handler of its own: the default one

    run(main)
    assert mine == [("plain", None), ("async", "later")]
    assert [str(e) for e, _ in errors] == ["plain"]
    with pytest.raises(TypeError):
        coserve.Timer(plain, 1, error_handler=42)
