"""Blocking sockets, one thread per connection (socketserver.ThreadingTCPServer)."""

import socket
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            sock.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096


server = Server(("127.0.0.1", int(sys.argv[1])), Echo)
print("ready", server.server_address[1], flush=True)
server.serve_forever()
