"""Write benchmarks/RESULTS.md and the charts from the JSON files in benchmarks/results/.

    python benchmarks/report.py

Each results file records the exact command that produced it; RESULTS.md
quotes it beside its table. A chart shows each peer's figure relative to
coserve's (above 1: coserve is better), on a log scale.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from kernel import format_table  # noqa: E402

TITLES = {
    "kernel-cpu": "Kernel micro-benchmarks: CPU time (median of interleaved rounds)",
    "kernel-instructions": "Kernel micro-benchmarks: instructions per item (callgrind; deterministic)",
}


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def chart(data: dict, path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    benches = list(results)
    peers = [i for i in ("asyncio", "uvloop", "trio", "curio") if any(i in results[b] for b in benches)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(peers)
    for k, peer in enumerate(peers):
        xs, ys, labels = [], [], []
        for j, b in enumerate(benches):
            base, v = results[b].get("coserve"), results[b].get(peer)
            if isinstance(base, (int, float)) and isinstance(v, (int, float)) and base:
                xs.append(j + (k - (len(peers) - 1) / 2) * width)
                ys.append(v / base)
                labels.append(f"{v / base:.1f}")
        bars = ax.bar(xs, ys, width, label=peer)
        ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("peer / coserve (above 1: coserve better)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(name: str, data: dict) -> str:
    meta = data["meta"]
    impls = ["coserve", "asyncio", "uvloop", "trio", "curio"]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    out = [
        f"### {TITLES.get(name, name)}",
        "",
        f"Measured {meta['date']} at commit {meta.get('commit', '?')} ({versions}); N = {meta['n']:,}; "
        f"rounds: {meta['rounds']}.",
        "",
        "    " + meta["command"],
        "",
        format_table(data["results"], impls, meta["mode"]),
        "",
        f"![{name}]({name}.png)",
        "",
    ]
    return "\n".join(out)


ECHO_ORDER = ["coserve", "uvloop-protocol", "uvloop-streams", "asyncio-protocol", "asyncio-streams", "trio",
              "curio", "gevent", "asyncore", "coserve-asyncore", "threads", "c-epoll"]  # fmt: skip


def echo_section(
    data: dict, title: str = "Echo servers: coserve against every peer", chart: str = "echo"
) -> str:
    meta, med = data["meta"], data["medians"]
    out = [
        f"### {title}",
        "",
        f"Measured {meta['date']} at commit {meta.get('commit', '?')} (Python {meta['python']}); "
        f"{meta['rounds']} interleaved rounds of "
        f"{meta['seconds']:g} s per scenario, medians; server pinned to CPU 0, load generator to CPU 1.",
        "",
        "    " + meta["command"],
        "",
    ]
    for scenario, per in med.items():
        out += [
            f"**{scenario}** (message size, active connections, idle connections held open)",
            "",
            "| server | msgs/s | p50 us | p99 us | server CPU us/msg | CPU vs coserve | bytes/idle conn |",
            "|---|---|---|---|---|---|---|",
        ]
        base = per.get("coserve", {}).get("cpu_us_per_msg")
        for name in [n for n in ECHO_ORDER if n in per]:
            r = per[name]
            cpu = r.get("cpu_us_per_msg")
            ratio = f"{cpu / base:.2f}" if cpu and base else "n/a"
            mem = r.get("bytes_per_idle_conn")
            if cpu is None:
                out.append(f"| {name} | failed | | | | | |")
                continue
            cells = [f"{r.get(k, 0):,.0f}" for k in ("msgs_per_s", "p50_us", "p99_us")]
            mem_cell = f"{mem:,.0f}" if mem is not None else ""
            out.append(f"| {name} | {' | '.join(cells)} | {cpu:.1f} | {ratio} | {mem_cell} |")
        out.append("")
    out += [f"![{chart}]({chart}.png)", ""]
    return "\n".join(out)


def echo_chart(data: dict, path: pathlib.Path, title: str = "Echo benchmark") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = data["medians"]
    scenarios = list(med)
    names = [n for n in ECHO_ORDER if any(n in med[s] for s in scenarios)]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.85 / len(names)
    colors = plt.cm.tab20.colors  # twelve series: more than the default ten colours
    for k, name in enumerate(names):
        xs, ys = [], []
        for j, sc in enumerate(scenarios):
            v = med[sc].get(name, {}).get("cpu_us_per_msg")
            if v:
                xs.append(j + (k - (len(names) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=name, color=colors[k % len(colors)],
               edgecolor="black" if name == "coserve" else None,
               linewidth=1.5 if name == "coserve" else 0)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel("server CPU microseconds per message (lower is better)")
    ax.set_title(f"{title}: server CPU per message (log scale)", fontsize=10)
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def http_report():
    """benchmarks/http/report.py, loaded by its path (``http`` is also the standard library's package)."""
    spec = importlib.util.spec_from_file_location("http_report", HERE / "http" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Client benchmarks whose results are ``{"summary": {workload: {client: {figure: value}}}}``:
#: name -> (title, the command that made them, the figure the chart shows, its label).
CLIENT_RUNS = {
    "ftp": (
        "FTP clients: coserve.ftp against aioftp and ftplib (200 MB each way, pyftpdlib)",
        "python benchmarks/ftp_smtp/ftp.py --out benchmarks/results/ftp.json",
        "cpu_s_per_100mb",
        "client CPU seconds per 100 MB (lower is better)",
    ),
    "smtp": (
        "SMTP clients: coserve.smtp against aiosmtplib and smtplib (aiosmtpd)",
        "python benchmarks/ftp_smtp/smtp.py --out benchmarks/results/smtp.json",
        "cpu_us_per_message",
        "client CPU microseconds per message (lower is better)",
    ),
}


def client_run_section(name: str, data: dict) -> str:
    """A table per workload: each client's figures, its ratios, and the chart below."""
    title, command, _, _ = CLIENT_RUNS[name]
    summary = data["summary"]
    meta = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    out = [f"### {title}", ""]
    out.append(
        "Measured " + ", ".join(f"{k} {v}" for k, v in meta.items()) + "; medians of interleaved rounds,"
        " ratios the median of each round's ratio."
    )
    out += ["", f"    {command}", ""]
    for workload, clients in summary.items():
        if not isinstance(clients, dict):
            continue
        figures = sorted({f for c in clients.values() for f in c})
        out.append(f"**{workload}**")
        out.append("")
        out.append("| client | " + " | ".join(figures) + " |")
        out.append("|---|" + "---|" * len(figures))
        for client, values in clients.items():
            cells = [_figure(values[f]) if f in values else "" for f in figures]
            out.append(f"| {client} | " + " | ".join(cells) + " |")
        out.append("")
    out.append(f"![{name}]({name}.png)")
    out.append("")
    return "\n".join(out)


def _figure(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def client_run_chart(name: str, data: dict, path: pathlib.Path) -> None:
    """One bar chart per workload of the figure CLIENT_RUNS names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, _, figure, label = CLIENT_RUNS[name]
    workloads = [(w, c) for w, c in data["summary"].items() if isinstance(c, dict)]
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 3.2), squeeze=False)
    for ax, (workload, clients) in zip(axes[0], workloads, strict=True):
        names = list(clients)
        values = [clients[n].get(figure, 0) for n in names]
        bars = ax.barh(names, values, color=["tab:blue" if n == "coserve" else "tab:gray" for n in names])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.invert_yaxis()
        ax.set_title(workload, fontsize=10)
        ax.set_xlabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parts = []
    echo = load("echo")
    if echo is not None:
        echo_chart(echo, HERE / "echo.png")
        parts.append(echo_section(echo))
    ac = load("echo-asyncore")
    if ac is not None:
        echo_chart(ac, HERE / "echo-asyncore.png", "asyncore echo")
        parts.append(
            echo_section(ac, "asyncore: the standard library's and coserve's, same code", "echo-asyncore")
        )
    http = load("http")
    if http is not None:
        hr = http_report()
        hr.chart(http, HERE / "http.png")
        parts.append(hr.section(http))
    for name in CLIENT_RUNS:
        data = load(name)
        if data is not None:
            client_run_chart(name, data, HERE / f"{name}.png")
            parts.append(client_run_section(name, data))
    for name in TITLES:
        data = load(name)
        if data is None:
            continue
        chart(data, HERE / f"{name}.png", TITLES[name])
        parts.append(section(name, data))
    notes = (HERE / "NOTES.md").read_text() if (HERE / "NOTES.md").exists() else ""
    text = "# Benchmark results\n\n" + notes + "\n" + "\n".join(parts)
    (HERE / "RESULTS.md").write_text(text)
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
