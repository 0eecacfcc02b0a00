"""Detector output into tickets: streams read through the consumer group `dispatch`.

- `gw:violations`: each violation opens a ticket, with the violation id as its key, so
  a redelivered entry never makes a second one; its pictures become the ticket's
  evidence, saved on the node that handles the entry, which is recorded as their
  folder's holder (`gw:evidence:holders`): the evidence clip joins them there.
- `gw:verifications`: the detector's answer to a resolved camera ticket: the zone is
  clear (`verify`) or not (`reopen`, back to the officer), with a snapshot.

Every node reads the group; an entry is acknowledged (and deleted: it carries
pictures) only once it has been acted on, and entries a dead node held are claimed by
another after `claim_idle_s`. A node acts on an entry only while it is still pending to
it: one held up past `claim_idle_s` after reading it leaves it to the node that claimed it. Entries that can never be acted on go to
`{stream}:dead` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated

import redis.asyncio as aioredis
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from redis.exceptions import ResponseError

from gridwatch.contracts.detections import VERIFICATIONS, Sighting
from gridwatch.contracts.evidence import EvidenceStore, hold
from gridwatch.contracts.geo import Position
from gridwatch.contracts.marks import add_mark
from gridwatch.contracts.node import node_id
from gridwatch.contracts.plates import PlateSeen
from gridwatch.contracts.retry import forever
from gridwatch.contracts.roles import SYSTEM
from gridwatch.dispatch.service import Dispatch
from gridwatch.dispatch.tickets import NewTicket, TransitionError

log = logging.getLogger("gridwatch.violations")

GROUP = "dispatch"
VIOLATIONS = "gw:violations"
CATEGORIES = {"no_parking": "illegal_parking", "no_stall": "street_stall"}
PICTURES = (b"first.jpg", b"confirmed.jpg", b"crop.jpg", b"plate.jpg", b"snapshot.jpg")
DETECTION = "violation.json"  # the violation event, saved in its evidence folder


class Unusable(Exception):
    """An entry that can never be acted on; the message says why."""


class GroupConsumer:
    """Reads one stream through the `dispatch` group; subclasses act on each entry."""

    stream: str

    def __init__(self, redis: aioredis.Redis, claim_idle_s: float):
        self.redis = redis
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.name = node_id()

    async def run(self) -> None:
        await forever(self._consume, f"{self.stream} consumer", log)

    async def _consume(self) -> None:
        # The group again after an error: Redis may have come back empty.
        await self._ensure_group()
        while True:
            _, claimed, _ = await self.redis.xautoclaim(
                self.stream, GROUP, self.name, self.claim_idle_ms, "0-0", count=100
            )
            for entry_id, fields in claimed:
                await self._handle(entry_id, fields)
            batches = await self.redis.xreadgroup(
                GROUP, self.name, {self.stream: ">"}, count=100, block=1000
            )
            for _, entries in batches or []:
                for entry_id, fields in entries:
                    await self._handle(entry_id, fields)

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    async def _handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        if not await self._still_ours(entry_id):
            # Read, then held up (a pause, a stopped process) past claim_idle_s: another
            # node claimed it and acted on it, or does now. Acting again would save its
            # pictures here too, and the ticket's evidence would lie in two places.
            log.info("detector entry skipped: another node took it over",
                     extra={"stream": self.stream, "entry": entry_id.decode()})  # fmt: skip
            return
        try:
            await self.handle(entry_id, fields)
        except Unusable as e:
            await self._dead(entry_id, fields, str(e))
            return
        await self._done(entry_id)

    async def handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        raise NotImplementedError

    async def _still_ours(self, entry_id: bytes) -> bool:
        """Whether the entry is pending to this consumer still (not claimed by another
        since it was read, nor acknowledged)."""
        pending = await self.redis.xpending_range(self.stream, GROUP, min=entry_id, max=entry_id, count=1,
                                                  consumername=self.name)  # fmt: skip
        return bool(pending)

    async def _done(self, entry_id: bytes) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        await pipe.execute()

    async def _dead(self, entry_id: bytes, fields: dict[bytes, bytes], why: str) -> None:
        log.error(
            "detector entry cannot be acted on",
            extra={"stream": self.stream, "entry": entry_id.decode(), "why": why},
        )
        blob = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()
                if k not in PICTURES}  # fmt: skip
        await self.redis.xadd(
            f"{self.stream}:dead", {"entry": entry_id, "why": why, "fields": json.dumps(blob)},
            maxlen=10000,
        )  # fmt: skip
        await self._done(entry_id)


def save_pictures(store: EvidenceStore, folder: str, fields: dict[bytes, bytes]) -> list[str]:
    return [store.save(folder, name.decode(), fields[name]) for name in PICTURES if name in fields]


async def keep_pictures(redis: aioredis.Redis, store: EvidenceStore, folder: str, fields: dict[bytes, bytes],
                        node: str) -> list[str]:  # fmt: skip
    """Save an entry's pictures on this node (`node`) and record it as the folder's holder
    (the last to save the whole set: a redelivered entry saves them all again); their names."""
    pictures = await asyncio.to_thread(save_pictures, store, folder, fields)
    await hold(redis, store.folder(folder), node)
    return pictures


class ViolationEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, Field(min_length=1, max_length=128)]
    camera: str
    zone: str
    kind: str
    label: str = ""
    box: tuple[float, float, float, float] | None = None
    first_seen: float
    confirmed: float
    location: Position | None = None  # the camera's map position, when the detector knows it
    evidence: list[str] = []
    plate: PlateSeen | None = None  # no_parking: the vehicle's plate, null when none was read

    @field_validator("plate", mode="wrap")
    @classmethod
    def _plate_or_none(
        cls, value: object, handler: ValidatorFunctionWrapHandler
    ) -> PlateSeen | None:
        # A plate that is not one is the reader's fault, not the violation's: the ticket
        # opens without it rather than the whole event going to the dead letters.
        try:
            return handler(value)
        except ValidationError as e:
            log.warning(
                "plate dropped from a violation",
                extra={"why": str(e.errors(include_url=False)[:1])},
            )
            return None


class ViolationConsumer(GroupConsumer):
    stream = VIOLATIONS

    def __init__(self, redis: aioredis.Redis, dispatch: Dispatch, positions, evidence: EvidenceStore,
                 claim_idle_s: float, node: str):  # fmt: skip
        super().__init__(redis, claim_idle_s)
        self.dispatch = dispatch
        self.positions = positions  # async camera id -> Position | None
        self.evidence = evidence
        self.node = node  # cluster.node: the holder of the evidence saved here

    async def handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            event = ViolationEvent.model_validate_json(fields.get(b"violation", b""))
        except ValidationError as e:
            raise Unusable(f"malformed violation: {e.errors(include_url=False)[:3]}") from None
        category = CATEGORIES.get(event.kind)
        if category is None:
            raise Unusable(f"unknown kind {event.kind!r}")
        location = event.location or await self.positions(event.camera)
        if location is None:
            raise Unusable(f"camera {event.camera!r} has no position")
        # The detector's own message, as it came (times, provenance): the evidence package's
        # detection facts. Beside the pictures, not listed among the ticket's evidence.
        await asyncio.to_thread(self.evidence.save, event.id, DETECTION, fields[b"violation"])
        pictures = await keep_pictures(self.redis, self.evidence, event.id, fields, self.node)
        detection = (
            Sighting(zone=event.zone, kind=event.kind, label=event.label, box=event.box)
            if event.box else None
        )  # fmt: skip
        new = NewTicket(
            key=event.id,
            source="camera",
            category=category,
            location=location,
            camera=event.camera,
            detection=detection,
            plate=event.plate,
            evidence=[*event.evidence, *pictures],
            description=f"{event.label or 'object'} in {event.zone} for {event.confirmed - event.first_seen:.0f} s",
        )
        ticket, made = await self.dispatch.open(new, "detector", "device")
        log.info("violation", extra={"violation": event.id, "ticket": ticket.id, "new": made})
        if made:  # the camera's recorder cuts the evidence clip around the confirmation
            await add_mark(self.redis, event.camera, event.confirmed, ticket.id, event.id)


class VerificationConsumer(GroupConsumer):
    stream = VERIFICATIONS

    def __init__(self, redis: aioredis.Redis, dispatch: Dispatch, evidence: EvidenceStore,
                 claim_idle_s: float, node: str):  # fmt: skip
        super().__init__(redis, claim_idle_s)
        self.dispatch = dispatch
        self.evidence = evidence
        self.node = node  # cluster.node: the holder of the evidence saved here

    async def handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            ticket_id = fields[b"ticket"].decode()
            clear = fields[b"clear"] == b"1"
            why = fields[b"why"].decode()[:500]
        except (KeyError, UnicodeDecodeError):
            raise Unusable("malformed verification: needs ticket, clear and why") from None
        ticket = await self.dispatch.tickets.get(ticket_id)
        if ticket is None:
            raise Unusable(f"no ticket {ticket_id!r}")
        folder = f"{ticket.key or ticket.id}-verify-{entry_id.decode()}"
        pictures = await keep_pictures(self.redis, self.evidence, folder, fields, self.node)
        # A redelivered entry (the node died before acting) writes the same names again.
        if new := [p for p in pictures if p not in ticket.evidence]:
            await self.dispatch.tickets.annotate(
                ticket_id, "detector", "evidence", why, evidence=[*ticket.evidence, *new][-32:]
            )
        try:
            await self.dispatch.act(
                ticket_id, "verify" if clear else "reopen", "detector", SYSTEM, why=why
            )
        except TransitionError as e:
            # Moved on meanwhile (a supervisor verified or cancelled it): nothing to do.
            log.info("verification not applied", extra={"ticket": ticket_id, "why": str(e)})
            return
        log.info("ticket verified" if clear else "ticket reopened: zone not clear",
                 extra={"ticket": ticket_id, "why": why})  # fmt: skip
