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
            with pytest.raises(ftp.PermanentError) as e:
                await c.retrieve_bytes("nosuch")
            assert e.value.code == 550 and c._transfer is None and c._owed == 0
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
            on_disk = (root / "tls.bin").read_bytes()
            assert (len(on_disk), on_disk == payload) == (len(payload), True)
            got = await c.retrieve_bytes("tls.bin")
            assert len(got) == len(payload)
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


def _client(port, **kw):
    return ftp.FTPClient("127.0.0.1", port, user="user", password="12345", **kw)


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_megabytes_each_way_arrive_exactly(server, root, passive):
    up = os.urandom(8 << 20)

    async def chunks():
        view = memoryview(up)
        for i in range(0, len(view), 1 << 20):
            yield view[i : i + (1 << 20)]

    async def main():
        async with _client(server, passive=passive) as c:
            await c.store("up.bin", chunks())
            assert (root / "up.bin").read_bytes() == up
            got = bytearray()
            async for chunk in c.retrieve("up.bin"):
                got += chunk
            await c.delete("up.bin")
            return bytes(got)

    assert coserve.run(main) == up


def test_fifty_megabytes_each_way(server, root, tmp_path):  # about a second: no need to mark it slow
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(50 << 20))

    async def main():
        async with _client(server) as c:
            with open(src, "rb") as f:
                await c.store("fifty.bin", f)
            n = 0
            with open(tmp_path / "back.bin", "wb") as out:
                async for chunk in c.retrieve("fifty.bin"):
                    n += out.write(chunk)
            await c.delete("fifty.bin")
            return n

    assert coserve.run(main) == 50 << 20
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_rest_resumes_a_download_and_an_upload(server, root):
    (root / "resume.bin").write_bytes(bytes(range(256)) * 40)

    async def main():
        async with _client(server) as c:
            tail = await c.retrieve_bytes("resume.bin", rest=10000)
            await c.rest(256)
            tail2 = await c.retrieve_bytes("resume.bin")
            await c.store("resume.bin", b"XY", rest=10240)
            whole = await c.retrieve_bytes("resume.bin")
            await c.delete("resume.bin")
            return tail, tail2, whole

    tail, tail2, whole = coserve.run(main)
    data = bytes(range(256)) * 40
    assert tail == data[10000:] and tail2 == data[256:]
    assert whole == data + b"XY"


def test_a_store_from_a_file_and_a_plain_iterable(server, root, tmp_path):
    (tmp_path / "f.bin").write_bytes(b"from a file")

    async def main():
        async with _client(server) as c:
            with open(tmp_path / "f.bin", "rb") as f:
                await c.store("f.bin", f)
            await c.store("g.bin", [b"from ", b"a list"])
            await c.store("g.bin", b"!", append=True)
            with pytest.raises(TypeError):
                await c.store("h.bin", "text is not bytes")
            return await c.retrieve_bytes("f.bin"), await c.retrieve_bytes("g.bin")

    assert coserve.run(main) == (b"from a file", b"from a list!")
    (root / "f.bin").unlink()
    (root / "g.bin").unlink()


def test_cancelling_a_download_aborts_it_and_leaves_the_session_usable(server, root):
    (root / "long.bin").write_bytes(os.urandom(16 << 20))

    async def main():
        async with _client(server) as c:
            got = []
            started = coserve.Event()

            async def download():
                async for chunk in c.retrieve("long.bin"):
                    got.append(len(chunk))
                    started.set()

            task = coserve.spawn(download)
            await started.wait()
            task.cancel()
            with pytest.raises(coserve.Cancelled):
                await task
            assert c._transfer is None and not c.closed
            assert sum(got) < 16 << 20
            assert await c.pwd() == "/"
            return await c.size("long.bin")

    assert coserve.run(main) == 16 << 20


def test_leaving_a_download_loop_early_aborts_it(server, root):
    (root / "early.bin").write_bytes(os.urandom(8 << 20))

    async def main():
        async with _client(server) as c:
            async with c.retrieve("early.bin") as chunks:
                async for _ in chunks:
                    break
            first = await c.pwd()
            async for _ in c.retrieve("early.bin"):  # not even closed: the next command aborts it
                break
            chunks = c.retrieve("early.bin")
            await chunks.__anext__()
            await c.pwd()  # mid-loop: the transfer is aborted, and the loop must not end as if complete
            with pytest.raises(ftp.TransferFailed):
                await chunks.__anext__()
            return first, await c.pwd(), await c.retrieve_bytes("early.bin")

    first, second, whole = coserve.run(main)
    assert first == second == "/" and whole == (root / "early.bin").read_bytes()


def test_cancelling_an_upload_aborts_it_and_leaves_the_session_usable(server, root):
    sent_a_lot = coserve.Event()

    async def endless():
        block = b"x" * 65536
        for n in range(1 << 30):
            if n == 32:
                sent_a_lot.set()
            yield block

    async def main():
        async with _client(server) as c:
            task = coserve.spawn(c.store, "endless.bin", endless())
            await sent_a_lot.wait()
            task.cancel()
            with pytest.raises(coserve.Cancelled):
                await task
            await c.delete("endless.bin")
            return await c.pwd()

    assert coserve.run(main) == "/"


def test_the_roundtrip_example(server):
    r = subprocess.run(
        [sys.executable, "examples/ftp_roundtrip.py", f"ftp://user:12345@127.0.0.1:{server}/"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=SERVER.parent.parent,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("connected: ")
    assert lines[1:] == [
        "stored 1048576 bytes in /",
        "listed roundtrip.bin: file, 1048576 bytes",
        "retrieved 1048576 bytes, identical",
        "deleted",
    ]
