"""coserve.app: the SocketServer application (pulsar's SocketServer, gunicorn's settings and arbiter).

A protocol (``decode``/``encode``, made per connection) and an ``async def
respond(message, conn)``, or a plain Copas-style ``async def handler(sock)``,
served on the addresses of the ``bind`` setting. See docs/app.md.
"""

from ._server import EVENTS, Connection, MessageProtocol, SocketServer

__all__ = ["EVENTS", "Connection", "MessageProtocol", "SocketServer"]
