"""coserve.http's client against in-process raw peers: options, errors, misbehaving servers, the pool.

The raw peer (tests/http_peers.py) is a coserve server whose handler writes
exactly the bytes a case needs; the well-behaved cases run against nginx in
test_http_nginx.py.
"""

from __future__ import annotations

import email.parser
import gzip
import io
import json
import random
import ssl

import pytest
import trustme

import coserve
from coserve import http
from coserve.testing import MockClock
from http_peers import raw_server, read_request


def ok(body: bytes = b"ok", *headers: str, status: str = "200 OK") -> bytes:
    fields = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{fields}\r\n".encode() + body


class Peer:
    """What a raw peer saw: the requests (line, headers, body) and how many connections."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        self.open = 0
        self.most_open = 0

    def handler(self, answer):
        """A keep-alive handler: for each request, ``answer(request, peer)`` returns the bytes to send."""

        async def handle(sock: coserve.Socket) -> None:
            self.connections += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            try:
                while True:
                    try:
                        request = await read_request(sock)
                    except (coserve.ConnectionClosed, ConnectionError, TimeoutError):
                        return  # the client closed, or left the kept-alive connection idle
                    self.requests.append(request)
                    out = answer(request, self)
                    if hasattr(out, "__await__"):
                        out = await out
                    if out is None:
                        return  # close without answering
                    await sock.send(out)
            finally:
                self.open -= 1

        return handle


def run(main, *args, **kw):
    return coserve.run(main, *args, **kw)


# -- a plain request -------------------------------------------------------------------------------


def test_a_get_and_what_the_response_holds():
    peer = Peer()

    def answer(request, peer):
        return ok(b'{"a": [1, 2]}', "Content-Type: application/json; charset=utf-8", "X-R: 1", "X-R: 2")

    async def main():
        async with raw_server(peer.handler(answer)) as base, http.Client() as client:
            r = await client.get(base + "/path?q=1", params={"b": ["x", "y"], "c": None})
            assert (r.status, r.reason, r.http_version, r.code) == (200, "OK", "1.1", 200)
            assert r.headers["x-r"] == "1, 2" and r.headers.get_list("X-R") == ["1", "2"]
            assert r.body == b'{"a": [1, 2]}' and r.json() == {"a": [1, 2]} and r.text == '{"a": [1, 2]}'
            assert r.encoding == "utf-8" and r.error is None and r.history == []
            assert str(r.url) == base + "/path?q=1&b=x&b=y&c="
            assert r.request.method == "GET" and r.request.headers["host"] == base.removeprefix("http://")
            assert r.request_time is not None and r.request_time >= 0
            assert r.raise_for_status() is r

    run(main)
    line, headers, body = peer.requests[0]
    assert line == "GET /path?q=1&b=x&b=y&c= HTTP/1.1"
    assert headers["user-agent"] == f"coserve/{coserve.__version__}"
    assert (
        headers["accept-encoding"] == "gzip, deflate, br, zstd" and headers["accept"] == "*/*"
    )  # brotli: a test dep
    assert body == b""


def test_defaults_and_call_options_merge():
    peer = Peer()

    async def main():
        async with raw_server(peer.handler(lambda r, p: ok())) as base:
            async with http.Client(headers={"X-A": "client", "X-B": "client"}, params={"k": "1"}) as c:
                await c.get(base + "/", headers={"x-b": "call"}, params=[("j", "2")], user_agent="ua/1")
                await c.get(base + "/", keep_alive=False, decompress=False)

    run(main)
    (line, h, _), (_, h2, _) = peer.requests
    assert line == "GET /?k=1&j=2 HTTP/1.1"
    assert (h["x-a"], h["x-b"], h["user-agent"]) == ("client", "call", "ua/1")
    assert h2["connection"] == "close" and "accept-encoding" not in h2


def test_status_codes_do_not_raise_until_raise_for_status():
    async def main():
        handler = Peer().handler(lambda r, p: ok(b"no", status="404 Not Found"))
        async with raw_server(handler) as base, http.Client() as c:
            r = await c.get(base + "/missing")
            assert r.status == 404
            with pytest.raises(http.HTTPStatusError, match="client error 404") as e:
                r.raise_for_status()
            assert e.value.response is r

    run(main)


# -- request bodies --------------------------------------------------------------------------------


def test_request_bodies_of_every_kind():
    peer = Peer()

    async def agen():
        yield b"as"
        yield "ync"

    async def main():
        async with raw_server(peer.handler(lambda r, p: ok())) as base, http.Client() as c:
            await c.post(base, body=b"bytes")
            await c.post(base, body="text \u2603")
            await c.post(base, json={"a": "\u2603"})
            await c.post(base, form={"a": "1", "b": ["2", "3"]})
            await c.put(base, body=io.BytesIO(b"0123456789"))
            await c.post(base, body=agen())
            await c.post(base, body=iter([b"it", b"er"]))
            await c.post(base, body=b"x" * 200_000)
            await c.post(base, body=b"0.9", http_version="1.0")
            await c.post(base, body=agen(), http_version="1.0")

    run(main)
    seen = [
        (h.get("content-length"), h.get("transfer-encoding"), h.get("content-type"), b)
        for _, h, b in peer.requests
    ]
    assert seen[0] == ("5", None, None, b"bytes")
    assert seen[1] == (
        str(len("text \u2603".encode())),
        None,
        "text/plain; charset=utf-8",
        "text \u2603".encode(),
    )
    assert seen[2][2] == "application/json" and json.loads(seen[2][3]) == {"a": "\u2603"}
    assert seen[3] == ("11", None, "application/x-www-form-urlencoded", b"a=1&b=2&b=3")
    assert seen[4] == ("10", None, None, b"0123456789")
    assert seen[5] == (None, "chunked", None, b"async")
    assert seen[6] == (None, "chunked", None, b"iter")
    assert seen[7][0] == "200000" and seen[7][3] == b"x" * 200_000
    assert peer.requests[8][0].endswith("HTTP/1.0")
    # HTTP/1.0 has no chunked bodies: a stream is read first and sent with its length.
    assert seen[9] == ("5", None, None, b"async")


def test_multipart_files():
    peer = Peer()

    async def main():
        async with raw_server(peer.handler(lambda r, p: ok())) as base, http.Client() as c:
            f = io.BytesIO(b"file \x00 bytes")
            f.name = "/some/dir/report.bin"
            await c.post(
                base, form={"field": "v\u00e9"}, files={"up": f, "t": ("a.txt", "text", "text/plain")}
            )

    run(main)
    _, h, body = peer.requests[0]
    assert int(h["content-length"]) == len(body)
    msg = email.parser.BytesParser().parsebytes(f"Content-Type: {h['content-type']}\r\n\r\n".encode() + body)
    parts = {p.get_param("name", header="content-disposition"): p for p in msg.get_payload()}
    assert parts["field"].get_payload(decode=True) == "v\u00e9".encode()
    assert parts["up"].get_filename() == "report.bin"
    assert parts["up"].get_payload(decode=True) == b"file \x00 bytes"
    assert parts["t"].get_content_type() == "text/plain" and parts["t"].get_payload(decode=True) == b"text"


def test_bad_bodies_are_refused_before_a_connection():
    peer = Peer()

    async def main():
        async with raw_server(peer.handler(lambda r, p: ok())) as base, http.Client() as c:
            with pytest.raises(http.InvalidBody, match="not int"):
                await c.post(base, body=3)
            with pytest.raises(http.InvalidBody, match="one of body, json and form"):
                await c.post(base, body=b"x", json=1)
            with pytest.raises(http.InvalidBody, match="yields bytes or str"):
                await c.post(base, body=iter([1]))

    run(main)
    assert peer.connections <= 1 and not peer.requests


# -- bad input is refused before anything is sent --------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c, b: c.get(b + "/a\r\nX: y"), http.InvalidURL, "CR, LF or NUL"),
        (lambda c, b: c.get(b + "/a\x00"), http.InvalidURL, "CR, LF or NUL"),
        (lambda c, b: c.get("ftp://127.0.0.1/"), http.UnsupportedScheme, "'ftp'"),
        (lambda c, b: c.get("http://127.0.0.1:70000/"), http.InvalidURL, "out of range"),
        (lambda c, b: c.get("/relative"), http.InvalidURL, "not an absolute URL"),
        (lambda c, b: c.get("http:///nohost"), http.InvalidURL, "not an absolute URL|no host"),
        (lambda c, b: c.request("GE T", b), http.LocalProtocolError, "not an HTTP token"),
        (lambda c, b: c.get(b, headers={"X\nY": "v"}), http.LocalProtocolError, "not an HTTP token"),
        (lambda c, b: c.get(b, headers={"X": "v\r\nEvil: 1"}), http.LocalProtocolError, "CR, LF or NUL"),
        (lambda c, b: c.get(b, nonsense=1), TypeError, "unknown option 'nonsense'"),
        (lambda c, b: c.get(b, body=b"x"), TypeError, "unknown option 'body'|"),
        (lambda c, b: c.get(b, timeout=-1), ValueError, "timeout must be"),
        (lambda c, b: c.get(b, max_redirects=-1), ValueError, "max_redirects"),
        (lambda c, b: c.get(b, http_version="2"), ValueError, "http_version"),
        (lambda c, b: c.get(b, auth="user"), TypeError, "auth must be"),
        (lambda c, b: c.get(b, proxy="https://proxy:1"), http.UnsupportedScheme, "http:// URL"),
    ],
)
def test_bad_input_is_refused_before_a_byte_is_sent(call, error, match):
    peer = Peer()

    async def main():
        async with raw_server(peer.handler(lambda r, p: ok())) as base, http.Client() as c:
            if error is TypeError and "'body'" in match:
                await c.get(base, body=b"x")  # a GET may have a body: not refused
                return
            with pytest.raises(error, match=match):
                await call(c, base)

    run(main)
    if not (error is TypeError and "'body'" in match):
        assert not peer.requests and peer.connections == 0


def test_international_host_names_are_idna_encoded():
    url = http.URL("http://b\u00fccher.example:8080/p\u00e4th?q=\u00e4 b")
    assert url.host == "xn--bcher-kva.example" and url.netloc == "xn--bcher-kva.example:8080"
    assert url.target == "/p%C3%A4th?q=%C3%A4%20b"
    assert str(http.URL("https://user:secret@h/")) == "https://user@h/"


# -- keep-alive and responses without bodies -------------------------------------------------------


def test_head_with_content_length_then_another_request_on_the_same_connection():
    peer = Peer()

    def answer(request, peer):
        if request[0].startswith("HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  # and no body, as it must
        return ok(b"after")

    async def main():
        async with raw_server(peer.handler(answer)) as base, http.Client() as c:
            r = await c.head(base)
            assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "1000"
            assert c.pool.stats() == {"connections": 1, "idle": 1, "active": 0, "waiting": 0}
            r = await c.get(base)
            assert r.body == b"after"

    run(main)
    assert peer.connections == 1 and len(peer.requests) == 2


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_no_body_statuses_then_another_request_on_the_same_connection(status):
    peer = Peer()
    answers = iter([f"HTTP/1.1 {status}\r\nContent-Length: 5\r\n\r\n".encode(), ok(b"next")])

    async def main():
        async with raw_server(peer.handler(lambda r, p: next(answers))) as base, http.Client() as c:
            r = await c.get(base)
            assert r.status == int(status[:3]) and r.body == b""
            assert (await c.get(base)).body == b"next"

    run(main)
    assert peer.connections == 1


def test_1xx_before_the_final_response():
    async def main():
        raw = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + ok(b"final")
        async with raw_server(Peer().handler(lambda r, p: raw)) as base, http.Client() as c:
            r = await c.get(base)
            assert (r.status, r.body) == (200, b"final")
            assert (await c.get(base)).body == b"final"
            assert c.pool.stats()["connections"] == 1

    run(main)


def test_read_until_close_body():
    async def handle(sock):
        await read_request(sock)
        await sock.send(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")  # and the handler's end closes

    async def main():
        async with raw_server(handle) as base, http.Client() as c:
            r = await c.get(base)
            assert r.body == b"until the end"
            assert c.pool.stats()["connections"] == 0  # not reusable

    run(main)


def test_http_10_response_is_not_kept():
    async def main():
        raw = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
        async with raw_server(Peer().handler(lambda r, p: raw)) as base, http.Client() as c:
            r = await c.get(base)
            assert r.http_version == "1.0" and r.body == b"ok"
            assert c.pool.stats()["connections"] == 0

    run(main)


# -- misbehaving servers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "before the end of the body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "before the end of the body"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", "longer than 65536"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 header fields"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "malformed"),
        (b"", "without sending a response"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the headers"),
    ],
)
def test_a_misbehaving_server_is_a_remote_protocol_error_and_its_connection_is_closed(raw, match):
    async def main():
        async def handle(sock):
            await read_request(sock)
            await sock.send(raw)

        async with raw_server(handle) as base, http.Client() as c:
            with pytest.raises(http.RemoteProtocolError, match=match):
                await c.post(base, body=b"x")  # not idempotent: no retry
            assert c.pool.stats()["connections"] == 0

    run(main)


def test_max_header_fields_is_configurable():
    async def main():
        raw = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 150 + b"Content-Length: 0\r\n\r\n"
        async with raw_server(Peer().handler(lambda r, p: raw)) as base, http.Client() as c:
            r = await c.get(base, max_header_fields=200)
            assert len(r.headers.get_list("x")) == 150

    run(main)


def test_gzip_bodies_are_decoded_and_bombs_stopped():
    text = b"compressible " * 1000
    bomb = gzip.compress(b"\0" * (30 << 20))

    def answer(request, peer):
        if "bomb" in request[0]:
            return ok(bomb, "Content-Encoding: gzip")
        if "/br" in request[0]:
            import brotli

            return ok(brotli.compress(text), "Content-Encoding: br")
        if "/zstd" in request[0]:
            import zstandard

            return ok(zstandard.ZstdCompressor().compress(text), "Content-Encoding: zstd")
        return ok(gzip.compress(text), "Content-Encoding: gzip")

    async def main():
        async with raw_server(Peer().handler(answer)) as base, http.Client() as c:
            assert (await c.get(base)).body == text
            assert (await c.get(base + "/br")).body == text
            assert (await c.get(base + "/zstd")).body == text
            raw = await c.get(base, decompress=False)
            assert gzip.decompress(raw.body) == text
            with pytest.raises(http.DecodingError, match="decompression bomb"):
                await c.get(base + "/bomb")
            with pytest.raises(http.BodyTooLarge):
                await c.get(base, max_body_size=100)
            with pytest.raises(http.BodyTooLarge):
                await c.get(base, max_body_size=20, decompress=False)
            assert c.pool.stats()["connections"] <= 1

    run(main)


def test_read_timeout_and_request_timeout_on_a_slowloris_server():
    async def slowloris(sock):
        await read_request(sock)
        await sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while True:  # a byte every 0.5 s: each read makes progress, the whole never ends
            await coserve.sleep(0.5)
            await sock.send(b"x")

    async def silent(sock):
        await read_request(sock)
        await coserve.sleep(3600)

    async def main():
        async with raw_server(slowloris) as slow, raw_server(silent) as mute, http.Client() as c:
            with pytest.raises(http.ReadTimeout) as e:
                await c.get(mute, timeout=2)
            assert e.value.code == http.errors.REQUEST_TIMEOUT
            start = coserve.gettime()
            with pytest.raises(http.RequestTimeout) as e:
                await c.get(slow, timeout=http.Timeouts(read=1, request=10))
            assert coserve.gettime() - start == pytest.approx(10, abs=0.6)
            assert e.value.code == http.errors.REQUEST_TIMEOUT
            assert c.pool.stats()["connections"] == 0
            coserve.cancel_all()

    run(main, clock=MockClock(autojump_threshold=0))


def test_connect_error_and_fetch_codes():
    async def main():
        async with raw_server(Peer().handler(lambda r, p: ok())) as base:
            port = int(base.rsplit(":", 1)[1])
        # The server is closed: its port refuses.
        with pytest.raises(http.ConnectError) as e:
            await http.get(f"http://127.0.0.1:{port}/")
        assert e.value.code == http.errors.COULD_NOT_CONNECT
        for url, code in [
            (f"http://127.0.0.1:{port}/", -3),
            ("not a url", -1),
            ("gopher://127.0.0.1/", -2),
        ]:
            r = await http.fetch(url)
            assert r.error is not None and r.error.code == code and r.error.message
            assert (r.status, r.headers, r.body, r.url) == (None, None, None, None)
            assert r.request_time is not None
        with pytest.raises(TypeError, match="unknown option"):
            await http.fetch("http://127.0.0.1/", bogus=1)

    run(main)


# -- redirects -------------------------------------------------------------------------------------


def test_redirect_rules():
    peer = Peer()
    other_peer = Peer()

    def answer(request, peer):
        line = request[0]
        path = line.split()[1]
        if path.startswith("/302"):
            return ok(b"moved", "Location: /final", status="302 Found")
        if path.startswith("/307"):
            return ok(b"", "Location: /final", status="307 Temporary Redirect")
        if path.startswith("/loop"):
            return ok(b"", "Location: /loop", status="301 Moved")
        if path.startswith("/away"):
            return ok(b"", f"Location: {peer.other}/final", status="302 Found")
        return ok(line.encode())

    async def agen():
        yield b"stream"

    async def main():
        async with raw_server(other_peer.handler(lambda r, p: ok(b"there"))) as other:
            peer.other = other
            async with raw_server(peer.handler(answer)) as base, http.Client() as c:
                r = await c.post(base + "/302", body=b"data")
                assert r.body == b"GET /final HTTP/1.1" and [h.status for h in r.history] == [302]
                assert r.history[0].url == base + "/302" and r.url == base + "/final"
                r = await c.post(base + "/307", body=b"data")
                assert r.body == b"POST /final HTTP/1.1"
                with pytest.raises(http.BodyNotReplayable):
                    await c.post(base + "/307", body=agen())
                with pytest.raises(http.TooManyRedirects, match="loop") as e:
                    await c.get(base + "/loop")
                assert e.value.code == http.errors.REDIRECT_MAX
                with pytest.raises(http.TooManyRedirects, match="max_redirects"):
                    await c.get(base + "/302", max_redirects=0)
                r = await c.get(base + "/302", follow_redirects=False)
                assert r.status == 302 and r.body == b"moved"
                r = await c.get(base + "/away", auth=("u", "p"), headers={"Cookie": "c=1", "X-Keep": "1"})
                assert r.body == b"there"

    run(main)
    final_post = [b for line, _, b in peer.requests if line.startswith("POST /final")]
    assert final_post == [b"data"]
    get_final = next(h for line, h, b in peer.requests if line.startswith("GET /final"))
    assert "content-length" not in get_final
    _, there, _ = other_peer.requests[0]
    assert "authorization" not in there and "cookie" not in there and there["x-keep"] == "1"
    _, here, _ = next(r for r in peer.requests if r[0].startswith("GET /away"))
    assert here["authorization"].startswith("Basic ") and here["cookie"] == "c=1"


# -- cookies and auth ------------------------------------------------------------------------------


def test_cookies_are_kept_and_sent():
    peer = Peer()

    def answer(request, peer):
        if "/login" in request[0]:
            return ok(b"", "Set-Cookie: session=abc; Path=/", "Set-Cookie: theme=dark; Path=/")
        return ok()

    async def main():
        async with raw_server(peer.handler(answer)) as base, http.Client(cookies={"pref": "1"}) as c:
            r = await c.get(base + "/login")
            assert r.cookies == {"session": "abc", "theme": "dark"}
            await c.get(base + "/next", cookies={"once": "x"})
            assert {cookie.name for cookie in c.cookies} == {"pref", "session", "theme"}

    run(main)
    cookie = peer.requests[1][1]["cookie"]
    assert set(cookie.split("; ")) == {"pref=1", "session=abc", "theme=dark", "once=x"}


def test_basic_auth_from_the_option_and_the_url():
    peer = Peer()

    async def main():
        async with raw_server(peer.handler(lambda r, p: ok())) as base, http.Client() as c:
            await c.get(base, auth=("user", "p\u00e4ss"))
            r = await c.get(base.replace("http://", "http://u%40x:s%3Acret@"))
            assert "s%3Acret" not in str(r.url) and "cret" not in str(r.request.url)

    run(main)
    import base64

    assert (
        peer.requests[0][1]["authorization"]
        == "Basic " + base64.b64encode("user:p\u00e4ss".encode()).decode()
    )
    assert peer.requests[1][1]["authorization"] == "Basic " + base64.b64encode(b"u@x:s:cret").decode()


def test_on_headers_sees_the_headers_before_they_are_sent():
    peer = Peer()

    async def main():
        async with raw_server(peer.handler(lambda r, p: ok())) as base, http.Client() as c:
            await c.get(base, on_headers=lambda h: h.__setitem__("X-Hooked", "yes"))

    run(main)
    assert peer.requests[0][1]["x-hooked"] == "yes"


# -- Expect: 100-continue --------------------------------------------------------------------------


def test_expect_100_continue():
    async def continuing(sock):
        line = await sock.receive("*l")
        headers = {}
        while field := (await sock.receive("*l")).decode():
            name, _, value = field.partition(":")
            headers[name.lower()] = value.strip()
        assert headers["expect"] == "100-continue"
        if b"refuse" in line:
            await sock.send(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
            await sock.receive_partial()  # the client closes instead of sending the body
            return
        await sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await sock.receive(int(headers["content-length"]))
        await sock.send(ok(body))

    async def main():
        async with raw_server(continuing) as base, http.Client() as c:
            r = await c.post(base + "/", body=b"payload", headers={"Expect": "100-continue"})
            assert r.body == b"payload"
            r = await c.post(base + "/refuse", body=b"payload", headers={"Expect": "100-continue"})
            assert r.status == 417
            assert c.pool.stats()["connections"] == 0

    run(main)


# -- the pool --------------------------------------------------------------------------------------


def test_concurrent_requests_share_at_most_max_connections_per_host():
    peer = Peer()

    async def answer(request, peer):
        await coserve.sleep(0)  # let the other requests pile up
        return ok(request[0].encode())

    async def main():
        async with raw_server(peer.handler(answer)) as base:
            async with http.Client(max_connections_per_host=3) as c:
                async with coserve.TaskGroup() as g:
                    tasks = [g.spawn(c.get, f"{base}/{i}") for i in range(30)]
                bodies = [t.result().body for t in tasks]
                assert bodies == [f"GET /{i} HTTP/1.1".encode() for i in range(30)]
                assert c.pool.stats()["connections"] <= 3

    run(main)
    assert peer.connections == 3 and peer.most_open == 3


def test_pool_timeout():
    release = []

    arrived = coserve.Event()

    async def answer(request, peer):
        ev = coserve.Event()
        release.append(ev)
        arrived.set()
        await ev.wait()
        return ok()

    async def main():
        async with raw_server(Peer().handler(answer)) as base:
            async with http.Client(max_connections=1, timeout=http.Timeouts(pool=0.5)) as c:
                first = coserve.spawn(c.get, base)
                await arrived.wait()  # the first request holds the one connection
                with pytest.raises(http.PoolTimeout) as e:
                    await c.get(base)
                assert e.value.code == http.errors.REQUEST_TIMEOUT
                release[0].set()
                assert (await first).status == 200
                assert c.pool.stats() == {"connections": 1, "idle": 1, "active": 0, "waiting": 0}

    run(main, clock=MockClock(autojump_threshold=0))


def test_a_reused_connection_the_server_closed_is_retried_once_for_idempotent_requests():
    peer = Peer()

    def answer(request, peer):
        n = len(peer.requests)
        if n == 2:  # the second request, on the kept-alive connection: closed without an answer
            return None
        return ok(str(n).encode())

    async def main():
        async with raw_server(peer.handler(answer)) as base, http.Client() as c:
            assert (await c.get(base)).body == b"1"
            assert (await c.get(base)).body == b"3"  # retried on a new connection
            peer.requests.clear()
            assert (await c.get(base)).body == b"1"
            with pytest.raises(http.RemoteProtocolError, match="without sending a response"):
                await c.post(base, body=b"x")  # not idempotent: not retried

    run(main)


def test_an_idle_connection_the_server_closed_is_not_used():
    peer = Peer()
    closed = coserve.Event()

    async def close_after_one(sock):
        peer.connections += 1
        await read_request(sock)
        await sock.send(ok())
        sock.close()
        closed.set()

    async def main():
        async with raw_server(close_after_one) as base, http.Client() as c:
            await c.get(base)
            await closed.wait()
            assert c.pool.stats()["idle"] == 1
            await c.post(base, body=b"x")  # not retryable: it must get a live connection the first time

    run(main)
    assert peer.connections == 2


@pytest.mark.parametrize("seed", range(12))
def test_cancellation_at_random_points_leaves_the_pool_consistent(seed):
    rnd = random.Random(seed)

    async def dribble(sock):
        while True:
            try:
                await read_request(sock)
            except (coserve.ConnectionClosed, ConnectionError):
                return
            for piece in (b"HTTP/1.1 200 OK\r\n", b"Content-Length: 6\r\n\r\n", b"abc", b"def"):
                await sock.send(piece)
                await coserve.sleep(0.001)

    async def main():
        async with raw_server(dribble) as base, http.Client(max_connections_per_host=2) as c:
            for _ in range(15):
                async with coserve.move_on_after(rnd.uniform(0, 0.006)):
                    r = await c.get(base)
                    assert r.body == b"abcdef"
                stats = c.pool.stats()
                assert stats["active"] == 0 and stats["waiting"] == 0, stats
                assert stats["connections"] == stats["idle"] <= 2
            assert (await c.get(base)).body == b"abcdef"

    run(main, clock=MockClock(autojump_threshold=0))


def test_streaming_returns_the_connection_only_when_read_to_the_end():
    async def main():
        body = bytes(range(256)) * 1024
        async with raw_server(Peer().handler(lambda r, p: ok(body))) as base, http.Client() as c:
            async with c.stream("GET", base) as r:
                assert r.body is None
                got = b"".join([chunk async for chunk in r.iter_bytes()])
            assert got == body and c.pool.stats()["idle"] == 1
            async with c.stream("GET", base) as r:
                async for _chunk in r.iter_bytes():
                    break
            assert c.pool.stats()["connections"] == 0  # half-read: closed, never reused
            async with c.stream("GET", base) as r:
                assert await r.read() == body and r.body == body
            with pytest.raises(http.ResponseNotRead):
                async with c.stream("GET", base) as r:
                    r.json()

    run(main)


def test_a_closed_client_refuses_requests():
    async def main():
        c = http.Client()
        await c.aclose()
        with pytest.raises(http.ClientClosed):
            await c.get("http://127.0.0.1:1/")

    run(main)


def test_module_level_calls_share_a_client_closed_at_the_end_of_the_run():
    peer = Peer()

    async def main():
        # The server's handler waits on the kept-alive connection until its timeout; the shared
        # client's idle connection is closed once the run's last task has ended.
        def answer(request, peer):  # a response to HEAD has no body (else the connection is not reused)
            return ok(b"ok")[: -2 if request[0].startswith("HEAD") else None]

        async with raw_server(peer.handler(answer), timeout=5) as base:
            for method in ("get", "head", "post", "put", "patch", "delete", "options"):
                r = await getattr(http, method)(base)
                assert r.status == 200
            assert (await http.request("GET", base)).status == 200

    run(main, clock=MockClock(autojump_threshold=0))  # then the leak gate checks the client's socket
    assert peer.connections == 1
    assert [line.split()[0] for line, _, _ in peer.requests] == [
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "OPTIONS",
        "GET",
    ]


# -- TLS and proxies -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def test_tls_verifies_by_default_and_offers_alpn(server_ctx, client_ctx):
    alpn = []

    async def handle(sock):
        alpn.append(sock.alpn)
        await read_request(sock)
        await sock.send(ok(b"secure"))

    async def main():
        server = coserve.serve_tcp(handle, "127.0.0.1", 0, ssl=server_ctx)
        url = f"https://localhost:{server.address[1]}/"
        try:
            async with http.Client() as c:
                with pytest.raises(http.TLSError) as e:
                    await c.get(url)  # the system's CAs do not know the test CA
                assert e.value.code == http.errors.SSL_ERROR
                r = await c.get(url, ssl=client_ctx)
                assert r.body == b"secure"
                assert alpn[-1] is None  # the program's own context: not changed
                r = await c.get(url, ssl={"verify_ca": False})  # turbo's ssl_options
                assert r.body == b"secure"
        finally:
            server.close()

    run(main)
    assert alpn[-1] == "http/1.1"


def test_https_redirecting_to_http_is_refused(server_ctx, client_ctx):
    async def main():
        async with raw_server(Peer().handler(lambda r, p: ok(b"plain"))) as plain:

            async def handle(sock):
                await read_request(sock)
                await sock.send(ok(b"", f"Location: {plain}/", status="302 Found"))

            server = coserve.serve_tcp(handle, "127.0.0.1", 0, ssl=server_ctx)
            try:
                async with http.Client(ssl=client_ctx) as c:
                    url = f"https://localhost:{server.address[1]}/"
                    with pytest.raises(http.InsecureRedirect, match="allow_insecure_redirect"):
                        await c.get(url)
                    r = await c.get(url, allow_insecure_redirect=True)
                    assert r.body == b"plain"
            finally:
                server.close()

    run(main)


async def _pipe(a, b):
    try:
        while data := await a.receive_partial():
            await b.send(data)
    except (coserve.ConnectionClosed, ConnectionError, coserve.SocketClosed):
        pass
    finally:
        b.close()


def test_proxies_absolute_form_and_connect_tunnels(server_ctx, client_ctx, monkeypatch):
    seen = []

    async def proxy(sock):
        line, headers, _ = await read_request(sock)
        seen.append((line, headers.get("proxy-authorization")))
        method, target, _ = line.split()
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = await coserve.connect("127.0.0.1" if host == "localhost" else host, int(port))
            await sock.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = http.URL(target)
            upstream = await coserve.connect(url.host, url.port)
            head = f"{method} {url.target} HTTP/1.1\r\n" + "".join(
                f"{n}: {v}\r\n" for n, v in headers.items() if n != "proxy-authorization"
            )
            await upstream.send(head.encode() + b"\r\n")
        async with coserve.TaskGroup() as g:
            g.spawn(_pipe, upstream, sock)
            g.spawn(_pipe, sock, upstream)

    async def tls_handle(sock):
        await read_request(sock)
        await sock.send(ok(b"through the tunnel", "Connection: close"))

    async def main():
        async with raw_server(Peer().handler(lambda r, p: ok(b"via proxy", "Connection: close"))) as origin:
            async with raw_server(proxy) as proxy_url:
                tls = coserve.serve_tcp(tls_handle, "127.0.0.1", 0, ssl=server_ctx)
                try:
                    async with http.Client(proxy=proxy_url.replace("http://", "http://pu:pp@")) as c:
                        assert (await c.get(origin + "/x?y=1")).body == b"via proxy"
                        r = await c.get(f"https://localhost:{tls.address[1]}/", ssl=client_ctx)
                        assert r.body == b"through the tunnel"
                    monkeypatch.setenv("HTTP_PROXY", proxy_url)
                    monkeypatch.setenv("NO_PROXY", "")
                    async with http.Client(trust_env=True) as c:
                        assert (await c.get(origin + "/env")).body == b"via proxy"
                    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
                    async with http.Client(trust_env=True) as c:
                        assert (await c.get(origin + "/direct")).body == b"via proxy"
                finally:
                    tls.close()

    run(main)
    assert seen[0] == (f"GET {origin_of(seen)}/x?y=1 HTTP/1.1", "Basic cHU6cHA=")
    assert seen[1][0].startswith("CONNECT localhost:") and seen[1][1] == "Basic cHU6cHA="
    assert seen[2][0].endswith("/env HTTP/1.1") and seen[2][1] is None
    assert len(seen) == 3  # NO_PROXY: the last request went direct


def origin_of(seen):
    return seen[0][0].split()[1].rsplit("/x", 1)[0]


# -- more of the pool: idle expiry, eviction, timeouts of each phase ---------------------------------


def test_idle_connections_expire_after_idle_timeout():
    peer = Peer()

    async def main():
        async with raw_server(peer.handler(lambda r, p: ok())) as base, http.Client(idle_timeout=5) as c:
            await c.get(base)
            await coserve.sleep(4)
            await c.get(base)  # still alive at 4 s: reused
            assert peer.connections == 1
            await coserve.sleep(6)
            await c.get(base)  # idle 6 s > 5: closed, a new one made
            assert peer.connections == 2 and c.pool.stats()["connections"] == 1

    run(main, clock=MockClock(autojump_threshold=0))


def test_a_full_pool_closes_another_hosts_idle_connection_to_make_room():
    a, b = Peer(), Peer()

    async def main():
        async with (
            raw_server(a.handler(lambda r, p: ok())) as base_a,
            raw_server(b.handler(lambda r, p: ok())) as base_b,
        ):
            async with http.Client(max_connections=1) as c:
                await c.get(base_a)
                await c.get(base_b)  # evicts a's idle connection
                assert c.pool.stats() == {"connections": 1, "idle": 1, "active": 0, "waiting": 0}
                await c.get(base_a)
                assert (a.connections, b.connections) == (2, 1)

    run(main)


@pytest.fixture
def unanswered_port():
    """A port whose listener's backlog is full and that never accepts: a connect there waits."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_connect_timeout_and_fetch_codes_for_timeouts(unanswered_port):
    port = unanswered_port

    async def main():
        with pytest.raises(http.ConnectTimeout) as e:
            await http.get(f"http://127.0.0.1:{port}/", timeout=http.Timeouts(connect=3))
        assert e.value.code == http.errors.CONNECT_TIMEOUT
        r = await http.fetch(f"http://127.0.0.1:{port}/", connect_timeout=3)
        assert r.error.code == http.errors.CONNECT_TIMEOUT

        async def silent(sock):
            await read_request(sock)
            await coserve.sleep(3600)

        async with raw_server(silent) as base:
            r = await http.fetch(base, request_timeout=2)
            assert r.error.code == http.errors.REQUEST_TIMEOUT and "timeout" in r.error.message
            coserve.cancel_all()

    run(main, clock=MockClock(autojump_threshold=0))


def test_cancelling_while_the_request_body_is_sent_closes_the_connection():
    got_head = coserve.Event()

    async def never_reads(sock):
        await sock.receive("*l")
        got_head.set()
        await coserve.sleep_forever()

    async def main():
        async with raw_server(never_reads) as base, http.Client() as c:

            async def upload():
                await c.post(base, body=b"x" * (32 << 20))  # more than the socket buffers hold

            task = coserve.spawn(upload)
            await got_head.wait()
            await coserve.testing.wait_all_tasks_blocked()
            task.cancel()
            with pytest.raises(coserve.Cancelled):
                await task
            assert c.pool.stats() == {"connections": 0, "idle": 0, "active": 0, "waiting": 0}
            coserve.cancel_all()

    run(main)


def test_waiters_are_served_first_come_first_served_and_cancelled_waiters_give_back_nothing():
    peer = Peer()
    release = coserve.Event()

    async def answer(request, peer):
        await release.wait()  # the first request holds the one connection until then
        return ok()

    async def main():
        async with raw_server(peer.handler(answer)) as base, http.Client(max_connections=1) as c:
            tasks = [coserve.spawn(c.get, f"{base}/{i}") for i in range(6)]
            await coserve.testing.wait_all_tasks_blocked()
            assert c.pool.stats()["waiting"] == 5
            tasks[3].cancel()  # waiting in the pool's queue
            release.set()
            for i, t in enumerate(tasks):
                if i == 3:
                    with pytest.raises(coserve.Cancelled):
                        await t
                else:
                    assert (await t).status == 200
            assert c.pool.stats() == {"connections": 1, "idle": 1, "active": 0, "waiting": 0}

    run(main)
    assert [line.split()[1] for line, _, _ in peer.requests] == ["/0", "/1", "/2", "/4", "/5"]
    assert peer.connections == 1


def test_cancelling_while_connecting_gives_the_slot_back(unanswered_port):
    port = unanswered_port

    async def main():
        async with http.Client(max_connections=1) as c:
            task = coserve.spawn(c.get, f"http://127.0.0.1:{port}/")
            await coserve.testing.wait_all_tasks_blocked()
            assert c.pool.stats()["active"] == 1  # connecting holds the one slot
            task.cancel()
            with pytest.raises(coserve.Cancelled):
                await task
            assert c.pool.stats() == {"connections": 0, "idle": 0, "active": 0, "waiting": 0}

    run(main)


def test_a_reset_mid_body_is_a_network_error():
    import socket
    import struct

    async def reset(sock):
        await read_request(sock)
        await sock.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial")
        await coserve.testing.wait_all_tasks_blocked()  # the client is waiting for the rest
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # with linger 0: a RST, not a FIN

    async def main():
        async with raw_server(reset) as base, http.Client() as c:
            with pytest.raises(http.NetworkError, match="reset") as e:
                await c.get(base)
            assert e.value.code == http.errors.SOCKET_ERROR
            assert c.pool.stats()["connections"] == 0

    run(main)


def test_max_decompression_ratio_option():
    body = gzip.compress(b"\0" * (4 << 20))  # about 4 KB inflating 1000 times

    async def main():
        async with raw_server(Peer().handler(lambda r, p: ok(body, "Content-Encoding: gzip"))) as base:
            async with http.Client() as c:
                with pytest.raises(http.DecodingError, match="inflated more than 100 times"):
                    await c.get(base)
                r = await c.get(base, max_decompression_ratio=None)
                assert len(r.body) == 4 << 20
                with pytest.raises(http.DecodingError, match="more than 2 times"):
                    await c.get(base, max_decompression_ratio=2)

    run(main)


def test_turbo_ssl_options_ca_path(ca, server_ctx, tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def handle(sock):
        await read_request(sock)
        await sock.send(ok(b"verified"))

    async def main():
        server = coserve.serve_tcp(handle, "127.0.0.1", 0, ssl=server_ctx)
        try:
            url = f"https://localhost:{server.address[1]}/"
            for _ in range(3):
                r = await http.fetch(url, ssl_options={"ca_path": str(ca_file)})
                assert r.error is None and r.body == b"verified"
            assert http._client._shared.pool.stats()["connections"] == 1  # one context: one pool key
            r = await http.fetch(url, ssl_options={"ca_path": str(tmp_path)})  # a directory, not hashed
            assert r.error.code == http.errors.SSL_ERROR
            with pytest.raises(TypeError, match="unknown ssl_options"):
                await http.get(url, ssl={"cafile": "x"})
        finally:
            server.close()

    run(main)
