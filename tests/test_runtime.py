"""The ``coserve`` command: scripts run with the scheduler started after their top level."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import coserve
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


def _run(*args, extra_env=None, **kw):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.update(extra_env or {})
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
    assert "ValueError: oops" in r.stderr and "task-2" in r.stderr  # task-1 is the script's own


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


def test_a_script_that_runs_its_own_scheduler_is_told_to_run_with_python(tmp_path):
    # The script already runs in a task of the command's scheduler (as in Copas's runtime).
    path = tmp_path / "own.py"
    path.write_text("import coserve\nasync def main():\n    return 7\nprint(coserve.run(main))\n")
    r = _run(sys.executable, "-m", "coserve", str(path))
    assert r.returncode == 1 and "AlreadyRunning" in r.stderr and "with python" in r.stderr
    r = _run(sys.executable, str(path))
    assert (r.returncode, r.stdout) == (0, "7\n"), r.stderr


# --- Copas's runtime options (issue 12 defect 5) ---------------------------------------------


def test_several_dash_e_run_in_order_then_the_script(script):
    r = _run(sys.executable, "-m", "coserve", "-e", "print('one')", "-e", "print('two')", str(script), "a")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["one", "two"] + [f"hello {n} ['a']" for n in (1, 2, 3)]


def test_no_script_or_dash_reads_the_script_from_standard_input():
    code = "import sys\nprint('stdin', sys.argv)\n"
    r = _run(sys.executable, "-m", "coserve", input=code)
    assert (r.returncode, r.stdout) == (0, "stdin ['-']\n"), r.stderr
    r = _run(sys.executable, "-m", "coserve", "-e", "print('first')", "-", "x", input=code)
    assert (r.returncode, r.stdout) == (0, "first\nstdin ['-', 'x']\n"), r.stderr


def test_the_script_runs_in_a_task_with_top_level_await_and_coserve_in_its_globals(tmp_path):
    path = tmp_path / "awaits.py"
    path.write_text(
        textwrap.dedent(
            """\
            # no import: 'coserve' is there, as Copas's runtime has its global 'copas'
            async def child():
                return "child"
            t = coserve.spawn(child)
            print(await t, coserve.current_task().name)
            await coserve.sleep(0.001)
            print("slept", __name__, __file__.endswith("awaits.py"))
            """
        )
    )
    r = _run(sys.executable, "-m", "coserve", "-e", "x = await coserve.sleep(0)", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["child main", "slept __main__ True"]


def test_dash_l_imports_a_module_in_order_and_dash_v_prints_the_version(tmp_path):
    (tmp_path / "announce.py").write_text("print('announce imported')\n")
    r = _run(
        sys.executable, "-m", "coserve", "-e", "print('before')", "-l", "announce", "-e", "print('after')",
        extra_env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "before\nannounce imported\nafter\n"), r.stderr
    # -v alone prints the version and reads no script from standard input.
    r = _run(sys.executable, "-m", "coserve", "-v", input="raise SystemExit(5)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"coserve {coserve.__version__} (Python ")
    r = _run(sys.executable, "-m", "coserve", "-l", "no_such_module_here")
    assert r.returncode == 1 and "ModuleNotFoundError" in r.stderr


def test_a_script_that_does_not_compile_fails_before_anything_runs(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def (:\n")
    r = _run(sys.executable, "-m", "coserve", "-e", "print('never')", str(path))
    assert (r.returncode, r.stdout) == (1, "") and "SyntaxError" in r.stderr


def test_main_in_process(tmp_path, capsys):
    path = tmp_path / "inproc.py"
    path.write_text("import coserve\nasync def f():\n    print('in process')\ncoserve.spawn(f)\n")
    assert runtime.main([str(path)]) == 0
    assert capsys.readouterr().out == "in process\n"
