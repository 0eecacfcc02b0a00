"""Notifications to users, kept until read: a per-user inbox stream plus a live wake-up.

`gw:inbox:{user}` (stream) holds what a user must see even if he was offline when it
happened; `gw:user:{user}` (pub/sub) tells whichever node holds his socket to look.
Ticket changes for everyone who watches the wall go on `gw:events` (pub/sub), published
by the ticket store with each transition.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import redis.asyncio as aioredis

INBOX_MAXLEN = 1000


class Events:
    def __init__(self, redis: aioredis.Redis, roles: dict[str, str]):
        self.redis = redis
        self.roles = roles  # username -> role, from the config

    def users_with(self, *roles: str) -> list[str]:
        return sorted(u for u, r in self.roles.items() if r in roles)

    async def to_users(self, users: Iterable[str], event: dict) -> None:
        blob = json.dumps(event)
        pipe = self.redis.pipeline(transaction=False)
        for user in set(users):
            pipe.xadd(f"gw:inbox:{user}", {"event": blob}, maxlen=INBOX_MAXLEN, approximate=True)
            pipe.publish(f"gw:user:{user}", blob)
        await pipe.execute()
