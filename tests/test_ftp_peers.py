"""coserve.ftp against raw coserve-socket peers that misbehave: a foreign 227 address, a data
connection dropped mid-transfer, slow or missing replies, broken replies, and interrupted commands."""

from __future__ import annotations

import socket
import ssl
import struct

import pytest
import trustme

import coserve
from coserve import ftp
from coserve.testing import MockClock


class FakeFTP:
    """A scripted FTP server: ``replies`` maps a verb to the reply line(s) or to an async function."""

    def __init__(self, ssl=None, **replies):
        self.replies = {
            "USER": "331 password please",
            "PASS": "230 in",
            "TYPE": "200 type set",
            "PWD": '257 "/" is here',
            "NOOP": "200 ok",
            "QUIT": "221 bye",
            "EPSV": "500 what is EPSV",
            **replies,
        }
        self.seen = []
        self.server = coserve.serve_tcp(self.handle, "127.0.0.1", 0, ssl=ssl)
        self.port = self.server.address[1]
        self.data_server = None

    async def handle(self, sock):
        await sock.send(b"220 fake ready\r\n")
        while True:
            try:
                line = (await sock.receive()).decode()
            except coserve.ConnectionClosed:
                return
            verb = line.split(" ", 1)[0].upper()
            self.seen.append(line)
            reply = self.replies.get(verb, "502 not implemented")
            if callable(reply):
                reply = await reply(sock, line)
            if reply is None:
                continue
            await sock.send(reply.encode() + b"\r\n")
            if verb == "QUIT":
                return

    def listen_for_data(self, handler):
        self.data_server = coserve.serve_tcp(handler, "127.0.0.1", 0)
        return self.data_server.address[1]

    def close(self):
        self.server.close()
        if self.data_server is not None:
            self.data_server.close()


def _reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_227_with_a_foreign_address_is_ignored_for_the_control_connections_peer():
    sent = coserve.Event()
    connected_from = []

    async def data(sock):
        connected_from.append(sock.getpeername()[0])
        await sock.send(b"the payload")
        sock.close()
        sent.set()

    async def retr(sock, line):
        await sock.send(b"150 here it comes\r\n")
        await sent.wait()
        return "226 done"

    async def main():
        fake = FakeFTP(RETR=retr)
        port = fake.listen_for_data(data)
        fake.replies["PASV"] = f"227 Entering Passive Mode (10,9,8,7,{port >> 8},{port & 255})."
        async with ftp.FTPClient("127.0.0.1", fake.port, timeout=5) as c:
            got = await c.retrieve_bytes("f")
            got2 = None
            sent.clear()
            got2 = await c.retrieve_bytes("f")  # EPSV is not asked again
        fake.close()
        return got, got2, [s.split()[0] for s in fake.seen]

    got, got2, verbs = coserve.run(main)
    assert got == got2 == b"the payload" and connected_from == ["127.0.0.1", "127.0.0.1"]
    assert verbs == ["USER", "PASS", "TYPE", "EPSV", "PASV", "RETR", "PASV", "RETR", "QUIT"]


@pytest.mark.parametrize("final", ["426 Connection closed; transfer aborted.", "226 done (it says)"])
def test_a_data_connection_reset_mid_transfer_fails_the_transfer_not_the_session(final):
    dropped = coserve.Event()

    async def data(sock):
        await sock.send(b"x" * 100_000)
        await coserve.testing.wait_all_tasks_blocked()
        _reset(sock.detach())
        dropped.set()

    async def retr(sock, line):
        await sock.send(b"150 here it comes\r\n")
        await dropped.wait()
        dropped.clear()
        return final

    async def main():
        fake = FakeFTP(RETR=retr)
        port = fake.listen_for_data(data)
        fake.replies["EPSV"] = f"229 Entering Extended Passive Mode (|||{port}|)"
        async with ftp.FTPClient("127.0.0.1", fake.port, timeout=5) as c:
            with pytest.raises(ftp.FTPError) as e:
                await c.retrieve_bytes("f")
            pwd = await c.pwd()
        fake.close()
        return e.value, pwd

    err, pwd = coserve.run(main)
    if final.startswith("426"):
        assert type(err) is ftp.TemporaryError and err.code == 426
    else:
        assert type(err) is ftp.TransferFailed
    assert pwd == "/"


def test_a_transfer_completes_only_with_the_final_reply():
    async def data(sock):
        await sock.send(b"all of it")
        sock.close()

    async def main():
        fake = FakeFTP(RETR=lambda sock, line: _send_then(sock, "150 go", "451 local error in processing"))
        port = fake.listen_for_data(data)
        fake.replies["EPSV"] = f"229 Entering Extended Passive Mode (|||{port}|)"
        async with ftp.FTPClient("127.0.0.1", fake.port, timeout=5) as c:
            with pytest.raises(ftp.TemporaryError) as e:
                await c.retrieve_bytes("f")
        fake.close()
        return e.value.code

    assert coserve.run(main) == 451


async def _send_then(sock, first, second):
    await sock.send(first.encode() + b"\r\n")
    await coserve.testing.wait_all_tasks_blocked()  # the data connection has gone by then
    return second


def test_a_server_that_does_not_answer_times_out_and_the_client_closes():
    async def never(sock, line):
        return None

    async def main():
        fake = FakeFTP(PWD=never)
        c = ftp.FTPClient("127.0.0.1", fake.port, timeout=30)
        await c.connect()
        await c.login()
        t0 = coserve.gettime()
        with pytest.raises(ftp.FTPTimeout):
            await c.pwd()
        elapsed = coserve.gettime() - t0
        closed = c.closed
        fake.close()
        return elapsed, closed

    elapsed, closed = coserve.run(main, clock=MockClock(autojump_threshold=0))
    assert elapsed == pytest.approx(30) and closed


def test_a_slow_greeting_times_out():
    async def main():
        async def silent(sock):
            await sock.receive()

        server = coserve.serve_tcp(silent, "127.0.0.1", 0)
        with pytest.raises(ftp.FTPTimeout):
            async with ftp.FTPClient("127.0.0.1", server.address[1], timeout=10):
                pass
        server.close()

    coserve.run(main, clock=MockClock(autojump_threshold=0))


@pytest.mark.parametrize(
    "reply",
    [b"257-start of a reply\r\nthat never ends\r\n", b"hello there\r\n", b"25 \r\n"],
    ids=["unfinished-multiline", "not-a-reply", "short-code"],
)
def test_a_malformed_reply_is_a_protocol_error_and_closes_the_client(reply):
    async def broken(sock, line):
        await sock.send(reply)
        sock.close()

    async def main():
        fake = FakeFTP(PWD=broken)
        c = ftp.FTPClient("127.0.0.1", fake.port, timeout=5)
        await c.connect()
        await c.login()
        with pytest.raises((ftp.ProtocolError, ftp.ConnectionLost)) as e:
            await c.pwd()
        closed = c.closed
        fake.close()
        return type(e.value), closed

    kind, closed = coserve.run(main)
    assert closed
    assert kind is (ftp.ConnectionLost if b"-" in reply else ftp.ProtocolError)


def test_a_cancelled_command_s_reply_is_read_before_the_next_command():
    release = coserve.Event()

    async def slow_pwd(sock, line):
        await release.wait()
        return '257 "/late" is here'

    async def main():
        fake = FakeFTP(PWD=slow_pwd)
        async with ftp.FTPClient("127.0.0.1", fake.port, timeout=5) as c:
            task = coserve.spawn(c.pwd)
            await coserve.testing.wait_all_tasks_blocked()
            task.cancel()
            with pytest.raises(coserve.Cancelled):
                await task
            release.set()
            answer = await c.command("NOOP")
            fake.replies["PWD"] = '257 "/now" is here'
            pwd = await c.pwd()
        fake.close()
        return answer, pwd

    assert coserve.run(main) == ((200, "ok"), "/now")


def test_auth_tls_refused_is_an_error_never_a_fall_back_to_clear_text():
    async def main():
        fake = FakeFTP(AUTH="502 no TLS here")
        with pytest.raises(ftp.PermanentError):
            async with ftp.FTPClient("127.0.0.1", fake.port, tls=True, timeout=5):
                pass
        seen = list(fake.seen)
        fake.close()
        return seen

    assert coserve.run(main) == ["AUTH TLS"]  # no USER, no PASS went out


def test_implicit_tls_speaks_tls_from_the_first_byte_and_verifies():
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main():
        fake = FakeFTP(ssl=server_ctx, PBSZ="200 PBSZ=0", PROT="200 private")
        async with ftp.FTPClient(
            "127.0.0.1", fake.port, tls=client_ctx, implicit_tls=True, server_hostname="localhost", timeout=5
        ) as c:
            pwd = await c.pwd()
        with pytest.raises(ftp.TLSError):
            async with ftp.FTPClient("127.0.0.1", fake.port, implicit_tls=True, timeout=5):
                pass  # the system's certificates do not know this CA
        seen = list(fake.seen)
        fake.close()
        return pwd, seen

    pwd, seen = coserve.run(main)
    assert pwd == "/" and seen == ["USER anonymous", "PASS anonymous@", "PBSZ 0", "PROT P", "PWD", "QUIT"]


@pytest.mark.parametrize("phase", ["EPSV", "RETR-before-150", "data-mid", "before-226"])
def test_cancelling_a_download_at_every_phase_leaves_the_session_in_step(phase):
    gate, retr_started, data_done = coserve.Event(), coserve.Event(), coserve.Event()
    half = b"h" * 200_000

    async def data(sock):
        try:
            await retr_started.wait()
            await sock.send(half)
            if phase == "data-mid":
                await gate.wait()
            await sock.send(half)
        except (OSError, coserve.CoserveError):
            pass  # the client has gone
        finally:
            sock.close()
            data_done.set()

    async def epsv(sock, line):
        if phase == "EPSV":
            await gate.wait()
        return f"229 Entering Extended Passive Mode (|||{fake.data_server.address[1]}|)"

    async def retr(sock, line):
        if phase == "RETR-before-150":
            await gate.wait()
        await sock.send(b"150 here it comes\r\n")
        retr_started.set()
        await data_done.wait()
        if phase == "before-226":
            await gate.wait()
        return "226 done"

    fake = None
    progress = []

    async def main():
        nonlocal fake
        fake = FakeFTP(EPSV=epsv, RETR=retr, ABOR="225 no transfer to abort")
        fake.listen_for_data(data)
        async with ftp.FTPClient("127.0.0.1", fake.port, timeout=5) as c:

            async def download():
                async for chunk in c.retrieve("f"):
                    progress.append(len(chunk))

            task = coserve.spawn(download)
            await coserve.testing.wait_all_tasks_blocked()
            task.cancel()
            gate.set()  # the server goes on (the aborting task waits for its answers to ABOR and NOOP)
            with pytest.raises(coserve.Cancelled):
                await task
            answers = (await c.pwd(), await c.command("NOOP"), c._owed, c._transfer, c.closed)
        fake.close()
        return answers, [v for v in fake.seen if v in ("ABOR", "NOOP")]

    answers, sync = coserve.run(main)
    assert answers == ("/", (200, "ok"), 0, None, False)
    assert sync == (["ABOR", "NOOP", "NOOP"] if phase == "data-mid" else ["NOOP"])
    if phase in ("EPSV", "RETR-before-150"):
        assert progress == []
    if phase == "before-226":
        assert sum(progress) == 400_000


def test_a_stalled_download_times_out_is_aborted_and_the_session_goes_on():
    data_done = coserve.Event()

    async def data(sock):
        await sock.send(b"s" * 10_000)
        await sock.receive_partial()  # then nothing, until the client gives up and closes
        sock.close()
        data_done.set()

    async def retr(sock, line):
        await sock.send(b"150 here it comes\r\n")
        await data_done.wait()
        return "426 transfer aborted"

    async def main():
        fake = FakeFTP(RETR=retr, ABOR="225 no transfer to abort")
        port = fake.listen_for_data(data)
        fake.replies["EPSV"] = f"229 Entering Extended Passive Mode (|||{port}|)"
        async with ftp.FTPClient("127.0.0.1", fake.port, timeout=20) as c:
            t0 = coserve.gettime()
            with pytest.raises(ftp.FTPTimeout):
                await c.retrieve_bytes("f")
            waited = coserve.gettime() - t0
            pwd = await c.pwd()
        fake.close()
        return waited, pwd, [v for v in fake.seen if v in ("ABOR", "NOOP")]

    waited, pwd, sync = coserve.run(main, clock=MockClock(autojump_threshold=0))
    assert waited == pytest.approx(20) and pwd == "/" and sync == ["ABOR", "NOOP"]
