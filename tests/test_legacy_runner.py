"""An unchanged asyncore program runs in one command, as `python prog.py` would, on every Python."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

LEGACY = textwrap.dedent(
    """\
    import asyncore, asynchat, socket, sys

    class Echo(asynchat.async_chat):
        def __init__(self, sock):
            super().__init__(sock)
            self.set_terminator(b"\\n")
            self.data = []
        def collect_incoming_data(self, data):
            self.data.append(data)
        def found_terminator(self):
            self.push(b"".join(self.data) + b"\\n")
            self.data = []

    class Server(asyncore.dispatcher):
        def __init__(self):
            super().__init__()
            self.create_socket()
            self.bind(("127.0.0.1", 0))
            self.listen(5)
        def handle_accepted(self, sock, addr):
            Echo(sock)

    class Client(asynchat.async_chat):
        def __init__(self, address):
            super().__init__()
            self.create_socket()
            self.connect(address)
            self.set_terminator(b"\\n")
            self.push(b"hello\\n")
            self.got = []
        def collect_incoming_data(self, data):
            self.got.append(data)
        def found_terminator(self):
            print(__name__, sys.argv[1:], asyncore.__name__, b"".join(self.got).decode(), flush=True)
            self.close()
            server.close()
            asyncore.close_all()

    server = Server()
    Client(server.socket.getsockname())
    asyncore.loop(timeout=1)
    sys.exit(int(sys.argv[2]))
    """
)


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "legacy.py"
    path.write_text(LEGACY)
    return path


def _run(*command):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("how", ["module", "command"])
def test_an_unchanged_asyncore_program_runs_with_its_argv_main_and_exit_status(program, how):
    runner = [sys.executable, "-m", "coserve.compat"] if how == "module" else ["coserve", "--asyncore"]
    done = _run(*runner, str(program), "first", "3")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "__main__ ['first', '3'] coserve.asyncore hello\n"
    assert "Warning" not in done.stderr  # no DeprecationWarning from the standard library's module


def test_an_uncaught_error_prints_its_traceback_and_exits_1(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncore\nraise ValueError('boom')\n")
    done = _run(sys.executable, "-m", "coserve.compat", str(bad))
    assert done.returncode == 1
    assert "ValueError: boom" in done.stderr and "Traceback" in done.stderr


def test_usage_errors():
    assert _run(sys.executable, "-m", "coserve.compat").returncode == 2
    assert "can't open file" in _run(sys.executable, "-m", "coserve.compat", "/nonexistent.py").stderr
    assert _run("coserve", "--asyncore", "-e", "pass").returncode == 2
