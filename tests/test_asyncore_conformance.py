"""CPython's own test_asyncore and test_asynchat against coserve's modules (cpython_conformance.py)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

RUNNER = pathlib.Path(__file__).with_name("cpython_conformance.py")


def test_cpython_test_asyncore_and_test_asynchat_pass():
    r = subprocess.run([sys.executable, str(RUNNER)], capture_output=True, text=True, timeout=600)
    if r.returncode == 77:
        pytest.skip(r.stdout.strip())
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, f"{summary}\n{r.stderr[-4000:]}"
    assert summary.endswith("0 failed, 8 skipped") or " 0 failed" in summary, summary
    assert "Exception in thread" not in r.stderr, r.stderr[-4000:]
    passed = int(summary.split()[0])
    assert passed >= 120, summary  # the whole suite ran, not a fraction of it
