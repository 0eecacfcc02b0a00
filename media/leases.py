"""Leases in Redis: which node or worker owns a camera (`gw:lease:{role}:{camera}`).

A holder renews its lease well within the TTL; when it dies, the lease runs out and
another takes the camera over. Renewal and release check the holder, so a holder
that was too slow can never extend or drop a lease someone else has taken since.
"""

from __future__ import annotations

import redis.asyncio as aioredis

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

    async def holder_of(self, item: str) -> str | None:
        value = await self.redis.get(self.key(item))
        return value.decode() if value else None
