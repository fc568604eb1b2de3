"""Callback APIs and blocking calls, from code that reads like blocking code.

``from_callback`` is turbo's ``async.task``: it calls a callback-style function
and resumes the task with what the callback receives. ``run_in_thread`` moves a
blocking call off the loop.
"""

import threading
import time

import coserve


def fetch_later(key: str, callback) -> None:
    """A callback-style API: answers from another thread a little later."""

    def answer() -> None:
        time.sleep(0.05)
        callback(key.upper(), len(key))

    threading.Thread(target=answer).start()


def checksum(data: bytes) -> int:
    time.sleep(0.05)  # stands in for blocking work
    return sum(data) % 251


async def main() -> None:
    word, length = await coserve.from_callback(fetch_later, "coserve")
    print(f"callback gave {word!r} ({length} letters)")
    print(f"thread computed {await coserve.run_in_thread(checksum, word.encode())}")


coserve.run(main)
