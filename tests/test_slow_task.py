"""Debug mode: run(debug=True) or COSERVE_DEBUG=1 warns about a task blocking the loop (issue 13 item 3)."""

from __future__ import annotations

import logging
import time

import pytest

import coserve


def _slow_warnings(caplog):
    return [r for r in caplog.records if r.name == "coserve" and r.levelno == logging.WARNING]


def _program(block: float):
    """main starts a task that blocks for *block* s, and one that takes many quick turns."""

    async def blocker():
        await coserve.sleep(0)
        time.sleep(block)  # the mistake debug mode is there to catch
        await coserve.sleep(0)

    async def quick():
        for _ in range(100):
            await coserve.sleep(0)

    async def main():
        a = coserve.spawn(blocker, name="blocker")
        b = coserve.spawn(quick, name="quick")
        await a
        await b

    return main


def test_debug_run_warns_naming_the_task_that_blocked_and_for_how_long(caplog):
    coserve.run(_program(0.15), debug=True)
    [record] = _slow_warnings(caplog)
    message = record.getMessage()
    assert message.startswith("task 'blocker' ran for ")
    assert "without yielding" in message and "above 0.1 s" in message
    assert "sleep, called from _program.<locals>.blocker (" in message.split("it is now at ")[1]
    took = float(message.split("ran for ")[1].split(" s")[0])
    assert 0.15 <= took < 1


def test_the_threshold_is_configurable_and_a_task_that_ends_is_named_too(caplog):
    async def main():
        time.sleep(0.03)

    coserve.run(main, debug=True, slow_task_duration=0.02)
    [record] = _slow_warnings(caplog)
    assert record.getMessage().startswith("task 'main' ran for 0.0")
    assert "; then it ended. Blocking calls belong in coserve.run_in_thread()" in record.getMessage()


def test_coserve_debug_in_the_environment_turns_it_on_and_debug_false_off(caplog, monkeypatch):
    monkeypatch.setenv("COSERVE_DEBUG", "1")
    coserve.run(_program(0.12))
    assert [r.getMessage()[:14] for r in _slow_warnings(caplog)] == ["task 'blocker'"]
    caplog.clear()
    coserve.run(_program(0.12), debug=False)
    assert _slow_warnings(caplog) == []


@pytest.mark.parametrize("value", ["", "0"])
def test_without_debug_a_blocking_task_is_not_reported(caplog, monkeypatch, value):
    monkeypatch.setenv("COSERVE_DEBUG", value)
    coserve.run(_program(0.12))
    assert _slow_warnings(caplog) == []


def test_a_run_in_debug_mode_schedules_exactly_as_one_without():
    def trace_of(debug):
        trace = []

        async def worker(i):
            for j in range(3):
                trace.append((i, j))
                await coserve.sleep(0)

        async def main():
            for i in range(3):
                coserve.spawn(worker, i)
            await coserve.sleep(0)
            trace.append("main")

        coserve.run(main, debug=debug)
        return trace

    assert trace_of(True) == trace_of(False)
    assert trace_of(True)[:4] == [(0, 0), (1, 0), (2, 0), "main"]


@pytest.mark.parametrize("bad", [-1, float("nan"), "0.1", True])
def test_a_bad_threshold_fails_at_the_call(bad):
    async def main():
        pass

    with pytest.raises((TypeError, ValueError), match="slow_task_duration"):
        coserve.run(main, debug=True, slow_task_duration=bad)
