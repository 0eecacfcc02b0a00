"""One way to keep a loop alive while Redis is away: every background loop of every
process runs its step through `forever`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

from redis.exceptions import RedisError


async def forever(step: Callable[[], Awaitable[object]], what: str, log: logging.Logger, *,
                  period_s: float = 0.0, backoff_s: float = 1.0) -> NoReturn:  # fmt: skip
    """Run `step` again and again, `period_s` apart. A Redis or network error is one
    warning line naming `what` ("{what}: redis unavailable") and a wait of at least
    `backoff_s` before the next try: the state the step works on waits in Redis, so
    nothing is lost, and a Redis that comes back is used at once. Other errors propagate."""
    while True:
        try:
            await step()
        except (RedisError, OSError) as e:
            log.warning(f"{what}: redis unavailable", extra={"error": str(e)})
            await asyncio.sleep(max(period_s, backoff_s))
            continue
        await asyncio.sleep(period_s)
