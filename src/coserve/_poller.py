"""Readiness polling: epoll on Linux, the ``selectors`` module elsewhere.

The kernel talks to one small interface: ``register(fd, mask)``,
``modify(fd, mask)``, ``unregister(fd)``, ``poll(timeout) -> [(fd, events)]``,
``stale(fd, mask)`` (does the registration belong to a file closed since?)
and ``close()``. Masks and events use epoll's bit values everywhere (``IN``,
``OUT``, ``ERR``, ``HUP``), so the kernel never translates on the hot path when
epoll is in use.

Some facts about epoll that shape the kernel (see ``_kernel.py``):

- Registrations are level-triggered and persist across waits. A task that
  waits for the same socket again and again (a handler looping on
  ``receive``) costs no ``epoll_ctl`` call at all in the steady state; the
  kernel drops an interest lazily, only when an event arrives that nobody is
  waiting for.
- epoll registers the *open file description*, not the number: closing the
  last descriptor removes it silently, and the number can come back for
  another file. So ``modify`` may find it gone (ENOENT) and ``register`` may
  find it present (EEXIST, through a ``dup``); :func:`set_mask` handles both.
- ``EPOLLERR`` and ``EPOLLHUP`` are reported whether asked for or not, so an
  fd nobody waits for must be unregistered, not just modified to mask 0.
"""

from __future__ import annotations

import errno
import os
import select
import selectors

__all__ = ["ERR", "HUP", "IN", "OUT", "RD_EVENTS", "WR_EVENTS", "make_poller", "set_mask"]

IN = 0x001
OUT = 0x004
ERR = 0x008
HUP = 0x010
#: Events that end a wait for readability (errors wake readers so they see the error).
RD_EVENTS = IN | ERR | HUP
#: Events that end a wait for writability.
WR_EVENTS = OUT | ERR | HUP


class SelectorPoller:
    """The poller interface on top of :mod:`selectors`, for systems without epoll."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._files: dict[int, tuple[int, int]] = {}  # fd -> (st_dev, st_ino) of the file registered

    def register(self, fd: int, mask: int) -> None:
        self._sel.register(fd, _to_sel(mask))
        try:
            st = os.fstat(fd)
            self._files[fd] = (st.st_dev, st.st_ino)
        except OSError:
            self._files.pop(fd, None)

    def stale(self, fd: int, mask: int) -> bool:
        """True if *fd*'s registration belongs to a file that was closed (the number now has another)."""
        try:
            st = os.fstat(fd)
        except OSError:
            return True
        return self._files.get(fd) != (st.st_dev, st.st_ino)

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._sel.modify(fd, _to_sel(mask))
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "fd not registered") from None

    def unregister(self, fd: int) -> None:
        self._files.pop(fd, None)
        try:
            self._sel.unregister(fd)
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "fd not registered") from None

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        out = []
        for key, ev in self._sel.select(timeout):
            mask = (IN if ev & selectors.EVENT_READ else 0) | (OUT if ev & selectors.EVENT_WRITE else 0)
            out.append((key.fd, mask))
        return out

    def fileno(self) -> int:
        return self._sel.fileno() if hasattr(self._sel, "fileno") else -1

    def close(self) -> None:
        self._sel.close()


def _to_sel(mask: int) -> int:
    return (selectors.EVENT_READ if mask & IN else 0) | (selectors.EVENT_WRITE if mask & OUT else 0)


class EpollPoller:
    """A thin epoll wrapper; ``poll`` is the C method itself (bound once, no Python frame)."""

    def __init__(self) -> None:
        ep = select.epoll()
        self._ep = ep
        self.register = ep.register
        self.modify = ep.modify
        self.unregister = ep.unregister
        self.poll = ep.poll
        self.fileno = ep.fileno

    def stale(self, fd: int, mask: int) -> bool:
        """True if *fd*'s registration belongs to a file that was closed (the number now has another).

        epoll looks a modify up by (number, open file): it fails with ENOENT exactly then.
        """
        try:
            self._ep.modify(fd, mask)
        except OSError:
            return True
        return False

    def close(self) -> None:
        self._ep.close()


def make_poller(kind: str | None = None) -> EpollPoller | SelectorPoller:
    """Return the best poller here, or the one named by *kind* (``"epoll"`` or ``"selectors"``).

    ``COSERVE_POLLER`` in the environment chooses too; the test-suite uses it to
    run everything once on the portable path.
    """
    kind = kind or os.environ.get("COSERVE_POLLER") or ("epoll" if hasattr(select, "epoll") else "selectors")
    if kind == "epoll":
        if select.EPOLLIN != IN or select.EPOLLOUT != OUT:  # pragma: no cover - every Linux agrees
            raise RuntimeError("unexpected epoll constants")
        return EpollPoller()
    if kind == "selectors":
        return SelectorPoller()
    raise ValueError(f"unknown poller {kind!r}: use 'epoll' or 'selectors'")


def set_mask(poller: EpollPoller | SelectorPoller, fd: int, mask: int, registered: bool) -> None:
    """Make *fd*'s interest *mask*, whatever the poller believes about it.

    *registered* is what the kernel believes. The belief can be stale (see the
    module text), so each call falls back to the other one.
    """
    try:
        if registered:
            poller.modify(fd, mask)
        else:
            poller.register(fd, mask)
    except FileNotFoundError:
        poller.register(fd, mask)
    except FileExistsError:
        poller.modify(fd, mask)
