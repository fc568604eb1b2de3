"""The ``coserve`` command: run a script as a task of the scheduler (Copas's ``copas`` runtime).

Like Copas's runtime, a script run this way can create tasks, timers and
servers at top level and needs no ``coserve.run()`` of its own, ``coserve``
is in its globals without an import (Copas's global ``copas``), and it runs
as a coroutine, so top-level ``await`` works::

    #!/usr/bin/env coserve
    coserve.timer(lambda t, p: print("hello"), 1)
    await coserve.sleep(2)
    print("two seconds later")

The options are Copas's and are handled in the order given: ``-e CODE`` runs
code (any number of times), ``-l MODULE`` imports a module, ``-v`` prints the
version; then the script, if one is given. ``-`` reads the script from
standard input, and so does a command without arguments. Everything runs in
one task ("main"); the run goes on until nothing is left to do.

``coserve serve MODULE:APP [settings]`` runs a :class:`coserve.app.SocketServer`
instead (see docs/app.md).

The exit status is 1 if the script raised, if any task ended with an error
nobody caught, or if the run ended with tasks that nothing could wake (they
are listed in a warning), 130 after Ctrl-C (SIGINT) and 143 after SIGTERM,
which shut the run down cleanly and print no traceback, 0 otherwise. (Copas's
runtime exits at the first uncaught error; coserve reports it, lets the run
finish and exits 1, so the other connections are served to the end.)
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import platform
import signal
import sys
import traceback
import types
from collections.abc import Sequence
from typing import Any

from . import _kernel, run
from ._signals import SIGNAL_EXIT_BASE

__all__ = ["main", "serve"]

_TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


class _Step(argparse.Action):
    """Appends ``(option, value)`` to ``steps``: ``-e``, ``-l`` and ``-v`` run in the order given."""

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: Any, opt: str | None = None
    ) -> None:
        ns.steps.append((self.dest, value))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coserve",
        description="Run a Python script as a coserve runtime: it runs as a task (top-level await works, "
        "'coserve' needs no import), and the scheduler runs until nothing is left to do. Without "
        "arguments, or with '-' as SCRIPT, the script is read from standard input.",
    )
    parser.set_defaults(steps=[])
    parser.add_argument(
        "--asyncore",
        action="store_true",
        help="run an unchanged asyncore/asynchat program as 'python SCRIPT' would, on coserve's modules",
    )
    parser.add_argument(
        "-e", dest="code", metavar="CODE", action=_Step, help="run CODE (may be repeated; before SCRIPT)"
    )
    parser.add_argument(
        "-l", dest="module", metavar="MODULE", action=_Step, help="import MODULE first (may be repeated)"
    )
    parser.add_argument("-v", dest="version", nargs=0, action=_Step, help="print the version")
    parser.add_argument("script", nargs="?", help="the script to run ('-' for standard input)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script (sys.argv[1:])")
    return parser


def _version() -> str:
    from . import __version__

    return f"coserve {__version__} (Python {platform.python_version()})"


def _compile(source: str | bytes, filename: str) -> types.CodeType:
    code: types.CodeType = compile(source, filename, "exec", flags=_TOP_LEVEL_AWAIT, dont_inherit=True)
    return code


async def _run_steps(steps: Sequence[tuple[str, Any]], namespace: dict[str, Any]) -> None:
    """The task that runs the command's steps in order, each awaited if it used top-level await."""
    for kind, value in steps:
        if kind == "version":
            print(_version())
        elif kind == "module":
            importlib.import_module(value)
        else:  # compiled code: -e, the script, or standard input
            result = eval(value, namespace)  # a coroutine if the code awaits at top level
            if result is not None:
                await result


def serve(argv: list[str]) -> int:
    """``coserve serve MODULE:APP [settings]``: start a :class:`coserve.app.SocketServer` (gunicorn's way).

    *MODULE* is imported with the current directory on ``sys.path``; *APP* is
    a name in it (dotted for an attribute of an attribute), ``app`` if left
    out. The rest of the command line is the application's settings.
    """
    from .app import SocketServer
    from .app._settings import SettingsError

    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: coserve serve MODULE[:APP] [settings ...]   (coserve serve MODULE:APP --help lists them)"
        )
        return 0 if argv else 2
    target, _, name = argv[0].partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(target)
        for part in (name or "app").split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        print(f"coserve serve: cannot load {argv[0]!r}: {e}", file=sys.stderr)
        return 2
    finally:
        sys.path.remove(os.getcwd())
    if not isinstance(obj, SocketServer):
        print(
            f"coserve serve: {argv[0]!r} is a {type(obj).__name__}, not a coserve.app.SocketServer",
            file=sys.stderr,
        )
        return 2
    try:
        obj.start(argv[1:])
    except SettingsError as e:
        print(f"coserve serve: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        return SIGNAL_EXIT_BASE + signal.SIGINT
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``coserve`` command with *argv* (default: ``sys.argv[1:]``); returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "serve" and not os.path.exists("serve"):  # a script named serve still runs
        return serve(args[1:])
    parser = _parser()
    opts = parser.parse_args(args)
    if opts.asyncore:
        if opts.steps or opts.script in (None, "-"):
            parser.error("--asyncore runs a program file: give its path (and no -e, -l or -v)")
        from . import compat

        return compat.main([opts.script, *opts.args])
    script = opts.script
    if script is None and not opts.steps:
        script = "-"  # as Copas (and python): no arguments reads the script from standard input
    import coserve

    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace["coserve"] = coserve
    steps: list[tuple[str, Any]] = []
    script_dir = ""  # the script's directory, put in front of sys.path for the run
    try:
        for kind, value in opts.steps:
            steps.append((kind, _compile(value, "<-e>") if kind == "code" else value))
        if script == "-":
            sys.argv = ["-", *opts.args]
            steps.append(("code", _compile(sys.stdin.read(), "<stdin>")))
        elif script is not None:
            sys.argv = [script, *opts.args]
            with open(script, "rb") as f:
                steps.append(("code", _compile(f.read(), script)))
            namespace["__file__"] = script
            script_dir = os.path.dirname(os.path.abspath(script))
            sys.path.insert(0, script_dir)  # its own modules import, as with 'python SCRIPT'
        else:
            sys.argv = ["-e", *opts.args]
    except (OSError, SyntaxError, ValueError):
        traceback.print_exc(limit=0)
        return 1
    saved_main = sys.modules.get("__main__")
    sys.modules["__main__"] = module  # pickle, dataclasses and the like look the script up here
    kernel = _kernel.get_kernel()
    try:
        run(_run_steps, steps, namespace)
    except SystemExit as e:  # sys.exit() in the script, or SIGTERM (128 + 15)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:  # Ctrl-C: the run shut down cleanly; the shell's status for SIGINT
        return SIGNAL_EXIT_BASE + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
        if script_dir and script_dir in sys.path:
            sys.path.remove(script_dir)
        _kernel.drop_kernel(kernel)
    # An uncaught error, or tasks left waiting for something that could never happen (a deadlock).
    return 1 if kernel.errors_reported or kernel.stranded else 0


if __name__ == "__main__":
    sys.exit(main())
