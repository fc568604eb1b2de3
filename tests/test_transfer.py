"""Volume and pressure: 10 MB each way, a reader that does not read, running out of descriptors."""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
import textwrap

import pytest
import trustme

import coserve
from coserve.testing import wait_all_tasks_blocked

SIZE = 10 * 1024 * 1024


async def echo(sock):
    while data := await sock.receive_partial():
        await sock.send(data)


@pytest.fixture(scope="module")
def tls():
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.mark.parametrize("use_tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("read_with", ["receive", "receive_partial"])
def test_ten_megabytes_each_way(use_tls, read_with, tls):
    payload = os.urandom(1024 * 1024) * 10
    server_ctx, client_ctx = tls if use_tls else (None, None)

    async def main():
        server = coserve.serve_tcp(echo, "127.0.0.1", 0, ssl=server_ctx)
        s = await coserve.connect("127.0.0.1", server.address[1], ssl=client_ctx, server_hostname="localhost")

        async def writer():
            view = memoryview(payload)
            for i in range(0, SIZE, 256 * 1024):
                await s.send(view[i : i + 256 * 1024])

        w = coserve.spawn(writer)
        digest = hashlib.sha256()
        got = 0
        while got < SIZE:
            if read_with == "receive":
                chunk = await s.receive(min(100_000, SIZE - got))
            else:
                chunk = await s.receive_partial()
            digest.update(chunk)
            got += len(chunk)
        await w
        await s.aclose()
        server.close()
        return got, digest.digest()

    got, digest = coserve.run(main)
    assert got == SIZE and digest == hashlib.sha256(payload).digest()


def test_a_slow_reader_makes_the_writer_wait_with_bounded_memory():
    sent = [0]
    writers = []

    async def firehose(sock):
        writers.append(coserve.current_task())
        chunk = b"f" * 65536
        while True:
            sent[0] += await sock.send(chunk)

    async def main():
        server = coserve.serve_tcp(firehose, "127.0.0.1", 0)
        s = await coserve.connect(*server.address)  # and never read
        for _ in range(5):
            await wait_all_tasks_blocked()
        [client_task] = writers
        state, total = client_task.state, sent[0]
        s.close()
        coserve.cancel_all()
        return state, total

    state, total = coserve.run(main)
    # The writer waits for the peer; what it pushed is what the kernel's socket buffers hold.
    assert state == "writing"
    assert 0 < total < 32 * 1024 * 1024


EMFILE_SERVER = textwrap.dedent(
    """
    import os, resource, sys, time
    import coserve

    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    served = []
    three_served = coserve.Event()

    async def handler(sock):
        try:
            await sock.receive(1)
        except coserve.ConnectionClosed:
            return  # one of the flood, closed without a word
        await sock.send(b"k")
        served.append(1)
        if len(served) == 3:
            three_served.set()

    async def main():
        server = coserve.serve_tcp(handler, "127.0.0.1", 0, backlog=512)
        print(server.address[1], flush=True)
        sys.stdin.readline()           # the parent has opened its flood of connections
        cpu0 = sum(os.times()[:2])
        await coserve.sleep(1.0)       # out of descriptors for a while
        cpu = sum(os.times()[:2]) - cpu0
        print(f"cpu {cpu:.3f} served {len(served)}", flush=True)
        sys.stdin.readline()           # the parent closed the flood
        await three_served.wait()
        print(f"served {len(served)}", flush=True)
        server.close()

    coserve.run(main)
    """
)


def test_accept_survives_running_out_of_file_descriptors(tmp_path):
    import socket

    script = tmp_path / "emfile_server.py"
    script.write_text(EMFILE_SERVER)
    errfile = open(tmp_path / "stderr.txt", "w+")  # a file: a full pipe would stall the child
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errfile,
        text=True,
    )
    flood = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(120):  # far more than the server's 64 descriptors
            flood.append(socket.create_connection(("127.0.0.1", port)))
        proc.stdin.write("\n")
        proc.stdin.flush()
        cpu_line = proc.stdout.readline().split()
        for c in flood:
            c.close()
        flood.clear()
        proc.stdin.write("\n")
        proc.stdin.flush()
        # Descriptors are free again: new clients are served.
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for c in clients:
            c.sendall(b"x")
        replies = [c.recv(1) for c in clients]
        for c in clients:
            c.close()
        final = proc.stdout.readline().split()
        proc.wait(timeout=30)
        errfile.seek(0)
        stderr = errfile.read()
    finally:
        for c in flood:
            c.close()
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
        errfile.close()
    assert proc.returncode == 0, stderr
    assert replies == [b"k"] * 3 and final == ["served", "3"]
    assert "out of file descriptors" in stderr
    # While out of descriptors, the accept loop backs off instead of spinning.
    assert cpu_line[0] == "cpu" and float(cpu_line[1]) < 0.3, cpu_line
