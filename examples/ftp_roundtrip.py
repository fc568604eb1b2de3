"""Upload, list, download and delete a file on an FTP server, as blocking-style code.

    python examples/ftp_roundtrip.py ftp://user:password@host[:port]/dir/ [--tls]

Uploads 1 MiB of random bytes in chunks from an async generator, lists the
directory (MLSD, parsed), downloads the file back chunk by chunk while
counting, checks that the bytes are the same, and deletes it. With ``--tls``
the session is explicit FTPS (AUTH TLS), verified against the system's
certificates. Prints one line per step.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.parse

import coserve
from coserve import ftp


async def chunks(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def main(url: str, tls: bool) -> None:
    parts = urllib.parse.urlsplit(url)
    user = urllib.parse.unquote(parts.username or "anonymous")
    password = urllib.parse.unquote(parts.password or "anonymous@")
    data = os.urandom(1 << 20)
    async with ftp.FTPClient(parts.hostname or "", parts.port, user=user, password=password, tls=tls) as c:
        print(f"connected: {c.welcome}")
        if parts.path.strip("/"):
            await c.cwd(parts.path.strip("/"))
        await c.store("roundtrip.bin", chunks(data))
        print(f"stored {len(data)} bytes in {await c.pwd()}")
        for entry in await c.mlsd():
            if entry.name == "roundtrip.bin":
                print(f"listed {entry.name}: {entry.type}, {entry.size} bytes")
        digest = hashlib.sha256()
        received = 0
        async for chunk in c.retrieve("roundtrip.bin"):
            digest.update(chunk)
            received += len(chunk)
        same = digest.digest() == hashlib.sha256(data).digest()
        print(f"retrieved {received} bytes, {'identical' if same else 'DIFFERENT'}")
        await c.delete("roundtrip.bin")
        print("deleted")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    coserve.run(main, sys.argv[1], "--tls" in sys.argv[2:])
