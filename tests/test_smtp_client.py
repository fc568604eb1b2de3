"""coserve.smtp against real aiosmtpd servers, and against raw coserve peers that misbehave."""

from __future__ import annotations

import base64
import functools
import hmac
import pathlib
import ssl
import subprocess
import sys
from email.message import EmailMessage

import pytest

import coserve
from coserve import smtp
from coserve.testing import MockClock, wait_all_tasks_blocked
from smtp_peers import PASSWORD, SIZE_LIMIT, USER, Aiosmtpd, expect, raw_server

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def servers():
    """The aiosmtpd servers, started once for the module (threads of their own, stopped at its end)."""
    p = Aiosmtpd()
    yield p
    p.stop()


@pytest.fixture
def peers(servers):
    """The servers for one test; afterwards, waits until aiosmtpd closed its sockets (the fd gate)."""
    servers.messages.clear()
    yield servers
    servers.settle()


@pytest.fixture
def delivered(peers):
    """The messages delivered during the test."""
    return peers.messages


def message(to="bob@example.org", body="Hello Bob.\n.a dot line\nbye\n", **headers):
    m = EmailMessage()
    m["From"] = "Ada <ada@example.org>"
    m["To"] = to
    m["Subject"] = "a test"
    for name, value in headers.items():
        m[name] = value
    m.set_content(body)
    return m


def send(m, **kwargs):
    """smtp.send() in a run of its own."""
    return coserve.run(functools.partial(smtp.send, m, **kwargs))


def run(main, *args):
    return coserve.run(main, *args, clock=MockClock(autojump_threshold=0))


# -- against aiosmtpd ----------------------------------------------------------------------------------


def test_send_delivers_with_the_envelope_from_the_headers(peers, delivered):
    m = message(to="bob@example.org, refuse@example.org", Cc="carol@example.org", Bcc="dan@example.org")
    refused = send(m, host=HOST, port=peers.ports["plain"])  # no TLS offered, none needed
    assert refused == {"refuse@example.org": (550, "5.1.1 no such user here")}
    (d,) = delivered
    assert d.sender == "ada@example.org"
    assert d.recipients == ["bob@example.org", "carol@example.org", "dan@example.org"]
    assert b"dan@example.org" not in d.data and b"Bcc" not in d.data
    assert (
        b"\r\n\r\nHello Bob.\r\n.a dot line\r\nbye\r\n" in d.data
    )  # dot-stuffed on the wire, not in the mail
    assert d.options == [f"SIZE={len(smtp.encode_data(smtp.prepare(m).data))}"]


def test_an_8bit_message_goes_with_body_8bitmime(peers, delivered):
    send(message(body="grüße\n"), host=HOST, port=peers.ports["plain"])
    (d,) = delivered
    assert "BODY=8BITMIME" in d.options and "grüße".encode() in d.data


def test_international_addresses_go_with_smtputf8(peers, delivered):
    m = message(to="jürgen@exämple.org")
    send(m, host=HOST, port=peers.ports["plain"])
    (d,) = delivered
    assert d.recipients == ["jürgen@exämple.org"] and "SMTPUTF8" in d.options
    assert "To: jürgen@exämple.org".encode() in d.data


def test_credentials_require_starttls_by_default_and_it_verifies(peers, delivered):
    async def main():
        async with smtp.SMTPClient(
            HOST, peers.ports["starttls"], ssl=peers.client_ssl, user=USER, password=PASSWORD
        ) as c:
            assert c.tls and c.supports("auth")  # AUTH was learned again over TLS
            return await c.send_message(message())

    assert coserve.run(main) == {}
    assert len(delivered) == 1


def test_starttls_without_credentials_is_used_when_offered(peers, delivered):
    async def main():
        async with smtp.SMTPClient(HOST, peers.ports["starttls"], ssl=peers.client_ssl) as c:
            assert c.tls
            await c.send_message(message())

    coserve.run(main)
    assert len(delivered) == 1


def test_starttls_never_stays_in_clear(peers):
    async def main():
        async with smtp.SMTPClient(HOST, peers.ports["starttls"], starttls=False) as c:
            assert not c.tls and c.supports("starttls")
            await c.noop()

    coserve.run(main)


def test_the_system_context_refuses_a_certificate_it_does_not_trust(peers, delivered):
    with pytest.raises(smtp.TLSError):
        send(message(), host=HOST, port=peers.ports["starttls"])
    assert delivered == []


def test_starttls_required_refuses_a_server_without_it(peers, delivered):
    with pytest.raises(smtp.SMTPNotSupported, match="STARTTLS"):
        send(message(), host=HOST, port=peers.ports["plain"], starttls="required")
    assert delivered == []


def test_credentials_are_never_sent_in_clear_by_default(peers, delivered):
    kwargs = dict(host=HOST, port=peers.ports["plain_auth"], user=USER, password=PASSWORD)
    with pytest.raises(smtp.SMTPNotSupported, match="never sent in clear"):
        send(message(), **kwargs)
    with pytest.raises(smtp.CleartextCredentials):
        send(message(), starttls="never", **kwargs)
    assert delivered == []
    send(message(), starttls="never", allow_insecure_auth=True, **kwargs)
    assert len(delivered) == 1


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_login_by_mechanism_and_a_wrong_password(peers, mechanism):
    async def main():
        async with smtp.SMTPClient(HOST, peers.ports["starttls"], ssl=peers.client_ssl) as c:
            with pytest.raises(smtp.AuthenticationFailed) as e:
                await c.login(USER, "wrong", mechanism)
            assert isinstance(e.value, smtp.SMTPPermanentError) and e.value.code == 535
            assert (await c.login(USER, PASSWORD, mechanism)).code == 235
            with pytest.raises(smtp.SMTPNotSupported, match="CRAM-MD5"):
                await c.login(USER, PASSWORD, "CRAM-MD5")
            with pytest.raises(ValueError, match="mechanism"):
                await c.login(USER, PASSWORD, "XOAUTH2")

    coserve.run(main)


def test_implicit_tls_with_login(peers, delivered):
    kwargs = dict(tls=True, ssl=peers.client_ssl, user=USER, password=PASSWORD)
    refused = send(message(), host=HOST, port=peers.ports["implicit"], **kwargs)
    assert refused == {} and len(delivered) == 1


def test_every_recipient_refused_raises_with_each_refusal(peers, delivered):
    with pytest.raises(smtp.RecipientsRefused) as e:
        send(message(to="refuse@x.org, later@x.org"), host=HOST, port=peers.ports["plain"])
    assert e.value.recipients == {
        "refuse@x.org": (550, "5.1.1 no such user here"),
        "later@x.org": (450, "4.2.1 mailbox busy, try later"),
    }
    assert isinstance(e.value, smtp.SMTPPermanentError)
    with pytest.raises(smtp.SMTPTemporaryError):  # temporary when every refusal is
        send(message(to="later@x.org"), host=HOST, port=peers.ports["plain"])
    assert delivered == []


def test_a_message_over_the_size_limit_is_refused_before_it_is_sent(peers, delivered):
    big = message(body=("x" * 76 + "\n") * (SIZE_LIMIT // 77 + 10))
    with pytest.raises(smtp.MessageTooLarge) as e:
        send(big, host=HOST, port=peers.ports["plain"])
    assert e.value.limit == SIZE_LIMIT and e.value.size > SIZE_LIMIT
    assert delivered == []


def test_one_connection_many_messages_and_the_small_commands(peers, delivered):
    async def main():
        c = smtp.SMTPClient(HOST, peers.ports["plain"], local_hostname="client.example")
        greeting = await c.connect()
        assert greeting.code == 220 and c.esmtp and c.supports("8BITMIME") and c.extensions["size"]
        for n in range(5):
            assert await c.send_message(message(to=f"r{n}@x.org")) == {}
        assert await c.sendmail("a@x.org", ["b@x.org"], b"Subject: raw\n\nbare\nLF\n") == {}
        assert (await c.noop()).code == 250 and (await c.rset()).code == 250
        assert (await c.command("VRFY bob")).code in (250, 252, 502)
        with pytest.raises(smtp.InvalidInput):
            await c.command("NOOP\r\nRSET")
        with pytest.raises(smtp.InvalidInput):
            await c.sendmail("a@x.org", ["b@x.org"], b"x", mail_options=["BODY=8BITMIME RET=FULL"])
        await c.quit()
        assert not c.connected
        with pytest.raises(smtp.NotConnected):
            await c.noop()
        await c.quit()  # again: nothing happens

    coserve.run(main)
    assert [d.recipients for d in delivered] == [[f"r{n}@x.org"] for n in range(5)] + [["b@x.org"]]
    assert delivered[-1].data == b"Subject: raw\r\n\r\nbare\r\nLF\r\n"


def test_a_refusal_inside_the_block_still_says_quit(peers):
    async def main():
        async with smtp.SMTPClient(HOST, peers.ports["plain"]) as c:
            await c.sendmail("a@x.org", ["refuse@x.org"], b"x")
        return c

    with pytest.raises(smtp.RecipientsRefused):
        coserve.run(main)


def test_bad_input_is_refused_before_connecting():
    async def main():
        with pytest.raises(smtp.InvalidAddress):
            await smtp.send(message(), recipients=["b@x.org\r\nRCPT TO:<evil@x.org>"], host=HOST, port=1)
        with pytest.raises(smtp.InvalidAddress):
            await smtp.send(message(), sender="a@x.org>\r\nRSET", host=HOST, port=1)
        with pytest.raises(smtp.NoRecipients):
            await smtp.send(message(to="undisclosed-recipients:;"), host=HOST, port=1)
        with pytest.raises(smtp.InvalidMessage):
            await smtp.send(b"bytes", host=HOST, port=1)  # type: ignore[arg-type]

    coserve.run(main)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"starttls": "maybe"}, ValueError),
        ({"ssl": True}, TypeError),
        ({"user": "ada"}, ValueError),
        ({"port": 0}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"local_hostname": "a b"}, ValueError),
    ],
)
def test_bad_client_arguments_fail_at_the_call(kwargs, error):
    with pytest.raises(error):
        smtp.SMTPClient(HOST, **kwargs)


def test_default_ports():
    assert smtp.SMTPClient(HOST).port == 25 and smtp.SMTPClient(HOST, tls=True).port == 465


def test_connect_error():
    with socket_port() as port, pytest.raises(smtp.ConnectError):
        send(message(), host=HOST, port=port)


def socket_port():
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed_port():
        s = socket.socket()
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()  # nobody listens there now
        yield port

    return closed_port()


# -- against raw peers that misbehave ------------------------------------------------------------------


async def greet(sock, *extensions):
    """Greet, read EHLO and answer with *extensions*."""
    await sock.send(b"220 raw.example ESMTP\r\n")
    await expect(sock, b"EHLO [127.0.0.1]")
    lines = [b"raw.example", *extensions]
    await sock.send(b"".join(b"250-" + x + b"\r\n" for x in lines[:-1]) + b"250 " + lines[-1] + b"\r\n")


async def read_data(sock):
    lines = []
    while (line := await sock.receive("*l")) != b".":
        lines.append(line)
    return lines


def test_pipelining_sends_mail_rcpt_and_data_together():
    seen = []

    async def server(sock):
        await greet(sock, b"PIPELINING")
        for _ in range(4):  # no reply before every command arrived: a client that waits would time out
            seen.append(await sock.receive("*l"))
        await sock.send(b"250 ok\r\n250 ok\r\n550 no\r\n354 go\r\n")
        seen.append(await read_data(sock))
        await sock.send(b"250 queued\r\n")
        await expect(sock, b"QUIT")
        await sock.send(b"221 bye\r\n")

    async def main():
        async with raw_server(server) as port:
            return await smtp.send(message(to="a@x.org, b@x.org"), host=HOST, port=port)

    assert run(main) == {"b@x.org": (550, "no")}
    assert seen[:4] == [b"MAIL FROM:<ada@example.org>", b"RCPT TO:<a@x.org>", b"RCPT TO:<b@x.org>", b"DATA"]
    assert b"..a dot line" in seen[4]


def test_pipelined_data_taken_with_every_recipient_refused_is_ended_empty():
    seen = []

    async def server(sock):
        await greet(sock, b"PIPELINING")
        for _ in range(3):
            await sock.receive("*l")
        await sock.send(b"250 ok\r\n550 no\r\n354 go anyway\r\n")  # a server that takes DATA regardless
        seen.append(await read_data(sock))
        await sock.send(b"554 no valid recipients\r\n")
        seen.append(await sock.receive("*l"))
        await sock.send(b"250 reset\r\n")
        await expect(sock, b"QUIT")
        await sock.send(b"221 bye\r\n")

    async def main():
        async with raw_server(server) as port:
            with pytest.raises(smtp.RecipientsRefused) as e:
                await smtp.send(message(to="a@x.org"), host=HOST, port=port)
            return e.value.recipients

    assert run(main) == {"a@x.org": (550, "no")}
    assert seen == [[], b"RSET"]


def test_sender_refused_and_data_refused():
    async def server(sock):
        await greet(sock, b"SIZE")
        await expect(sock, b"MAIL FROM:<ada@example.org> SIZE=")
        await sock.send(b"553 5.7.1 sender not allowed\r\n")
        await expect(sock, b"RSET")
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"MAIL FROM:<>")  # the null sender
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"RCPT TO:<a@x.org>")
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"DATA")
        await sock.send(b"451 4.3.0 local error\r\n")
        await expect(sock, b"RSET")
        await sock.send(b"250 ok\r\n")
        for command, answer in ((b"MAIL", b"250 ok"), (b"RCPT", b"250 ok"), (b"DATA", b"354 go")):
            await expect(sock, command)  # one at a time: the server did not offer PIPELINING
            await sock.send(answer + b"\r\n")
        await read_data(sock)
        await sock.send(b"554 5.6.0 content refused\r\n")
        await expect(sock, b"QUIT")
        await sock.send(b"221 bye\r\n")

    async def main():
        async with raw_server(server) as port, smtp.SMTPClient(HOST, port) as c:
            with pytest.raises(smtp.SenderRefused) as e:
                await c.send_message(message())
            assert isinstance(e.value, smtp.SMTPPermanentError) and e.value.sender == "ada@example.org"
            with pytest.raises(smtp.DataRefused.Temporary):
                await c.send_message(message(), sender="", recipients=["a@x.org"])
            with pytest.raises(smtp.DataRefused.Permanent) as e:
                await c.send_message(message(), recipients="a@x.org")
            assert e.value.code == 554 and e.value.text == "5.6.0 content refused"
            assert c.connected

    run(main)


def test_ehlo_falls_back_to_helo():
    async def server(sock):
        await sock.send(b"220 old.example SMTP\r\n")
        await expect(sock, b"EHLO ")
        await sock.send(b"502 what?\r\n")
        await expect(sock, b"HELO [127.0.0.1]")
        await sock.send(b"250 old.example\r\n")
        await expect(sock, b"QUIT")
        await sock.send(b"221 bye\r\n")

    async def main():
        async with raw_server(server) as port, smtp.SMTPClient(HOST, port) as c:
            assert not c.esmtp and c.extensions == {}

    run(main)


def test_helo_refused_and_greeting_refused():
    async def refuses_both(sock):
        await sock.send(b"220 hi\r\n")
        await expect(sock, b"EHLO")
        await sock.send(b"500 no\r\n")
        await expect(sock, b"HELO")
        await sock.send(b"550 not you\r\n")

    async def busy(sock):
        await sock.send(b"421 4.3.2 too busy, come back later\r\n")

    async def main():
        async with raw_server(refuses_both) as port:
            with pytest.raises(smtp.HeloRefused.Permanent):
                await smtp.send(message(), host=HOST, port=port)
        async with raw_server(busy) as port:
            with pytest.raises(smtp.GreetingRefused.Temporary) as e:
                await smtp.send(message(), host=HOST, port=port)
            assert e.value.code == 421

    run(main)


def test_a_slow_server_times_out_and_the_client_closes():
    async def silent(sock):
        await sock.receive("*l")  # ends when the client hangs up

    async def main():
        async with raw_server(silent) as port:
            c = smtp.SMTPClient(HOST, port, timeout=30)
            t0 = coserve.gettime()
            with pytest.raises(smtp.SMTPTimeout):
                await c.connect()
            assert coserve.gettime() - t0 == pytest.approx(30) and not c.connected

    run(main)


def test_a_slow_answer_to_the_data_times_out():
    async def slow(sock):
        await greet(sock, b"8BITMIME")
        await expect(sock, b"MAIL")
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"RCPT")
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"DATA")
        await sock.send(b"354 go\r\n")
        await read_data(sock)
        await coserve.sleep(100)  # longer than the client waits

    async def main():
        async with raw_server(slow) as port:
            with pytest.raises(smtp.SMTPTimeout):
                await smtp.send(message(), host=HOST, port=port, timeout=10)

    run(main)


@pytest.mark.parametrize(
    "reply",
    [b"250-raw.example\r\n251 mixed codes\r\n", b"250-raw.example\r\nno code at all\r\n", b"x" * 9000],
)
def test_a_malformed_reply_closes_the_connection(reply):
    async def server(sock):
        await sock.send(b"220 hi\r\n")
        await expect(sock, b"EHLO")
        await sock.send(reply + b"\r\n")
        await sock.receive("*a")

    async def main():
        async with raw_server(server) as port:
            c = smtp.SMTPClient(HOST, port)
            with pytest.raises(smtp.MalformedReply):
                await c.connect()
            assert not c.connected

    run(main)


def test_a_server_that_drops_the_connection_mid_data():
    async def server(sock):
        await greet(sock, b"8BITMIME")
        await expect(sock, b"MAIL")
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"RCPT")
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"DATA")
        await sock.send(b"354 go\r\n")
        await sock.receive(100)  # a little of the data, then it is gone
        sock.close()

    async def main():
        async with raw_server(server) as port:
            c = smtp.SMTPClient(HOST, port)
            await c.connect()
            with pytest.raises(smtp.ServerDisconnected):
                await c.send_message(message(body="x" * 200 + "\n" * 1000))
            assert not c.connected

    run(main)


def test_without_8bitmime_an_8bit_message_is_sent_in_7_bits_and_smtputf8_is_needed():
    seen = []

    async def server(sock):
        await greet(sock, b"SIZE 0")  # SIZE 0: no limit
        await expect(sock, b"MAIL FROM:<ada@example.org> SIZE=")
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"RCPT")
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"DATA")
        await sock.send(b"354 go\r\n")
        seen.extend(await read_data(sock))
        await sock.send(b"250 ok\r\n")
        await expect(sock, b"QUIT")
        await sock.send(b"221 bye\r\n")

    async def main():
        async with raw_server(server) as port, smtp.SMTPClient(HOST, port) as c:
            await c.send_message(message(body="grüße aus Köln\n"))
            with pytest.raises(smtp.SMTPNotSupported, match="SMTPUTF8"):
                await c.send_message(message(to="jürgen@x.org"))
            with pytest.raises(smtp.SMTPNotSupported, match="8BITMIME"):
                await c.sendmail("a@x.org", ["b@x.org"], "grüße".encode())

    run(main)
    assert all(line.isascii() for line in seen)
    assert (
        b"Content-Transfer-Encoding: base64" in seen or b"Content-Transfer-Encoding: quoted-printable" in seen
    )


def test_cram_md5_is_preferred_when_offered():
    seen = []

    async def server(sock):
        await greet(sock, b"AUTH LOGIN CRAM-MD5 PLAIN")
        await expect(sock, b"AUTH CRAM-MD5")
        challenge = b"<1896.697170952@raw.example>"
        await sock.send(b"334 " + base64.b64encode(challenge) + b"\r\n")
        user, digest = base64.b64decode(await sock.receive("*l")).split()
        seen.append(digest == hmac.new(PASSWORD.encode(), challenge, "md5").hexdigest().encode())
        await sock.send(b"235 ok\r\n" if user == USER.encode() else b"535 no\r\n")
        await expect(sock, b"QUIT")
        await sock.send(b"221 bye\r\n")

    async def main():
        async with raw_server(server) as port:
            async with smtp.SMTPClient(
                HOST, port, user=USER, password=PASSWORD, starttls="never", allow_insecure_auth=True
            ):
                pass

    run(main)
    assert seen == [True]


def test_starttls_refuses_bytes_injected_before_the_handshake():
    async def server(sock):
        await greet(sock, b"STARTTLS")
        await expect(sock, b"STARTTLS")
        await sock.send(b"220 go ahead\r\n250 injected in clear\r\n")  # CVE-2011-0411
        await sock.receive("*a")

    async def main():
        async with raw_server(server) as port:
            with pytest.raises(smtp.TLSError, match="in clear"):
                await smtp.send(message(), host=HOST, port=port)

    run(main)


def test_starttls_refused_by_the_server():
    async def server(sock):
        await greet(sock, b"STARTTLS")
        await expect(sock, b"STARTTLS")
        await sock.send(b"454 4.7.0 TLS not available now\r\n")
        await sock.receive("*a")

    async def main():
        async with raw_server(server) as port:
            with pytest.raises(smtp.CommandRefused.Temporary):
                await smtp.send(message(), host=HOST, port=port)

    run(main)


def test_a_421_closes_the_client():
    async def server(sock):
        await greet(sock, b"8BITMIME")
        await expect(sock, b"NOOP")
        await sock.send(b"421 4.4.2 idle too long, closing\r\n")
        sock.close()

    async def main():
        async with raw_server(server) as port:
            c = smtp.SMTPClient(HOST, port)
            await c.connect()
            with pytest.raises(smtp.CommandRefused.Temporary):
                await c.noop()
            assert not c.connected

    run(main)


def test_cancelling_a_command_closes_the_connection_and_leaks_nothing():
    async def server(sock):
        await greet(sock, b"8BITMIME")
        await sock.receive("*a")  # never answers NOOP

    async def main():
        async with raw_server(server) as port:
            c = smtp.SMTPClient(HOST, port, timeout=None)
            await c.connect()
            task = coserve.spawn(c.noop)
            await wait_all_tasks_blocked()
            task.cancel()
            with pytest.raises(coserve.Cancelled):
                await task
            assert not c.connected

    run(main)


def test_two_tasks_share_a_client_one_at_a_time(peers, delivered):
    async def main():
        async with smtp.SMTPClient(HOST, peers.ports["plain"]) as c:
            tasks = [coserve.spawn(c.send_message, message(to=f"t{n}@x.org")) for n in range(4)]
            return [await t for t in tasks]

    assert coserve.run(main) == [{}] * 4
    assert sorted(d.recipients[0] for d in delivered) == [f"t{n}@x.org" for n in range(4)]


def test_the_send_mail_example(peers, delivered):
    root = pathlib.Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, "examples/send_mail.py", HOST, str(peers.ports["plain"])],
        capture_output=True, text=True, timeout=60, cwd=root,
    )  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines() == ["sent", "refused refuse-nobody@example.org: 550 5.1.1 no such user here"]
    (d,) = delivered
    assert d.recipients == ["charles@example.org", "archive@example.org"]
    assert b"Bcc" not in d.data and b'filename="note-g.bin"' in d.data


def test_verified_tls_needs_the_right_host_name(peers):
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=peers.client_ssl.get_ca_certs(binary_form=True)[0])

    async def main():
        c = smtp.SMTPClient(HOST, peers.ports["implicit"], tls=True, ssl=ctx, server_hostname="other.example")
        with pytest.raises(smtp.TLSError):
            await c.connect()

    coserve.run(main)
