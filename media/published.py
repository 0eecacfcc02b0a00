"""Where each pushed stream (a drone's RTMP, a phone's WHIP) is published, so that a
viewer on any node finds it: `gw:streams:pushed` (hash, stream id -> node name).

A node writes its entry when a publisher takes the stream there and removes it when
that publisher leaves, unless another node has written its own since (a drone that
reconnected to another node). A node that dies leaves its entries behind: they are
ignored while that node is not live (media/nodes.py), and overwritten by the next
publish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("gridwatch.published")

KEY = "gw:streams:pushed"
# HDEL only where the entry still names this node: one round trip, no race with a
# publish of the same stream on another node.
_WITHDRAW = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class PublishedStreams:
    """This node's side of `gw:streams:pushed`: `set(stream, here)` as publishers come
    and go, `node_of(stream)` for any stream. `live(node)` says whether a node is live."""

    def __init__(self, redis: aioredis.Redis, me: str, live: Callable[[str], bool]):
        self.redis = redis
        self.me = me
        self.live = live
        self._withdraw = redis.register_script(_WITHDRAW)

    async def set(self, stream_id: str, here: bool) -> None:
        """A publisher took `stream_id` on this node (`here`), or the one that had it left.
        Redis being away costs only the entry (logged): the publisher is served anyway."""
        try:
            if here:
                await self.redis.hset(KEY, stream_id, self.me)
            else:
                await self._withdraw(keys=[KEY], args=[stream_id, self.me])
        except (RedisError, OSError) as e:
            log.warning("published stream registry not updated",
                        extra={"stream": stream_id, "here": here, "error": str(e)})  # fmt: skip

    async def node_of(self, stream_id: str) -> str | None:
        """The live node `stream_id` is published to; None when it is published nowhere
        (or only on a node that is gone)."""
        node = await self.redis.hget(KEY, stream_id)
        if node is None:
            return None
        name = node.decode()
        return name if self.live(name) else None

    async def everywhere(self) -> dict[str, str]:
        """Every stream published to a live node: stream id -> node name."""
        entries = await self.redis.hgetall(KEY)
        return {k.decode(): v.decode() for k, v in entries.items() if self.live(v.decode())}

    async def forget_mine(self) -> int:
        """At start: drop the entries this node left when it was killed (its publishers
        are gone with that process; left, they would show a dead drone as published
        here once the node is live again). The number dropped."""
        stale = [k async for k, v in self.redis.hscan_iter(KEY, count=1000) if v.decode() == self.me]
        for stream_id in stale:
            await self._withdraw(keys=[KEY], args=[stream_id, self.me])
        if stale:
            log.info("published streams of a previous run forgotten", extra={"streams": [s.decode() for s in stale]})
        return len(stale)

    async def elsewhere(self, stream_ids: list[str]) -> list[str]:
        """Those of `stream_ids` that are published to another live node now (a drone
        that reconnected through another node)."""
        nodes = await self.redis.hmget(KEY, stream_ids) if stream_ids else []
        return [sid for sid, n in zip(stream_ids, nodes, strict=True)
                if n is not None and n.decode() != self.me and self.live(n.decode())]  # fmt: skip
