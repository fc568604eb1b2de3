"""``coserve serve MODULE:APP``: an application run from the command line, stopped by SIGTERM."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _coserve(*args: str, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen(
        [sys.executable, "-m", "coserve", *args],
        cwd=ROOT / "examples",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def test_serve_module_app_with_settings_then_sigterm(tmp_path):
    port = _free_port()
    pidfile = tmp_path / "app.pid"
    proc = _coserve(
        "serve",
        "echo_protocol:app",
        "--bind",
        f"127.0.0.1:{port}",
        "--keep-alive",
        "7",
        "--pid",
        str(pidfile),
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # the child's port is the one sign it is ready
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
        with conn:
            conn.sendall(b"hello\nquit\n")
            got = b""
            while not got.endswith(b"bye\n"):
                got += conn.recv(100)
        assert got == b"hello\nbye\n"
        assert pidfile.read_text() == f"{proc.pid}\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 143, err
        assert b"Traceback" not in err
        assert not pidfile.exists()  # removed at exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_refuses_what_is_not_an_app_and_bad_settings():
    proc = _coserve("serve", "echo_protocol:LineProtocol")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and b"not a coserve.app.SocketServer" in err
    proc = _coserve("serve", "no_such_module:app")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and b"cannot load" in err
    proc = _coserve("serve", "echo_protocol:app", "--bind", "127.0.0.1:99999")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and b"bind" in err and b"99999" in err
