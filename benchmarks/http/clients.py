"""One HTTP client running one workload, in a process of its own: run by ``run.py``.

    python benchmarks/http/clients.py IMPL small URL --requests 10000 --concurrency 10 --length 1400
    python benchmarks/http/clients.py IMPL download URL --length 100000000 --warm-url URL

Each client is written the way its users write one:

- coserve: one ``coserve.http.Client``, ``concurrency`` tasks, ``await c.get(url)``; the download
  with ``c.stream(...)`` and ``iter_bytes()``;
- aiohttp (on asyncio, or on uvloop): one ``ClientSession``, ``async with s.get(url) as r: await
  r.read()``; the download with ``r.content.iter_any()``;
- httpx: one ``AsyncClient``, ``await c.get(url)``; the download with ``c.stream(...)`` and
  ``aiter_bytes()``;
- urllib3: ``concurrency`` threads sharing one ``PoolManager(maxsize=concurrency)``; the download
  with ``preload_content=False`` and ``stream(65536)``;
- requests: ``concurrency`` threads, a ``Session`` each; the download with ``stream=True`` and
  ``iter_content(65536)``.

Every response is checked: status 200 and the expected body length (the download: the sum of its
chunks), and the first small body against the file itself. A failed check ends the run with exit
status 1 and a message: a failure is never counted as a request served.

Before the measured section each client warms up (``--warmup`` requests over all its connections,
so the imports, the pool and the code paths are warm). The measured section's CPU time is this
process's user+system time from ``getrusage(RUSAGE_SELF)`` (every thread of the process) around
it; ``run.py`` also records the whole process's from ``os.wait4``. The result is one JSON line on
standard output; a client whose library cannot be imported prints ``{"unavailable": reason}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time

CHUNK = 65536  # for the clients that need a chunk size to stream (urllib3, requests)


class Bad(Exception):
    """A response that failed its check."""


def check(status: int, length: int, args: argparse.Namespace) -> None:
    if status != 200 or length != args.length:
        raise Bad(f"got status {status} and {length} body bytes, expected 200 and {args.length}")


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` shares that differ by at most one."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


class Section:
    """Wall and CPU time (user+system of the whole process, every thread) of the measured section."""

    def __init__(self) -> None:
        self.result: dict = {}

    def __enter__(self) -> Section:
        self.r0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        t1 = time.perf_counter()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        user, sys_ = r1.ru_utime - self.r0.ru_utime, r1.ru_stime - self.r0.ru_stime
        self.result = {"wall_s": t1 - self.t0, "cpu_s": user + sys_, "user_s": user, "sys_s": sys_}


# --- coserve ------------------------------------------------------------------------------


def run_coserve(args: argparse.Namespace, sec: Section, expected: bytes | None) -> int:
    import coserve.http  # binds coserve too

    async def small(c, n: int) -> int:
        for _ in range(n):
            r = await c.get(args.url)
            check(r.status, len(r.body), args)
        return n

    async def batch(c, total: int) -> int:
        tasks = [coserve.spawn(small, c, n) for n in shares(total, args.concurrency)]
        done = 0
        for t in tasks:
            done += await t
        return done

    async def main() -> int:
        # The default pool keeps 10 connections per host: enough for the default concurrency.
        options = {"max_connections_per_host": args.concurrency} if args.concurrency > 10 else {}
        async with coserve.http.Client(**options) as c:
            if args.workload == "small":
                first = await c.get(args.url)
                check(first.status, len(first.body), args)
                if expected is not None and first.body != expected:
                    raise Bad("the first body differs from the file")
                await batch(c, args.warmup)
                with sec:
                    return await batch(c, args.requests)
            r = await c.get(args.warm_url)
            check(r.status, len(r.body), argparse.Namespace(length=args.warm_length))
            with sec:
                async with c.stream("GET", args.url) as r:
                    got = 0
                    async for chunk in r.iter_bytes():
                        got += len(chunk)
                    check(r.status, got, args)
            return 1

    return coserve.run(main())


# --- aiohttp ------------------------------------------------------------------------------


def run_aiohttp(args: argparse.Namespace, sec: Section, expected: bytes | None, uvloop: bool) -> int:
    import asyncio

    import aiohttp

    loop_factory = None
    if uvloop:
        import uvloop as _uvloop

        loop_factory = _uvloop.new_event_loop

    async def small(s, n: int) -> int:
        for _ in range(n):
            async with s.get(args.url) as r:
                body = await r.read()
                check(r.status, len(body), args)
        return n

    async def batch(s, total: int) -> int:
        return sum(await asyncio.gather(*(small(s, n) for n in shares(total, args.concurrency))))

    async def main() -> int:
        async with aiohttp.ClientSession() as s:
            if args.workload == "small":
                async with s.get(args.url) as r:
                    body = await r.read()
                    check(r.status, len(body), args)
                    if expected is not None and body != expected:
                        raise Bad("the first body differs from the file")
                await batch(s, args.warmup)
                with sec:
                    return await batch(s, args.requests)
            async with s.get(args.warm_url) as r:
                body = await r.read()
                check(r.status, len(body), argparse.Namespace(length=args.warm_length))
            with sec:
                async with s.get(args.url) as r:
                    got = 0
                    async for chunk in r.content.iter_any():
                        got += len(chunk)
                    check(r.status, got, args)
            return 1

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


# --- httpx --------------------------------------------------------------------------------


def run_httpx(args: argparse.Namespace, sec: Section, expected: bytes | None) -> int:
    import asyncio

    import httpx

    async def small(c, n: int) -> int:
        for _ in range(n):
            r = await c.get(args.url)
            check(r.status_code, len(r.content), args)
        return n

    async def batch(c, total: int) -> int:
        return sum(await asyncio.gather(*(small(c, n) for n in shares(total, args.concurrency))))

    async def main() -> int:
        async with httpx.AsyncClient() as c:
            if args.workload == "small":
                first = await c.get(args.url)
                check(first.status_code, len(first.content), args)
                if expected is not None and first.content != expected:
                    raise Bad("the first body differs from the file")
                await batch(c, args.warmup)
                with sec:
                    return await batch(c, args.requests)
            r = await c.get(args.warm_url)
            check(r.status_code, len(r.content), argparse.Namespace(length=args.warm_length))
            with sec:
                async with c.stream("GET", args.url) as r:
                    got = 0
                    async for chunk in r.aiter_bytes():
                        got += len(chunk)
                    check(r.status_code, got, args)
            return 1

    return asyncio.run(main())


# --- threads: urllib3 and requests --------------------------------------------------------


def threaded(worker, total: int, concurrency: int, ids: threading.local | None = None) -> int:
    """Run ``worker(n)`` in ``concurrency`` threads, the shares of ``total``; the first error is raised.

    ``ids.k``, when given, is set to the thread's index in each thread.
    """
    errors: list[BaseException] = []
    done = [0] * concurrency

    def body(k: int, n: int) -> None:
        if ids is not None:
            ids.k = k
        try:
            done[k] = worker(n)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=body, args=(k, n)) for k, n in enumerate(shares(total, concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(done)


def run_urllib3(args: argparse.Namespace, sec: Section, expected: bytes | None) -> int:
    import urllib3

    # maxsize: one kept-alive connection per thread (the default, 1, would close the others).
    pm = urllib3.PoolManager(maxsize=args.concurrency)

    def small(n: int) -> int:
        for _ in range(n):
            r = pm.request("GET", args.url)
            check(r.status, len(r.data), args)
        return n

    if args.workload == "small":
        first = pm.request("GET", args.url)
        check(first.status, len(first.data), args)
        if expected is not None and first.data != expected:
            raise Bad("the first body differs from the file")
        threaded(small, args.warmup, args.concurrency)
        with sec:
            return threaded(small, args.requests, args.concurrency)
    r = pm.request("GET", args.warm_url)
    check(r.status, len(r.data), argparse.Namespace(length=args.warm_length))
    with sec:
        r = pm.request("GET", args.url, preload_content=False)
        got = 0
        for chunk in r.stream(CHUNK):
            got += len(chunk)
        r.release_conn()
        check(r.status, got, args)
    return 1


def run_requests(args: argparse.Namespace, sec: Section, expected: bytes | None) -> int:
    import requests

    # A Session per thread: thread k of each batch uses sessions[k], so the warm-up's
    # connections are the measured section's.
    sessions = [requests.Session() for _ in range(args.concurrency)]
    ids = threading.local()

    def small(n: int) -> int:
        s = sessions[ids.k]
        for _ in range(n):
            r = s.get(args.url)
            check(r.status_code, len(r.content), args)
        return n

    if args.workload == "small":
        first = sessions[0].get(args.url)
        check(first.status_code, len(first.content), args)
        if expected is not None and first.content != expected:
            raise Bad("the first body differs from the file")
        threaded(small, args.warmup, args.concurrency, ids)
        with sec:
            return threaded(small, args.requests, args.concurrency, ids)
    s = sessions[0]
    r = s.get(args.warm_url)
    check(r.status_code, len(r.content), argparse.Namespace(length=args.warm_length))
    with sec:
        got = 0
        with s.get(args.url, stream=True) as r:
            for chunk in r.iter_content(CHUNK):
                got += len(chunk)
            check(r.status_code, got, args)
    return 1


IMPORTS = {
    "coserve": "coserve.http",
    "aiohttp": "aiohttp",
    "aiohttp-uvloop": "uvloop",
    "httpx": "httpx",
    "urllib3": "urllib3",
    "requests": "requests",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("impl", choices=list(IMPORTS))
    ap.add_argument("workload", choices=["small", "download"])
    ap.add_argument("url")
    ap.add_argument("--length", type=int, required=True, help="the expected body length")
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=200, help="requests before the measured section")
    ap.add_argument("--expected", help="a file the first small body must equal")
    ap.add_argument("--warm-url", help="download: a small URL fetched first, on the same connection")
    ap.add_argument("--warm-length", type=int)
    ap.add_argument("--cpu", type=int, help="pin this process to this CPU")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        if args.impl == "aiohttp-uvloop":
            __import__("aiohttp")
        __import__(IMPORTS[args.impl])
    except ImportError as e:
        print(json.dumps({"unavailable": f"{type(e).__name__}: {e}"}))
        return
    expected = None
    if args.expected:
        with open(args.expected, "rb") as f:
            expected = f.read()
    sec = Section()
    try:
        if args.impl == "coserve":
            done = run_coserve(args, sec, expected)
        elif args.impl in ("aiohttp", "aiohttp-uvloop"):
            done = run_aiohttp(args, sec, expected, uvloop=args.impl == "aiohttp-uvloop")
        elif args.impl == "httpx":
            done = run_httpx(args, sec, expected)
        elif args.impl == "urllib3":
            done = run_urllib3(args, sec, expected)
        else:
            done = run_requests(args, sec, expected)
    except Bad as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)
    want = args.requests if args.workload == "small" else 1
    if done != want:
        print(json.dumps({"error": f"{done} responses checked, expected {want}"}))
        sys.exit(1)
    print(json.dumps({**sec.result, "requests": done, "body_bytes": done * args.length}))


if __name__ == "__main__":
    main()
