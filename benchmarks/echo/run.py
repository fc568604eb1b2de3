"""The echo benchmark: coserve's echo server against every peer, driven by the project's own load generator.

    python benchmarks/echo/run.py                      # everything (several minutes)
    python benchmarks/echo/run.py --servers coserve,uvloop-streams --scenarios 1k-100 --rounds 3

Each server runs pinned to CPU 0 and the load generator (``loadgen.c``, built
here with the system's C compiler) to CPU 1. For each scenario the server is
started fresh, warmed up for one second, then measured for ``--seconds``:

- messages per second and p50/p99 round-trip latency, from the load generator;
- server CPU microseconds per message: the server process's user+system time
  over the measured run (``/proc/PID/stat``), divided by the messages. This
  ranks servers even when the load generator is the bottleneck;
- memory per idle connection (idle scenarios): the growth of the server's
  resident set when the idle connections are opened, divided by their number.

Rounds are interleaved (every server once per round) and the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from benchutil import commit  # noqa: E402

SERVERS_DIR = os.path.join(HERE, "servers")
BUILD = os.path.join(HERE, "build")
PY = sys.executable

SERVERS = {
    "coserve": [PY, "coserve_echo.py"],
    "coserve-app": [PY, "coserve_app_echo.py"],
    "asyncio-streams": [PY, "asyncio_streams.py"],
    "asyncio-protocol": [PY, "asyncio_protocol.py"],
    "uvloop-streams": [PY, "asyncio_streams.py", "--uvloop"],
    "uvloop-protocol": [PY, "asyncio_protocol.py", "--uvloop"],
    "trio": [PY, "trio_echo.py"],
    "curio": [PY, "curio_echo.py"],
    "gevent": [PY, "gevent_echo.py"],
    "asyncore": [PY, "asyncore_echo.py"],
    "coserve-asyncore": [PY, "asyncore_echo.py", "--coserve"],
    "threads": [PY, "threads_echo.py"],
    "c-epoll": [os.path.join(BUILD, "c_epoll")],
}

# name -> (message size, active connections, idle connections)
SCENARIOS = {
    "1k-10": (1024, 10, 0),
    "1k-100": (1024, 100, 0),
    "10k-10": (10240, 10, 0),
    "10k-100": (10240, 100, 0),
    "100k-10": (102400, 10, 0),
    "100k-100": (102400, 100, 0),
    "1k-100+5000idle": (1024, 100, 5000),
}

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def build() -> str:
    os.makedirs(BUILD, exist_ok=True)
    for src, out in (("loadgen.c", "loadgen"), ("servers/c_epoll.c", "c_epoll")):
        target = os.path.join(BUILD, out)
        source = os.path.join(HERE, src)
        if not os.path.exists(target) or os.path.getmtime(target) < os.path.getmtime(source):
            subprocess.run(["cc", "-O2", "-o", target, source], check=True)
    return os.path.join(BUILD, "loadgen")


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(cpu: int):
    def pre() -> None:
        raise_fd_limit()
        os.sched_setaffinity(0, {cpu})

    return pre


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_server(name: str) -> tuple[subprocess.Popen, int]:
    cmd = SERVERS[name]
    cmd = [cmd[0], os.path.join(SERVERS_DIR, cmd[1]), "0", *cmd[2:]] if cmd[0] == PY else [cmd[0], "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=pinned(0))  # fmt: skip
    line = proc.stdout.readline().split()
    if not line or line[0] != "ready":
        proc.kill()
        raise RuntimeError(f"{name} did not start: {line}")
    return proc, int(line[1])


def measure(loadgen: str, name: str, scenario: str, seconds: float) -> dict:
    size, conns, idle = SCENARIOS[scenario]
    proc, port = start_server(name)
    try:
        warm = [loadgen, "127.0.0.1", str(port), str(conns), str(size), "1"]
        subprocess.run(warm, check=True, capture_output=True, preexec_fn=pinned(1))
        time.sleep(0.2)
        cmd = [loadgen, "127.0.0.1", str(port), str(conns), str(size), str(seconds), str(idle)]
        gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               preexec_fn=pinned(1))  # fmt: skip
        result: dict = {}
        if idle:
            base_fds, base_rss = open_fds(proc.pid), rss(proc.pid)
            assert gen.stdout.readline().strip() == "idle-ready"
            deadline = time.monotonic() + 30
            while open_fds(proc.pid) < base_fds + idle and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            result["bytes_per_idle_conn"] = (rss(proc.pid) - base_rss) / idle
            gen.stdin.write("go\n")
            gen.stdin.flush()
        cpu0 = cpu_seconds(proc.pid)
        out, _ = gen.communicate(timeout=seconds + 60)
        cpu1 = cpu_seconds(proc.pid)
        stats = json.loads(out.strip().splitlines()[-1])
        result.update(stats)
        result["server_cpu_s"] = cpu1 - cpu0
        result["cpu_us_per_msg"] = (cpu1 - cpu0) / stats["messages"] * 1e6 if stats["messages"] else None
        return result
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", help="write every sample and the medians here (JSON)")
    args = ap.parse_args()
    raise_fd_limit()
    loadgen = build()
    servers = args.servers.split(",")
    scenarios = args.scenarios.split(",")
    samples: dict[str, dict[str, list[dict]]] = {s: {n: [] for n in servers} for s in scenarios}
    for r in range(args.rounds):
        for scenario in scenarios:
            for name in servers:
                try:
                    samples[scenario][name].append(measure(loadgen, name, scenario, args.seconds))
                except Exception as e:  # a peer that cannot run a scenario is reported, not fatal
                    print(f"{name} {scenario}: {e}", file=sys.stderr)
            print(f"round {r + 1}/{args.rounds}: {scenario} done", file=sys.stderr)
    medians = {
        scenario: {
            name: {k: statistics.median(s[k] for s in runs if s.get(k) is not None)
                   for k in ("msgs_per_s", "p50_us", "p99_us", "cpu_us_per_msg", "bytes_per_idle_conn")
                   if any(s.get(k) is not None for s in runs)}
            for name, runs in per.items() if runs
        }
        for scenario, per in samples.items()
    }  # fmt: skip
    print(json.dumps(medians, indent=1))
    if args.out:
        meta = {
            "command": "python benchmarks/echo/run.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"),
            "commit": commit(),
            "python": sys.version.split()[0],
            "rounds": args.rounds,
            "seconds": args.seconds,
        }
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "medians": medians, "samples": samples}, f, indent=1)


if __name__ == "__main__":
    main()
