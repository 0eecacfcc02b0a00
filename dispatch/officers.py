"""Officers: their GPS fixes, where they are, and whether they can take a ticket now.

- `gw:officers:geo` (GEO): each officer's latest position.
- `gw:officer:{id}` (hash): latest `lat`, `lon`, `fix_time`; `on_duty`; `seen` (the last
  time his own phone reported: a fix he sent himself); `speed` (his moving speed,
  smoothed, from his track).
- `gw:active:{id}` (set): the tickets he holds now (offered, accepted, on scene), kept by
  the ticket transitions themselves (dispatch.tickets): busy is derived from it, never
  from one mark that another transition could overwrite.
- `gw:track:{id}` (stream): his fixes, trimmed by age.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gridwatch.contracts.geo import GEO_LAT
from gridwatch.contracts.records import load_all
from gridwatch.dispatch.routing import distance_m

GEO = "gw:officers:geo"
MAX_CLOCK_SKEW_S = 30.0
MAX_FIX_AGE_S = 24 * 3600.0
MOVING_MPS = 0.5  # slower than this between two fixes he is standing, not moving
SPEED_ALPHA = 0.3  # weight of the newest moving speed in his smoothed speed

_NEARBY = """
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
                         'BYRADIUS', ARGV[3], 'm', 'ASC', 'COUNT', ARGV[4], 'WITHDIST', 'WITHCOORD')
local out = {}
for _, item in ipairs(found) do
  local id = item[1]
  local f = redis.call('HMGET', 'gw:officer:' .. id, 'fix_time', 'on_duty', 'seen', 'speed')
  table.insert(out, {id, item[2], item[3][1], item[3][2], f[1], f[2], f[3], f[4],
                     redis.call('SMEMBERS', 'gw:active:' .. id)})
end
return out
"""


def active_key(officer: str) -> str:
    return f"gw:active:{officer}"


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
    """Up to 1000 fixes. Each is checked on its own: the good ones are stored, the bad
    ones named (one phone's clock must not lose the fixes of everyone in the batch)."""

    model_config = ConfigDict(extra="forbid")
    fixes: Annotated[list[dict], Field(min_length=1, max_length=1000)]

    def parse(self) -> tuple[list[tuple[int, Fix]], list[dict]]:
        """([(index, fix)] for the good ones, [{index, error}] for the others)."""
        good, bad = [], []
        for i, raw in enumerate(self.fixes):
            try:
                good.append((i, Fix.model_validate(raw)))
            except ValidationError as e:
                why = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'fix'}: {x['msg']}" for x in e.errors())
                bad.append({"index": i, "error": why})
        return good, bad


@dataclass
class OfficerState:
    id: str
    lat: float | None
    lon: float | None
    fix_time: float | None
    on_duty: bool
    tickets: list[str]  # the tickets he holds now
    seen: float | None = None  # his own phone reported last
    speed: float | None = None  # his smoothed moving speed, m/s

    def status(self, stale_s: float, now: float | None = None) -> str:
        if not self.on_duty:
            return "off_duty"
        if self.fix_time is None or (now or time.time()) - self.fix_time > stale_s:
            return "stale"
        return "busy" if self.tickets else "available"

    def reachable(self, within_s: float, now: float) -> bool:
        """Whether his own phone reported recently: someone there to answer an offer."""
        return self.seen is not None and now - self.seen <= within_s

    def view(self, stale_s: float, now: float) -> dict:
        """What the API and the wall show: {id, status, lat, lon, fix_time, tickets}."""
        return {"id": self.id, "status": self.status(stale_s, now), "lat": self.lat, "lon": self.lon,
                "fix_time": self.fix_time, "tickets": self.tickets, "speed": self.speed}  # fmt: skip


def _float(raw: bytes | None) -> float | None:
    return float(raw) if raw else None


class Officers:
    def __init__(self, redis: aioredis.Redis, retain_s: float):
        self.redis = redis
        self.retain_s = retain_s
        self._nearby = redis.register_script(_NEARBY)

    async def record(self, fixes: list[Fix], own: set[str] = frozenset()) -> dict[str, list[Fix]]:
        """Store validated fixes; returns each officer's fixes of the batch in time order.
        `own`: the officers whose own phone sent them (they are reachable now)."""
        by_officer: dict[str, list[Fix]] = {}
        pipe = self.redis.pipeline(transaction=False)
        min_id = int((time.time() - self.retain_s) * 1000)
        for fix in fixes:
            assert fix.officer is not None
            pipe.xadd(f"gw:track:{fix.officer}", {"fix": fix.model_dump_json(exclude={"officer"})},
                      minid=min_id, approximate=True)  # fmt: skip
            by_officer.setdefault(fix.officer, []).append(fix)
        await pipe.execute()
        now = time.time()
        for officer, batch in by_officer.items():
            batch.sort(key=lambda f: f.time)
            key = f"gw:officer:{officer}"
            known = await self.redis.hmget(key, "lat", "lon", "fix_time", "speed")
            fields: dict[str, float] = {"seen": now} if officer in own else {}
            newest, speed = batch[-1], _float(known[3])
            # Late fixes (a phone back from offline) fill the track; they do not move him back.
            if known[2] is None or float(known[2]) < newest.time:
                prev = (float(known[0]), float(known[1]), float(known[2])) if known[2] else None
                for fix in batch:
                    if prev and fix.time > prev[2]:
                        mps = distance_m(prev[0], prev[1], fix.lat, fix.lon) / (fix.time - prev[2])
                        if MOVING_MPS <= mps <= 60:
                            speed = mps if speed is None else SPEED_ALPHA * mps + (1 - SPEED_ALPHA) * speed
                    prev = (fix.lat, fix.lon, fix.time)
                fields |= {"lat": newest.lat, "lon": newest.lon, "fix_time": newest.time}
                if speed is not None:
                    fields["speed"] = speed
            if not fields:
                continue
            async with self.redis.pipeline(transaction=True) as p:
                if "lat" in fields:
                    p.geoadd(GEO, (newest.lon, newest.lat, officer))
                await p.hset(key, mapping=fields).hsetnx(key, "on_duty", 1).execute()
        return by_officer

    async def state(self, officer: str) -> OfficerState:
        return (await self.states([officer]))[0]

    async def states(self, officers: list[str]) -> list[OfficerState]:
        """Several officers' states in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for officer in officers:
            pipe.hmget(f"gw:officer:{officer}", "lat", "lon", "fix_time", "on_duty", "seen", "speed")
            pipe.smembers(active_key(officer))
        got = await pipe.execute()
        out = []
        for i, officer in enumerate(officers):
            lat, lon, at, on_duty, seen, speed = got[2 * i]
            out.append(OfficerState(officer, _float(lat), _float(lon), _float(at), on_duty in (None, b"1"),
                                    sorted(t.decode() for t in got[2 * i + 1]), _float(seen), _float(speed)))  # fmt: skip
        return out

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
        """Officers whose latest fix is within `radius_m`, nearest first, with straight-line
        distances and their states, in one script."""
        rows = await self._nearby(keys=[GEO], args=[lon, lat, radius_m, count])
        out = []
        for officer, dist, lon_, lat_, at, on_duty, seen, speed, held in rows:
            state = OfficerState(officer.decode(), float(lat_), float(lon_), _float(at), on_duty in (None, b"1"),
                                 sorted(t.decode() for t in held), _float(seen), _float(speed))  # fmt: skip
            out.append((state, float(dist)))
        return out


def mode_speed(speed: float | None, profile_mps: float) -> float:
    """His speed for an ETA: his own smoothed moving speed where his track shows one, kept
    within half and one and a half times his profile's (a few fixes in traffic are no
    measure of a man), else the profile's."""
    if speed is None or not math.isfinite(speed):
        return profile_mps
    return min(max(speed, 0.5 * profile_mps), 1.5 * profile_mps)
