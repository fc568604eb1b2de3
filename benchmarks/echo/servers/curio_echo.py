"""curio: tcp_server with recv/sendall."""

import socket
import sys

import curio


async def echo(client, addr) -> None:
    while True:
        data = await client.recv(65536)
        if not data:
            break
        await client.sendall(data)


async def main() -> None:
    sock = curio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    sock.listen(4096)
    print("ready", sock.getsockname()[1], flush=True)
    async with sock:
        while True:
            client, addr = await sock.accept()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await curio.spawn(echo, client, addr, daemon=True)


curio.run(main)
