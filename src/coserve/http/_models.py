"""What an HTTP exchange is made of: :class:`URL`, :class:`Headers`, :class:`Request`, :class:`Response`.

No I/O here. A URL is parsed once with :mod:`urllib.parse` into the parts a
request needs (its origin, the request target, the Host header); international
host names are encoded with IDNA, and anything that could smuggle a second
request line (CR, LF, NUL, spaces in the host) is refused at parse time. The
password of ``user:pass@`` is kept out of the URL's text: the client turns it
into a Basic ``Authorization`` header.

:class:`Headers` keeps every field in the order received, with its case,
repeated fields included (``Set-Cookie`` comes as many fields); lookups ignore
case, and ``headers["name"]`` joins repeated fields with ", " as RFC 9110 says
a recipient may.
"""

from __future__ import annotations

import codecs
import ipaddress
import json as _json
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import HTTPStatusError, InvalidURL, ResponseNotRead, UnsupportedScheme

if TYPE_CHECKING:
    from ._errors import HTTPError

__all__ = ["URL", "Headers", "Request", "Response", "Timeouts"]

DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_IN_URL = re.compile(r"[\x00-\x20\x7f]")  # controls and space; a space is encoded, not refused
_FORBIDDEN_CONTROLS = re.compile(r"[\x00\r\n]")
# RFC 3986 characters that may stay as they are in a path or query; anything else is %-encoded.
_SAFE_PATH = "/:@!$&'()*+,;=-._~%"
_SAFE_QUERY = _SAFE_PATH + "?"


def _encode_host(host: str, url: str) -> str:
    if not host:
        raise InvalidURL(f"no host in the URL {url!r}")
    if _FORBIDDEN_IN_URL.search(host) or any(c in host for c in "/\\?#@"):
        raise InvalidURL(f"the host of {url!r} has a character a host name cannot have")
    if ":" in host:  # urlsplit has removed the brackets of an IPv6 literal
        try:
            return str(ipaddress.IPv6Address(host.split("%", 1)[0]))
        except ValueError:
            raise InvalidURL(f"{host!r} in {url!r} is not an IPv6 address") from None
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise InvalidURL(f"the host {host!r} of {url!r} cannot be encoded with IDNA: {e}") from None


class URL:
    """An absolute http or https URL, parsed once (``URL("https://example.org/a?b=1")``).

    Raises :class:`~coserve.http.InvalidURL` for what cannot be requested and
    :class:`~coserve.http.UnsupportedScheme` for a scheme other than http(s).
    Treat it as immutable: :meth:`copy_with` and :meth:`with_params` make new ones.
    """

    __slots__ = ("fragment", "host", "password", "path", "port", "query", "scheme", "username")

    @classmethod
    def parse(cls, url: str | URL) -> URL:
        """``URL(url)``, remembered: a program that requests the same URLs parses each once."""
        if isinstance(url, URL):
            return url
        parsed = _PARSED.get(url)
        if parsed is None:
            parsed = cls(url)
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[url] = parsed
        return parsed

    def __init__(self, url: str | URL) -> None:
        if isinstance(url, URL):
            for name in URL.__slots__:
                setattr(self, name, getattr(url, name))
            return
        if not isinstance(url, str):
            raise InvalidURL(f"a URL is a str, not {type(url).__name__}")
        if _FORBIDDEN_CONTROLS.search(url):
            raise InvalidURL(f"the URL {url!r} has a CR, LF or NUL in it")
        url = url.strip()
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise InvalidURL(f"cannot parse the URL {url!r}: {e}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            if not scheme or not parts.netloc:
                raise InvalidURL(f"{url!r} is not an absolute URL (http://host/...)")
            raise UnsupportedScheme(f"the scheme {scheme!r} of {url!r} is not supported (http or https)")
        if port is not None and not 0 < port <= 65535:
            raise InvalidURL(f"the port of {url!r} is out of range (1 to 65535)")
        if parts.port is None and parts.netloc.rsplit("]", 1)[-1].endswith(":"):
            port = None  # "host:" means the default port
        #: ``"http"`` or ``"https"``.
        self.scheme = scheme
        #: The host: lower case, IDNA-encoded, an IPv6 address without brackets.
        self.host = _encode_host(parts.hostname or "", url)
        #: The port (the scheme's default if the URL had none).
        self.port: int = port or DEFAULT_PORTS[scheme]
        #: The path, %-encoded, at least ``"/"``.
        self.path = urllib.parse.quote(parts.path, safe=_SAFE_PATH) or "/"
        #: The query without its ``?`` (``""`` if none), %-encoded.
        self.query = urllib.parse.quote(parts.query, safe=_SAFE_QUERY)
        #: The fragment (never sent).
        self.fragment = parts.fragment
        #: The user name of ``user:pass@``, decoded, or None.
        self.username = urllib.parse.unquote(parts.username) if parts.username is not None else None
        #: The password of ``user:pass@``, decoded, or None.
        self.password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        if _FORBIDDEN_IN_URL.search(self.path + self.query):  # pragma: no cover - quote() encodes them
            raise InvalidURL(f"the URL {url!r} has a control character in it")

    @property
    def origin(self) -> tuple[str, str, int]:
        """``(scheme, host, port)``: what the connection pool and the same-origin rules compare."""
        return (self.scheme, self.host, self.port)

    @property
    def target(self) -> str:
        """The request target: the path and the query (``/a?b=1``)."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def netloc(self) -> str:
        """``host[:port]`` as the Host header says it (the port only when not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def copy_with(self, *, query: str | None = None, strip_userinfo: bool = False) -> URL:
        """A copy with another query and/or without the ``user:pass@`` part (itself if nothing changes)."""
        if query is None and (not strip_userinfo or (self.username is None and self.password is None)):
            return self
        u = URL(self)
        if query is not None:
            u.query = query
        if strip_userinfo:
            u.username = u.password = None
        return u

    def with_params(self, params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> URL:
        """A copy with *params* (a dict, or pairs; a list value repeats the name) added to the query."""
        if not params:
            return self
        pairs = params.items() if isinstance(params, Mapping) else params
        flat: list[tuple[str, str]] = []
        for name, value in pairs:
            values = value if isinstance(value, (list, tuple)) else [value]
            flat.extend((str(name), _param_str(v)) for v in values)
        extra = urllib.parse.urlencode(flat)
        return self.copy_with(query=f"{self.query}&{extra}" if self.query else extra)

    def join(self, location: str) -> URL:
        """The URL *location* (a redirect's, perhaps relative) means when read from this one."""
        if _FORBIDDEN_CONTROLS.search(location):
            raise InvalidURL(f"the redirect location {location!r} has a CR, LF or NUL in it")
        return URL(urllib.parse.urljoin(str(self), location.strip()))

    def __str__(self) -> str:
        userinfo = ""
        if self.username is not None:
            userinfo = urllib.parse.quote(self.username, safe="") + "@"
        query = f"?{self.query}" if self.query else ""
        fragment = f"#{self.fragment}" if self.fragment else ""
        return f"{self.scheme}://{userinfo}{self.netloc}{self.path}{query}{fragment}"

    def __repr__(self) -> str:
        return f"URL({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = URL(other)
            except InvalidURL:
                return False
        if not isinstance(other, URL):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


_PARSED: dict[str, URL] = {}
_PARSED_MAX = 1024


def _param_str(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    return str(value)


class Headers(MutableMapping[str, str]):
    """Header fields: case-insensitive lookups, order and repeated fields kept.

    ``headers["content-type"]`` is the value (repeated fields joined with
    ", "); :meth:`get_list` gives each field apart (use it for Set-Cookie);
    :meth:`items` gives every ``(name, value)`` pair as received or set.
    """

    __slots__ = ("_fields", "_keys")

    def __init__(self, headers: HeadersLike = None) -> None:
        self._fields: list[tuple[str, str]] = []
        self._keys: list[str] = []  # the lower-cased name of each field, in step with _fields
        if headers is not None:
            self.update_from(headers)

    @classmethod
    def _of_pairs(cls, pairs: list[tuple[str, str]]) -> Headers:
        """Headers made of *pairs* as they are (the parser's fields: already str, kept in order)."""
        h = cls.__new__(cls)
        h._fields = pairs
        h._keys = [n.lower() for n, _ in pairs]
        return h

    def update_from(self, headers: HeadersLike) -> None:
        """Set the fields of *headers* (a mapping, pairs or Headers), each name replacing earlier ones."""
        if isinstance(headers, Headers):
            pairs: Iterable[tuple[str, str]] = headers._fields
        elif isinstance(headers, Mapping):
            pairs = headers.items()
        elif headers is None:
            return
        else:
            pairs = headers
        seen: set[str] = set()
        for name, value in pairs:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"header names and values are str, not {name!r}: {value!r}")
            key = name.lower()
            if key not in seen:
                seen.add(key)
                if key in self._keys:
                    self._remove(key)
            self._fields.append((name, value))
            self._keys.append(key)

    def add(self, name: str, value: str) -> None:
        """Add a field, keeping those of the same name (for repeated fields)."""
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"header names and values are str, not {name!r}: {value!r}")
        self._fields.append((name, value))
        self._keys.append(name.lower())

    def get_list(self, name: str) -> list[str]:
        """Every value of the fields named *name*, in order."""
        key = name.lower()
        return [f[1] for k, f in zip(self._keys, self._fields, strict=True) if k == key]

    def get(self, name: str, default: Any = None) -> Any:
        """The value of *name* (repeated fields joined with ", "), or *default*."""
        key = name.lower()
        keys = self._keys
        if key not in keys:
            return default
        if keys.count(key) == 1:
            return self._fields[keys.index(key)][1]
        return ", ".join(self.get_list(name))

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every ``(name, value)`` pair, repeated fields included, in order."""
        return list(self._fields)

    def copy(self) -> Headers:
        """An independent copy."""
        h = Headers.__new__(Headers)
        h._fields = list(self._fields)
        h._keys = list(self._keys)
        return h

    def _remove(self, key: str) -> bool:
        keys = self._keys
        if key not in keys:
            return False
        kept = [(k, f) for k, f in zip(keys, self._fields, strict=True) if k != key]
        self._keys = [k for k, _ in kept]
        self._fields = [f for _, f in kept]
        return True

    def __getitem__(self, name: str) -> str:
        value = self.get(name, _MISSING)
        if value is _MISSING:
            raise KeyError(name)
        return str(value)

    def __setitem__(self, name: str, value: str) -> None:
        self._remove(name.lower())
        self.add(name, value)

    def __delitem__(self, name: str) -> None:
        if not self._remove(name.lower()):
            raise KeyError(name)

    def pop(self, name: str, *default: Any) -> Any:
        """Remove every field named *name* and return its value (or *default*)."""
        value = self.get(name, _MISSING)
        if value is _MISSING:
            if default:
                return default[0]
            raise KeyError(name)
        self._remove(name.lower())
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(self._keys))

    def __len__(self) -> int:
        return len(set(self._keys))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            mine = [(k, v) for k, (_, v) in zip(self._keys, self._fields, strict=True)]
            theirs = [(k, v) for k, (_, v) in zip(other._keys, other._fields, strict=True)]
            return mine == theirs
        if isinstance(other, Mapping):
            return dict(self) == {k.lower(): v for k, v in other.items()}
        return NotImplemented

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"


_MISSING: Any = object()


HeadersLike = Headers | Mapping[str, str] | Sequence[tuple[str, str]] | None


@dataclass(frozen=True)
class Timeouts:
    """Timeouts of a request, in seconds (None: no limit).

    *connect* bounds connecting with the TLS handshake; *read* bounds each
    wait for the server (to take a piece of the request, or to send a piece of
    the response) and restarts on progress, like Copas's socket timeouts;
    *request* bounds the whole request, redirects and body included (turbo's
    ``request_timeout``); *pool* bounds the wait for a free connection.
    A number given as ``timeout=`` sets *connect* and *read*.
    """

    connect: float | None = 20.0
    read: float | None = 60.0
    request: float | None = None
    pool: float | None = None

    @classmethod
    def of(cls, value: Timeouts | float | None) -> Timeouts:
        """The Timeouts an option value means: a Timeouts as is, a number for connect and read."""
        if isinstance(value, Timeouts):
            return value
        if value is None:
            return cls(connect=None, read=None)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, None or a Timeouts, not {value!r}")
        return cls(connect=float(value), read=float(value))

    def __post_init__(self) -> None:
        for name in ("connect", "read", "request", "pool"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0):
                raise ValueError(f"Timeouts.{name} must be a number of seconds >= 0 or None, not {v!r}")


class Request:
    """A request as sent: ``method``, ``url`` and ``headers`` (turbo's ``response.request``)."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(self, method: str, url: URL, headers: Headers, body: Any = None) -> None:
        #: The method (``"GET"``).
        self.method = method
        #: The URL requested (without credentials).
        self.url = url
        #: The header fields sent, Host and the rest.
        self.headers = headers
        #: The body given (bytes, a file, a stream), or None.
        self.body = body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


class BodyStream(Protocol):
    """What a streamed response reads its body from (the client's side of a connection)."""

    async def next_chunk(self) -> bytes | None:
        """The next decoded piece of the body (never empty), or None at its end."""

    def close(self, reusable: bool) -> None:
        """Let the connection go: back to the pool if *reusable* (the body was read to its end)."""


class Response:
    """An HTTP response (turbo's ``HTTPResponse``; httpx's ``Response``).

    When ``error`` is set (only :func:`coserve.http.fetch` returns such a
    response), every other field is None except ``request_time`` and
    ``request``.
    """

    def __init__(
        self,
        status: int | None = None,
        reason: str | None = None,
        http_version: str | None = None,
        headers: Headers | None = None,
        *,
        url: URL | None = None,
        request: Request | None = None,
        body: bytes | None = None,
        error: HTTPError | None = None,
        request_time: float | None = None,
        cookies: dict[str, str] | None = None,
    ) -> None:
        #: The status code (200); turbo calls it ``code``.
        self.status = status
        #: The reason phrase (``"OK"``).
        self.reason = reason
        #: ``"1.1"`` or ``"1.0"``.
        self.http_version = http_version
        #: The response's header fields (case-insensitive, repeated fields kept).
        self.headers = headers
        #: The final URL, after redirects.
        self.url = url
        #: The request that was sent for this response.
        self.request = request
        #: The body, decoded (None for a streamed response not read yet).
        self.body = body
        #: The responses of the redirects that led here, oldest first.
        self.history: list[Response] = []
        #: For fetch(): the failure, with ``code`` and ``message``; None otherwise.
        self.error = error
        #: Seconds from the start of the request until its body was read (or it failed).
        self.request_time = request_time
        #: The cookies this response set (name: value).
        self.cookies: dict[str, str] = cookies if cookies is not None else {}
        self._stream: BodyStream | None = None
        self._started = 0.0

    def __repr__(self) -> str:
        if self.error is not None:
            return f"<Response error {self.error.code}: {self.error.message}>"
        return f"<Response [{self.status} {self.reason}]>"

    @property
    def code(self) -> int | None:
        """The status code, by turbo's name."""
        return self.status

    @property
    def is_redirect(self) -> bool:
        """True for a 301, 302, 303, 307 or 308 with a Location."""
        return (
            self.status in (301, 302, 303, 307, 308)
            and self.headers is not None
            and "location" in self.headers
        )

    @property
    def encoding(self) -> str:
        """The charset of the Content-Type (``utf-8`` if it names none, or one Python does not know)."""
        ctype = self.headers.get("content-type", "") if self.headers is not None else ""
        for param in ctype.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                name = value.strip().strip('"').strip("'")
                try:
                    return codecs.lookup(name).name
                except LookupError:
                    break
        return "utf-8"

    @property
    def text(self) -> str:
        """The body decoded with :attr:`encoding` (undecodable bytes replaced)."""
        if self.body is None:
            raise _not_read()
        return self.body.decode(self.encoding, errors="replace")

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON (:func:`json.loads`)."""
        if self.body is None:
            raise _not_read()
        return _json.loads(self.body, **kwargs)

    def raise_for_status(self) -> Response:
        """Raise :class:`~coserve.http.HTTPStatusError` for a 4xx or 5xx status; returns the response."""
        if self.error is not None:
            raise self.error
        if self.status is not None and self.status >= 400:
            kind = "client error" if self.status < 500 else "server error"
            raise HTTPStatusError(
                f"{kind} {self.status} {self.reason} for {self.url}", request=self.request, response=self
            )
        return self

    # -- streamed bodies -----------------------------------------------------------------------

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body, decoded, piece by piece as it arrives (for bodies larger than memory)."""
        if self._stream is None:
            if self.body is None:
                raise _not_read("the body was already iterated; read it with read() instead")
            if self.body:
                yield self.body
            return
        stream = self._stream
        done = False
        try:
            while True:
                chunk = await stream.next_chunk()
                if chunk is None:
                    done = True
                    return
                yield chunk
        finally:
            self._stream = None
            stream.close(reusable=done)
            if not done:
                self.body = None

    async def read(self) -> bytes:
        """Read the rest of the body and return all of it (also kept in :attr:`body`)."""
        stream = self._stream
        if stream is not None:
            chunks = []
            try:
                while (chunk := await stream.next_chunk()) is not None:
                    chunks.append(chunk)
            except BaseException:
                self._stream = None
                stream.close(reusable=False)
                raise
            self._stream = None
            self.body = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        if self.body is None:
            raise _not_read("the body was iterated already, so it cannot be read again")
        return self.body

    async def _discard(self, limit: int) -> None:
        """Read and drop the rest of the body (a redirect's) so the connection can be reused.

        Past *limit* decoded bytes it is not worth it: the connection is closed instead.
        """
        stream = self._stream
        if stream is None:
            return
        seen = 0
        while seen <= limit:
            chunk = await stream.next_chunk()
            if chunk is None:  # the stream has let the connection go
                self._stream = None
                return
            seen += len(chunk)
        await self.aclose()

    async def aclose(self) -> None:
        """Let the connection go without reading the rest of the body (it is closed, not reused)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close(reusable=False)


def _not_read(
    message: str = "the body of a streamed response has not been read; await read() first",
) -> ResponseNotRead:
    return ResponseNotRead(message)
