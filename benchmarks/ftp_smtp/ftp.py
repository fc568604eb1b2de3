"""The FTP client benchmark (issue 10): coserve.ftp against aioftp and ftplib, side by side in one run.

    python benchmarks/ftp_smtp/ftp.py                         # 200 MB down and up, 3 rounds
    python benchmarks/ftp_smtp/ftp.py --mb 50 --rounds 1 --out /tmp/ftp.json   # a quick check

One local pyftpdlib server (``tests/ftp_server.py``, its own process, pinned to CPU 0) serves a
temporary directory. Two workloads, passive mode, binary, one session each:

- ``download``: RETR of a file of ``--mb`` MB (10^6 bytes), chunks counted and discarded;
- ``upload``: STOR of as many bytes from memory, in 64 KiB pieces; the file's size on the server
  must then be right.

Each client runs in a process of its own, pinned to CPU 1, logs in, does a small warm-up
transfer, and reports the CPU time (user+system, ``resource.getrusage``) and the wall time of the
measured transfer only. Figures: MB/s and client CPU seconds per 100 MB. The pyftpdlib server,
in Python, is usually the bottleneck of MB/s; client CPU is the figure that ranks the clients.
Rounds are interleaved (each client once per round, the order rotated); medians are reported, and
the ratios to aioftp and to ftplib are taken within each round, then their median.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from benchutil import commit  # noqa: E402

SERVER = os.path.join(ROOT, "tests", "ftp_server.py")
IMPLS = ["coserve", "aioftp", "ftplib"]
WORKLOADS = ["download", "upload"]
USER, PASSWORD = "user", "12345"
BLOCK = 65536


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- the clients (each run in its own process) ----------------------------------------------------


def client_coserve(workload: str, port: int, size: int) -> tuple[int, float, float]:
    import coserve
    from coserve import ftp

    block = memoryview(bytes(BLOCK))

    async def source(n: int):
        while n > 0:
            yield block[: min(n, BLOCK)]
            n -= BLOCK

    async def main() -> tuple[int, float, float]:
        async with ftp.FTPClient("127.0.0.1", port, user=USER, password=PASSWORD) as c:
            await c.retrieve_bytes("warm.bin")
            t0, c0 = time.perf_counter(), _cpu()
            n = 0
            if workload == "download":
                async for chunk in c.retrieve("big.bin"):
                    n += len(chunk)
            else:
                await c.store("up.bin", source(size))
                n = size
            return n, time.perf_counter() - t0, _cpu() - c0

    return coserve.run(main)  # type: ignore[no-any-return]


def client_aioftp(workload: str, port: int, size: int) -> tuple[int, float, float]:
    import asyncio

    try:
        import aioftp
    except ImportError:
        raise SystemExit(json.dumps({"unavailable": "aioftp is not installed"})) from None
    block = bytes(BLOCK)

    async def main() -> tuple[int, float, float]:
        async with aioftp.Client.context("127.0.0.1", port, USER, PASSWORD) as c:
            async with c.download_stream("warm.bin") as stream:
                async for _ in stream.iter_by_block(BLOCK):
                    pass
            t0, c0 = time.perf_counter(), _cpu()
            n = 0
            if workload == "download":
                async with c.download_stream("big.bin") as stream:
                    async for chunk in stream.iter_by_block(BLOCK):
                        n += len(chunk)
            else:
                async with c.upload_stream("up.bin") as stream:
                    while n < size:
                        piece = block[: min(size - n, BLOCK)]
                        await stream.write(piece)
                        n += len(piece)
            return n, time.perf_counter() - t0, _cpu() - c0

    return asyncio.run(main())


def client_ftplib(workload: str, port: int, size: int) -> tuple[int, float, float]:
    import ftplib

    class Zeros:
        def __init__(self, n: int) -> None:
            self.left = n
            self.block = bytes(BLOCK)

        def read(self, k: int) -> bytes:
            k = min(k, self.left)
            self.left -= k
            return self.block[:k] if k < BLOCK else self.block

    with ftplib.FTP() as c:
        c.connect("127.0.0.1", port, timeout=60)
        c.login(USER, PASSWORD)
        c.retrbinary("RETR warm.bin", lambda b: None)
        t0, c0 = time.perf_counter(), _cpu()
        n = 0
        if workload == "download":

            def count(chunk: bytes) -> None:
                nonlocal n
                n += len(chunk)

            c.retrbinary("RETR big.bin", count, blocksize=BLOCK)
        else:
            c.storbinary("STOR up.bin", Zeros(size), blocksize=BLOCK)  # type: ignore[arg-type]
            n = size
        return n, time.perf_counter() - t0, _cpu() - c0


CLIENTS = {"coserve": client_coserve, "aioftp": client_aioftp, "ftplib": client_ftplib}


# -- the driver ----------------------------------------------------------------------------------------


def measure(impl: str, workload: str, port: int, size: int, root: str, pin: bool) -> dict:
    pre = (lambda: os.sched_setaffinity(0, {1})) if pin else None
    cmd = [sys.executable, __file__, "--client", impl, workload, str(port), str(size)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, preexec_fn=pre)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    if last.startswith("{") and "unavailable" in last:
        return json.loads(last)
    if r.returncode != 0:
        raise RuntimeError(f"{impl} {workload} failed: {r.stderr[-1500:]}")
    n, wall, cpu = json.loads(last)
    if n != size:
        raise RuntimeError(f"{impl} {workload}: {n} bytes, not {size}")
    if workload == "upload":
        got = os.path.getsize(os.path.join(root, "up.bin"))
        if got != size:
            raise RuntimeError(f"{impl} upload: the server has {got} bytes, not {size}")
        os.unlink(os.path.join(root, "up.bin"))
    return {"mb_per_s": size / 1e6 / wall, "cpu_s_per_100mb": cpu * 1e8 / size, "wall_s": wall, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--out")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    args = ap.parse_args()
    args.pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    impls = args.impls.split(",")
    size = args.mb * 10**6
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "big.bin"), "wb") as f:
            for _ in range(size // 10**6):
                f.write(os.urandom(10**6))
        with open(os.path.join(root, "warm.bin"), "wb") as f:
            f.write(os.urandom(1 << 20))
        pre = (lambda: os.sched_setaffinity(0, {0})) if args.pin else None
        server = subprocess.Popen([sys.executable, SERVER, root], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  preexec_fn=pre)  # fmt: skip
        try:
            port = int(server.stdout.readline())  # type: ignore[union-attr]
            rounds: list[dict] = []
            for r in range(args.rounds):
                order = impls[r % len(impls) :] + impls[: r % len(impls)]
                results: dict = {w: {} for w in WORKLOADS}
                for workload in WORKLOADS:
                    for impl in order:
                        results[workload][impl] = measure(impl, workload, port, size, root, args.pin)
                        print(f"round {r + 1} {workload:8} {impl:8} {results[workload][impl]}", flush=True)
                rounds.append(results)
        finally:
            server.stdin.close()  # type: ignore[union-attr]
            server.wait(10)
            server.stdout.close()  # type: ignore[union-attr]
    summary: dict = {"commit": commit(), "mb": args.mb, "rounds": args.rounds, "pinned": args.pin}
    for workload in WORKLOADS:
        table = summary.setdefault(workload, {})
        for impl in impls:
            runs = [rd[workload][impl] for rd in rounds if "unavailable" not in rd[workload][impl]]
            if not runs:
                table[impl] = rounds[0][workload][impl]
                continue
            row = {k: statistics.median(x[k] for x in runs) for k in ("mb_per_s", "cpu_s_per_100mb")}
            for base in ("aioftp", "ftplib"):
                ok = [rd for rd in rounds if "unavailable" not in rd[workload].get(base, {"unavailable": 1})]
                if ok and base != impl:
                    key = "cpu_s_per_100mb"
                    row[f"cpu_vs_{base}"] = statistics.median(
                        rd[workload][impl][key] / rd[workload][base][key] for rd in ok
                    )
            table[impl] = row
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        impl, workload, port, size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(CLIENTS[impl](workload, port, size)))
    else:
        main()
