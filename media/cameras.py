"""The camera registry: every camera of the centre in Redis (`gw:cameras`, id -> camera
JSON), next to the streams it describes; any process reads it (the detector workers
too), the server writes it.

Every write also goes on the change feed (`gw:cameras:feed`, a stream of `{id}`): a
process keeps its own copy of the registry (CameraFeed), read whole once and then only
what changed, so that no loop re-reads and re-validates every camera of the centre.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from gridwatch.contracts.channels import WALL
from gridwatch.contracts.records import load, load_all
from gridwatch.contracts.retry import forever
from gridwatch.media.config import Camera
from gridwatch.media.sources import Source, parse_source, redact

if TYPE_CHECKING:  # the hub pulls in the ONVIF and WebRTC stacks: a reader of the list needs neither
    from gridwatch.media.hub import StreamHub
    from gridwatch.media.stream import Stream

log = logging.getLogger("gridwatch.cameras")

KEY = "gw:cameras"
SEEDED = "gw:cameras:seeded"  # camera id -> SHA-256 of its config entry, as last written
FEED = "gw:cameras:feed"  # stream of {id}: a camera written or deleted
FEED_MAXLEN = 10_000  # a reader further behind than this reads the registry whole again


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


class CameraFeed:
    """This process's copy of the registry (`cameras`, id -> Camera), current within
    milliseconds of any write on any node.

    `load()` reads it whole (validation in a thread: 20,000 cameras take a second of
    CPU); `follow()` then reads the change feed, blocking, and re-reads only the cameras
    named there. A reader that fell further behind than the feed keeps, or that lost
    Redis, loads whole again. Listeners get the ids that changed."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self.cameras: dict[str, Camera] = {}
        self.listeners: list[Callable[[set[str]], None]] = []
        self.reloads = 0  # whole reads (metrics)
        self.changes = 0  # cameras re-read from the feed (metrics)
        self._last = "0-0"  # the newest feed entry applied
        self._lost = False  # Redis went away since

    async def load(self) -> None:
        """Read the whole registry (the feed position first: a write in between is
        read twice, never missed), a thousand cameras per round trip: one reply of
        20,000 would be 10 MB, past the socket timeout on a loaded node."""
        newest = await self.redis.xrevrange(FEED, count=1)
        last = newest[0][0].decode() if newest else "0-0"
        items = sorted([(cid.decode(), blob) async for cid, blob in self.redis.hscan_iter(KEY, count=1000)])
        cameras = await asyncio.to_thread(load_all, stored_camera, items, "camera")
        before = dict(self.cameras)
        # In place: placement and the recorders hold this very mapping.
        self.cameras.clear()
        self.cameras.update((c.id, c) for c in cameras)
        self._last, self._lost = last, False
        self.reloads += 1
        changed = {i for i in before.keys() | self.cameras.keys() if before.get(i) != self.cameras.get(i)}
        self._tell(changed)

    async def follow(self, block_ms: int = 1000) -> None:
        """Apply the feed until cancelled, from where load() left it (not loaded yet, a
        failed load, or Redis lost meanwhile: loaded, retried while Redis is away)."""
        await forever(lambda: self.step(block_ms), "camera feed", log)

    async def step(self, block_ms: int) -> None:
        """Wait up to `block_ms` for feed entries and apply them."""
        if self._lost or not self.reloads:  # writes meanwhile may be past the feed's length
            await self.load()
        try:
            got = await self.redis.xread({FEED: self._last}, count=1000, block=block_ms)
        except (RedisError, OSError):
            self._lost = True
            raise
        if not got:
            return
        entries = got[0][1]
        if self._last != "0-0" and not await self.redis.xrange(FEED, self._last, self._last):
            log.warning("camera feed trimmed past this reader: reading the registry whole")
            await self.load()
            return
        ids = sorted({fields[b"id"].decode() for _, fields in entries if b"id" in fields})
        blobs = await self.redis.hmget(KEY, ids) if ids else []
        for cid, blob in zip(ids, blobs, strict=True):
            camera = load(stored_camera, blob, "camera", cid)
            if camera is None:
                self.cameras.pop(cid, None)
            else:
                self.cameras[cid] = camera
        self._last = entries[-1][0].decode()
        self.changes += len(ids)
        self._tell(set(ids))

    def apply(self, camera_id: str, camera: Camera | None) -> None:
        """A write of this process, applied at once (the feed brings it again)."""
        if camera is None:
            self.cameras.pop(camera_id, None)
        else:
            self.cameras[camera_id] = camera
        self._tell({camera_id})

    def _tell(self, changed: set[str]) -> None:
        if changed:
            for listener in self.listeners:
                listener(changed)


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
        self.feed = CameraFeed(redis)
        self.feed.listeners.append(self._changed_elsewhere)
        # The source this node pulls a camera from: its own, or the owner node's relay.
        self.source_of: Callable[[Camera], Source] = lambda camera: parse_source(camera.source)

    async def all(self) -> list[Camera]:
        """Every camera, by id, from this node's copy (no Redis round trip)."""
        return [self.feed.cameras[i] for i in sorted(self.feed.cameras)]

    def _changed_elsewhere(self, ids: set[str]) -> None:
        for cid in ids:
            camera = self.feed.cameras.get(cid)
            stream = self.hub.get(cid)
            if camera is None:
                if stream is not None and not stream.pushed:
                    self.hub.remove(cid)  # deleted, perhaps through another node
            else:
                self.remember(camera)
                if stream is not None:  # a source changed on another node: pull the new one
                    self.hub.upsert(cid, self.source_of(camera))

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
        self.feed.apply(camera.id, camera)
        await self._changed(camera.id, deleted=False)
        log.info("camera saved", extra={"camera": camera.id, "source": redact(camera.source)})

    async def delete(self, camera_id: str) -> bool:
        removed = await self.redis.hdel(KEY, camera_id)
        self.feed.apply(camera_id, None)
        if removed:
            await self._changed(camera_id, deleted=True)
            log.info("camera deleted", extra={"camera": camera_id})
        return bool(removed)

    async def _changed(self, camera_id: str, *, deleted: bool) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(FEED, {"id": camera_id}, maxlen=FEED_MAXLEN, approximate=True)
            # Walls add, rename or drop the camera's tile and marker at once.
            pipe.publish(WALL, json.dumps({"type": "camera", "id": camera_id, "deleted": deleted}))
            await pipe.execute()

    async def stream(self, camera_id: str) -> Stream | None:
        """The camera's stream on this node, created from the store on first use."""
        camera = await self.get(camera_id)
        if camera is None:
            stream = self.hub.get(camera_id)
            # Deleted through another node; a pushed stream, or one relayed from the node
            # it is published to, is no camera's (the feed removes a deleted camera's relay).
            if stream is not None and stream.source.kind not in ("push", "relay"):
                self.hub.remove(camera_id)
            return None
        self.remember(camera)
        return self.hub.upsert(camera.id, self.source_of(camera))

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
        await self.feed.load()
        for camera in self.feed.cameras.values():
            self.remember(camera)
        log.info("cameras loaded", extra={"count": len(self.feed.cameras)})
