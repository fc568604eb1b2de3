"""A real application on coserve.asyncore: pyftpdlib's FTP server under its own IOLoop (issue 7).

1,000 short sessions; no handler object may survive them and memory must stay
flat. Before the fix, coserve kept every channel pyftpdlib's loop had driven:
1,100 handler objects and 3.7 MB after these sessions (the standard library:
none, and about 50 KB of interpreter noise).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("pyftpdlib_sessions.py")


def test_pyftpdlib_serves_1000_sessions_and_keeps_no_handler():
    pytest.importorskip("pyftpdlib")
    r = subprocess.run([sys.executable, str(SCRIPT), "1000"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["asyncore"] == "coserve.asyncore" and result["sessions"] == 1000
    assert result["handlers_alive"] == 0, result
    # 900 sessions after the warm-up: a leak of a channel each would be about 3 KB a session.
    assert result["memory_growth"] < 256 * 1024, result
