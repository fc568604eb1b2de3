"""What coserve does, in a few seconds: a network service whose handlers read like blocking code.

Run it with ``make demo``. A small line service (it answers each line in upper
case) runs beside twenty clients that talk to it at once, all in one thread:

- every connection is a task running the handler, which simply loops on
  ``receive`` and ``send``;
- one client falls silent: the server's per-operation timeout ends that
  connection and nothing else;
- a timer reports the server's status while the clients work;
- ``coserve.exit()`` stops the server, and ``run()`` returns once the
  handlers still running have finished.
"""

from __future__ import annotations

import coserve


async def upper_case(sock: coserve.Socket) -> None:
    try:
        while True:
            line = await sock.receive()
            await sock.send(line.upper() + b"\n")
    except coserve.ConnectionClosed:
        pass  # the client hung up
    except TimeoutError:
        print(f"  {coserve.current_task().name}: silent for 0.5 s, closing it")


async def chatty_client(n: int, address: tuple[str, int]) -> int:
    sock = await coserve.connect(*address)
    for i in range(50):
        await sock.send(b"client %d says %d\n" % (n, i))
        reply = await sock.receive()
        assert reply == b"CLIENT %d SAYS %d" % (n, i)
        await coserve.sleep(0.01)
    sock.close()
    return 50


async def silent_client(address: tuple[str, int]) -> None:
    sock = await coserve.connect(*address)
    try:
        await sock.receive("*a")  # says nothing; the server gives up on it
    finally:
        sock.close()


async def main() -> None:
    start = coserve.gettime()
    server = coserve.serve_tcp(upper_case, "127.0.0.1", 0, timeout=0.5, name="upper")
    print(f"serving on {server.address[0]}:{server.address[1]}")

    def report(timer: coserve.Timer, params: object) -> None:
        st = coserve.status()
        print(
            f"{coserve.gettime() - start:4.1f}s  {server.active} connections, "
            f"{st['reading']} tasks waiting for data, {st['sleeping']} sleeping"
        )

    ticker = coserve.timer(report, 0.25, recurring=True)
    silent = coserve.spawn(silent_client, server.address)
    async with coserve.TaskGroup() as clients:
        tasks = [clients.spawn(chatty_client, n, server.address) for n in range(20)]
    await silent
    ticker.cancel()
    print(
        f"{sum(t.result() for t in tasks)} lines answered over {server.accepted} connections "
        f"in {coserve.gettime() - start:.1f}s, one thread"
    )
    coserve.exit()  # the server stops; run() returns when its handlers are done


if __name__ == "__main__":
    coserve.run(main)
