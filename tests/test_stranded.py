"""A run that ends with tasks nothing can wake says so (a deadlock is not silent)."""

from __future__ import annotations

import logging

import coserve
from coserve import __main__ as runtime


def test_a_deadlock_is_a_warning_naming_each_task_and_where_it_waits(caplog):
    sem = coserve.Semaphore(50)  # start defaults to 0, as in Copas: no permit yet
    cleaned = []

    async def worker(i):
        try:
            await sem.take()
        finally:
            cleaned.append(i)

    async def main():
        for i in range(25):
            coserve.spawn(worker, i, name=f"worker-{i}")

    with caplog.at_level(logging.WARNING, logger="coserve"):
        coserve.run(main)
    assert sorted(cleaned) == list(range(25))  # cancelled, so their finally blocks ran
    [record] = [r for r in caplog.records if "nothing left that could wake" in r.getMessage()]
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "wake 25 task(s)" in message
    assert "'worker-0' waiting at Semaphore.take, called from " in message
    assert "test_stranded.py:" in message  # the line of the task's own code
    assert "... and 5 more" in message  # at most 20 are listed


def test_idle_queue_workers_and_finished_runs_are_not_deadlocks(caplog):
    q = coserve.Queue()
    seen = []

    async def main():
        q.add_worker(seen.append)
        q.push(1)

    with caplog.at_level(logging.WARNING, logger="coserve"):
        coserve.run(main)
    assert seen == [1]
    assert not [r for r in caplog.records if "nothing left" in r.getMessage()]


def test_semaphore_async_with_takes_and_gives_one():
    sem = coserve.Semaphore(2, 2)
    active = []
    peak = []

    async def user(i):
        async with sem as s:
            assert s is sem
            active.append(i)
            peak.append(len(active))
            await coserve.sleep(0)
            active.remove(i)

    async def main():
        for i in range(6):
            coserve.spawn(user, i)

    coserve.run(main)
    assert max(peak) == 2 and len(peak) == 6
    assert sem.count == 2


def test_the_coserve_command_exits_non_zero_on_a_deadlock(tmp_path, capsys):
    path = tmp_path / "stuck.py"
    path.write_text(
        "import coserve\nlock = coserve.Lock()\nasync def a():\n    await lock.acquire()\n"
        "    await coserve.Event().wait()\ncoserve.spawn(a)\n"
    )
    assert runtime.main([str(path)]) == 1
    ok = tmp_path / "ok.py"
    ok.write_text("import coserve\nasync def a():\n    await coserve.sleep(0)\ncoserve.spawn(a)\n")
    assert runtime.main([str(ok)]) == 0
