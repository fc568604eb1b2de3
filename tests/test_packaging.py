"""`python -m build` makes a wheel and an sdist that install cleanly and quietly."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*command, **kw):
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=True, **kw)


def test_build_makes_a_wheel_and_sdist_that_install_without_warnings(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT))
    [wheel] = dist.glob("coserve-*.whl")
    [sdist] = dist.glob("coserve-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "coserve/py.typed" in names and "coserve/_kernel.py" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)  # PEP 639: the license file travels
    assert any(n.endswith("/pyproject.toml") for n in tarfile.open(sdist).getnames())

    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    install = _run(str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheel))
    noise = [line for line in (install.stdout + install.stderr).splitlines() if "arning" in line]
    noise = [line for line in noise if "Location 'file:" not in line]  # this machine's pip index
    assert noise == []
    check = _run(
        str(python),
        "-c",
        "import coserve, importlib.metadata as m; print(m.metadata('coserve')['License-Expression'])",
    )
    assert check.stdout.strip() == "MIT"
    assert "--asyncore" in _run(str(env / "bin" / "coserve"), "--help").stdout
