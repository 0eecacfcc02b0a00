"""Who is online, on which devices, and whether he is free or in a call, for every node.

`gw:presence:{user}` (hash) holds one entry per connected device, written by the node
that holds its socket and refreshed every HEARTBEAT_S; an entry not refreshed for
STALE_S belongs to a node that died and is dropped. Changes go out on `gw:presence`.
"""

from __future__ import annotations

import json
import logging
import time

import redis.asyncio as aioredis

from gridwatch.contracts.records import load
from gridwatch.contracts.retry import forever
from gridwatch.signaling.sockets import Client, Sockets

log = logging.getLogger("gridwatch.presence")

HEARTBEAT_S = 15.0
STALE_S = 45.0


def busy_key(user: str) -> str:
    return f"gw:busy:{user}"


class Presence:
    def __init__(self, redis: aioredis.Redis, sockets: Sockets, node: str):
        self.redis = redis
        self.sockets = sockets
        self.node = node

    def _entry(self, client: Client, since: float) -> str:
        return json.dumps(
            {"role": client.role, "node": self.node, "since": since, "seen": time.time()}
        )

    async def online(self, client: Client) -> None:
        now = time.time()
        await (
            self.redis.pipeline(transaction=False)
            .hset(f"gw:presence:{client.user}", client.device, self._entry(client, now))
            .sadd("gw:online", client.user)
            .execute()
        )
        client.since = now
        await self.announce(client.user)

    async def offline(self, client: Client) -> None:
        # Another socket of the same device (a reconnect that overtook this close) keeps it.
        if any(c.device == client.device for c in self.sockets.by_user.get(client.user, ())):
            return
        await self.redis.hdel(f"gw:presence:{client.user}", client.device)
        await self.announce(client.user)

    async def devices(self, user: str) -> dict[str, dict]:
        entries = await self.redis.hgetall(f"gw:presence:{user}")
        now, live, stale = time.time(), {}, []
        for device, blob in entries.items():
            entry = load(None, blob, "presence", f"{user}/{device.decode()}")
            if not isinstance(entry, dict) or not isinstance(entry.get("seen"), int | float) or now - entry["seen"] > STALE_S:
                stale.append(device)
            else:
                live[device.decode()] = entry
        if stale:
            await self.redis.hdel(f"gw:presence:{user}", *stale)
        return live

    async def status(self, user: str) -> dict:
        devices = await self.devices(user)
        if not devices:
            await self.redis.srem("gw:online", user)
            state = "offline"
        else:
            state = "in_call" if await self.redis.exists(busy_key(user)) else "available"
        role = next(iter(devices.values()))["role"] if devices else None
        return {
            "type": "presence",
            "user": user,
            "role": role,
            "status": state,
            "devices": sorted(devices),
        }

    async def announce(self, user: str) -> None:
        await self.redis.publish("gw:presence", json.dumps(await self.status(user)))

    async def everyone(self) -> list[dict]:
        users = sorted(u.decode() for u in await self.redis.smembers("gw:online"))
        statuses = [await self.status(u) for u in users]
        return [s for s in statuses if s["status"] != "offline"]

    async def run(self) -> None:
        """Keep this node's devices fresh, so that other nodes do not take them for dead."""
        await forever(self._refresh, "presence refresh", log, period_s=HEARTBEAT_S)

    async def _refresh(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for c in self.sockets.clients():
            pipe.hset(f"gw:presence:{c.user}", c.device, self._entry(c, c.since))
        await pipe.execute()
