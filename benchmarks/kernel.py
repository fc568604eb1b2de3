"""Kernel micro-benchmarks: coserve side by side with asyncio, uvloop, trio and curio.

Each (benchmark, implementation) pair runs in a fresh process pinned to one
CPU; rounds are interleaved (A B C ... A B C ...) so that drift on a shared
machine hits every implementation alike, and the median of the rounds is
reported. Times are the CPU time of the measured section (``process_time``),
so the idle wait of a timer benchmark does not count; memory is the growth of
the resident set while the tasks exist.

    python benchmarks/kernel.py                 # everything, 5 rounds
    python benchmarks/kernel.py --rounds 3 --only spawn_join,switch
    python benchmarks/kernel.py --one spawn_join coserve    # one measurement, prints JSON

Workloads (N = 100,000 unless --scale changes it):
- spawn_join: spawn N trivial tasks, then wait for each.
- switch: 100 tasks each yield N/100 times (sleep(0)): the cost of one task switch.
- timers: arm N callback timers over 10 ms, cancel 90%, let the rest fire (trio and curio have no
  callback timers: n/a).
- sleepers: N tasks sleep up to 10 ms, 90% of them are cancelled while asleep.
- lock: two tasks hand a lock back and forth N times.
- queue: a producer pushes N items (yielding every 64), a consumer pops them.
- memory: N tasks sleeping; resident memory per task, in bytes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import commit

IMPLS = ["coserve", "asyncio", "uvloop", "trio", "curio"]
BENCHES = ["spawn_join", "switch", "timers", "sleepers", "lock", "queue", "memory"]
UNITS = {"memory": "bytes/task"}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Meter:
    """Measures the CPU time of the section between start() and stop()."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.value: float | None = None

    def start(self) -> None:
        gc.collect()
        self.t0 = time.process_time()

    def stop(self) -> None:
        self.value = time.process_time() - self.t0


# --- coserve ------------------------------------------------------------------------------


def coserve_bench(name: str, n: int, m: Meter) -> None:
    import coserve

    async def nothing():
        return None

    async def spawn_join():
        m.start()
        tasks = [coserve.spawn(nothing) for _ in range(n)]
        for t in tasks:
            await t
        m.stop()

    async def switch():
        async def yielder(k):
            for _ in range(k):
                await coserve.sleep(0)

        m.start()
        tasks = [coserve.spawn(yielder, n // 100) for _ in range(100)]
        for t in tasks:
            await t
        m.stop()

    async def timers():
        rng = random.Random(1)
        fired = [0]

        def cb(timer, params):
            fired[0] += 1

        m.start()
        ts = [coserve.timer(cb, rng.random() * 0.01) for _ in range(n)]
        for t in ts[: n * 9 // 10]:
            t.cancel()
        while fired[0] < n - n * 9 // 10:
            await coserve.sleep(0.001)
        m.stop()

    async def sleepers():
        rng = random.Random(1)

        async def sleeper(d):
            await coserve.sleep(d)

        m.start()
        tasks = [coserve.spawn(sleeper, rng.random() * 0.01) for _ in range(n)]
        await coserve.sleep(0)
        for t in tasks[: n * 9 // 10]:
            t.cancel()
        for t in tasks:
            try:
                await t
            except coserve.Cancelled:
                pass
        m.stop()

    async def lock():
        lk = coserve.Lock()

        async def user(k):
            for _ in range(k):
                async with lk:
                    await coserve.sleep(0)

        m.start()
        a, b = coserve.spawn(user, n // 2), coserve.spawn(user, n // 2)
        await a
        await b
        m.stop()

    async def queue():
        q = coserve.Queue()

        async def producer():
            for i in range(n):
                q.push(i)
                if i % 64 == 63:
                    await coserve.sleep(0)

        async def consumer():
            for _ in range(n):
                await q.pop()

        m.start()
        p, c = coserve.spawn(producer), coserve.spawn(consumer)
        await p
        await c
        m.stop()

    async def memory():
        async def sleeper():
            await coserve.sleep(3600)

        gc.collect()
        before = rss()
        tasks = [coserve.spawn(sleeper) for _ in range(n)]
        await coserve.sleep(0)
        gc.collect()
        m.value = (rss() - before) / n
        coserve.cancel_all()
        del tasks

    coserve.run(locals()[name])


# --- asyncio and uvloop ----------------------------------------------------------------------


def asyncio_bench(name: str, n: int, m: Meter, use_uvloop: bool) -> None:
    import asyncio

    async def nothing():
        return None

    async def spawn_join():
        m.start()
        tasks = [asyncio.create_task(nothing()) for _ in range(n)]
        for t in tasks:
            await t
        m.stop()

    async def switch():
        async def yielder(k):
            for _ in range(k):
                await asyncio.sleep(0)

        m.start()
        tasks = [asyncio.create_task(yielder(n // 100)) for _ in range(100)]
        for t in tasks:
            await t
        m.stop()

    async def timers():
        rng = random.Random(1)
        loop = asyncio.get_running_loop()
        fired = [0]

        def cb():
            fired[0] += 1

        m.start()
        hs = [loop.call_later(rng.random() * 0.01, cb) for _ in range(n)]
        for h in hs[: n * 9 // 10]:
            h.cancel()
        while fired[0] < n - n * 9 // 10:
            await asyncio.sleep(0.001)
        m.stop()

    async def sleepers():
        rng = random.Random(1)
        m.start()
        tasks = [asyncio.create_task(asyncio.sleep(rng.random() * 0.01)) for _ in range(n)]
        await asyncio.sleep(0)
        for t in tasks[: n * 9 // 10]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        m.stop()

    async def lock():
        lk = asyncio.Lock()

        async def user(k):
            for _ in range(k):
                async with lk:
                    await asyncio.sleep(0)

        m.start()
        await asyncio.gather(user(n // 2), user(n // 2))
        m.stop()

    async def queue():
        q: asyncio.Queue[int] = asyncio.Queue()

        async def producer():
            for i in range(n):
                q.put_nowait(i)
                if i % 64 == 63:
                    await asyncio.sleep(0)

        async def consumer():
            for _ in range(n):
                await q.get()

        m.start()
        await asyncio.gather(producer(), consumer())
        m.stop()

    async def memory():
        gc.collect()
        before = rss()
        tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(n)]
        await asyncio.sleep(0)
        gc.collect()
        m.value = (rss() - before) / n
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    if use_uvloop:
        import uvloop

        uvloop.run(locals()[name]())
    else:
        asyncio.run(locals()[name]())


# --- trio ----------------------------------------------------------------------------------


def trio_bench(name: str, n: int, m: Meter) -> None:
    import trio

    async def nothing():
        return None

    async def spawn_join():
        m.start()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(nothing)
        m.stop()

    async def switch():
        async def yielder(k):
            for _ in range(k):
                await trio.sleep(0)

        m.start()
        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(yielder, n // 100)
        m.stop()

    async def sleepers():
        rng = random.Random(1)
        scopes = []

        async def sleeper(d):
            with trio.CancelScope() as scope:
                scopes.append(scope)
                await trio.sleep(d)

        m.start()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(sleeper, rng.random() * 0.01)
            await trio.sleep(0)
            while len(scopes) < n:
                await trio.sleep(0)
            for s in scopes[: n * 9 // 10]:
                s.cancel()
        m.stop()

    async def lock():
        lk = trio.Lock()

        async def user(k):
            for _ in range(k):
                async with lk:
                    await trio.sleep(0)

        m.start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(user, n // 2)
            nursery.start_soon(user, n // 2)
        m.stop()

    async def queue():
        send, recv = trio.open_memory_channel(float("inf"))

        async def producer():
            for i in range(n):
                send.send_nowait(i)
                if i % 64 == 63:
                    await trio.sleep(0)

        async def consumer():
            for _ in range(n):
                await recv.receive()

        m.start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            nursery.start_soon(consumer)
        m.stop()

    async def memory():
        gc.collect()
        before = rss()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(trio.sleep, 3600)
            await trio.sleep(0)
            await trio.sleep(0)
            gc.collect()
            m.value = (rss() - before) / n
            nursery.cancel_scope.cancel()

    if name == "timers":
        return
    trio.run(locals()[name])


# --- curio ---------------------------------------------------------------------------------


def curio_bench(name: str, n: int, m: Meter) -> None:
    import curio

    async def nothing():
        return None

    async def spawn_join():
        m.start()
        tasks = [await curio.spawn(nothing) for _ in range(n)]
        for t in tasks:
            await t.join()
        m.stop()

    async def switch():
        async def yielder(k):
            for _ in range(k):
                await curio.sleep(0)

        m.start()
        tasks = [await curio.spawn(yielder, n // 100) for _ in range(100)]
        for t in tasks:
            await t.join()
        m.stop()

    async def sleepers():
        rng = random.Random(1)

        async def sleeper(d):
            await curio.sleep(d)

        m.start()
        tasks = [await curio.spawn(sleeper, rng.random() * 0.01) for _ in range(n)]
        await curio.sleep(0)
        for t in tasks[: n * 9 // 10]:
            await t.cancel(blocking=False)
        for t in tasks:
            await t.wait()
        m.stop()

    async def lock():
        lk = curio.Lock()

        async def user(k):
            for _ in range(k):
                async with lk:
                    await curio.sleep(0)

        m.start()
        a, b = await curio.spawn(user, n // 2), await curio.spawn(user, n // 2)
        await a.join()
        await b.join()
        m.stop()

    async def queue():
        q = curio.Queue()

        async def producer():
            for i in range(n):
                await q.put(i)
                if i % 64 == 63:
                    await curio.sleep(0)

        async def consumer():
            for _ in range(n):
                await q.get()

        m.start()
        p, c = await curio.spawn(producer), await curio.spawn(consumer)
        await p.join()
        await c.join()
        m.stop()

    async def memory():
        gc.collect()
        before = rss()
        tasks = [await curio.spawn(curio.sleep, 3600) for _ in range(n)]
        await curio.sleep(0)
        gc.collect()
        m.value = (rss() - before) / n
        for t in tasks:
            await t.cancel(blocking=False)

    if name == "timers":
        return
    curio.run(locals()[name])


def measure_one(name: str, impl: str, n: int) -> float | None:
    m = Meter()
    if impl == "coserve":
        coserve_bench(name, n, m)
    elif impl in ("asyncio", "uvloop"):
        asyncio_bench(name, n, m, impl == "uvloop")
    elif impl == "trio":
        trio_bench(name, n, m)
    elif impl == "curio":
        curio_bench(name, n, m)
    return m.value


def run_child(bench: str, impl: str, n: int, cpu: int | None, timeout: float, callgrind: bool = False):
    """Run one measurement in a fresh process; returns its value, or the string "timeout"."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", bench, impl, "--scale", str(n)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    if callgrind:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return "timeout"
    if callgrind:
        for line in proc.stderr.splitlines():
            if "Collected :" in line:
                return int(line.rsplit(":", 1)[1])
        raise RuntimeError(f"no instruction count from callgrind: {proc.stderr[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_mode(benches, impls, args):
    """Median CPU time (or memory) over interleaved rounds; a peer over --timeout is marked so."""
    samples: dict[str, dict[str, list]] = {b: {i: [] for i in impls} for b in benches}
    for r in range(args.rounds):
        for b in benches:
            for i in impls:
                if "timeout" in samples[b][i]:
                    continue
                value = run_child(b, i, args.scale, args.cpu, args.timeout)
                if value is not None:
                    samples[b][i].append(value)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    results = {}
    for b, per in samples.items():
        results[b] = {}
        for i, v in per.items():
            if "timeout" in v:
                results[b][i] = f">{args.timeout:g}s"
            elif v:
                results[b][i] = statistics.median(v)
    return results, samples


def instructions_mode(benches, impls, args):
    """Instructions per item from callgrind (whole process at N, minus the same at N=0).

    Deterministic: the figure does not move with the load of a shared machine.
    """
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(b, i) for b in benches if b != "memory" for i in impls]
    results: dict[str, dict[str, object]] = {b: {} for b in benches if b != "memory"}

    def one(job):
        b, i = job
        full = run_child(b, i, args.scale, None, args.timeout, callgrind=True)
        base = run_child(b, i, 0, None, args.timeout, callgrind=True)
        if full == "timeout" or base == "timeout":
            return b, i, f">{args.timeout:g}s"
        # A benchmark a peer cannot express (trio/curio timers) measures nothing: report n/a.
        if full - base < args.scale * 50:
            return b, i, None
        return b, i, (full - base) / args.scale

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for b, i, v in pool.map(one, jobs):
            if v is not None:
                results[b][i] = v
            print(f"{b} {i}: {v}", file=sys.stderr)
    return results, {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["cpu", "instructions"], default="cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--scale", type=int, default=None, help="N (default 100000; 10000 for instructions)")
    ap.add_argument("--only", help="comma-separated benchmarks")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--cpu", type=int, default=0, help="the CPU to pin each measurement to")
    ap.add_argument("--timeout", type=float, default=None, help="cap per measurement (s)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--one", nargs=2, metavar=("BENCH", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale is None:
        args.scale = 10_000 if args.mode == "instructions" else 100_000
    if args.timeout is None:
        args.timeout = 600.0 if args.mode == "instructions" else 30.0

    if args.one:
        if args.cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {args.cpu})
        print(json.dumps(measure_one(args.one[0], args.one[1], args.scale)))
        return

    benches = args.only.split(",") if args.only else BENCHES
    impls = args.impls.split(",")
    run = cpu_mode if args.mode == "cpu" else instructions_mode
    results, samples = run(benches, impls, args)
    print(format_table(results, impls, args.mode))
    if args.out:
        meta = {
            "command": "python " + " ".join(sys.argv),
            "mode": args.mode,
            "python": sys.version.split()[0],
            "rounds": args.rounds if args.mode == "cpu" else 1,
            "n": args.scale,
            "date": time.strftime("%Y-%m-%d"),
            "commit": commit(),
            "versions": versions(),
        }
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "results": results, "samples": samples}, f, indent=1)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("coserve", "uvloop", "trio", "curio"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def format_table(results, impls: list[str], mode: str = "cpu") -> str:
    """A Markdown table: the figures, then each peer's ratio to coserve (above 1: coserve is better)."""
    head = "| benchmark | " + " | ".join(impls) + " | " + " | ".join(f"{i}/coserve" for i in impls[1:]) + " |"
    lines = [head, "|" + "---|" * (2 * len(impls))]
    for b, per in results.items():
        if mode == "instructions":
            unit, scale, fmt = "instructions/item", 1, "{:.0f}"
        elif b == "memory":
            unit, scale, fmt = "bytes/task", 1, "{:.0f}"
        else:
            unit, scale, fmt = "ms", 1000, "{:.0f}"
        cells = []
        for i in impls:
            v = per.get(i)
            cells.append("n/a" if v is None else v if isinstance(v, str) else fmt.format(v * scale))
        base = per.get("coserve")
        ratios = []
        for i in impls[1:]:
            v = per.get(i)
            if v is None or not isinstance(base, (int, float)):
                ratios.append("n/a")
            elif isinstance(v, str):
                ratios.append(v.replace(">", "&gt;"))
            else:
                ratios.append(f"{v / base:.2f}")
        lines.append(f"| {b} ({unit}) | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
