"""The ``coserve`` command: run a script with the scheduler started after its top level.

Like Copas's ``copas`` runtime, a script run this way can create tasks,
timers and servers at top level and needs no ``coserve.run()`` of its own::

    #!/usr/bin/env coserve
    import coserve
    coserve.timer(lambda t, p: print("hello"), 1)

The exit status is 1 if the script raised, if any task ended with an error
nobody caught, or if the run ended with tasks that nothing could wake (they
are listed in a warning), 130 after Ctrl-C (SIGINT) and 143 after SIGTERM,
which shut the run down cleanly and print no traceback, 0 otherwise.
"""

from __future__ import annotations

import argparse
import runpy
import signal
import sys
import traceback

from . import _kernel, run
from ._signals import SIGNAL_EXIT_BASE

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``coserve`` command with *argv* (default: ``sys.argv[1:]``); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="coserve",
        description="Run a Python script as a coserve runtime: its top level runs first, then the "
        "scheduler, until nothing is left to do.",
    )
    parser.add_argument(
        "--asyncore",
        action="store_true",
        help="run an unchanged asyncore/asynchat program as 'python SCRIPT' would, on coserve's modules",
    )
    parser.add_argument("-e", dest="code", metavar="CODE", help="run CODE (before SCRIPT, if both are given)")
    parser.add_argument("script", nargs="?", help="the script to run ('-' for standard input)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script (sys.argv[1:])")
    opts = parser.parse_args(argv)
    if opts.code is None and opts.script is None:
        parser.error("give a SCRIPT or -e CODE")
    if opts.asyncore:
        if opts.code is not None or opts.script == "-":
            parser.error("--asyncore runs a program file: give its path")
        from . import compat

        return compat.main([opts.script, *opts.args])

    kernel = _kernel.get_kernel()
    try:
        if opts.code is not None:
            sys.argv = ["-e", *(([opts.script] if opts.script else []) + opts.args)]
            exec(compile(opts.code, "<-e>", "exec"), {"__name__": "__main__"})
        if opts.script is not None and opts.code is None:
            sys.argv = [opts.script, *opts.args]
            if opts.script == "-":
                exec(compile(sys.stdin.read(), "<stdin>", "exec"), {"__name__": "__main__"})
            else:
                runpy.run_path(opts.script, run_name="__main__")
        kernel = _kernel.get_kernel()  # the script may have run (and ended) a scheduler of its own
        run()
    except SystemExit as e:  # sys.exit() in the script, or SIGTERM (128 + 15)
        _kernel.drop_kernel(kernel)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:  # Ctrl-C: the run shut down cleanly; the shell's status for SIGINT
        _kernel.drop_kernel(kernel)
        return SIGNAL_EXIT_BASE + signal.SIGINT
    except BaseException:
        _kernel.drop_kernel(kernel)
        traceback.print_exc()
        return 1
    # An uncaught error, or tasks left waiting for something that could never happen (a deadlock).
    return 1 if kernel.errors_reported or kernel.stranded else 0


if __name__ == "__main__":
    sys.exit(main())
