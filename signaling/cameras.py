"""Cameras: stored in Redis (shared by every node), served by /api/cameras."""

from __future__ import annotations

import json
import logging

import redis.asyncio as aioredis
from pydantic import TypeAdapter, ValidationError

from dispatch.events import WALL
from media.hub import StreamHub
from media.sources import parse_source, redact
from media.stream import Stream
from signaling.config import Camera, Zone
from signaling.http_errors import JsonError, validated
from signaling.logs import add_secret

log = logging.getLogger("gridwatch.cameras")

KEY = "gw:cameras"
ZONES = TypeAdapter(list[Zone])


def validate_camera(data: dict) -> Camera:
    return validated(Camera, data, "invalid_camera")


def validate_zones(data: object) -> list[Zone]:
    if not isinstance(data, list):
        raise JsonError(400, "zones: must be a list")
    return validated(ZONES, data, "invalid_zones", prefix="zones: ")


def register_secrets(camera: Camera) -> None:
    for url in (camera.source, camera.detect_source):
        if url:
            add_secret(parse_source(url).password)


def public_view(camera: Camera, stream: Stream | None, viewers: int) -> dict:
    """What the API shows: no password, ever, and the stream's live state."""
    data = camera.model_dump(mode="json")
    data["source"] = redact(camera.source)
    if camera.detect_source:
        data["detect_source"] = redact(camera.detect_source)
    st = stream.state if stream else None
    data["state"] = {
        "online": bool(st and st.online),
        "codec": st.codec if st else None,
        "width": st.width if st else None,
        "height": st.height if st else None,
        "fps": round(st.fps, 2) if st else 0.0,
        "bitrate": round(st.bitrate) if st else 0,
        "last_error": st.last_error if st else None,
        "reconnects": st.reconnects if st else 0,
        "viewers": viewers,
        "consumers": len(stream.consumers) if stream else 0,
    }
    return data


async def stored_cameras(redis: aioredis.Redis) -> list[Camera]:
    """Every camera in Redis, by id; one that no longer validates is logged and left out."""
    cameras = []
    for cid, blob in sorted((await redis.hgetall(KEY)).items()):
        try:
            cameras.append(Camera.model_validate_json(blob))
        except ValidationError as e:
            log.error("stored camera is invalid", extra={"camera": cid.decode(), "error": str(e)})
    return cameras


class CameraStore:
    def __init__(self, redis: aioredis.Redis, hub: StreamHub):
        self.redis = redis
        self.hub = hub

    async def all(self) -> list[Camera]:
        return await stored_cameras(self.redis)

    async def many(self, ids: list[str]) -> list[Camera]:
        """The cameras among `ids` that exist, in one round trip."""
        blobs = await self.redis.hmget(KEY, ids) if ids else []
        return [Camera.model_validate_json(b) for b in blobs if b]

    async def get(self, camera_id: str) -> Camera | None:
        blob = await self.redis.hget(KEY, camera_id)
        return Camera.model_validate_json(blob) if blob else None

    async def put(self, camera: Camera, *, create: bool = False) -> None:
        register_secrets(camera)
        blob = camera.model_dump_json()
        if create:
            if not await self.redis.hsetnx(KEY, camera.id, blob):
                raise JsonError(409, f"camera {camera.id!r} exists", "exists")
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
        register_secrets(camera)
        return self.hub.upsert(camera.id, parse_source(camera.source))

    async def load(self, configured: list[Camera]) -> None:
        """Config cameras are written over their stored copies; API-made ones stay."""
        for camera in configured:
            await self.put(camera)
        for camera in await self.all():
            register_secrets(camera)
            self.hub.upsert(camera.id, parse_source(camera.source))
        log.info("cameras loaded", extra={"count": len(self.hub.streams)})
