"""Alerts: what a dispatcher must see and acknowledge — a reminder or an escalation of a
ticket, a ticket waiting too long for an officer, a grid's surge of cases, a full recordings disk.

An alert stays open until someone acknowledges it, and the acknowledgement is shared by
every wall (one operator acknowledges an alarm for the whole room, as in ISA-18.2 alarm
management). Raising and acknowledging are one Lua script each, so two nodes never raise
the same alert twice while it is open (its `key`) and an alert is acknowledged once.

Keys: `gw:alerts` (hash: id -> alert JSON), `gw:alerts:open` and `gw:alerts:acked`
(sorted sets by time raised / acknowledged), `gw:alerts:keys` (hash: key -> open alert
id). Channel `gw:alerts` carries each raised alert (as the event the wall renders, with
`alert` added) and each acknowledgement (`alert.ack`) to the sockets of `ALERT_ROLES`.
Acknowledged alerts are kept `ACKED_KEEP_S` for the record, then dropped.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel

from gridwatch.contracts.records import load, load_all
from gridwatch.contracts.roles import DESK

ALERT_ROLES = DESK  # who sees alerts and may acknowledge them
CHANNEL = "gw:alerts"
ACKED_KEEP_S = 7 * 86400.0

Kind = Literal["reminder", "escalation", "surge", "disk_full"]
Level = Literal["warning", "critical"]


class Alert(BaseModel):
    """One alert: `at` and `acked_at` are Unix seconds; `key` dedupes while it is open."""

    id: str
    kind: Kind
    level: Level
    message: str
    at: float
    key: str
    ticket: str | None = None
    grid: str | None = None
    acked_by: str | None = None
    acked_at: float | None = None


class AlertError(Exception):
    """An acknowledgement that cannot be applied: `status` 404 (unknown) or 409 (done)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ARGV: id, key, time raised, alert JSON, event, channel
_RAISE = """
local open = redis.call('HGET', KEYS[3], ARGV[2])
if open then return open end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
redis.call('PUBLISH', ARGV[6], ARGV[5])
return ARGV[1]
"""

# ARGV: id, acked alert JSON, ack time, key, event, channel, drop acked before this time
_ACK = """
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 409 end
  return 404
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
if redis.call('HGET', KEYS[3], ARGV[4]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[4]) end
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[7])) do
  redis.call('HDEL', KEYS[1], old)
  redis.call('ZREM', KEYS[4], old)
end
redis.call('PUBLISH', ARGV[6], ARGV[5])
return 200
"""

_KEYS = ["gw:alerts", "gw:alerts:open", "gw:alerts:keys", "gw:alerts:acked"]


class Alerts:
    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self._raise = redis.register_script(_RAISE)
        self._ack = redis.register_script(_ACK)

    async def raise_(
        self, event: dict, kind: Kind, message: str, key: str, *, level: Level = "warning",
        ticket: str | None = None, grid: str | None = None,
    ) -> str:  # fmt: skip
        """Open an alert and send `event` (with `alert` added) to every wall; returns its id.

        While an alert with the same `key` is open, nothing new is raised and the open
        one's id is returned.
        """
        now = time.time()
        alert = Alert(id=f"A-{int(now * 1000)}-{secrets.token_hex(3)}", kind=kind, level=level,
                      message=message, at=now, key=key, ticket=ticket, grid=grid)  # fmt: skip
        blob = alert.model_dump(mode="json")
        got = await self._raise(
            keys=_KEYS[:3],
            args=[alert.id, key, now, json.dumps(blob), json.dumps({**event, "alert": blob}), CHANNEL],
        )  # fmt: skip
        return got.decode() if isinstance(got, bytes) else str(got)

    async def ack(self, alert_id: str, who: str) -> Alert:
        """Acknowledge an open alert for every wall. Raises AlertError (404, 409)."""
        alert = load(Alert, await self.redis.hget("gw:alerts", alert_id), "alert", alert_id)
        if alert is None:
            raise AlertError(404, f"no alert {alert_id!r}")
        now = time.time()
        done = alert.model_copy(update={"acked_by": who, "acked_at": now})
        data = done.model_dump(mode="json")
        status = await self._ack(
            keys=_KEYS,
            args=[alert_id, json.dumps(data), now, alert.key,
                  json.dumps({"type": "alert.ack", "alert": data}), CHANNEL, now - ACKED_KEEP_S],
        )  # fmt: skip
        if status == 409:
            raise AlertError(409, f"alert {alert_id} was already acknowledged")
        if status == 404:
            raise AlertError(404, f"no alert {alert_id!r}")
        return done

    async def list(self, state: Literal["open", "acked"] = "open", limit: int = 200) -> list[Alert]:
        """Open (or recently acknowledged) alerts, newest first; a bad record is skipped."""
        ids = await self.redis.zrevrange(f"gw:alerts:{state}", 0, limit - 1)
        if not ids:
            return []
        blobs = await self.redis.hmget("gw:alerts", ids)
        return load_all(Alert, zip((i.decode() for i in ids), blobs, strict=True), "alert")

