"""asyncore echo: dispatcher_with_send, on the standard library's module or (--coserve) on coserve's.

The handler code is the same for both; only the import differs.
"""

import socket
import sys
import warnings

if "--coserve" in sys.argv:
    from coserve import asyncore
else:  # the standard library's (Python <= 3.11)
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore


class EchoHandler(asyncore.dispatcher_with_send):
    def handle_read(self) -> None:
        data = self.recv(65536)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):
    def __init__(self, port: int) -> None:
        super().__init__()
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", port))
        self.listen(4096)

    def handle_accepted(self, sock: socket.socket, addr: object) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        EchoHandler(sock)


server = EchoServer(int(sys.argv[1]))
print("ready", server.socket.getsockname()[1], flush=True)
asyncore.loop(timeout=1.0, use_poll=True)  # the stdlib's select() cannot take the 5000-connection run
