"""Short FTP sessions against pyftpdlib's server on coserve.asyncore, under pyftpdlib's own IOLoop.

    python tests/pyftpdlib_sessions.py [SESSIONS] [--stdlib]

pyftpdlib drives its dispatchers with an IOLoop of its own (epoll on Linux) and
overrides ``add_channel``/``del_channel``: coserve's loop never runs, which is
what made coserve keep every channel it had seen (issue 7, item 10). The server
runs in a thread; the sessions are ftplib clients (connect, USER/PASS, PWD,
every tenth an NLST over a data connection, QUIT). Prints one JSON line: the
pyftpdlib handler objects still alive after the sessions (after a gc), and how
much the traced memory grew between the first tenth of the sessions and the
end. ``--stdlib`` runs the same on the standard library's asyncore (3.11 only),
for comparison.
"""

import ftplib
import gc
import json
import logging
import sys
import threading
import time
import tracemalloc
import warnings

if "--stdlib" in sys.argv:
    warnings.simplefilter("ignore", DeprecationWarning)
else:
    import coserve.compat

    coserve.compat.install()  # pyftpdlib imports asyncore and asynchat itself

import asyncore  # after install(), on purpose: coserve.asyncore (or, with --stdlib, the standard library's)

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.servers import FTPServer

total = int(next((a for a in sys.argv[1:] if a.isdigit()), "1000"))
quiet = logging.getLogger("pyftpdlib")
quiet.addHandler(logging.NullHandler())  # pyftpdlib configures logging only if nobody did
quiet.propagate = False

authorizer = DummyAuthorizer()
authorizer.add_user("user", "12345", ".", perm="elr")
handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "banner": "ready"})
server = FTPServer(("127.0.0.1", 0), handler)
port = server.address[1]
stop = threading.Event()


def serve() -> None:
    while not stop.is_set():
        server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
    server.close_all()


def settle() -> None:
    """Wait until the server side of every finished session has closed (only the listener is left)."""
    deadline = time.monotonic() + 10
    while len(server.ioloop.socket_map) > 1 and time.monotonic() < deadline:
        stop.wait(0.01)


def sessions(n: int) -> None:
    for i in range(n):
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", port, timeout=10)
        ftp.login("user", "12345")
        ftp.pwd()
        if i % 10 == 0:
            ftp.nlst()  # a data connection too: pyftpdlib's DTPHandler
        ftp.quit()
        ftp.close()


thread = threading.Thread(target=serve)
thread.start()
try:
    t0 = time.monotonic()
    first = total // 10
    sessions(first)  # also the warm-up: caches, free lists, the logger
    settle()
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    sessions(total - first)
    settle()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    alive = sum(1 for o in gc.get_objects() if isinstance(o, (FTPHandler, DTPHandler)))
    result = {
        "asyncore": asyncore.__name__,
        "sessions": total,
        "handlers_alive": alive,
        "memory_growth": after - before,
        "seconds": round(time.monotonic() - t0, 1),
    }
finally:
    stop.set()
    thread.join(30)
print(json.dumps(result))
