"""coserve.asyncore under the conditions an adversarial review found (issue 7).

Import order, a foreign loop driving the dispatchers (the program's own
``poll2()`` loop, or a framework's), several threads each running a loop, and
maps changed behind the library's back: each behaves as on the standard
library, or better where the standard library spins.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

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
