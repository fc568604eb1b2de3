"""The scheduler: run/step/exit, tasks, error handlers, foreign awaitables, threads and callbacks."""

from __future__ import annotations

import asyncio
import logging
import threading
import types

import pytest

import coserve
from coserve import _kernel
from coserve.testing import MockClock, wait_all_tasks_blocked

# --- run() and how it ends ----------------------------------------------------------


def test_run_returns_main_result_and_passes_args():
    async def main(a, b):
        return a + b

    assert coserve.run(main, 2, 3) == 5


def test_run_accepts_a_coroutine_object():
    async def main():
        return "ok"

    assert coserve.run(main()) == "ok"


def test_run_reraises_main_exception_and_cancels_the_rest():
    trace = []

    async def bystander():
        try:
            await coserve.sleep(100)
        except coserve.Cancelled:
            trace.append("bystander cancelled")
            raise

    async def main():
        coserve.spawn(bystander)
        await coserve.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        coserve.run(main, clock=MockClock(autojump_threshold=0))
    assert trace == ["bystander cancelled"]


def test_tasks_spawned_before_run_run_in_order_and_loop_exits_when_done():
    trace = []

    async def task(n):
        trace.append(f"start {n}")
        await coserve.sleep(0)
        trace.append(f"end {n}")

    for n in range(3):
        coserve.spawn(task, n)
    assert coserve.run() is None
    assert trace == ["start 0", "start 1", "start 2", "end 0", "end 1", "end 2"]
    assert coserve.finished()


def test_spawned_task_does_not_run_until_the_spawner_waits():
    trace = []

    async def child():
        trace.append("child")

    async def main():
        coserve.spawn(child)
        trace.append("after spawn")
        await coserve.sleep(0)
        trace.append("after sleep")

    coserve.run(main)
    assert trace == ["after spawn", "child", "after sleep"]


def test_a_later_run_starts_from_a_clean_state():
    async def main():
        coserve.exit()
        return coserve.exiting()

    assert coserve.run(main) is True
    assert not coserve.exiting()

    async def second():
        return coserve.exiting(), coserve.status()["tasks"]

    assert coserve.run(second) == (False, 1)


def test_run_inside_run_is_an_error():
    async def main():
        with pytest.raises(coserve.AlreadyRunning):
            coserve.run(main)
        return True

    assert coserve.run(main)


def test_permanent_sleepers_do_not_keep_the_loop_alive_and_are_cleaned_up():
    trace = []

    async def sleeper(n):
        try:
            await coserve.sleep_forever()
        finally:
            trace.append(f"cleanup {n}")

    async def main():
        for n in range(3):
            coserve.spawn(sleeper, n)
        await coserve.sleep(0.5)
        trace.append("main done")

    coserve.run(main, clock=MockClock(autojump_threshold=0))
    assert trace == ["main done", "cleanup 0", "cleanup 1", "cleanup 2"]


def test_task_blocked_on_a_lock_nobody_releases_is_cancelled_at_the_end():
    lock = coserve.Lock()
    trace = []

    async def holder():
        await lock.acquire()  # never released

    async def waiter():
        try:
            await lock.acquire()
        except coserve.Cancelled:
            trace.append("waiter cancelled")
            raise

    coserve.spawn(holder)
    coserve.spawn(waiter)
    coserve.run()
    assert trace == ["waiter cancelled"]


def test_exit_releases_wait_for_exit_and_run_returns_when_tasks_end():
    trace = []

    async def service():
        await coserve.wait_for_exit()
        trace.append("service saw exit")
        await coserve.sleep(1)  # orderly cleanup still runs
        trace.append("service cleaned up")

    async def main():
        coserve.spawn(service)
        await coserve.sleep(5)
        trace.append("exit")
        coserve.exit()
        assert coserve.exiting()

    coserve.run(main, clock=MockClock(autojump_threshold=0))
    assert trace == ["exit", "service saw exit", "service cleaned up"]


def test_wait_for_exit_returns_at_once_when_exiting():
    async def main():
        coserve.exit()
        await coserve.wait_for_exit()
        return "done"

    assert coserve.run(main) == "done"


def test_wait_for_exit_is_released_when_nothing_else_is_left():
    # Copas: tasks waiting for exit are woken when the work is done, and may still run.
    trace = []

    async def watcher():
        await coserve.wait_for_exit()
        trace.append("woken")
        await coserve.sleep(1)
        trace.append("finished after exit")

    async def main():
        coserve.spawn(watcher)
        await coserve.sleep(2)

    coserve.run(main, clock=MockClock(autojump_threshold=0))
    assert trace == ["woken", "finished after exit"]


def test_tasks_added_while_exiting_still_run():
    trace = []

    async def late(n):
        await coserve.sleep(1)
        trace.append(f"late {n}")

    async def main():
        coserve.exit()
        for n in range(3):
            coserve.spawn(late, n)

    coserve.run(main, clock=MockClock(autojump_threshold=0))
    assert trace == ["late 0", "late 1", "late 2"]


def test_cancel_all_cancels_tasks_and_timers_and_returns_promptly():
    trace = []
    clock = MockClock(autojump_threshold=0)

    async def worker(n):
        try:
            await coserve.sleep(3600)
        except coserve.Cancelled:
            trace.append(f"worker {n} cancelled")
            raise

    async def main():
        for n in range(2):
            coserve.spawn(worker, n)
        t = coserve.timer(lambda timer, p: trace.append("timer fired"), 100, recurring=True)
        await coserve.sleep(1)
        coserve.cancel_all()
        assert not t.armed
        await coserve.sleep(1)  # main is cancelled here too
        trace.append("not reached")

    assert coserve.run(main, clock=clock) is None
    assert trace == ["worker 0 cancelled", "worker 1 cancelled"]
    assert clock.time() == 1


# --- step() -----------------------------------------------------------------------


def test_step_drives_the_scheduler_from_a_foreign_loop():
    trace = []

    async def task():
        trace.append("a")
        await coserve.sleep(0)
        trace.append("b")

    coserve.spawn(task)
    assert not coserve.is_running()
    steps = 0
    while not coserve.finished() or _kernel._K is not None:
        coserve.step()
        steps += 1
        assert steps < 10
    assert trace == ["a", "b"]
    assert coserve.step() is False  # nothing to do: a no-op that creates and drops a scheduler


def test_step_waits_at_most_its_timeout():
    async def sleeper():
        await coserve.sleep(10)

    coserve.spawn(sleeper)
    assert coserve.step() is True  # the task ran up to its sleep
    assert coserve.step(0.01) is False  # nothing due within 10 ms
    coserve.cancel_all()
    while _kernel._K is not None:
        coserve.step()


def test_step_refuses_negative_timeout():
    with pytest.raises(ValueError):
        coserve.step(-1)


# --- tasks ----------------------------------------------------------------------------


def test_many_tasks_can_await_one_task():
    async def slow():
        await coserve.sleep(1)
        return 42

    async def waiter(t):
        return await t

    async def main():
        t = coserve.spawn(slow)
        waiters = [coserve.spawn(waiter, t) for _ in range(5)]
        return [await w for w in waiters], await t

    assert coserve.run(main, clock=MockClock(autojump_threshold=0)) == ([42] * 5, 42)


def test_awaiting_a_task_raises_its_error_which_is_then_not_reported(errors):
    async def bad():
        await coserve.sleep(0)
        raise KeyError("x")

    async def main():
        t = coserve.spawn(bad)
        with pytest.raises(KeyError):
            await t
        assert isinstance(t.exception(), KeyError)
        assert t.done() and not t.cancelled()

    coserve.run(main)
    assert errors == []


def test_task_cancel_and_result():
    async def sleeper():
        await coserve.sleep(10)

    async def main():
        t = coserve.spawn(sleeper, name="sleepy")
        await coserve.sleep(0)
        assert t.state == "sleeping"
        assert t.cancel() is True
        with pytest.raises(coserve.Cancelled):
            await t
        assert t.cancelled()
        assert t.cancel() is False
        with pytest.raises(coserve.Cancelled):
            t.result()
        return t.name

    assert coserve.run(main) == "sleepy"


def test_result_before_done_is_an_error():
    async def main():
        t = coserve.spawn(coserve.sleep, 0)
        with pytest.raises(coserve.CoserveError, match="not finished"):
            t.result()
        with pytest.raises(coserve.CoserveError):
            t.exception()
        await t

    coserve.run(main)


def test_cancelling_a_task_that_never_started_runs_none_of_its_body():
    # Copas's removethread, asyncio's and trio's cancel: a task cancelled before it first runs
    # ends cancelled without executing any of its code (not even up to its first await).
    trace = []

    async def child(name):
        trace.append(f"{name} started")
        try:
            await coserve.sleep(0)
        finally:
            trace.append(f"{name} finally")

    async def main():
        early = coserve.spawn(child, "early")  # cancelled before the scheduler ever ran it
        t = coserve.spawn(child, "mine")
        t.cancel()
        t.cancel()  # a second cancel changes nothing
        with pytest.raises(coserve.Cancelled):
            await t
        assert t.cancelled()
        await early

    before = coserve.spawn(child, "before run")  # spawned and cancelled before run() starts
    before.cancel()
    coserve.run(main)
    assert before.cancelled()
    assert trace == ["early started", "early finally"]


def test_cancelling_a_generator_based_task_before_it_ran_runs_none_of_it():
    # A @types.coroutine generator (as coserve.sleep is) spawned as a task is cancelled the same way.
    trace = []

    @types.coroutine
    def gen():
        trace.append("ran")
        yield from coserve.sleep(0)

    async def main():
        t = coserve.spawn(gen)
        t.cancel()
        with pytest.raises(coserve.Cancelled):
            await t

    coserve.run(main)
    assert trace == []


def test_cancelling_a_started_task_that_is_ready_is_delivered_at_its_next_wait():
    trace = []

    async def child():
        trace.append("started")
        await coserve.sleep(0)
        trace.append("resumed")  # it was woken before the cancel: that wake-up is kept
        await coserve.sleep(0)
        trace.append("not reached")

    async def main():
        t = coserve.spawn(child)
        await coserve.sleep(0)  # child runs up to its sleep(0) and is ready again
        t.cancel()
        with pytest.raises(coserve.Cancelled):
            await t

    coserve.run(main)
    assert trace == ["started", "resumed"]


def test_cancel_self_is_delivered_at_the_next_wait():
    trace = []

    async def main():
        coserve.current_task().cancel()
        trace.append("still running")
        try:
            await coserve.sleep(0)
        except coserve.Cancelled:
            trace.append("cancelled at wait")

    coserve.run(main)
    assert trace == ["still running", "cancelled at wait"]


def test_current_task_and_names():
    async def child():
        return coserve.current_task().name

    async def main():
        me = coserve.current_task()
        a = coserve.spawn(child, name="alpha")
        b = coserve.spawn(child)
        return me.name, await a, await b, b.id != a.id

    name, a, b, distinct = coserve.run(main)
    assert (name, a, distinct) == ("main", "alpha", True)
    assert b.startswith("task-")
    assert coserve.current_task() is None


def test_spawn_rejects_plain_functions_with_a_clear_error():
    def not_async():
        return 1

    with pytest.raises(TypeError, match="async def"):
        coserve.spawn(not_async)
    _kernel.drop_kernel(_kernel._K)


def test_awaiting_a_foreign_awaitable_fails_clearly():
    async def main():
        loop = asyncio.new_event_loop()
        try:
            fut = loop.create_future()
            with pytest.raises(coserve.ForeignAwaitable, match="not a coserve operation"):
                await fut
            fut.cancel()
        finally:
            loop.close()

    coserve.run(main)


# --- error handlers -----------------------------------------------------------------


def test_default_error_handler_logs_task_name_and_traceback(caplog):
    async def failing():
        raise RuntimeError("kaput")

    coserve.spawn(failing, name="worker-7")
    with caplog.at_level(logging.ERROR, logger="coserve"):
        coserve.run()
    [record] = caplog.records
    assert "worker-7" in record.getMessage()
    assert record.exc_info[0] is RuntimeError


def test_default_error_handler_can_be_replaced(errors):
    async def failing():
        raise RuntimeError("kaput")

    coserve.spawn(failing, name="w")
    coserve.run()
    assert [(type(e), n) for e, n in errors] == [(RuntimeError, "w")]


def test_per_task_error_handler_overrides_the_default(errors):
    mine = []

    async def failing():
        coserve.set_error_handler(lambda exc, task, sock: mine.append((str(exc), task.name, sock)))
        assert coserve.get_error_handler() is not coserve.get_error_handler(None) or True
        raise ValueError("own")

    async def other():
        raise ValueError("default")

    coserve.spawn(failing, name="a")
    coserve.spawn(other, name="b")
    coserve.run()
    assert mine == [("own", "a", None)]
    assert [(str(e), n) for e, n in errors] == [("default", "b")]


def test_get_error_handler_returns_the_tasks_or_the_default(errors):
    def mine(exc, task, sock):
        pass

    async def main():
        default = coserve.get_error_handler()
        coserve.set_error_handler(mine)
        return default, coserve.get_error_handler(), coserve.get_error_handler(coserve.current_task())

    default, own, own2 = coserve.run(main)
    assert own is mine and own2 is mine and default is not mine


def test_a_failing_error_handler_does_not_stop_the_loop(caplog):
    def broken(exc, task, sock):
        raise RuntimeError("handler broke")

    coserve.set_error_handler(broken, default=True)
    try:

        async def failing():
            raise ValueError("x")

        async def survivor():
            await coserve.sleep(0)
            await coserve.sleep(0)
            return "alive"

        async def main():
            coserve.spawn(failing)
            return await coserve.spawn(survivor)

        with caplog.at_level(logging.ERROR, logger="coserve"):
            assert coserve.run(main) == "alive"
        assert "error handler itself failed" in caplog.text
    finally:
        coserve.set_error_handler(None, default=True)


def test_set_error_handler_rejects_non_callables():
    with pytest.raises(TypeError):
        coserve.set_error_handler(42)


# --- status ---------------------------------------------------------------------------


def test_status_counts_tasks_by_state_and_stats():
    async def sleeper():
        await coserve.sleep(10)

    async def main():
        for _ in range(3):
            coserve.spawn(sleeper)
        coserve.timer(lambda t, p: None, 5)
        coserve.status(stats=True)  # switches measuring on
        for _ in range(3):  # measuring starts next pass; the pass in progress is not counted yet
            await coserve.sleep(0)
        st = coserve.status(stats=True)
        coserve.cancel_all()
        return st

    st = coserve.run(main, clock=MockClock(autojump_threshold=0))
    assert st["tasks"] == 4 and st["sleeping"] == 3 and st["running"] == 1 and st["timers"] == 1
    s = st["stats"]
    assert s["steps"] == 2 and 0 <= s["step_time_min"] <= s["step_time_avg"] <= s["step_time_max"]


def test_status_outside_a_run():
    st = coserve.status(stats=True)
    assert st["tasks"] == 0 and st["stats"]["steps"] == 0
    assert st["running"] is False and st["read"] == st["active"] == st["duration_tot"] == 0


def test_status_carries_copas_keys_and_timing_fields():
    import socket

    a, b = socket.socketpair()

    async def reader(sock):
        await sock.receive(1)

    async def main():
        sock = coserve.wrap(a)
        coserve.spawn(reader, sock)  # read
        coserve.spawn(coserve.sleep, 10)  # timer
        coserve.spawn(coserve.sleep_forever)  # inactive
        coserve.spawn(coserve.Event().wait)  # inactive
        coserve.timer(lambda t, p: None, 5)  # a Timer: "timers", not a task
        first = coserve.status(stats=True)  # switches measuring on
        await wait_all_tasks_blocked()
        ready = coserve.spawn(coserve.sleep, 0)  # active
        st = coserve.status(stats=True)
        async with coserve.timeout_after(30):  # timeout
            in_block = coserve.status()
        await ready
        coserve.cancel_all()  # no wait after this: main returns its result
        sock.close()
        return first, st, in_block

    try:
        first, st, in_block = coserve.run(main, clock=MockClock(autojump_threshold=0))
    finally:
        b.close()
    assert first["active"] == 4 and first["running"] is True
    assert (st["read"], st["write"], st["active"], st["timer"], st["inactive"], st["timeout"]) == (
        1,
        0,
        1,
        1,
        2,
        0,
    )
    assert st["timers"] == 1 and st["running"] is True and st["tasks"] == 6
    assert in_block["timeout"] == 1
    assert st["steps"] >= 1 and st["time_end"] >= st["time_start"]
    assert 0 <= st["duration_min"] <= st["duration_avg"] <= st["duration_max"] <= st["duration_max_ever"]
    assert st["duration_tot"] >= st["duration_max"] and st["duration_min_ever"] <= st["duration_min"]


def test_task_name_is_settable_and_try_get_reports_the_outcome():
    async def ok():
        return 42

    async def bad():
        raise KeyError("k")

    async def main():
        t = coserve.spawn(ok)
        assert t.try_get() == (coserve.Task.PENDING, None)
        t.name = "renamed"  # Copas's setthreadname
        assert t.name == "renamed" and "renamed" in repr(t)
        with pytest.raises(TypeError):
            t.name = 3
        f = coserve.spawn(bad)
        c = coserve.spawn(coserve.sleep_forever)
        c.cancel()
        assert await t == 42
        with pytest.raises(KeyError):
            await f
        with pytest.raises(coserve.Cancelled):
            await c
        state, exc = f.try_get()
        assert (t.try_get(), state, type(exc)) == ((coserve.Task.SUCCESS, 42), coserve.Task.ERROR, KeyError)
        assert c.try_get()[0] == coserve.Task.ERROR and isinstance(c.try_get()[1], coserve.Cancelled)

    coserve.run(main)


def test_format_traceback_names_the_task_and_the_socket():
    async def fails():
        raise ValueError("boom")

    async def main():
        t = coserve.spawn(fails, name="worker")
        with pytest.raises(ValueError) as info:
            await t
        return coserve.format_traceback(info.value, t), coserve.format_traceback(info.value)

    text, bare = coserve.run(main)
    assert text.startswith("uncaught error in task 'worker'\n")
    assert "in fails" in text and text.rstrip().endswith("ValueError: boom")
    assert bare.startswith("uncaught error in a timer callback\n")


def test_gettime_is_the_kernel_clock():
    clock = MockClock(start=100, autojump_threshold=0)

    async def main():
        t0 = coserve.gettime()
        slept = await coserve.sleep(7)
        return t0, coserve.gettime(), slept

    assert coserve.run(main, clock=clock) == (100, 107, 7)
    assert coserve.gettime() > 0  # outside a run: the monotonic clock


# --- threads and callbacks --------------------------------------------------------------


def test_run_in_thread_keeps_the_loop_running():
    release = threading.Event()
    trace = []

    def blocking():
        release.wait(5)
        return "from thread"

    async def ticker():
        trace.append("loop still runs")
        release.set()

    async def main():
        t = coserve.spawn(ticker)
        result = await coserve.run_in_thread(blocking)
        await t
        return result

    assert coserve.run(main) == "from thread"
    assert trace == ["loop still runs"]


def test_run_in_thread_raises_the_threads_error():
    def bad():
        raise OSError("disk")

    async def main():
        with pytest.raises(OSError, match="disk"):
            await coserve.run_in_thread(bad)

    coserve.run(main)


def test_run_in_thread_cancelled_abandons_the_result():
    release = threading.Event()

    def blocking():
        release.wait(5)
        return 1

    async def main():
        async with coserve.move_on_after(0.01) as scope:
            await coserve.run_in_thread(blocking)
        release.set()
        return scope.expired

    assert coserve.run(main) is True


def test_from_callback_sync_later_and_threaded():
    def immediate(x, cb):
        cb(x * 2)

    later_cbs = []

    def later(cb):
        later_cbs.append(cb)

    threads = []

    def threaded(cb):
        threads.append(threading.Thread(target=cb, args=("a", "b")))
        threads[0].start()

    async def caller():
        await coserve.sleep(0)
        later_cbs[0]()

    async def main():
        a = await coserve.from_callback(immediate, 21)
        coserve.spawn(caller)
        b = await coserve.from_callback(later)
        c = await coserve.from_callback(threaded)
        return a, b, c

    assert coserve.run(main) == (42, None, ("a", "b"))
    threads[0].join()  # it may still be returning from the callback when the run ends


def test_from_callback_called_twice_is_an_error():
    async def main():
        saved = []
        await coserve.from_callback(lambda cb: (saved.append(cb), cb(1)))
        with pytest.raises(coserve.CoserveError, match="more than once"):
            saved[0](2)

    coserve.run(main)


# --- wait_all_tasks_blocked --------------------------------------------------------------


def test_wait_all_tasks_blocked_runs_everyone_else_first():
    trace = []

    async def chatty(n):
        for i in range(3):
            trace.append((n, i))
            await coserve.sleep(0)

    async def main():
        for n in range(2):
            coserve.spawn(chatty, n)
        await wait_all_tasks_blocked()
        trace.append("all blocked")

    coserve.run(main)
    assert trace[-1] == "all blocked" and len(trace) == 7


# --- when an error counts as uncaught ----------------------------------------------------


def test_error_of_a_task_nobody_awaits_is_reported_when_it_ends_and_still_raised_later(errors):
    async def bad():
        raise ValueError("nobody waits")

    async def main():
        t = coserve.spawn(bad)
        await coserve.sleep(0)
        await coserve.sleep(0)  # bad has ended with nobody awaiting it: that is uncaught
        assert t.done() and [str(e) for e, _ in errors] == ["nobody waits"]
        with pytest.raises(ValueError):
            await t  # awaiting it later still raises it to the awaiter

    coserve.run(main)
    assert len(errors) == 1


def test_error_after_a_sleep_or_an_event_is_reported_at_once_without_the_garbage_collector(errors):
    # A wait's undo argument (a sleep's heap entry, a wait-queue token) referred back to the task:
    # with the Task kept, the report waited for the cyclic GC or the end of the run.
    import gc

    seen = []

    async def after_sleep():
        await coserve.sleep(0.001)
        raise ValueError("after sleep")

    async def after_event(ev):
        await ev.wait()
        raise ValueError("after event")

    async def main():
        ev = coserve.Event()
        kept = [coserve.spawn(after_sleep), coserve.spawn(after_event, ev)]
        while not kept[0].done():
            await coserve.sleep(0.001)
        seen.append([str(e) for e, _ in errors])
        ev.set()
        while not kept[1].done():
            await coserve.sleep(0)
        seen.append([str(e) for e, _ in errors])

    gc.disable()
    try:
        coserve.run(main)
    finally:
        gc.enable()
    assert seen == [["after sleep"], ["after sleep", "after event"]]


def test_error_of_a_task_in_a_reference_cycle_is_reported_when_it_ends(errors):
    seen = []

    async def bad():
        me = coserve.current_task()  # the frame now refers to its own task: a cycle
        raise ValueError(me.name)

    async def main():
        coserve.spawn(bad, name="cyclic")
        await coserve.sleep(0)
        await coserve.sleep(0)
        seen.extend((str(e), n) for e, n in errors)

    coserve.run(main)
    assert seen == [("cyclic", "cyclic")]


def test_an_awaited_task_s_error_is_not_reported(errors):
    async def bad():
        await coserve.sleep(0)
        raise ValueError("received")

    async def main():
        t = coserve.spawn(bad)
        with pytest.raises(ValueError):
            await t  # awaiting before it ends: the awaiter receives it, nothing is uncaught

    coserve.run(main)
    assert errors == []


def test_traceback_starts_in_the_task_not_in_the_kernel():
    async def bad():
        raise ValueError("x")

    async def main():
        t = coserve.spawn(bad)
        try:
            await t
        except ValueError as e:
            return e.__traceback__

    tb = coserve.run(main)
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "_run_ready" not in frames and frames[-1] == "bad"


# --- callbacks from other threads ---------------------------------------------------------


def _run_in_a_thread(target):
    box = {}

    def body():
        try:
            box["result"] = target()
        except BaseException as e:  # pragma: no cover - reported by the assertion below
            box["error"] = e

    t = threading.Thread(target=body)
    t.start()
    return t, box


def test_from_callback_called_from_another_thread_wakes_the_loop_at_once_whoever_made_the_kernel():
    # The kernel is made here (spawn before run), then run() in another thread; the callback comes
    # from this thread. The loop must be woken through its wake-up fd, not wait for the far sleep.
    saved = []
    registered = threading.Event()
    got = threading.Event()
    results = []

    async def far_sleeper():
        await coserve.sleep(60)

    async def waiter():
        sleeper = coserve.spawn(far_sleeper)
        value = await coserve.from_callback(lambda cb: (saved.append(cb), registered.set()))
        results.append(value)
        got.set()
        coserve.wakeup(sleeper)

    coserve.spawn(waiter)  # this thread makes the kernel
    runner, box = _run_in_a_thread(coserve.run)
    assert registered.wait(10)
    saved[0]("from main")
    assert got.wait(10), "the loop was not woken by the callback"
    runner.join(10)
    assert results == ["from main"] and "error" not in box


def test_from_callback_called_twice_from_another_thread_raises_in_the_caller():
    saved = []
    registered = threading.Event()
    outcome = []

    async def main():
        value = await coserve.from_callback(lambda cb: (saved.append(cb), registered.set()))
        return value

    runner, box = _run_in_a_thread(lambda: coserve.run(main))
    assert registered.wait(10)
    saved[0](1)
    try:
        saved[0](2)
    except coserve.CoserveError as e:
        outcome.append(str(e))
    runner.join(10)
    assert box.get("result") == 1
    assert len(outcome) == 1 and "more than once" in outcome[0]


# --- a forgotten await warns, as a native coroutine's does (issue 13 item 1) -------------------


def _every_function_of_coserve():
    """Every function and method defined in the coserve package, public or not."""
    import importlib
    import inspect
    import pkgutil

    seen = []
    for info in pkgutil.iter_modules(coserve.__path__):
        if info.name in ("__main__", "compat", "asyncore", "asynchat"):  # no awaitables; importing hooks
            continue
        mod = importlib.import_module(f"coserve.{info.name}")
        objs = list(vars(mod).values())
        objs += [v for c in vars(mod).values() if inspect.isclass(c) for v in vars(c).values()]
        for f in objs:
            f = getattr(f, "__func__", f)
            if inspect.isfunction(f) and f.__module__ == mod.__name__:
                seen.append(f)
    return seen


def test_no_awaitable_of_coserve_is_a_plain_generator():
    import inspect

    funcs = _every_function_of_coserve()
    assert coserve.sleep in funcs and coserve.Socket.send in funcs  # the scan sees the package
    generator_based = [f.__qualname__ for f in funcs if f.__code__.co_flags & inspect.CO_ITERABLE_COROUTINE]
    assert generator_based == [], "types.coroutine does not warn when never awaited: use native_coroutine"
    for f in (coserve.sleep, coserve.Socket.send, coserve.Socket.receive_partial, _kernel.suspend):
        assert inspect.iscoroutinefunction(f), f  # help() shows them as async


def test_a_forgotten_await_on_sleep_send_and_receive_partial_warns_with_their_names():
    import socket

    a, b = socket.socketpair()
    caught = []

    async def main():
        sa, sb = coserve.wrap(a), coserve.wrap(b)
        with pytest.warns(RuntimeWarning) as caught_here:
            coserve.sleep(1)
            sa.send(b"lost")
            sb.receive_partial()
            _kernel.WaitQueue().wait()
        caught.extend(str(w.message) for w in caught_here)
        await sa.send(b"sent")  # the forgotten send sent nothing
        assert await sb.receive_partial() == b"sent"
        sa.close()
        sb.close()

    coserve.run(main)
    assert caught == [
        "coroutine 'sleep' was never awaited",
        "coroutine 'Socket.send' was never awaited",
        "coroutine 'Socket.receive_partial' was never awaited",
        "coroutine 'WaitQueue.wait' was never awaited",
    ]


def test_native_coroutine_awaitables_still_await_send_throw_and_close():
    clock = MockClock(autojump_threshold=0)
    trace = []

    async def sleeper():
        try:
            await coserve.sleep(10)
        except coserve.Cancelled:
            trace.append("cancelled in sleep")
            raise

    async def main():
        assert await coserve.sleep(2) == 2.0
        t = coserve.spawn(sleeper)
        await coserve.sleep(1)
        t.cancel()
        await coserve.sleep(0)
        trace.append(t.cancelled())
        coro = coserve.sleep(5)
        coro.close()  # closing one never started is not "never awaited"
        return coserve.gettime()

    assert coserve.run(main, clock=clock) == 3.0
    assert trace == ["cancelled in sleep", True]
