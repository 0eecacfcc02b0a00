"""Waiting on a real condition with a deadline, the one way the tests wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(what: str, check: Callable[[], T], timeout: float, detail: Callable[[], str] = lambda: "") -> T:
    """check() until it returns something truthy (returned), polled every 0.1 s; an
    AssertionError naming `what`, the timeout and the end of detail() (a server's logs,
    what was seen) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s\n{detail()[-3000:]}"
        await asyncio.sleep(0.1)
    return found
