"""Write benchmarks/RESULTS.md and the charts from the JSON files in benchmarks/results/.

    python benchmarks/report.py

Each results file records the exact command that produced it; RESULTS.md
quotes it beside its table. A chart shows each peer's figure relative to
coserve's (above 1: coserve is better), on a log scale.
"""

from __future__ import annotations

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
    impls = [i for i in ("coserve", "asyncio", "uvloop", "trio", "curio")]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    out = [
        f"### {TITLES.get(name, name)}",
        "",
        f"Measured {meta['date']} ({versions}); N = {meta['n']:,}; rounds: {meta['rounds']}.",
        "",
        "    " + meta["command"],
        "",
        format_table(data["results"], impls, meta["mode"]),
        "",
        f"![{name}]({name}.png)",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    parts = []
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
