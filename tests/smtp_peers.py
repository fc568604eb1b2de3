"""The peers coserve.smtp's tests talk to: real aiosmtpd servers, and a raw in-process one for misbehaviour.

``Aiosmtpd`` runs aiosmtpd's ``Controller`` (an asyncio loop in a thread of
its own, started and stopped by the fixture) on free loopback ports, four at
once, all with the same ``Recorder`` handler:

- ``plain``: no TLS, no AUTH, SMTPUTF8 on, a SIZE limit of 1 MiB;
- ``starttls``: STARTTLS with a trustme certificate for 127.0.0.1 and
  localhost, AUTH PLAIN and LOGIN offered only after it (aiosmtpd's default);
- ``plain_auth``: AUTH offered in clear (for ``allow_insecure_auth``);
- ``implicit``: TLS from the first byte (port 465's way), with AUTH.

The handler refuses recipients whose local part starts with ``refuse``
(550) or ``later`` (450) and records each delivered message. The account is
``ada`` / ``lovelace``.

``raw_server(handler)`` is an ``async with`` block around a coserve server on
127.0.0.1 whose ``handler(sock)`` plays a server that misbehaves.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

import coserve

USER, PASSWORD = "ada", "lovelace"
SIZE_LIMIT = 1 << 20


@dataclass
class Delivered:
    sender: str
    recipients: list[str]
    data: bytes
    options: list[str]


@dataclass
class Recorder:
    messages: list[Delivered] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("refuse"):
            return "550 5.1.1 no such user here"
        if local.startswith("later"):
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            Delivered(
                envelope.mail_from, list(envelope.rcpt_tos), envelope.content, list(envelope.mail_options)
            )
        )
        return "250 2.0.0 queued"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


class _Connections:
    """Counts the servers' open connections, so a test can wait until they closed their side."""

    def __init__(self) -> None:
        self.sessions: set[int] = set()
        self.changed = threading.Condition()

    def opened(self, session: object) -> None:  # again after STARTTLS: a set, not a count
        with self.changed:
            self.sessions.add(id(session))

    def closed(self, session: object) -> None:
        with self.changed:
            self.sessions.discard(id(session))
            self.changed.notify_all()


class _TrackedSMTP(SMTP):
    def __init__(self, *args: Any, connections: _Connections, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connections = connections

    def connection_made(self, transport: Any) -> None:  # after the TLS handshake, for implicit TLS
        self._connections.opened(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._connections.closed(self)


class _Controller(Controller):
    connections: _Connections

    def factory(self) -> SMTP:
        return _TrackedSMTP(self.handler, connections=self.connections, **self.SMTP_kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Aiosmtpd:
    """Four aiosmtpd servers (see the module's text); ``client_ssl`` trusts their certificate."""

    def __init__(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_ssl)
        self.client_ssl = ssl.create_default_context()
        ca.configure_trust(self.client_ssl)
        self.handler = Recorder()
        self.ports = {name: _free_port() for name in ("plain", "starttls", "plain_auth", "implicit")}

        self.connections = _Connections()

        def make(name: str, **kwargs: Any) -> Controller:
            c = _Controller(
                self.handler, hostname="127.0.0.1", port=self.ports[name], enable_SMTPUTF8=True, **kwargs
            )
            c.connections = self.connections
            return c

        self._controllers = {
            "plain": make("plain", data_size_limit=SIZE_LIMIT),
            "starttls": make("starttls", tls_context=server_ssl, authenticator=_authenticator),
            "plain_auth": make("plain_auth", authenticator=_authenticator, auth_require_tls=False),
            # aiosmtpd knows only STARTTLS as TLS: with implicit TLS it would never offer AUTH.
            "implicit": make(
                "implicit", ssl_context=server_ssl, authenticator=_authenticator, auth_require_tls=False
            ),
        }
        self._started: list[Controller] = []
        try:
            for c in self._controllers.values():
                c.start()
                self._started.append(c)
        except BaseException:
            self.stop()
            raise

    @property
    def messages(self) -> list[Delivered]:
        return self.handler.messages

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every server closed its side of every connection (the fd leak gate checks)."""
        with self.connections.changed:
            if not self.connections.changed.wait_for(lambda: not self.connections.sessions, timeout):
                raise AssertionError(f"aiosmtpd still has {len(self.connections.sessions)} connections open")
        for c in self._started:  # the socket closes just after connection_lost(): one more loop turn
            done = threading.Event()
            c.loop.call_soon_threadsafe(done.set)
            done.wait(timeout)

    def stop(self) -> None:
        for c in self._started:
            c.stop()
        self._started = []


@contextlib.asynccontextmanager
async def raw_server(
    handler: Callable[[coserve.Socket], Awaitable[object]], timeout: float | None = None
) -> AsyncIterator[int]:
    """Serve *handler* on 127.0.0.1 for the block; yields the port."""
    server = coserve.serve_tcp(handler, "127.0.0.1", 0, timeout=timeout)
    try:
        yield server.address[1]
    finally:
        server.close()


async def expect(sock: coserve.Socket, *lines: bytes) -> None:
    """Receive lines and check they are *lines* (the prefix of each: EHLO's name varies)."""
    for want in lines:
        got = await sock.receive("*l")
        assert got.startswith(want), (got, want)
