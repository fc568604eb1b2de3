"""coserve.asyncore under the conditions an adversarial review found (issue 7, items 7, 8, 10, 12, 13).

Import order, a foreign loop driving the dispatchers (the program's own
``poll2()`` loop, or a framework's), several threads each running a loop, and
maps changed behind the library's back: each behaves as on the standard
library, or better where the standard library spins.
"""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref

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


# --- item 10: nothing keeps a closed channel alive ----------------------------------------------------


class Chat(asynchat.async_chat):
    def __init__(self, sock, map=None):
        super().__init__(sock, map=map)
        self.set_terminator(b"\n")
        self.lines = []

    def collect_incoming_data(self, data):
        self.lines.append(data)

    def found_terminator(self):
        self.push(b"".join(self.lines).upper() + b"\n")
        self.lines = []
        self.close_when_done()


class OwnDelChannel(Chat):
    """pyftpdlib's way: del_channel overridden, the library's never called."""

    def del_channel(self, map=None):
        if self._fileno is not None:
            self._map.pop(self._fileno, None)
            self._fileno = None


class PushAfterClose(Chat):
    """push() on a channel the peer already closed: it closes, then push() carries on."""

    def found_terminator(self):
        self.close()
        self.push(b"too late\n")


@pytest.mark.parametrize("handler", [Chat, OwnDelChannel, PushAfterClose])
def test_a_foreign_loop_leaves_no_closed_channel_referenced(handler):
    refs = []

    class Server(Listener):
        def handle_accepted(self, sock, addr):
            refs.append(weakref.ref(handler(sock)))

    server = Server()
    for i in range(20):
        c = socket.create_connection(("127.0.0.1", server.port))
        c.sendall(b"session %d\n" % i)
        c.settimeout(5)
        reply = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the program's own loop, until the session is over
            asyncore.poll2(0.05)
            c.setblocking(False)
            try:
                chunk = c.recv(100)
            except BlockingIOError:
                continue
            reply += chunk
            if not chunk:
                break
        c.close()
        if handler is not PushAfterClose:
            assert reply == b"SESSION %d\n" % i
    assert len(refs) == 20
    assert list(asyncore.socket_map.values()) == [server]
    alive = [r() for r in refs if r() is not None]  # no gc.collect(): references, not cycles
    assert alive == []
    server.close()


def test_coserves_own_loop_drops_channels_closed_without_the_librarys_del_channel():
    refs = []

    class Server(Listener):
        def handle_accepted(self, sock, addr):
            refs.append(weakref.ref(OwnDelChannel(sock)))

    server = Server()
    peers = []
    for i in range(5):
        c = socket.create_connection(("127.0.0.1", server.port))
        c.sendall(b"line %d\n" % i)
        peers.append(c)
    deadline = time.monotonic() + 10
    while (len(refs) < 5 or len(asyncore.socket_map) > 1) and time.monotonic() < deadline:
        asyncore.loop(timeout=0.05, count=1)  # the sessions end; the server stays
    asyncore.loop(timeout=0.01, count=2)
    gc.collect()
    assert [r() for r in refs] == [None] * 5  # the loop, still running, keeps none of them
    for c in peers:
        c.close()
    server.close()


# --- item 12: a loop in each of several threads -------------------------------------------------


class Client(asyncore.dispatcher):
    def __init__(self, port, message, map, on_connect=None):
        super().__init__(map=map)
        self.create_socket()
        self.connect(("127.0.0.1", port))
        self.message = message
        self.reply = b""
        self.on_connect = on_connect

    def handle_connect(self):
        self.send(self.message)
        if self.on_connect is not None:
            self.on_connect.set()

    def writable(self):
        return not self.connected

    def handle_write(self):
        pass

    def handle_read(self):
        self.reply += self.recv(100)
        if len(self.reply) >= len(self.message):
            self.close()


def test_two_threads_each_run_a_loop_over_their_own_map():
    # Each thread's client talks to the other thread's server: both loops must run at once.
    maps = [{}, {}]
    servers = [Listener(map=m, once=True) for m in maps]
    clients: list[Client] = []
    failures = []
    first_in_loop = threading.Event()

    def serve(i):
        try:
            if i == 1:
                assert first_in_loop.wait(10)  # so that the two loops surely run at the same time
            message = b"hello from thread %d" % i
            clients.append(Client(servers[1 - i].port, message, maps[i], first_in_loop if i == 0 else None))
            asyncore.loop(timeout=0.05, map=maps[i], count=400)  # bounded: 20 s at most
        except BaseException as e:
            failures.append(e)
        finally:
            left = dict(maps[i])
            asyncore.close_all(maps[i])
            if left:
                failures.append(f"thread {i} left {left}")

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert sorted(c.reply for c in clients) == [b"hello from thread 0", b"hello from thread 1"]
    assert _kernel.current_kernel() is None  # the threads made kernels of their own, now closed


def test_a_thread_loop_and_coserve_run_in_the_main_thread_side_by_side():
    m = {}
    server = Listener(map=m, once=True)
    started = threading.Event()
    failures = []

    def legacy():
        try:
            started.set()
            asyncore.loop(timeout=0.05, map=m, count=400)
        except BaseException as e:
            failures.append(e)
        finally:
            asyncore.close_all(m)

    t = threading.Thread(target=legacy)

    async def main():
        t.start()
        s = await coserve.connect("127.0.0.1", server.port)
        await s.send(b"from a task")
        reply = await s.receive(11)
        s.close()
        return reply

    assert coserve.run(main) == b"from a task"
    t.join(30)
    assert failures == [] and started.is_set()


# --- item 13: maps changed behind the library's back ------------------------------------------------


def passes_during(seconds, map=None):
    """How many passes asyncore.loop() makes in *seconds* (a busy loop makes tens of thousands)."""
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        asyncore.loop(timeout=0.05, count=1, map=map)
        n += 1
    return n


class Reader(asyncore.dispatcher):
    def __init__(self, sock, events):
        super().__init__(sock)
        self.events = events

    def writable(self):
        return False

    def handle_read(self):
        self.events.append(("read", self.recv(100)))

    def handle_close(self):
        self.events.append("close")
        self.close()


class Control(asyncore.dispatcher):
    """A channel whose handler runs the change under test, from inside the loop."""

    def __init__(self, sock, action):
        super().__init__(sock)
        self.action = action

    def writable(self):
        return False

    def handle_read(self):
        self.recv(100)
        self.action()


@pytest.fixture
def control():
    a, b = socket.socketpair()
    made = []

    def make(action):
        made.append(Control(a, action))
        return b

    yield make
    b.close()


def test_a_channel_put_into_the_map_directly_is_served(control):
    events = []
    a, b = socket.socketpair()

    class OldStyle(asyncore.dispatcher):  # never calls dispatcher.__init__: puts itself in the map
        def __init__(self, sock):
            self.socket = sock
            self._fileno = sock.fileno()
            self.connected = True

        def writable(self):
            return False

        def handle_read(self):
            events.append(("read", self.recv(100)))

    def put_directly():
        asyncore.socket_map[a.fileno()] = OldStyle(a)
        b.send(b"served")

    trigger = control(put_directly)
    asyncore.loop(timeout=0.05, count=2)
    trigger.send(b"go")
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        asyncore.loop(timeout=0.05, count=1)
    assert events == [("read", b"served")]
    del asyncore.socket_map[a.fileno()]  # it has no map of its own for close() to leave
    a.close()
    b.close()


def test_a_channel_deleted_from_the_map_directly_is_dropped_without_spinning(control):
    events = []
    a, b = socket.socketpair()
    reader = Reader(a, events)

    def delete_directly():
        del asyncore.socket_map[a.fileno()]
        b.send(b"nobody listens")  # the socket stays open and readable

    trigger = control(delete_directly)
    asyncore.loop(timeout=0.05, count=2)
    trigger.send(b"go")
    assert passes_during(0.3) < 100  # about 6 with a 0.05 s timeout; a spinning loop makes 100,000s
    assert events == [] and a.fileno() not in asyncore.socket_map
    reader.close()
    b.close()


@pytest.mark.parametrize("use_poll", [False, True])
def test_a_socket_closed_behind_the_maps_back_gets_handle_close(control, use_poll):
    # The standard library's poll() loop reports POLLNVAL (handle_close()); its select() loop fails
    # with EBADF. Both styles call handle_close() here.
    events = []
    a, b = socket.socketpair()
    Reader(a, events)
    trigger = control(a.close)  # the socket, not the channel
    asyncore.loop(timeout=0.05, count=2, use_poll=use_poll)
    trigger.send(b"go")
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        asyncore.loop(timeout=0.05, count=1, use_poll=use_poll)
    assert events == ["close"]
    assert len(asyncore.socket_map) == 1  # only the control channel is left
    b.close()


def test_a_channel_that_stays_in_the_map_after_its_socket_closed_is_removed(control, capsys):
    # The standard library's poll() loop would call this handle_close() on every pass, forever.
    events = []
    a, b = socket.socketpair()

    class Stubborn(Reader):
        def handle_close(self):
            events.append("close")  # does not close the channel

    stubborn = Stubborn(a, events)
    trigger = control(a.close)
    asyncore.loop(timeout=0.05, count=2)
    trigger.send(b"go")
    assert passes_during(0.3) < 100
    assert events == ["close"]
    assert stubborn not in asyncore.socket_map.values()
    assert "closed behind the map's back" in capsys.readouterr().out
    b.close()


def test_a_socket_closed_before_loop_gets_handle_close():
    events = []
    a, b = socket.socketpair()
    Reader(a, events)
    a.close()
    asyncore.loop(timeout=0.05, count=5)
    assert events == ["close"] and asyncore.socket_map == {}
    b.close()
