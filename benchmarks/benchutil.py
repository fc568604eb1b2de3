"""What the benchmark drivers share."""

from __future__ import annotations

import os
import subprocess


def commit() -> str:
    """The commit of the code measured (the tree the benchmarks run from), or "unknown"."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
