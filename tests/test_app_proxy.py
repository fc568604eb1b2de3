"""coserve.app._proxy: HAProxy's PROXY protocol v1 and v2, fed whole and split at every byte."""

from __future__ import annotations

import re
import socket
import struct

import pytest

from coserve.app._proxy import (
    MAX_V1_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    is_trusted,
    parse_allow_ips,
    parse_proxy_header,
)

PAYLOAD = b"GET / HTTP/1.1\r\n\r\n"


def v2(ver_cmd: int, fam: int, block: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, len(block)) + block


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


V2_INET = v2(
    0x21,
    0x11,
    socket.inet_pton(socket.AF_INET, "192.0.2.10")
    + socket.inet_pton(socket.AF_INET, "198.51.100.1")
    + struct.pack("!HH", 56324, 443),
)
V2_INET6 = v2(
    0x21,
    0x21,
    socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    + socket.inet_pton(socket.AF_INET6, "2001:db8::2")
    + struct.pack("!HH", 40000, 8060),
)
V2_UNIX = v2(0x21, 0x31, b"/run/client.sock".ljust(108, b"\x00") + b"/run/app.sock".ljust(108, b"\x00"))
V2_LOCAL = v2(0x20, 0x00, b"")

CASES = [
    (
        b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n",
        ProxyHeader(
            1, "PROXY", socket.AF_INET, ("192.0.2.10", 56324), ("198.51.100.1", 443), socket.SOCK_STREAM
        ),
    ),
    (
        b"PROXY TCP6 2001:db8:0:0::1 2001:db8::2 40000 8060\r\n",
        ProxyHeader(
            1, "PROXY", socket.AF_INET6, ("2001:db8::1", 40000), ("2001:db8::2", 8060), socket.SOCK_STREAM
        ),
    ),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, "PROXY", socket.AF_UNSPEC, None, None)),
    (
        b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        ProxyHeader(1, "PROXY", socket.AF_UNSPEC, None, None),
    ),
    (
        V2_INET,
        ProxyHeader(
            2, "PROXY", socket.AF_INET, ("192.0.2.10", 56324), ("198.51.100.1", 443), socket.SOCK_STREAM
        ),
    ),
    (
        V2_INET6,
        ProxyHeader(
            2, "PROXY", socket.AF_INET6, ("2001:db8::1", 40000), ("2001:db8::2", 8060), socket.SOCK_STREAM
        ),
    ),
    (
        V2_UNIX,
        ProxyHeader(2, "PROXY", socket.AF_UNIX, "/run/client.sock", "/run/app.sock", socket.SOCK_STREAM),
    ),
    (V2_LOCAL, ProxyHeader(2, "LOCAL", socket.AF_UNSPEC, None, None)),
]
IDS = ["v1-tcp4", "v1-tcp6", "v1-unknown", "v1-unknown-long", "v2-inet", "v2-inet6", "v2-unix", "v2-local"]


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=IDS)
def test_whole_header_and_the_bytes_after_it(raw, expected):
    assert parse_proxy_header(raw) == (expected, len(raw))
    assert parse_proxy_header(raw + PAYLOAD) == (expected, len(raw))
    assert parse_proxy_header(bytearray(raw + PAYLOAD)) == (expected, len(raw))


@pytest.mark.parametrize(("raw", "expected"), CASES, ids=IDS)
def test_split_at_every_byte_asks_for_more_then_parses(raw, expected):
    for cut in range(len(raw)):
        assert parse_proxy_header(raw[:cut]) == (None, 0), cut
    # fed as a stream: append one byte at a time until the header is complete
    buffer = b""
    data = raw + PAYLOAD
    for i, byte in enumerate(data):
        buffer += bytes([byte])
        header, used = parse_proxy_header(buffer)
        if header is not None:
            assert (header, used) == (expected, len(raw))
            assert i == len(raw) - 1
            assert data[used:] == PAYLOAD
            break
    else:
        pytest.fail("the header was never complete")


def test_v1_longest_header_fits_the_bound():
    host = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    raw = f"PROXY TCP6 {host} {host} 65535 65535\r\n".encode()
    header, used = parse_proxy_header(raw)
    assert header is not None and header.source == (host, 65535) and used == len(raw) == 104
    # the worst case of the specification: UNKNOWN with every field as long as it can be
    raw = b"PROXY UNKNOWN " + b"x" * (MAX_V1_LENGTH - 16) + b"\r\n"
    assert len(raw) == MAX_V1_LENGTH
    assert parse_proxy_header(raw) == (ProxyHeader(1, "PROXY", socket.AF_UNSPEC, None, None), MAX_V1_LENGTH)


def test_v2_tlvs_are_kept_raw_in_order():
    block = (
        socket.inet_pton(socket.AF_INET, "10.0.0.1")
        + socket.inet_pton(socket.AF_INET, "10.0.0.2")
        + struct.pack("!HH", 1, 2)
    )
    tlvs = tlv(0x01, b"h2") + tlv(0x04, b"") + tlv(0x02, b"example.com") + tlv(0xEA, b"\x01vpce-1")
    raw = v2(0x21, 0x11, block + tlvs)
    header, used = parse_proxy_header(raw + PAYLOAD)
    assert used == len(raw)
    assert header is not None
    assert header.tlvs == ((0x01, b"h2"), (0x04, b""), (0x02, b"example.com"), (0xEA, b"\x01vpce-1"))
    assert header.tlv(0x02) == b"example.com"
    assert header.tlv(0x20) is None
    for cut in range(len(raw)):
        assert parse_proxy_header(raw[:cut]) == (None, 0)


def test_v2_local_ignores_its_address_block():
    block = socket.inet_pton(socket.AF_INET, "10.0.0.1") * 2 + struct.pack("!HH", 1, 2)
    raw = v2(0x20, 0x11, block)
    assert parse_proxy_header(raw) == (
        ProxyHeader(2, "LOCAL", socket.AF_INET, None, None, socket.SOCK_STREAM),
        len(raw),
    )


def test_v2_unspecified_family_uses_the_real_addresses():
    raw = v2(0x21, 0x00, b"\x00" * 5)
    assert parse_proxy_header(raw) == (ProxyHeader(2, "PROXY", socket.AF_UNSPEC, None, None), len(raw))


def test_v2_udp_and_abstract_unix_paths():
    raw = v2(0x21, 0x12, socket.inet_pton(socket.AF_INET, "10.0.0.1") * 2 + struct.pack("!HH", 53, 53))
    header, _ = parse_proxy_header(raw)
    assert header is not None and header.transport == socket.SOCK_DGRAM and header.source == ("10.0.0.1", 53)
    raw = v2(0x21, 0x31, b"\x00abstract".ljust(108, b"\x00") + b"/p".ljust(108, b"\x00"))
    header, _ = parse_proxy_header(raw)
    assert header is not None and header.source == "\x00abstract" and header.destination == "/p"


def test_v2_mapped_ipv4_in_ipv6_stays_as_sent():
    raw = v2(
        0x21,
        0x21,
        socket.inet_pton(socket.AF_INET6, "::ffff:10.1.2.3") * 2 + struct.pack("!HH", 1, 2),
    )
    header, _ = parse_proxy_header(raw)
    assert header is not None and header.source == ("::ffff:10.1.2.3", 1)
    header, _ = parse_proxy_header(b"PROXY TCP6 ::ffff:a01:203 ::1 1 2\r\n")
    assert header is not None and header.source == ("::ffff:10.1.2.3", 1)


MALFORMED = [
    (b"GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00", "not a PROXY protocol header"),
    (b"PROXYTCP4", "not a PROXY protocol header"),
    (b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "not a PROXY protocol header"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "CRLF"),
    (b"PROXY TCP4 1.2.3.4\r1.2.3.4 1 2\r\n", "CRLF"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", "6 fields"),
    (b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "6 fields"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "6 fields"),
    (b"PROXY \r\n", "6 fields"),
    (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", "address is not valid"),
    (b"PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", "address is not valid"),
    (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", "address is not valid"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "address is not valid"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "address is not valid"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", "port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "port"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 \xd9\xa1 2\r\n", "ASCII"),
    (b"PROXY UNKNOWN " + b"x" * 100, "longer than 107"),
    (b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", "longer than 107"),
    (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version 1"),
    (V2_SIGNATURE + b"\x31", "version 3"),
    (V2_SIGNATURE + b"\x22", "command 2"),
    (V2_SIGNATURE + b"\x21\x41", "0x41"),
    (V2_SIGNATURE + b"\x21\x13", "0x13"),
    (v2(0x21, 0x11, bytes(11)), "too short for AF_INET"),
    (v2(0x21, 0x21, bytes(35)), "too short for AF_INET6"),
    (v2(0x21, 0x31, bytes(215)), "too short for AF_UNIX"),
    (v2(0x21, 0x11, bytes(12) + b"\x01\x00"), "TLV cut short"),
    (v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05abc"), "overruns the header by 2 bytes"),
    (V2_SIGNATURE + b"\x21\x11\x10\x00", "over the bound of 4096"),
    (V2_SIGNATURE + b"\x21\x11\xff\xff", "over the bound"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_headers_are_refused(raw, message):
    with pytest.raises(ProxyProtocolError, match=message):
        parse_proxy_header(raw)


def test_errors_are_coserve_errors_and_value_errors():
    import coserve

    with pytest.raises(coserve.CoserveError):
        parse_proxy_header(b"nope")
    with pytest.raises(ValueError):
        parse_proxy_header(b"nope")


def test_an_error_shows_as_soon_as_the_bytes_cannot_be_a_header():
    # a wrong first byte is refused at once, without waiting for more
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(b"G")
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(b"\r\n\r\n\x01")
    with pytest.raises(ProxyProtocolError):
        parse_proxy_header(b"PROXY TCP4 1.2.3.4\n")


def test_v2_bound_can_be_raised():
    block = bytes(12) + tlv(0xE0, bytes(5000))
    raw = v2(0x21, 0x11, block)
    with pytest.raises(ProxyProtocolError, match="bound"):
        parse_proxy_header(raw)
    header, used = parse_proxy_header(raw, max_v2_length=16 + 65535)
    assert header is not None and used == len(raw) and header.tlv(0xE0) == bytes(5000)


# -- forwarded_allow_ips


@pytest.mark.parametrize(
    ("peer", "allowed", "expected"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.2", "127.0.0.1", False),
        ("10.1.2.3", "127.0.0.1, 10.0.0.0/8", True),
        ("10.1.2.3", "10.0.0.0/16", False),
        ("192.168.1.77", "192.168.1.1/24", True),  # host bits in a network are accepted
        ("2001:db8::5", "2001:db8::/32", True),
        ("2001:db9::5", "2001:db8::/32", False),
        ("::ffff:10.0.0.1", "10.0.0.0/8", True),  # a dual-stack socket's IPv4 peer
        ("::1", "127.0.0.1", False),
        ("fe80::1%eth0", "fe80::/10", True),
        ("203.0.113.9", "*", True),
        ("anything", "*", True),
        ("203.0.113.9", "10.0.0.1,*", True),
        ("203.0.113.9", "", False),
        ("not-an-ip", "0.0.0.0/0", False),
        ("203.0.113.9", ["10.0.0.1", "203.0.113.0/24"], True),
        (None, "127.0.0.1", True),  # a UNIX-socket peer
        ("", "127.0.0.1", True),
    ],
)
def test_is_trusted(peer, allowed, expected):
    assert is_trusted(peer, allowed) is expected


def test_allow_list_refuses_what_is_not_an_address():
    with pytest.raises(ValueError, match=re.escape("'10.0.0.300'")):
        parse_allow_ips("127.0.0.1,10.0.0.300")
    with pytest.raises(ValueError, match=re.escape("'example.com'")):
        is_trusted("127.0.0.1", "example.com")
    assert parse_allow_ips("*") is None
    assert parse_allow_ips(" 127.0.0.1 , ,::1") is not None
