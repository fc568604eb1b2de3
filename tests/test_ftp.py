"""coserve.ftp against a real pyftpdlib server (plain and FTPS), and raw peers that misbehave."""

from __future__ import annotations

import os
import pathlib
import ssl
import subprocess
import sys

import pytest
import trustme

import coserve
from coserve import ftp

SERVER = pathlib.Path(__file__).parent / "ftp_server.py"


def _start(root, *extra):
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(root), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    port = int(proc.stdout.readline())
    return proc, port


def _stop(proc):
    proc.stdin.close()
    proc.wait(10)
    proc.stdout.close()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("ftproot")


@pytest.fixture(scope="module")
def server(root):
    proc, port = _start(root)
    yield port
    _stop(proc)


@pytest.fixture(scope="module")
def tls_server(root, ca, tmp_path_factory):
    pem = tmp_path_factory.mktemp("cert") / "server.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    proc, port = _start(root, "--tls", str(pem))
    yield port
    _stop(proc)


def test_get_and_put_by_url(server, root):
    (root / "hello.txt").write_bytes(b"hello, world\n")

    async def main():
        got = await ftp.get(f"ftp://127.0.0.1:{server}/hello.txt")
        await ftp.put(f"ftp://user:12345@127.0.0.1:{server}/put.bin", b"\x00\x01binary")
        return got

    assert coserve.run(main) == b"hello, world\n"
    assert (root / "put.bin").read_bytes() == b"\x00\x01binary"


def test_a_session_with_every_command(server, root):
    (root / "big.bin").write_bytes(os.urandom(300_000))

    async def main():
        async with ftp.FTPClient("127.0.0.1", server, user="user", password="12345") as c:
            assert await c.pwd() == "/"
            assert await c.mkdir("sub") == "/sub"
            await c.cwd("sub")
            assert await c.pwd() == "/sub"
            await c.store("a.txt", b"abc")
            await c.rename("a.txt", "b.txt")
            assert await c.nlst() == ["b.txt"]
            assert await c.size("b.txt") == 3
            assert (await c.mdtm("b.txt")).tzinfo is not None
            [entry] = await c.mlsd()
            assert (entry.name, entry.type, entry.size) == ("b.txt", "file", 3)
            [entry] = await c.list()
            assert (entry.name, entry.type, entry.size) == ("b.txt", "file", 3)
            await c.delete("b.txt")
            await c.cwd("..")
            await c.rmdir("sub")
            assert await c.command("NOOP") == (200, "I successfully did nothing'.")
            code, _ = await c.command("SITE NOSUCH")
            assert code // 100 == 5
            with pytest.raises(ftp.PermanentError) as e:
                await c.size("nosuch")
            assert e.value.code == 550
            return await c.retrieve_bytes("big.bin")

    assert coserve.run(main) == (root / "big.bin").read_bytes()


def test_ftps_explicit_with_session_reuse_on_every_data_connection(tls_server, root, client_ctx):
    payload = os.urandom(200_000)
    seen = []

    async def main():
        client = ftp.FTPClient(
            "127.0.0.1",
            tls_server,
            user="user",
            password="12345",
            tls=client_ctx,
            server_hostname="localhost",
        )
        async with client as c:
            real_open = c._open_data

            async def spy(line):
                data, reply = await real_open(line)
                seen.append((line.split()[0], data.tls, data.tls_session_reused))
                return data, reply

            c._open_data = spy
            await c.store("tls.bin", payload)
            got = await c.retrieve_bytes("tls.bin")
            names = await c.nlst()
            await c.delete("tls.bin")
            return got, names

    got, names = coserve.run(main)
    assert got == payload and "tls.bin" in names
    assert seen == [("STOR", True, True), ("RETR", True, True), ("NLST", True, True)]


def test_ftps_verifies_the_certificate_by_default(tls_server):
    async def main():
        with pytest.raises(ftp.TLSError):
            async with ftp.FTPClient("127.0.0.1", tls_server, tls=True):
                pass

    coserve.run(main)


def test_a_plain_login_to_a_server_that_requires_tls_is_refused(tls_server):
    async def main():
        with pytest.raises(ftp.PermanentError):
            async with ftp.FTPClient("127.0.0.1", tls_server, user="user", password="12345"):
                pass

    coserve.run(main)
