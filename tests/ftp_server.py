"""A pyftpdlib FTP server for coserve.ftp's tests, run in its own process.

    python tests/ftp_server.py ROOT [--tls CERT_AND_KEY.pem]

Serves ROOT on 127.0.0.1 (a free port, printed as the first line of output):
the user ``user`` (password ``12345``) may do everything, ``anonymous`` too (the
tests upload anonymously). With ``--tls`` it is an explicit FTPS server
(pyftpdlib's TLS_FTPHandler) that requires TLS on the control and the data
connections. Runs until its standard input closes or it is terminated.
"""

import logging
import os
import sys
import threading

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

root = sys.argv[1]
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
logging.getLogger("pyftpdlib").propagate = False

authorizer = DummyAuthorizer()
authorizer.add_user("user", "12345", root, perm="elradfmwMT")
authorizer.add_anonymous(root, perm="elradfmwMT")
if "--tls" in sys.argv:
    from pyftpdlib.handlers import TLS_FTPHandler

    pem = sys.argv[sys.argv.index("--tls") + 1]
    attrs = {"certfile": pem, "keyfile": pem, "tls_control_required": True, "tls_data_required": True}
    handler = type("Handler", (TLS_FTPHandler,), {"authorizer": authorizer, **attrs})
else:
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
server = FTPServer(("127.0.0.1", 0), handler)
print(server.address[1], flush=True)


def watch_stdin() -> None:
    sys.stdin.read()  # the tests closed their end (or died): never outlive them
    os._exit(0)


threading.Thread(target=watch_stdin, daemon=True).start()
server.serve_forever(timeout=0.05, handle_exit=False)
