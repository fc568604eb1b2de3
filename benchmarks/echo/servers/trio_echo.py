"""trio: serve_tcp with a SocketStream handler."""

import sys
from functools import partial

import trio


async def echo(stream: trio.SocketStream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def main() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, int(sys.argv[1]), host="127.0.0.1"))
        print("ready", listeners[0].socket.getsockname()[1], flush=True)


trio.run(main)
