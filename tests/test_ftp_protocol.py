"""coserve.ftp's reply parser and listing parsers, without I/O; and URL and argument checks."""

from __future__ import annotations

import pytest

import coserve
from coserve import ftp

MULTI = b"230-Welcome\r\n230-second line\r\n 230 indented, not the end\r\n230x neither\r\n230 Done\r\n"


def _all(parser):
    out = []
    while (reply := parser.next_reply()) is not None:
        out.append(reply)
    return out


def _feed_whole(data):
    p = ftp.ReplyParser()
    p.feed(data)
    return _all(p)


def _feed_bytewise(data):
    p = ftp.ReplyParser()
    out = []
    for i in range(len(data)):
        p.feed(data[i : i + 1])
        out += _all(p)
    return out


@pytest.mark.parametrize("feed", [_feed_whole, _feed_bytewise], ids=["whole", "bytewise"])
def test_single_and_multi_line_replies(feed):
    replies = feed(b"220 ready\r\n" + MULTI + b"200 ok\n")
    assert [r.code for r in replies] == [220, 230, 200]
    assert replies[1].text == "Welcome\n230-second line\n 230 indented, not the end\n230x neither\nDone"
    assert replies[1].raw.startswith("230-Welcome\n") and replies[1].raw.endswith("\n230 Done")
    assert replies[0].text == "ready" and replies[2].text == "ok"


def test_trailing_bytes_wait_for_the_rest():
    p = ftp.ReplyParser()
    p.feed(b"200 ok\r\n150-part")
    assert p.next_reply().code == 200
    assert p.next_reply() is None and p.buffered == len(b"150-part")
    p.feed(b"ial\r\n150 opening\r\n")
    assert p.next_reply().lines == ("150-partial", "150 opening")


@pytest.mark.parametrize(
    "data", [b"hello\r\n", b"25 short\r\n", b"600 no such class\r\n", b"200\r\n", b"2000 ok\r\n"]
)
def test_what_cannot_start_a_reply_is_refused(data):
    with pytest.raises(ftp.ProtocolError):
        _feed_whole(data)


def test_endless_lines_and_replies_are_refused():
    with pytest.raises(ftp.ProtocolError):
        _feed_whole(b"200 " + b"x" * (ftp.MAX_REPLY_LINE + 1))
    p = ftp.ReplyParser()
    p.feed(b"211-features\r\n")
    with pytest.raises(ftp.ProtocolError):
        for _ in range(ftp.MAX_REPLY_SIZE // 1000 + 2):
            p.feed(b" " + b"x" * 1000 + b"\r\n")
            assert p.next_reply() is None


def test_undecodable_bytes_survive():
    [reply] = _feed_whole(b'257 "/caf\xe9" is here\r\n')
    assert reply.text.encode("utf-8", "surrogateescape") == b'"/caf\xe9" is here'


def test_mlsd_lines():
    e = ftp.parse_mlsd_line("type=file;size=1024;modify=20240101120000;UNIX.mode=0644; my file.txt")
    assert (e.name, e.type, e.size, e.facts["modify"], e.facts["unix.mode"]) == (
        "my file.txt",
        "file",
        1024,
        "20240101120000",
        "0644",
    )
    assert ftp.parse_mlsd_line("type=dir;modify=20240101120000; sub").type == "dir"
    assert ftp.parse_mlsd_line("type=OS.unix=slink:/x; ln").type == "link"


def test_list_lines():
    e = ftp.parse_list_line("-rw-r--r--   1 owner group     2048 Jan 01 12:00 a file.txt")
    assert (e.name, e.type, e.size, e.facts["owner"], e.facts["date"]) == (
        "a file.txt",
        "file",
        2048,
        "owner",
        "Jan 01 12:00",
    )
    e = ftp.parse_list_line("lrwxrwxrwx   1 o g 4 Jan 01  2020 ln -> target")
    assert (e.name, e.type, e.facts["target"]) == ("ln", "link", "target")
    assert ftp.parse_list_line("drwxr-xr-x 2 o g 4096 Feb 3 10:00 d").type == "dir"
    assert ftp.parse_list_line("01-02-20  10:00AM       <DIR>          Dos Dir").type == "dir"
    e = ftp.parse_list_line("01-02-20  10:00AM                 1234 dos.txt")
    assert (e.name, e.type, e.size) == ("dos.txt", "file", 1234)
    assert ftp.parse_list_line("total 12").type == "unknown"


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/x",
        "ftp:///x",
        "ftp://example.org/",
        "ftp://example.org/x;type=d",
        "ftp://example.org/x\r\nDELE y",
        "ftp://example.org/a%0d%0aDELE%20y/x",
        "ftp://example.org:99999/x",
    ],
)
def test_bad_urls_are_refused_before_connecting(url):
    async def main():
        with pytest.raises(ftp.InvalidURL):
            await ftp.get(url)

    coserve.run(main)


def test_commands_with_line_breaks_are_refused_before_sending():
    client = ftp.FTPClient("127.0.0.1")

    async def main():
        for call in (
            client.command("NOOP\r\nDELE x"),
            client.cwd("a\nb"),
            client.delete("x\x00"),
            client.rename("a", "b\r"),
        ):
            with pytest.raises(ftp.InvalidCommand):
                await call
        with pytest.raises(ftp.InvalidCommand):
            client.retrieve("x\ny")

    coserve.run(main)
    with pytest.raises(ftp.InvalidCommand):
        ftp.FTPClient("127.0.0.1", user="me\r\nPASS x")
    with pytest.raises(TypeError):
        ftp.FTPClient("127.0.0.1", tls="yes")


def test_errors_are_classified_by_their_code():
    assert issubclass(ftp.TemporaryError, ftp.FTPError) and issubclass(ftp.FTPError, coserve.CoserveError)
    e = ftp.TemporaryError("Can't open data connection.", 425)
    assert (e.code, e.text, str(e)) == (425, "Can't open data connection.", "425 Can't open data connection.")
    assert issubclass(ftp.FTPTimeout, TimeoutError) and issubclass(ftp.InvalidURL, ValueError)
