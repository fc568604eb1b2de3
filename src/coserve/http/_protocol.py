"""HTTP/1.1 for a client, without I/O: requests to bytes, and bytes to response events.

Nothing here touches a socket (h11's shape): :func:`serialize_head` turns a
request's method, target and header fields into bytes, refusing what could
smuggle a second request; :class:`ResponseReader` is fed the bytes a server
sent and returns events (:class:`Informational`, :class:`ResponseHead`,
:class:`Data`, :class:`EndOfMessage`); :class:`BodyDecoder` inflates gzip and
deflate bodies within limits. The client drives them; tests feed them bytes
whole and split at every boundary.

Framing is httptools' (llhttp, the parser of Node.js): we do not parse status
lines, header fields, Content-Length or chunked encoding here. What the reader
adds is what llhttp cannot know or does not bound:

- **Responses without a body.** A response to HEAD carries the Content-Length
  of the body it does not send, and llhttp cannot know the request was HEAD
  (httptools issue #47). So the reader feeds the parser exactly the header
  block (it finds the blank line that ends it) and, for HEAD, 1xx, 204 and
  304, ends the message at headers-complete itself and starts a new parser
  for what follows. llhttp knows about 1xx/204/304, but ending them here too
  keeps one rule for every response without a body.
- **Limits on what a server may send** (the defaults below): a status or
  header line longer than :data:`MAX_LINE` or more than :data:`MAX_FIELDS`
  header fields is a :class:`RemoteProtocolError`, raised before the parser
  (which would keep accumulating) sees more.
- **The end of a read-until-close body** (neither Content-Length nor chunked):
  httptools has no ``feed_eof``, so :meth:`ResponseReader.feed_eof` ends it.
- **Bytes after the end of a response** mean the connection cannot be reused
  (the server sent more than it framed); ``reader.excess`` says so.
"""

from __future__ import annotations

import importlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httptools

from ._errors import BodyTooLarge, DecodingError, HTTPError, LocalProtocolError, RemoteProtocolError, errors

__all__ = [
    "DEFAULT_MAX_RATIO",
    "MAX_FIELDS",
    "MAX_LINE",
    "BodyDecoder",
    "Data",
    "EndOfMessage",
    "Informational",
    "ResponseHead",
    "ResponseReader",
    "encode_chunk",
    "serialize_head",
]

#: The longest status line or header line a server may send: 64 KiB. nginx accepts 8 KiB header
#: lines by default (large_client_header_buffers), Node.js 16 KiB for a whole header block; a
#: client is lenient with servers it chose, but never unbounded.
MAX_LINE = 65536
#: The most header fields a response may have (urllib3's and http.client's limit: 100).
MAX_FIELDS = 100
#: A compressed body may inflate to this many times the bytes received, beyond its first MiB.
#: Text compresses 5 to 20 times; a gzip bomb over 1000 times (urllib3 CVE-2025-66471).
DEFAULT_MAX_RATIO = 100
#: Decoded bytes always allowed whatever the ratio, so that small, very compressible bodies pass.
RATIO_FLOOR = 1 << 20
_INFLATE_STEP = 1 << 16  # the most decoded bytes one zlib call may produce

# RFC 9110 token: what a method or a header name may be made of.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_IN_VALUE = re.compile(rb"[\x00\r\n]")
_BAD_IN_TARGET = re.compile(rb"[\x00-\x20\x7f]")

# -- requests ------------------------------------------------------------------------------------


def _latin1(text: str, what: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} {text!r} cannot be sent: it is not latin-1 (encode it)") from None


def serialize_head(
    method: str, target: str, headers: Sequence[tuple[str, str]], http_version: str = "1.1"
) -> bytes:
    """The request line and header fields, ending with the blank line.

    Raises :class:`LocalProtocolError`, before anything is sent, for a method
    or header name that is not a token, or a CR, LF or NUL in a target or
    header value (header injection, urllib3 CVE-2020-26137).
    """
    if method not in _CHECKED_NAMES:
        _check_token(method, "the method")
    t = _latin1(target, "the request target")
    if not t or _BAD_IN_TARGET.search(t):
        raise LocalProtocolError(f"the request target {target!r} has a control character or space in it")
    if http_version not in ("1.1", "1.0"):
        raise LocalProtocolError(f'http_version must be "1.1" or "1.0", not {http_version!r}')
    lines = [f"{method} {target} HTTP/{http_version}\r\n"]
    for name, value in headers:
        if name not in _CHECKED_NAMES:
            _check_token(name, "the header name")
        if "\r" in value or "\n" in value or "\x00" in value:
            raise LocalProtocolError(f"the value of header {name!r} has a CR, LF or NUL in it: {value!r}")
        lines.append(f"{name}: {value.strip(_OWS)}\r\n")
    lines.append("\r\n")
    head = "".join(lines)
    try:
        return head.encode("latin-1")
    except UnicodeEncodeError:
        for name, value in headers:
            _latin1(value, f"the value of header {name!r}")
        raise LocalProtocolError(f"the request head {head!r} cannot be sent: it is not latin-1") from None


_OWS = " \t"  # optional white space around a field value (RFC 9110 5.6.3)
# Method and header names already checked to be tokens (bounded: a program uses few names).
_CHECKED_NAMES: set[str] = set()


def _check_token(name: str, what: str) -> None:
    if not _TOKEN.fullmatch(_latin1(name, what)):
        raise LocalProtocolError(f"{what} {name!r} is not an HTTP token")
    if len(_CHECKED_NAMES) < 4096:
        _CHECKED_NAMES.add(name)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked request body (empty *data* is the last chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n"


# -- responses -----------------------------------------------------------------------------------


@dataclass
class Informational:
    """A 1xx response before the final one (``100 Continue``, ``103 Early Hints``)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]


@dataclass
class ResponseHead:
    """The status line and header fields of the final response."""

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    #: False when the server said it will close (Connection: close, HTTP/1.0, read-until-close).
    keep_alive: bool
    #: True when the body ends only when the server closes (neither Content-Length nor chunked).
    until_close: bool
    #: The Content-Length, if the body has one.
    content_length: int | None


@dataclass
class Data:
    """A piece of the body, as framed (not yet decoded)."""

    data: bytes


@dataclass
class EndOfMessage:
    """The response ended; ``reusable`` tells whether the connection may carry another request."""

    reusable: bool


Event = Informational | ResponseHead | Data | EndOfMessage

_HEAD, _BODY, _DONE = "head", "body", "done"
_NO_BODY_STATUS = (204, 304)


class ResponseReader:
    """Turns the bytes of one response into events; feed it with :meth:`feed` and :meth:`feed_eof`.

    *method* is the request's (a response to HEAD has no body). One reader per
    response: create a new one for the next request on the connection.
    """

    def __init__(self, method: str, *, max_line: int = MAX_LINE, max_fields: int = MAX_FIELDS) -> None:
        self._head_request = method.upper() == "HEAD"
        self._max_line = max_line
        self._max_fields = max_fields
        self._state = _HEAD
        self._events: list[Event] = []
        self._tail = b""  # the last bytes of the header block fed so far (the blank line may straddle)
        self._line = 0  # length of the header line in progress
        self._until_close = False
        self._keep_alive = False
        #: How many bytes were fed (0: the server sent nothing; a reused connection may be retried).
        self.received = 0
        #: True once bytes arrived after the end of the response: the connection must not be reused.
        self.excess = False
        self._new_parser()

    def _new_parser(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._fields: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._head_seen = False
        self._complete = False

    @property
    def done(self) -> bool:
        """True once :class:`EndOfMessage` was returned."""
        return self._state is _DONE

    # -- what the client calls -----------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse *data* (the next bytes received) and return the events they complete."""
        self.received += len(data)
        events = self._events = []
        while data and self._state is _HEAD:
            end = self._find_head_end(data)
            if end < 0:
                self._parse(data)
                return events
            self._parse(data[:end])
            data = data[end:]
            if not self._head_seen:  # pragma: no cover - llhttp raises for a block it does not end
                raise RemoteProtocolError("the server's header block did not parse")
            self._new_head()
        if data:
            if self._state is _BODY:
                self._parse(data)
            else:
                self.excess = True
        return events

    def feed_eof(self) -> list[Event]:
        """The server closed the connection: end a read-until-close body, or raise if the response is cut."""
        if self._state is _DONE:
            return []
        if self._state is _BODY and self._until_close:
            self._state = _DONE
            return [EndOfMessage(reusable=False)]
        if self._state is _HEAD and self.received == 0:
            raise RemoteProtocolError("the server closed the connection without sending a response")
        where = "in the middle of the headers" if self._state is _HEAD else "before the end of the body"
        raise RemoteProtocolError(f"the server closed the connection {where}", code=errors.SOCKET_ERROR)

    # -- the limits --------------------------------------------------------------------------------

    def _find_head_end(self, data: bytes) -> int:
        """Where the header block ends in *data* (just past its blank line), or -1; checks line lengths."""
        joined = self._tail + data[:3]
        i = joined.find(b"\r\n\r\n")
        if i >= 0:
            end = i + 4 - len(self._tail)
        else:
            i = data.find(b"\r\n\r\n")
            end = i + 4 if i >= 0 else -1
        part = data if end < 0 else data[:end]
        self._check_lines(part)
        self._tail = b"" if end >= 0 else (self._tail + part)[-3:]
        return end

    def _check_lines(self, part: bytes) -> None:
        pos, line = 0, self._line
        limit = self._max_line
        if line + len(part) <= limit:  # no line in it can be too long: only carry the last one's length
            last = part.rfind(b"\n")
            self._line = line + len(part) if last < 0 else len(part) - last - 1
            return
        while True:
            i = part.find(b"\n", pos)
            if i < 0:
                line += len(part) - pos
                break
            if line + i - pos > limit:
                line += i - pos
                break
            line, pos = 0, i + 1
        if line > limit:
            raise RemoteProtocolError(f"the server sent a status or header line longer than {limit} bytes")
        self._line = line

    # -- httptools ---------------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, HTTPError):
                raise cause from None
            raise  # pragma: no cover - a bug of ours in a callback
        except httptools.HttpParserUpgrade:
            raise RemoteProtocolError("the server switched protocols, which was not asked for") from None
        except httptools.HttpParserError as e:
            if self._state is _DONE:  # what follows the response is not ours to parse
                self.excess = True
                return
            if self._head_seen and self._status == 101:  # llhttp pauses on an upgrade
                raise RemoteProtocolError(
                    "the server switched protocols (101), which was not asked for"
                ) from None
            raise RemoteProtocolError(f"the server's response is malformed: {e}") from None

    def on_status(self, reason: bytes) -> None:
        """httptools: a piece of the reason phrase."""
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools: one header field (bounded by max_fields)."""
        if self._state is _DONE:
            self.excess = True
            return
        if len(self._fields) >= self._max_fields:
            raise RemoteProtocolError(f"the server sent more than {self._max_fields} header fields")
        self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        """httptools: the header block is parsed."""
        if self._state is _DONE:
            self.excess = True
            return
        p = self._parser
        self._head_seen = True
        self._status = p.get_status_code()
        self._version = p.get_http_version()
        self._keep_alive = p.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        """httptools: a piece of the body."""
        if self._state is _BODY:
            self._events.append(Data(body))

    def on_message_complete(self) -> None:
        """httptools: the body ended as framed."""
        if self._state is _HEAD:  # Content-Length: 0: the message ended with its header block
            self._complete = True
        elif self._state is _BODY:
            self._state = _DONE
            self._events.append(EndOfMessage(reusable=self._keep_alive))

    def _new_head(self) -> None:
        """The header block has been parsed: emit it and decide how the body is framed."""
        status = self._status
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._fields]
        reason = self._reason.decode("latin-1")
        self._line = 0
        if status == 101:
            raise RemoteProtocolError("the server switched protocols (101), which was not asked for")
        if 100 <= status < 200:
            self._events.append(Informational(status, reason, headers))
            self._new_parser()  # the final response follows
            return
        lengths: list[str] = []
        te: list[str] = []
        for n, v in headers:
            if len(n) in (14, 17):  # the length of both names: most fields are neither
                key = n.lower()
                if key == "content-length":
                    lengths.append(v)
                elif key == "transfer-encoding":
                    te.append(v)
        chunked = bool(te) and te[-1].replace(" ", "").lower().endswith("chunked")
        content_length = int(lengths[0]) if lengths and not chunked else None  # llhttp checked it
        no_body = self._head_request or status in _NO_BODY_STATUS
        self._until_close = not no_body and not chunked and content_length is None
        keep_alive = self._keep_alive and not self._until_close
        self._events.append(
            ResponseHead(
                status, reason, self._version, headers, keep_alive, self._until_close, content_length
            )
        )
        if no_body:
            # httptools issue #47: llhttp would wait for the Content-Length bytes of a HEAD response.
            self._state = _DONE
            self._events.append(EndOfMessage(reusable=keep_alive))
            self._parser = None  # type: ignore[assignment]
        elif self._complete:  # Content-Length: 0
            self._state = _DONE
            self._events.append(EndOfMessage(reusable=keep_alive))
        else:
            self._state = _BODY
            self._keep_alive = keep_alive


# -- bodies ---------------------------------------------------------------------------------------


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


#: Google's brotli bindings, when installed (the ``brotli`` extra): ``br`` bodies are decoded then.
#: 1.2 is the first whose decompressor bounds its output (``output_buffer_limit``), which the
#: bomb limits need.
brotli = _optional("brotli")
if brotli is not None and not hasattr(brotli, "Decompressor"):  # pragma: no cover - brotlipy, not brotli
    brotli = None


#: The zstandard package, when installed (the ``zstd`` extra): ``zstd`` bodies are decoded then.
zstandard = _optional("zstandard")


def accept_encoding() -> str:
    """The codings this client decodes, for Accept-Encoding: gzip, deflate; br and zstd when installed."""
    return ", ".join(_known_codings()[1:])  # x-gzip is understood, not asked for


def _known_codings() -> tuple[str, ...]:
    known: tuple[str, ...] = ("x-gzip", "gzip", "deflate")
    if brotli is not None:
        known += ("br",)
    if zstandard is not None:
        known += ("zstd",)
    return known


class _Sink:
    """Where zstandard's stream writer puts what it inflates: at most 64 KiB at a time, checked."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.produced = 0
        self.cap = 0
        self.check: BodyDecoder | None = None

    def write(self, data: bytes) -> int:
        self.produced += len(data)
        assert self.check is not None
        self.check.limit(self.produced, self.cap)  # raises out of the writer, before more is inflated
        self.parts.append(bytes(data))
        return len(data)


class _ZstdInflater:
    """A ``zstd`` body, inflated in bounded steps: the writer hands each 64 KiB to a checking sink."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._w = zstandard.ZstdDecompressor().stream_writer(
            self._sink, write_size=_INFLATE_STEP, closefd=False
        )

    @property
    def produced(self) -> int:
        return self._sink.produced

    def inflate(self, data: bytes, cap: int, check: BodyDecoder) -> bytes:
        sink = self._sink
        sink.cap, sink.check = cap, check
        try:
            self._w.write(data)
        except zstandard.ZstdError as e:
            raise DecodingError(f"the body could not be decoded (zstd): {e}") from None
        out, sink.parts = b"".join(sink.parts), []
        return out

    def flush(self) -> bytes:
        return b""


class _BrotliInflater:
    """A ``br`` body, inflated in bounded steps (brotli >= 1.2's ``output_buffer_limit``)."""

    def __init__(self) -> None:
        self._d = brotli.Decompressor()
        self.produced = 0

    def inflate(self, data: bytes, cap: int, check: BodyDecoder) -> bytes:
        out: list[bytes] = []
        d = self._d
        try:
            piece = d.process(data, output_buffer_limit=_INFLATE_STEP)
            while True:
                self.produced += len(piece)
                check.limit(self.produced, cap)
                out.append(piece)
                if d.is_finished() or (not piece and d.can_accept_more_data()):
                    break
                piece = d.process(b"", output_buffer_limit=_INFLATE_STEP)
        except brotli.error as e:
            raise DecodingError(f"the body could not be decoded (br): {e}") from None
        return b"".join(out)

    def flush(self) -> bytes:
        if not self._d.is_finished():
            raise DecodingError("the body could not be decoded (br): it ended before its last block")
        return b""


class _Inflater:
    """One content coding, inflated in bounded steps."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding in ("gzip", "x-gzip")
        # "deflate" is meant to be zlib-wrapped (RFC 9110), but some servers send raw deflate:
        # its first two bytes tell (a zlib header is CM=8 and a multiple of 31).
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS) if self._gzip else None
        self._head = b""
        #: Decoded bytes produced so far.
        self.produced = 0

    def inflate(self, data: bytes, cap: int, check: BodyDecoder) -> bytes:
        out: list[bytes] = []
        if self._z is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            cmf, flg = self._head[0], self._head[1]
            zlib_wrapped = cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
            self._z = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        while data:
            z = self._z
            if z.eof:
                if self._gzip and data:  # another gzip member follows
                    self._z = z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    break  # what follows a deflate stream is not part of it
            try:
                piece = z.decompress(data, _INFLATE_STEP)
            except zlib.error as e:
                coding = "gzip" if self._gzip else "deflate"
                raise DecodingError(f"the body could not be decoded ({coding}): {e}") from None
            self.produced += len(piece)
            check.limit(self.produced, cap)
            out.append(piece)
            data = z.unconsumed_tail or (z.unused_data if z.eof else b"")
        return b"".join(out)

    def flush(self) -> bytes:
        if self._z is None:
            if self._head:
                raise DecodingError("the body could not be decoded (deflate): it ended after one byte")
            return b""
        return self._z.flush() if not self._z.eof else b""


def _inflater(coding: str) -> _Inflater | _BrotliInflater | _ZstdInflater:
    if coding == "br":
        return _BrotliInflater()
    if coding == "zstd":
        return _ZstdInflater()
    return _Inflater(coding)


class BodyDecoder:
    """Decodes a body by its Content-Encoding (gzip, deflate; br, zstd) and enforces the body limits.

    *max_body_size* bounds the decoded body (None: no bound): past it,
    :class:`BodyTooLarge`. *max_ratio* bounds how much a compressed body may
    inflate (beyond :data:`RATIO_FLOOR`): past it, :class:`DecodingError`.
    Both are checked as the body inflates, in steps of 64 KiB, so a bomb is
    stopped before it is in memory. With *decompress* False, or a coding
    other than gzip/deflate, the body passes as received (still bounded).
    """

    def __init__(
        self,
        content_encoding: str | None,
        *,
        decompress: bool = True,
        max_body_size: int | None = None,
        max_ratio: float | None = DEFAULT_MAX_RATIO,
    ) -> None:
        if not content_encoding:
            codings = []
        elif content_encoding == "gzip":  # the common case, without the general parse below
            codings = ["gzip"]
        else:
            codings = [c.strip().lower() for c in content_encoding.split(",")]
            codings = [c for c in codings if c and c != "identity"]
        self._inflaters: list[_Inflater | _BrotliInflater | _ZstdInflater] = []
        known = _known_codings()
        if decompress and codings and all(c in known for c in codings):
            if len(codings) > 2:
                raise DecodingError(f"the body has {len(codings)} content codings; at most 2 are decoded")
            self._inflaters = [_inflater(c) for c in reversed(codings)]
        #: True when the body is being decoded (the Content-Encoding no longer applies to it).
        self.decoding = bool(self._inflaters)
        self._max_body = max_body_size
        self._max_ratio = max_ratio
        self.received = 0
        self.size = 0

    def limit(self, produced: int, cap: int) -> None:
        """Raise if *produced* decoded bytes exceed a limit (called as a body inflates)."""
        if produced > cap:
            if self._max_body is not None and produced > self._max_body:
                raise BodyTooLarge(
                    f"the decoded response body is larger than max_body_size ({self._max_body})"
                )
            raise DecodingError(
                f"the response body inflated more than {self._max_ratio} times its compressed size "
                f"({self.received} bytes received): a decompression bomb?"
            )

    def _cap(self) -> int:
        cap = self._max_body if self._max_body is not None else 1 << 62
        if self._inflaters and self._max_ratio is not None:
            cap = min(cap, max(RATIO_FLOOR, int(self._max_ratio * self.received)))
        return cap

    def decode(self, data: bytes) -> bytes:
        """The decoded bytes of the next piece of the (framed) body; may be empty."""
        self.received += len(data)
        if self._inflaters:
            cap = self._cap()
            for inflater in self._inflaters:
                data = inflater.inflate(data, cap, self)
        self.size += len(data)
        self.limit(self.size, self._cap())
        return data

    def flush(self) -> bytes:
        """What is left at the end of the body."""
        data = b""
        for inflater in self._inflaters:
            data = inflater.inflate(data, self._cap(), self) + inflater.flush() if data else inflater.flush()
        self.size += len(data)
        self.limit(self.size, self._cap())
        return data
