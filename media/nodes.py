"""The live nodes of a centre: each `gridwatch serve` announces itself in Redis and
renews that every beat; a node not seen for `lease_s` is gone.

Keys: `gw:nodes` (hash, node name -> NodeInfo JSON), `gw:nodes:seen` (sorted set, node
name scored by Redis time of its last beat, seconds). `gw:nodes:changed` (pub/sub) says
a node joined or left, so that the others place cameras again at once instead of at
their next beat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import redis.asyncio as aioredis

from gridwatch.contracts.retry import forever

log = logging.getLogger("gridwatch.nodes")

NODES = "gw:nodes"
SEEN = "gw:nodes:seen"
CHANGED = "gw:nodes:changed"


class NodeNameInUse(Exception):
    """Another running process announces itself under this node's name."""


@dataclass(frozen=True)
class NodeInfo:
    """One node as the others see it. `cameras`/`ingest_mbps`: its capacity (None: no
    limit); `instance`: this process (a restarted node has a new one)."""

    node: str
    internal_url: str
    public_url: str
    cameras: int | None = None
    ingest_mbps: float | None = None
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, blob: bytes | str) -> NodeInfo:
        """Raises ValueError/TypeError/KeyError for a record that is not a NodeInfo."""
        data = json.loads(blob)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


async def redis_now(redis: aioredis.Redis) -> float:
    """Redis's clock, seconds: one clock for every node, whatever their own say."""
    seconds, micros = await redis.time()
    return seconds + micros / 1e6


class NodeRegistry:
    """This node's entry (`me`) and the live nodes as last read (`live`, by name).

    `beat()` renews this node and reads the others; `leave()` removes this node at
    once (a clean stop), so that the others take its cameras without waiting for
    `lease_s`. `on_change` is called with the new live set when it differs."""

    def __init__(self, redis: aioredis.Redis, me: NodeInfo, lease_s: float):
        self.redis = redis
        self.me = me
        self.lease_s = lease_s
        self.live: dict[str, NodeInfo] = {}
        self.listeners: list[Callable[[dict[str, NodeInfo]], None]] = []
        self.changes = 0  # how often the live set changed (a metric)
        self.woken = asyncio.Event()
        self.left = False  # after leave(), beats no longer bring the node back

    async def join(self) -> None:
        """Announce this node. Another process announcing the same name (a node that was
        killed has an entry that runs out within `lease_s`) is waited for that long;
        one still beating after it: NodeNameInUse."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_s + 1
        while True:
            blob, seen = await self.redis.hget(NODES, self.me.node), await self.redis.zscore(SEEN, self.me.node)
            other = _parse(blob)
            if other is None or other.instance == self.me.instance or seen is None:
                break
            if await redis_now(self.redis) - seen > self.lease_s:
                break
            if loop.time() > deadline:
                raise NodeNameInUse(f"cluster.node {self.me.node!r} is in use by another running node "
                                    f"({other.internal_url}): give each node its own name")  # fmt: skip
            log.warning("node name seen recently, waiting for it to expire",
                        extra={"node": self.me.node, "seconds": self.lease_s})  # fmt: skip
            await asyncio.sleep(0.5)
        await self.beat()
        await self.redis.publish(CHANGED, self.me.node)
        log.info("node joined", extra={"node": self.me.node, "internal_url": self.me.internal_url,
                                       "live": sorted(self.live)})  # fmt: skip

    async def beat(self) -> dict[str, NodeInfo]:
        """Renew this node, forget nodes long gone, read the live ones (one round trip
        each way). Nothing once the node has left."""
        if self.left:
            return self.live
        now = await redis_now(self.redis)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(NODES, self.me.node, self.me.to_json())
            pipe.zadd(SEEN, {self.me.node: now})
            pipe.zrangebyscore(SEEN, now - self.lease_s, "+inf")
            pipe.zrangebyscore(SEEN, "-inf", now - 10 * self.lease_s)
            _, _, names, gone = await pipe.execute()
        if gone:  # their entries are kept a while for whoever looks at the cluster
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(SEEN, *gone)
                pipe.hdel(NODES, *gone)
                await pipe.execute()
        names = sorted(n.decode() for n in names)
        # Every beat, not only when the names change: a node back under its name may
        # have a new address or capacity (a new container), and every node must place
        # with the same figures.
        blobs = await self.redis.hmget(NODES, names) if names else []
        live = {n: info for n, b in zip(names, blobs, strict=True) if (info := _parse(b)) is not None}
        if live != self.live:
            self._set(live)
        return self.live

    def _set(self, live: dict[str, NodeInfo]) -> None:
        if set(live) != set(self.live):
            log.info("live nodes changed", extra={"node": self.me.node, "live": sorted(live),
                                                  "was": sorted(self.live)})  # fmt: skip
            self.changes += 1
        self.live = live
        for listener in self.listeners:
            try:
                listener(live)
            except Exception:  # one listener's fault must not stop the node's beat
                log.exception("live nodes listener failed", extra={"node": self.me.node})

    async def leave(self) -> None:
        """Take this node out now (its entry too) and tell the others."""
        self.left = True
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(SEEN, self.me.node)
            pipe.hdel(NODES, self.me.node)
            pipe.publish(CHANGED, self.me.node)
            await pipe.execute()
        # The listeners are not told: a node that is going away places nothing again (it
        # would find no live node for its cameras and turn its own streams into relays).
        log.info("node left", extra={"node": self.me.node})

    async def watch(self) -> None:
        """Set `woken` whenever a node says it joined or left (pub/sub), until cancelled;
        subscribed again after Redis comes back."""
        await forever(self._listen, "node changes", log)

    async def _listen(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(CHANGED)
            self.woken.set()  # what was said while not subscribed: look now
            async for message in pubsub.listen():
                if message["type"] == "message":
                    self.woken.set()
        finally:
            await pubsub.aclose()

    def url_of(self, node: str) -> str | None:
        """A live node's internal address; None for one not live."""
        info = self.live.get(node)
        return info.internal_url if info else None


def _parse(blob: bytes | None) -> NodeInfo | None:
    if blob is None:
        return None
    try:
        return NodeInfo.from_json(blob)
    except (ValueError, TypeError, KeyError):
        log.warning("node record unreadable, ignored", extra={"record": blob[:200]})
        return None
