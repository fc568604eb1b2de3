"""What coserve does, in a few seconds: tasks that read like blocking code, sharing one thread.

A kitchen takes orders from a queue: cooks are queue
workers, the single oven is a lock, a recurring timer reports progress, a slow
supplier is bounded by a timeout, and the bookkeeping runs in a thread. It ends
by itself once every order is served.
"""

from __future__ import annotations

import time

import coserve

ORDERS = ["soup", "bread", "pie", "stew", "cake", "tart"]


async def main() -> None:
    start = coserve.gettime()
    oven = coserve.Lock()
    orders = coserve.Queue(name="orders")
    served: list[str] = []

    def log(message: str) -> None:
        print(f"{coserve.gettime() - start:5.2f}s  {message}")

    async def cook(dish: str) -> None:
        me = coserve.current_task().name
        log(f"{me} prepares {dish}")
        await coserve.sleep(0.2)  # chopping: other cooks work meanwhile
        async with oven:  # one dish in the oven at a time
            log(f"{me} bakes {dish}")
            await coserve.sleep(0.3)
        served.append(dish)

    for _ in range(3):
        orders.add_worker(cook)

    def report(timer: coserve.Timer, params: object) -> None:
        log(f"status: {len(served)} served, {orders.size} waiting, oven busy: {oven.locked()}")

    ticker = coserve.timer(report, 0.5, recurring=True)

    async def supplier() -> str:
        await coserve.sleep(5)  # far too slow
        return "truffles"

    async with coserve.move_on_after(0.4) as scope:
        await supplier()
    if scope.expired:
        log("the truffle supplier took too long; we do without")

    for dish in ORDERS:
        orders.push(dish)
    await orders.finish()  # every order cooked, every cook gone home
    ticker.cancel()

    def bookkeeping(dishes: list[str]) -> str:
        time.sleep(0.1)  # blocking work belongs in a thread
        return f"{len(dishes)} dishes: {', '.join(sorted(dishes))}"

    log("books: " + await coserve.run_in_thread(bookkeeping, served))


if __name__ == "__main__":
    coserve.run(main)
