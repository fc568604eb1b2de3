"""The user's side: :class:`Client` (defaults, redirects, auth, cookies), the module-level calls, fetch().

The client knows nothing of sockets beyond asking the pool for a connection
and moving bytes: the protocol is :mod:`._protocol` (sans I/O), the
connections are :mod:`._pool`'s. One request goes:

1. options merged (the call's over the client's defaults) and checked; the
   URL parsed, its ``user:pass@`` turned into Basic auth; the request head
   serialized, which refuses bad input, all before any connection is made;
2. a connection from the pool (idle, or new: :func:`coserve.connect` with TLS
   verified, SNI and ALPN ``http/1.1``); the head and body sent; the response
   head read (1xx skipped);
3. on a reused connection that failed before the first response byte, an
   idempotent request with a replayable body is sent once more on a new one;
4. the body read through the :class:`~._protocol.BodyDecoder` (or streamed to
   the caller); the connection goes back to the pool only if the body was read
   to its end and the server keeps it alive, and is closed otherwise — also
   when anything fails or the request is cancelled, at any await;
5. a redirect is followed by the rules in docs/http.md.

Timeouts map onto coserve's own: *connect* is :func:`coserve.connect`'s,
*read* is the socket's per-operation timeout (send and receive, restarting on
progress), *request* a :func:`coserve.timeout_after` block around it all,
*pool* a block around the wait for a slot. Each becomes its own error class.

The module-level functions share one client per run: its idle connections
are closed when the run ends (:func:`coserve.at_run_end`), like every
client's, so a run leaves no socket open behind it.
"""

from __future__ import annotations

import base64
import email.message
import http.cookiejar
import io
import json as _json
import os
import ssl as _ssl
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any

from .. import Socket, at_run_end, connect, gettime, move_on_after, timeout_after
from .. import __version__ as _version
from ._errors import (
    BodyNotReplayable,
    BodyTooLarge,
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    HTTPError,
    InsecureRedirect,
    InvalidBody,
    LocalProtocolError,
    NetworkError,
    ReadTimeout,
    RemoteProtocolError,
    RequestTimeout,
    TLSError,
    TooManyRedirects,
    UnsupportedScheme,
)
from ._models import URL, Headers, Request, Response, Timeouts
from ._pool import Connection, Pool, is_idempotent
from ._protocol import (
    DEFAULT_MAX_RATIO,
    MAX_FIELDS,
    BodyDecoder,
    Data,
    EndOfMessage,
    Event,
    Informational,
    ResponseHead,
    ResponseReader,
    accept_encoding,
    encode_chunk,
    serialize_head,
)

__all__ = [
    "USER_AGENT",
    "Client",
    "delete",
    "fetch",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
]

#: The default User-Agent.
USER_AGENT = f"coserve/{_version}"
#: The codings the client decodes (Accept-Encoding with ``decompress=True``): br too with brotli.
ACCEPT_ENCODING = accept_encoding()
_READ_SIZE = 65536
_DRAIN_LIMIT = 65536  # a redirect's body longer than this is not read: its connection is closed

_NO_HEADERS = Headers()  # never changed: the request's headers are a new Headers

#: Every option a request takes (each also a Client default), with its default.
OPTIONS: dict[str, Any] = {
    "params": None,
    "headers": None,
    "auth": None,
    "cookies": None,
    "timeout": Timeouts(),
    "follow_redirects": True,
    "max_redirects": 5,
    "allow_insecure_redirect": False,
    "decompress": True,
    "max_body_size": None,
    "max_decompression_ratio": DEFAULT_MAX_RATIO,
    "max_header_fields": MAX_FIELDS,
    "keep_alive": True,
    "http_version": "1.1",
    "user_agent": USER_AGENT,
    "ssl": None,
    "on_headers": None,
    "proxy": None,
    "trust_env": False,
}
_BODY_OPTIONS = ("body", "json", "form", "files")
#: How long a request with ``Expect: 100-continue`` waits for the 100 before sending its body anyway
#: (curl's default).
EXPECT_TIMEOUT = 1.0


def _check_options(options: Mapping[str, Any], allow_body: bool) -> dict[str, Any]:
    for name in options:
        if name not in OPTIONS and not (allow_body and name in _BODY_OPTIONS):
            valid = ", ".join(sorted([*OPTIONS, *(_BODY_OPTIONS if allow_body else ())]))
            raise TypeError(f"unknown option {name!r}; the options are: {valid}")
    out = dict(options)
    if "timeout" in out:
        out["timeout"] = Timeouts.of(out["timeout"])
    if out.get("http_version", "1.1") not in ("1.1", "1.0"):
        raise ValueError(f'http_version must be "1.1" or "1.0", not {out["http_version"]!r}')
    for name in ("max_redirects", "max_header_fields"):
        v = out.get(name, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, not {v!r}")
    for name in ("max_body_size", "max_decompression_ratio"):
        v = out.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ValueError(f"{name} must be a number >= 0 or None, not {v!r}")
    auth = out.get("auth")
    if auth is not None and not (isinstance(auth, tuple) and len(auth) == 2):
        raise TypeError(f"auth must be a (user, password) tuple, not {auth!r}")
    proxy = out.get("proxy")
    if proxy is not None:
        out["proxy"] = _proxy_url(proxy)
    hook = out.get("on_headers")
    if hook is not None and not callable(hook):
        raise TypeError(f"on_headers must be callable, not {hook!r}")
    return out


# -- request bodies ----------------------------------------------------------------------------------


class _Body:
    """A request body, ready to be sent (and, if it can be, sent again for a 307/308 or a retry)."""

    def __init__(self, value: Any, json: Any, form: Any, files: Any = None) -> None:
        given = [n for n, v in (("body", value), ("json", json), ("form", form)) if v is not None]
        if len(given) > 1 or (files is not None and given and given != ["form"]):
            named = [*given, *(["files"] if files is not None else [])]
            raise InvalidBody(
                f"give one of body, json and form (or form with files), not {' and '.join(named)}"
            )
        self.content_type: str | None = None
        self.data: bytes | None = None
        self.source: Any = None
        self.start = 0
        self.length: int | None = 0
        self.kind = "none"
        self.used = False
        if files is not None:
            self._multipart(form, files)
            return
        if json is not None:
            value = _json.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
            self.content_type = "application/json"
        elif form is not None:
            pairs = form.items() if isinstance(form, Mapping) else form
            value = urllib.parse.urlencode(list(pairs), doseq=True).encode()
            self.content_type = "application/x-www-form-urlencoded"
        if value is None:
            return
        if isinstance(value, str):
            value = value.encode()
            self.content_type = self.content_type or "text/plain; charset=utf-8"
        if isinstance(value, (bytes, bytearray, memoryview)):
            self.kind, self.data, self.length = "bytes", bytes(value), len(value)
        elif hasattr(value, "read"):
            self.kind, self.source, self.length = "file", value, _remaining_size(value)
            try:
                self.start = value.tell()
            except (OSError, ValueError, AttributeError):
                self.start = -1  # not seekable: sent once
        elif isinstance(value, AsyncIterable):
            self.kind, self.source, self.length = "aiter", value, None
        elif isinstance(value, Iterable):
            self.kind, self.source, self.length = "iter", value, None
        else:
            raise InvalidBody(
                "a request body is bytes, str, a file or an (async) iterable of bytes, "
                f"not {type(value).__name__}"
            )

    def _multipart(self, form: Any, files: Any) -> None:
        """multipart/form-data (RFC 7578): the form's fields, then the files, streamed from files."""
        boundary = os.urandom(16).hex()
        parts: list[Any] = []  # bytes, or (file, its start) to stream

        def disposition(name: str, filename: str | None) -> str:
            quoted = name.replace("\\", "\\\\").replace('"', "%22")
            out = f'Content-Disposition: form-data; name="{quoted}"'
            if filename is not None:
                out += '; filename="' + filename.replace("\\", "\\\\").replace('"', "%22") + '"'
            return out

        pairs = list(form.items() if isinstance(form, Mapping) else form) if form else []
        for name, value in pairs:
            for v in value if isinstance(value, (list, tuple)) else [value]:
                data = v if isinstance(v, bytes) else str(v).encode()
                head = f"--{boundary}\r\n{disposition(str(name), None)}\r\n\r\n"
                parts.append(_multipart_text(head) + data + b"\r\n")
        if not isinstance(files, Mapping):
            raise InvalidBody(f"files is a mapping of field name to file, not {type(files).__name__}")
        for name, spec in files.items():
            filename, content, ctype = None, spec, "application/octet-stream"
            if isinstance(spec, tuple):
                if not 2 <= len(spec) <= 3:
                    raise InvalidBody(
                        f"a file is (filename, content) or (filename, content, type), not {spec!r}"
                    )
                filename, content = spec[0], spec[1]
                ctype = spec[2] if len(spec) == 3 else ctype
            elif hasattr(spec, "read"):
                filename = os.path.basename(str(getattr(spec, "name", name)))
            head = f"--{boundary}\r\n{disposition(str(name), filename)}\r\nContent-Type: {ctype}\r\n\r\n"
            parts.append(_multipart_text(head))
            if isinstance(content, str):
                content = content.encode()
            if isinstance(content, (bytes, bytearray, memoryview)):
                parts.append(bytes(content) + b"\r\n")
            elif hasattr(content, "read"):
                size = _remaining_size(content)
                try:
                    start = content.tell()
                except (OSError, ValueError, AttributeError):
                    start = -1
                parts.append((content, start, size))
                parts.append(b"\r\n")
            else:
                raise InvalidBody(f"a file's content is bytes, str or a file, not {type(content).__name__}")
        parts.append(f"--{boundary}--\r\n".encode())
        self.kind, self.source = "multipart", parts
        self.content_type = f"multipart/form-data; boundary={boundary}"
        sizes = [len(p) if isinstance(p, bytes) else p[2] for p in parts]
        self.length = None if None in sizes else sum(sizes)

    @property
    def replayable(self) -> bool:
        """Whether it can be sent again (bytes, or seekable files)."""
        if self.kind == "multipart":
            return all(isinstance(p, bytes) or p[1] >= 0 for p in self.source)
        return self.kind in ("none", "bytes") or (self.kind == "file" and self.start >= 0)

    def rewind(self) -> None:
        """Make it ready to be sent again, or raise :class:`BodyNotReplayable`."""
        if not self.used:
            return
        if not self.replayable:
            raise BodyNotReplayable(
                "the request body was a stream that has been sent; it cannot be sent again"
            )
        if self.kind == "file":
            self.source.seek(self.start)
        elif self.kind == "multipart":
            for part in self.source:
                if not isinstance(part, bytes):
                    part[0].seek(part[1])
        self.used = False

    async def buffer(self) -> None:
        """Read a stream of unknown length into memory (HTTP/1.0 has no chunked bodies)."""
        if self.length is None:
            self.data = b"".join([c async for c in self.chunks()])
            self.kind, self.length, self.used = "bytes", len(self.data), False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes, piece by piece."""
        self.used = True
        if self.kind == "bytes":
            assert self.data is not None
            yield self.data
        elif self.kind == "file":
            while True:
                chunk = self.source.read(_READ_SIZE)
                if not chunk:
                    return
                yield _as_bytes(chunk)
        elif self.kind == "multipart":
            for part in self.source:
                if isinstance(part, bytes):
                    yield part
                    continue
                while True:
                    chunk = part[0].read(_READ_SIZE)
                    if not chunk:
                        break
                    yield _as_bytes(chunk)
        elif self.kind == "aiter":
            async for chunk in self.source:
                yield _as_bytes(chunk)
        elif self.kind == "iter":
            for chunk in self.source:
                yield _as_bytes(chunk)


def _multipart_text(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # pragma: no cover - str always encodes as UTF-8 but for lone surrogates
        raise InvalidBody(f"a multipart field name cannot be encoded: {text!r}") from None


def _as_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    raise InvalidBody(f"a streamed request body yields bytes or str, not {type(chunk).__name__}")


def _remaining_size(f: Any) -> int | None:
    try:
        if isinstance(f, io.BytesIO):
            return len(f.getbuffer()) - f.tell()
        st = os.fstat(f.fileno())
        return st.st_size - f.tell() if st.st_size or os.path.isfile(getattr(f, "name", "")) else None
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


# -- the connection's side ------------------------------------------------------------------------


async def _send(sock: Socket, data: bytes) -> None:
    try:
        await sock.send(data)
    except TimeoutError:
        raise ReadTimeout("the server did not take the request within the read timeout") from None
    except OSError as e:
        raise NetworkError(f"the connection failed while sending the request: {e}") from None


async def _receive(sock: Socket) -> bytes:
    try:
        return await sock.receive_partial(_READ_SIZE)
    except _ssl.SSLEOFError:
        return b""  # a TLS peer that closed without close_notify: the end of the stream all the same
    except TimeoutError:
        raise ReadTimeout("the server sent nothing within the read timeout") from None
    except _ssl.SSLError as e:
        raise TLSError(f"TLS failed while reading the response: {e}") from None
    except OSError as e:
        raise NetworkError(f"the connection failed while reading the response: {e}") from None


class _BodyStream:
    """Reads a response body off its connection; the connection goes back to the pool at its end."""

    def __init__(
        self,
        pool: Pool,
        conn: Connection,
        reader: ResponseReader,
        pending: deque[Event],
        decoder: BodyDecoder,
        keep_alive: bool,
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._reader = reader
        self._pending = pending
        self._decoder = decoder
        self._keep_alive = keep_alive

    async def next_chunk(self) -> bytes | None:
        while self._conn is not None:
            if not self._pending:
                data = await _receive(self._conn.sock)
                self._pending.extend(self._reader.feed(data) if data else self._reader.feed_eof())
                continue
            event = self._pending.popleft()
            if isinstance(event, Data):
                out = self._decoder.decode(event.data)
                if out:
                    return out
            elif isinstance(event, EndOfMessage):
                tail = self._decoder.flush()
                self.close(event.reusable and self._keep_alive and not self._reader.excess)
                if tail:
                    return tail
        return None

    def close(self, reusable: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn, reusable)


# -- the client ----------------------------------------------------------------------------------


class _CookieResponse:
    """What http.cookiejar reads a response through (``info().get_all``)."""

    def __init__(self, headers: Headers) -> None:
        self._msg = email.message.Message()
        for value in headers.get_list("set-cookie"):
            self._msg["Set-Cookie"] = value
        for value in headers.get_list("set-cookie2"):
            self._msg["Set-Cookie2"] = value

    def info(self) -> email.message.Message:
        return self._msg


def _basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _ssl_from_turbo(options: Mapping[str, Any]) -> _ssl.SSLContext:
    """An SSLContext from turbo's ``ssl_options`` (ca_path, cert_file, priv_file, verify_ca)."""
    unknown = set(options) - {"ca_path", "cert_file", "priv_file", "verify_ca"}
    if unknown:
        raise TypeError(
            f"unknown ssl_options {sorted(unknown)}; turbo's are ca_path, cert_file, priv_file, verify_ca"
        )
    ca = options.get("ca_path")
    ctx = _ssl.create_default_context(
        cafile=ca if ca and not os.path.isdir(ca) else None, capath=ca if ca and os.path.isdir(ca) else None
    )
    if options.get("cert_file"):
        ctx.load_cert_chain(options["cert_file"], options.get("priv_file"))
    if options.get("verify_ca", True) is False:
        ctx.check_hostname = False
        ctx.verify_mode = _ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Client:
    """A connection pool and request defaults: ``async with Client(timeout=10) as c: await c.get(url)``.

    Any number of tasks may use one client at once. *defaults* are any of the
    request options (docs/http.md lists them); a call's options override them
    (``headers`` and ``params`` are merged). *max_connections* bounds the open
    connections, *max_connections_per_host* those to one scheme, host and
    port; an idle connection is closed after *idle_timeout* seconds. Close the
    client with :meth:`aclose` (or ``async with``); whatever it keeps open is
    closed at the end of the run anyway.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_connections_per_host: int = 10,
        idle_timeout: float = 15.0,
        **defaults: Any,
    ) -> None:
        self._defaults = {**OPTIONS, **_check_options(defaults, allow_body=False)}
        self._pool = Pool(
            max_connections=max_connections,
            max_connections_per_host=max_connections_per_host,
            idle_timeout=idle_timeout,
        )
        #: The cookies the client keeps (set by responses, or given as ``cookies=``).
        self.cookies = http.cookiejar.CookieJar()
        jar = self._defaults.pop("cookies")
        if isinstance(jar, http.cookiejar.CookieJar):
            self.cookies = jar
        elif jar:
            for name, value in dict(jar).items():
                self.cookies.set_cookie(_plain_cookie(name, value))
        self._default_ssl: _ssl.SSLContext | None = None
        self._turbo_ssl: dict[tuple[tuple[str, str], ...], _ssl.SSLContext] = {}
        self._registered = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<coserve.http.Client {'closed' if self._closed else 'open'} {self._pool.stats()}>"

    @property
    def pool(self) -> Pool:
        """The connection pool (``pool.stats()`` counts its connections)."""
        return self._pool

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle connections (the active ones close as their requests end); no more requests."""
        self._closed = True
        self._pool.close()

    def _end_of_run(self) -> None:
        self._registered = False
        if not self._closed:  # the next run starts with an empty pool
            self._pool.close()
            self._pool = Pool(
                max_connections=self._pool.max_connections,
                max_connections_per_host=self._pool.max_connections_per_host,
                idle_timeout=self._pool.idle_timeout,
            )
        else:
            self._pool.close()

    # -- the calls -------------------------------------------------------------------------------

    async def request(self, method: str, url: str | URL, **options: Any) -> Response:
        """Send a request and read its response, body included (see docs/http.md for the options)."""
        started = gettime()
        opts = self._merge(options)
        timeouts: Timeouts = opts["timeout"]
        if timeouts.request is None:  # the common case, without a timeout block
            response = await self._send(method, url, opts, started)
            await response.read()  # on failure, read() lets the connection go
            response.request_time = gettime() - started
            return response
        try:
            async with timeout_after(timeouts.request):
                response = await self._send(method, url, opts, started)
                await response.read()
        except TimeoutError as e:
            if isinstance(e, HTTPError):
                raise
            raise RequestTimeout(
                f"the request took longer than the request timeout ({timeouts.request} s)"
            ) from None
        response.request_time = gettime() - started
        return response

    def stream(self, method: str, url: str | URL, **options: Any) -> _StreamContext:
        """``async with client.stream("GET", url) as r:``, then ``async for chunk in r.iter_bytes()``.

        The body is not read in advance; the connection goes back to the pool
        if it was read to its end, and is closed otherwise when the block ends.
        The request timeout bounds the wait for the response's head.
        """
        return _StreamContext(self, method, url, options)

    async def get(self, url: str | URL, **options: Any) -> Response:
        """A GET request."""
        return await self.request("GET", url, **options)

    async def head(self, url: str | URL, **options: Any) -> Response:
        """A HEAD request (the response has no body)."""
        return await self.request("HEAD", url, **options)

    async def post(self, url: str | URL, **options: Any) -> Response:
        """A POST request."""
        return await self.request("POST", url, **options)

    async def put(self, url: str | URL, **options: Any) -> Response:
        """A PUT request."""
        return await self.request("PUT", url, **options)

    async def patch(self, url: str | URL, **options: Any) -> Response:
        """A PATCH request."""
        return await self.request("PATCH", url, **options)

    async def delete(self, url: str | URL, **options: Any) -> Response:
        """A DELETE request."""
        return await self.request("DELETE", url, **options)

    async def options(self, url: str | URL, **options: Any) -> Response:
        """An OPTIONS request."""
        return await self.request("OPTIONS", url, **options)

    # -- one request, redirects included ------------------------------------------------------------

    def _merge(self, options: Mapping[str, Any]) -> dict[str, Any]:
        given = _check_options(options, allow_body=True)
        opts = {**self._defaults}
        for name, value in given.items():
            if name == "headers" and value is not None and opts.get("headers"):
                merged = Headers(opts["headers"])
                merged.update_from(value)
                opts["headers"] = merged
            elif name == "params" and value is not None and opts.get("params"):
                opts["params"] = [*_pairs(opts["params"]), *_pairs(value)]
            else:
                opts[name] = value
        return opts

    async def _started(self, method: str, url: str | URL, options: Mapping[str, Any]) -> Response:
        opts = self._merge(options)
        timeouts: Timeouts = opts["timeout"]
        try:
            async with timeout_after(timeouts.request):
                response = await self._send(method, url, opts, gettime())
        except TimeoutError as e:
            if isinstance(e, HTTPError):
                raise
            raise RequestTimeout(
                f"the response did not come within the request timeout ({timeouts.request} s)"
            ) from None
        return response

    async def _send(self, method: str, url: str | URL, opts: dict[str, Any], started: float) -> Response:
        if self._closed:
            raise ClientClosed("the client is closed; make a new one")
        if not self._registered:
            at_run_end(self._end_of_run)
            self._registered = True
        if not isinstance(method, str):
            raise LocalProtocolError(f"the method is a str, not {method!r}")
        method = method.upper()
        target = URL.parse(url)
        auth = opts["auth"]
        if auth is None and target.username is not None:
            auth = (target.username, target.password or "")
        target = target.with_params(opts["params"]).copy_with(strip_userinfo=True)
        body = _Body(opts.get("body"), opts.get("json"), opts.get("form"), opts.get("files"))
        if opts["http_version"] == "1.0":
            await body.buffer()
        user_headers = Headers(opts["headers"]) if opts["headers"] else _NO_HEADERS
        extra_cookies = dict(opts["cookies"]) if opts.get("cookies") else {}
        history: list[Response] = []
        seen: set[tuple[str, str]] = set()  # filled when a redirect comes
        while True:
            request = Request(
                method, target, self._headers(target, body, auth, user_headers, extra_cookies, opts), body
            )
            response = await self._exchange(request, body, opts)
            response.history = list(history)
            response.request_time = gettime() - started
            self._extract_cookies(response, request)
            if not (opts["follow_redirects"] and response.is_redirect):
                return response
            try:
                assert response.headers is not None
                location = response.headers["location"]
                following = target.join(location)
                if (
                    target.scheme == "https"
                    and following.scheme == "http"
                    and not opts["allow_insecure_redirect"]
                ):
                    raise InsecureRedirect(
                        f"{target} redirected to {following}, from https to http; "
                        "pass allow_insecure_redirect=True to follow it",
                        request=request,
                    )
                if len(history) >= opts["max_redirects"]:
                    raise TooManyRedirects(
                        f"more than {opts['max_redirects']} redirects (max_redirects), "
                        f"the last to {following}",
                        request=request,
                    )
                status = response.status
                if status in (301, 302, 303) and method != "HEAD":
                    method, body = "GET", _Body(None, None, None)
                    user_headers = _without(
                        user_headers, "content-type", "content-length", "transfer-encoding"
                    )
                else:
                    body.rewind()  # 307/308 keep the method and the body
                if following.origin != target.origin:
                    auth, extra_cookies = None, {}
                    user_headers = _without(user_headers, "authorization", "cookie", "proxy-authorization")
                if not seen:
                    seen.add((request.method, str(target)))
                if (method, str(following)) in seen:
                    raise TooManyRedirects(
                        f"a redirect loop: {following} was requested before", request=request
                    )
                seen.add((method, str(following)))
                await response._discard(_DRAIN_LIMIT)
            except BaseException:
                await response.aclose()
                raise
            history.append(response)
            target = following

    def _headers(
        self,
        url: URL,
        body: _Body,
        auth: tuple[str, str] | None,
        user: Headers,
        extra_cookies: dict[str, str],
        opts: Mapping[str, Any],
    ) -> Headers:
        fields = [("Host", url.netloc), ("User-Agent", opts["user_agent"]), ("Accept", "*/*")]
        if opts["decompress"]:
            fields.append(("Accept-Encoding", ACCEPT_ENCODING))
        if not opts["keep_alive"]:
            fields.append(("Connection", "close"))
        elif opts["http_version"] == "1.0":
            fields.append(("Connection", "keep-alive"))
        if body.kind != "none":
            if body.length is not None:
                fields.append(("Content-Length", str(body.length)))
            else:
                fields.append(("Transfer-Encoding", "chunked"))
            if body.content_type:
                fields.append(("Content-Type", body.content_type))
        h = Headers._of_pairs(fields)
        if user:
            h.update_from(user)
        if auth is not None and "authorization" not in h:
            h["Authorization"] = _basic_auth(str(auth[0]), str(auth[1]))
        cookie = self._cookie_header(url)
        pairs = [cookie] if cookie else []
        pairs += [f"{n}={v}" for n, v in extra_cookies.items()]
        if pairs and "cookie" not in h:
            h["Cookie"] = "; ".join(pairs)
        hook = opts["on_headers"]
        if hook is not None:
            hook(h)
        return h

    def _cookie_header(self, url: URL) -> str | None:
        if not len(self.cookies):
            return None
        shim = urllib.request.Request(str(url))
        self.cookies.add_cookie_header(shim)
        return shim.get_header("Cookie")

    def _extract_cookies(self, response: Response, request: Request) -> None:
        assert response.headers is not None
        if "set-cookie" not in response.headers and "set-cookie2" not in response.headers:
            return
        shim = urllib.request.Request(str(request.url), method=request.method)
        resp = _CookieResponse(response.headers)
        for cookie in self.cookies.make_cookies(resp, shim):  # type: ignore[arg-type]
            if cookie.value is not None:
                response.cookies[cookie.name] = cookie.value
        self.cookies.extract_cookies(resp, shim)  # type: ignore[arg-type]

    def _ssl_context(self, option: Any) -> _ssl.SSLContext:
        if option is None:
            if self._default_ssl is None:
                ctx = _ssl.create_default_context()
                ctx.set_alpn_protocols(["http/1.1"])
                self._default_ssl = ctx
            return self._default_ssl
        if isinstance(option, _ssl.SSLContext):
            return option
        if isinstance(option, Mapping):  # one context per distinct mapping, so its connections pool
            key = tuple(sorted((str(k), str(v)) for k, v in option.items()))
            turbo = self._turbo_ssl.get(key)
            if turbo is None:
                turbo = self._turbo_ssl[key] = _ssl_from_turbo(option)
            return turbo
        raise TypeError(f"ssl must be None, an ssl.SSLContext or turbo's ssl_options mapping, not {option!r}")

    async def _exchange(self, request: Request, body: _Body, opts: Mapping[str, Any]) -> Response:
        """Send *request* on a pooled connection and read the response's head (the body is left to stream)."""
        url = request.url
        ctx = self._ssl_context(opts["ssl"]) if url.scheme == "https" else None
        proxy = _proxy_for(url, opts)
        headers = request.headers.items()
        target = url.target
        if proxy is not None and url.scheme == "http":
            # Absolute form through the proxy; one connection to it serves every http origin.
            target = str(url.copy_with(strip_userinfo=True)).split("#", 1)[0]
            if proxy.username is not None and "proxy-authorization" not in request.headers:
                headers.append(("Proxy-Authorization", _basic_auth(proxy.username, proxy.password or "")))
            key: Any = ("http-proxy", proxy.host, proxy.port, proxy.username, proxy.password)
        else:
            key = (url.scheme, url.host, url.port, ctx, proxy and (proxy.host, proxy.port, proxy.username))
        head = serialize_head(request.method, target, headers, opts["http_version"])
        timeouts: Timeouts = opts["timeout"]
        expect = "100-continue" in request.headers.get("expect", "").lower() and body.kind != "none"

        async def open_connection() -> Socket:
            if proxy is None:
                return await _connect(url, ctx, timeouts.connect)
            if url.scheme == "http":
                return await _connect(proxy, None, timeouts.connect)
            return await _tunnel(proxy, url, ctx, timeouts.connect)

        may_retry = is_idempotent(request.method) and body.replayable
        for attempt in (0, 1):
            conn = await self._pool.acquire(key, open_connection, timeouts.pool, fresh=attempt > 0)
            reader = ResponseReader(request.method, max_fields=opts["max_header_fields"])
            pending: deque[Event] = deque()
            try:
                if conn.timeouts != timeouts.read:
                    conn.sock.settimeouts(send=timeouts.read, receive=timeouts.read)
                    conn.timeouts = timeouts.read
                if attempt:
                    body.rewind()
                body_sent = await self._send_request(conn.sock, head, body, reader, pending, expect)
                response_head = await _receive_head(conn.sock, reader, pending)
            except (NetworkError, RemoteProtocolError) as e:
                self._pool.release(conn, reusable=False)
                if attempt == 0 and may_retry and conn.reused and reader.received == 0:
                    continue  # the server had closed the kept-alive connection: once more, on a new one
                e.request = request
                raise
            except BaseException:
                self._pool.release(conn, reusable=False)
                raise
            break
        try:
            response_headers = Headers._of_pairs(response_head.headers)
            decoder = BodyDecoder(
                response_headers.get("content-encoding"),
                decompress=opts["decompress"],
                max_body_size=opts["max_body_size"],
                max_ratio=opts["max_decompression_ratio"],
            )
            limit = opts["max_body_size"]
            length = response_head.content_length
            if limit is not None and length is not None and not decoder.decoding and length > limit:
                raise BodyTooLarge(
                    f"the response body ({length} bytes) is larger than max_body_size ({limit})",
                    request=request,
                )
        except BaseException:
            self._pool.release(conn, reusable=False)
            raise
        response = Response(
            response_head.status,
            response_head.reason,
            response_head.http_version,
            response_headers,
            url=url,
            request=request,
        )
        # A body the server answered before it was sent (Expect refused) leaves the connection unusable.
        keep_alive = response_head.keep_alive and opts["keep_alive"] and body_sent
        response._stream = _BodyStream(self._pool, conn, reader, pending, decoder, keep_alive)
        return response

    async def _send_request(
        self,
        sock: Socket,
        head: bytes,
        body: _Body,
        reader: ResponseReader,
        pending: deque[Event],
        expect: bool,
    ) -> bool:
        """Send the head and the body; False if the body was not sent (the server answered first)."""
        if body.kind == "none":
            await _send(sock, head)
            return True
        if not expect and body.kind == "bytes" and body.data is not None and len(body.data) <= _READ_SIZE:
            body.used = True
            await _send(sock, head + body.data)
            return True
        await _send(sock, head)
        if expect:
            async with move_on_after(EXPECT_TIMEOUT):
                while not pending:
                    data = await _receive(sock)
                    pending.extend(reader.feed(data) if data else reader.feed_eof())
            if pending and not isinstance(pending[0], Informational):
                return False  # the final response came instead of 100 Continue: the body stays unsent
        chunked = body.length is None
        sent = 0
        async for chunk in body.chunks():
            if not chunk:
                continue
            sent += len(chunk)
            await _send(sock, encode_chunk(chunk) if chunked else chunk)
        if chunked:
            await _send(sock, encode_chunk(b""))
        elif sent != body.length:
            raise LocalProtocolError(f"the request body was {sent} bytes, not the {body.length} announced")
        return True


async def _receive_head(sock: Socket, reader: ResponseReader, pending: deque[Event]) -> ResponseHead:
    while True:
        while pending:
            event = pending.popleft()
            if isinstance(event, ResponseHead):
                return event
        data = await _receive(sock)
        pending.extend(reader.feed(data) if data else reader.feed_eof())


async def _connect(url: URL, ctx: _ssl.SSLContext | None, timeout: float | None) -> Socket:
    where = f"{url.host}:{url.port}"
    try:
        return await connect(
            url.host, url.port, ssl=ctx, server_hostname=url.host if ctx else None, timeout=timeout
        )
    except TimeoutError:
        raise ConnectTimeout(
            f"connecting to {where} took longer than the connect timeout ({timeout} s)"
        ) from None
    except _ssl.SSLError as e:  # certificate, host name, handshake
        raise TLSError(f"TLS with {where} failed: {e}") from None
    except OSError as e:
        raise ConnectError(f"could not connect to {where}: {e}") from None


async def _tunnel(proxy: URL, url: URL, ctx: _ssl.SSLContext | None, timeout: float | None) -> Socket:
    """A CONNECT tunnel through *proxy* to *url*'s host, then TLS with that host inside it."""
    sock = await _connect(proxy, None, timeout)
    try:
        async with timeout_after(timeout):
            host = f"[{url.host}]" if ":" in url.host else url.host
            authority = f"{host}:{url.port}"
            fields = [("Host", authority)]
            if proxy.username is not None:
                fields.append(("Proxy-Authorization", _basic_auth(proxy.username, proxy.password or "")))
            await _send(sock, serialize_head("CONNECT", authority, fields))
            reader = ResponseReader("HEAD")  # a 2xx to CONNECT has no body; any other is not read
            pending: deque[Event] = deque()
            head = await _receive_head(sock, reader, pending)
            if not 200 <= head.status < 300:
                raise ConnectError(
                    f"the proxy {proxy.host}:{proxy.port} refused the tunnel to {authority}: "
                    f"{head.status} {head.reason}"
                )
            if reader.excess:
                raise RemoteProtocolError("the proxy sent bytes after its answer to CONNECT")
            try:
                await sock.handshake(ctx, server_side=False, server_hostname=url.host, timeout=None)
            except _ssl.SSLError as e:
                raise TLSError(f"TLS with {url.host}:{url.port} through the proxy failed: {e}") from None
    except TimeoutError as e:
        sock.close()
        if isinstance(e, HTTPError):
            raise
        raise ConnectTimeout(
            f"connecting to {url.host}:{url.port} through the proxy took longer than {timeout} s"
        ) from None
    except BaseException:
        sock.close()
        raise
    return sock


def _proxy_url(value: Any) -> URL:
    if isinstance(value, URL):
        proxy = value
    elif isinstance(value, str):
        proxy = URL(value if "://" in value else f"http://{value}")
    else:
        raise TypeError(f"proxy is a URL (http://[user:pass@]host:port), not {value!r}")
    if proxy.scheme != "http":
        raise UnsupportedScheme(
            f"the proxy {value!r} must be an http:// URL (TLS to the proxy is not supported)"
        )
    return proxy


def _proxy_for(url: URL, opts: Mapping[str, Any]) -> URL | None:
    """The proxy for *url*: the ``proxy`` option, else (with ``trust_env``) HTTP(S)_PROXY unless NO_PROXY."""
    proxy: URL | None = opts.get("proxy")
    if proxy is not None or not opts.get("trust_env"):
        return proxy
    found = urllib.request.getproxies_environment().get(url.scheme)
    if not found or urllib.request.proxy_bypass_environment(url.host):  # type: ignore[attr-defined]
        return None
    return _proxy_url(found)


def _pairs(params: Any) -> list[tuple[str, Any]]:
    return list(params.items()) if isinstance(params, Mapping) else list(params)


def _without(headers: Headers, *names: str) -> Headers:
    out = headers.copy()
    for name in names:
        out.pop(name, None)
    return out


def _plain_cookie(name: str, value: str) -> http.cookiejar.Cookie:
    """A cookie sent to every host (as ``Client(cookies={...})`` means it)."""
    return http.cookiejar.Cookie(
        0, name, value, None, False, "", False, False, "/", True, False, None, False, None, None, {}
    )


class _StreamContext:
    """What :meth:`Client.stream` returns: an ``async with`` block around a streamed response."""

    def __init__(self, client: Client, method: str, url: str | URL, options: Mapping[str, Any]) -> None:
        self._client = client
        self._args = (method, url, options)
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        self._response = await self._client._started(*self._args)
        return self._response

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is not None:
            await self._response.aclose()


# -- the module-level calls ------------------------------------------------------------------------

_shared: Client | None = None


def _shared_client() -> Client:
    global _shared
    if _shared is None:
        _shared = Client()
    return _shared


async def request(method: str, url: str | URL, **options: Any) -> Response:
    """One request with the client shared by the run (Copas's ``http.request``); closed at run end."""
    return await _shared_client().request(method, url, **options)


async def get(url: str | URL, **options: Any) -> Response:
    """A GET with the shared client."""
    return await _shared_client().request("GET", url, **options)


async def head(url: str | URL, **options: Any) -> Response:
    """A HEAD with the shared client."""
    return await _shared_client().request("HEAD", url, **options)


async def post(url: str | URL, **options: Any) -> Response:
    """A POST with the shared client."""
    return await _shared_client().request("POST", url, **options)


async def put(url: str | URL, **options: Any) -> Response:
    """A PUT with the shared client."""
    return await _shared_client().request("PUT", url, **options)


async def patch(url: str | URL, **options: Any) -> Response:
    """A PATCH with the shared client."""
    return await _shared_client().request("PATCH", url, **options)


async def delete(url: str | URL, **options: Any) -> Response:
    """A DELETE with the shared client."""
    return await _shared_client().request("DELETE", url, **options)


async def options(url: str | URL, **options: Any) -> Response:
    """An OPTIONS with the shared client."""
    return await _shared_client().request("OPTIONS", url, **options)


#: turbo's fetch() keyword arguments, and the coserve option each becomes.
TURBO_KWARGS = {
    "method": "method",
    "params": "params",
    "keep_alive": "keep_alive",
    "cookie": "headers",
    "http_version": "http_version",
    "use_gzip": "decompress",
    "allow_redirects": "follow_redirects",
    "max_redirects": "max_redirects",
    "on_headers": "on_headers",
    "body": "body",
    "request_timeout": "timeout",
    "connect_timeout": "timeout",
    "auth_username": "auth",
    "auth_password": "auth",
    "user_agent": "user_agent",
    "ssl_options": "ssl",
    "max_buffer_size": "max_body_size",
}


def _from_turbo(kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    out: dict[str, Any] = {}
    method = str(kwargs.pop("method", "GET"))
    connect_timeout = kwargs.pop("connect_timeout", 20.0)
    request_timeout = kwargs.pop("request_timeout", 60.0)
    out["timeout"] = Timeouts(connect=connect_timeout, read=request_timeout, request=request_timeout)
    out["max_redirects"] = kwargs.pop("max_redirects", 4)  # turbo's default
    user, password = kwargs.pop("auth_username", None), kwargs.pop("auth_password", None)
    if user is not None:
        out["auth"] = (user, password or "")
    cookie = kwargs.pop("cookie", None)
    if cookie is not None:
        out["headers"] = {**dict(kwargs.pop("headers", None) or {}), "Cookie": str(cookie)}
    version = kwargs.pop("http_version", None)
    if version is not None:
        out["http_version"] = str(version).upper().removeprefix("HTTP/")
    for turbo, ours in (
        ("use_gzip", "decompress"),
        ("allow_redirects", "follow_redirects"),
        ("ssl_options", "ssl"),
        ("max_buffer_size", "max_body_size"),
    ):
        if turbo in kwargs:
            out[ours] = kwargs.pop(turbo)
    out.update(kwargs)  # coserve's own options, and turbo's of the same name (params, body, ...)
    return method, out


async def fetch(url: str | URL, **kwargs: Any) -> Response:
    """Turbo's ``HTTPClient:fetch``: never raises for a failed request; ``response.error`` says what failed.

    Takes turbo's keyword arguments (``method``, ``params``, ``keep_alive``,
    ``cookie``, ``http_version``, ``use_gzip``, ``allow_redirects``,
    ``max_redirects`` (default 4), ``on_headers``, ``body``,
    ``request_timeout`` (60), ``connect_timeout`` (20), ``auth_username``,
    ``auth_password``, ``user_agent``, and the client's ``ssl_options`` and
    ``max_buffer_size``) and coserve's options. On failure ``error`` has
    ``code`` (``coserve.http.errors.*``) and ``message``, and every other
    field is None except ``request_time``. An unknown keyword raises TypeError.
    """
    started = gettime()
    method, options = _from_turbo(dict(kwargs))
    try:
        return await _shared_client().request(method, url, **options)
    except HTTPError as e:
        return Response(error=e, request_time=gettime() - started)
