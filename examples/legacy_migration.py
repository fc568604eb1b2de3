"""Legacy asyncore code and coserve coroutines in one loop: migrate one piece at a time.

The server is unchanged asyncore code (here: a line-based ``async_chat``); the
clients are already coserve tasks, and a coserve timer reports progress. One
``asyncore.loop()`` runs them all (``coserve.run()`` would too).
"""

import coserve
from coserve import asynchat, asyncore


class Shout(asynchat.async_chat):
    """The legacy part: answers every line in upper case."""

    def __init__(self, sock):
        super().__init__(sock)
        self.set_terminator(b"\n")
        self.buffer = []

    def collect_incoming_data(self, data):
        self.buffer.append(data)

    def found_terminator(self):
        line = b"".join(self.buffer)
        self.buffer = []
        self.push(line.upper() + b"\n")


class ShoutServer(asyncore.dispatcher):
    def __init__(self):
        super().__init__()
        self.create_socket()
        self.set_reuse_addr()
        self.bind(("127.0.0.1", 0))
        self.listen(16)

    def handle_accepted(self, sock, addr):
        Shout(sock)


server = ShoutServer()
port = server.socket.getsockname()[1]
finished = []


async def client(name: str) -> None:
    """The new part: a coroutine that reads like blocking code."""
    sock = await coserve.connect("127.0.0.1", port)
    await sock.send(f"hello from {name}\n".encode())
    print((await sock.receive()).decode())
    sock.close()
    finished.append(name)
    if len(finished) == 3:
        server.close()  # the last client done: the map empties as the connections close


coserve.timer(lambda t, p: print("timer: coserve timers fire inside asyncore.loop() too"), 0)
for name in ("ada", "grace", "barbara"):
    coserve.spawn(client, name)

asyncore.loop(timeout=1)
print("loop ended")
