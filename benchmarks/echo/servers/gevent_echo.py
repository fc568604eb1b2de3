"""gevent: StreamServer with a blocking-style handler on green threads."""

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402

from gevent.server import StreamServer  # noqa: E402


def echo(sock: socket.socket, addr: object) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        data = sock.recv(65536)
        if not data:
            break
        sock.sendall(data)


server = StreamServer(("127.0.0.1", int(sys.argv[1])), echo, backlog=4096)
server.init_socket()
print("ready", server.socket.getsockname()[1], flush=True)
server.serve_forever()
