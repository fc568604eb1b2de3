"""coserve.asyncore under the conditions an adversarial review found (issue 7).

Import order, a foreign loop driving the dispatchers (the program's own
``poll2()`` loop, or a framework's), several threads each running a loop, and
maps changed behind the library's back: each behaves as on the standard
library, or better where the standard library spins.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import pytest

import coserve
from coserve import _kernel, asyncore


@pytest.fixture(autouse=True)
def clean_map():
    yield
    asyncore.close_all(ignore_all=True)
    k = _kernel.current_kernel()
    if k is not None and not k._tasks:
        _kernel.drop_kernel(k)


def run_script(code: str, timeout: float = 60) -> str:
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


class Echo(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(65536)
        if data:
            self.send(data)


class Listener(asyncore.dispatcher):
    def __init__(self, map=None, handler=Echo, once=False):
        super().__init__(map=map)
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(64)
        self.port = self.socket.getsockname()[1]
        self.handler = handler
        self.once = once
        self.accepted = 0

    def handle_accepted(self, sock, addr):
        self.accepted += 1
        self.handler(sock, map=self._map)
        if self.once:
            self.close()


# --- item 7: import order -----------------------------------------------------------------------

IMPORTED_LATE = """
    import coserve

    port = None
    replies = []

    async def client():
        async with coserve.timeout_after(10):
            s = await coserve.connect("127.0.0.1", port)
            await s.send(b"late import")
            replies.append(await s.receive(11))
            s.close()
        listener.close()

    coserve.spawn(client)  # a kernel exists now, before coserve.asyncore is imported
    from coserve import _kernel, asyncore
    assert _kernel.current_kernel() is not None

    class Echo(asyncore.dispatcher_with_send):
        def handle_read(self):
            self.send(self.recv(100))

    class Listener(asyncore.dispatcher):
        def handle_accepted(self, sock, addr):
            Echo(sock)

    listener = Listener()
    listener.create_socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.socket.getsockname()[1]
    {serve}
    print(replies)
"""


@pytest.mark.parametrize("serve", ["asyncore.loop(timeout=1)", "coserve.run()"])
def test_importing_asyncore_after_a_kernel_exists_still_serves_dispatchers(serve):
    assert run_script(IMPORTED_LATE.replace("{serve}", serve)) == "[b'late import']\n"


# --- item 8: out of descriptors under a foreign loop ------------------------------------------------

FOREIGN_EMFILE = """
    import resource, sys, time
    from coserve import asyncore

    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
    attempts = []

    class Echo(asyncore.dispatcher_with_send):
        def handle_read(self):
            data = self.recv(100)
            if data:
                self.send(data)

    class Listener(asyncore.dispatcher):
        out_of_fds = False

        def handle_accept(self):
            attempts.append(self.out_of_fds)  # counted: every pass that reached accept()
            super().handle_accept()

        def log_info(self, message, type="info"):  # the probe: when descriptors first ran out
            if "out of file descriptors" in message:
                self.out_of_fds = True

        def handle_accepted(self, sock, addr):
            Echo(sock)

    lst = Listener()
    lst.create_socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(256)
    print(lst.socket.getsockname()[1], flush=True)
    deadline = time.monotonic() + 30
    while not lst.out_of_fds and time.monotonic() < deadline:  # the program's own loop
        asyncore.poll2(0.01)
    window = time.monotonic() + 0.5
    passes = 0
    while time.monotonic() < window:
        asyncore.poll2(0.01)
        passes += 1
    print(sum(attempts), passes, flush=True)  # accept() calls while out of descriptors; passes
    sys.stdin.readline()  # the test frees descriptors now
    while time.monotonic() < deadline:
        asyncore.poll2(0.01)
"""


def test_out_of_descriptors_under_a_foreign_poll2_loop_pauses_accepting(tmp_path):
    # The pause lives in the dispatcher's accept path, so the program's own poll2() loop does not
    # retry accept() on every pass (it used to: 160k passes in 2 s, every one calling accept()).
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(FOREIGN_EMFILE))
    proc = subprocess.Popen(
        [sys.executable, "-u", str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    flood = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(60):  # more connections than the server has descriptors for
            flood.append(socket.create_connection(("127.0.0.1", port)))
        last = flood[-1]
        last.settimeout(10)
        last.send(b"waiting in the backlog")
        out_of_fds_attempts, passes = map(int, proc.stdout.readline().split())
        # 0.5 s of back-off (50, 100, 200 ms...) leaves room for a handful of attempts, not one a pass.
        assert passes >= 5
        assert out_of_fds_attempts <= 6, (out_of_fds_attempts, passes)
        for c in flood[:40]:
            c.close()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert last.recv(100) == b"waiting in the backlog"  # accepting resumed
    finally:
        for c in flood:
            c.close()
        proc.kill()
        proc.communicate()


def test_accept_paused_after_running_out_is_not_retried_by_any_loop(monkeypatch):
    # In-process: the listener's own readable()/handle_read_event()/accept() honour the pause.
    lst = Listener()
    calls = []

    class FakeSocket:
        def __init__(self, real):
            self.real = real

        def accept(self):
            calls.append(1)
            raise OSError(24, "Too many open files")

        def __getattr__(self, name):
            return getattr(self.real, name)

    real = lst.socket
    lst.socket = FakeSocket(real)
    assert lst.accept() is None and calls == [1]
    assert not lst.readable()
    lst.handle_read_event()
    assert lst.accept() is None
    assert calls == [1]  # paused: no accept() system call
    lst._accept_paused_until = time.monotonic() - 1  # the pause ran out
    assert lst.readable()
    lst.handle_read_event()
    assert calls == [1, 1] and lst._accept_backoff == pytest.approx(0.1)  # the back-off doubles
    lst.socket = real


def test_a_paused_listener_is_retried_when_its_pause_ends_under_coserve_run():
    # Nothing else wakes the poll (no timer, no timeout): the pause's end must, by itself.
    lst = Listener()
    real = lst.socket
    out_of_fds = []

    class OnceOutOfFds:
        def accept(self):
            if not out_of_fds:
                out_of_fds.append(time.monotonic())
                raise OSError(24, "Too many open files")
            return real.accept()

        def __getattr__(self, name):
            return getattr(real, name)

    lst.socket = OnceOutOfFds()

    async def main():
        try:
            async with coserve.timeout_after(5):  # (the pause is 50 ms)
                s = await coserve.connect("127.0.0.1", lst.port)
                await s.send(b"after the pause")
                reply = await s.receive(15)
                s.close()
        finally:
            lst.socket = real
            asyncore.close_all()
        return reply

    assert coserve.run(main) == b"after the pause"
    assert len(out_of_fds) == 1 and lst.accepted == 1
