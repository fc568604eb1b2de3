"""The peers coserve.http's tests talk to: a real nginx, and a raw in-process server for misbehaviour.

``Nginx`` runs Debian's nginx (installed by ``scripts/install-test-peers``) as a
child process on free loopback ports, plain and TLS (a trustme certificate for
``localhost`` and 127.0.0.1), one process, keep-alive on, gzip on for text and
JSON, with these locations under its document root:

- ``/hello.txt`` (1.4 KB of text), ``/big.bin`` (4 MiB of random bytes);
- ``/chunked/hello.txt``: the same text through ``sub_filter``, which drops the
  Content-Length, so nginx sends it chunked;
- ``/redirect/N``: 302 to ``/redirect/N-1``, and ``/redirect/0`` to ``/hello.txt``;
  ``/to-https``: 302 to the TLS port (used for cross-origin rules);
- ``/headers``: the request's User-Agent, Cookie and Authorization, one per line;
- ``/cookie``: sets ``session=abc``; ``/status/404``: a 404.

``raw_server(handler)`` is an ``async with`` block around a coserve server on
127.0.0.1 whose ``handler(sock)`` writes whatever bytes the test wants: a
server that lies about Content-Length, closes mid-body, and so on.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import coserve

ROOT = pathlib.Path(__file__).resolve().parent.parent
HELLO = (b"Hello from nginx, the test peer of coserve.http. " * 30)[:1400]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ text/plain txt; application/json json; application/octet-stream bin; }}
    keepalive_timeout 60s;
    keepalive_requests 100000;
    gzip on;
    gzip_min_length 0;
    gzip_types text/plain application/json;
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        server_name localhost;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        root {tmp}/www;
        location /chunked/ {{
            alias {tmp}/www/;
            sub_filter_types text/plain;
            sub_filter "nginx" "nginx";
            sub_filter_once off;
            gzip off;
        }}
        location = /redirect/0 {{ return 302 /hello.txt; }}
{redirects}
        location = /to-https {{ return 302 https://localhost:{tls_port}/headers; }}
        location = /headers {{
            default_type text/plain;
            return 200 "ua=$http_user_agent\\ncookie=$http_cookie\\nauth=$http_authorization\\n";
        }}
        location = /cookie {{
            add_header Set-Cookie "session=abc; Path=/";
            default_type text/plain;
            return 200 "set\\n";
        }}
        location = /status/404 {{ return 404; }}
    }}
}}
"""


class Nginx:
    """A running nginx: ``url(path)``, ``tls_url(path)``, and ``ca``, the trustme CA of its certificate."""

    def __init__(self) -> None:
        import trustme

        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="coserve-nginx-"))
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_pem.write_to_path(str(self.tmp / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(self.tmp / "cert.pem"))
        www = self.tmp / "www"
        www.mkdir()
        (www / "hello.txt").write_bytes(HELLO)
        self.big = os.urandom(4 << 20)
        (www / "big.bin").write_bytes(self.big)
        self.port, self.tls_port = _free_port(), _free_port()
        (self.tmp / "nginx.conf").write_text(
            _CONF.format(
                tmp=self.tmp,
                port=self.port,
                tls_port=self.tls_port,
                redirects="\n".join(
                    f"        location = /redirect/{n} {{ return 302 /redirect/{n - 1}; }}"
                    for n in range(1, 10)
                ),
            )
        )
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(self.tmp / "nginx.conf"), "-p", str(self.tmp)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        # Polling a child's listening port is the one way to know it is up (no readiness fd).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.tmp / "error.log").read_text() if (self.tmp / "error.log").exists() else ""
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {log}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.tls_port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("nginx did not start listening within 10 s")

    def url(self, path: str) -> str:
        """The plain http URL of *path*."""
        return f"http://127.0.0.1:{self.port}{path}"

    def tls_url(self, path: str) -> str:
        """The https URL of *path* (host name localhost, as the certificate says)."""
        return f"https://localhost:{self.tls_port}{path}"

    def ssl_context(self):  # -> ssl.SSLContext
        """A client context that trusts the test CA."""
        import ssl

        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def stop(self) -> None:
        """Stop nginx and remove its directory."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


_installed: list[bool] = []


def start_nginx() -> Nginx:
    """Install nginx if needed (the project's script), start it, or skip saying why."""
    if not _installed:
        subprocess.run([str(ROOT / "scripts" / "install-test-peers")], check=False)
        _installed.append(True)
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed and scripts/install-test-peers could not install it (no root?)")
    return Nginx()


@contextlib.asynccontextmanager
async def raw_server(
    handler: Callable[[coserve.Socket], Awaitable[object]], timeout: float | None = None
) -> AsyncIterator[str]:
    """Serve *handler* on 127.0.0.1 for the block; yields ``http://127.0.0.1:PORT``.

    *timeout* is each connection's socket timeout (a kept-alive connection's handler ends after it).
    """
    server = coserve.serve_tcp(handler, "127.0.0.1", 0, timeout=timeout)
    try:
        yield f"http://127.0.0.1:{server.address[1]}"
    finally:
        server.close()


async def read_request(sock: coserve.Socket) -> tuple[str, dict[str, str], bytes]:
    """Read one request (line, headers lower-cased, body by Content-Length or chunked) off *sock*."""
    line = (await sock.receive("*l")).decode("latin-1")
    headers: dict[str, str] = {}
    while True:
        field = (await sock.receive("*l")).decode("latin-1")
        if not field:
            break
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await sock.receive(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await sock.receive("*l")).split(b";")[0], 16)
            chunk = await sock.receive(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return line, headers, body
