"""Officers' GPS fixes: validation, the latest fix in a GEO set, the track per officer.

`gw:officers:geo` holds each officer's latest position, `gw:officer:{id}` his latest
fix and duty state, `gw:track:{id}` the history (a stream, trimmed by age).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dispatch.records import load_all

GEO = "gw:officers:geo"
# Redis GEO (Web Mercator) takes latitudes up to this; nobody patrols closer to a pole.
GEO_LAT = 85.05112878
MAX_CLOCK_SKEW_S = 30.0
MAX_FIX_AGE_S = 24 * 3600.0

_NEARBY = """
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
                         'BYRADIUS', ARGV[3], 'm', 'ASC', 'COUNT', ARGV[4], 'WITHDIST')
local out = {}
for _, item in ipairs(found) do
  local id = item[1]
  local f = redis.call('HMGET', 'gw:officer:' .. id, 'fix_time', 'on_duty', 'ticket')
  local held = 0
  if f[3] then
    local t = redis.call('HMGET', 'gw:ticket:' .. f[3], 'state', 'assignee')
    if t[2] == id and (t[1] == 'dispatched' or t[1] == 'accepted' or t[1] == 'on_scene') then held = 1 end
  end
  table.insert(out, {id, item[2], f[1], f[2], f[3], held})
end
return out
"""


class Fix(BaseModel):
    model_config = ConfigDict(extra="forbid")
    officer: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")] | None = None
    lat: Annotated[float, Field(ge=-GEO_LAT, le=GEO_LAT, allow_inf_nan=False, strict=True)]
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, strict=True)]
    accuracy: Annotated[float, Field(ge=0, le=10000, allow_inf_nan=False, strict=True)] | None = (
        None
    )
    speed: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False, strict=True)] | None = None
    heading: Annotated[float, Field(ge=0, lt=360, allow_inf_nan=False, strict=True)] | None = None
    time: Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]

    @field_validator("time")
    @classmethod
    def _recent(cls, v: float) -> float:
        now = time.time()
        if v > now + MAX_CLOCK_SKEW_S:
            raise ValueError("is in the future")
        if v < now - MAX_FIX_AGE_S:
            raise ValueError("is more than a day old")
        return v


class FixBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fixes: Annotated[list[Fix], Field(min_length=1, max_length=1000)]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


@dataclass
class OfficerState:
    id: str
    lat: float | None
    lon: float | None
    fix_time: float | None
    on_duty: bool
    ticket: str | None

    def status(self, stale_s: float, now: float | None = None) -> str:
        if not self.on_duty:
            return "off_duty"
        if self.fix_time is None or (now or time.time()) - self.fix_time > stale_s:
            return "stale"
        return "busy" if self.ticket else "available"

    def view(self, stale_s: float, now: float) -> dict:
        """What the API and the wall show: {id, status, lat, lon, fix_time, ticket}."""
        return {"id": self.id, "status": self.status(stale_s, now), "lat": self.lat,
                "lon": self.lon, "fix_time": self.fix_time, "ticket": self.ticket}  # fmt: skip


class Officers:
    def __init__(self, redis: aioredis.Redis, retain_s: float):
        self.redis = redis
        self.retain_s = retain_s
        self._nearby = redis.register_script(_NEARBY)

    async def record(self, fixes: list[Fix]) -> dict[str, Fix]:
        """Store a validated batch; returns each officer's newest fix in it."""
        latest: dict[str, Fix] = {}
        pipe = self.redis.pipeline(transaction=False)
        min_id = int((time.time() - self.retain_s) * 1000)
        for fix in fixes:
            assert fix.officer is not None
            pipe.xadd(f"gw:track:{fix.officer}", {"fix": fix.model_dump_json(exclude={"officer"})},
                      minid=min_id, approximate=True)  # fmt: skip
            if fix.officer not in latest or fix.time > latest[fix.officer].time:
                latest[fix.officer] = fix
        await pipe.execute()
        for officer, fix in latest.items():
            key = f"gw:officer:{officer}"
            # A batch that arrives late must not move the officer back to an old position.
            known = await self.redis.hget(key, "fix_time")
            if known is not None and float(known) >= fix.time:
                continue
            async with self.redis.pipeline(transaction=True) as p:
                await (
                    p.geoadd(GEO, (fix.lon, fix.lat, officer))
                    .hset(key, mapping={"lat": fix.lat, "lon": fix.lon, "fix_time": fix.time})
                    .hsetnx(key, "on_duty", 1)
                    .execute()
                )
        return latest

    async def state(self, officer: str) -> OfficerState:
        return (await self.states([officer]))[0]

    async def states(self, officers: list[str]) -> list[OfficerState]:
        """Several officers' states in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for officer in officers:
            pipe.hmget(f"gw:officer:{officer}", "lat", "lon", "fix_time", "on_duty", "ticket")
        out = []
        for officer, (lat, lon, at, on_duty, ticket) in zip(
            officers, await pipe.execute(), strict=True
        ):
            out.append(
                OfficerState(
                    officer,
                    float(lat) if lat else None,
                    float(lon) if lon else None,
                    float(at) if at else None,
                    on_duty in (None, b"1"),
                    ticket.decode() if ticket else None,
                )
            )
        return out

    async def set_ticket(self, officer: str, ticket_id: str | None) -> None:
        if ticket_id:
            await self.redis.hset(f"gw:officer:{officer}", "ticket", ticket_id)
        else:
            await self.redis.hdel(f"gw:officer:{officer}", "ticket")

    async def set_duty(self, officer: str, on_duty: bool) -> None:
        await self.redis.hset(f"gw:officer:{officer}", "on_duty", int(on_duty))

    async def track(self, officer: str, since: float, until: float | None = None) -> list[Fix]:
        """The officer's fixes with fix time in [since, until], oldest first."""
        return (await self.tracks([officer], since, until))[officer]

    async def tracks(
        self, officers: list[str], since: float, until: float | None = None
    ) -> dict[str, list[Fix]]:
        """Several officers' fixes with fix time in [since, until], in one round trip."""
        start = max(0, int((since - MAX_CLOCK_SKEW_S - 60) * 1000))  # stream ids are arrival times
        pipe = self.redis.pipeline(transaction=False)
        for officer in officers:
            pipe.xrange(f"gw:track:{officer}", min=f"{start}-0")
        out = {}
        for officer, entries in zip(officers, await pipe.execute(), strict=True):
            # Built without Fix's checks: a stored fix was checked when it came in, and its
            # age (a week of track) must not refuse it now.
            fixes = load_all(Fix.model_construct, ((officer, f.get(b"fix")) for _, f in entries), "fix")
            out[officer] = sorted(
                (f for f in fixes if f.time >= since and (until is None or f.time <= until)),
                key=lambda f: f.time,
            )
        return out

    async def nearby(
        self, lat: float, lon: float, radius_m: float, count: int
    ) -> list[tuple[OfficerState, float]]:
        """Officers whose latest fix is within `radius_m`, nearest first, with distances.

        One script in Redis: the search, each officer's state, and whether the ticket he
        is marked with is really his and still active (the mark can be stale when a node
        died between two writes; the ticket is the truth).
        """
        rows = await self._nearby(keys=[GEO], args=[lon, lat, radius_m, count])
        out = []
        for officer, dist, at, on_duty, ticket, held in rows:
            state = OfficerState(
                officer.decode(), None, None, float(at) if at else None,
                on_duty in (False, None, b"1"), ticket.decode() if ticket and held == 1 else None,
            )  # fmt: skip
            out.append((state, float(dist)))
        return out
