"""coserve.http: an HTTP/1.1 client for coserve tasks (Copas's ``http.request``, turbo's ``HTTPClient``).

``await coserve.http.get(url)`` reads like blocking code and never blocks the
loop. :class:`Client` keeps a connection pool and request defaults and serves
any number of concurrent requests; :meth:`Client.stream` reads bodies larger
than memory; :func:`fetch` is turbo.async's calling convention (failures in
``response.error``, never raised). The layers: :mod:`._models` (URL, headers,
request, response; no I/O), :mod:`._protocol` (HTTP/1.1 on httptools; no
I/O), :mod:`._pool` (connections), :mod:`._client` (the rest). See
docs/http.md.
"""

from ._client import (
    USER_AGENT,
    Client,
    delete,
    fetch,
    get,
    head,
    options,
    patch,
    post,
    put,
    request,
)
from ._errors import (
    BodyNotReplayable,
    BodyTooLarge,
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    DecodingError,
    HTTPError,
    HTTPStatusError,
    InsecureRedirect,
    InvalidBody,
    InvalidURL,
    LocalProtocolError,
    NetworkError,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    RemoteProtocolError,
    RequestTimeout,
    ResponseNotRead,
    TimedOut,
    TLSError,
    TooManyRedirects,
    UnsupportedScheme,
    errors,
)
from ._models import URL, Headers, Request, Response, Timeouts

__all__ = [
    "URL",
    "USER_AGENT",
    "BodyNotReplayable",
    "BodyTooLarge",
    "Client",
    "ClientClosed",
    "ConnectError",
    "ConnectTimeout",
    "DecodingError",
    "HTTPError",
    "HTTPStatusError",
    "Headers",
    "InsecureRedirect",
    "InvalidBody",
    "InvalidURL",
    "LocalProtocolError",
    "NetworkError",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "RemoteProtocolError",
    "Request",
    "RequestTimeout",
    "Response",
    "ResponseNotRead",
    "TLSError",
    "TimedOut",
    "Timeouts",
    "TooManyRedirects",
    "UnsupportedScheme",
    "delete",
    "errors",
    "fetch",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
]
