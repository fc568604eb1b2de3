"""An echo server in Copas's style: the handler reads like blocking code.

Run it with ``python examples/echo_server.py``: it starts the server, lets
three clients talk to it at once, and ends when they are done.
"""

import coserve


async def echo_handler(sock: coserve.Socket) -> None:
    while True:
        line = await sock.receive()  # one line, without its end of line
        if line == b"quit":
            break
        await sock.send(line + b"\n")


async def client(n: int, host: str, port: int) -> None:
    sock = await coserve.connect(host, port)
    for word in (b"hello", b"from", b"client %d" % n):
        await sock.send(word + b"\n")
        print((await sock.receive()).decode())
    await sock.send(b"quit\n")
    sock.close()


async def main() -> None:
    server = coserve.serve_tcp(echo_handler, "127.0.0.1", 0, timeout=10)
    async with coserve.TaskGroup() as clients:
        for n in range(3):
            clients.spawn(client, n, *server.address)
    server.close()
    await server.wait_closed()
    print(f"served {server.accepted} connections")


coserve.run(main)
