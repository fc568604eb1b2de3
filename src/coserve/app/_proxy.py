"""HAProxy's PROXY protocol, versions 1 (text) and 2 (binary), without I/O.

A load balancer that speaks the PROXY protocol sends one header before the
client's bytes, naming the client's address and the address it connected to,
so that the address survives the hop. The specification is HAProxy's
``proxy-protocol.txt`` (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).

:func:`parse_proxy_header` reads the header from the first bytes of a
connection: it says when more bytes are needed, and otherwise returns the
header and how many bytes it took (the rest belongs to the application's
protocol). Only peers named by ``forwarded_allow_ips`` may send one
(:func:`is_trusted`); a header from anyone else must not be believed.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from .._errors import CoserveError

__all__ = [
    "MAX_V1_LENGTH",
    "MAX_V2_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "is_trusted",
    "parse_allow_ips",
    "parse_proxy_header",
]

#: The longest version 1 header, CRLF included (the specification's bound).
MAX_V1_LENGTH = 107
#: The longest version 2 header accepted by default: the 16 fixed bytes and an address block with TLVs of
#: up to 4 KiB less. The field allows 64 KiB; what senders put there (addresses, ALPN, authority, a few
#: TLS facts) is far shorter, and a peer should not make the server hold 64 KiB before its first byte.
MAX_V2_LENGTH = 4096
#: The 12 bytes every version 2 header starts with.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

_V1_PREFIX = b"PROXY "
_V2_FIXED = 16
_INET_BLOCK = 12  # two IPv4 addresses and two ports
_INET6_BLOCK = 36  # two IPv6 addresses and two ports
_UNIX_BLOCK = 216  # two 108-byte paths

#: An address carried by a header: (host, port) for IPv4 and IPv6, a path for a UNIX socket.
Address: TypeAlias = tuple[str, int] | str


class ProxyProtocolError(CoserveError, ValueError):
    """The bytes at the start of a connection are not a valid PROXY protocol header.

    The connection must be closed: the specification forbids guessing where the
    application's bytes start after a malformed header.
    """


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One parsed PROXY protocol header.

    ``version`` is 1 or 2. ``command`` is ``"PROXY"`` (the addresses are the
    client's) or ``"LOCAL"`` (version 2 only: the proxy's own connection, a
    health check; use the connection's real addresses). ``family`` is
    ``socket.AF_INET``, ``AF_INET6``, ``AF_UNIX`` or ``AF_UNSPEC``; ``transport``
    is ``socket.SOCK_STREAM``, ``SOCK_DGRAM`` or None when unspecified.
    ``source`` (the client) and ``destination`` (the address it connected to)
    are ``(host, port)`` for IPv4 and IPv6, a path for UNIX sockets, and None
    when the header carries no address the receiver may use (``LOCAL``,
    version 1's ``UNKNOWN``, an unspecified family): the connection's real
    addresses apply then. ``tlvs`` are version 2's type-length-value
    extensions in order, as ``(type, value)`` with the value's bytes untouched.
    """

    version: Literal[1, 2]
    command: Literal["PROXY", "LOCAL"]
    family: socket.AddressFamily
    source: Address | None
    destination: Address | None
    transport: socket.SocketKind | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of type ``kind``, or None if the header has none."""
        for t, value in self.tlvs:
            if t == kind:
                return value
        return None


def parse_proxy_header(data: bytes, *, max_v2_length: int = MAX_V2_LENGTH) -> tuple[ProxyHeader | None, int]:
    """Parse a PROXY protocol header (version 1 or 2) at the start of ``data``.

    Returns ``(None, 0)`` while ``data`` is a correct but incomplete start of a
    header (read more and call again with everything so far), or the header and
    the number of bytes of ``data`` it used. Raises :class:`ProxyProtocolError`
    when ``data`` cannot start a header, the header is malformed, or it is
    longer than the bound (version 1: 107 bytes; version 2: ``max_v2_length``).
    """
    data = bytes(data)
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data, max_v2_length)
    if data.startswith(_V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data) or _V1_PREFIX.startswith(data):
        return None, 0  # a prefix of one of the two signatures (or nothing yet)
    raise ProxyProtocolError(f"not a PROXY protocol header: {data[:16]!r}")


def _parse_v1(data: bytes) -> tuple[ProxyHeader | None, int]:
    end = data.find(b"\r\n", 0, MAX_V1_LENGTH)
    if end < 0:
        if len(data) >= MAX_V1_LENGTH:
            raise ProxyProtocolError(f"PROXY v1 header longer than {MAX_V1_LENGTH} bytes")
        if b"\n" in data or b"\r" in data[:-1] or b"\x00" in data:
            raise ProxyProtocolError("PROXY v1 header is not a CRLF-terminated line")
        return None, 0
    used = end + 2
    line = data[:end]
    if not line.isascii() or b"\r" in line or b"\n" in line or b"\x00" in line:
        raise ProxyProtocolError("PROXY v1 header is not a CRLF-terminated line of ASCII text")
    fields = line.decode("ascii").split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        # The receiver must ignore everything after UNKNOWN and use the connection's real addresses.
        return ProxyHeader(1, "PROXY", socket.AF_UNSPEC, None, None), used
    if len(fields) != 6:
        raise ProxyProtocolError(f"PROXY v1 header needs 6 fields separated by single spaces: {line!r}")
    _, proto, src, dst, sport, dport = fields
    ip_type: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
    if proto == "TCP4":
        family, ip_type = socket.AF_INET, ipaddress.IPv4Address
    elif proto == "TCP6":
        family, ip_type = socket.AF_INET6, ipaddress.IPv6Address
    else:
        raise ProxyProtocolError(f"PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN, not {proto!r}")
    hosts = []
    for text in (src, dst):
        if "%" in text:
            raise ProxyProtocolError(f"PROXY v1 {proto} address is not valid: {text!r}")
        try:
            ip = ip_type(text)
            hosts.append(_ipv6_text(ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip))
        except ValueError:
            raise ProxyProtocolError(f"PROXY v1 {proto} address is not valid: {text!r}") from None
    ports = [_v1_port(sport), _v1_port(dport)]
    return ProxyHeader(
        1, "PROXY", family, (hosts[0], ports[0]), (hosts[1], ports[1]), socket.SOCK_STREAM
    ), used


def _ipv6_text(ip: ipaddress.IPv6Address) -> str:
    # An IPv4-mapped address shows its IPv4 part dotted, as Python 3.13 and socket.inet_ntop do.
    mapped = ip.ipv4_mapped
    return f"::ffff:{mapped}" if mapped is not None else str(ip)


def _v1_port(text: str) -> int:
    # Decimal 0..65535; a leading zero is refused, as HAProxy does.
    if not (text.isdigit() and text.isascii()) or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"PROXY v1 port is not a number from 0 to 65535: {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"PROXY v1 port is not a number from 0 to 65535: {text!r}")
    return port


_FAMILIES = {0: socket.AF_UNSPEC, 1: socket.AF_INET, 2: socket.AF_INET6, 3: socket.AF_UNIX}
_TRANSPORTS = {0: None, 1: socket.SOCK_STREAM, 2: socket.SOCK_DGRAM}


def _parse_v2(data: bytes, max_length: int) -> tuple[ProxyHeader | None, int]:
    if len(data) < _V2_FIXED:
        if len(data) > 12:
            _v2_check_fixed(data[12], data[13] if len(data) > 13 else None)
        return None, 0
    ver_cmd, fam, length = struct.unpack_from("!BBH", data, 12)
    command, family, transport = _v2_check_fixed(ver_cmd, fam)
    if _V2_FIXED + length > max_length:
        raise ProxyProtocolError(
            f"PROXY v2 header of {_V2_FIXED + length} bytes is over the bound of {max_length}"
        )
    used = _V2_FIXED + length
    if len(data) < used:
        return None, 0
    block = data[_V2_FIXED:used]
    need = {socket.AF_INET: _INET_BLOCK, socket.AF_INET6: _INET6_BLOCK, socket.AF_UNIX: _UNIX_BLOCK}.get(
        family, 0
    )
    if len(block) < need:
        raise ProxyProtocolError(
            f"PROXY v2 address block of {len(block)} bytes is too short for {family.name} ({need} bytes)"
        )
    # AF_UNSPEC: the specification has the receiver discard the whole block, so it is not parsed.
    tlvs = _v2_tlvs(block[need:]) if family != socket.AF_UNSPEC else ()
    source: Address | None = None
    destination: Address | None = None
    if command == "PROXY":
        if family == socket.AF_INET:
            src, dst, sport, dport = struct.unpack_from("!4s4sHH", block)
            source = (str(ipaddress.IPv4Address(src)), sport)
            destination = (str(ipaddress.IPv4Address(dst)), dport)
        elif family == socket.AF_INET6:
            src, dst, sport, dport = struct.unpack_from("!16s16sHH", block)
            source = (_ipv6_text(ipaddress.IPv6Address(src)), sport)
            destination = (_ipv6_text(ipaddress.IPv6Address(dst)), dport)
        elif family == socket.AF_UNIX:
            source, destination = _unix_path(block[:108]), _unix_path(block[108:216])
    return ProxyHeader(2, command, family, source, destination, transport, tlvs), used


def _v2_check_fixed(
    ver_cmd: int, fam: int | None
) -> tuple[Literal["PROXY", "LOCAL"], socket.AddressFamily, socket.SocketKind | None]:
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header with version {ver_cmd >> 4}")
    if ver_cmd & 0x0F not in (0, 1):
        raise ProxyProtocolError(f"PROXY v2 header with the unassigned command {ver_cmd & 0x0F}")
    command: Literal["PROXY", "LOCAL"] = "PROXY" if ver_cmd & 0x0F else "LOCAL"
    if fam is None:
        return command, socket.AF_UNSPEC, None
    if fam >> 4 not in _FAMILIES or fam & 0x0F not in _TRANSPORTS:
        raise ProxyProtocolError(f"PROXY v2 header with the unassigned family and protocol byte 0x{fam:02x}")
    return command, _FAMILIES[fam >> 4], _TRANSPORTS[fam & 0x0F]


def _v2_tlvs(rest: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    i = 0
    while i < len(rest):
        if len(rest) - i < 3:
            raise ProxyProtocolError("PROXY v2 TLV cut short (a TLV needs 3 bytes of type and length)")
        kind, size = struct.unpack_from("!BH", rest, i)
        if i + 3 + size > len(rest):
            raise ProxyProtocolError(
                f"PROXY v2 TLV of type 0x{kind:02x} overruns the header by {i + 3 + size - len(rest)} bytes"
            )
        tlvs.append((kind, rest[i + 3 : i + 3 + size]))
        i += 3 + size
    return tuple(tlvs)


def _unix_path(raw: bytes) -> str:
    if raw[:1] == b"\x00":  # Linux's abstract namespace: a leading NUL, the name padded with NULs
        return "\x00" + os.fsdecode(raw[1:].rstrip(b"\x00"))
    return os.fsdecode(raw.split(b"\x00", 1)[0])


_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_ips(value: str | Iterable[str]) -> tuple[_Network, ...] | None:
    """Parse ``forwarded_allow_ips``: a comma list (or an iterable) of IP addresses and CIDR networks.

    Returns the networks, or None for ``*`` (every peer is trusted). Raises
    :class:`ValueError` naming the first entry that is neither.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for item in items:
        text = item.strip()
        if text == "*":
            return None
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or network") from None
    return tuple(networks)


@functools.lru_cache(maxsize=64)
def _allow_list(value: str) -> tuple[_Network, ...] | None:
    return parse_allow_ips(value)


def is_trusted(peer_host: str | None, forwarded_allow_ips: str | Iterable[str]) -> bool:
    """Whether a peer may send a PROXY header (or forwarding headers): is its address allowed.

    ``forwarded_allow_ips`` is a comma list (or an iterable) of IP addresses and
    CIDR networks, or ``*`` to trust every peer. ``peer_host`` is the connected
    peer's IP address as text; an IPv4-mapped IPv6 address (``::ffff:10.0.0.1``,
    from a dual-stack socket) matches the IPv4 entries too. None or an empty
    string stands for a UNIX-socket peer, which is trusted as gunicorn does:
    only processes allowed to open the socket file reach it. Any other text
    that is not an IP address is not trusted.
    """
    networks = (
        _allow_list(forwarded_allow_ips)
        if isinstance(forwarded_allow_ips, str)
        else (parse_allow_ips(forwarded_allow_ips))
    )
    if networks is None or not peer_host:
        return True
    try:
        address = ipaddress.ip_address(peer_host)
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        if address.scope_id is not None:
            candidates.append(ipaddress.IPv6Address(peer_host.split("%", 1)[0]))
    return any(a in net for a in candidates for net in networks if a.version == net.version)
