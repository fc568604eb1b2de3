"""coserve.asyncore and coserve.asynchat: the scaling claims, buffers, and tasks in the same loop.

Conformance with the standard library is checked by CPython's own test suites
(test_asyncore_conformance.py); these tests check what coserve adds.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import subprocess
import sys
import textwrap

import pytest

import coserve
from coserve import _kernel, asynchat, asyncore


@pytest.fixture(autouse=True)
def clean_map():
    yield
    asyncore.close_all(ignore_all=True)
    k = _kernel.current_kernel()
    if k is not None and not k._tasks:
        _kernel.drop_kernel(k)


class Echo(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(65536)
        if data:
            self.send(data)


class Listener(asyncore.dispatcher):
    def __init__(self, handler=Echo):
        super().__init__()
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(64)
        self.handler = handler
        self.accepted = 0

    def handle_accepted(self, sock, addr):
        self.accepted += 1
        self.handler(sock)


def pair():
    a, b = socket.socketpair()
    return a, b


# --- idle channels cost nothing ------------------------------------------------------------


def test_idle_channels_cost_no_calls_while_one_is_busy(monkeypatch):
    idle_peers = []
    for _ in range(200):  # idle connections using the library's own readable/writable
        a, b = pair()
        Echo(a)
        idle_peers.append(b)
    busy_peer, busy = pair()
    Echo(busy)
    asyncore.loop(timeout=0.01, count=2)  # registered and settled

    calls = []
    real = asyncore._poll_flags
    monkeypatch.setattr(asyncore, "_poll_flags", lambda obj: calls.append(obj) or real(obj))
    for i in range(20):
        busy_peer.send(b"ping %d" % i)
        asyncore.loop(timeout=1, count=1)
        assert busy_peer.recv(100) == b"ping %d" % i
    # Interest was recomputed for the busy channel only, about once per event.
    assert {id(c) for c in calls} <= {id(asyncore.socket_map[busy.fileno()])}
    assert len(calls) <= 40
    for s in [*idle_peers, busy_peer]:
        s.close()


def test_overridden_readable_is_asked_every_pass():
    asked = []

    class Picky(asyncore.dispatcher):
        def readable(self):
            asked.append(1)
            return False

        def writable(self):
            return False

    a, b = pair()
    Picky(a)
    asyncore.loop(timeout=0.001, count=5)
    assert len(asked) >= 5
    b.close()


def test_readable_false_really_stops_reads():
    got = []

    class Gate(asyncore.dispatcher):
        open = False

        def readable(self):
            return self.open

        def writable(self):
            return False

        def handle_read(self):
            got.append(self.recv(100))

    a, b = pair()
    gate = Gate(a)
    b.send(b"waiting")
    asyncore.loop(timeout=0.01, count=3)
    assert got == []
    gate.open = True
    asyncore.loop(timeout=0.5, count=1)
    assert got == [b"waiting"]
    b.close()


# --- descriptors above 1023 ---------------------------------------------------------------


def test_descriptors_above_1023_work():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1600:
        pytest.skip("the hard limit on open files is below 1600")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1600), hard))
    try:
        a, b = pair()
        high = os.dup2(a.fileno(), 1500)
        a.close()
        sock = socket.socket(fileno=high)
        got = []

        class Reader(asyncore.dispatcher):
            def writable(self):
                return False

            def handle_read(self):
                got.append(self.recv(100))

        Reader(sock)
        assert sock.fileno() == 1500
        b.send(b"high fd")
        asyncore.loop(timeout=1, count=1)
        assert got == [b"high fd"]
        b.close()
        asyncore.close_all()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- running out of descriptors ---------------------------------------------------------------

EMFILE_SERVER = textwrap.dedent(
    """
    import resource
    from coserve import asyncore

    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    class Echo(asyncore.dispatcher_with_send):
        def handle_read(self):
            data = self.recv(100)
            if data:
                self.send(data)

    class Listener(asyncore.dispatcher):
        ignore_log_types = frozenset()  # show the warning

        def handle_accepted(self, sock, addr):
            Echo(sock)

    lst = Listener()
    lst.create_socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(256)
    print(lst.socket.getsockname()[1], flush=True)
    asyncore.loop(timeout=0.05)
    """
)


def test_running_out_of_descriptors_does_not_kill_the_listener(tmp_path):
    # The standard library's listener gets EMFILE from accept(), reaches handle_error and closes
    # for good; coserve's backs off and accepts again once descriptors are free.
    script = tmp_path / "server.py"
    script.write_text(EMFILE_SERVER)
    proc = subprocess.Popen(
        [sys.executable, "-u", str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    flood = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(60):  # more connections than the server has descriptors for
            flood.append(socket.create_connection(("127.0.0.1", port)))
        last = flood[-1]
        last.settimeout(10)
        last.send(b"waiting in the backlog")
        # Wait for the server to say it ran out (an event, not a sleep), then free descriptors:
        # the connections waiting in the backlog must be accepted then.
        assert select.select([proc.stdout], [], [], 10)[0], "the server never ran out of descriptors"
        assert "accept: out of file descriptors" in proc.stdout.readline()
        for c in flood[:40]:
            c.close()
        assert last.recv(100) == b"waiting in the backlog"
    finally:
        for c in flood:
            c.close()
        proc.kill()
        proc.communicate()


# --- dispatchers and tasks in one loop --------------------------------------------------------------


def test_tasks_run_inside_asyncore_loop():
    listener = Listener()
    port = listener.socket.getsockname()[1]
    replies = []

    async def client():
        s = await coserve.connect("127.0.0.1", port)
        await s.send(b"from a task")
        replies.append(await s.receive(11))
        s.close()
        listener.close()  # the map empties and loop() returns

    coserve.spawn(client)
    asyncore.loop(timeout=1)
    assert replies == [b"from a task"]
    assert _kernel.current_kernel() is None or not _kernel.current_kernel()._tasks


def test_dispatchers_run_inside_coserve_run():
    async def main():
        listener = Listener()
        port = listener.socket.getsockname()[1]
        s = await coserve.connect("127.0.0.1", port)
        await s.send(b"legacy")
        reply = await s.receive(6)
        s.close()
        listener.close()
        return reply, listener.accepted

    assert coserve.run(main) == (b"legacy", 1)


def test_a_dispatcher_created_before_run_keeps_run_going_until_closed():
    listener = Listener()
    port = listener.socket.getsockname()[1]

    async def client():
        s = await coserve.connect("127.0.0.1", port)
        await s.send(b"x")
        await s.receive(1)
        s.close()
        asyncore.close_all()

    coserve.spawn(client)
    coserve.run()  # returns once the map is empty
    assert asyncore.socket_map == {}


def test_cancel_all_closes_dispatchers_so_run_returns():
    listener = Listener()

    async def main():
        await coserve.sleep(0)
        coserve.cancel_all()

    coserve.spawn(main)
    coserve.run()
    assert asyncore.socket_map == {} and listener.socket.fileno() == -1


def test_loop_inside_a_task_is_refused():
    async def main():
        with pytest.raises(RuntimeError, match="scheduler runs"):
            asyncore.loop(count=1)

    coserve.run(main)


# --- dispatcher_with_send and async_chat buffers ---------------------------------------------------------


def test_dispatcher_with_send_keeps_order_and_out_buffer_reads_as_bytes():
    a, b = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    class Sender(asyncore.dispatcher_with_send):
        def readable(self):
            return False

    d = Sender(a)
    chunks = [bytes([i]) * 50_000 for i in range(1, 9)]
    for c in chunks:
        d.send(c)
    assert d.out_buffer  # not everything fit at once
    assert isinstance(d.out_buffer, bytes)
    received = bytearray()
    b.setblocking(False)
    while len(received) < 400_000:
        asyncore.loop(timeout=0.1, count=1)
        try:
            received += b.recv(1 << 20)
        except BlockingIOError:
            pass
    assert bytes(received) == b"".join(chunks) and d.out_buffer == b""
    d.out_buffer = b"set directly"  # the standard library's attribute still works
    asyncore.loop(timeout=0.1, count=2)
    assert b.recv(100) == b"set directly"
    b.close()


class Lines(asynchat.async_chat):
    def __init__(self, sock):
        super().__init__(sock)
        self.set_terminator(b"\r\n")
        self.got = []

    def collect_incoming_data(self, data):
        self._collect_incoming_data(data)

    def found_terminator(self):
        self.got.append(self._get_data())


def test_many_lines_in_one_read_are_delivered_in_order():
    a, b = pair()
    chat = Lines(a)
    lines = [b"line %d" % i for i in range(5000)]
    b.sendall(b"\r\n".join(lines) + b"\r\n")
    while len(chat.got) < len(lines):
        asyncore.loop(timeout=0.5, count=1)
    assert chat.got == lines and chat.ac_in_buffer == b""
    b.close()


def test_terminator_split_across_reads_and_changed_midway():
    a, b = pair()

    class Protocol(asynchat.async_chat):
        def __init__(self, sock):
            super().__init__(sock)
            self.set_terminator(b"\r\n")
            self.events = []

        def collect_incoming_data(self, data):
            self._collect_incoming_data(data)

        def found_terminator(self):
            data = self._get_data()
            self.events.append((self.get_terminator(), data))
            if data.startswith(b"SIZE "):
                self.set_terminator(int(data[5:]))
            elif isinstance(self.get_terminator(), int):
                self.set_terminator(b"\r\n")

    chat = Protocol(a)
    for piece in (b"HELLO\r", b"\nSIZE 5\r\nab", b"cdeBYE\r\n"):
        b.send(piece)
        asyncore.loop(timeout=0.5, count=1)
    assert chat.events == [(b"\r\n", b"HELLO"), (b"\r\n", b"SIZE 5"), (0, b"abcde"), (b"\r\n", b"BYE")]
    b.close()


def test_handlers_that_read_or_replace_ac_in_buffer_still_work():
    a, b = pair()

    class Peek(Lines):
        def found_terminator(self):
            super().found_terminator()
            self.got.append(("left", self.ac_in_buffer))
            if self.got[0] == b"DROP":
                self.ac_in_buffer = b""

    chat = Peek(a)
    b.send(b"one\r\ntwo\r\n")
    asyncore.loop(timeout=0.5, count=1)
    assert chat.got == [b"one", ("left", b"two\r\n"), b"two", ("left", b"")]
    chat2_a, chat2_b = pair()
    chat2 = Peek(chat2_a)
    chat2_b.send(b"DROP\r\nignored\r\n")
    asyncore.loop(timeout=0.5, count=1)
    assert chat2.got == [b"DROP", ("left", b"ignored\r\n")]
    b.close()
    chat2_b.close()


def test_push_producers_and_close_when_done():
    a, b = pair()

    class Talker(asynchat.async_chat):
        def collect_incoming_data(self, data):
            pass

        def found_terminator(self):
            pass

    t = Talker(a)
    t.set_terminator(None)
    t.push(b"hello ")
    t.push_with_producer(asynchat.simple_producer(b"from a producer " * 100, buffer_size=7))
    t.close_when_done()
    b.settimeout(5)
    data = b""
    while True:
        asyncore.loop(timeout=0.1, count=1)
        chunk = b.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data == b"hello " + b"from a producer " * 100
    assert a.fileno() == -1  # closed once everything was sent
    b.close()


def test_find_prefix_at_end():
    assert asynchat.find_prefix_at_end(b"qwertyx", b"xyz") == 1
    assert asynchat.find_prefix_at_end(b"qwerty", b"xyz") == 0
    assert asynchat.find_prefix_at_end(b"abc\r", b"\r\n") == 1


def test_compat_install_swaps_the_imports():
    code = (
        "import coserve.compat; coserve.compat.install()\n"
        "import asyncore, asynchat, coserve.asyncore, coserve.asynchat\n"
        "assert asyncore is coserve.asyncore and asynchat is coserve.asynchat\n"
        "print('swapped')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "swapped\n"), r.stderr
