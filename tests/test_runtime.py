"""The ``coserve`` command: scripts run with the scheduler started after their top level."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import coserve.__main__ as runtime

TICKER = textwrap.dedent(
    """\
    #!/usr/bin/env coserve
    import sys
    import coserve

    count = 0

    def tick(timer, params):
        global count
        count += 1
        print(params, count, sys.argv[1:])
        if count >= 3:
            timer.cancel()

    coserve.timer(tick, 0.001, recurring=True, params="hello")
    """
)


def _run(*args, **kw):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, **kw)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "ticker.py"
    path.write_text(TICKER)
    path.chmod(0o755)
    return path


def test_python_dash_m_runs_top_level_then_the_scheduler(script):
    r = _run(sys.executable, "-m", "coserve", str(script), "a", "b")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"hello {n} ['a', 'b']" for n in (1, 2, 3)]


def test_installed_command_and_shebang(script):
    r = _run(str(script), "x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "hello 3 ['x']"


def test_dash_e_runs_code():
    code = (
        "import coserve\nasync def f():\n    await coserve.sleep(0)\n    print('from -e')\ncoserve.spawn(f)"
    )
    r = _run(sys.executable, "-m", "coserve", "-e", code)
    assert (r.returncode, r.stdout) == (0, "from -e\n"), r.stderr


def test_uncaught_task_error_makes_the_exit_status_nonzero(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import coserve\nasync def bad():\n    raise ValueError('oops')\ncoserve.spawn(bad)\n")
    r = _run(sys.executable, "-m", "coserve", str(path))
    assert r.returncode == 1
    assert "ValueError: oops" in r.stderr and "task-1" in r.stderr


def test_error_of_a_task_the_script_kept_still_counts(tmp_path):
    path = tmp_path / "kept.py"
    path.write_text("import coserve\nasync def bad():\n    raise KeyError('kept')\nT = coserve.spawn(bad)\n")
    r = _run(sys.executable, "-m", "coserve", str(path))
    assert r.returncode == 1 and "KeyError: 'kept'" in r.stderr


def test_script_error_makes_the_exit_status_nonzero(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise SystemExit(3)\n")
    assert _run(sys.executable, "-m", "coserve", str(path)).returncode == 3
    path.write_text("1/0\n")
    r = _run(sys.executable, "-m", "coserve", str(path))
    assert r.returncode == 1 and "ZeroDivisionError" in r.stderr


def test_script_that_runs_its_own_scheduler_still_works(tmp_path):
    path = tmp_path / "own.py"
    path.write_text("import coserve\nasync def main():\n    return 7\nprint(coserve.run(main))\n")
    r = _run(sys.executable, "-m", "coserve", str(path))
    assert (r.returncode, r.stdout) == (0, "7\n"), r.stderr


def test_no_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        runtime.main([])
    assert info.value.code == 2
    assert "SCRIPT or -e" in capsys.readouterr().err


def test_main_in_process(tmp_path, capsys):
    path = tmp_path / "inproc.py"
    path.write_text("import coserve\nasync def f():\n    print('in process')\ncoserve.spawn(f)\n")
    assert runtime.main([str(path)]) == 0
    assert capsys.readouterr().out == "in process\n"
