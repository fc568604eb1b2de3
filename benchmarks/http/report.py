"""Tables and the chart of the HTTP client benchmark, from the JSON that ``run.py`` writes.

    python benchmarks/http/report.py [--json benchmarks/results/http.json] [--png benchmarks/http.png]

Prints the tables (Markdown) and draws the chart: four panels, client CPU per request and
requests per second for the small GETs, client CPU per 100 MB and MB/s for the download.
``benchmarks/report.py`` uses ``section()`` and ``chart()`` for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib

HERE = pathlib.Path(__file__).parent
BENCH = HERE.parent
ORDER = ["coserve", "aiohttp", "aiohttp-uvloop", "httpx", "urllib3", "requests", "wrk"]
BASELINES = ["aiohttp", "aiohttp-uvloop"]
LABELS = {
    "aiohttp-uvloop": "aiohttp+uvloop",
    "urllib3": "urllib3 (threads)",
    "requests": "requests (threads)",
    "wrk": "wrk (C, the limit)",
}


def _names(per: dict) -> list[str]:
    return [n for n in ORDER if n in per] + [n for n in per if n not in ORDER]


def _ratio(x: float | None) -> str:
    return f"{x:.2f}" if x else "n/a"


def _ratios(q: dict) -> list[str]:
    return [_ratio(q.get(k)) for k in ("cpu_vs_aiohttp", "cpu_vs_aiohttp-uvloop", "speed_vs_aiohttp")]


def _status(entry: dict) -> str | None:
    if "unavailable" in entry:
        return "unavailable"
    if "error" in entry:
        return "failed: " + entry["error"].replace("|", "/")[:120]
    return None


def format_tables(data: dict) -> str:
    """The two tables (Markdown): the small GETs and the download, with ratios to the baselines."""
    meta, med, ratios = data["meta"], data["medians"], data.get("ratios", {})
    out = []
    if "small" in med:
        per, rat = med["small"], ratios.get("small", {})
        out += [
            f"**{meta['requests']:,} GETs of a {meta['small_bytes']:,}-byte file, "
            f"{meta['concurrency']} at a time, keep-alive** (CPU ratios: below 1 is cheaper than the "
            "baseline)",
            "",
            "| client | requests/s | client CPU us/request | CPU vs aiohttp | CPU vs aiohttp+uvloop "
            "| requests/s vs aiohttp | nginx CPU us/request | connections |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in _names(per):
            r, q = per[name], rat.get(name, {})
            status = _status(r)
            if status:
                out.append(f"| {name} | {status} | | | | | | |")
                continue
            cells = [f"{r['req_per_s']:,.0f}", f"{r['cpu_us_per_req']:.1f}", *_ratios(q),
                     f"{r.get('nginx_cpu_us_per_req', 0):.1f}", f"{r.get('connections', 0):g}"]  # fmt: skip
            out.append(f"| {name} | {' | '.join(cells)} |")
        out.append("")
    if "download" in med:
        per, rat = med["download"], ratios.get("download", {})
        out += [
            f"**One download of {meta['download_bytes'] / 1e6:g} MB, streamed and discarded** "
            "(wrk: as many downloads as fit in its run, on one connection)",
            "",
            "| client | MB/s | client CPU ms/100 MB | CPU vs aiohttp | CPU vs aiohttp+uvloop "
            "| MB/s vs aiohttp |",
            "|---|---|---|---|---|---|",
        ]
        for name in _names(per):
            r, q = per[name], rat.get(name, {})
            status = _status(r)
            if status:
                out.append(f"| {name} | {status} | | | | |")
                continue
            cells = [f"{r['mb_per_s']:,.0f}", f"{r['cpu_ms_per_100mb']:.1f}", *_ratios(q)]
            out.append(f"| {name} | {' | '.join(cells)} |")
        out.append("")
    return "\n".join(out)


def section(data: dict, chart_name: str = "http") -> str:
    """The RESULTS.md section: what was measured, the command, the tables and the chart."""
    meta = data["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    pinned = "nginx pinned to CPU 0, the client to CPU 1" if meta.get("pinned") else "not pinned"
    out = [
        "### HTTP clients: coserve.http against aiohttp, httpx, urllib3 and requests",
        "",
        f"Measured {meta['date']} at commit {meta.get('commit', '?')} ({versions}); "
        f"{meta['rounds']} interleaved rounds, medians (ratios: the median of each round's ratio); "
        f"a private nginx with one worker; {pinned}. "
        "Client CPU is the user+system time of the client's process over the measured section, after a "
        f"warm-up of {meta['warmup']} requests; wrk's is its whole process's.",
        "",
        "    " + meta["command"],
        "",
        format_tables(data),
        f"![{chart_name}]({chart_name}.png)",
        "",
    ]
    return "\n".join(out)


PANELS = [
    ("small", "cpu_us_per_req", "client CPU us per request (lower is better)"),
    ("small", "req_per_s", "requests per second (higher is better)"),
    ("download", "cpu_ms_per_100mb", "download: client CPU ms per 100 MB (lower is better)"),
    ("download", "mb_per_s", "download: MB/s (higher is better)"),
]


def chart(data: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med, meta = data["medians"], data["meta"]
    panels = [p for p in PANELS if p[0] in med]
    fig, axes = plt.subplots(
        len(panels) // 2 or 1, 2, figsize=(12, 3.2 * max(1, len(panels) // 2)), squeeze=False
    )
    colors = plt.cm.tab10.colors
    for ax, (workload, key, title) in zip(axes.flat, panels, strict=False):
        per = med[workload]
        names = _names(per)
        ys, labels = [], []
        for k, name in enumerate(names):
            v = per[name].get(key)
            status = _status(per[name])
            mine = name == "coserve"
            ax.barh(k, v or 0, color=colors[ORDER.index(name) % 10 if name in ORDER else k % 10],
                    edgecolor="black" if mine else None, linewidth=1.5 if mine else 0,
                    hatch="//" if name == "wrk" else None)  # fmt: skip
            ys.append(k)
            labels.append(LABELS.get(name, name))
            text = (status or "").split(":")[0] if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")
            ax.text(v or 0, k, " " + text, va="center", fontsize=7)
        ax.set_yticks(ys, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.margins(x=0.15)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        f"HTTP clients against a local nginx: {meta['requests']:,} GETs of {meta['small_bytes']:,} bytes, "
        f"{meta['concurrency']} concurrent; one {meta['download_bytes'] / 1e6:g} MB download "
        f"(median of {meta['rounds']} rounds, {meta['date']}, {meta.get('commit', '?')})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=str(BENCH / "results" / "http.json"))
    ap.add_argument("--png", default=str(BENCH / "http.png"))
    args = ap.parse_args()
    data = json.loads(pathlib.Path(args.json).read_text())
    print(format_tables(data))
    chart(data, pathlib.Path(args.png))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
