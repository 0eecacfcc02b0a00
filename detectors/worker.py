"""`gridwatch detect`: a worker that watches its share of the cameras for violations.

Workers announce themselves in `gw:workers` (a sorted set of heartbeats). Each holds
`gw:lease:detect:{camera}` leases for at most its share (cameras / live workers,
rounded up), so cameras spread over the workers and move to the others within the
lease time when one dies. For each camera it reads the newest sampled frame, runs
the model only where something moved (and every `recheck_s` regardless), applies the
zone rules and puts each violation on `gw:violations`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict

import cv2
import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from detectors.motion import MotionGate
from detectors.rules import RuleConfig, ZoneRule, ZoneRules
from media.leases import Leases
from media.sampler import frames_key
from signaling.cameras import stored_cameras
from signaling.config import Camera, DetectorsConfig

log = logging.getLogger("gridwatch.detect")

WORKERS = "gw:workers"

TrackerFactory = Callable[[], object]  # returns something with .track(bgr) -> list[Detection]


class CameraWatch:
    """One camera's loop: newest frame -> motion gate -> model -> rules -> violations."""

    def __init__(
        self,
        redis: aioredis.Redis,
        camera: Camera,
        make_tracker: TrackerFactory,
        cfg: DetectorsConfig,
    ):
        self.redis = redis
        self.camera = camera
        self.make_tracker = make_tracker
        self.cfg = cfg
        self.frames = self.inferences = self.violations = 0

    def rules(self) -> ZoneRules:
        zones = [
            ZoneRule(z.name, z.kind, list(z.polygon), z.dwell_s, z.hours) for z in self.camera.zones
        ]
        rule_cfg = RuleConfig(
            dict(self.cfg.classes), grace_s=self.cfg.grace_s, cooldown_s=self.cfg.cooldown_s
        )
        return ZoneRules(self.camera.id, zones, rule_cfg)

    async def run(self) -> None:
        tracker = await asyncio.to_thread(self.make_tracker)
        rules, gate = self.rules(), MotionGate()
        key = frames_key(self.camera.id)
        interval = 1.0 / self.camera.detect.fps
        last_id, last_run, detections = b"", 0.0, []
        while True:
            newest = await self.redis.xrevrange(key, count=1)
            if not newest or newest[0][0] == last_id:
                await asyncio.sleep(interval / 2)
                continue
            last_id, fields = newest[0]
            img = cv2.imdecode(np.frombuffer(fields[b"jpeg"], np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                continue
            self.frames += 1
            ts = float(fields[b"ts"])
            if gate.moved(img) or time.monotonic() - last_run >= self.cfg.recheck_s:
                detections = await asyncio.to_thread(tracker.track, img)
                last_run = time.monotonic()
                self.inferences += 1
            # Nothing moved: the same objects are where they were, and their dwell goes on.
            for violation in rules.update(ts, detections):
                await self.publish(violation)

    async def publish(self, violation) -> None:
        event = asdict(violation)
        if self.camera.position is not None:
            event["location"] = self.camera.position.model_dump()
        await self.redis.xadd("gw:violations", {"violation": json.dumps(event)})
        self.violations += 1
        log.info(
            "violation",
            extra={"camera": self.camera.id, "zone": violation.zone, "id": violation.id},
        )


class Worker:
    def __init__(self, redis: aioredis.Redis, cfg: DetectorsConfig, make_tracker: TrackerFactory):
        self.redis = redis
        self.cfg = cfg
        self.make_tracker = make_tracker
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self.leases = Leases(redis, "detect", self.name, cfg.lease_s)
        self.watching: dict[str, tuple[Camera, CameraWatch, asyncio.Task]] = {}

    async def run(self) -> None:
        log.info("detector worker started", extra={"worker": self.name})
        try:
            while True:
                try:
                    await self.cycle()
                except (RedisError, OSError) as e:
                    log.warning("redis unavailable", extra={"error": str(e)})
                await asyncio.sleep(self.cfg.lease_s / 3)
        finally:
            for camera in list(self.watching):
                await self._stop(camera)
            with contextlib.suppress(RedisError, OSError):
                await self.redis.zrem(WORKERS, self.name)

    async def cycle(self) -> None:
        now = time.time()
        await self.redis.zadd(WORKERS, {self.name: now})
        await self.redis.zremrangebyscore(WORKERS, "-inf", now - 3 * self.cfg.lease_s)
        live = max(1, await self.redis.zcount(WORKERS, now - self.cfg.lease_s, "+inf"))
        cameras = {
            c.id: c for c in await stored_cameras(self.redis) if c.detect.enabled and c.zones
        }
        share = math.ceil(len(cameras) / live)
        for cid in list(self.watching):
            camera = cameras.get(cid)
            if camera is None or camera != self.watching[cid][0] or not await self.leases.hold(cid):
                await self._stop(cid)  # gone, changed (restarted below) or lost
        # Over our share (a worker joined): let the others have the rest.
        for cid in sorted(self.watching)[share:]:
            await self._stop(cid)
            await self.leases.release(cid)
        for cid, camera in sorted(cameras.items()):
            if len(self.watching) >= share:
                break
            if cid not in self.watching and await self.leases.hold(cid):
                watch = CameraWatch(self.redis, camera, self.make_tracker, self.cfg)
                task = asyncio.create_task(self._guard(watch), name=f"detect-{cid}")
                self.watching[cid] = (camera, watch, task)
                log.info("watching camera", extra={"camera": cid, "worker": self.name})
        stats = {cid: {"frames": w.frames, "inferences": w.inferences, "violations": w.violations}
                 for cid, (_, w, _) in self.watching.items()}  # fmt: skip
        await self.redis.set(
            f"gw:worker:{self.name}", json.dumps(stats), ex=int(3 * self.cfg.lease_s)
        )

    async def _guard(self, watch: CameraWatch) -> None:
        # A camera's failure (a bad frame, Redis away) restarts its loop, never the worker.
        while True:
            try:
                await watch.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("camera loop failed; restarting", extra={"camera": watch.camera.id})
                await asyncio.sleep(1)

    async def _stop(self, cid: str) -> None:
        _, _, task = self.watching.pop(cid)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def yolo_factory(cfg: DetectorsConfig) -> TrackerFactory:
    from detectors.yolo import YoloTracker

    return lambda: YoloTracker(cfg.weights, cfg.imgsz, cfg.conf, cfg.device)
