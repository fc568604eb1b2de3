"""coserve.http's sans-I/O layer: request heads, the response reader and the body decoder.

Every response is fed whole and split at every byte boundary: the events must
not depend on how the bytes arrived.
"""

from __future__ import annotations

import gzip
import zlib

import pytest

from coserve.http import BodyTooLarge, DecodingError, LocalProtocolError, RemoteProtocolError
from coserve.http._protocol import (
    BodyDecoder,
    Data,
    EndOfMessage,
    Informational,
    ResponseHead,
    ResponseReader,
    encode_chunk,
    serialize_head,
)


def feed_split(method: str, raw: bytes, cut: int | None, eof: bool = False, **kw):
    """Feed *raw* to a new reader, cut in two at *cut* (None: whole); merge the Data events."""
    reader = ResponseReader(method, **kw)
    events = []
    parts = [raw] if cut is None else [raw[:cut], raw[cut:]]
    for part in parts:
        if part:
            events += reader.feed(part)
    if eof:
        events += reader.feed_eof()
    merged: list = []
    for e in events:
        if isinstance(e, Data) and merged and isinstance(merged[-1], Data):
            merged[-1] = Data(merged[-1].data + e.data)
        else:
            merged.append(e)
    return reader, merged


def every_split(method: str, raw: bytes, eof: bool = False, **kw):
    """The merged events of *raw* fed whole, and the same for every split: all equal."""
    _, whole = feed_split(method, raw, None, eof, **kw)
    for cut in range(1, len(raw)):
        _, split = feed_split(method, raw, cut, eof, **kw)
        assert split == whole, f"split at {cut}"
    return whole


def test_a_content_length_response_at_every_boundary():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"
    events = every_split("GET", raw)
    head, data, end = events
    assert isinstance(head, ResponseHead)
    assert (head.status, head.reason, head.http_version) == (200, "OK", "1.1")
    assert head.headers == [("Content-Length", "5"), ("X-A", "1")]
    assert head.content_length == 5 and head.keep_alive and not head.until_close
    assert data == Data(b"hello") and end == EndOfMessage(reusable=True)


def test_a_zero_length_body_ends_with_the_headers_at_every_boundary():
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    events = every_split("GET", raw)
    assert [type(e) for e in events] == [ResponseHead, EndOfMessage] and events[1].reusable
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert every_split("GET", raw)[1:] == [EndOfMessage(reusable=True)]


def test_a_chunked_response_at_every_boundary():
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    events = every_split("GET", raw)
    assert events[1:] == [Data(b"hello world"), EndOfMessage(reusable=True)]
    assert events[0].content_length is None


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_end_at_headers_and_the_next_response_follows(status):
    first = f"HTTP/1.1 {status} X\r\nContent-Length: 10\r\n\r\n".encode()
    reader, events = feed_split("GET", first, None)
    assert [type(e) for e in events] == [ResponseHead, EndOfMessage]
    assert events[1].reusable and not reader.excess
    # The next response on the kept-alive connection is read by a new reader.
    _, events = feed_split("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", None)
    assert events[1] == Data(b"ok")


def test_a_head_response_with_content_length_has_no_body_at_every_boundary():
    # httptools issue #47: llhttp would wait for the 1000 bytes.
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    events = every_split("HEAD", raw)
    assert [type(e) for e in events] == [ResponseHead, EndOfMessage]
    assert events[0].content_length == 1000 and events[1].reusable


def test_bytes_after_a_head_response_mean_the_connection_is_not_reused():
    reader, _ = feed_split("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", None)
    assert reader.done and reader.excess


def test_1xx_responses_come_before_the_final_one_at_every_boundary():
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    events = every_split("POST", raw)
    assert events[0] == Informational(100, "Continue", [])
    assert events[1] == Informational(103, "Early Hints", [("Link", "</a.css>")])
    assert events[2].status == 201 and events[3:] == [Data(b"ok"), EndOfMessage(reusable=True)]


def test_a_read_until_close_body_ends_at_eof():
    raw = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    events = every_split("GET", raw, eof=True)
    assert events[0].until_close and not events[0].keep_alive
    assert events[1:] == [Data(b"all of it"), EndOfMessage(reusable=False)]


def test_http_10_and_connection_close_are_not_reusable():
    _, events = feed_split("GET", b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", None)
    assert events[0].http_version == "1.0" and events[-1] == EndOfMessage(reusable=False)
    _, events = feed_split("GET", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", None)
    assert events[-1] == EndOfMessage(reusable=False)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"", "without sending a response"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the headers"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "before the end of the body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "before the end of the body"),
    ],
)
def test_a_cut_response_is_a_remote_protocol_error(raw, where):
    reader = ResponseReader("GET")
    if raw:
        reader.feed(raw)
    with pytest.raises(RemoteProtocolError, match=where):
        reader.feed_eof()


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"NOT HTTP\r\n\r\n",
    ],
)
def test_a_malformed_response_names_the_parsers_reason(raw):
    with pytest.raises(RemoteProtocolError, match="malformed"):
        ResponseReader("GET").feed(raw)


def test_limits_on_header_lines_and_fields():
    long_line = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200 + b"\r\n\r\n"
    with pytest.raises(RemoteProtocolError, match="longer than 100 bytes"):
        ResponseReader("GET", max_line=100).feed(long_line)
    # A line that is long only across two feeds is caught too (no unbounded accumulation).
    reader = ResponseReader("GET", max_line=100)
    reader.feed(long_line[:60])
    with pytest.raises(RemoteProtocolError, match="longer than"):
        reader.feed(long_line[60:])
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n"
    with pytest.raises(RemoteProtocolError, match="more than 5 header fields"):
        ResponseReader("GET", max_fields=5).feed(many)
    assert ResponseReader("GET", max_fields=6).feed(many)[0].status == 200


def test_a_101_that_was_not_asked_for_is_refused():
    with pytest.raises(RemoteProtocolError, match="switched protocols"):
        ResponseReader("GET").feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")


def test_bytes_after_the_end_of_a_response_are_excess():
    reader, events = feed_split("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA", None)
    assert events[-1] == EndOfMessage(reusable=True) and reader.excess


# -- request heads --------------------------------------------------------------------------


def test_serialize_head():
    head = serialize_head("GET", "/a?b=1", [("Host", "h"), ("X", " padded ")])
    assert head == b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nX: padded\r\n\r\n"
    assert serialize_head("GET", "/", [], "1.0").startswith(b"GET / HTTP/1.0\r\n")


@pytest.mark.parametrize(
    ("method", "target", "headers", "match"),
    [
        ("GE T", "/", [], "not an HTTP token"),
        ("GET\r\n", "/", [], "not an HTTP token"),
        ("GET", "/a b", [], "control character or space"),
        ("GET", "/\r\nX: y", [], "control character"),
        ("GET", "/", [("X\r\nY", "v")], "not an HTTP token"),
        ("GET", "/", [("X:", "v")], "not an HTTP token"),
        ("GET", "/", [("X", "v\r\nInjected: 1")], "CR, LF or NUL"),
        ("GET", "/", [("X", "v\x00")], "CR, LF or NUL"),
        ("GET", "/", [("X", "\u2603")], "not latin-1"),
    ],
)
def test_serialize_head_refuses_injection(method, target, headers, match):
    with pytest.raises(LocalProtocolError, match=match):
        serialize_head(method, target, headers)


def test_encode_chunk():
    assert encode_chunk(b"abc") == b"3\r\nabc\r\n"
    assert encode_chunk(b"x" * 16) == b"10\r\n" + b"x" * 16 + b"\r\n"
    assert encode_chunk(b"") == b"0\r\n\r\n"


# -- bodies ------------------------------------------------------------------------------------


def decode_all(decoder: BodyDecoder, data: bytes, step: int) -> bytes:
    out = b"".join(decoder.decode(data[i : i + step]) for i in range(0, len(data), step))
    return out + decoder.flush()


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "gzip, gzip"])
def test_decoding_in_any_pieces(coding, step):
    text = b"the quick brown fox " * 500
    if coding == "gzip":
        data, header = gzip.compress(text), "gzip"
    elif coding == "deflate":
        data, header = zlib.compress(text), "deflate"
    elif coding == "raw-deflate":
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data, header = z.compress(text) + z.flush(), "deflate"
    else:
        data, header = gzip.compress(gzip.compress(text)), "gzip, gzip"
    decoder = BodyDecoder(header)
    assert decoder.decoding
    assert decode_all(decoder, data, step) == text


brotli = pytest.importorskip("brotli")  # a test dependency (pyproject's test extra)


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_brotli_in_any_pieces(step):
    text = b"the quick brown fox " * 500
    decoder = BodyDecoder("br")
    assert decoder.decoding
    assert decode_all(decoder, brotli.compress(text), step) == text
    assert decode_all(BodyDecoder("gzip, br"), brotli.compress(gzip.compress(text)), step) == text


def test_a_brotli_bomb_is_stopped_and_a_cut_stream_is_an_error():
    bomb = brotli.compress(b"\0" * (200 << 20))  # 200 MiB of zeros in a few hundred bytes
    decoder = BodyDecoder("br")
    with pytest.raises(DecodingError, match="decompression bomb"):
        decode_all(decoder, bomb, 1 << 20)
    assert decoder.size < (2 << 20)
    with pytest.raises(DecodingError, match=r"\(br\)"):
        decode_all(BodyDecoder("br"), brotli.compress(b"x" * 1000)[:-3], 100)
    with pytest.raises(DecodingError, match=r"\(br\)"):
        decode_all(BodyDecoder("br"), b"not brotli at all, really not", 100)


zstandard = pytest.importorskip("zstandard")


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_zstd_in_any_pieces_and_several_frames(step):
    text = b"the quick brown fox " * 500
    z = zstandard.ZstdCompressor()
    assert decode_all(BodyDecoder("zstd"), z.compress(text) + z.compress(b"!"), step) == text + b"!"


def test_a_zstd_bomb_is_stopped_and_garbage_is_an_error():
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (200 << 20))  # a few KB
    decoder = BodyDecoder("zstd")
    with pytest.raises(DecodingError, match="decompression bomb"):
        decode_all(decoder, bomb, 1 << 20)
    assert decoder.size < (2 << 20)
    with pytest.raises(BodyTooLarge):
        decode_all(
            BodyDecoder("zstd", max_body_size=1000), zstandard.ZstdCompressor().compress(b"a" * 5000), 9
        )
    with pytest.raises(DecodingError, match=r"\(zstd\)"):
        decode_all(BodyDecoder("zstd"), b"not zstd at all, not at all", 100)


def test_without_brotli_or_zstandard_their_codings_are_neither_asked_for_nor_decoded(monkeypatch):
    from coserve.http import _protocol

    assert _protocol.accept_encoding() == "gzip, deflate, br, zstd"
    monkeypatch.setattr(_protocol, "brotli", None)
    assert _protocol.accept_encoding() == "gzip, deflate, zstd"
    assert not BodyDecoder("br").decoding
    monkeypatch.setattr(_protocol, "zstandard", None)
    assert _protocol.accept_encoding() == "gzip, deflate"
    assert not BodyDecoder("zstd").decoding


def test_concatenated_gzip_members():
    data = gzip.compress(b"one ") + gzip.compress(b"two")
    assert decode_all(BodyDecoder("gzip"), data, 5) == b"one two"


def test_unknown_coding_or_decompress_false_passes_the_body_as_is():
    data = gzip.compress(b"x")
    assert not BodyDecoder("compress").decoding
    assert decode_all(BodyDecoder("compress"), data, 3) == data
    assert decode_all(BodyDecoder("gzip", decompress=False), data, 3) == data


def test_a_broken_body_is_a_decoding_error():
    with pytest.raises(DecodingError, match="gzip"):
        decode_all(BodyDecoder("gzip"), b"not gzip at all", 100)


def test_a_decompression_bomb_is_stopped_before_it_is_inflated():
    bomb = gzip.compress(b"\0" * (50 << 20))  # 50 MiB of zeros in about 50 KB
    decoder = BodyDecoder("gzip")
    with pytest.raises(DecodingError, match="decompression bomb"):
        decode_all(decoder, bomb, 1 << 20)
    # Stopped within a step of the cap (ratio 100 x bytes received, at least 1 MiB), not at 50 MiB.
    assert decoder.size < (len(bomb) * 100) + (1 << 17)


def test_max_body_size_bounds_the_decoded_body():
    with pytest.raises(BodyTooLarge, match="max_body_size"):
        decode_all(BodyDecoder("gzip", max_body_size=1000), gzip.compress(b"a" * 5000), 100)
    with pytest.raises(BodyTooLarge):
        decode_all(BodyDecoder(None, max_body_size=10), b"x" * 11, 4)
    assert decode_all(BodyDecoder(None, max_body_size=10), b"x" * 10, 4) == b"x" * 10
    # max_decompression_ratio None: only max_body_size bounds it.
    big = gzip.compress(b"\0" * (3 << 20))
    assert len(decode_all(BodyDecoder("gzip", max_ratio=None), big, 1 << 16)) == 3 << 20
