"""coserve: a handler that reads like blocking code (receive_partial, send)."""

import sys

import coserve


async def echo(sock: coserve.Socket) -> None:
    while True:
        data = await sock.receive_partial()
        if not data:
            return
        await sock.send(data)


server = coserve.serve_tcp(echo, "127.0.0.1", int(sys.argv[1]), backlog=4096)
print("ready", server.address[1], flush=True)
coserve.run()
