"""A chat server: broadcasting to many clients, one of them too slow to keep up.

Run it with ``python examples/chat.py``: three clients chat (200 lines each)
while a fourth joins and never reads. The rule it shows: **one writer per
socket**. Each member has a queue and one task that writes it to the socket,
so a broadcast never waits for anyone, and a member whose queue grows past
``MAX_BEHIND`` is dropped instead of holding everybody up or using memory
without bound.
"""

import socket

import coserve

MAX_BEHIND = 256  # lines a member may be behind before it is dropped
LINES = 200  # each chatter's
CHATTERS = ["alice", "bob", "carol"]

members: dict[coserve.Socket, coserve.Queue] = {}


async def writer(sock: coserve.Socket, queue: coserve.Queue) -> None:
    # The only task that sends on this socket. It sends everything queued in one go, so a member
    # that keeps up is never more than one turn behind.
    try:
        while True:
            batch = [await queue.pop()]
            while queue.size:
                batch.append(await queue.pop())  # there: no wait
            await sock.send(b"".join(batch))
    except (coserve.Destroyed, coserve.SocketClosed):
        return  # the member left, or was dropped


def broadcast(line: bytes) -> None:
    for sock, queue in list(members.items()):
        if queue.size >= MAX_BEHIND:
            print(f"server: dropping a member {queue.size} lines behind")
            leave(sock)
        else:
            queue.push(line)


def leave(sock: coserve.Socket) -> None:
    queue = members.pop(sock, None)
    if queue is not None:
        queue.destroy()  # ends its writer
        sock.close()  # ends its reader: receive() raises SocketClosed


async def member(sock: coserve.Socket) -> None:
    # A real server bounds what it keeps for each client: here, the kernel's send buffer.
    sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    name = (await sock.receive()).decode()
    queue = coserve.Queue(name)
    members[sock] = queue
    coserve.spawn(writer, sock, queue, name=f"{name}:writer")
    queue.push(b"welcome\n")  # from now on this member hears every line
    try:
        while (line := await sock.receive()) != b"bye":
            broadcast(name.encode() + b": " + line + b"\n")
    except coserve.SocketClosed:
        return  # dropped by broadcast()
    finally:
        leave(sock)


async def welcomed(sock: coserve.Socket) -> None:
    line = await sock.receive()
    if line != b"welcome":
        raise RuntimeError(f"the server said {line!r}, not welcome")


async def chatter(name: str, address: tuple[str, int], here: list[str], all_here: coserve.Event) -> None:
    sock = await coserve.connect(*address)
    await sock.send(name.encode() + b"\n")
    await welcomed(sock)
    here.append(name)
    if len(here) == len(CHATTERS):
        all_here.set()
    await all_here.wait()  # so that everyone hears everyone's first line

    async def say() -> None:
        for i in range(LINES):
            await sock.send(b"line %d %s\n" % (i, b"." * 1000))

    coserve.spawn(say)
    heard = 0
    while heard < LINES * len(CHATTERS):  # everyone's lines, our own included
        await sock.receive()
        heard += 1
    await sock.send(b"bye\n")
    sock.close()
    print(f"{name} heard all {heard} lines")


async def slow_client(address: tuple[str, int], joined: coserve.Event, chat_over: coserve.Event) -> None:
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads while the chat goes on
    raw.connect(address)  # on loopback, to a listening socket: this does not block
    sock = coserve.wrap(raw)
    await sock.send(b"slowpoke\n")
    await welcomed(sock)
    joined.set()
    await chat_over.wait()
    rest = await sock.receive("*a")  # the server hung up on it
    sock.close()
    lines = rest.count(b"\n")
    print(f"slowpoke was dropped after {lines} lines")


async def main() -> None:
    server = coserve.serve_tcp(member, "127.0.0.1", 0)
    slow_joined, chat_over = coserve.Event(), coserve.Event()
    slow = coserve.spawn(slow_client, server.address, slow_joined, chat_over)
    await slow_joined.wait()
    here: list[str] = []
    all_here = coserve.Event()
    async with coserve.TaskGroup() as chat:
        for name in CHATTERS:
            chat.spawn(chatter, name, server.address, here, all_here)
    chat_over.set()
    await slow
    server.close()
    await server.wait_closed()
    print(f"chat over: {server.accepted} connections, {len(members)} members left")


coserve.run(main)
