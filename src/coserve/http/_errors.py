"""The errors of coserve.http: one tree under :class:`HTTPError`, named after what failed.

Every class carries one of turbo.async's thirteen numeric error codes (its
``code``), so :func:`coserve.http.fetch` can report a failure the way turbo's
``HTTPClient:fetch`` does (``response.error.code`` and ``.message``). Where
turbo has a name for what happened the class uses its code; otherwise it
carries the nearest one (docs/http.md lists them all).

Errors about the request the program asked for (a bad URL, a header with a
line break) are refused before a byte is sent and derive from
:class:`ValueError` too; timeouts derive from :class:`TimeoutError`, so code
written for the standard library keeps catching them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import CoserveError

if TYPE_CHECKING:
    from ._models import Request, Response

__all__ = [
    "BodyNotReplayable",
    "BodyTooLarge",
    "ClientClosed",
    "ConnectError",
    "ConnectTimeout",
    "DecodingError",
    "HTTPError",
    "HTTPStatusError",
    "InsecureRedirect",
    "InvalidBody",
    "InvalidURL",
    "LocalProtocolError",
    "NetworkError",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "RemoteProtocolError",
    "RequestTimeout",
    "ResponseNotRead",
    "TLSError",
    "TimedOut",
    "TooManyRedirects",
    "UnsupportedScheme",
    "errors",
]


class errors:
    """turbo.async's numeric error codes (``turbo.async.errors``), with its names and numbers."""

    #: The URL could not be parsed.
    INVALID_URL = -1
    #: The URL's scheme is not http or https.
    INVALID_SCHEMA = -2
    #: The connection could not be made (name resolution, refused, unreachable).
    COULD_NOT_CONNECT = -3
    #: The response could not be parsed.
    PARSE_ERROR_HEADERS = -4
    #: Connecting took longer than the connect timeout.
    CONNECT_TIMEOUT = -5
    #: The request took too long (read, total or pool timeout).
    REQUEST_TIMEOUT = -6
    #: turbo: "shouldn't happen"; coserve never reports it.
    NO_HEADERS = -7
    #: turbo: a request needed a body and had none; coserve never reports it.
    REQUIRES_BODY = -8
    #: The request body is not something coserve can send.
    INVALID_BODY = -9
    #: The connection failed after it was made.
    SOCKET_ERROR = -10
    #: TLS failed (certificate, host name, handshake).
    SSL_ERROR = -11
    #: turbo: the client was busy with another request; never happens in coserve.
    BUSY = -12
    #: Too many redirects, or a redirect loop.
    REDIRECT_MAX = -13


class HTTPError(CoserveError):
    """The root of coserve.http's errors; ``code`` is turbo's number, ``message`` the text."""

    #: The turbo error code of this kind of failure (see :class:`errors`).
    code: int = errors.SOCKET_ERROR

    def __init__(self, message: str, *, request: Request | None = None, code: int | None = None) -> None:
        super().__init__(message)
        #: What went wrong, for people.
        self.message = message
        #: The request that failed, when there was one.
        self.request = request
        if code is not None:
            self.code = code


# -- the request the program asked for -----------------------------------------------------


class InvalidURL(HTTPError, ValueError):
    """The URL cannot be used: unparsable, no host, a bad port, a control character."""

    code = errors.INVALID_URL


class UnsupportedScheme(InvalidURL):
    """The URL's scheme is not ``http`` or ``https``."""

    code = errors.INVALID_SCHEMA


class ProtocolError(HTTPError):
    """The HTTP/1.1 exchange broke the protocol (see the two kinds below)."""

    code = errors.PARSE_ERROR_HEADERS


class LocalProtocolError(ProtocolError, ValueError):
    """The request cannot be sent as given: a CR, LF or NUL in it, a header name that is not a token.

    Raised before a byte is sent (urllib3 CVE-2020-26137, bpo-30458).
    """


class InvalidBody(LocalProtocolError, TypeError):
    """The request body is neither bytes, str, a file nor an (async) iterable of bytes."""

    code = errors.INVALID_BODY


class BodyNotReplayable(HTTPError):
    """A 307/308 redirect needs the body again, but it was a stream that has been consumed."""

    code = errors.INVALID_BODY


class ClientClosed(HTTPError):
    """The :class:`~coserve.http.Client` was closed; make a new one."""

    code = errors.SOCKET_ERROR


# -- connecting -----------------------------------------------------------------------------


class ConnectError(HTTPError):
    """No connection could be made: the name did not resolve, or the server refused or is unreachable."""

    code = errors.COULD_NOT_CONNECT


class TLSError(HTTPError):
    """TLS failed: the certificate or host name did not verify, or the handshake broke."""

    code = errors.SSL_ERROR


# -- time ----------------------------------------------------------------------------------------


class TimedOut(HTTPError, TimeoutError):
    """A timeout of the request expired (the base of the four below)."""

    code = errors.REQUEST_TIMEOUT


class ConnectTimeout(TimedOut):
    """Connecting (with the TLS handshake) took longer than the connect timeout."""

    code = errors.CONNECT_TIMEOUT


class ReadTimeout(TimedOut):
    """The server sent nothing (or would not take the request) for longer than the read timeout."""


class RequestTimeout(TimedOut):
    """The whole request (connect, redirects, body) took longer than the request timeout."""


class PoolTimeout(TimedOut):
    """No connection of the pool became free within the pool timeout."""


# -- the server's side -------------------------------------------------------------------------


class RemoteProtocolError(ProtocolError):
    """The server sent what is not HTTP/1.1 (the parser's reason says why), or broke off the response.

    Also raised when a response goes past a limit on what a server may send
    (a header line longer than 64 KiB, more than 100 header fields).
    """


class NetworkError(HTTPError):
    """The connection failed once made (reset, broken pipe)."""

    code = errors.SOCKET_ERROR


class BodyTooLarge(HTTPError):
    """The (decoded) response body is larger than ``max_body_size``."""

    code = errors.SOCKET_ERROR


class DecodingError(HTTPError):
    """The body's Content-Encoding could not be decoded, or inflated past the decompression ratio limit."""

    code = errors.PARSE_ERROR_HEADERS


class TooManyRedirects(HTTPError):
    """More redirects than ``max_redirects``, or a redirect loop."""

    code = errors.REDIRECT_MAX


class InsecureRedirect(HTTPError):
    """An https URL redirected to http, and ``allow_insecure_redirect`` is False."""

    code = errors.INVALID_SCHEMA


class ResponseNotRead(HTTPError):
    """The body of a streamed response was asked for (``body``, ``text``, ``json()``) before it was read."""


class HTTPStatusError(HTTPError):
    """Raised by :meth:`Response.raise_for_status` for a 4xx or 5xx status (no status raises by itself)."""

    code = 0  # not a failed request: fetch() never reports it

    def __init__(self, message: str, *, request: Request | None = None, response: Response) -> None:
        super().__init__(message, request=request)
        #: The response whose status it was.
        self.response = response
