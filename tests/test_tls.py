"""TLS: verification, SNI, ALPN, handshake failures, and OpenSSL's own tools as real peers."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess

import pytest
import trustme

import coserve


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def echo(sock):
    while data := await sock.receive_partial():
        await sock.send(data)


def test_tls_echo_with_verification(server_ctx, client_ctx):
    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=server_ctx)
        s = await coserve.connect("127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="localhost")
        assert s.tls
        await s.send(b"secret\n")
        line = await s.receive()
        await s.aclose()
        server.close()
        return line

    assert coserve.run(main) == b"secret"


def test_ssl_true_verifies_against_the_system_store(server_ctx):
    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=server_ctx)
        with pytest.raises(ssl.SSLCertVerificationError):
            await coserve.connect("127.0.0.1", server.address[1], ssl=True, server_hostname="localhost")
        server.close()

    coserve.run(main)


def test_wrong_host_name_is_refused(server_ctx, client_ctx):
    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=server_ctx)
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            await coserve.connect(
                "127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="other.test"
            )
        server.close()

    coserve.run(main)


def test_sni_picks_the_certificate_by_name(ca, client_ctx):
    contexts = {}
    for name in ("alpha.test", "beta.test"):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(ctx)
        contexts[name] = ctx
    default = contexts["alpha.test"]
    asked = []

    def pick(sslobj, name, ctx):
        asked.append(name)
        if name in contexts:
            sslobj.context = contexts[name]

    default.sni_callback = pick

    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=default)
        s = await coserve.connect("127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="beta.test")
        names = [v for k, v in s.getpeercert()["subjectAltName"]]
        assert s.server_hostname == "beta.test"
        s.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # unknown name: the default (alpha) cert
            await coserve.connect(
                "127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="gamma.test"
            )
        server.close()
        return names

    try:
        assert coserve.run(main) == ["beta.test"]
        assert asked[:2] == ["beta.test", "gamma.test"]
    finally:
        default.sni_callback = None


def test_alpn(ca, client_ctx):
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(sctx)
    sctx.set_alpn_protocols(["h2", "http/1.1"])
    cctx = ssl.create_default_context()
    ca.configure_trust(cctx)
    cctx.set_alpn_protocols(["http/1.1"])
    seen = []

    async def handler(sock):
        seen.append(sock.alpn)

    async def main():
        server = coserve.serve_tcp(handler, "127.0.0.1", 0, ssl=sctx)
        s = await coserve.connect("127.0.0.1", server.address[1], ssl=cctx, server_hostname="localhost")
        got = s.alpn
        await s.receive_partial()
        s.close()
        server.close()
        return got

    assert coserve.run(main) == "http/1.1" and seen == ["http/1.1"]


def test_handshake_timeout_against_a_server_that_never_speaks_tls(client_ctx):
    async def silent(sock):
        await coserve.sleep(5)

    async def main():
        server = coserve.serve_tcp(silent, "127.0.0.1", 0)
        with pytest.raises(TimeoutError):
            await coserve.connect(
                "127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="localhost", timeout=0.2
            )
        coserve.cancel_all()

    coserve.run(main)


def test_peer_vanishing_mid_handshake_is_a_clear_error(client_ctx):
    async def rude(sock):
        await sock.receive_partial()  # the ClientHello arrives...
        sock.close()  # ...and the server is gone

    async def main():
        server = coserve.serve_tcp(rude, "127.0.0.1", 0)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await coserve.connect("127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="localhost")
        server.close()

    coserve.run(main)


def test_client_reset_during_handshake_does_not_disturb_the_server(server_ctx, client_ctx, errors):
    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=server_ctx)
        raw = socket.create_connection(server.address)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.send(b"\x16\x03\x01")  # the start of a ClientHello, then a reset
        raw.close()
        s = await coserve.connect("127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="localhost")
        await s.send(b"fine\n")
        line = await s.receive()
        await s.aclose()
        server.close()
        return line

    assert coserve.run(main) == b"fine"
    assert errors == []  # a failed handshake is the client's problem, not a program error


def test_close_notify_versus_a_ragged_end(server_ctx, client_ctx):
    async def polite(sock):
        await sock.send(b"bye")
        await sock.aclose()

    async def abrupt(sock):
        await sock.send(b"bye")
        sock.close()  # no close_notify

    async def main():
        results = []
        for handler in (polite, abrupt):
            server = coserve.serve_tcp(handler, "127.0.0.1", 0, ssl=server_ctx)
            s = await coserve.connect(
                "127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="localhost"
            )
            try:
                results.append(await s.receive("*a"))
            except ssl.SSLEOFError:
                results.append("ragged EOF")
            s.close()
            server.close()
        return results

    assert coserve.run(main) == [b"bye", "ragged EOF"]


def test_server_side_needs_a_context():
    with pytest.raises(ValueError, match="SSLContext"):
        coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=True)
    with pytest.raises(TypeError):
        coserve.serve_tcp(echo, "127.0.0.1", 0, ssl="yes")


# --- OpenSSL's own tools as peers ----------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_openssl
def test_client_against_openssl_s_server(ca, tmp_path, client_ctx):
    cert = ca.issue_cert("localhost")
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    port = _free_port()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert_pem), "-key", str(key_pem),
         "-rev", "-naccept", "1", "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def main():
            for _ in range(200):  # until s_server listens
                try:
                    s = await coserve.connect("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
                    break
                except ConnectionRefusedError:
                    await coserve.sleep(0.02)
            await s.send(b"coserve\n")
            line = await s.receive()
            s.close()
            return line

        assert coserve.run(main) == b"evresoc"  # s_server -rev reverses each line
    finally:
        proc.kill()
        proc.wait()


@needs_openssl
def test_server_against_openssl_s_client(ca, server_ctx, tmp_path):
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))

    async def upper(sock):
        line = await sock.receive()
        await sock.send(line.upper() + b"\n")
        await sock.aclose()

    def client(port):
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
             "-verify_hostname", "localhost", "-CAfile", str(ca_pem), "-verify_return_error", "-quiet"],
            input=b"hello from openssl\n", capture_output=True, timeout=30,
        )  # fmt: skip

    async def main():
        server = coserve.serve_tcp(upper, "127.0.0.1", 0, ssl=server_ctx)
        result = await coserve.run_in_thread(client, server.address[1])
        server.close()
        return result

    result = coserve.run(main)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"HELLO FROM OPENSSL\n"


# --- STARTTLS (issue 7, item 1: the CVE-2011-0411 class) -------------------------------------------


def test_starttls_upgrades_a_plain_connection(server_ctx, client_ctx):
    async def smtp(sock):
        assert await sock.receive() == b"STARTTLS"
        await sock.send(b"220 ready\r\n")
        await sock.handshake(server_ctx, server_side=True)
        await sock.send(b"250 " + await sock.receive() + b"\r\n")

    async def main():
        server = coserve.serve_tcp(smtp, "127.0.0.1", 0)
        s = await coserve.connect(*server.address)
        await s.send(b"STARTTLS\r\n")
        assert await s.receive() == b"220 ready"
        await s.handshake(client_ctx, server_hostname="localhost")
        await s.send(b"RCPT TO:<x>\r\n")
        reply = await s.receive()
        s.close()
        server.close()
        return reply

    assert coserve.run(main) == b"250 RCPT TO:<x>"


def test_starttls_refuses_plaintext_sent_before_the_handshake(server_ctx):
    # The client sends its command after STARTTLS in the same segment, in clear: a server that
    # handed it out after the handshake would take injected plaintext for protected data.
    seen = []

    async def smtp(sock):
        assert await sock.receive() == b"STARTTLS"
        with pytest.raises(coserve.DataBeforeHandshake) as info:
            await sock.handshake(server_ctx, server_side=True, timeout=2)  # (a bound, should it wait)
        assert isinstance(info.value, ssl.SSLError)
        seen.append((info.value.discarded, bytes(sock._rbuf), sock.tls))
        sock.settimeouts(receive=0.05)
        with pytest.raises(TimeoutError):  # nothing buffered before the handshake comes out after it
            await sock.receive_partial()

    async def main():
        server = coserve.serve_tcp(smtp, "127.0.0.1", 0)
        raw = socket.create_connection(server.address)
        raw.sendall(b"STARTTLS\r\nRCPT TO:<x>\r\n")
        s = coserve.wrap(raw)
        s.settimeouts(receive=5)  # (a bound, should the server wait for a ClientHello)
        sent = await s.receive("*a")  # the server closes the connection
        s.close()
        server.close()
        return sent

    assert coserve.run(main) == b""  # refused before anything was sent: not even a ServerHello
    assert seen == [(len(b"RCPT TO:<x>\r\n"), b"", False)]


# --- half-close on TLS (issue 7, item 2) -------------------------------------------------------------


def test_tls_half_close_is_refused_before_anything_is_sent(server_ctx, client_ctx):
    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=server_ctx)
        s = await coserve.connect(*server.address, ssl=client_ctx, server_hostname="localhost")
        with pytest.raises(coserve.CoserveError, match="close_notify"):
            s.shutdown(socket.SHUT_WR)
        await s.send(b"still TLS\n")  # the connection is untouched: no alert, no FIN was sent
        line = await s.receive()
        await s.aclose()
        server.close()
        return line, s.tls

    assert coserve.run(main) == (b"still TLS", True)


def test_tls_shutdown_of_the_read_side_keeps_sending_encrypted(server_ctx, client_ctx):
    got = []

    async def reader(sock):
        got.append(await sock.receive())

    async def main():
        server = coserve.serve_tcp(reader, "127.0.0.1", 0, ssl=server_ctx)
        s = await coserve.connect(*server.address, ssl=client_ctx, server_hostname="localhost")
        s.shutdown(socket.SHUT_RD)
        await s.send(b"sent after SHUT_RD\n")  # ssl.SSLSocket.shutdown would send this in clear
        server.close()
        await server.wait_closed()
        s.close()

    coserve.run(main)
    assert got == [b"sent after SHUT_RD"]


def test_server_side_server_hostname_is_the_name_the_client_asked_for(ca, server_ctx, client_ctx):
    heard = []

    async def handler(sock):
        heard.append(sock.server_hostname)
        await sock.send(b"k")
        sock.close()

    no_sni = ssl.create_default_context()
    ca.configure_trust(no_sni)
    no_sni.check_hostname = False  # so the client may connect without a name: it sends no SNI

    async def main():
        server = coserve.serve_tcp(handler, "127.0.0.1", 0, ssl=server_ctx)
        port = server.address[1]
        for ctx, name in ((client_ctx, "localhost"), (no_sni, None)):
            s = await coserve.connect("127.0.0.1", port, ssl=False)
            await s.handshake(ctx, server_hostname=name)
            assert await s.receive(1) == b"k"
            s.close()
        server.close()

    try:
        coserve.run(main)
    finally:
        server_ctx.sni_callback = None
    assert heard == ["localhost", None]


def test_wrapped_socket_connect_does_the_handshake_and_accept_too(server_ctx, client_ctx):
    # Copas's outgoing pattern: wrap(socket.tcp(), sslparams):connect(host, port) is secured on return.
    async def main():
        listener = coserve.wrap(socket.socket(), server_ctx)
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        async def server():
            conn = await listener.accept()  # the server side of the handshake is done here
            tls = conn.tls
            await conn.send(await conn.receive() + b"\n")
            await conn.aclose()
            return tls

        t = coserve.spawn(server)
        client = coserve.wrap(socket.socket(), client_ctx)
        await client.connect("localhost", listener.getsockname()[1])
        secured = client.tls and client.server_hostname == "localhost"
        await client.send(b"over tls\n")
        reply = await client.receive()
        server_tls = await t
        await client.aclose()
        listener.close()
        return secured, server_tls, reply

    assert coserve.run(main) == (True, True, b"over tls")


@pytest.mark.parametrize("strict", [True, False])
def test_sni_context_picks_the_certificate_by_name_and_strict_refuses_unknown_names(
    ca, client_ctx, strict, errors
):
    def ctx_for(name):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(ctx)
        return ctx

    names = {"a.example": ctx_for("a.example"), "*.b.example": ctx_for("*.b.example")}
    server_ctx = coserve.sni_context(names, strict=strict)

    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.address[1]
        ok = []
        for name in ("a.example", "www.b.example", "A.EXAMPLE"):
            s = await coserve.connect("127.0.0.1", port, ssl=client_ctx, server_hostname=name)
            await s.send(b"hi\n")
            ok.append(await s.receive())
            await s.aclose()
        with pytest.raises(ssl.SSLError) as info:  # a name none of the certificates has
            await coserve.connect("127.0.0.1", port, ssl=client_ctx, server_hostname="c.example")
        server.close()
        return ok, info.value

    ok, refused = coserve.run(main)
    assert ok == [b"hi"] * 3
    if strict:  # refused by the server, before any certificate
        assert "UNRECOGNIZED_NAME" in str(refused).upper() and not isinstance(
            refused, ssl.SSLCertVerificationError
        )
    else:  # the default certificate, which the client does not accept for that name
        assert isinstance(refused, ssl.SSLCertVerificationError)
    assert errors == []


def test_sni_context_checks_its_arguments():
    with pytest.raises(ValueError):
        coserve.sni_context({})
    with pytest.raises(TypeError):
        coserve.sni_context({"a.example": object()})


def test_a_second_connection_resumes_the_tls_session_of_the_first(server_ctx, client_ctx):
    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.address[1]
        first = await coserve.connect("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        await first.send(b"hello\n")
        await first.receive()  # TLS 1.3 hands the session ticket over after the handshake
        session = first.tls_session
        assert session is not None and not first.tls_session_reused
        raw = await coserve.connect("127.0.0.1", port)
        assert raw.tls_session is None and not raw.tls_session_reused
        await raw.handshake(client_ctx, server_hostname="localhost", session=session)
        await raw.send(b"again\n")
        line = await raw.receive()
        reused = raw.tls_session_reused
        await raw.aclose()
        await first.aclose()
        server.close()
        return line, reused

    assert coserve.run(main) == (b"again", True)
