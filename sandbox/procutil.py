"""Small process helpers shared by the gateway and proxy servers."""

from __future__ import annotations

import asyncio
import os
import signal


def write_ready_file(path: str, url: str) -> None:
    """Publish our URL atomically: the harness polls for the file and must never read half."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(url + "\n")
    os.replace(tmp, path)


def exit_with_parent(parent_pid: int, stop: asyncio.Event, interval: float = 0.5) -> asyncio.Task[None]:
    """Set `stop` when the parent goes away.

    A test run killed with SIGKILL cannot stop its children; without this they would keep
    ports and CPU on a machine shared with other engineers.
    """

    async def watch() -> None:
        while not stop.is_set():
            if os.getppid() != parent_pid:
                stop.set()
                return
            await asyncio.sleep(interval)

    return asyncio.get_running_loop().create_task(watch())


async def wait_for_stop(parent_pid: int | None) -> None:
    """Returns on SIGINT or SIGTERM, or when the parent process goes away."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if parent_pid:
        exit_with_parent(parent_pid, stop)
    await stop.wait()
