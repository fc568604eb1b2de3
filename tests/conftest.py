"""Shared fixtures: every test must end clean.

A test fails if it leaves a file descriptor open, a thread running, or a
scheduler alive (a task still in it), or if it changed the default error
handler without restoring it. Warnings are errors (pyproject.toml).
"""

from __future__ import annotations

import gc
import os
import threading

import pytest

import coserve
from coserve import _kernel


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")} if os.path.isdir("/proc/self/fd") else set()


@pytest.fixture(autouse=True)
def ends_clean():
    fds = _open_fds()
    threads = set(threading.enumerate())
    handler = _kernel.error_handler
    yield
    k = _kernel._K
    if k is not None:
        _kernel.drop_kernel(k)
        pytest.fail(f"the test left a scheduler behind with tasks {sorted(t.name for t in k._tasks)}")
    gc.collect()
    leaked_threads = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    assert not leaked_threads, f"leaked threads: {leaked_threads}"
    leaked_fds = _open_fds() - fds
    # /proc listing itself opens one fd transiently; anything else is a leak.
    leaked = {fd for fd in leaked_fds if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, f"leaked file descriptors: {sorted(leaked)}"
    if _kernel.error_handler is not handler:
        _kernel.error_handler = handler
        pytest.fail("the test changed the default error handler without restoring it")


@pytest.fixture
def errors():
    """Collect what reaches the default error handler as (exception, task name) pairs."""
    seen: list[tuple[BaseException, str | None]] = []
    coserve.set_error_handler(
        lambda exc, task, sock: seen.append((exc, task.name if task else None)), default=True
    )
    yield seen
    coserve.set_error_handler(None, default=True)
