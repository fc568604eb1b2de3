"""Cancellation races: a waiter cancelled right after it was woken must not swallow what it was given.

Every scenario runs on the mock clock with whole-second sleeps drawn from a
seeded generator, so many tasks wake in the same pass of the loop in a
seed-dependent order. Cancellers are tasks (not timers), so depending on the
order a waiter is cancelled while parked, or after a hand-off woke it and
before it ran: the race these tests are about. Each scenario ends by checking
that nothing was lost, duplicated or left held.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

import coserve
from coserve.testing import MockClock, wait_all_tasks_blocked

SEEDS = range(40)


def run(main):
    return coserve.run(main, clock=MockClock(autojump_threshold=0))


async def _cancellers(rng, tasks, n):
    """Spawn *n* tasks that each wake at a random second and cancel one of *tasks*.

    They aim at tasks that are parked in a primitive or were just woken from one (ready), where
    the races are; a task that is neither is hit only when no such task is left.
    """

    async def canceller():
        # Several rounds, so that some of its wake-ups are queued after a holder's in the same
        # second: then it runs right after a release handed something to a waiter.
        for _ in range(3):
            await coserve.sleep(rng.randint(0, 3))
            live = [t for t in tasks if not t.done()]
            aimed = [t for t in live if t.state in ("ready", "waiting")]
            if aimed or live:
                rng.choice(aimed or live).cancel()

    for _ in range(n):
        coserve.spawn(canceller)


async def _join_all(tasks):
    for t in tasks:
        try:
            await t
        except (coserve.Cancelled, TimeoutError):
            pass


@pytest.mark.parametrize("seed", SEEDS)
def test_lock_hand_off_survives_cancellation(seed):
    rng = random.Random(seed)
    lock = coserve.Lock(reentrant=False)
    holders = []
    stats = Counter()

    async def user(i):
        await coserve.sleep(rng.randint(0, 3))
        await lock.acquire(timeout=rng.choice([None, None, 1, 2]))
        try:
            holders.append(i)
            assert holders == [i], "two holders at once"
            stats["acquired"] += 1
            await coserve.sleep(rng.randint(0, 2))
        finally:
            holders.remove(i)
            lock.release()
            stats["released"] += 1

    async def main():
        tasks = [coserve.spawn(user, i) for i in range(30)]
        await _cancellers(rng, tasks, 15)
        await _join_all(tasks)

    run(main)
    assert stats["acquired"] == stats["released"] > 0
    assert lock.owner is None and lock.waiting == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_semaphore_permits_survive_cancellation(seed):
    rng = random.Random(seed)
    sema = coserve.Semaphore(4, start=4)
    held = [0]

    async def user():
        await coserve.sleep(rng.randint(0, 3))
        n = rng.choice([1, 1, 2, 3])
        await sema.take(n, timeout=rng.choice([None, 1, 2]))
        held[0] += n
        assert held[0] <= 4
        try:
            await coserve.sleep(rng.randint(0, 2))
        finally:
            held[0] -= n
            sema.give(n)

    async def main():
        tasks = [coserve.spawn(user) for _ in range(30)]
        await _cancellers(rng, tasks, 15)
        await _join_all(tasks)

    run(main)
    assert sema.count == 4 and sema.waiting == 0 and held == [0]


@pytest.mark.parametrize("seed", SEEDS)
def test_queue_items_survive_cancellation(seed):
    rng = random.Random(seed)
    q = coserve.Queue()
    pushed, got = [], []

    async def producer(base):
        for i in range(5):
            await coserve.sleep(rng.randint(0, 2))
            item = (base, i)
            pushed.append(item)
            q.push(item)

    async def consumer():
        while True:
            item = await q.pop(timeout=rng.choice([None, 2, 3]))
            got.append(item)  # before the next wait: a pending cancellation cannot come in between

    async def main():
        producers = [coserve.spawn(producer, b) for b in range(4)]
        consumers = [coserve.spawn(consumer) for _ in range(6)]
        await _cancellers(rng, consumers, 6)
        await _join_all(producers)
        for c in consumers:
            c.cancel()
        await _join_all(consumers)
        while q.size:
            got.append(await q.pop())

    run(main)
    assert sorted(got) == sorted(pushed) and len(pushed) == 20


@pytest.mark.parametrize("seed", SEEDS)
def test_condition_keeps_its_lock_and_passes_notifications_on(seed):
    rng = random.Random(seed)
    cond = coserve.Condition()
    woken = []

    async def waiter(i):
        await coserve.sleep(rng.randint(0, 2))
        async with cond:
            await cond.wait()
            assert cond._lock.owner is coserve.current_task()
            woken.append(i)

    async def notifier():
        for _ in range(10):
            await coserve.sleep(rng.randint(0, 2))
            async with cond:
                cond.notify(rng.randint(1, 2))

    async def main():
        tasks = [coserve.spawn(waiter, i) for i in range(12)]
        await _cancellers(rng, tasks, 6)
        await coserve.spawn(notifier)
        await _join_all(tasks)

    run(main)
    assert not cond.locked() and len(cond._waiters) == 0
    assert len(woken) == len(set(woken))


@pytest.mark.parametrize("seed", SEEDS)
def test_event_waiters_survive_cancellation(seed):
    rng = random.Random(seed)
    ev = coserve.Event()
    results = Counter()

    async def waiter():
        await coserve.sleep(rng.randint(0, 3))
        try:
            assert await ev.wait() is True
            results["set"] += 1
        except coserve.Cancelled:
            results["cancelled"] += 1
            raise

    async def setter():
        await coserve.sleep(rng.randint(0, 4))
        ev.set()

    async def main():
        tasks = [coserve.spawn(waiter) for _ in range(20)]
        await _cancellers(rng, tasks, 8)
        coserve.spawn(setter)
        await _join_all(tasks)

    run(main)
    assert results["set"] + results["cancelled"] <= 20 and results["set"] > 0
    assert len(ev._waiters) == 0


# --- the exact interleaving, once per primitive ------------------------------------------------


async def _hand_off_then_cancel(wait_for_it, hand_over):
    """A waiter parks; the resource is handed to it and it is cancelled before it runs.

    Returns what the waiter managed: it must have received the resource, then been cancelled at
    its next wait.
    """
    trace = []

    async def waiter():
        got = await wait_for_it()
        trace.append(("got", got))
        try:
            await coserve.sleep(1)
        except coserve.Cancelled:
            trace.append("cancelled at next wait")
            raise

    w = coserve.spawn(waiter)
    await wait_all_tasks_blocked()
    hand_over()
    assert w.state == "ready"
    w.cancel()
    try:
        await w
    except coserve.Cancelled:
        pass
    return trace


def test_lock_handed_to_a_cancelled_waiter_is_not_lost():
    lock = coserve.Lock()

    async def acquire_and_hold():
        await lock.acquire()
        return lock.owner is coserve.current_task()

    async def main():
        await lock.acquire()
        trace = await _hand_off_then_cancel(acquire_and_hold, lock.release)
        return trace, lock.owner

    trace, owner = run(main)
    assert trace == [("got", True), "cancelled at next wait"]
    assert owner is not None  # the cancelled task still holds it: it never released


def test_semaphore_permit_given_to_a_cancelled_waiter_is_not_lost():
    sema = coserve.Semaphore(1, 0)

    async def main():
        trace = await _hand_off_then_cancel(lambda: sema.take(), sema.give)
        return trace, sema.count

    trace, count = run(main)
    assert trace == [("got", 0.0), "cancelled at next wait"] and count == 0


def test_queue_item_pushed_to_a_cancelled_waiter_is_not_lost():
    q = coserve.Queue()

    async def main():
        return await _hand_off_then_cancel(q.pop, lambda: q.push("item"))

    assert run(main) == [("got", "item"), "cancelled at next wait"]


def _condition_scenario(hold_lock_until_blocked):
    cond = coserve.Condition()
    trace = []

    async def waiter(name):
        async with cond:
            try:
                await cond.wait()
                trace.append(name)
            except coserve.Cancelled:
                trace.append(f"{name} cancelled")
                raise

    async def main():
        first = coserve.spawn(waiter, "first")
        second = coserve.spawn(waiter, "second")
        await wait_all_tasks_blocked()
        async with cond:
            cond.notify(1)  # wakes "first", which must then re-acquire the lock...
            first.cancel()  # ...and is cancelled before it runs
            if hold_lock_until_blocked:
                await wait_all_tasks_blocked()  # "first" now waits for the lock we hold
        await _join_all([first, second])

    run(main)
    return trace


def test_condition_waiter_cancelled_while_reacquiring_passes_the_notification_on():
    # The cancellation is delivered while "first" waits for the lock: it gives up, but hands
    # its notification to "second" so that the notify() is not lost.
    assert _condition_scenario(True) == ["first cancelled", "second"]


def test_condition_waiter_cancelled_after_notify_with_the_lock_free_keeps_its_notification():
    # The lock is free when "first" runs, so it re-acquires without waiting: it was notified,
    # returns normally, and the cancellation would come at its next wait ("second" is never
    # notified and is cancelled when the run winds down).
    assert _condition_scenario(False) == ["first", "second cancelled"]
