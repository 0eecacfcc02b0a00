"""Notifications to users, kept until read: a per-user inbox stream plus a live wake-up.

`gw:inbox:{user}` (stream) holds what a user must see even if he was offline when it
happened; `gw:user:{user}` (pub/sub) tells whichever node holds his socket to look.
Ticket changes for everyone who watches the wall go on `gw:events` (pub/sub), published
by the ticket store with each transition, and so do officers' positions and statuses;
alerts (`dispatch.alerts`) have a channel and a store of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import redis.asyncio as aioredis

from gridwatch.contracts.channels import WALL

INBOX_MAXLEN = 1000




class Events:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def to_walls(self, event: dict) -> None:
        """Send now to every wall socket on every node (not kept: walls reload on reconnect)."""
        await self.redis.publish(WALL, json.dumps(event))

    async def to_users(self, users: Iterable[str], event: dict) -> None:
        blob = json.dumps(event)
        pipe = self.redis.pipeline(transaction=False)
        for user in set(users):
            pipe.xadd(f"gw:inbox:{user}", {"event": blob}, maxlen=INBOX_MAXLEN, approximate=True)
            pipe.publish(f"gw:user:{user}", blob)
        await pipe.execute()
