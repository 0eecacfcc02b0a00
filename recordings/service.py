"""Recordings on a node: which streams it records, marks, evidence clips, retention, disk.

Each camera whose mode is not `off` is recorded by exactly one node (the `record`
lease); a published stream (phone, drone) by the node it is published to, when a
`recordings.streams` pattern asks for it. Marks (`gw:record:marks`, a stream every node
reads) reach the camera's recorder: events mode writes around them; a mark that
carries a ticket becomes an evidence clip attached to that ticket; the recording node
indexes each mark by camera and time (the timeline's marks and tickets).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis

from gridwatch.contracts.evidence import EvidenceStore
from gridwatch.contracts.marks import MARKS, add_mark
from gridwatch.contracts.retry import forever
from gridwatch.media.config import Camera, RecordConfig
from gridwatch.media.hub import StreamHub
from gridwatch.media.leases import LeasedWork, Leases
from gridwatch.media.sources import parse_source
from gridwatch.recordings.clips import NoFootage, export
from gridwatch.recordings.config import RecordingsConfig
from gridwatch.recordings.index import Mark, SegmentIndex, move_old_keys
from gridwatch.recordings.recorder import Plan, Recorder
from gridwatch.recordings.segments import Segment, probe_end

log = logging.getLogger("gridwatch.recordings")

EVIDENCE_CLIPS = "gw:rec:evidence"  # sorted set: clip path -> ticket id, scored by creation
GB = 1024**3


class EvidenceDesk(Protocol):
    """What the recorders need from the tickets, handed in by the process wiring (the
    recordings never import dispatch, nor dispatch the recordings)."""

    async def attach(self, ticket_id: str, rel: str, why: str) -> None:
        """Add the clip `rel` (in the evidence store) to the ticket's evidence."""

    async def ended_before(self, ticket_id: str, when: float) -> bool:
        """Whether the ticket is gone, or ended (closed, rejected, cancelled) before `when`."""

    async def alarm(self, event: dict, message: str, key: str) -> None:
        """Raise a critical alert for every wall (deduplicated by `key` while open)."""


class Recordings:
    def __init__(
        self,
        redis: aioredis.Redis,
        hub: StreamHub,
        cfg: RecordingsConfig,
        data_dir: Path,
        lease_s: float,  # media.lease_s: who records a camera is leased like its sampling
        record_calls: bool,
        cameras,  # async () -> list[Camera]
        evidence: EvidenceStore,
        desk: EvidenceDesk,
        node: str,
        mine: Callable[[str], bool] = lambda stream: True,  # the placement: what this node records
    ):
        self.redis = redis
        self.hub = hub
        self.cfg = cfg
        self.record_calls = record_calls
        self.lease_s = lease_s
        self.cameras = cameras
        self.evidence = evidence
        self.desk = desk
        self._last_mark: bytes | str | None = None  # the mark stream read so far
        self.node = node
        self.root = (data_dir / "recordings").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = SegmentIndex(redis)
        self.work = LeasedWork(Leases(redis, "record", node, self.lease_s), self._wanted,
                               self._record, self.lease_s / 3, stop=self._stop_recorder, mine=mine)  # fmt: skip
        self.recorders: dict[str, Recorder] = {}
        self.policies: dict[str, RecordConfig] = {}
        self.disk_full = False
        self.counts = {"segments": 0, "deleted": 0, "evidence_clips": 0, "marks": 0}
        self._tasks: set[asyncio.Task] = set()

    # which streams ------------------------------------------------------------

    async def _wanted(self) -> dict[str, tuple[str, RecordConfig]]:
        wanted: dict[str, tuple[str, RecordConfig]] = {}
        camera: Camera
        for camera in await self.cameras():
            if camera.record.mode != "off":
                wanted[camera.id] = (camera.source, camera.record)
        patterns = dict(self.cfg.streams)
        if self.record_calls:
            patterns.setdefault("call-*", RecordConfig(mode="continuous"))
        for stream in list(self.hub.streams.values()):
            if not stream.pushed:
                continue
            for pattern, policy in patterns.items():
                if policy.mode != "off" and fnmatch.fnmatchcase(stream.id, pattern):
                    wanted[stream.id] = ("", policy)
                    break
        self.policies = {k: v[1] for k, v in wanted.items()}
        return wanted

    async def _record(self, camera: str, spec: tuple[str, RecordConfig]) -> None:
        source, policy = spec
        stream = self.hub.upsert(camera, parse_source(source)) if source else self.hub.get(camera)
        recorder = None
        if stream is not None:
            plan = Plan(policy.mode, self.cfg.segment_s, self.cfg.pre_s, self.cfg.post_s)
            recorder = Recorder(
                self.root, camera, stream, plan, self._indexed, lambda: not self.disk_full
            )
            # Registered before the repair: a stop() that comes meanwhile is not lost.
            self.recorders[camera] = recorder
        try:
            await self._repair(camera)  # we hold its lease now: nobody else writes its segments
            if recorder is not None:
                await recorder.run()
        finally:
            if recorder is not None and self.recorders.get(camera) is recorder:
                del self.recorders[camera]

    def _stop_recorder(self, camera: str) -> None:
        """Ask a camera's recorder to close its segment and end (LeasedWork's stop)."""
        recorder = self.recorders.get(camera)
        if recorder is not None:
            recorder.stop()

    async def _indexed(self, seg: Segment) -> None:
        await self.index.put(seg)
        if seg.end is not None:
            self.counts["segments"] += 1
            log.info("segment written", extra={"camera": seg.camera, "path": seg.path,
                                               "seconds": round(seg.end - seg.start, 1),
                                               "bytes": seg.size})  # fmt: skip

    async def _repair(self, camera: str) -> None:
        """Segments a crashed recorder left open: their end and size, from the file."""
        for seg in await self.index.open_ones(camera):
            seg.end, seg.size = await asyncio.to_thread(probe_end, self.root / seg.path, seg.start)
            await self.index.put(seg)
            log.warning("segment left open by a crash, repaired",
                        extra={"camera": camera, "path": seg.path})  # fmt: skip

    # marks and evidence --------------------------------------------------------

    async def mark(self, camera: str, at: float) -> None:
        await add_mark(self.redis, camera, at)

    async def _marks(self) -> None:
        await forever(self._read_marks, "marks", log)

    async def _read_marks(self) -> None:
        if self._last_mark is None:  # from now on; kept across errors, so no mark is skipped
            newest = await self.redis.xrevrange(MARKS, count=1)
            self._last_mark = newest[0][0] if newest else "0-0"
        for _, entries in await self.redis.xread({MARKS: self._last_mark}, block=1000, count=100):
            for entry_id, fields in entries:
                self._last_mark = entry_id
                await self._on_mark(
                    entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()}
                )

    async def _on_mark(self, entry_id: str, mark: dict[str, str]) -> None:
        recorder = self.recorders.get(mark["camera"])
        if recorder is None:
            return  # another node records it (or nobody does)
        at = float(mark["at"])
        self.counts["marks"] += 1
        recorder.mark(at, self.cfg.pre_s, self.cfg.post_s)
        if "ticket" in mark:
            self._spawn(self._evidence_clip(mark["camera"], at, mark["ticket"], mark["folder"]))
        # Last: a Redis fault here must not cost the footage or the evidence clip.
        await self.index.add_mark(mark["camera"], Mark(entry_id, at, mark.get("ticket")))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _evidence_clip(self, camera: str, at: float, ticket_id: str, folder: str) -> None:
        start, end = at - self.cfg.pre_s, at + self.cfg.post_s
        # Wait until the post-roll is written and its segment indexed (it closes at the
        # first key frame after it, or at the next split).
        deadline = time.time() + self.cfg.post_s + max(self.cfg.segment_s, 10) + 30
        while time.time() < deadline:
            await asyncio.sleep(1)
            segments = await self.index.between(camera, start, end)
            if segments and all(s.end is not None for s in segments) and max(
                s.end for s in segments) >= min(end, time.time() - 1):  # fmt: skip
                break
        segments = await self.index.between(camera, start, end)
        rel, path = self.evidence.place(folder, "clip.mp4")
        tmp = path.with_name("clip.part.mp4")  # never a half-written clip in a ticket
        try:
            seconds = await asyncio.to_thread(export, self.root, segments, start, end, tmp)
        except NoFootage:
            log.warning(
                "no footage for an evidence clip", extra={"camera": camera, "ticket": ticket_id}
            )
            return
        tmp.replace(path)
        await self.redis.zadd(EVIDENCE_CLIPS, {rel: time.time()})
        await self.redis.hset(f"{EVIDENCE_CLIPS}:tickets", rel, ticket_id)
        await self.desk.attach(ticket_id, rel, f"clip {seconds:.0f} s")
        self.counts["evidence_clips"] += 1
        log.info(
            "evidence clip",
            extra={"camera": camera, "ticket": ticket_id, "seconds": round(seconds, 1)},
        )

    # retention and disk ------------------------------------------------------

    def _check_disk(self) -> None:
        free_mb = shutil.disk_usage(self.root).free / 1024**2
        full = free_mb < self.cfg.min_free_mb
        if full and not self.disk_full:
            log.error("disk full: recording stopped",
                      extra={"free_mb": round(free_mb), "min_free_mb": self.cfg.min_free_mb})  # fmt: skip
            # An alert: it stays on every wall, for whoever signs in later too, until acknowledged.
            message = f"recordings disk of {self.node} has {free_mb:.0f} MB free; recording stopped"
            warning = {"type": "warning", "kind": "disk_full", "free_mb": round(free_mb),
                       "node": self.node, "message": message}  # fmt: skip
            self._spawn(self.desk.alarm(warning, message, f"disk_full:{self.node}"))
        elif not full and self.disk_full:
            log.info("disk space back: recording resumed", extra={"free_mb": round(free_mb)})
        self.disk_full = full

    async def _delete(self, seg: Segment, why: str) -> None:
        await asyncio.to_thread((self.root / seg.path).unlink, missing_ok=True)
        await self.index.remove(seg)
        self.counts["deleted"] += 1
        log.info("segment deleted", extra={"camera": seg.camera, "path": seg.path, "why": why})

    async def retention(self) -> None:
        now = time.time()
        usage: dict[str, int] = {}
        for camera in await self.index.cameras():
            policy = self.policies.get(camera) or await self._policy(camera)
            keep_s = policy.retain_days * 86400
            await self.index.forget_marks(camera, now - keep_s)
            while True:  # by age, oldest first
                oldest = await self.index.oldest(camera, 50)
                old = [s for s in oldest if s.end is not None and s.end < now - keep_s]
                for seg in old:
                    await self._delete(seg, "age")
                if len(old) < 50:
                    break
            usage[camera] = await self.index.usage(camera)
            if policy.max_gb is not None:
                usage[camera] = await self._trim(
                    camera, usage[camera], policy.max_gb * GB, "camera quota"
                )
        if self.cfg.max_gb is not None:
            total, limit = sum(usage.values()), self.cfg.max_gb * GB
            while total > limit:
                firsts = [(await self.index.oldest(c, 1), c) for c in usage]
                candidates = [
                    (segs[0], c) for segs, c in firsts if segs and segs[0].end is not None
                ]
                if not candidates:
                    break
                seg, camera = min(candidates, key=lambda x: x[0].start)
                await self._delete(seg, "total quota")
                total -= seg.size
        await self._expire_evidence(now)

    async def _trim(self, camera: str, used: int, limit: float, why: str) -> int:
        while used > limit:
            oldest = [s for s in await self.index.oldest(camera, 1) if s.end is not None]
            if not oldest:
                break
            await self._delete(oldest[0], why)
            used -= oldest[0].size
        return used

    async def _policy(self, camera: str) -> RecordConfig:
        for c in await self.cameras():
            if c.id == camera:
                return c.record
        return RecordConfig()

    async def _expire_evidence(self, now: float) -> None:
        """Evidence clips outlive the camera's retention: until their ticket ended + keep days."""
        keep_s = self.cfg.evidence_keep_days * 86400
        for rel, ticket_id in (await self.redis.hgetall(f"{EVIDENCE_CLIPS}:tickets")).items():
            if await self.desk.ended_before(ticket_id.decode(), now - keep_s):
                path = self.evidence.path(rel.decode())
                if path is not None:
                    await asyncio.to_thread(path.unlink, missing_ok=True)
                await self.redis.hdel(f"{EVIDENCE_CLIPS}:tickets", rel)
                await self.redis.zrem(EVIDENCE_CLIPS, rel)

    async def _housekeeping(self) -> None:
        await forever(self._housekeep, "recordings housekeeping", log, period_s=self.cfg.check_s)

    async def _housekeep(self) -> None:
        self._check_disk()
        await self.retention()

    async def close(self) -> None:
        """Shut down cleanly: every recorder closes its segment (indexed with its end and
        size, playable to its end) and the record leases are released, so another node,
        or this one restarted, records on at once with nothing to repair."""
        await self.work.close()

    async def run(self) -> None:
        if moved := await move_old_keys(self.redis):
            log.info("recording index keys moved under gw:rec:cam:", extra={"keys": moved})
        tasks = [
            asyncio.create_task(t) for t in (self.work.run(), self._marks(), self._housekeeping())
        ]
        try:
            # wait, not gather: a cancelled gather cancels its tasks itself, and the second
            # cancel below would then land in their cleanup (a recorder closing its segment).
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in [*tasks, *self._tasks]:
                t.cancel()
            for t in [*tasks, *self._tasks]:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
