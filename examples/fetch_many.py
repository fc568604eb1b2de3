"""Fetch several URLs at once with one coserve.http client, as blocking-style code.

    python examples/fetch_many.py URL [URL ...]

Each URL is fetched in its own task; the client's pool shares connections
between them (at most 4 per host here). A URL that fails prints its error
instead of stopping the others. Prints one line per URL, in the order given.
"""

from __future__ import annotations

import sys

import coserve
from coserve import http


async def fetch_one(client: http.Client, url: str) -> str:
    try:
        response = await client.get(url)
    except http.HTTPError as e:
        return f"{url} failed: {type(e).__name__} (turbo code {e.code}): {e.message}"
    return f"{url} {response.status} {len(response.body or b'')} bytes in {response.request_time:.3f} s"


async def main(urls: list[str]) -> None:
    async with http.Client(max_connections_per_host=4, timeout=10) as client:
        async with coserve.TaskGroup() as group:
            tasks = [group.spawn(fetch_one, client, url) for url in urls]
    for task in tasks:
        print(task.result())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    coserve.run(main, sys.argv[1:])
