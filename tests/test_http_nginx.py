"""coserve.http against a real nginx (HTTP and HTTPS, gzip, keep-alive, chunked, redirects, cookies).

nginx is Debian's, installed by scripts/install-test-peers and run by
tests/http_peers.py on free loopback ports for this module.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys

import pytest

import coserve
from coserve import http
from http_peers import HELLO, ROOT, start_nginx


@pytest.fixture(scope="module")
def nginx():
    server = start_nginx()
    yield server
    server.stop()


def test_get_gzip_and_chunked(nginx):
    async def main():
        async with http.Client() as c:
            r = await c.get(nginx.url("/hello.txt"))
            assert r.status == 200 and r.body == HELLO
            assert r.headers["content-encoding"] == "gzip"  # decoded on the way in
            assert r.headers["server"].startswith("nginx")
            plain = await c.get(nginx.url("/hello.txt"), decompress=False)  # no Accept-Encoding
            assert "content-encoding" not in plain.headers and plain.body == HELLO
            raw = await c.get(nginx.url("/hello.txt"), decompress=False, headers={"Accept-Encoding": "gzip"})
            assert raw.headers["content-encoding"] == "gzip" and gzip.decompress(raw.body) == HELLO
            r = await c.get(nginx.url("/chunked/hello.txt"))
            assert r.headers["transfer-encoding"] == "chunked" and r.body == HELLO
            r = await c.get(nginx.url("/big.bin"))
            assert r.headers["content-length"] == str(len(nginx.big)) and r.body == nginx.big
            assert c.pool.stats() == {"connections": 1, "idle": 1, "active": 0, "waiting": 0}

    coserve.run(main)


def test_keep_alive_serves_many_requests_on_one_connection(nginx):
    async def main():
        async with http.Client() as c:
            for _ in range(50):
                r = await c.get(nginx.url("/hello.txt"))
                assert r.body == HELLO
            r = await c.head(nginx.url("/big.bin"))  # Content-Length without a body
            assert r.headers["content-length"] == str(len(nginx.big)) and r.body == b""
            assert (await c.get(nginx.url("/hello.txt"))).body == HELLO
            assert c.pool.stats()["connections"] == 1

    coserve.run(main)


def test_concurrent_requests_within_the_per_host_limit(nginx):
    async def main():
        async with http.Client(max_connections_per_host=4) as c:
            async with coserve.TaskGroup() as g:
                tasks = [g.spawn(c.get, nginx.url("/hello.txt")) for _ in range(40)]
            assert all(t.result().body == HELLO for t in tasks)
            assert c.pool.stats()["connections"] <= 4

    coserve.run(main)


def test_https_verified_with_the_test_ca_and_refused_without(nginx):
    async def main():
        async with http.Client() as c:
            with pytest.raises(http.TLSError, match="certificate verify failed"):
                await c.get(nginx.tls_url("/hello.txt"))
            r = await c.get(nginx.tls_url("/hello.txt"), ssl=nginx.ssl_context())
            assert r.body == HELLO and str(r.url).startswith("https://localhost:")
        r = await http.fetch(nginx.tls_url("/hello.txt"))
        assert r.error.code == http.errors.SSL_ERROR

    coserve.run(main)


def test_streaming_a_large_body(nginx):
    async def main():
        async with http.Client() as c:
            digest = hashlib.sha256()
            chunks = 0
            async with c.stream("GET", nginx.url("/big.bin")) as r:
                assert r.status == 200
                async for chunk in r.iter_bytes():
                    digest.update(chunk)
                    chunks += 1
            assert digest.digest() == hashlib.sha256(nginx.big).digest() and chunks > 1
            assert c.pool.stats()["idle"] == 1

    coserve.run(main)


def test_redirects_and_max_redirects(nginx):
    async def main():
        async with http.Client() as c:
            r = await c.get(nginx.url("/redirect/4"))
            assert r.body == HELLO and len(r.history) == 5
            assert [h.status for h in r.history] == [302] * 5
            with pytest.raises(http.TooManyRedirects):
                await c.get(nginx.url("/redirect/6"))
            r = await c.get(nginx.url("/redirect/6"), max_redirects=7)
            assert r.body == HELLO
            # http -> https on another port: another origin, so Authorization is dropped.
            r = await c.get(nginx.url("/to-https"), auth=("u", "p"), ssl=nginx.ssl_context())
            assert r.url.scheme == "https" and "auth=\n" in r.text
            r = await c.get(nginx.url("/headers"), auth=("u", "p"))
            assert "auth=Basic dTpw" in r.text
        r = await http.fetch(nginx.url("/redirect/6"))  # turbo's default max_redirects is 4
        assert r.error.code == http.errors.REDIRECT_MAX

    coserve.run(main)


def test_cookies_set_by_nginx_are_sent_back(nginx):
    async def main():
        async with http.Client(user_agent="agent/7") as c:
            r = await c.get(nginx.url("/cookie"))
            assert r.cookies == {"session": "abc"}
            r = await c.get(nginx.url("/headers"))
            assert "cookie=session=abc\n" in r.text and "ua=agent/7\n" in r.text

    coserve.run(main)


def test_status_404_and_fetch(nginx):
    async def main():
        r = await http.get(nginx.url("/status/404"))
        assert r.status == 404
        with pytest.raises(http.HTTPStatusError):
            r.raise_for_status()
        r = await http.fetch(nginx.url("/hello.txt"), use_gzip=False)
        assert r.error is None and r.code == 200 and "content-encoding" not in r.headers
        r = await http.fetch(nginx.url("/hello.txt"), method="HEAD")
        assert r.code == 200 and r.body == b""

    coserve.run(main)


def test_the_example_fetches_concurrently(nginx):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    urls = [nginx.url("/hello.txt"), nginx.url("/status/404"), nginx.tls_url("/hello.txt")]
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fetch_many.py"), *urls],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{urls[0]} 200 {len(HELLO)} bytes in ")
    assert lines[1].startswith(f"{urls[1]} 404 ")
    # The system's CAs do not know the test CA: that URL fails, the others do not.
    assert lines[2].startswith(f"{urls[2]} failed: TLSError (turbo code -11): ")
