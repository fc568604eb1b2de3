#!/usr/bin/env coserve
"""The Copas runtime example: run with ``coserve examples/hello_timer.py``.

The ``coserve`` command runs this file's top level, then the scheduler, until
nothing is left to do: the timer cancels itself after five greetings.
"""

import coserve

count = 0


def greet(timer: coserve.Timer, params: object) -> None:
    global count
    count += 1
    print(f"hello world {count}")
    if count >= 5:
        timer.cancel()


coserve.timer(greet, 0.05, recurring=True)
