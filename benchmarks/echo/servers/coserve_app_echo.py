"""coserve.app: the same echo as a SocketServer protocol (what the application layer costs per message).

The codec passes whatever arrived as one message (the load generator checks the
bytes that come back, not how they were framed).
"""

import sys

from coserve.app import SocketServer


class Raw:
    def decode(self, data: bytes) -> tuple[bytes, bytes]:
        return data, b""

    def encode(self, data: bytes) -> bytes:
        return data


async def respond(data: bytes, conn: object) -> bytes:
    return data


app = SocketServer(
    protocol=Raw, respond=respond, bind=f"127.0.0.1:{sys.argv[1]}", backlog=4096, keep_alive=None
)
app.on("when_ready", lambda server: print("ready", server.listen_on[0].rsplit(":", 1)[1], flush=True))
app.start([])
