"""Deadlines that survive restarts: `ticket:step` members of a sorted set scored by due time.
They are set and cleared by the ticket transitions themselves (one Lua script with the
transition: dispatch.tickets), and fired from here.

Every node polls the set. Claiming a due entry pushes its score a lease into the
future (atomically, so one node gets it); the entry is removed once handled. A node
that dies mid-way leaves the entry to fire again when the lease runs out: a deadline
may fire twice, never not at all, so handlers check the ticket before acting.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

KEY = "gw:deadlines"
LEASE_S = 30.0

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], m) end
return due
"""
_DONE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""


class Deadlines:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self._claim = redis.register_script(_CLAIM)
        self._done = redis.register_script(_DONE)

    async def claim_due(
        self, limit: int = 100, now: float | None = None
    ) -> list[tuple[str, str, str]]:
        """Due (ticket, step, lease) entries, each leased to this caller."""
        now = time.time() if now is None else now
        lease = repr(now + LEASE_S)
        members = await self._claim(keys=[KEY], args=[now, lease, limit])
        return [(*m.decode().split(":", 1), lease) for m in members]

    async def done(self, ticket_id: str, step: str, lease: str) -> None:
        """Remove a handled entry, unless it was set again meanwhile (a new dispatch)."""
        await self._done(keys=[KEY], args=[f"{ticket_id}:{step}", lease])
