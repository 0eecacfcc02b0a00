"""What dispatch asks of the detector watching a camera, and what it answers, through Redis.

- `gw:verify:{camera}` (hash, ticket id -> request JSON): a camera ticket was marked
  resolved; the worker watching the camera checks that the zone is clear and answers on
  `gw:verifications` (stream + group `dispatch`), with a snapshot.
- `gw:dismissed:{camera}` (hash, ticket id -> spot JSON): a dispatcher said a camera
  ticket was no case; the workers raise nothing at that spot until the spot expires.
- `gw:detect:state:{camera}` (string with TTL): the incidents a worker follows (dwell
  so far, reported or not, cooldowns), so that the worker that takes a camera over
  carries on instead of starting again or raising a second violation.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from gridwatch.contracts.records import load, load_all

VERIFICATIONS = "gw:verifications"


def verify_key(camera: str) -> str:
    return f"gw:verify:{camera}"


def dismissed_key(camera: str) -> str:
    return f"gw:dismissed:{camera}"


def state_key(camera: str) -> str:
    return f"gw:detect:state:{camera}"


MAX_FRAME = 8192  # pixels: no camera frame is larger
Coordinate = Annotated[float, Field(ge=-MAX_FRAME, le=2 * MAX_FRAME, allow_inf_nan=False)]


class Sighting(BaseModel):
    """What the detector saw: carried by a camera ticket, used to verify and to dismiss."""

    model_config = ConfigDict(extra="forbid")
    zone: Annotated[str, Field(max_length=64)]
    kind: Annotated[str, Field(max_length=32)]
    label: Annotated[str, Field(max_length=64)] = ""
    box: tuple[Coordinate, Coordinate, Coordinate, Coordinate]  # x1, y1, x2, y2, frame pixels


class VerifyRequest(BaseModel):
    ticket: str
    detection: Sighting
    since: float


async def request_verify(redis: aioredis.Redis, camera: str, ticket: str, det: Sighting) -> None:
    req = VerifyRequest(ticket=ticket, detection=det, since=time.time())
    await redis.hset(verify_key(camera), ticket, req.model_dump_json())


def parse_requests(raw: dict[bytes, bytes]) -> list[VerifyRequest]:
    """The requests in a `gw:verify:{camera}` hash."""
    return load_all(VerifyRequest, ((k.decode(), v) for k, v in raw.items()), "verify request")


async def dismiss(
    redis: aioredis.Redis, camera: str, ticket: str, det: Sighting, for_s: float
) -> None:
    now = time.time()
    key = dismissed_key(camera)
    spots = await redis.hgetall(key)
    stale = [t for t, v in spots.items() if _until(v, t) <= now]  # a bad record goes too
    pipe = redis.pipeline(transaction=True)
    if stale:
        pipe.hdel(key, *stale)
    pipe.hset(key, ticket, json.dumps({**det.model_dump(), "until": now + for_s}))
    await pipe.execute()


def parse_dismissals(raw: dict[bytes, bytes]) -> dict[str, dict]:
    """Ticket id -> dismissed spot ({zone, box, until, ...}) still in force, from the hash."""
    now = time.time()
    return {t.decode(): json.loads(v) for t, v in raw.items() if _until(v, t) > now}


def _until(blob: bytes, ticket: bytes) -> float:
    spot = load(None, blob, "dismissed spot", ticket.decode())
    until = spot.get("until") if isinstance(spot, dict) else None
    return until if isinstance(until, int | float) else 0.0
