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
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from typing import TypeVar

import cv2
import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gridwatch.contracts.detections import (
    VERIFICATIONS,
    VerifyRequest,
    dismissed_key,
    parse_dismissals,
    parse_requests,
    state_key,
    verify_key,
)
from gridwatch.contracts.frames import FRAMES_MAXLEN, frames_key
from gridwatch.contracts.node import node_id
from gridwatch.contracts.retry import forever
from gridwatch.detectors import evidence
from gridwatch.detectors.config import DetectorsConfig
from gridwatch.detectors.motion import ZoneGate, small_grey
from gridwatch.detectors.plate_book import PlateBook, load_reader
from gridwatch.detectors.plates import PlateRead, PlateReader
from gridwatch.detectors.provenance import provenance
from gridwatch.detectors.rules import RuleConfig, Violation, ZoneRule, ZoneRules
from gridwatch.detectors.verify import Outcome, Verifier
from gridwatch.media.cameras import CameraFeed
from gridwatch.media.config import Camera
from gridwatch.media.leases import Leases

log = logging.getLogger("gridwatch.detect")

WORKERS = "gw:workers"
VIOLATIONS = "gw:violations"
IDLE_RECHECK = 6  # times recheck_s, where nothing is being followed
ASK_EVERY_S = 2.0  # how often a camera looks for verify requests and dismissals

T = TypeVar("T")
Sampled = tuple[float, bytes, np.ndarray, tuple[int, int]]  # time, JPEG, small grey, (width, height)
DetectorFactory = Callable[[], object]  # returns something with .detect(bgr) -> list[Detection]


class Frame:
    """A sampled frame, decoded in full only when something needs it."""

    def __init__(self, jpeg: bytes):
        self.jpeg = jpeg
        self._img: np.ndarray | None = None

    def image(self) -> np.ndarray | None:
        if self._img is None:
            self._img = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        return self._img


class StateSaver:
    """Writes a camera's incident state to Redis: at once when what is followed changes,
    else every few seconds (the times in it move on every frame)."""

    def __init__(self, redis: aioredis.Redis, key: str, ttl_s: int, every_s: float = 5.0):
        self.redis = redis
        self.key = key
        self.ttl_s = ttl_s
        self.every_s = every_s
        self._shape: object = None
        self._at = 0.0

    async def save(self, state: dict) -> None:
        shape = ([(i["id"], i["reported"]) for i in state["incidents"]], len(state["cooling"]))
        if shape != self._shape or time.monotonic() - self._at >= self.every_s:
            await self.redis.set(self.key, json.dumps(state), ex=self.ttl_s)
            self._shape, self._at = shape, time.monotonic()


class CameraWatch:
    """One camera's loop: newest frame -> motion gate -> model -> rules -> violations.

    The incidents it follows are saved in Redis every second (and with each violation,
    in the same transaction), so the worker that takes the camera over carries on.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        camera: Camera,
        make_detector: DetectorFactory,
        cfg: DetectorsConfig,
        inference: ThreadPoolExecutor | None = None,
        plates: PlateReader | None = None,
        bus: aioredis.Redis | None = None,  # the frame bus (redis.frames_url); None: `redis`
    ):
        self.redis = redis
        self.bus = bus or redis
        self.plates = plates  # None: plates are not read
        self.camera = camera
        self.make_detector = make_detector
        self.inference = inference
        self.cfg = cfg
        self.frames = self.inferences = self.violations = self.verifications = 0
        # The zones in pixels of the frames now sampled (zone name -> polygon), and their size.
        self.zones: dict[str, list[tuple[float, float]]] = {}
        self.size: tuple[int, int] | None = None
        self.state_ttl = int(cfg.grace_s + cfg.cooldown_s + 60)

    def draw(self, size: tuple[int, int]) -> tuple[ZoneRules, Verifier, ZoneGate]:
        """The rules, verifier and motion gate of the camera's zones in pixels of frames
        `size` (width, height) in size; evidence pictures are drawn in those pixels too."""
        zones = [
            ZoneRule(z.name, z.kind, z.pixels(*size), z.dwell_s, z.hours,
                     frozenset(z.classes) if z.classes else None)
            for z in self.camera.zones
        ]  # fmt: skip
        self.size = size
        self.zones = {z.name: z.polygon for z in zones}
        groups = dict(self.cfg.classes)
        return (
            ZoneRules(self.camera.id, zones,
                      RuleConfig(groups, grace_s=self.cfg.grace_s, cooldown_s=self.cfg.cooldown_s)),
            Verifier(zones, groups, self.cfg.verify_clear_s, self.cfg.verify_window_s),
            ZoneGate(list(self.zones.values()), size),
        )  # fmt: skip

    def state(self, rules: ZoneRules) -> dict:
        """The rules' state as saved in Redis, with the frame size its boxes are pixels of."""
        return {**rules.export(), "frame": self.size}

    async def run(self) -> None:
        """Watch the camera; the zones, rules, verifier and gate are made again in the new
        pixels whenever the size of the sampled frames changes (the camera reconfigured)."""
        detector = await asyncio.to_thread(self.make_detector)
        frames = self.frames_in()
        first = await anext(frames)
        while True:
            first = await self.watch(detector, first, frames)
            width, height = first[3]
            log.info("the sampled frames changed size: zones redrawn in their pixels",
                     extra={"camera": self.camera.id, "frame": f"{width}x{height}"})  # fmt: skip

    async def watch(self, detector: object, first: Sampled, frames: AsyncIterator[Sampled]) -> Sampled:
        """Watch the frames of `first`'s size, from `first` on; returns the first frame of
        another size. Incident state saved for frames of this size is carried on."""
        cid = self.camera.id
        size = first[3]
        rules, verifier, gate = self.draw(size)
        if saved := await self.redis.get(state_key(cid)):
            state = json.loads(saved)
            # Boxes of frames of another size are elsewhere in these: they start afresh.
            if state.get("frame") == list(size):
                rules.restore(state, time.time())
                log.info("carrying on from the last worker", extra={"camera": cid})
        last_run, asked_at, last_change = 0.0, 0.0, 0.0
        detections: list = []
        firsts: dict[str, tuple[bytes, float]] = {}  # incident id -> first frame (JPEG), its time
        applied: set[str] = set()  # dismissals already given to the rules
        unsure: dict[str, tuple] = {}  # incident id -> anchor, not seen for what moved in front
        saver = StateSaver(self.redis, state_key(cid), self.state_ttl)
        # Plates read during each vehicle's dwell, in the default threads: the reader takes
        # one call at a time, and the model's threads must not wait on it.
        book = PlateBook(self.plates, None)
        looked_at: float | None = None  # the time of the frame the model last looked at
        async for sampled in starting_with(first, frames):
            ts, jpeg, small, _ = sampled
            if sampled[3] != size:
                return sampled
            if time.monotonic() - asked_at >= ASK_EVERY_S:
                asked_at = time.monotonic()
                requests, spots = await self.asked()
                verifier.sync(requests)
                for ticket, spot in spots.items():
                    if ticket not in applied:
                        applied.add(ticket)
                        rules.dismiss(spot["zone"], tuple(spot["box"]), spot["until"])
            frame = Frame(jpeg)
            changed = gate.look(small, ts)
            # A pending verification looks at every frame: the answer must not wait on the
            # gate. Followed objects are re-checked every recheck_s, and as soon as one that
            # something moved in front of is in the clear again. So is a scene that changed
            # lately (the model may have missed what came to rest: its dwell still counts
            # from then, `rest_since`); a street where nothing has, only now and then.
            if changed:
                last_change = time.monotonic()
            lately = time.monotonic() - last_change < IDLE_RECHECK * self.cfg.recheck_s
            recheck = self.cfg.recheck_s * (1 if rules.active() or lately else IDLE_RECHECK)
            if (changed or verifier.pending or any(gate.calm(box) for box in unsure.values())
                    or time.monotonic() - last_run >= recheck):  # fmt: skip
                if (img := frame.image()) is None:
                    continue
                loop = asyncio.get_running_loop()
                found = await loop.run_in_executor(self.inference, detector.detect, img)
                # At rest since when the gate saw its pixels stop, but not before the model's
                # last look: what it did not see then, it cannot vouch for.
                detections = [replace(d, since=rested(gate.rest_since(d.box), looked_at))
                              for d in found]  # fmt: skip
                gate.looked()
                looked_at = ts
                last_run = time.monotonic()
                self.inferences += 1
                looked = True
            else:
                looked = False
            # Not looked at: the same objects are where they were, and their dwell goes on.
            violations = rules.update(ts, detections)
            if looked:  # missed behind something passing in front: look again once it is clear
                unsure = {inc.id: inc.anchor for inc in rules.active()
                          if inc.last_seen < ts and not gate.calm(inc.anchor)}  # fmt: skip
            active = {inc.id for inc in rules.active()}
            for incident in active - firsts.keys():
                firsts[incident] = jpeg, ts
            for incident in firsts.keys() - active:
                del firsts[incident]
            await book.look(frame.image, ts, detections, rules.active())
            for violation in violations:
                await self.publish(violation, frame, firsts.get(violation.incident), rules, book,
                                   getattr(detector, "facts", None))  # fmt: skip
            for outcome in verifier.update(ts, detections):
                await self.answer(outcome, frame)
            await saver.save(self.state(rules))

    async def frames_in(self) -> AsyncIterator[Sampled]:
        """The camera's newest frames, each once: (time, JPEG, small grey picture, its
        full (width, height) in pixels, which the zones are converted to)."""
        key = frames_key(self.camera.id)
        last_id = "$"
        while True:
            # Blocks until a frame comes (no polling); a worker that fell behind gets the
            # few the stream keeps and takes the newest.
            got = await self.bus.xread({key: last_id}, count=FRAMES_MAXLEN, block=2000)
            if not got:
                continue
            entry_id, fields = got[0][1][-1]
            last_id = entry_id.decode()
            jpeg = fields[b"jpeg"]
            # The gate needs a small grey picture, the model a full one: most frames of a
            # quiet street never need the full decode.
            size = int(fields[b"width"]), int(fields[b"height"])
            small = small_grey(jpeg, size[0])
            if small is not None:
                self.frames += 1
                yield float(fields[b"ts"]), jpeg, small, size

    async def asked(self) -> tuple[list[VerifyRequest], dict[str, dict]]:
        """What dispatch asks of this camera: verifications, and spots to leave alone."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(verify_key(self.camera.id))
        pipe.hgetall(dismissed_key(self.camera.id))
        raw_requests, raw_spots = await pipe.execute()
        return parse_requests(raw_requests), parse_dismissals(raw_spots)

    async def publish(self, violation: Violation, frame: Frame, first: tuple[bytes, float] | None,
                      rules: ZoneRules, book: PlateBook | None = None,
                      model: dict | None = None) -> None:  # fmt: skip
        """Put the violation on gw:violations with its pictures, each picture's frame time
        (`pictures_at`, Unix s), the plate read and the detector's provenance (`model`:
        the facts of the weights as the detector loaded them; else the configured file's)."""
        event = asdict(violation)
        if self.camera.position is not None:
            event["location"] = self.camera.position.model_dump()
        # The model, this node and the clock at this moment: the evidence package's facts.
        event["provenance"] = await asyncio.to_thread(
            provenance, self.camera, violation.zone, model or self.cfg.weights, node_id()
        )
        img = frame.image()
        read = await book.final(img, violation) if book is not None and img is not None else None
        plate = read[0] if read else None
        if violation.kind == "no_parking":  # null: no plate read (the ticket opens all the same)
            event["plate"] = {"text": plate.text, "confidence": plate.confidence} if plate else None
        pictures = await asyncio.to_thread(
            self._pictures, violation, frame, first and first[0], plate
        )
        taken = {"confirmed.jpg": violation.confirmed, "crop.jpg": violation.confirmed,
                 "first.jpg": first and first[1], "plate.jpg": read and read[1]}  # fmt: skip
        event["pictures_at"] = {name: taken[name] for name in pictures}
        # The violation and the state that says it was raised go together: a worker that
        # dies after this never leaves its successor to raise it again.
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(VIOLATIONS, {"violation": json.dumps(event), **pictures})
        pipe.set(state_key(self.camera.id), json.dumps(self.state(rules)), ex=self.state_ttl)
        await pipe.execute()
        self.violations += 1
        log.info(
            "violation",
            extra={"camera": self.camera.id, "zone": violation.zone, "id": violation.id},
        )

    def _pictures(self, v: Violation, frame: Frame, first: bytes | None,
                  plate: PlateRead | None = None) -> dict[str, bytes]:  # fmt: skip
        polygon = self.zones[v.zone]
        img = frame.image()
        assert img is not None  # it decoded for the gate
        caption = f"{v.label} in {v.zone}"
        pictures = {
            "confirmed.jpg": evidence.annotated(img, polygon, v.box, f"{caption}, {v.confirmed - v.first_seen:.0f} s"),
            "crop.jpg": evidence.crop(img, v.box),
        }  # fmt: skip
        first_img = Frame(first).image() if first else None
        if first_img is not None:  # None when it was first seen by a worker that died since
            pictures["first.jpg"] = evidence.annotated(first_img, polygon, v.anchor, caption)
        if plate is not None:  # the plate as the camera saw it
            pictures["plate.jpg"] = evidence.jpeg(plate.crop, 95)
        return pictures

    async def answer(self, outcome: Outcome, frame: Frame) -> None:
        det = outcome.request.detection
        box = outcome.still_there.box if outcome.still_there else det.box
        img = frame.image()
        assert img is not None  # the model ran on it
        picture = await asyncio.to_thread(
            evidence.annotated, img, self.zones.get(det.zone, []), box, outcome.why
        )
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(VERIFICATIONS, {"ticket": outcome.request.ticket, "camera": self.camera.id,
                                  "clear": int(outcome.clear), "why": outcome.why,
                                  "since": outcome.request.since, "snapshot.jpg": picture})  # fmt: skip
        pipe.hdel(verify_key(self.camera.id), outcome.request.ticket)
        await pipe.execute()
        self.verifications += 1
        log.info("verified" if outcome.clear else "not clear",
                 extra={"camera": self.camera.id, "ticket": outcome.request.ticket, "why": outcome.why})  # fmt: skip


class Worker:
    def __init__(self, redis: aioredis.Redis, cfg: DetectorsConfig, make_detector: DetectorFactory,
                 bus: aioredis.Redis | None = None):  # fmt: skip
        """`redis`: the durable Redis; `bus`: the frame bus (redis.frames_url), None: `redis`."""
        self.redis = redis
        self.bus = bus or redis
        self.cfg = cfg
        self.make_detector = make_detector
        self.name = node_id()
        # One inference per core at a time, whatever the number of cameras: more only
        # fight over the cores (each model call is single-threaded, see yolo_factory).
        self.inference = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="infer")
        self.leases = Leases(redis, "detect", self.name, cfg.lease_s)
        self.watching: dict[str, tuple[Camera, CameraWatch, asyncio.Task]] = {}
        self.plates: PlateReader | None = None
        # The worker's copy of the camera registry, kept by its change feed: a cycle does
        # not read and validate every camera of the centre again.
        self.feed = CameraFeed(redis)
        self._follow: asyncio.Task | None = None

    async def run(self) -> None:
        # Load the model before taking any camera: a worker that cannot run it holds none.
        await asyncio.to_thread(self.make_detector)
        if self.cfg.plates:  # one reader for all the cameras, loaded once
            self.plates = await asyncio.to_thread(load_reader)
        log.info("detector worker started", extra={"worker": self.name})
        try:
            await forever(self.cycle, "detector worker", log, period_s=self.cfg.lease_s / 3)
        finally:
            if self._follow is not None:
                self._follow.cancel()
            for camera in list(self.watching):
                await self._stop(camera)
            with contextlib.suppress(RedisError, OSError):
                await self.redis.zrem(WORKERS, self.name)
            self.inference.shutdown(wait=False, cancel_futures=True)

    async def cycle(self) -> None:
        now = time.time()
        await self.redis.zadd(WORKERS, {self.name: now})
        await self.redis.zremrangebyscore(WORKERS, "-inf", now - 3 * self.cfg.lease_s)
        live = max(1, await self.redis.zcount(WORKERS, now - self.cfg.lease_s, "+inf"))
        if self._follow is None:  # the first cycle: the registry read whole once, then followed
            await self.feed.load()
            self._follow = asyncio.create_task(self.feed.follow(), name="camera-feed")
        cameras = {c.id: c for c in self.feed.cameras.values() if c.detect.enabled and c.zones}
        share = math.ceil(len(cameras) / live)
        held = await self.leases.hold_many(list(self.watching))  # one round trip for them all
        for cid in list(self.watching):
            camera = cameras.get(cid)
            if camera is None or camera != self.watching[cid][0] or cid not in held:
                await self._stop(cid)  # gone, changed (restarted below) or lost
        # Over our share (a worker joined): let the others have the rest.
        for cid in sorted(self.watching)[share:]:
            await self._stop(cid)
            await self.leases.release(cid)
        need = share - len(self.watching)
        candidates = [cid for cid in sorted(cameras) if cid not in self.watching] if need > 0 else []
        # The free ones, read at once, then taken at once (not one round trip per camera).
        holders = await self.redis.mget([self.leases.key(c) for c in candidates]) if candidates else []
        free = [cid for cid, holder in zip(candidates, holders, strict=True) if holder is None][:need]
        for cid in sorted(await self.leases.hold_many(free)):
            camera = cameras[cid]
            watch = CameraWatch(
                self.redis, camera, self.make_detector, self.cfg, self.inference, self.plates, self.bus
            )
            task = asyncio.create_task(self._guard(watch), name=f"detect-{cid}")
            self.watching[cid] = (camera, watch, task)
            log.info("watching camera", extra={"camera": cid, "worker": self.name})
        stats = {cid: {"frames": w.frames, "inferences": w.inferences, "violations": w.violations,
                       "verifications": w.verifications}
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


async def starting_with(first: T, rest: AsyncIterator[T]) -> AsyncIterator[T]:
    """`first`, then what `rest` gives (which a loop over this leaves open to go on with)."""
    yield first
    async for item in rest:
        yield item


def rested(since: float | None, looked_at: float | None) -> float | None:
    """Since when an object the model just found has been at rest (Unix s): the gate's
    `rest_since`, never before the model's previous look (`looked_at`), which did not
    find it there. None when neither is known."""
    if since is None or looked_at is None:
        return since
    return max(since, looked_at)


def yolo_factory(cfg: DetectorsConfig) -> DetectorFactory:
    import torch

    from gridwatch.detectors.yolo import YoloDetector

    # Many cameras' frames run side by side, one per core: a model call that spreads over
    # every core as well only oversubscribes them (measured: tests/bench/detect_e2e.py).
    torch.set_num_threads(1)
    return lambda: YoloDetector(cfg.weights, cfg.imgsz, cfg.conf, cfg.device)
