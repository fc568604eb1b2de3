"""Instructions per echo round trip on a socketpair, counted with callgrind (deterministic).

One task echoes with ``await sock.receive_partial()`` / ``await sock.send()``; the other sends
100 bytes and receives the echo, N times. The whole process is counted at two values of N
(1000 and 3000 by default) and the difference, divided by the difference in N, is the cost of
one round trip: start-up, imports and teardown cancel out.

    python benchmarks/roundtrip.py                 # both runs under callgrind; prints per round trip
    python benchmarks/roundtrip.py --one 1000      # the workload alone (what callgrind runs)
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys


def workload(n: int) -> None:
    import coserve

    async def main() -> None:
        a, b = socket.socketpair()
        ca, cb = coserve.wrap(a), coserve.wrap(b)

        async def echo() -> None:
            while data := await cb.receive_partial(4096):
                await cb.send(data)

        server = coserve.spawn(echo)
        msg = b"x" * 100
        for _ in range(n):
            await ca.send(msg)
            got = b""
            while len(got) < len(msg):
                got += await ca.receive_partial(4096)
        ca.close()
        await server
        cb.close()

    coserve.run(main)


def instructions(n: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    proc = subprocess.run([*cmd, "--one", str(n)], capture_output=True, text=True, check=True)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if m is None:
        raise RuntimeError(f"no instruction count from callgrind: {proc.stderr[-500:]}")
    return int(m.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", type=int, help="run the workload with this N, without callgrind")
    p.add_argument("--n", type=int, nargs=2, default=[1000, 3000], metavar=("LOW", "HIGH"))
    args = p.parse_args()
    if args.one is not None:
        workload(args.one)
        return
    low, high = args.n
    a, b = instructions(low), instructions(high)
    print(f"N={low}: {a} instructions; N={high}: {b}; per round trip: {(b - a) / (high - low):.0f}")


if __name__ == "__main__":
    main()
