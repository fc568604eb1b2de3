"""Long and infinite deadlines: ``inf`` means "no deadline" everywhere, and any finite one works.

epoll_wait takes a C int of milliseconds (about 24.8 days), so a far deadline used to raise
OverflowError inside run(). Each test makes the loop poll while the nearest deadline is far away
(a task parks on a socket that already has data), which is where the overflow happened.
"""

from __future__ import annotations

import math
import socket
import threading

import coserve
from coserve import _kernel

MONTH = 30 * 86400.0


async def _let_the_loop_poll() -> None:
    # A new Socket waits for readability before its first recv, so this task parks and the loop
    # polls (with the nearest deadline as its timeout); the data already there ends the poll.
    await coserve.sleep(0)  # first, tasks spawned just before get to their own waits
    a, b = socket.socketpair()
    with b:
        b.send(b"x")
        async with coserve.wrap(a) as sa:
            assert await sa.receive(1) == b"x"


def test_a_thirty_day_sleep_does_not_crash_the_loop():
    async def sleeper():
        return await coserve.sleep(MONTH)

    async def main():
        t = coserve.spawn(sleeper)
        await _let_the_loop_poll()
        assert t.state == "sleeping"
        assert coserve.wakeup(t)
        return await t

    assert coserve.run(main) < 1


def test_sleep_inf_is_sleep_forever():
    woken = []

    async def sleeper():
        woken.append(await coserve.sleep(math.inf))

    async def never_woken():
        try:
            await coserve.sleep(math.inf)
        except coserve.Cancelled:
            woken.append("cancelled at wind-down")
            raise

    async def main():
        t = coserve.spawn(sleeper)
        coserve.spawn(never_woken)
        await _let_the_loop_poll()
        assert coserve.wakeup(t)
        await t

    coserve.run(main)  # returns: an infinite sleep does not keep the run going
    assert woken[0] < 1 and woken[1:] == ["cancelled at wind-down"]


def test_timeout_after_inf_and_a_month_are_no_deadline_in_practice():
    async def main():
        async with coserve.timeout_after(math.inf) as a:
            await _let_the_loop_poll()
        async with coserve.move_on_after(MONTH) as b:
            await _let_the_loop_poll()
        return a.expired, b.expired

    assert coserve.run(main) == (False, False)


def test_timeout_after_inf_does_not_keep_a_stuck_task_alive():
    lock = coserve.Lock()
    outcome = []

    async def holder():
        await lock.acquire()  # never released

    async def stuck():
        try:
            async with coserve.timeout_after(math.inf):
                await lock.acquire()
        except coserve.Cancelled:
            outcome.append("cancelled")
            raise

    coserve.spawn(holder)
    coserve.spawn(stuck)
    coserve.run()  # the infinite deadline is no timer: the run winds down
    assert outcome == ["cancelled"]


def test_lock_and_semaphore_timeouts_beyond_24_days():
    async def main():
        lock = coserve.Lock()
        sem = coserve.Semaphore(1, 0)
        await lock.acquire()

        async def waiter():
            await lock.acquire(timeout=MONTH)
            await sem.take(timeout=math.inf)
            return "ok"

        t = coserve.spawn(waiter)
        await _let_the_loop_poll()
        lock.release()
        await _let_the_loop_poll()
        sem.give()
        return await t

    assert coserve.run(main) == "ok"


def test_timers_of_a_month_and_of_inf():
    fired = []

    async def main():
        far = coserve.timer(lambda t, p: fired.append("far"), MONTH)
        never = coserve.timer(lambda t, p: fired.append("never"), math.inf)
        assert far.armed and never.armed
        await _let_the_loop_poll()
        assert far.cancel() and never.cancel()
        assert not never.cancel()

    coserve.run(main)
    assert fired == []


def test_an_armed_infinite_timer_does_not_keep_the_run_going():
    t = coserve.timer(lambda t, p: None, math.inf)
    coserve.run()
    assert t.armed  # it never fires


def test_socket_timeouts_of_inf_and_a_month():
    a, b = socket.socketpair()

    async def main():
        sa, sb = coserve.wrap(a), coserve.wrap(b)
        sa.settimeout(math.inf)
        sb.settimeouts(receive=MONTH)

        def later():
            b.send(b"ping\n")  # from another thread, once sa waits

        async def reader():
            return await sa.receive()

        t = coserve.spawn(reader)
        await _let_the_loop_poll()
        await coserve.run_in_thread(later)
        line = await t
        await sa.send(b"pong\n")
        reply = await sb.receive()
        sa.close()
        sb.close()
        return line, reply

    assert coserve.run(main) == (b"ping", b"pong")


def test_step_inf_returns_when_there_is_nothing_to_do():
    assert coserve.step(math.inf) is False
    assert coserve.finished()


def test_step_inf_with_a_far_deadline_does_not_crash_or_drop_the_kernel():
    done = threading.Event()
    results = []

    async def waits_for_a_thread():
        results.append(await coserve.run_in_thread(done.wait, 5))

    async def far_sleeper():
        await coserve.sleep(MONTH)

    sleeper = coserve.spawn(far_sleeper)
    coserve.spawn(waits_for_a_thread)
    k = _kernel.current_kernel()
    coserve.step(0)  # both tasks start: one sleeps a month, one waits for its thread
    done.set()
    while not results:
        coserve.step(math.inf)  # the thread's wake-up ends the wait
    assert _kernel.current_kernel() is k
    assert coserve.wakeup(sleeper)
    while not coserve.finished():
        coserve.step(math.inf)
    assert results == [True]
