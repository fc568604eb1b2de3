"""coserve.smtp without I/O: the reply parser, the data encoder, the envelope and the error classes."""

from __future__ import annotations

import email
from email.message import EmailMessage, Message

import pytest

from coserve import smtp
from coserve.smtp import Reply, ReplyParser, encode_data, parse_ehlo, prepare


def _feed(lines):
    parser, out = ReplyParser(), []
    for line in lines:
        r = parser.feed(line)
        if r is not None:
            out.append(r)
    return out


def test_parser_single_multi_and_back_to_back_replies():
    assert _feed([b"250 ok"]) == [Reply(250, "ok")]
    assert _feed([b"250-mail.example", b"250-SIZE 100", b"250 8BITMIME"]) == [
        Reply(250, "mail.example\nSIZE 100\n8BITMIME")
    ]
    assert _feed([b"250 a", b"550-no", b"550 such user", b"354"]) == [
        Reply(250, "a"), Reply(550, "no\nsuch user"), Reply(354, "")
    ]  # fmt: skip
    assert Reply(550, "no\nsuch user").lines == ["no", "such user"]


def test_parser_returns_none_until_the_last_line():
    p = ReplyParser()
    assert p.feed(b"220-hello") is None
    assert p.feed(b"220-there") is None
    assert p.feed(b"220 end") == Reply(220, "hello\nthere\nend")


@pytest.mark.parametrize(
    "lines",
    [
        [b"hello"],
        [b"25 short"],
        [b"250x"],
        [b"650 not a code"],
        [b""],
        [b"250-a", b"251 b"],
        [b"250-a", b"junk"],
    ],
)
def test_parser_refuses_malformed_replies(lines):
    with pytest.raises(smtp.MalformedReply):
        _feed(lines)


def test_parser_bounds_the_lines_of_a_reply():
    p = ReplyParser()
    with pytest.raises(smtp.MalformedReply, match="more than"):
        for _ in range(smtp.MAX_REPLY_LINES + 1):
            p.feed(b"250-again")


def test_parse_ehlo_lowercases_keywords_and_reads_the_old_auth_form():
    ext = parse_ehlo("mx.example greets you\nSIZE 1000\nPIPELINING\nAUTH PLAIN\nAUTH=LOGIN\n8BITMIME\n\n!bad")
    assert ext == {"size": "1000", "pipelining": "", "auth": "PLAIN LOGIN", "8bitmime": ""}


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
        (b"a\rb\r\nc", b"a\r\nb\r\nc\r\n.\r\n"),  # bare CR and LF both become CRLF (SMTP smuggling)
        (b".top\n..two\nmid.dle\n.", b"..top\r\n...two\r\nmid.dle\r\n..\r\n.\r\n"),
        (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),  # a lone dot line can never end the data early
        (b"a\r\n.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"", b".\r\n"),
    ],
)
def test_encode_data_normalises_line_ends_and_dot_stuffs(data, wire):
    assert encode_data(data) == wire


def test_encode_data_limits_lines_to_998_octets():
    assert encode_data(b"x" * 998 + b"\n" + b"y" * 998).endswith(b"y" * 998 + b"\r\n.\r\n")
    with pytest.raises(smtp.InvalidMessage, match="999 octets"):
        encode_data(b"ok\n" + b"x" * 999 + b"\n")


def _message(**headers):
    m = EmailMessage()
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content("hello\n")
    return m


def test_prepare_takes_the_envelope_from_the_headers_and_never_sends_bcc():
    m = _message(
        From="Ada <ada@example.org>", To="b@x.org, C <c@x.org>", Cc="d@x.org", Bcc="e@x.org, b@x.org"
    )
    p = prepare(m)
    assert p.sender == "ada@example.org"
    assert p.recipients == ["b@x.org", "c@x.org", "d@x.org", "e@x.org"]  # in order, once each
    assert b"Bcc" not in p.data and b"e@x.org" not in p.data
    assert m["Bcc"] == "e@x.org, b@x.org"  # the caller's message is untouched
    assert p.data.endswith(b"\r\n") and b"\r\n\r\nhello\r\n" in p.data
    assert not p.international


def test_prepare_prefers_sender_and_the_arguments():
    m = _message(From="a@x.org, b@x.org", Sender="s@x.org", To="t@x.org")
    assert prepare(m).sender == "s@x.org"
    p = prepare(m, sender="", recipients="only@x.org")  # "" is the null reverse-path <>
    assert (p.sender, p.recipients) == ("", ["only@x.org"])


def test_prepare_uses_the_resent_headers_of_a_resent_message():
    m = _message(From="a@x.org", To="t@x.org")
    m["Resent-Date"] = "Fri, 04 Dec 2026 22:00:00 +0000"
    m["Resent-From"] = "r@x.org"
    m["Resent-To"] = "n@x.org"
    m["Resent-Bcc"] = "hidden@x.org"
    p = prepare(m)
    assert (p.sender, p.recipients) == ("r@x.org", ["n@x.org", "hidden@x.org"])
    assert b"hidden" not in p.data
    m["Resent-Date"] = "Sat, 05 Dec 2026 22:00:00 +0000"
    with pytest.raises(smtp.InvalidMessage, match="several Resent-"):
        prepare(m)


def test_prepare_marks_international_addresses():
    p = prepare(_message(From="ådå@exämple.org", To="b@x.org", Subject="ünï"))
    assert p.international and "ådå@exämple.org".encode() in p.data  # SMTPUTF8: headers raw UTF-8


@pytest.mark.parametrize(
    "recipient", ["b@x.org\r\nRCPT TO:<evil@x.org>", "b@x.org\n", "<b@x.org>", "b@x.org\0", " b@x.org", ""]
)
def test_prepare_refuses_bad_addresses(recipient):
    with pytest.raises(smtp.InvalidAddress):
        prepare(b"data", "a@x.org", [recipient])
    with pytest.raises(smtp.InvalidAddress):
        prepare(b"data", recipient or "a@x.org\r\n", ["b@x.org"])


def test_prepare_refuses_a_message_without_recipients_or_sender():
    with pytest.raises(smtp.NoRecipients):
        prepare(_message(From="a@x.org"))
    with pytest.raises(smtp.NoRecipients):
        prepare(b"data", "a@x.org", [])
    with pytest.raises(smtp.InvalidAddress, match="no sender"):
        prepare(_message(To="b@x.org"))
    assert issubclass(smtp.NoRecipients, ValueError) and issubclass(smtp.InvalidAddress, ValueError)


def test_prepare_refuses_header_injection_even_in_a_compat32_message():
    m = Message()  # compat32 stores what it is given
    m["From"] = "a@x.org"
    m["To"] = "b@x.org"
    m["Subject"] = "hi\r\nBcc: victim@x.org"
    with pytest.raises(smtp.InvalidMessage, match="Subject"):
        prepare(m)
    folded = email.message_from_bytes(
        b"From: a@x.org\r\nTo: b@x.org\r\nSubject: long\r\n folded\r\n\r\nbody\r\n"
    )
    assert b"Subject: long" in prepare(folded).data  # folding is not a line break


def test_prepare_refuses_what_is_not_a_message():
    with pytest.raises(smtp.InvalidMessage):
        prepare(42, "a@x.org", ["b@x.org"])  # type: ignore[arg-type]
    with pytest.raises(smtp.InvalidMessage, match="ASCII"):
        prepare("héllo", "a@x.org", ["b@x.org"])
    assert prepare("hello", "a@x.org", ["b@x.org"]).data == b"hello"


def test_every_refusal_is_temporary_or_permanent():
    for cls in (smtp.GreetingRefused, smtp.HeloRefused, smtp.CommandRefused, smtp.AuthenticationFailed,
                smtp.SenderRefused, smtp.DataRefused):  # fmt: skip
        t = smtp._refusal(cls, Reply(451, "later"), "X")
        p = smtp._refusal(cls, Reply(554, "never"), "X")
        assert isinstance(t, cls) and isinstance(t, smtp.SMTPTemporaryError) and t.temporary
        assert isinstance(p, cls) and isinstance(p, smtp.SMTPPermanentError) and not p.temporary
        assert (p.code, p.text, p.command, str(p)) == (554, "never", "X", "X refused: 554 never")
        assert type(t).__qualname__ == f"{cls.__name__}.Temporary"
    unexpected = smtp._refusal(smtp.CommandRefused, Reply(354, "go on"), "NOOP")
    assert isinstance(unexpected, smtp.SMTPPermanentError)  # a reply the command does not allow


def test_recipients_refused_carries_every_refusal():
    e = smtp.RecipientsRefused.Permanent({"a@x": (550, "no"), "b@x": (450, "later")})
    assert e.recipients == {"a@x": (550, "no"), "b@x": (450, "later")} and e.code == 550
    assert isinstance(e, smtp.RecipientsRefused) and "a@x" in str(e)


def test_message_too_large_says_both_sizes():
    e = smtp.MessageTooLarge(2000, 1000)
    assert (e.size, e.limit) == (2000, 1000) and "1000" in str(e)
    assert issubclass(smtp.SMTPTimeout, TimeoutError) and issubclass(smtp.ServerDisconnected, ConnectionError)
    assert issubclass(smtp.TLSError, smtp.SMTPError) and issubclass(smtp.SMTPError, smtp.CoserveError)
