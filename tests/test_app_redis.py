"""The RESP example application driven by redis-benchmark (Debian's redis-tools), pipelined (-P 16).

redis-benchmark is installed by scripts/install-test-peers; the application runs
in a child process (`python examples/resp_server.py`), as it would in production.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def resp_server():
    subprocess.run([str(ROOT / "scripts" / "install-test-peers")], check=False)
    if shutil.which("redis-benchmark") is None:
        pytest.skip("redis-benchmark is not installed and scripts/install-test-peers could not install it")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    code = (
        "import sys; sys.path.insert(0, 'examples'); from resp_server import make_app; "
        f"make_app(bind='127.0.0.1:{port}').start([])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 20
    while True:  # a child's port is the one sign it is ready
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the RESP server did not start: {proc.communicate()[1].decode()}")
        time.sleep(0.02)
    yield port
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    proc.stderr.close()
    assert proc.returncode in (0, -15, 143), err.decode()


def test_redis_benchmark_pipelined(resp_server):
    r = subprocess.run(
        ["redis-benchmark", "-p", str(resp_server), "-t", "ping,set,get,incr,lpush,lpop,mset",
         "-n", "5000", "-c", "20", "-P", "16", "-q", "--csv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = [line.split(",")[0].strip('"') for line in r.stdout.splitlines()[1:]]
    assert {"PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "LPOP"} <= set(rows), r.stdout
    for line in r.stdout.splitlines()[1:]:
        rps = float(line.split(",")[1].strip('"'))
        assert rps > 0, line


def test_the_answers_are_right(resp_server):
    with socket.create_connection(("127.0.0.1", resp_server)) as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"
                  b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*1\r\n$4\r\nNOPE\r\n")  # fmt: skip
        want = b"+OK\r\n$5\r\nvalue\r\n:1\r\n-ERR unknown command 'NOPE'\r\n"
        got = b""
        while len(got) < len(want):
            got += s.recv(4096)
        assert got == want
