"""Let ``import asyncore`` and ``import asynchat`` load coserve's modules.

For applications (and their dependencies) that cannot change their imports::

    import coserve.compat; coserve.compat.install()   # first thing, before anything imports asyncore

or, for an unchanged program, one command that runs it as ``python prog.py``
would (its ``sys.argv``, ``__main__``, ``sys.path[0]`` and exit status)::

    python -m coserve.compat prog.py args...        # or: coserve --asyncore prog.py args...

On Python 3.12 and later this is the only way those imports work at all; on
3.11 it replaces the standard library's deprecated modules, so every
dispatcher runs on coserve's loop.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback

__all__ = ["install", "main"]


def install() -> None:
    """Make ``asyncore`` and ``asynchat`` refer to ``coserve.asyncore`` and ``coserve.asynchat``.

    Call it before anything imports them; a module that already did keeps
    what it imported.
    """
    from . import asynchat, asyncore

    sys.modules["asyncore"] = asyncore
    sys.modules["asynchat"] = asynchat


def main(argv: list[str] | None = None) -> int:
    """Install the drop-ins, then run ``argv[0]`` with ``argv[1:]`` as ``python`` would; its exit status.

    The program's ``SystemExit`` gives the status; an uncaught exception prints
    its traceback and gives 1; Ctrl-C gives 130.
    """
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m coserve.compat PROGRAM.py [ARGS...]", file=sys.stderr)
        return 2
    program = args[0]
    if not os.path.exists(program):
        print(f"coserve.compat: can't open file {program!r}: no such file", file=sys.stderr)
        return 2
    install()
    sys.argv = list(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(program)))
    try:
        runpy.run_path(program, run_name="__main__")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)  # as the interpreter prints sys.exit("message")
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
