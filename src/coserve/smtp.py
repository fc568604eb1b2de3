"""coserve.smtp: an SMTP client for coserve tasks (Copas's ``copas.smtp``, Python's ``smtplib``).

``await coserve.smtp.send(message, host=...)`` delivers one
:class:`email.message.EmailMessage`; :class:`SMTPClient` keeps a connection
open for many (``async with SMTPClient(host) as c: await c.send_message(m)``).
Both read like blocking code and never block the loop. The module uses only
the standard library; see docs/smtp.md.

The module has two halves. The first has no I/O: :class:`ReplyParser` turns
reply lines into :class:`Reply` objects (and refuses malformed multi-line
replies), :func:`encode_data` normalises line endings to CRLF and dot-stuffs
the message, and :func:`prepare` turns a message into an envelope and bytes,
refusing bad input (a CR or LF in an address or a header, no recipient, a line
longer than RFC 5321's 998 octets) before anything is sent. The second half,
:class:`SMTPClient`, drives a :class:`coserve.Socket` with them.

Choices that are not obvious:

- **Line endings.** Every CR, LF and CRLF of the data becomes CRLF before
  dot-stuffing, so a bare LF can never end the data early on a lenient server
  (the "SMTP smuggling" family, CVE-2023-51766) and strict servers (qmail,
  Exchange Online) never reject the message for bare LFs.
- **TLS by default where it matters.** ``starttls="auto"`` upgrades whenever
  the server offers STARTTLS, and *requires* it when credentials are given: a
  password is never sent in clear because a server (or a man in the middle)
  left STARTTLS out of its EHLO reply. :meth:`SMTPClient.login` on a
  connection without TLS is refused unless ``allow_insecure_auth=True``.
  Certificates are verified (the system's default context) unless an
  ``ssl.SSLContext`` says otherwise.
- **STARTTLS injection.** Bytes the server sent after its 220 to STARTTLS and
  before the handshake are refused by :meth:`coserve.Socket.handshake`
  (CVE-2011-0411); the extensions learned in clear are forgotten and EHLO is
  sent again over TLS (RFC 3207).
- **No blocking DNS.** EHLO names the client by its address literal
  (``[127.0.0.1]``, RFC 5321 4.1.3) unless ``local_hostname`` is given:
  smtplib's ``socket.getfqdn()`` would block the loop.
- **A connection in an unknown state is closed.** A timeout, a cancellation or
  a broken reply in the middle of a command leaves the conversation out of
  step; the client closes the connection rather than guess (the next call
  raises :class:`NotConnected`). A server's refusal leaves it usable.
"""

from __future__ import annotations

import base64
import copy
import hmac
import io
import ipaddress
import re
import ssl as _ssl
from collections.abc import Iterable, Sequence
from email import policy as _policy
from email.generator import BytesGenerator
from email.message import Message
from email.utils import getaddresses
from typing import Any, ClassVar, NamedTuple

from ._errors import ConnectionClosed, CoserveError, LineTooLong, SocketClosed
from ._socket import Socket, connect
from ._sync import Lock

__all__ = [
    "AuthenticationFailed",
    "CleartextCredentials",
    "CommandRefused",
    "ConnectError",
    "DataRefused",
    "GreetingRefused",
    "HeloRefused",
    "InvalidAddress",
    "InvalidInput",
    "InvalidMessage",
    "MalformedReply",
    "MessageTooLarge",
    "NoRecipients",
    "NotConnected",
    "Prepared",
    "RecipientsRefused",
    "Reply",
    "ReplyParser",
    "SMTPClient",
    "SMTPError",
    "SMTPNotSupported",
    "SMTPPermanentError",
    "SMTPReplyError",
    "SMTPTemporaryError",
    "SMTPTimeout",
    "SenderRefused",
    "ServerDisconnected",
    "TLSError",
    "encode_data",
    "prepare",
    "send",
]

#: The longest reply line accepted (RFC 5321 allows 512 octets; servers' texts run longer).
MAX_REPLY_LINE = 8192
#: The most lines one reply may have.
MAX_REPLY_LINES = 1000
#: The longest text line of a message, without its CRLF (RFC 5321 4.5.3.1.6).
MAX_DATA_LINE = 998
#: The default timeout of each wait (connect, send, receive), in seconds (aiosmtplib's too).
DEFAULT_TIMEOUT = 60.0
_STARTTLS_MODES = ("auto", "required", "opportunistic", "never")
_AUTH_PREFERENCE = ("CRAM-MD5", "PLAIN", "LOGIN")  # smtplib's order
_NOT_IMPLEMENTED = (500, 502, 504)  # EHLO not understood: fall back to HELO


# -- errors ------------------------------------------------------------------------------------


class SMTPError(CoserveError):
    """The root of coserve.smtp's errors; ``code`` is the server's reply code when there was one."""

    code: int | None = None

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        #: What went wrong, for people.
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(SMTPError, ValueError):
    """What the program asked to send cannot be sent as given; raised before a byte is sent."""


class InvalidAddress(InvalidInput):
    """An address has a CR, LF, NUL, ``<`` or ``>`` in it, or is empty (a recipient)."""


class NoRecipients(InvalidInput):
    """The message has no recipient (no To, Cc or Bcc, and none were given)."""


class InvalidMessage(InvalidInput):
    """The message cannot be sent: not a Message, a header with a line break, a line over 998 octets."""


class NotConnected(SMTPError):
    """The client is not connected (never was, quit, or closed after a failure)."""


class ConnectError(SMTPError, ConnectionError):
    """No connection could be made: the name did not resolve, or the server refused or is unreachable."""


class TLSError(SMTPError, _ssl.SSLError):
    """TLS failed: the certificate or host name did not verify, or the handshake broke."""


class SMTPTimeout(SMTPError, TimeoutError):
    """The server took longer than the timeout to connect, answer or take the data; the client closed."""


class ServerDisconnected(SMTPError, ConnectionError):
    """The server closed or reset the connection (the client is closed too)."""


class MalformedReply(SMTPError):
    """The server sent what is not an SMTP reply (a bad code, mixed codes in a multi-line reply)."""


class SMTPNotSupported(SMTPError):
    """The server lacks what is needed: STARTTLS when required, an AUTH mechanism, SMTPUTF8, 8BITMIME."""


class CleartextCredentials(SMTPError):
    """``login()`` was refused: the connection has no TLS and ``allow_insecure_auth`` is False."""


class MessageTooLarge(SMTPError):
    """The message is larger than the server's SIZE limit; refused before it was sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the message is {size} bytes, over the server's SIZE limit of {limit}")
        #: The size of the message, in bytes.
        self.size = size
        #: The server's limit.
        self.limit = limit


class SMTPReplyError(SMTPError):
    """The server refused a command: ``code`` and ``text`` are its reply, ``command`` what was refused.

    Every refusal is also either an :class:`SMTPTemporaryError` (a 4xx
    reply: try again later) or an :class:`SMTPPermanentError` (5xx, or a
    reply the command does not allow), so either distinction can be caught.
    """

    code: int
    #: The :class:`SMTPTemporaryError` variant of this class (made for each class below).
    Temporary: ClassVar[type[SMTPReplyError]]
    #: The :class:`SMTPPermanentError` variant of this class.
    Permanent: ClassVar[type[SMTPReplyError]]

    def __init__(self, code: int, text: str, command: str = "") -> None:
        what = f"{command} refused" if command else "refused"
        super().__init__(f"{what}: {code} {text}", code=code)
        #: The server's text (the lines of a multi-line reply joined by newlines).
        self.text = text
        #: The command (its verb) that was refused.
        self.command = command

    @property
    def temporary(self) -> bool:
        """True for a 4xx reply: the same command may succeed later."""
        return 400 <= self.code < 500


class SMTPTemporaryError(SMTPReplyError):
    """A 4xx reply: the server refused for now (a full mailbox, greylisting, 421 closing)."""


class SMTPPermanentError(SMTPReplyError):
    """A 5xx reply (or one the command does not allow): the same command will fail again."""


class GreetingRefused(SMTPReplyError):
    """The server's greeting was not 220 (554: no service here; 421: busy)."""


class HeloRefused(SMTPReplyError):
    """The server refused both EHLO and HELO."""


class CommandRefused(SMTPReplyError):
    """The server refused a command: STARTTLS, NOOP, RSET, VRFY or one given to ``command()``."""


class AuthenticationFailed(SMTPReplyError):
    """The server refused the credentials (535) or the AUTH exchange."""


class SenderRefused(SMTPReplyError):
    """The server refused MAIL FROM; ``sender`` is the address."""

    sender: str = ""


class DataRefused(SMTPReplyError):
    """The server refused DATA, or the message after it."""


class RecipientsRefused(SMTPReplyError):
    """The server refused every recipient; ``recipients`` maps each to its ``(code, text)``.

    Its ``code`` and ``text`` are the first refusal's; it is temporary only when
    every refusal was.
    """

    def __init__(self, recipients: dict[str, tuple[int, str]]) -> None:
        code, text = next(iter(recipients.values()))
        super().__init__(code, text, "RCPT TO")
        self.message = f"every recipient was refused: {recipients}"
        self.args = (self.message,)
        #: Each refused recipient with the server's ``(code, text)``.
        self.recipients = recipients


def _recipients_refused(refused: dict[str, tuple[int, str]]) -> RecipientsRefused:
    temporary = all(400 <= code < 500 for code, _ in refused.values())
    kind = RecipientsRefused.Temporary if temporary else RecipientsRefused.Permanent
    return kind(refused)  # type: ignore[arg-type, call-arg, return-value]


def _split_kinds() -> None:
    """Give each kind of refusal its temporary and permanent variant (``SenderRefused.Temporary``)."""
    for cls in (GreetingRefused, HeloRefused, CommandRefused, AuthenticationFailed, SenderRefused,
                DataRefused, RecipientsRefused):  # fmt: skip
        for attr, base in (("Temporary", SMTPTemporaryError), ("Permanent", SMTPPermanentError)):
            variant = type(cls.__name__, (cls, base), {"__module__": __name__, "__doc__": cls.__doc__})
            variant.__qualname__ = f"{cls.__name__}.{attr}"
            setattr(cls, attr, variant)
    SMTPReplyError.Temporary = SMTPTemporaryError
    SMTPReplyError.Permanent = SMTPPermanentError


_split_kinds()


def _refusal(cls: type[SMTPReplyError], reply: Reply, command: str) -> SMTPReplyError:
    kind = cls.Temporary if 400 <= reply.code < 500 else cls.Permanent
    return kind(reply.code, reply.text, command)


# -- replies (no I/O) --------------------------------------------------------------------------


class Reply(NamedTuple):
    """One reply of the server: its code and its text (a multi-line reply's lines joined by newlines)."""

    code: int
    text: str

    @property
    def lines(self) -> list[str]:
        """The text's lines."""
        return self.text.split("\n")


_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?\Z", re.DOTALL)


class ReplyParser:
    """Turns reply lines (without their CRLF) into :class:`Reply` objects.

    ``feed(line)`` returns the reply once its last line (``250 text``, not
    ``250-text``) arrived, None before. A line that is not ``NNN[ -]text``,
    or a continuation with another code than the first line's, raises
    :class:`MalformedReply` (RFC 5321 4.2.1: every line has the same code).
    """

    __slots__ = ("_code", "_lines")

    def __init__(self) -> None:
        self._code: bytes | None = None
        self._lines: list[str] = []

    def feed(self, line: bytes) -> Reply | None:
        """Take one line; the complete reply, or None while more lines are due."""
        m = _REPLY_LINE.match(line)
        if m is None:
            raise MalformedReply(f"not an SMTP reply line: {line[:80]!r}")
        code, sep, text = m.groups()
        if self._code is None:
            self._code = code
        elif code != self._code:
            raise MalformedReply(
                f"a multi-line reply changed its code from {self._code.decode()} to {code.decode()}"
            )
        self._lines.append((text or b"").decode("utf-8", "replace"))
        if sep == b"-":
            if len(self._lines) >= MAX_REPLY_LINES:
                raise MalformedReply(f"a reply of more than {MAX_REPLY_LINES} lines")
            return None
        reply = Reply(int(code), "\n".join(self._lines))
        self._code = None
        self._lines = []
        return reply


def parse_ehlo(text: str) -> dict[str, str]:
    """The extensions of an EHLO reply's text: ``{"size": "10240000", "auth": "PLAIN LOGIN", ...}``.

    Keywords are lower-cased; the first line (the server's name) is skipped.
    The old ``AUTH=LOGIN`` form (Outlook) is read as ``AUTH LOGIN``.
    """
    extensions: dict[str, str] = {}
    for line in text.split("\n")[1:]:
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$", line)
        if m is None:
            continue
        keyword, params = m.group(1).lower(), (m.group(2) or "").strip()
        if keyword == "auth" and "auth" in extensions:
            params = f"{extensions['auth']} {params}".strip()
        extensions[keyword] = params
    return extensions


# -- the data (no I/O) ---------------------------------------------------------------------------

_EOL = re.compile(rb"\r\n|\r|\n")
_DOT = re.compile(rb"^\.", re.MULTILINE)


def encode_data(data: bytes) -> bytes:
    """The bytes to send after DATA: CRLF line endings, dot-stuffed, ending in ``CRLF.CRLF``.

    Every CR, LF and CRLF becomes CRLF; a line that starts with a dot gets
    another (RFC 5321 4.5.2). A line longer than 998 octets raises
    :class:`InvalidMessage`.
    """
    data = _EOL.sub(b"\r\n", data)
    if len(data) > MAX_DATA_LINE:
        longest = max(map(len, data.split(b"\r\n")))
        if longest > MAX_DATA_LINE:
            raise InvalidMessage(
                f"a line of {longest} octets: SMTP allows {MAX_DATA_LINE} (RFC 5321 4.5.3.1.6); "
                "encode the part (quoted-printable or base64) or wrap its lines"
            )
    if b"." in data:
        data = _DOT.sub(b"..", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


_BAD_IN_ADDRESS = re.compile(r"[\r\n\0<>]")


def _check_address(address: Any, what: str, *, empty_ok: bool = False) -> str:
    if not isinstance(address, str):
        raise InvalidAddress(f"{what} must be a str, not {type(address).__name__}")
    if _BAD_IN_ADDRESS.search(address) or address != address.strip():
        raise InvalidAddress(f"{what} {address!r} has a line break, NUL, <, > or surrounding space")
    if not address and not empty_ok:
        raise InvalidAddress(f"{what} is empty")
    return address


def _is_ascii(s: str) -> bool:
    return s.isascii()


class Prepared(NamedTuple):
    """A message ready to send: its envelope and its bytes (see :func:`prepare`)."""

    #: The reverse-path (MAIL FROM); "" is the null sender ``<>``.
    sender: str
    #: The recipients (RCPT TO), without duplicates, in order.
    recipients: list[str]
    #: The message's bytes (line endings as generated; :func:`encode_data` makes them CRLF).
    data: bytes
    #: True when an address is not ASCII, so the server must offer SMTPUTF8.
    international: bool
    #: The message itself (to be generated again in 7 bits for a server without 8BITMIME), or None.
    message: Message | None = None


_FOLD = re.compile(r"\r?\n[ \t]")


def _check_headers(msg: Message) -> None:
    for name, value in msg.items():
        if not isinstance(name, str) or re.search(r"[\0-\x20:\x7f]", name):
            raise InvalidMessage(f"the header name {name!r} is not a field name")
        text = _FOLD.sub(" ", str(value))
        if "\r" in text or "\n" in text or "\0" in text:
            raise InvalidMessage(f"the {name} header has a line break or NUL in it (header injection?)")


def _generate(msg: Message, international: bool, seven_bit: bool = False) -> bytes:
    policy = _policy.SMTPUTF8 if international else _policy.SMTP
    if seven_bit:
        policy = policy.clone(cte_type="7bit")
    out = io.BytesIO()
    try:
        gen: Any = BytesGenerator(out, mangle_from_=False, policy=policy)
        gen.flatten(msg, linesep="\r\n")
    except (ValueError, TypeError, LookupError) as e:  # HeaderWriteError (a ValueError) among them
        raise InvalidMessage(f"the message cannot be generated: {e}") from e
    return out.getvalue()


def _envelope(msg: Message) -> tuple[str | None, list[str]]:
    """Sender and recipients from the headers, as smtplib's ``send_message`` takes them."""
    resent = msg.get_all("Resent-Date")
    if resent and len(resent) > 1:
        raise InvalidMessage("the message has several Resent- blocks; give sender and recipients")
    prefix = "Resent-" if resent else ""
    senders = msg.get_all(prefix + "Sender") or msg.get_all(prefix + "From") or []
    sender = None
    if senders:
        found = getaddresses([str(v) for v in senders])
        sender = found[0][1] if found else None
    fields: list[str] = []
    for name in ("To", "Cc", "Bcc"):
        fields += [str(v) for v in msg.get_all(prefix + name) or []]
    return sender, [addr for _, addr in getaddresses(fields) if addr]


def prepare(
    message: Message | bytes | str,
    sender: str | None = None,
    recipients: str | Iterable[str] | None = None,
) -> Prepared:
    """Check a message and make its envelope and bytes; every refusal comes before a byte is sent.

    *message* is an :class:`email.message.Message` (an ``EmailMessage``):
    *sender* defaults to its Sender or From header, *recipients* to its To,
    Cc and Bcc headers (the Resent- ones for a resent message); Bcc and
    Resent-Bcc are never sent. It is generated with ``email.policy.SMTP``
    (``SMTPUTF8`` when an address is not ASCII). Bytes or str are sent as
    they are (then *sender* and *recipients* are needed).
    """
    if isinstance(message, Message):
        _check_headers(message)
        head_sender, head_recipients = _envelope(message)
        if sender is None:
            sender = head_sender
        if recipients is None:
            recipients = head_recipients
    elif not isinstance(message, (bytes, bytearray, str)):
        raise InvalidMessage(f"the message must be an email.message.Message, bytes or str, not {message!r}")
    if sender is None:
        raise InvalidAddress("no sender: give one, or a From header")
    _check_address(sender, "the sender", empty_ok=True)
    if isinstance(recipients, str):
        recipients = [recipients]
    rcpts: list[str] = []
    for r in recipients or ():
        if _check_address(r, "a recipient") not in rcpts:
            rcpts.append(r)
    if not rcpts:
        raise NoRecipients("the message has no recipient (no To, Cc or Bcc header, and none were given)")
    international = not all(map(_is_ascii, [sender, *rcpts]))
    if isinstance(message, Message):
        if message.get_all("Bcc") is not None or message.get_all("Resent-Bcc") is not None:
            message = copy.copy(message)  # deleting rebinds the header list: the caller's is untouched
            del message["Bcc"]
            del message["Resent-Bcc"]
        data = _generate(message, international)
        return Prepared(sender, rcpts, data, international, message)
    if isinstance(message, str):
        if not message.isascii() and not international:
            raise InvalidMessage("a str message must be ASCII; give bytes, or an EmailMessage")
        message = message.encode("utf-8")
    return Prepared(sender, rcpts, bytes(message), international)


# -- the client -----------------------------------------------------------------------------------


def _address_literal(sockname: Any) -> str:
    try:
        ip = ipaddress.ip_address(sockname[0])
    except (ValueError, TypeError, IndexError):
        return "localhost"
    return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"


class SMTPClient:
    """An SMTP connection: ``async with SMTPClient(host) as c: await c.send_message(msg)``.

    Entering the block connects (implicit TLS with ``tls=True``), reads the
    greeting, says EHLO (HELO if the server does not know it), upgrades with
    STARTTLS as *starttls* says, and logs in when *user* is given; leaving it
    says QUIT and closes. Or call :meth:`connect` and :meth:`quit` yourself.

    *starttls*: ``"auto"`` (the default) upgrades when the server offers it
    and requires it when *user* is given; ``"required"`` (or True) refuses a
    server that does not offer it (:class:`SMTPNotSupported`);
    ``"opportunistic"`` upgrades when offered; ``"never"`` (or False) does not.
    *ssl* is an :class:`ssl.SSLContext` (default: the system's, verifying
    certificates and host names). *timeout* bounds each wait (connecting,
    each piece sent, each reply) in seconds; None waits forever. One task at a
    time uses a client; others wait their turn.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        tls: bool = False,
        starttls: str | bool = "auto",
        ssl: _ssl.SSLContext | None = None,
        user: str | None = None,
        password: str | None = None,
        local_hostname: str | None = None,
        server_hostname: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        allow_insecure_auth: bool = False,
    ) -> None:
        if starttls is True:
            starttls = "required"
        elif starttls is False:
            starttls = "never"
        if starttls not in _STARTTLS_MODES:
            raise ValueError(f"starttls must be one of {_STARTTLS_MODES} (or True/False), not {starttls!r}")
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext or None, not {ssl!r}")
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        if port is None:
            port = 465 if tls else 25
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port must be in 1-65535, not {port!r}")
        if local_hostname is not None and re.search(r"[\s\0]", local_hostname):
            raise ValueError(f"local_hostname {local_hostname!r} has a space or line break in it")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        #: The server's host name (and the name its certificate is checked for, by default).
        self.host = host
        #: The server's port.
        self.port = port
        self.tls_mode = tls
        self.starttls_mode: str = starttls
        self._ssl = ssl
        self._user = user
        self._password = password
        self.local_hostname = local_hostname
        self._server_hostname = server_hostname or host
        self.timeout = timeout
        self.allow_insecure_auth = allow_insecure_auth
        self._sock: Socket | None = None
        self._lock = Lock(reentrant=False)
        #: The extensions of the last EHLO reply (keyword lower-cased -> parameters); empty after HELO.
        self.extensions: dict[str, str] = {}
        #: True once EHLO was answered (False after a HELO fallback).
        self.esmtp = False
        #: The greeting's reply.
        self.greeting: Reply | None = None
        self._said_hello = False

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else ("tls" if self._sock.tls else "plain")
        return f"<coserve.smtp.SMTPClient {self.host}:{self.port} {state}>"

    # -- state -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self._sock is not None

    @property
    def tls(self) -> bool:
        """True once the connection speaks TLS (implicit, or after STARTTLS)."""
        return self._sock is not None and self._sock.tls

    def supports(self, extension: str) -> bool:
        """True when the last EHLO reply offered *extension* (``"pipelining"``, ``"STARTTLS"``...)."""
        return extension.lower() in self.extensions

    def close(self) -> None:
        """Close the connection at once, without QUIT (nothing happens if it is closed)."""
        sock, self._sock = self._sock, None
        self.extensions = {}
        self.esmtp = self._said_hello = False
        if sock is not None:
            sock.close()

    # -- I/O: one place that maps what the socket raises -------------------------------------

    def _socket(self) -> Socket:
        if self._sock is None:
            raise NotConnected("the client is not connected: use `async with SMTPClient(...)` or connect()")
        return self._sock

    async def _io(self, lines: bytes, replies: int) -> list[Reply]:
        """Send *lines* (may be empty), then read *replies* replies; a broken exchange closes."""
        sock = self._socket()
        out: list[Reply] = []
        try:
            if lines:
                await sock.send(lines)
            parser = ReplyParser()
            while len(out) < replies:
                reply = parser.feed(await sock.receive("*l"))
                if reply is not None:
                    out.append(reply)
        except BaseException as e:
            self.close()
            if isinstance(e, TimeoutError):
                raise SMTPTimeout(f"no answer from {self.host}:{self.port} within {self.timeout} s") from e
            if isinstance(e, LineTooLong):
                raise MalformedReply(f"a reply line longer than {MAX_REPLY_LINE} bytes") from e
            if isinstance(e, (ConnectionClosed, OSError, SocketClosed)) and not isinstance(e, SMTPError):
                raise ServerDisconnected(f"the server {self.host}:{self.port} went away: {e}") from e
            raise
        for reply in out:
            if reply.code == 421:  # the server is closing the connection (RFC 5321 3.8)
                self.close()
        return out

    async def _command(self, line: str) -> Reply:
        return (await self._io(self._encode(line), 1))[0]

    def _encode(self, line: str) -> bytes:
        if "\r" in line or "\n" in line:
            raise InvalidInput(f"a command with a line break: {line!r}")
        return line.encode("utf-8" if not line.isascii() else "ascii") + b"\r\n"

    # -- connecting --------------------------------------------------------------------

    async def connect(self) -> Reply:
        """Connect, read the greeting, say EHLO/HELO, STARTTLS and log in as configured; the greeting."""
        if self._sock is not None:
            raise SMTPError("the client is connected already")
        try:
            sock = await connect(
                self.host,
                self.port,
                ssl=(self._ssl or True) if self.tls_mode else None,
                server_hostname=self._server_hostname,
                timeout=self.timeout,
            )
        except TimeoutError as e:
            raise SMTPTimeout(f"connecting to {self.host}:{self.port} took over {self.timeout} s") from e
        except _ssl.SSLError as e:
            raise TLSError(f"TLS with {self.host}:{self.port} failed: {e}") from e
        except OSError as e:
            raise ConnectError(f"could not connect to {self.host}:{self.port}: {e}") from e
        sock.settimeout(self.timeout)
        sock.max_line = MAX_REPLY_LINE
        self._sock = sock
        try:
            (greeting,) = await self._io(b"", 1)
            self.greeting = greeting
            if greeting.code != 220:
                raise _refusal(GreetingRefused, greeting, "connect")
            await self.ehlo_or_helo()
            mode = self.starttls_mode
            if mode == "auto" and self._user is not None:
                mode = "required"
            if not self.tls and mode != "never":
                if self.supports("starttls"):
                    await self.starttls()
                elif mode == "required":
                    raise SMTPNotSupported(
                        f"{self.host}:{self.port} does not offer STARTTLS, and TLS is required"
                        + (" (credentials are never sent in clear)" if self._user is not None else "")
                    )
            if self._user is not None and self._password is not None:
                await self.login(self._user, self._password)
        except BaseException:
            self.close()
            raise
        return greeting

    async def __aenter__(self) -> SMTPClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None or (isinstance(exc[0], type) and issubclass(exc[0], SMTPReplyError)):
            await self.quit()  # the conversation is in step: say goodbye
        else:
            self.close()

    # -- commands ------------------------------------------------------------------------

    def _hello_name(self) -> str:
        if self.local_hostname:
            return self.local_hostname
        return _address_literal(self._socket().getsockname())

    async def ehlo(self, name: str | None = None) -> Reply:
        """Say EHLO and learn the server's extensions; a refusal raises :class:`HeloRefused`."""
        async with self._lock:
            reply = await self._command(f"EHLO {name or self._hello_name()}")
            if reply.code != 250:
                raise _refusal(HeloRefused, reply, "EHLO")
            self.extensions = parse_ehlo(reply.text)
            self.esmtp = self._said_hello = True
            return reply

    async def helo(self, name: str | None = None) -> Reply:
        """Say HELO (no extensions); a refusal raises :class:`HeloRefused`."""
        async with self._lock:
            reply = await self._command(f"HELO {name or self._hello_name()}")
            if reply.code != 250:
                raise _refusal(HeloRefused, reply, "HELO")
            self.extensions = {}
            self.esmtp = False
            self._said_hello = True
            return reply

    async def ehlo_or_helo(self) -> Reply:
        """EHLO, falling back to HELO when the server does not know EHLO (500, 502, 504)."""
        try:
            return await self.ehlo()
        except HeloRefused as e:
            if e.code not in _NOT_IMPLEMENTED:
                raise
        return await self.helo()

    async def starttls(self, ssl: _ssl.SSLContext | None = None) -> Reply:
        """Upgrade to TLS (RFC 3207) and say EHLO again; the server must offer STARTTLS."""
        if self.tls:
            raise SMTPError("the connection speaks TLS already")
        if not self.supports("starttls"):
            raise SMTPNotSupported(f"{self.host}:{self.port} does not offer STARTTLS")
        async with self._lock:
            reply = await self._command("STARTTLS")
            if reply.code != 220:
                raise _refusal(CommandRefused, reply, "STARTTLS")
            sock = self._socket()
            try:
                await sock.handshake(ssl or self._ssl or True, server_hostname=self._server_hostname)
            except BaseException as e:
                self.close()
                if isinstance(e, TimeoutError):
                    raise SMTPTimeout(f"the TLS handshake took over {self.timeout} s") from e
                if isinstance(e, _ssl.SSLError):
                    raise TLSError(f"TLS with {self.host}:{self.port} failed: {e}") from e
                if isinstance(e, OSError):
                    raise ServerDisconnected(f"the server went away during the TLS handshake: {e}") from e
                raise
            self.extensions = {}  # what the server said in clear is forgotten (RFC 3207 4.2)
            self.esmtp = self._said_hello = False
        await self.ehlo_or_helo()
        return reply

    async def login(self, user: str, password: str, mechanism: str | None = None) -> Reply:
        """Authenticate with CRAM-MD5, PLAIN or LOGIN (the first the server offers, or *mechanism*).

        Refused without TLS unless ``allow_insecure_auth`` (:class:`CleartextCredentials`);
        a mechanism the server does not offer raises :class:`SMTPNotSupported`,
        refused credentials :class:`AuthenticationFailed`.
        """
        if not self.tls and not self.allow_insecure_auth:
            raise CleartextCredentials(
                f"the connection to {self.host}:{self.port} has no TLS: the password would go in clear "
                "(use tls=True or STARTTLS; allow_insecure_auth=True to send it anyway)"
            )
        offered = self.extensions.get("auth", "").upper().split()
        if mechanism is not None:
            mechanism = mechanism.upper()
            if mechanism not in _AUTH_PREFERENCE:
                raise ValueError(f"mechanism must be one of {_AUTH_PREFERENCE}, not {mechanism!r}")
            if mechanism not in offered:
                raise SMTPNotSupported(f"the server does not offer AUTH {mechanism} (it offers {offered})")
        else:
            mechanism = next((m for m in _AUTH_PREFERENCE if m in offered), None)
            if mechanism is None:
                raise SMTPNotSupported(
                    f"the server offers no AUTH mechanism coserve knows ({offered or 'no AUTH'})"
                )
        u, p = user.encode("utf-8"), password.encode("utf-8")

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

        async with self._lock:
            if mechanism == "PLAIN":
                reply = await self._command("AUTH PLAIN " + b64(b"\0" + u + b"\0" + p))
            elif mechanism == "LOGIN":
                reply = await self._command("AUTH LOGIN")
                if reply.code == 334:
                    reply = await self._command(b64(u))
                if reply.code == 334:
                    reply = await self._command(b64(p))
            else:
                reply = await self._command("AUTH CRAM-MD5")
                if reply.code == 334:
                    try:
                        challenge = base64.b64decode(reply.text.encode("ascii"), validate=True)
                    except (ValueError, UnicodeEncodeError) as e:
                        await self._command("*")  # cancel the exchange (RFC 4954 4)
                        raise MalformedReply(
                            f"a CRAM-MD5 challenge that is not base64: {reply.text!r}"
                        ) from e
                    digest = hmac.new(p, challenge, "md5").hexdigest()
                    reply = await self._command(b64(u + b" " + digest.encode("ascii")))
            if reply.code != 235:
                raise _refusal(AuthenticationFailed, reply, f"AUTH {mechanism}")
            return reply

    async def noop(self) -> Reply:
        """NOOP: the server's 250 (a refusal raises :class:`CommandRefused`)."""
        return await self._simple("NOOP")

    async def rset(self) -> Reply:
        """RSET: abandon the mail transaction in progress."""
        return await self._simple("RSET")

    async def _simple(self, line: str) -> Reply:
        async with self._lock:
            reply = await self._command(line)
        if reply.code != 250:
            raise _refusal(CommandRefused, reply, line.split()[0])
        return reply

    async def command(self, line: str) -> Reply:
        """Send one command line (no CR/LF) and return the reply as it is, whatever its code."""
        async with self._lock:
            return await self._command(line)

    async def quit(self) -> None:
        """Say QUIT and close; a server that does not answer (within the timeout) is closed all the same."""
        if self._sock is None:
            return
        try:
            async with self._lock:
                await self._command("QUIT")
        except SMTPError:
            pass
        finally:
            self.close()

    # -- mail ----------------------------------------------------------------------------

    async def send_message(
        self,
        message: Message,
        sender: str | None = None,
        recipients: str | Iterable[str] | None = None,
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, str]]:
        """Send an :class:`email.message.EmailMessage`; the recipients refused, ``{addr: (code, text)}``.

        *sender* and *recipients* default to the headers (see :func:`prepare`);
        Bcc is never sent. A message accepted for some recipients returns the
        others' refusals; when all are refused, :class:`RecipientsRefused`.
        """
        if not isinstance(message, Message):
            raise InvalidMessage(
                f"send_message() takes an email.message.Message, not {type(message).__name__}"
            )
        return await self._deliver(prepare(message, sender, recipients), mail_options, rcpt_options)

    async def sendmail(
        self,
        sender: str,
        recipients: str | Iterable[str],
        data: bytes | str,
        *,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, str]]:
        """Send *data* (bytes, or ASCII str) as it is, smtplib's ``sendmail``; the refused recipients."""
        if isinstance(data, Message):
            raise InvalidMessage("sendmail() takes bytes; use send_message() for a Message")
        return await self._deliver(prepare(data, sender, recipients), mail_options, rcpt_options)

    def _payload(self, prepared: Prepared) -> tuple[bytes, bool]:
        """The DATA bytes, and whether they are 8-bit (generated in 7 bits for a server without 8BITMIME)."""
        data = prepared.data
        eight_bit = not data.isascii()
        if eight_bit and not prepared.international and not self.supports("8bitmime"):
            if prepared.message is None:
                raise SMTPNotSupported("the data is 8-bit and the server does not offer 8BITMIME")
            data = _generate(prepared.message, False, seven_bit=True)
            eight_bit = not data.isascii()
            if eight_bit:
                raise SMTPNotSupported("the message has 8-bit headers and the server does not offer 8BITMIME")
        return encode_data(data), eight_bit

    async def _deliver(
        self, prepared: Prepared, mail_options: Sequence[str], rcpt_options: Sequence[str]
    ) -> dict[str, tuple[int, str]]:
        for option in (*mail_options, *rcpt_options):
            if not isinstance(option, str) or re.search(r"[\s\0]", option):
                raise InvalidInput(f"an ESMTP option with a space or line break: {option!r}")
        self._socket()
        if prepared.international and not self.supports("smtputf8"):
            raise SMTPNotSupported("an address is not ASCII and the server does not offer SMTPUTF8")
        payload, eight_bit = self._payload(prepared)
        options = list(mail_options)
        if "size" in self.extensions:
            size_param = self.extensions["size"]
            limit = int(size_param) if size_param.isdigit() else 0
            if limit and len(payload) > limit:
                raise MessageTooLarge(len(payload), limit)
            options.append(f"SIZE={len(payload)}")
        if eight_bit and self.supports("8bitmime"):
            options.append("BODY=8BITMIME")
        if prepared.international:
            options.append("SMTPUTF8")
        tail = "".join(" " + o for o in options)
        rtail = "".join(" " + o for o in rcpt_options)
        mail = self._encode(f"MAIL FROM:<{prepared.sender}>{tail}")
        rcpts = [self._encode(f"RCPT TO:<{r}>{rtail}") for r in prepared.recipients]
        async with self._lock:
            if not self._said_hello:
                raise SMTPError("say EHLO or HELO first")
            if self.supports("pipelining"):  # RFC 2920: MAIL, every RCPT and DATA in one go
                replies = await self._io(b"".join([mail, *rcpts, b"DATA\r\n"]), len(rcpts) + 2)
                return await self._finish(prepared, payload, replies)
            (reply,) = await self._io(mail, 1)
            if reply.code != 250:
                await self._reset()
                raise self._sender_refused(reply, prepared.sender)
            replies = [reply]
            for line in rcpts:
                replies += await self._io(line, 1)
            if not any(r.code in (250, 251) for r in replies[1:]):
                await self._reset()
                raise _recipients_refused(self._refused(prepared, replies))
            replies += await self._io(b"DATA\r\n", 1)
            return await self._finish(prepared, payload, replies)

    @staticmethod
    def _refused(prepared: Prepared, replies: list[Reply]) -> dict[str, tuple[int, str]]:
        return {
            addr: (r.code, r.text)
            for addr, r in zip(prepared.recipients, replies[1:], strict=False)
            if r.code not in (250, 251)
        }

    @staticmethod
    def _sender_refused(reply: Reply, sender: str) -> SMTPReplyError:
        e = _refusal(SenderRefused, reply, "MAIL FROM")
        e.sender = sender  # type: ignore[attr-defined]
        return e

    async def _finish(
        self, prepared: Prepared, payload: bytes, replies: list[Reply]
    ) -> dict[str, tuple[int, str]]:
        mail, data = replies[0], replies[-1]
        refused = self._refused(prepared, replies[:-1])
        accepted = len(refused) < len(prepared.recipients)
        if data.code == 354 and (mail.code != 250 or not accepted):
            # A pipelined DATA the server took although nothing can be delivered: end it empty (RFC 2920 3.1).
            data = (await self._io(b".\r\n", 1))[0]
        if mail.code != 250:
            await self._reset()
            raise self._sender_refused(mail, prepared.sender)
        if not accepted:
            await self._reset()
            raise _recipients_refused(refused)
        if data.code != 354:
            await self._reset()
            raise _refusal(DataRefused, data, "DATA")
        (done,) = await self._io(payload, 1)
        if done.code != 250:
            raise _refusal(DataRefused, done, "DATA")
        return refused

    async def _reset(self) -> None:
        """RSET after a refused transaction; a failure here is not the error to report."""
        if self._sock is not None:
            try:
                await self._command("RSET")
            except SMTPError:
                pass


async def send(
    message: Message,
    *,
    sender: str | None = None,
    recipients: str | Iterable[str] | None = None,
    host: str,
    port: int | None = None,
    starttls: str | bool = "auto",
    tls: bool = False,
    ssl: _ssl.SSLContext | None = None,
    user: str | None = None,
    password: str | None = None,
    local_hostname: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    allow_insecure_auth: bool = False,
) -> dict[str, tuple[int, str]]:
    """Send one message over a new connection (Copas's ``smtp.send``); the refused recipients.

    The message is checked (and its envelope made, see :func:`prepare`)
    before connecting. *port* defaults to 25, or 465 with ``tls=True``. The
    other arguments are :class:`SMTPClient`'s.
    """
    if not isinstance(message, Message):
        raise InvalidMessage(f"send() takes an email.message.Message, not {type(message).__name__}")
    prepared = prepare(message, sender, recipients)
    client = SMTPClient(
        host, port, tls=tls, starttls=starttls, ssl=ssl, user=user, password=password,
        local_hostname=local_hostname, timeout=timeout, allow_insecure_auth=allow_insecure_auth,
    )  # fmt: skip
    async with client:
        return await client._deliver(prepared, (), ())
