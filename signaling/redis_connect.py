"""Redis clients from the config (redis.*), for `gridwatch serve` and `gridwatch detect`.

- The durable Redis (tickets, tracks, deadlines, leases, cameras): `redis.url`, or the
  master Redis Sentinel names (`redis.sentinel`), found again after a failover; or,
  with neither, the node's private redis-server (its URL given by the caller).
- The detection frame bus (`gw:frames:{camera}`, contracts/frames.py): `redis.frames_url`,
  a Redis without persistence, or the durable one when unset.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from gridwatch.signaling.config import RedisConfig

CONNECT_S = 2.0  # to connect to a Sentinel or to the master it names, before trying the next
HEALTH_CHECK_S = 10  # an idle connection is pinged before use past this (a dead peer shows)


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (asks where the master is on each new connection) that, at its
    limit, waits for a free connection like BlockingConnectionPool instead of failing."""


def durable_client(cfg: RedisConfig, private_url: str | None = None,
                   max_connections: int | None = None, wait_s: float = 5.0) -> aioredis.Redis:  # fmt: skip
    """A client of the durable Redis: through Sentinel when `cfg.sentinel` is set, else
    `cfg.url`, else `private_url` (the node's private redis-server). `max_connections`:
    at most this many, a caller past it waiting up to `wait_s` s for one (None: no limit).
    ValueError when there is no Redis to connect to. Nothing is connected until used."""
    limit = {"max_connections": max_connections, "timeout": wait_s} if max_connections else {}
    if cfg.sentinel is not None:
        s = cfg.sentinel
        sentinels = Sentinel(
            s.hosts(),
            sentinel_kwargs={"password": _plain(s.sentinel_password), "socket_timeout": CONNECT_S,
                             "socket_connect_timeout": CONNECT_S},
            password=_plain(s.password), db=s.db, socket_connect_timeout=CONNECT_S,
            health_check_interval=HEALTH_CHECK_S,
        )  # fmt: skip
        pool = BlockingSentinelPool if max_connections else SentinelConnectionPool
        return sentinels.master_for(s.master, connection_pool_class=pool, **limit)
    url = cfg.url or private_url
    if url is None:
        raise ValueError("redis.url: no Redis to connect to")
    pool_class = aioredis.BlockingConnectionPool if max_connections else aioredis.ConnectionPool
    return aioredis.Redis.from_pool(
        pool_class.from_url(url, health_check_interval=HEALTH_CHECK_S, **limit)
    )


def frames_client(cfg: RedisConfig) -> aioredis.Redis | None:
    """A client of the frame bus at `redis.frames_url`; None when the frames share the
    durable Redis. One connection per camera's blocking read: no limit on the pool."""
    if cfg.frames_url is None:
        return None
    return aioredis.from_url(cfg.frames_url, health_check_interval=HEALTH_CHECK_S)


def _plain(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()
