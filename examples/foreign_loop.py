"""Drive coserve from a main loop of your own with ``step()`` (Copas's ``copas.step``).

A program that has its own loop (a GUI, a game, another event source) calls
``coserve.step(timeout)`` on each turn; ``coserve.finished()`` says when
coserve has nothing left to do.
"""

import coserve


async def worker(name: str, rounds: int) -> None:
    for i in range(rounds):
        print(f"{name} round {i}")
        await coserve.sleep(0.01)


coserve.spawn(worker, "a", 2)
coserve.spawn(worker, "b", 3)

turns = 0
while not coserve.finished():
    coserve.step(0.05)  # wait at most 50 ms for coserve's timers and I/O
    turns += 1  # ... and here, the program's own work for this turn
print(f"done after {turns} turns of the main loop")
