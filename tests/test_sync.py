"""Locks, semaphores, events, conditions and queues (Copas's lock/semaphore/queue scenarios)."""

from __future__ import annotations

import pytest

import coserve
from coserve.testing import MockClock, wait_all_tasks_blocked


def run(main, *args):
    return coserve.run(main, *args, clock=MockClock(autojump_threshold=0))


# --- Lock -----------------------------------------------------------------------------


def test_lock_is_fifo_and_returns_seconds_waited():
    lock = coserve.Lock()
    trace = []

    async def user(n):
        waited = await lock.acquire()
        trace.append((n, waited))
        await coserve.sleep(1)
        lock.release()

    async def main():
        for n in range(4):
            coserve.spawn(user, n)

    run(main)
    assert trace == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert not lock.locked()


def test_lock_async_with_and_owner():
    lock = coserve.Lock()

    async def main():
        async with lock:
            assert lock.owner is coserve.current_task() and lock.locked()
        return lock.owner

    assert run(main) is None


def test_reentrant_lock_counts_acquires():
    lock = coserve.Lock()

    async def other():
        await lock.acquire()
        return "other got it"

    async def main():
        await lock.acquire()
        await lock.acquire()
        t = coserve.spawn(other)
        lock.release()
        await wait_all_tasks_blocked()
        assert not t.done()  # still held once
        lock.release()
        result = await t
        lock_owner = lock.owner
        return result, lock_owner is t

    assert run(main) == ("other got it", True)


def test_non_reentrant_lock_times_out_on_second_acquire():
    lock = coserve.Lock(timeout=2, reentrant=False)

    async def main():
        await lock.acquire()
        with pytest.raises(TimeoutError):
            await lock.acquire()
        assert lock.owner is coserve.current_task()
        lock.release()
        return coserve.gettime()

    assert run(main) == 2


def test_acquire_timeout_argument_overrides_default():
    lock = coserve.Lock(timeout=100)

    async def holder():
        await lock.acquire()
        await coserve.sleep(10)
        lock.release()

    async def main():
        coserve.spawn(holder)
        await coserve.sleep(0)
        with pytest.raises(TimeoutError):
            await lock.acquire(timeout=1)
        with pytest.raises(TimeoutError):
            await lock.acquire(timeout=0)
        assert coserve.gettime() == 1
        assert await lock.acquire(timeout=None) == 9
        lock.release()

    run(main)


def test_release_by_non_owner_raises():
    lock = coserve.Lock()

    async def holder():
        await lock.acquire()
        await coserve.sleep(1)
        lock.release()

    async def main():
        coserve.spawn(holder)
        await coserve.sleep(0)
        with pytest.raises(coserve.NotOwner, match="held by"):
            lock.release()
        free = coserve.Lock()
        with pytest.raises(coserve.NotOwner):
            free.release()

    run(main)


def test_destroy_wakes_waiters_with_destroyed_and_refuses_later_use():
    lock = coserve.Lock()
    trace = []

    async def waiter(n):
        try:
            await lock.acquire()
        except coserve.Destroyed:
            trace.append(n)

    async def main():
        await lock.acquire()
        for n in range(3):
            coserve.spawn(waiter, n)
        await wait_all_tasks_blocked()
        lock.destroy()
        await wait_all_tasks_blocked()
        with pytest.raises(coserve.Destroyed):
            await lock.acquire()
        with pytest.raises(coserve.Destroyed):
            lock.release()

    run(main)
    assert trace == [0, 1, 2]


def test_hundreds_of_tasks_mixing_success_timeout_and_destroy():
    lock = coserve.Lock(timeout=10)
    outcome = {"ok": 0, "timeout": 0, "destroyed": 0}

    async def user():
        try:
            await lock.acquire()
        except TimeoutError:
            outcome["timeout"] += 1
            return
        except coserve.Destroyed:
            outcome["destroyed"] += 1
            return
        outcome["ok"] += 1
        await coserve.sleep(1)
        try:
            lock.release()
        except coserve.Destroyed:
            outcome["released destroyed"] = 1

    async def main():
        # Tasks 0..9 get the lock at t=0..9, one second each. At t=10 the other 290 reach their
        # timeout (queued at t=0, before task 9's release at t=10, which then finds no waiter).
        for _ in range(300):
            coserve.spawn(user)
        await coserve.sleep(15.5)
        for _ in range(50):  # one gets the free lock, 49 wait and see it destroyed
            coserve.spawn(user)
        await wait_all_tasks_blocked()
        lock.destroy()

    run(main)
    assert outcome == {"ok": 11, "timeout": 290, "destroyed": 49, "released destroyed": 1}


# --- Semaphore --------------------------------------------------------------------------


def test_semaphore_take_and_give_fifo():
    sema = coserve.Semaphore(5, start=0)
    trace = []

    async def taker(n, want):
        waited = await sema.take(want)
        trace.append((n, want, waited))

    async def main():
        coserve.spawn(taker, "a", 3)
        coserve.spawn(taker, "b", 1)  # queued behind a: FIFO even though 1 would fit first
        await coserve.sleep(1)
        sema.give(2)
        await wait_all_tasks_blocked()
        assert trace == [] and sema.count == 2 and sema.waiting == 4
        await coserve.sleep(1)
        sema.give(2)
        await wait_all_tasks_blocked()
        return sema.count

    assert run(main) == 0
    assert trace == [("a", 3, 2), ("b", 1, 2)]


def test_semaphore_take_with_timeout_zero_fails_at_once():
    sema = coserve.Semaphore(2, start=1)

    async def main():
        assert await sema.take(1, timeout=0) == 0
        with pytest.raises(TimeoutError):
            await sema.take(1, timeout=0)
        return coserve.gettime()

    assert run(main) == 0


def test_semaphore_too_many():
    sema = coserve.Semaphore(3, start=3)

    async def main():
        with pytest.raises(coserve.TooMany):
            await sema.take(4)
        with pytest.raises(coserve.TooMany):
            sema.give(1)
        assert sema.count == 3

    run(main)


def test_semaphore_timeout_of_the_head_unblocks_smaller_requests_behind_it():
    sema = coserve.Semaphore(5, start=2)
    trace = []

    async def taker(n, want, timeout):
        try:
            await sema.take(want, timeout=timeout)
            trace.append((n, coserve.gettime()))
        except TimeoutError:
            trace.append((n, "timeout"))

    async def main():
        coserve.spawn(taker, "big", 4, 3)
        coserve.spawn(taker, "small", 2, None)

    run(main)
    assert trace == [("big", "timeout"), ("small", 3)]


def test_semaphore_destroy_wakes_waiters():
    sema = coserve.Semaphore(2)
    trace = []

    async def waiter():
        try:
            await sema.take()
        except coserve.Destroyed:
            trace.append("destroyed")

    async def main():
        for _ in range(3):
            coserve.spawn(waiter)
        await wait_all_tasks_blocked()
        sema.destroy()
        await wait_all_tasks_blocked()
        with pytest.raises(coserve.Destroyed):
            sema.give()

    run(main)
    assert trace == ["destroyed"] * 3


@pytest.mark.parametrize(("args", "error"), [((0,), ValueError), ((2, 3), ValueError), (("x",), ValueError)])
def test_semaphore_bad_arguments(args, error):
    with pytest.raises(error):
        coserve.Semaphore(*args)


def test_semaphore_bad_take_amount():
    sema = coserve.Semaphore(2, 2)

    async def main():
        with pytest.raises(ValueError):
            await sema.take(0)

    run(main)


# --- Event and Condition ----------------------------------------------------------------


def test_event_wakes_all_waiters_and_clear():
    ev = coserve.Event()
    trace = []

    async def waiter(n):
        assert await ev.wait() is True
        trace.append(n)

    async def main():
        for n in range(3):
            coserve.spawn(waiter, n)
        await wait_all_tasks_blocked()
        assert trace == []
        ev.set()
        assert await ev.wait() is True and ev.is_set()
        await wait_all_tasks_blocked()
        ev.clear()
        assert not ev.is_set()

    run(main)
    assert trace == [0, 1, 2]


def test_condition_notify_and_wait_for():
    cond = coserve.Condition()
    items = []
    trace = []

    async def consumer(n):
        async with cond:
            await cond.wait_for(lambda: items)
            trace.append((n, items.pop(0)))

    async def main():
        for n in range(2):
            coserve.spawn(consumer, n)
        await wait_all_tasks_blocked()
        for x in "ab":
            async with cond:
                items.append(x)
                cond.notify()
            await wait_all_tasks_blocked()

    run(main)
    assert trace == [(0, "a"), (1, "b")]


def test_condition_notify_all_and_lock_is_held_after_wait():
    cond = coserve.Condition()
    trace = []

    async def waiter(n):
        async with cond:
            await cond.wait()
            assert cond.locked()
            trace.append(n)

    async def main():
        for n in range(3):
            coserve.spawn(waiter, n)
        await wait_all_tasks_blocked()
        async with cond:
            cond.notify_all()

    run(main)
    assert trace == [0, 1, 2]


def test_condition_requires_the_lock():
    cond = coserve.Condition()

    async def main():
        with pytest.raises(coserve.NotOwner):
            cond.notify()
        with pytest.raises(coserve.NotOwner):
            await cond.wait()

    run(main)


def test_condition_wait_cancelled_still_reacquires_the_lock():
    cond = coserve.Condition()

    async def main():
        async with cond:
            async with coserve.move_on_after(1):
                await cond.wait()
            return cond.locked() and cond._lock.owner is coserve.current_task()

    assert run(main) is True


# --- Queue ---------------------------------------------------------------------------


def test_queue_is_fifo_and_carries_none():
    q = coserve.Queue()

    async def main():
        for x in [1, None, "three"]:
            q.push(x)
        assert q.size == 3
        return [await q.pop() for _ in range(3)]

    assert run(main) == [1, None, "three"]


def test_queue_pop_waits_and_times_out():
    q = coserve.Queue()

    async def pusher():
        await coserve.sleep(2)
        q.push(None)

    async def main():
        with pytest.raises(TimeoutError):
            await q.pop(timeout=1)
        coserve.spawn(pusher)
        got = await q.pop(timeout=5)
        return got, coserve.gettime()

    assert run(main) == (None, 3)  # timed out at 1, pushed 2 seconds later


def test_queue_workers_and_finish_waits_for_them():
    q = coserve.Queue(name="jobs")
    done = []

    async def slow(item):
        await coserve.sleep(1)
        done.append(item)

    async def main():
        w1 = q.add_worker(slow)
        w2 = q.add_worker(lambda item: done.append(("sync", item)))
        assert q.workers == {w1, w2} and (w1.name, w2.name) == ("jobs:worker-1", "jobs:worker-2")
        for i in range(4):
            q.push(i)
        await q.finish()
        assert q.workers == frozenset() and q.size == 0
        return coserve.gettime()

    assert run(main) == 1
    # The first worker takes 0 and sleeps; the second, synchronous, drains the rest meanwhile.
    assert done == [("sync", 1), ("sync", 2), ("sync", 3), 0]


def test_queue_worker_error_goes_to_handler_and_worker_goes_on(errors):
    q = coserve.Queue()
    ok = []

    def work(item):
        if item == "bad":
            raise ValueError(item)
        ok.append(item)

    async def main():
        q.add_worker(work)
        for x in ["a", "bad", "b"]:
            q.push(x)
        await q.finish()

    run(main)
    assert ok == ["a", "b"]
    assert [str(e) for e, _ in errors] == ["bad"]


def test_queue_push_after_stop_raises_and_pop_drains_then_stops():
    q = coserve.Queue()

    async def main():
        q.push(1)
        q.stop()
        with pytest.raises(coserve.Stopping):
            q.push(2)
        assert await q.pop() == 1
        with pytest.raises(coserve.Stopping):
            await q.pop()

    run(main)


def test_queue_stop_wakes_waiting_poppers():
    q = coserve.Queue()

    async def popper():
        with pytest.raises(coserve.Stopping):
            await q.pop()
        return "stopped"

    async def main():
        t = coserve.spawn(popper)
        await wait_all_tasks_blocked()
        q.stop()
        return await t

    assert run(main) == "stopped"


def test_queue_finish_timeout_and_destroy():
    q = coserve.Queue()
    cancelled = []

    async def stuck(item):
        try:
            await coserve.sleep(100)
        except coserve.Cancelled:
            cancelled.append(item)
            raise

    async def main():
        q.add_worker(stuck)
        q.push("x")
        with pytest.raises(TimeoutError):
            await q.finish(timeout=1)
        q.destroy()
        await wait_all_tasks_blocked()
        with pytest.raises(coserve.Destroyed):
            q.push(1)
        with pytest.raises(coserve.Destroyed):
            await q.pop()

    run(main)
    assert cancelled == ["x"]


def test_queue_destroy_wakes_poppers():
    q = coserve.Queue()

    async def popper():
        with pytest.raises(coserve.Destroyed):
            await q.pop()
        return True

    async def main():
        t = coserve.spawn(popper)
        await wait_all_tasks_blocked()
        q.destroy()
        return await t

    assert run(main) is True


def test_queue_destroy_with_an_idle_worker_reports_nothing(errors):
    # An idle worker waits in pop(); destroy() must end it quietly, not as a task
    # that failed with Destroyed (which the error handler would report).
    q = coserve.Queue()
    done = []

    async def main():
        worker = q.add_worker(done.append)
        q.push(1)
        await wait_all_tasks_blocked()
        q.destroy()
        with pytest.raises(coserve.Cancelled):
            await worker
        return q.workers

    assert coserve.run(main) == frozenset()
    assert done == [1]
    assert errors == []


def test_queue_destroyed_by_its_own_worker_reports_nothing(errors):
    q = coserve.Queue()

    async def main():
        worker = q.add_worker(lambda item: q.destroy())
        q.push(1)
        await worker
        return q.workers

    assert coserve.run(main) == frozenset()
    assert errors == []
