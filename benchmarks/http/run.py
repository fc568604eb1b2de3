"""The HTTP client benchmark (issue 8): coserve.http against aiohttp, httpx, urllib3 and requests.

    python benchmarks/http/run.py                      # everything, 3 rounds (about 2 minutes)
    python benchmarks/http/run.py --impls coserve,aiohttp,aiohttp-uvloop --rounds 5
    python benchmarks/http/run.py --rounds 1 --requests 2000 --out /tmp/http.json   # a quick check

A private nginx (``peer.py``: one worker, loopback, keep-alive, no access log) serves a 1.4 KB
file and a 100 MB file. Two workloads:

- ``small``: ``--requests`` GETs of the small file (10,000), ``--concurrency`` at a time (10), over
  kept-alive connections;
- ``download``: one GET of the large file, streamed and discarded chunk by chunk.

Each client (``clients.py``) runs in a process of its own, pinned to CPU 1 while nginx has CPU 0,
checks every response (status 200 and the body's length) and reports the CPU time (user+system
of its process, every thread) and the wall time of the measured section, after a warm-up.
nginx's own counts (``stub_status``) must show as many requests as the client checked; they also
show the connections it opened (keep-alive: one per concurrent request). The figures: client CPU
microseconds per request and requests per second; for the download, MB/s (10^6 bytes) and
client CPU milliseconds per 100 MB. ``wrk`` (one thread, as many connections as the
concurrency, for ``--wrk-seconds``) is the practical limit; its CPU is its whole process's
(``os.wait4``); its checks are its own error counts (non-2xx, socket errors) and a byte count
that must match whole responses.

Rounds are interleaved (every client once per round, the order rotated each round); the medians
are reported, and the ratios to aiohttp and to aiohttp on uvloop are taken within each round,
then their median. A client whose library is missing (coserve.http before it lands) is reported
as unavailable and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)  # first: "report" is this folder's report.py, not benchmarks/report.py
from peer import Nginx  # noqa: E402

from benchutil import commit  # noqa: E402
from report import BASELINES, format_tables  # noqa: E402

PY = sys.executable
CLIENTS = os.path.join(HERE, "clients.py")
IMPLS = ["coserve", "aiohttp", "aiohttp-uvloop", "httpx", "urllib3", "requests", "wrk"]
WORKLOADS = ["small", "download"]
SERVER_CPU, CLIENT_CPU = 0, 1


class Failed(Exception):
    """A client that did not complete its workload, or failed a check."""


def spawn(cmd: list[str], timeout: float, cpu: int | None) -> tuple[str, float]:
    """Run ``cmd`` (pinned to ``cpu``) to its end: its output and its whole CPU time (``os.wait4``)."""
    pre = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=pre)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            out = proc.stdout.read()
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read()[-1500:].strip()
            last = out.strip().splitlines()[-1] if out.strip() else ""
            raise Failed(f"exit status {proc.returncode}: {last} {tail}".strip())
    return out, usage.ru_utime + usage.ru_stime


def wrk_command(args: argparse.Namespace, url: str, connections: int) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{args.wrk_seconds:g}s", "-s",
            os.path.join(HERE, "wrk-summary.lua"), url]  # fmt: skip


def measure_wrk(args: argparse.Namespace, nginx: Nginx, workload: str, sizes: dict) -> dict:
    name, conns = ("small", args.concurrency) if workload == "small" else ("big", 1)
    cmd = wrk_command(args, nginx.url(name), conns)
    s0, c0 = nginx.worker_cpu(), nginx.counters()
    out, cpu = spawn(cmd, args.wrk_seconds + 60, CLIENT_CPU if args.pin else None)
    s1, c1 = nginx.worker_cpu(), nginx.counters()
    stats = json.loads(out.strip().splitlines()[-1])
    errors = {k: stats[k] for k in ("connect", "read", "write", "status", "timeout") if stats[k]}
    if errors:
        raise Failed(f"wrk counted errors: {errors}")
    n, size = stats["requests"], sizes[name]
    # Bytes read include the responses still in flight when the time ran out: at most one per connection.
    if not n or not n * size <= stats["bytes"] < (n + conns) * size:
        raise Failed(f"wrk read {stats['bytes']} bytes for {n} responses of {size} bytes")
    wall = stats["duration_us"] / 1e6
    result = {"requests": n, "wall_s": wall, "cpu_s": cpu, "process_cpu_s": cpu, "nginx_cpu_s": s1 - s0,
              **served(c0, c1)}  # fmt: skip
    if workload == "small":
        result.update(req_per_s=n / wall, cpu_us_per_req=cpu / n * 1e6,
                      nginx_cpu_us_per_req=(s1 - s0) / n * 1e6)  # fmt: skip
    else:
        body = stats["bytes"] - n * (size - args.download_bytes)  # the heads are not body
        result.update(mb_per_s=body / 1e6 / wall, cpu_ms_per_100mb=cpu * 1e3 * 1e8 / body)
    return result


def served(before: tuple[int, int], after: tuple[int, int]) -> dict:
    """The connections nginx accepted and the requests it served between two probes (less the second one)."""
    return {"connections": after[0] - before[0] - 1, "nginx_requests": after[1] - before[1] - 1}


def measure_client(args: argparse.Namespace, nginx: Nginx, impl: str, workload: str) -> dict:
    cmd = [PY, CLIENTS, impl, workload]
    if workload == "small":
        cmd += [nginx.url("small"), "--length", str(args.small_bytes), "--requests", str(args.requests),
                "--concurrency", str(args.concurrency), "--warmup", str(args.warmup),
                "--expected", nginx.path("small")]  # fmt: skip
    else:
        cmd += [nginx.url("big"), "--length", str(args.download_bytes), "--warm-url", nginx.url("small"),
                "--warm-length", str(args.small_bytes)]  # fmt: skip
    s0, c0 = nginx.worker_cpu(), nginx.counters()
    out, process_cpu = spawn(cmd, max(300.0, args.requests * 0.02), CLIENT_CPU if args.pin else None)
    s1, c1 = nginx.worker_cpu(), nginx.counters()
    result = json.loads(out.strip().splitlines()[-1])
    if "unavailable" in result:
        return result
    result.update(process_cpu_s=process_cpu, nginx_cpu_s=s1 - s0, **served(c0, c1))
    # Before the measured section: the first request and the warm-up, or the download's warm-up GET.
    unmeasured = 1 + args.warmup if workload == "small" else 1
    all_requests = result["requests"] + unmeasured
    if result["nginx_requests"] != all_requests:
        raise Failed(f"nginx served {result['nginx_requests']} requests, the client checked {all_requests}")
    if workload == "small":
        n = result["requests"]
        result.update(req_per_s=n / result["wall_s"], cpu_us_per_req=result["cpu_s"] / n * 1e6,
                      nginx_cpu_us_per_req=(s1 - s0) / all_requests * 1e6)  # fmt: skip
    else:
        body = result["body_bytes"]
        cpu = result["cpu_s"]
        result.update(mb_per_s=body / 1e6 / result["wall_s"], cpu_ms_per_100mb=cpu * 1e3 * 1e8 / body)
    return result


FIGURES = {"small": ("cpu_us_per_req", "req_per_s"), "download": ("cpu_ms_per_100mb", "mb_per_s")}
KEYS = {
    "small": (
        "cpu_us_per_req",
        "req_per_s",
        "wall_s",
        "cpu_s",
        "process_cpu_s",
        "nginx_cpu_us_per_req",
        "connections",
    ),
    "download": ("cpu_ms_per_100mb", "mb_per_s", "wall_s", "cpu_s", "process_cpu_s", "connections"),
}


def summarize(samples: dict, rounds: int) -> tuple[dict, dict]:
    """The medians of every figure, and the medians of the per-round ratios to the baselines."""
    medians: dict = {}
    ratios: dict = {}
    for workload, per in samples.items():
        medians[workload] = {}
        for impl, runs in per.items():
            ok = [r for r in runs if "error" not in r and "unavailable" not in r]
            if ok:
                medians[workload][impl] = {
                    k: statistics.median(r[k] for r in ok) for k in KEYS[workload] if all(k in r for r in ok)
                }
                medians[workload][impl]["rounds"] = len(ok)
            elif runs and "unavailable" in runs[0]:
                medians[workload][impl] = {"unavailable": runs[0]["unavailable"]}
            elif runs:
                medians[workload][impl] = {"error": runs[-1]["error"]}
        cpu_key, speed_key = FIGURES[workload]
        ratios[workload] = {}
        for impl, runs in per.items():
            entry = {}
            for base in BASELINES:
                for key, label in ((cpu_key, "cpu"), (speed_key, "speed")):
                    values = []
                    for r in range(rounds):
                        a, b = _round(runs, r), _round(per.get(base, []), r)
                        if a and b and a.get(key) and b.get(key):
                            values.append(a[key] / b[key])
                    if values:
                        entry[f"{label}_vs_{base}"] = statistics.median(values)
            if entry:
                ratios[workload][impl] = entry
    return medians, ratios


def _round(runs: list[dict], r: int) -> dict | None:
    for run in runs:
        if run.get("round") == r and "error" not in run and "unavailable" not in run:
            return run
    return None


def versions(impls: list[str]) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    code = (
        "import importlib.metadata as m, json, sys\n"
        "v = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: v[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(v))"
    )
    names = ["coserve", "aiohttp", "uvloop", "httpx", "httpcore", "urllib3", "requests"]
    res = subprocess.run([PY, "-c", code, *names], capture_output=True, text=True)
    if res.returncode == 0:
        out.update(json.loads(res.stdout))
    try:
        nginx = subprocess.run(["/usr/sbin/nginx", "-v"], capture_output=True, text=True).stderr
        out["nginx"] = nginx.strip().rsplit("/", 1)[-1]
    except OSError:
        pass
    if "wrk" in impls:
        try:
            wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
            out["wrk"] = (wrk.stdout + wrk.stderr).split()[1]
        except (OSError, IndexError):
            pass
    return out


def ensure_wrk() -> str | None:
    """Install wrk if it is missing (``install-wrk``); a reason it is unavailable, or None."""
    if subprocess.run(["sh", "-c", "command -v wrk"], capture_output=True).returncode == 0:
        return None
    print("installing wrk (benchmarks/http/install-wrk)", file=sys.stderr)
    res = subprocess.run([os.path.join(HERE, "install-wrk")], capture_output=True, text=True)
    if res.returncode != 0:
        return f"install-wrk failed: {(res.stdout + res.stderr).strip()[-300:]}"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impls", default=",".join(IMPLS), help=f"comma-separated, of {','.join(IMPLS)}")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=10000, help="small GETs per client and round")
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=200, help="small GETs before the measured ones")
    ap.add_argument("--small-bytes", type=int, default=1400)
    ap.add_argument("--download-mb", type=float, default=100, help="the large file, in 10^6 bytes")
    ap.add_argument("--wrk-seconds", type=float, default=3.0)
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin nginx and the client")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "results", "http.json"),
                    help="every sample, the medians and the ratios (JSON); default: %(default)s")  # fmt: skip
    args = ap.parse_args()
    args.download_bytes = int(args.download_mb * 1e6)
    impls = args.impls.split(",")
    workloads = args.workloads.split(",")
    for name in impls:
        if name not in IMPLS:
            ap.error(f"unknown impl {name!r}; known: {', '.join(IMPLS)}")
    if args.pin and (os.cpu_count() or 1) < 2:
        args.pin = False
    unavailable: dict[str, str] = {}
    if "wrk" in impls and (reason := ensure_wrk()):
        unavailable["wrk"] = reason
    samples: dict[str, dict[str, list[dict]]] = {w: {i: [] for i in impls} for w in workloads}
    with Nginx(args.small_bytes, args.download_bytes, cpu=SERVER_CPU if args.pin else None) as nginx:
        sizes = {"small": nginx.response_size("small"), "big": nginx.response_size("big")}
        for r in range(args.rounds):
            order = impls[r % len(impls) :] + impls[: r % len(impls)]
            for workload in workloads:
                for impl in order:
                    if impl in unavailable:
                        if not samples[workload][impl]:
                            samples[workload][impl].append({"unavailable": unavailable[impl], "round": r})
                        continue
                    try:
                        if impl == "wrk":
                            result = measure_wrk(args, nginx, workload, sizes)
                        else:
                            result = measure_client(args, nginx, impl, workload)
                    except (Failed, ValueError, KeyError, OSError) as e:
                        result = {"error": str(e)}
                        print(f"{impl} {workload}: {e}", file=sys.stderr)
                    result["round"] = r
                    if "unavailable" in result:
                        unavailable[impl] = result["unavailable"]
                        print(f"{impl}: unavailable ({result['unavailable']})", file=sys.stderr)
                    samples[workload][impl].append(result)
                print(f"round {r + 1}/{args.rounds}: {workload} done", file=sys.stderr)
    medians, ratios = summarize(samples, args.rounds)
    meta = {
        "command": "python benchmarks/http/run.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "versions": versions(impls),
        "rounds": args.rounds,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "small_bytes": args.small_bytes,
        "download_bytes": args.download_bytes,
        "wrk_seconds": args.wrk_seconds,
        "pinned": args.pin,
    }
    data = {"meta": meta, "medians": medians, "ratios": ratios, "samples": samples}
    print(format_tables(data))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(data, f, indent=1)
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
