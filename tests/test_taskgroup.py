"""TaskGroup: waits for its tasks; one failure cancels the rest and is raised."""

from __future__ import annotations

import pytest

import coserve
from coserve.testing import MockClock


def run(main):
    return coserve.run(main, clock=MockClock(autojump_threshold=0))


def test_group_waits_for_all_its_tasks():
    async def child(n):
        await coserve.sleep(n)
        return n

    async def main():
        async with coserve.TaskGroup() as g:
            tasks = [g.spawn(child, n, name=f"c{n}") for n in (3, 1, 2)]
        return [t.result() for t in tasks], coserve.gettime(), g.tasks

    assert run(main) == ([3, 1, 2], 3, frozenset())


def test_one_failure_cancels_siblings_and_body_and_is_raised_alone(errors):
    trace = []

    async def sibling():
        try:
            await coserve.sleep(10)
        except coserve.Cancelled:
            trace.append("sibling cancelled")
            raise

    async def failing():
        await coserve.sleep(1)
        raise ValueError("child failed")

    async def main():
        with pytest.raises(ValueError, match="child failed"):
            async with coserve.TaskGroup() as g:
                g.spawn(sibling)
                g.spawn(failing)
                try:
                    await coserve.sleep(100)
                except coserve.Cancelled:
                    trace.append("body cancelled")
                    raise
        return coserve.gettime()

    assert run(main) == 1
    assert sorted(trace) == ["body cancelled", "sibling cancelled"]
    assert errors == []  # a group's errors are raised, not reported


def test_several_failures_raise_an_exception_group():
    async def failing(n):
        await coserve.sleep(1)
        raise KeyError(n)

    async def main():
        with pytest.raises(ExceptionGroup) as info:
            async with coserve.TaskGroup() as g:
                g.spawn(failing, 1)
                g.spawn(failing, 2)
        return sorted(e.args[0] for e in info.value.exceptions)

    assert run(main) == [1, 2]


def test_body_error_cancels_the_tasks_and_propagates():
    trace = []

    async def child():
        try:
            await coserve.sleep(10)
        except coserve.Cancelled:
            trace.append("child cancelled")
            raise

    async def main():
        with pytest.raises(RuntimeError, match="body"):
            async with coserve.TaskGroup() as g:
                g.spawn(child)
                await coserve.sleep(1)
                raise RuntimeError("body")

    run(main)
    assert trace == ["child cancelled"]


def test_cancelling_the_parent_cancels_the_group():
    trace = []

    async def child():
        try:
            await coserve.sleep(10)
        except coserve.Cancelled:
            trace.append("child cancelled")
            raise

    async def parent():
        async with coserve.TaskGroup() as g:
            g.spawn(child)
            g.spawn(child)
        trace.append("not reached")

    async def main():
        p = coserve.spawn(parent)
        await coserve.sleep(1)
        p.cancel()
        with pytest.raises(coserve.Cancelled):
            await p

    run(main)
    assert trace == ["child cancelled", "child cancelled"]


def test_group_nests_with_timeouts():
    async def child():
        await coserve.sleep(10)

    async def main():
        async with coserve.move_on_after(2) as scope:
            async with coserve.TaskGroup() as g:
                g.spawn(child)
        return scope.expired, coserve.gettime()

    assert run(main) == (True, 2)


def test_spawning_outside_or_after_the_block_is_an_error():
    async def main():
        g = coserve.TaskGroup()
        with pytest.raises(coserve.CoserveError, match="async with"):
            g.spawn(coserve.sleep, 0)
        async with g:
            pass
        with pytest.raises(coserve.CoserveError, match="finished"):
            g.spawn(coserve.sleep, 0)

    run(main)
