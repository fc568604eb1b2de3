"""An FTP client on coserve's sockets: LuaSocket's ``ftp.get``/``put``/``command``, and ftplib's methods.

For example::

    data = await ftp.get("ftp://ftp.example.org/pub/README")
    async with ftp.FTPClient("ftp.example.org", user="me", password="...", tls=True) as client:
        async for chunk in client.retrieve("big.iso"):
            ...

Two layers. :class:`ReplyParser` is the protocol without I/O: fed the control
connection's bytes, it hands back whole :class:`Reply` objects (multi-line
replies included, RFC 959 section 4.2) and refuses what is not a reply. The
:class:`FTPClient` drives it over one control connection and opens a data
connection per transfer.

Invariants:

- **One reply per command, always read.** A command interrupted while it
  waited for its reply (a cancellation) leaves the reply owed: the client
  counts it and reads it before the next command, so the conversation never
  goes out of step. A timeout, a broken reply or a half-sent command closes
  the control connection instead: then nobody can tell what comes next.
- **A transfer is complete only when both** the data connection reached its
  end *and* the 226/250 reply arrived; a data connection that broke, or a
  reply that says the transfer failed, raises even if bytes arrived.
- **Aborting** (cancelling a transfer, or leaving a :meth:`FTPClient.retrieve`
  loop early) closes the data connection, sends ABOR, then NOOP, and reads
  every reply up to NOOP's 200: whatever the server answered to the transfer
  and to ABOR (RFC 959 allows 426+226, 226, or 225), the control connection is
  in step again and usable.
- **Passive mode** asks EPSV first (RFC 2428: the data connection goes to the
  control connection's address, which works through NAT and on IPv6) and
  falls back to PASV if the server does not know it. The address in a 227
  reply is ignored when it differs from the control connection's peer: a
  server (or a man in the middle of a plain connection) could otherwise point
  the client at a third host (the "FTP bounce"/PASV port-scan attack);
  ftplib does the same (``trust_server_pasv_ipv4_address``).
- **FTPS** is explicit by default (AUTH TLS, then PBSZ 0 and PROT P, RFC 4217)
  and verifies the certificate and host name; a server that refuses AUTH TLS
  is an error, never a fall-back to clear text. Data connections resume the
  control connection's TLS session: vsftpd and others refuse a data connection
  that does not (it proves that the same client opened it).

ftplib's reply parsers (``parse227``, ``parse229``, ``parse257``) are reused
rather than written again. Paths and replies are UTF-8 (RFC 2640), with
undecodable bytes kept (surrogateescape) so a name read from a listing can be
sent back unchanged.
"""

from __future__ import annotations

import builtins
import datetime
import ftplib
import ipaddress
import re
import socket
import ssl as _ssl
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, BinaryIO

from . import ConnectionClosed, CoserveError, Socket, connect, timeout_after
from ._kernel import wait_readable, wait_writable

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "Entry",
    "FTPClient",
    "FTPError",
    "FTPTimeout",
    "InvalidCommand",
    "InvalidURL",
    "PermanentError",
    "ProtocolError",
    "Reply",
    "ReplyParser",
    "TLSError",
    "TemporaryError",
    "Transfer",
    "TransferFailed",
    "UnexpectedReply",
    "get",
    "parse_list_line",
    "parse_mlsd_line",
    "put",
]

_ENCODING = "utf-8"
_CHUNK = 65536
#: The longest reply line, and the most a whole (multi-line) reply may hold: a FEAT or HELP reply is a
#: few KiB; more is a server that never ends its reply.
MAX_REPLY_LINE = 8192
MAX_REPLY_SIZE = 1 << 20

# -- errors ------------------------------------------------------------------------------------


class FTPError(CoserveError):
    """The root of coserve.ftp's errors: ``code`` is the server's reply code (0: none), ``text`` its text."""

    def __init__(self, text: str, code: int = 0) -> None:
        super().__init__(f"{code} {text}" if code else text)
        #: The reply code (0 when the error is not a reply of the server's).
        self.code = code
        #: The server's text (or what went wrong, for people).
        self.text = text


class TemporaryError(FTPError):
    """The server answered 4xx: it cannot do it now, trying again later may work (ftplib's ``error_temp``)."""


class PermanentError(FTPError):
    """The server answered 5xx: it will not do it (no such file, not allowed; ftplib's ``error_perm``)."""


class UnexpectedReply(FTPError):
    """The server answered with a code the command does not expect (ftplib's ``error_reply``)."""


class ProtocolError(FTPError):
    """The server sent what is not an FTP reply (a malformed line, an endless reply; ftplib's error_proto).

    The control connection is closed: nothing it says next can be trusted.
    """


class InvalidCommand(FTPError, ValueError):
    """A command or path cannot be sent: it has a CR, LF or NUL in it (refused before a byte is sent)."""


class InvalidURL(FTPError, ValueError):
    """The URL is not ``ftp://[user[:password]@]host[:port]/path[;type=a|i]``."""


class ConnectError(FTPError, OSError):
    """No connection could be made to the server (or, in passive mode, to the data port it gave)."""


class ConnectionLost(FTPError, ConnectionError):
    """The control connection closed or broke; the client is closed."""


class TransferFailed(FTPError):
    """The data connection broke, or ended without the server's 226/250: the transfer did not complete."""


class TLSError(FTPError):
    """TLS failed: the certificate or host name did not verify, or a handshake broke."""


class FTPTimeout(FTPError, TimeoutError):
    """The server did not answer, or a transfer stalled, for longer than the timeout."""


def _reply_error(reply: Reply) -> FTPError:
    if 400 <= reply.code < 500:
        return TemporaryError(reply.text, reply.code)
    if 500 <= reply.code < 600:
        return PermanentError(reply.text, reply.code)
    return UnexpectedReply(reply.text, reply.code)


# -- the protocol, without I/O -------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One reply of the server: its code and its lines (as sent, codes included)."""

    #: The three-digit reply code.
    code: int
    #: The lines of the reply, decoded, without their line ends.
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply's text: its lines joined with newlines, without the code of the first and the last."""
        lines = list(self.lines)
        if len(lines) > 1 and lines[-1][:4] == f"{self.code} ":
            lines[-1] = lines[-1][4:]
        lines[0] = lines[0][4:]
        return "\n".join(lines)

    @property
    def raw(self) -> str:
        """The whole reply as one string, as ftplib's parsers (``parse227`` ...) take it."""
        return "\n".join(self.lines)


_REPLY_START = re.compile(rb"([1-5][0-9][0-9])([ -])")


class ReplyParser:
    """Turns the bytes of a control connection into :class:`Reply` objects (RFC 959 section 4.2).

    ``feed(data)`` hands bytes in; ``next_reply()`` returns the next complete
    reply or None. A reply is one line ``NNN text``, or ``NNN-text`` then any
    lines up to one that starts with the same ``NNN`` and a space. Raises
    :class:`ProtocolError` for a line that cannot start a reply, a line longer
    than :data:`MAX_REPLY_LINE` or a reply larger than :data:`MAX_REPLY_SIZE`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """How many received bytes are not yet part of a returned reply."""
        return len(self._buf) + self._size

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        buf = self._buf
        while True:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > MAX_REPLY_LINE:
                    raise ProtocolError(f"a reply line longer than {MAX_REPLY_LINE} bytes")
                return None
            line = bytes(buf[:end]).rstrip(b"\r")
            del buf[: end + 1]
            if len(line) > MAX_REPLY_LINE:
                raise ProtocolError(f"a reply line longer than {MAX_REPLY_LINE} bytes")
            lines = self._lines
            if not lines:
                m = _REPLY_START.match(line)
                if m is None:
                    raise ProtocolError(f"not an FTP reply: {line[:80]!r}")
                lines.append(line)
                if m.group(2) == b"-":
                    self._size = len(line)
                    continue
            else:
                self._size += len(line)
                if self._size > MAX_REPLY_SIZE:
                    raise ProtocolError(f"a multi-line reply larger than {MAX_REPLY_SIZE} bytes")
                lines.append(line)
                if not (line[:3] == lines[0][:3] and line[3:4] == b" "):
                    continue
            self._lines = []
            self._size = 0
            decoded = tuple(x.decode(_ENCODING, "surrogateescape") for x in lines)
            return Reply(int(lines[0][:3]), decoded)


# -- listings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One entry of a directory listing (:meth:`FTPClient.mlsd` or :meth:`FTPClient.list`)."""

    #: The name (not a path).
    name: str
    #: ``"file"``, ``"dir"``, ``"link"``, ``"cdir"``/``"pdir"`` (MLSD's . and ..), or ``"unknown"``.
    type: str
    #: The size in bytes, when the listing gave it.
    size: int | None = None
    #: Every fact the listing gave, by name in lower case (MLSD's facts; for LIST: ``perm``, ``date``,
    #: ``owner``, ``group``, ``target`` of a link).
    facts: dict[str, str] = field(default_factory=dict)


def parse_mlsd_line(line: str) -> Entry:
    """One line of an MLSD listing (RFC 3659 section 7): ``fact=value;...; name``."""
    facts_text, _, name = line.partition(" ")
    facts: dict[str, str] = {}
    for fact in facts_text.split(";"):
        key, eq, value = fact.partition("=")
        if eq:
            facts[key.lower()] = value
    kind = facts.get("type", "unknown").lower()
    if kind.startswith("os.unix=slink") or kind == "os.unix=symlink":
        kind = "link"
    size = facts.get("size")
    return Entry(name, kind, int(size) if size and size.isdigit() else None, facts)


_UNIX_TYPES = {"-": "file", "d": "dir", "l": "link"}
_DOS_LINE = re.compile(r"(\d\d-\d\d-\d\d(?:\d\d)?\s+\d\d?:\d\d[AaPp][Mm])\s+(<DIR>|\d+)\s+(.+)$")


def parse_list_line(line: str) -> Entry:
    """One line of a LIST listing: Unix ``ls -l`` style or MS-DOS style; anything else is ``"unknown"``."""
    parts = line.split(None, 8)
    if len(parts) == 9 and parts[0][:1] in "-dlbcps" and len(parts[0]) >= 10 and parts[4].isdigit():
        perm, _, owner, group, size, month, day, time_or_year, name = parts
        facts = {"perm": perm, "owner": owner, "group": group, "date": f"{month} {day} {time_or_year}"}
        kind = _UNIX_TYPES.get(perm[0], "unknown")
        if kind == "link" and " -> " in name:
            name, facts["target"] = name.split(" -> ", 1)
        return Entry(name, kind, int(size), facts)
    m = _DOS_LINE.match(line)
    if m:
        date, size, name = m.groups()
        if size == "<DIR>":
            return Entry(name, "dir", None, {"date": date})
        return Entry(name, "file", int(size), {"date": date})
    return Entry(line, "unknown")


# -- the client -----------------------------------------------------------------------------------------


def _check_arg(what: str, value: str) -> str:
    if not isinstance(value, str):
        raise InvalidCommand(f"{what} must be a str, not {type(value).__name__}")
    if any(c in value for c in "\r\n\x00"):
        raise InvalidCommand(f"{what} {value!r} has a CR, LF or NUL in it")
    return value


Source = bytes | bytearray | memoryview | BinaryIO | AsyncIterable[bytes] | Iterable[bytes]


class FTPClient:
    """One FTP (or FTPS) session: a control connection, and a data connection per transfer.

    ``async with FTPClient(host, user=..., password=...) as client:`` connects
    and logs in (anonymously by default), and says QUIT at the end. *tls* is
    True (the system's verifying context) or an :class:`ssl.SSLContext` for
    FTPS: explicit (AUTH TLS on port 21) unless *implicit_tls* (port 990 by
    default). *timeout* bounds connecting and each wait for the server (a reply,
    or progress of a transfer). *passive* False uses active mode (EPRT/PORT:
    the server connects to the client). One task uses a client at a time.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        user: str = "anonymous",
        password: str = "anonymous@",
        tls: bool | _ssl.SSLContext = False,
        implicit_tls: bool = False,
        timeout: float | None = 60.0,
        passive: bool = True,
        server_hostname: str | None = None,
    ) -> None:
        if implicit_tls and tls is False:
            tls = True
        if not isinstance(tls, (bool, _ssl.SSLContext)):
            raise TypeError(f"tls must be True, False or an ssl.SSLContext, not {type(tls).__name__}")
        if port is not None and not (isinstance(port, int) and 0 < port <= 65535):
            raise ValueError(f"port must be 1 to 65535, not {port!r}")
        #: The server's host name or address.
        self.host = _check_arg("the host", host)
        #: The server's port.
        self.port = port if port is not None else (990 if implicit_tls else 21)
        #: The user name login() sends by default.
        self.user = _check_arg("the user name", user)
        #: The password login() sends by default.
        self.password = _check_arg("the password", password)
        #: Seconds for connecting and for each wait for the server (None: no limit).
        self.timeout = timeout
        #: True for passive mode (EPSV, then PASV), False for active (EPRT, then PORT).
        self.passive = passive
        #: True for implicit FTPS (TLS from the first byte).
        self.implicit_tls = implicit_tls
        self._context: _ssl.SSLContext | None = None
        if tls is True:
            self._context = _ssl.create_default_context()
        elif isinstance(tls, _ssl.SSLContext):
            self._context = tls
        self._server_hostname = server_hostname or host
        self._sock: Socket | None = None
        self._parser = ReplyParser()
        self._owed = 0  # replies of interrupted commands, read before the next command
        self._prot_p = False
        self._epsv = True
        self._eprt = True
        self._type: str | None = None
        self._rest: int | None = None
        self._transfer: Transfer | None = None
        #: The server's greeting.
        self.welcome: str | None = None

    # -- connecting ------------------------------------------------------------------------------

    async def connect(self) -> Reply:
        """Open the control connection (with TLS if implicit) and read the greeting."""
        if self._sock is not None:
            raise FTPError("the client is already connected")
        try:
            ssl = self._context if self.implicit_tls else None
            self._sock = await connect(
                self.host, self.port, ssl=ssl, server_hostname=self._server_hostname, timeout=self.timeout
            )
        except _ssl.SSLError as e:
            raise TLSError(f"TLS with {self.host}:{self.port} failed: {e}") from e
        except TimeoutError as e:
            raise FTPTimeout(
                f"connecting to {self.host}:{self.port} took longer than {self.timeout} s"
            ) from e
        except OSError as e:
            raise ConnectError(f"could not connect to {self.host}:{self.port}: {e}") from e
        self._sock.settimeouts(send=self.timeout, receive=self.timeout)
        self._prot_p = False
        try:
            reply = self._expect(await self._read_reply(), 2)
        except BaseException:
            self.close()
            raise
        self.welcome = reply.text
        return reply

    async def login(self, user: str | None = None, password: str | None = None) -> Reply:
        """Log in (after AUTH TLS when *tls* asks for explicit FTPS); then PBSZ 0 and PROT P under TLS."""
        user = _check_arg("the user name", user if user is not None else self.user)
        password = _check_arg("the password", password if password is not None else self.password)
        sock = self._connected()
        if self._context is not None and not sock.tls:
            self._expect(await self._exchange("AUTH TLS"), 2)
            if self._parser.buffered:
                self.close()
                raise ProtocolError("the server sent more after its AUTH TLS reply, before the TLS handshake")
            try:
                await sock.handshake(self._context, server_hostname=self._server_hostname)
            except _ssl.SSLError as e:
                self.close()
                raise TLSError(f"the TLS handshake with {self.host} failed: {e}") from e
            except TimeoutError as e:
                self.close()
                raise FTPTimeout("the TLS handshake took longer than the timeout") from e
        reply = await self._exchange(f"USER {user}")
        if reply.code == 331:
            reply = await self._exchange(f"PASS {password}")
        reply = self._expect(reply, 2)
        if self._context is not None:
            self._expect(await self._exchange("PBSZ 0"), 2)
            self._expect(await self._exchange("PROT P"), 2)
            self._prot_p = True
        return reply

    def _connected(self) -> Socket:
        if self._sock is None:
            raise ConnectionLost("the client is not connected (connect() it, or use async with)")
        return self._sock

    # -- the conversation --------------------------------------------------------------------------

    async def _read_reply(self) -> Reply:
        """The next reply (1xx included); the connection closes on a timeout, a broken reply or EOF."""
        sock = self._connected()
        parser = self._parser
        try:
            while True:
                reply = parser.next_reply()
                if reply is not None:
                    return reply
                try:
                    data = await sock.receive_partial()
                except TimeoutError as e:
                    raise FTPTimeout(f"the server did not answer within {self.timeout} s") from e
                except OSError as e:
                    raise ConnectionLost(f"the control connection broke: {e}") from e
                if not data:
                    raise ConnectionLost("the server closed the control connection")
                parser.feed(data)
        except (FTPTimeout, ProtocolError, ConnectionLost):
            self.close()
            raise

    async def _final_reply(self) -> Reply:
        """The next reply that is not a preliminary 1xx."""
        while True:
            reply = await self._read_reply()
            if reply.code >= 200:
                return reply

    async def _settle(self) -> None:
        """Before a new command: abort a transfer left open, and read the replies still owed."""
        if self._transfer is not None:
            self._transfer._interrupted = True
            await self._transfer.aclose()
        while self._owed:
            await self._final_reply()
            self._owed -= 1

    async def _send_line(self, line: str) -> None:
        sock = self._connected()
        data = line.encode(_ENCODING, "surrogateescape") + b"\r\n"
        try:
            await sock.send(data)
        except BaseException as e:
            self.close()  # perhaps half a command went out: the conversation cannot go on
            if isinstance(e, TimeoutError):
                raise FTPTimeout("the server did not take the command within the timeout") from e
            if isinstance(e, OSError):
                raise ConnectionLost(f"the control connection broke: {e}") from e
            raise

    async def _exchange(self, line: str, *, final: bool = True) -> Reply:
        """Send one command line and read its reply (the final one, unless *final* is False)."""
        await self._settle()
        await self._send_line(line)
        try:
            return await (self._final_reply() if final else self._read_reply())
        except FTPError:
            raise
        except BaseException:
            if self._sock is not None:
                self._owed += 1  # interrupted: its reply is read before the next command
            raise

    def _expect(self, reply: Reply, first_digit: int) -> Reply:
        if reply.code // 100 != first_digit:
            raise _reply_error(reply)
        return reply

    async def command(self, cmd: str) -> tuple[int, str]:
        """Send any command and return the final reply's ``(code, text)`` (LuaSocket's ``ftp.command``).

        A 4xx or 5xx reply is returned, not raised: the caller decides.
        """
        reply = await self._exchange(_check_arg("the command", cmd))
        return reply.code, reply.text

    async def cwd(self, path: str) -> str:
        """Change the working directory (CDUP for ``".."``); returns the server's text."""
        path = _check_arg("the path", path)
        line = "CDUP" if path == ".." else f"CWD {path}"
        return (self._expect(await self._exchange(line), 2)).text

    async def pwd(self) -> str:
        """The working directory."""
        return self._parse257(self._expect(await self._exchange("PWD"), 2))

    async def mkdir(self, path: str) -> str:
        """Make a directory; returns its path as the server gives it."""
        reply = self._expect(await self._exchange(f"MKD {_check_arg('the path', path)}"), 2)
        try:
            return self._parse257(reply)
        except ProtocolError:
            return path  # a 250 or a 257 without the quoted name: valid enough

    def _parse257(self, reply: Reply) -> str:
        try:
            return ftplib.parse257(reply.raw)
        except ftplib.Error as e:
            raise ProtocolError(f"cannot read the directory out of {reply.raw!r}", reply.code) from e

    async def rmdir(self, path: str) -> None:
        """Remove a directory."""
        self._expect(await self._exchange(f"RMD {_check_arg('the path', path)}"), 2)

    async def delete(self, path: str) -> None:
        """Delete a file."""
        self._expect(await self._exchange(f"DELE {_check_arg('the path', path)}"), 2)

    async def rename(self, old: str, new: str) -> None:
        """Rename *old* to *new* (RNFR, then RNTO)."""
        old, new = _check_arg("the path", old), _check_arg("the new path", new)  # both before RNFR
        self._expect(await self._exchange(f"RNFR {old}"), 3)
        self._expect(await self._exchange(f"RNTO {new}"), 2)

    async def _set_type(self, kind: str) -> None:
        if self._type != kind:
            self._expect(await self._exchange(f"TYPE {kind}"), 2)
            self._type = kind

    async def size(self, path: str) -> int:
        """The size of a file in bytes (SIZE, in binary mode)."""
        await self._set_type("I")
        reply = self._expect(await self._exchange(f"SIZE {_check_arg('the path', path)}"), 2)
        text = reply.text.strip()
        if not text.isdigit():
            raise ProtocolError(f"a SIZE reply without a size: {reply.raw!r}", reply.code)
        return int(text)

    async def mdtm(self, path: str) -> datetime.datetime:
        """When a file was last modified (MDTM), in UTC."""
        reply = self._expect(await self._exchange(f"MDTM {_check_arg('the path', path)}"), 2)
        text = reply.text.strip()
        try:
            stamp = datetime.datetime.strptime(text[:14], "%Y%m%d%H%M%S")
            if text[14:15] == ".":
                stamp = stamp.replace(microsecond=int((text[15:] + "000000")[:6]))
        except ValueError as e:
            raise ProtocolError(f"an MDTM reply without a time: {reply.raw!r}", reply.code) from e
        return stamp.replace(tzinfo=datetime.UTC)

    async def rest(self, offset: int) -> None:
        """Start the next transfer at byte *offset* (resume): REST is sent just before its RETR or STOR."""
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"the offset must be an int >= 0, not {offset!r}")
        self._rest = offset or None

    async def quit(self) -> None:
        """Say QUIT and close the connection (closed even if the server does not answer)."""
        if self._sock is None:
            return
        try:
            await self._exchange("QUIT")
        except FTPError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the control connection (and a transfer's data connection) without saying QUIT."""
        if self._transfer is not None:
            self._transfer._close_data()
            self._transfer = None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._parser = ReplyParser()
        self._owed = 0
        self._type = None

    @property
    def closed(self) -> bool:
        """True when there is no control connection."""
        return self._sock is None

    async def __aenter__(self) -> FTPClient:
        await self.connect()
        try:
            await self.login()
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.quit()
        else:
            self.close()

    # -- data connections ---------------------------------------------------------------------------

    async def _open_data(self, line: str) -> tuple[Socket, Reply]:
        """Open a data connection for the command *line*; returns it and the server's 1xx reply."""
        await self._settle()
        sock = self._connected()
        rest, self._rest = self._rest, None
        if self.passive:
            data = await self._passive_connect(sock)
            try:
                if rest is not None:
                    self._expect(await self._exchange(f"REST {rest}"), 3)
                reply = await self._exchange(line, final=False)
                if reply.code >= 200:
                    raise _reply_error(reply)
            except BaseException:
                data.close()
                raise
        else:
            listener = await self._listen(sock)
            try:
                if rest is not None:
                    self._expect(await self._exchange(f"REST {rest}"), 3)
                reply = await self._exchange(line, final=False)
                if reply.code >= 200:
                    raise _reply_error(reply)
                data = await self._accept(listener, sock)
            finally:
                listener.close()
        if self._prot_p:
            try:
                await data.handshake(
                    self._context, server_hostname=self._server_hostname, session=sock.tls_session
                )
            except BaseException as e:
                data.close()
                self._owed += 1  # the transfer's final reply
                if isinstance(e, _ssl.SSLError):
                    raise TLSError(f"the TLS handshake of the data connection failed: {e}") from e
                if isinstance(e, TimeoutError):
                    raise FTPTimeout(
                        "the data connection's TLS handshake took longer than the timeout"
                    ) from e
                raise
        return data, reply

    async def _passive_connect(self, sock: Socket) -> Socket:
        peer = sock.getpeername()
        host, port = peer[0], 0
        if self._epsv:
            reply = await self._exchange("EPSV")
            if reply.code == 229:
                try:
                    host, port = ftplib.parse229(reply.raw, peer)
                except ftplib.Error as e:
                    raise ProtocolError(f"cannot read the port out of {reply.raw!r}", reply.code) from e
            elif 500 <= reply.code < 600:
                self._epsv = False
            else:
                raise _reply_error(reply)
        if not port:
            reply = self._expect(await self._exchange("PASV"), 2)
            try:
                _, port = ftplib.parse227(reply.raw)  # its address is ignored: see the module's text
            except ftplib.Error as e:
                raise ProtocolError(f"cannot read the address out of {reply.raw!r}", reply.code) from e
        try:
            data = await connect(host, port, timeout=self.timeout)
        except TimeoutError as e:
            raise FTPTimeout(f"the data connection to {host}:{port} took longer than {self.timeout} s") from e
        except OSError as e:
            raise ConnectError(f"could not open the data connection to {host}:{port}: {e}") from e
        data.settimeouts(send=self.timeout, receive=self.timeout)
        return data

    async def _listen(self, sock: Socket) -> Socket:
        local = sock.getsockname()
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        listener = Socket(raw)
        try:
            raw.bind((local[0], 0))
            raw.listen(1)
            port = raw.getsockname()[1]
            sent = False
            if self._eprt:
                proto = 2 if family == socket.AF_INET6 else 1
                reply = await self._exchange(f"EPRT |{proto}|{local[0]}|{port}|")
                if reply.code // 100 == 2:
                    sent = True
                elif 500 <= reply.code < 600 and family == socket.AF_INET:
                    self._eprt = False
                else:
                    raise _reply_error(reply)
            if not sent:
                numbers = local[0].replace(".", ",")
                self._expect(await self._exchange(f"PORT {numbers},{port >> 8},{port & 255}"), 2)
        except BaseException:
            listener.close()
            raise
        return listener

    async def _accept(self, listener: Socket, control: Socket) -> Socket:
        server_ip = ipaddress.ip_address(control.getpeername()[0].split("%")[0])
        raw = listener.socket
        try:
            async with timeout_after(self.timeout):
                while True:
                    await wait_readable(listener.fileno())
                    try:
                        conn, addr = raw.accept()
                    except BlockingIOError:
                        continue
                    if ipaddress.ip_address(addr[0].split("%")[0]) == server_ip:
                        break
                    conn.close()  # not the server: someone racing to the port (data theft)
        except TimeoutError as e:
            self._owed += 1
            raise FTPTimeout(f"the server did not connect for the data within {self.timeout} s") from e
        except BaseException:
            self._owed += 1
            raise
        data = Socket(conn)
        data.settimeouts(send=self.timeout, receive=self.timeout)
        return data

    # -- transfers -----------------------------------------------------------------------------------------

    def retrieve(self, path: str, *, type: str = "I", rest: int | None = None) -> Transfer:
        """Download *path*: an async iterator of its chunks (RETR).

        ``async for chunk in client.retrieve(path):`` ... It ends once the data
        connection reached its end and the server said 226; leaving the loop
        early (or being cancelled) aborts the transfer. ``async with`` around it
        aborts at the block's end if the loop did not finish. *type* is ``"I"``
        (binary) or ``"A"`` (ASCII); *rest* starts at that byte (resume).
        """
        return self._transfer_of(f"RETR {_check_arg('the path', path)}", type, rest)

    def _transfer_of(self, line: str, type: str, rest: int | None) -> Transfer:
        if type not in ("I", "A"):
            raise ValueError(f"type is 'I' (binary) or 'A' (ASCII), not {type!r}")
        if rest is not None and (not isinstance(rest, int) or rest < 0):
            raise ValueError(f"rest must be an int >= 0, not {rest!r}")
        return Transfer(self, line, type, rest)

    async def retrieve_bytes(self, path: str, *, type: str = "I", rest: int | None = None) -> bytes:
        """Download *path* whole."""
        chunks = [chunk async for chunk in self.retrieve(path, type=type, rest=rest)]
        return b"".join(chunks)

    async def store(
        self, path: str, source: Source, *, type: str = "I", rest: int | None = None, append: bool = False
    ) -> None:
        """Upload *source* (bytes, a binary file, or an (async) iterable of bytes) to *path* (STOR).

        *append* uses APPE; *rest* resumes an upload at that byte. Returns once
        the server confirmed (226/250) that it has every byte.
        """
        verb = "APPE" if append else "STOR"
        transfer = self._transfer_of(f"{verb} {_check_arg('the path', path)}", type, rest)
        if isinstance(source, str) or not (
            isinstance(source, (bytes, bytearray, memoryview, AsyncIterable, Iterable))
            or hasattr(source, "read")
        ):
            raise TypeError(f"store() sends bytes, a binary file or an iterable of bytes, not {source!r}")
        await transfer._start()
        try:
            data = transfer._data
            assert data is not None
            try:
                if isinstance(source, (bytes, bytearray, memoryview)):
                    await data.send(source)
                elif hasattr(source, "read"):
                    while chunk := source.read(_CHUNK):
                        await data.send(_as_bytes(chunk))
                elif isinstance(source, AsyncIterable):
                    async for chunk in source:
                        await data.send(_as_bytes(chunk))
                else:
                    for chunk in source:
                        await data.send(_as_bytes(chunk))
                await transfer._end_upload()
            except TimeoutError as e:
                raise FTPTimeout(f"the upload stalled for longer than {self.timeout} s") from e
            except OSError as e:
                transfer._broken = e
            await transfer._finish()
        except BaseException:
            await transfer.aclose()
            raise

    async def nlst(self, path: str | None = None) -> builtins.list[str]:
        """The names in a directory (NLST)."""
        return (await self._listing("NLST", path)).splitlines()

    async def list(self, path: str | None = None) -> builtins.list[Entry]:
        """A directory listing (LIST), each line parsed (Unix or MS-DOS style)."""
        return [parse_list_line(x) for x in (await self._listing("LIST", path)).splitlines() if x.strip()]

    async def list_lines(self, path: str | None = None) -> builtins.list[str]:
        """A directory listing (LIST), as the lines the server sent."""
        return (await self._listing("LIST", path)).splitlines()

    async def mlsd(self, path: str | None = None) -> builtins.list[Entry]:
        """A directory listing in RFC 3659's machine-readable form (MLSD), parsed."""
        return [parse_mlsd_line(x) for x in (await self._listing("MLSD", path)).splitlines() if x.strip()]

    async def _listing(self, verb: str, path: str | None) -> str:
        line = verb if path is None else f"{verb} {_check_arg('the path', path)}"
        chunks = [chunk async for chunk in self._transfer_of(line, "A", None)]
        return b"".join(chunks).decode(_ENCODING, "surrogateescape")


def _as_bytes(chunk: Any) -> bytes | bytearray | memoryview:
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return chunk
    raise TypeError(f"an upload's chunks are bytes, not {type(chunk).__name__}")


class Transfer:
    """One transfer over a data connection (from :meth:`FTPClient.retrieve`): an async iterator of chunks.

    Also an async context manager whose end aborts the transfer if it is not
    complete; :meth:`aclose` does the same.
    """

    def __init__(self, client: FTPClient, line: str, type: str, rest: int | None) -> None:
        self._client = client
        self._line = line
        self._type = type
        self._rest = rest
        self._data: Socket | None = None
        self._started = False
        self._open = False  # the server said 1xx: the transfer is under way
        self._done = False
        self._interrupted = False  # aborted because another command was sent
        self._broken: BaseException | None = None

    async def _start(self) -> None:
        client = self._client
        await client._settle()
        await client._set_type(self._type)
        if self._rest is not None:
            await client.rest(self._rest)
        self._started = True
        self._data, _ = await client._open_data(self._line)
        self._open = True
        client._transfer = self

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            if self._interrupted:
                raise TransferFailed("the transfer was aborted: another command was sent before it ended")
            raise StopAsyncIteration
        try:
            if not self._started:
                await self._start()
            data = self._data
            if data is not None:
                try:
                    chunk = await data.receive_partial(_CHUNK)
                except TimeoutError as e:
                    raise FTPTimeout(f"the download stalled for longer than {self._client.timeout} s") from e
                except _ssl.SSLEOFError:
                    chunk = b""  # no close_notify: the 226 on the (protected) control connection decides
                except OSError as e:
                    self._broken = e
                    chunk = b""
                if chunk:
                    return chunk
            await self._finish()
        except BaseException:
            await self.aclose()
            raise
        raise StopAsyncIteration

    async def _finish(self) -> None:
        """The data connection reached its end: close it and read the final reply."""
        client = self._client
        self._close_data()
        client._transfer = None
        self._done = True
        try:
            reply = await client._final_reply()
        except FTPError:
            raise
        except BaseException:
            if client._sock is not None:
                client._owed += 1
            raise
        if reply.code not in (226, 250):
            raise _reply_error(reply)
        if self._broken is not None:
            raise TransferFailed(f"the data connection broke: {self._broken}", reply.code) from self._broken

    async def _end_upload(self) -> None:
        """Say that the upload ended, and wait for the server to close its end.

        Closing at once would lose the end of the upload: a socket closed with
        unread bytes (a TLS 1.3 server's session tickets) is reset, and the reset
        discards what the server had not read yet. Under TLS, close_notify is the
        end (it also proves that nobody cut the upload short); in clear, a
        half-close. Either way the server reads everything, then closes.
        """
        data = self._data
        assert data is not None
        raw = data.socket
        timeout = self._client.timeout
        if isinstance(raw, _ssl.SSLSocket):
            while True:
                try:
                    raw.unwrap()
                    break
                except _ssl.SSLWantReadError:
                    await wait_readable(raw.fileno(), timeout)
                except _ssl.SSLWantWriteError:
                    await wait_writable(raw.fileno(), timeout)
                except (_ssl.SSLEOFError, _ssl.SSLZeroReturnError, ConnectionClosed):
                    return  # the server closed first: it has read everything
            # unwrap() may return before the server's close_notify (OpenSSL's second zero): read on,
            # in clear now, until the server closes, so nothing unread is left to cause a reset.
            while True:
                try:
                    if not raw.recv(_CHUNK):
                        return
                except (BlockingIOError, _ssl.SSLWantReadError):
                    await wait_readable(raw.fileno(), timeout)
                except OSError:
                    return
        else:
            data.shutdown(socket.SHUT_WR)
            while await data.receive_partial():
                pass

    def _close_data(self) -> None:
        data, self._data = self._data, None
        if data is not None:
            data.close()

    async def aclose(self) -> None:
        """Abort the transfer if it is still going (ABOR, then NOOP to be in step again)."""
        client = self._client
        if self._done or not self._open:
            self._done = True
            return
        self._done = True
        self._close_data()
        if client._transfer is self:
            client._transfer = None
        if client._sock is None:
            return
        try:
            await client._send_line("ABOR")
            await client._send_line("NOOP")
            # The transfer's reply, ABOR's (one or two) and NOOP's 200, which ends them all.
            while (await client._final_reply()).code != 200:
                pass
        except BaseException:
            client.close()
            raise

    async def __aenter__(self) -> Transfer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# -- LuaSocket's ftp.get and ftp.put -------------------------------------------------------------------------


def _parse_url(url: str) -> tuple[str, int, str, str, list[str], str, str]:
    if not isinstance(url, str):
        raise InvalidURL(f"a URL is a str, not {type(url).__name__}")
    if any(c in url for c in "\r\n\x00"):
        raise InvalidURL(f"the URL {url!r} has a CR, LF or NUL in it")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port or 21
    except ValueError as e:
        raise InvalidURL(f"cannot parse the URL {url!r}: {e}") from None
    if parts.scheme.lower() != "ftp":
        raise InvalidURL(f"{url!r} is not an ftp:// URL")
    if not parts.hostname:
        raise InvalidURL(f"no host in the URL {url!r}")
    user = urllib.parse.unquote(parts.username) if parts.username else "anonymous"
    password = urllib.parse.unquote(parts.password) if parts.password is not None else "anonymous@"
    path, _, params = parts.path.partition(";")
    kind = "I"
    if params:
        key, _, value = params.partition("=")
        if key.lower() != "type" or value.lower() not in ("a", "i"):
            raise InvalidURL(f"the URL {url!r} has a parameter other than ;type=a or ;type=i")
        kind = value.upper()
    segments = [urllib.parse.unquote(s) for s in path.lstrip("/").split("/")]
    if not segments[-1]:
        raise InvalidURL(f"the URL {url!r} names no file")
    for s in segments:
        if any(c in s for c in "\r\n\x00"):
            raise InvalidURL(f"the URL {url!r} has a CR, LF or NUL in it")
    return parts.hostname, port, user, password, segments, kind, url


async def get(url: str, *, tls: bool | _ssl.SSLContext = False, timeout: float | None = 60.0) -> bytes:
    """Download the file an ``ftp://`` URL names (LuaSocket's ``ftp.get(url)``).

    ``ftp://[user[:password]@]host[:port]/path[;type=a|i]``: anonymous unless
    the URL has a user; each directory of the path is entered with CWD (RFC 1738),
    then the file is retrieved in binary (``type=i``, the default) or ASCII mode.
    """
    host, port, user, password, segments, kind, _ = _parse_url(url)
    async with FTPClient(host, port, user=user, password=password, tls=tls, timeout=timeout) as client:
        for d in segments[:-1]:
            await client.cwd(d)
        return await client.retrieve_bytes(segments[-1], type=kind)


async def put(
    url: str, data: Source, *, tls: bool | _ssl.SSLContext = False, timeout: float | None = 60.0
) -> None:
    """Upload *data* (bytes, a binary file or an (async) iterable of bytes) to an ftp:// URL (``ftp.put``)."""
    host, port, user, password, segments, kind, _ = _parse_url(url)
    async with FTPClient(host, port, user=user, password=password, tls=tls, timeout=timeout) as client:
        for d in segments[:-1]:
            await client.cwd(d)
        await client.store(segments[-1], data, type=kind)
