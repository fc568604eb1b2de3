"""Let ``import asyncore`` and ``import asynchat`` load coserve's modules.

For applications (and their dependencies) that cannot change their imports::

    import coserve.compat; coserve.compat.install()   # first thing, before anything imports asyncore

On Python 3.12 and later this is the only way those imports work at all; on
3.11 it replaces the standard library's deprecated modules, so every
dispatcher runs on coserve's loop.
"""

from __future__ import annotations

import sys

__all__ = ["install"]


def install() -> None:
    """Make ``asyncore`` and ``asynchat`` refer to ``coserve.asyncore`` and ``coserve.asynchat``.

    Call it before anything imports them; a module that already did keeps
    what it imported.
    """
    from . import asynchat, asyncore

    sys.modules["asyncore"] = asyncore
    sys.modules["asynchat"] = asynchat
