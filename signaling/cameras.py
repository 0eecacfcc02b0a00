"""Cameras: stored in Redis (shared by every node), served by /api/cameras."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket

import redis.asyncio as aioredis

from dispatch.events import WALL as WALL_CHANNEL
from dispatch.records import load, load_all
from media.hub import StreamHub
from media.sources import SECRET_PARAMS, parse_source, redact
from media.stream import Stream
from signaling.config import Camera, MediaConfig
from signaling.http_errors import JsonError
from signaling.logs import add_secret

log = logging.getLogger("gridwatch.cameras")

KEY = "gw:cameras"


async def check_api_camera(camera: Camera, media: MediaConfig, stored: Camera | None = None) -> None:
    """A camera from the API may use only `media.api_sources` schemes and reach no host
    in `media.deny_hosts` (its name resolved now); JsonError 400 naming the field. A URL
    the stored camera already has (a rename of a config camera) is not new input."""
    for field, url in (("source", camera.source), ("detect_source", camera.detect_source)):
        if url is None or (stored is not None and url == getattr(stored, field)):
            continue
        scheme = url.partition(":")[0].lower()
        if scheme not in media.api_sources:
            raise JsonError(400, f"{field}: {scheme}: sources come from the config file only; through the API: "
                                 f"{', '.join(media.api_sources)} (media.api_sources)", "forbidden_source")  # fmt: skip
        host = parse_source(url).host
        if host is None or not media.deny_hosts:
            continue
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as e:
            raise JsonError(400, f"{field}: host {host!r} does not resolve ({e})", "forbidden_source") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if any(address in net for net in media.deny_hosts):
                raise JsonError(400, f"{field}: host {host} ({address}) is not one this node may reach "
                                     f"(media.deny_hosts)", "forbidden_source")  # fmt: skip


def register_secrets(camera: Camera) -> None:
    for url in (camera.source, camera.detect_source):
        if url:
            source = parse_source(url)
            add_secret(source.password)
            for name, value in source.params.items():
                if name.lower() in SECRET_PARAMS:
                    add_secret(value)


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
    items = sorted((cid.decode(), blob) for cid, blob in (await redis.hgetall(KEY)).items())
    return load_all(Camera, items, "camera")


class CameraStore:
    def __init__(self, redis: aioredis.Redis, hub: StreamHub):
        self.redis = redis
        self.hub = hub

    async def all(self) -> list[Camera]:
        return await stored_cameras(self.redis)

    async def many(self, ids: list[str]) -> list[Camera]:
        """The cameras among `ids` that exist, in one round trip."""
        blobs = await self.redis.hmget(KEY, ids) if ids else []
        return load_all(Camera, zip(ids, blobs, strict=True), "camera")

    async def get(self, camera_id: str) -> Camera | None:
        return load(Camera, await self.redis.hget(KEY, camera_id), "camera", camera_id)

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
        await self.redis.publish(WALL_CHANNEL, json.dumps({"type": "camera", "id": camera_id, "deleted": deleted}))

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
