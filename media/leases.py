"""Leases in Redis: which node or worker owns a camera (`gw:lease:{role}:{camera}`).

A holder renews its lease well within the TTL; when it dies, the lease runs out and
another takes the camera over. Renewal and release check the holder, so a holder
that was too slow can never extend or drop a lease someone else has taken since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Generic, TypeVar

import redis.asyncio as aioredis

from gridwatch.contracts.retry import forever

log = logging.getLogger("gridwatch.leases")
T = TypeVar("T")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    def __init__(self, redis: aioredis.Redis, role: str, holder: str, ttl_s: float):
        self.redis = redis
        self.role = role
        self.holder = holder
        self.ttl_ms = int(ttl_s * 1000)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def key(self, item: str) -> str:
        return f"gw:lease:{self.role}:{item}"

    async def hold(self, item: str) -> bool:
        """Take the lease if it is free, or renew it if it is ours; False if another holds it."""
        if await self._renew(keys=[self.key(item)], args=[self.holder, self.ttl_ms]):
            return True
        return bool(await self.redis.set(self.key(item), self.holder, nx=True, px=self.ttl_ms))

    async def release(self, item: str) -> None:
        await self._release(keys=[self.key(item)], args=[self.holder])


class LeasedWork(Generic[T]):
    """One task per wanted item (a camera) whose lease this node holds.

    Every lease_s/3 the wanted items are read again: a task whose item is no longer
    wanted, or changed, is stopped and its lease released; one whose lease another
    took is stopped; a free lease is taken and its task started.
    """

    def __init__(
        self,
        leases: Leases,
        wanted: Callable[[], Awaitable[dict[str, T]]],
        start: Callable[[str, T], Coroutine[None, None, None]],
        period_s: float,
    ):
        self.leases = leases
        self.wanted = wanted
        self.start = start
        self.period_s = period_s
        self.running: dict[str, tuple[T, asyncio.Task]] = {}

    async def run(self) -> None:
        try:
            await forever(self._cycle, f"{self.leases.role} leases", log, period_s=self.period_s)
        finally:
            for item in list(self.running):
                await self._stop(item)

    async def _cycle(self) -> None:
        wanted = await self.wanted()
        for item in list(self.running):
            if item not in wanted or self.running[item][0] != wanted[item]:
                await self._stop(item)
                await self.leases.release(item)
        for item, spec in wanted.items():
            if not await self.leases.hold(item):
                if item in self.running:  # lost it (we were too slow): the holder has it now
                    await self._stop(item)
                continue
            if item not in self.running:
                task = asyncio.create_task(self.start(item, spec), name=f"{self.leases.role}-{item}")
                self.running[item] = (spec, task)

    async def _stop(self, item: str) -> None:
        _, task = self.running.pop(item)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
