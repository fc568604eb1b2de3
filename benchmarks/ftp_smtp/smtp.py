"""The SMTP client benchmark (issue 10): coserve.smtp against aiosmtplib and smtplib.

    python benchmarks/ftp_smtp/smtp.py                      # 2,000 messages, 3 rounds
    python benchmarks/ftp_smtp/smtp.py --messages 500 --rounds 1

An aiosmtpd server (a sink: it accepts every recipient and drops the data) runs in a child process
on loopback. Each client sends ``--messages`` EmailMessages (1 KiB of text, one recipient) over one
connection, after a warm-up of 50. The figures: client CPU microseconds per message (user+system
of the client's process, the server being elsewhere) and messages per second. Rounds are
interleaved (every client once per round, the order rotated); medians are reported, and the
ratios to aiosmtplib are taken within each round, then their median. A missing library is
reported as unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from email.message import EmailMessage

SERVER = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(n: int) -> EmailMessage:
    m = EmailMessage()
    m["From"] = "bench@example.org"
    m["To"] = "sink@example.org"
    m["Subject"] = f"message {n}"
    m.set_content(("x" * 63 + "\n") * 16)
    return m


def run_coserve(port: int, messages: list[EmailMessage]) -> None:
    import coserve
    from coserve import smtp

    async def main() -> None:
        async with smtp.SMTPClient("127.0.0.1", port) as c:
            for m in messages:
                await c.send_message(m)

    coserve.run(main)


def run_aiosmtplib(port: int, messages: list[EmailMessage]) -> None:
    import aiosmtplib

    async def main() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as c:
            for m in messages:
                await c.send_message(m)

    asyncio.run(main())


def run_smtplib(port: int, messages: list[EmailMessage]) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="[127.0.0.1]") as c:
        for m in messages:
            c.send_message(m)


CLIENTS = {"coserve": run_coserve, "aiosmtplib": run_aiosmtplib, "smtplib": run_smtplib}


def measure(name: str, port: int, count: int) -> tuple[float, float]:
    CLIENTS[name](port, [message(n) for n in range(50)])  # warm-up
    messages = [message(n) for n in range(count)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    CLIENTS[name](port, messages)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return cpu / count * 1e6, count / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    names = []
    for name in CLIENTS:
        try:
            __import__({"coserve": "coserve.smtp"}.get(name, name))
            names.append(name)
        except ImportError:
            print(f"{name}: unavailable")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                results[name].append(measure(name, port, args.messages))
    finally:
        server.communicate("")
    print(f"{args.messages} messages over one connection, {args.rounds} rounds, pid {os.getpid()}")
    for name in names:
        cpu = statistics.median(c for c, _ in results[name])
        rate = statistics.median(m for _, m in results[name])
        line = f"{name:11s} client CPU {cpu:7.1f} us/message  {rate:7.0f} messages/s"
        if "aiosmtplib" in results and name != "aiosmtplib":
            ratio = statistics.median(
                c / a for (c, _), (a, _) in zip(results[name], results["aiosmtplib"], strict=True)
            )
            line += f"  CPU vs aiosmtplib x{ratio:.2f}"
        print(line)


if __name__ == "__main__":
    main()
