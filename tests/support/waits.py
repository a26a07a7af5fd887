"""Bounded waits for state that another task or process brings about.

Poll with a deadline, never sleep as synchronisation. Suites bind their own default timeout with
functools.partial, so one implementation serves them all.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

# How late a deadline the agent promises may be seen to pass: the agent, the test process and the
# other pytest worker share two cores, so a timer fires late and a process waits for a core. Tests
# that check a promised deadline allow this much beyond it, and no more.
SCHEDULING_SLACK_S = 1.0


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
) -> None:
    """Await until `check()` (plain or async) is true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], bool], timeout: float = 10.0, what: str = "condition", interval: float = 0.05
) -> None:
    """The same for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        time.sleep(interval)
