"""Detector violations into tickets: the `gw:violations` stream, consumer group `dispatch`.

Every node reads the group; an entry is acknowledged only once its ticket exists, and
entries a dead node held are claimed by another after `claim_idle_s`. Tickets are
opened with the violation id as key, so a redelivered entry never makes a second one.
Entries that can never become a ticket go to `gw:violations:dead` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Annotated

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError, ResponseError

from dispatch.service import Dispatch
from dispatch.tickets import Location, NewTicket

log = logging.getLogger("gridwatch.violations")

STREAM, GROUP, DEAD = "gw:violations", "dispatch", "gw:violations:dead"
CATEGORIES = {"no_parking": "illegal_parking", "no_stall": "street_stall"}


class ViolationEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, Field(min_length=1, max_length=128)]
    camera: str
    zone: str
    kind: str
    label: str = ""
    first_seen: float
    confirmed: float
    location: Location | None = None  # the camera's map position, when the detector knows it
    evidence: list[str] = []


class ViolationConsumer:
    def __init__(self, redis: aioredis.Redis, dispatch: Dispatch, positions, claim_idle_s: float):
        self.redis = redis
        self.dispatch = dispatch
        self.positions = positions  # async camera id -> Location | None
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.name = f"{socket.gethostname()}-{os.getpid()}"

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def run(self) -> None:
        while True:
            try:
                await self._ensure_group()
                while True:
                    _, claimed, _ = await self.redis.xautoclaim(
                        STREAM, GROUP, self.name, self.claim_idle_ms, "0-0", count=100
                    )
                    for entry_id, fields in claimed:
                        await self.handle(entry_id, fields)
                    batches = await self.redis.xreadgroup(
                        GROUP, self.name, {STREAM: ">"}, count=100, block=1000
                    )
                    for _, entries in batches or []:
                        for entry_id, fields in entries:
                            await self.handle(entry_id, fields)
            except (RedisError, OSError) as e:
                log.warning("violation consumer lost redis; retrying", extra={"error": str(e)})
                await asyncio.sleep(1)

    async def handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            event = ViolationEvent.model_validate_json(fields.get(b"violation", b""))
        except ValidationError as e:
            await self._dead(
                entry_id, fields, f"malformed violation: {e.errors(include_url=False)[:3]}"
            )
            return
        category = CATEGORIES.get(event.kind)
        location = event.location or await self.positions(event.camera)
        if category is None or location is None:
            why = (
                f"unknown kind {event.kind!r}"
                if category is None
                else f"camera {event.camera!r} has no position"
            )
            await self._dead(entry_id, fields, why)
            return
        new = NewTicket(
            key=event.id,
            source="camera",
            category=category,
            location=location,
            camera=event.camera,
            evidence=event.evidence,
            description=f"{event.label or 'object'} in {event.zone} for {event.confirmed - event.first_seen:.0f} s",
        )
        ticket, made = await self.dispatch.open(new, "detector", "device")
        await self.redis.xack(STREAM, GROUP, entry_id)
        log.info("violation", extra={"violation": event.id, "ticket": ticket.id, "new": made})

    async def _dead(self, entry_id: bytes, fields: dict[bytes, bytes], why: str) -> None:
        log.error(
            "violation cannot become a ticket", extra={"entry": entry_id.decode(), "why": why}
        )
        blob = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
        await self.redis.xadd(
            DEAD, {"entry": entry_id, "why": why, "fields": json.dumps(blob)}, maxlen=10000
        )
        await self.redis.xack(STREAM, GROUP, entry_id)
