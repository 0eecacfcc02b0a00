"""The frame sampler: a camera's pictures for the detectors, decoded once, at the detection rate.

It is a consumer of the camera's stream (the sub-stream when one is configured). When
the detection rate is at most one frame a second and the camera sends a key frame at
least that often, only key frames are decoded; otherwise every frame is decoded (a P
frame needs the ones before it) and frames are kept at the detection rate. Frames go
to `gw:frames:{camera}` as JPEG, downscaled, in a stream capped at a few entries:
newest wins, so a slow detector skips frames and never builds a backlog.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import av
import cv2
import redis.asyncio as aioredis

from gridwatch.contracts.frames import FRAMES_MAXLEN, frames_key
from gridwatch.media.hub import StreamHub
from gridwatch.media.leases import LeasedWork, Leases
from gridwatch.media.sources import parse_source
from gridwatch.media.stream import Stream, StreamClosed

log = logging.getLogger("gridwatch.sampler")

class Sampler:
    def __init__(
        self, redis: aioredis.Redis, camera: str, stream: Stream, fps: float, width: int = 640
    ):
        self.redis = redis
        self.camera = camera
        self.stream = stream
        self.interval = 1.0 / fps
        self.width = width
        self.keyframes_only = fps <= 1.0
        self.decoder = av.CodecContext.create("h264", "r")
        self._last = 0.0
        self._keyframe_times: list[float] = []

    async def run(self) -> None:
        consumer = self.stream.attach(f"sampler:{self.camera}")
        try:
            while True:
                packet = await consumer.get()
                now = time.monotonic()
                if packet.is_keyframe:
                    self._keyframe_times = [*self._keyframe_times[-4:], now]
                if self.keyframes_only and not self._gop_fits():
                    self.keyframes_only = False  # key frames too rare for this rate: decode all
                    log.info("sampler decodes every frame", extra={"camera": self.camera})
                if self.keyframes_only and not packet.is_keyframe:
                    continue
                wanted = now - self._last >= self.interval * 0.9
                if not wanted and self.keyframes_only:
                    continue
                jpeg = await asyncio.to_thread(self._decode, packet, wanted)
                if jpeg is not None:
                    self._last = now
                    await self.redis.xadd(
                        frames_key(self.camera),
                        {"ts": time.time(), "jpeg": jpeg[0], "width": jpeg[1], "height": jpeg[2]},
                        maxlen=FRAMES_MAXLEN,
                        approximate=False,
                    )
        except StreamClosed:
            pass
        finally:
            consumer.close()

    def _gop_fits(self) -> bool:
        times = self._keyframe_times
        if len(times) < 3:
            return True  # not known yet: assume the usual 1-2 s GOP
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return max(gaps) <= self.interval * 1.5

    def _decode(self, packet: av.Packet, wanted: bool) -> tuple[bytes, int, int] | None:
        out = None
        try:
            frames = self.decoder.decode(packet)
        except av.FFmpegError:
            return None  # joined mid-GOP: nothing until the next key frame
        for frame in frames:
            self.stream.state.sampler_decodes += 1
            if not wanted:
                continue
            img = frame.to_ndarray(format="bgr24")
            h, w = img.shape[:2]
            if w > self.width:
                h, w = round(h * self.width / w), self.width
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                out = (buf.tobytes(), w, h)
        return out


@dataclass(frozen=True)
class Target:
    camera: str
    source: str
    detect_source: str | None  # a sub-stream, sampled instead of the main one when set
    fps: float


class Samplers:
    """A sampler for every detecting camera whose `media` lease this node holds."""

    def __init__(
        self,
        redis: aioredis.Redis,
        hub: StreamHub,
        targets: Callable[[], Awaitable[list[Target]]],
        holder: str,
        lease_s: float = 15.0,
        mine: Callable[[str], bool] = lambda camera: True,  # the placement: cameras this node owns
        frames: aioredis.Redis | None = None,  # the frame bus (redis.frames_url); None: `redis`
    ):
        self.redis = redis
        self.frames = frames or redis
        self.hub = hub
        self.targets = targets
        self.work = LeasedWork(Leases(redis, "media", holder, lease_s), self._wanted,
                               self._sample, lease_s / 3, mine=mine)  # fmt: skip

    async def _wanted(self) -> dict[str, Target]:
        return {t.camera: t for t in await self.targets()}

    async def run(self) -> None:
        await self.work.run()

    async def _sample(self, camera: str, target: Target) -> None:
        if target.detect_source:
            stream_id, source = f"{camera}@detect", target.detect_source
        else:
            stream_id, source = camera, target.source
        stream = self.hub.upsert(stream_id, parse_source(source))
        log.info("sampling", extra={"camera": camera, "stream": stream_id, "fps": target.fps})
        await Sampler(self.frames, camera, stream, target.fps).run()
