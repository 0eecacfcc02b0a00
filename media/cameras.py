"""The camera registry: every camera of the centre in Redis (`gw:cameras`, id -> camera
JSON), next to the streams it describes; any process reads it (the detector workers
too), the server writes it."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from pydantic import ValidationError

from gridwatch.contracts.channels import WALL
from gridwatch.contracts.records import load, load_all
from gridwatch.media.config import Camera
from gridwatch.media.sources import parse_source, redact

if TYPE_CHECKING:  # the hub pulls in the ONVIF and WebRTC stacks: a reader of the list needs neither
    from gridwatch.media.hub import StreamHub
    from gridwatch.media.stream import Stream

log = logging.getLogger("gridwatch.cameras")

KEY = "gw:cameras"
SEEDED = "gw:cameras:seeded"  # camera id -> SHA-256 of its config entry, as last written


_told: set[tuple[object, tuple]] = set()  # (camera, zones) whose unframed zones were logged


def stored_camera(**data: object) -> Camera:
    """A camera as stored in `gw:cameras` (its JSON's fields), for contracts.records.load.

    Zones that a version before relative zones stored in pixels with no `frame` cannot be
    placed on any picture now (what size they were drawn on is unknown): they are left
    out, each logged by name, so that the camera stays on the wall and only those zones
    need drawing again. Raises pydantic's ValidationError for anything else wrong."""
    try:
        return Camera.model_validate(data)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        unframed = {err["loc"][1] for err in errors if err["loc"][::2] == ("zones", "frame")}
        zones = data.get("zones")
        if not unframed or len(unframed) < len(errors) or not isinstance(zones, list):
            raise
    names = tuple(z.get("name") for i, z in enumerate(zones) if i in unframed)
    if (data.get("id"), names) not in _told:  # once per process, not at every read of the list
        _told.add((data.get("id"), names))
        log.error("stored zones in pixels with no frame left out: draw them again",
                  extra={"camera": data.get("id"), "zones": list(names)})  # fmt: skip
    return Camera.model_validate({**data, "zones": [z for i, z in enumerate(zones) if i not in unframed]})


async def stored_cameras(redis: aioredis.Redis) -> list[Camera]:
    """Every camera in Redis, by id; one that no longer validates is logged and left out."""
    items = sorted((cid.decode(), blob) for cid, blob in (await redis.hgetall(KEY)).items())
    return load_all(stored_camera, items, "camera")


class CameraExists(Exception):
    """A camera with that id is stored already."""


class CameraStore:
    """The camera registry (`gw:cameras`) and this node's streams of those cameras.
    `remember(camera)` is called with each camera before its stream is made (the server
    registers its passwords for redaction)."""

    def __init__(self, redis: aioredis.Redis, hub: StreamHub, remember: Callable[[Camera], None] = lambda c: None):
        self.redis = redis
        self.hub = hub
        self.remember = remember

    async def all(self) -> list[Camera]:
        return await stored_cameras(self.redis)

    async def many(self, ids: list[str]) -> list[Camera]:
        """The cameras among `ids` that exist, in one round trip."""
        blobs = await self.redis.hmget(KEY, ids) if ids else []
        return load_all(stored_camera, zip(ids, blobs, strict=True), "camera")

    async def get(self, camera_id: str) -> Camera | None:
        return load(stored_camera, await self.redis.hget(KEY, camera_id), "camera", camera_id)

    async def put(self, camera: Camera, *, create: bool = False) -> None:
        self.remember(camera)
        blob = camera.model_dump_json()
        if create:
            if not await self.redis.hsetnx(KEY, camera.id, blob):
                raise CameraExists(f"camera {camera.id!r} exists")
        else:
            await self.redis.hset(KEY, camera.id, blob)
        self.hub.upsert(camera.id, parse_source(camera.source))
        await self._changed(camera.id, deleted=False)
        log.info("camera saved", extra={"camera": camera.id, "source": redact(camera.source)})

    async def delete(self, camera_id: str) -> bool:
        removed = await self.redis.hdel(KEY, camera_id)
        self.hub.remove(camera_id)
        if removed:
            await self._changed(camera_id, deleted=True)
            log.info("camera deleted", extra={"camera": camera_id})
        return bool(removed)

    async def _changed(self, camera_id: str, *, deleted: bool) -> None:
        # Walls add, rename or drop the camera's tile and marker at once.
        await self.redis.publish(WALL, json.dumps({"type": "camera", "id": camera_id, "deleted": deleted}))

    async def stream(self, camera_id: str) -> Stream | None:
        """The camera's stream on this node, created from the store on first use."""
        camera = await self.get(camera_id)
        if camera is None:
            stream = self.hub.get(camera_id)
            if stream is not None and not stream.pushed:
                self.hub.remove(camera_id)  # deleted through another node
            return None
        self.remember(camera)
        return self.hub.upsert(camera.id, parse_source(camera.source))

    async def load(self, configured: list[Camera]) -> None:
        """The config file seeds its cameras: each entry is written into the registry when
        it is new or changed in the file since it was last written (`gw:cameras:seeded`
        keeps a digest of each), so that what was edited or deleted on the operations
        screens since stays as it was across restarts, until the file's entry changes."""
        for camera in configured:
            # What the file says, not the defaults filled in: a field a later version adds
            # must not count as a change to every camera (and write over its edits).
            digest = hashlib.sha256(camera.model_dump_json(exclude_unset=True).encode()).hexdigest()
            if (await self.redis.hget(SEEDED, camera.id) or b"").decode() == digest:
                continue
            await self.put(camera)
            await self.redis.hset(SEEDED, camera.id, digest)
            log.info("camera written from the config file", extra={"camera": camera.id})
        for camera in await self.all():
            self.remember(camera)
            self.hub.upsert(camera.id, parse_source(camera.source))
        log.info("cameras loaded", extra={"count": len(self.hub.streams)})
