"""Recordings on a node: which streams it records, marks, evidence clips, retention, disk.

Each camera whose mode is not `off` is recorded by exactly one node (the `record`
lease); a published stream (phone, drone) by the node it is published to, when a
`recordings.streams` pattern asks for it. Marks (`gw:record:marks`, a stream every node
reads) reach the camera's recorder: events mode writes around them; a mark that
carries a ticket becomes an evidence clip attached to that ticket; the recording node
indexes each mark by camera and time (the timeline's marks and tickets).

Each segment names the node whose disk holds it. Repair (a segment left open by a crash)
and retention act only on the files this node can see: its own, or every one with
`recordings.shared_storage` (every node mounts the same data directory). A segment on
another node's disk is never rewritten or dropped from the index here: that node
repairs it when it comes back (at its start, for every camera) and deletes it with its
index entry when its time is up. Files on this disk that the index lacks (a crash between
writing and indexing) are indexed at start. An evidence clip goes to the node that holds
its ticket's pictures (`gw:evidence:holders`), so that a ticket's evidence lies in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gridwatch.contracts.evidence import EvidenceStore, hold, holder
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
from gridwatch.recordings.remote import Peers, Unreachable, evidence_path, recording_path
from gridwatch.recordings.segments import Segment, probe_end

log = logging.getLogger("gridwatch.recordings")

EVIDENCE_CLIPS = "gw:rec:evidence"  # sorted set: clip path -> ticket id, scored by creation
GB = 1024**3
UPLOAD_TRIES_S = (1, 2, 4, 8, 15)  # a clip's way to the pictures' node: retried this long


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
        cameras: Mapping[str, Camera],  # every camera by id (the node's copy of the registry)
        owned: Callable[[], Iterable[str]],  # the cameras placed on this node
        evidence: EvidenceStore,
        desk: EvidenceDesk,
        node: str,
        mine: Callable[[str], bool] = lambda stream: True,  # the placement: what this node records
        peers: Peers | None = None,  # the other nodes' files; None: a node alone
    ):
        self.redis = redis
        self.hub = hub
        self.cfg = cfg
        self.record_calls = record_calls
        self.lease_s = lease_s
        self.cameras = cameras
        self.owned = owned
        self.evidence = evidence
        self.desk = desk
        self._last_mark: bytes | str | None = None  # the mark stream read so far
        self.node = node
        self.root = (data_dir / "recordings").resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp = data_dir / "tmp"  # fetched segments and clips being cut
        self.peers = peers
        self.index = SegmentIndex(redis)
        self.work = LeasedWork(Leases(redis, "record", node, self.lease_s), self._wanted,
                               self._record, self.lease_s / 3, stop=self._stop_recorder, mine=mine)  # fmt: skip
        self.recorders: dict[str, Recorder] = {}
        self.policies: dict[str, RecordConfig] = {}
        self.disk_full = False
        self.counts = {"segments": 0, "deleted": 0, "evidence_clips": 0, "marks": 0, "repaired": 0,
                       "orphans_indexed": 0}  # fmt: skip
        self._tasks: set[asyncio.Task] = set()

    # which streams ------------------------------------------------------------

    async def _wanted(self) -> dict[str, tuple[str, RecordConfig]]:
        wanted: dict[str, tuple[str, RecordConfig]] = {}
        # Only the cameras placed here: a cycle costs this node's share, not the centre's.
        for camera_id in self.owned():
            camera = self.cameras.get(camera_id)
            if camera is not None and camera.record.mode != "off":
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
                self.root,
                camera,
                stream,
                plan,
                self._indexed,
                lambda: not self.disk_full,
                self.node,
            )
            # Registered before the repair: a stop() that comes meanwhile is not lost.
            self.recorders[camera] = recorder
        try:
            # We hold its lease now: nobody else writes its segments (a former owner's are
            # its own to repair, unless every node sees every file).
            await self._repair(camera, any_node=self.cfg.shared_storage)
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

    def sees(self, seg: Segment, any_node: bool) -> bool:
        """Whether this node acts on `seg`'s file: it wrote it, or `any_node` (shared
        storage), or the segment names no node and its file is on this disk. Blocking
        (a stat for the last)."""
        if seg.node is None:
            return (self.root / seg.path).is_file()
        return any_node or seg.node == self.node

    async def _repair(self, camera: str, any_node: bool) -> None:
        """Segments a crashed recorder left open, of those this node sees: their end and
        size, from the file; a segment whose file is gone (this node's own) leaves the
        index. Never one whose file is on another node's disk: it would read as empty."""
        for seg in await self.index.open_ones(camera):
            if not await asyncio.to_thread(self.sees, seg, any_node):
                continue
            file = self.root / seg.path
            if not await asyncio.to_thread(file.is_file):
                await self.index.remove(seg)
                log.warning("segment left open by a crash has no file, unindexed",
                            extra={"camera": camera, "path": seg.path, "node": seg.node})  # fmt: skip
                continue
            seg.end, seg.size = await asyncio.to_thread(probe_end, file, seg.start)
            await self.index.put(seg)
            self.counts["repaired"] += 1
            log.warning("segment left open by a crash, repaired",
                        extra={"camera": camera, "path": seg.path, "seconds": round(seg.end - seg.start, 1),
                               "bytes": seg.size})  # fmt: skip

    async def _recover(self) -> None:
        """At start, before recording: repair this node's own open segments of every
        camera (not only those it records now: a camera may have moved meanwhile), and
        index the files on its disk that the index lacks."""
        for camera in await self.index.cameras():
            await self._repair(camera, any_node=False)
        found = await asyncio.to_thread(_segment_files, self.root)
        for camera, paths in found.items():
            missing = set(paths) - await self.index.indexed(camera, paths)
            for rel in sorted(missing):
                seg = await asyncio.to_thread(self._orphan, camera, rel)
                if seg is not None:
                    await self.index.put(seg)
                    self.counts["orphans_indexed"] += 1
                    log.warning("segment file the index lacked, indexed",
                                extra={"camera": camera, "path": rel, "bytes": seg.size})  # fmt: skip

    def _orphan(self, camera: str, rel: str) -> Segment | None:
        """The segment of a file the index lacks, from its name (the start) and content;
        None for a name no recorder writes, or a file another node may be writing."""
        try:
            start = datetime.strptime(rel.split("/", 1)[1], "%Y-%m-%d/%H-%M-%S.%fZ.mp4")
        except ValueError:
            return None
        file = self.root / rel
        # With shared storage another node may have just opened it: its own entry comes.
        if self.cfg.shared_storage and file.stat().st_mtime > time.time() - self.cfg.segment_s - 60:
            return None
        at = start.replace(tzinfo=UTC).timestamp()
        end, size = probe_end(file, at)
        return Segment(camera, rel, at, end, size, node=self.node)

    async def sources(
        self, segments: list[Segment], work: Path
    ) -> tuple[list[tuple[Segment, Path]], list[Segment]]:
        """The files of `segments`: on this disk, or fetched into `work` from the node that
        holds each. (segment and file pairs, the segments whose holder could not be
        reached). A segment this node should hold but does not (deleted since) is left out."""
        found: list[tuple[Segment, Path]] = []
        missing: list[Segment] = []
        for seg in segments:
            local = self.root / seg.path
            if await asyncio.to_thread(local.is_file):
                found.append((seg, local))
                continue
            if (
                seg.node is None
                or seg.node == self.node
                or self.cfg.shared_storage
                or self.peers is None
            ):
                continue
            dest = work / seg.path
            try:
                await self.peers.download(seg.node, recording_path(seg.path), dest)
            except Unreachable as e:
                log.warning(
                    "segment not fetched", extra={"path": seg.path, "node": e.node, "why": str(e)}
                )
                missing.append(seg)
                continue
            found.append((seg, dest))
        return found, missing

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
        rel = self.evidence.name(folder, "clip.mp4")
        self.tmp.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.tmp, prefix="evidence-") as work:
            # A camera that moved mid-span: the pieces from the nodes that wrote them.
            sources, missing = await self.sources(segments, Path(work))
            if missing:
                log.warning("evidence clip without footage of unreachable nodes",
                            extra={"camera": camera, "ticket": ticket_id,
                                   "nodes": sorted({s.node for s in missing})})  # fmt: skip
            clip = Path(work) / "clip.mp4"
            try:
                seconds = await asyncio.to_thread(export, sources, start, end, clip)
            except NoFootage:
                log.warning(
                    "no footage for an evidence clip", extra={"camera": camera, "ticket": ticket_id}
                )
                return
            where = await self._place_clip(rel, clip)
        await self.redis.zadd(EVIDENCE_CLIPS, {rel: time.time()})
        await self.redis.hset(f"{EVIDENCE_CLIPS}:tickets", rel, ticket_id)
        await self.desk.attach(ticket_id, rel, f"clip {seconds:.0f} s")
        self.counts["evidence_clips"] += 1
        log.info("evidence clip", extra={"camera": camera, "ticket": ticket_id,
                                         "seconds": round(seconds, 1), "node": where})  # fmt: skip

    async def _place_clip(self, rel: str, clip: Path) -> str:
        """Put a finished clip beside its ticket's pictures: on the node holding its
        folder (an internal PUT, retried a while), else here. The node it went to; one
        kept here apart from its folder is recorded as its own holder."""
        folder = rel.split("/", 1)[0]
        target = await holder(self.redis, folder)
        if (
            target is not None
            and target != self.node
            and not self.cfg.shared_storage
            and self.peers
        ):
            for wait_s in (*UPLOAD_TRIES_S, None):
                try:
                    await self.peers.upload(target, evidence_path(rel), clip)
                    return target
                except Unreachable as e:
                    if wait_s is None:
                        log.error("evidence clip kept apart from its pictures",
                                  extra={"clip": rel, "node": target, "why": str(e)})  # fmt: skip
                        break
                    await asyncio.sleep(wait_s)
        await asyncio.to_thread(self.evidence.adopt, rel, clip)
        if target is None or self.cfg.shared_storage:
            await hold(self.redis, folder, self.node, first=True)
        elif target != self.node:
            await hold(self.redis, rel, self.node)
        return self.node

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

    async def _delete(self, seg: Segment, why: str) -> bool:
        """Delete a segment's file, then its index entry (never the entry alone: a file
        nobody indexes is never deleted). Whether it went."""
        try:
            await asyncio.to_thread((self.root / seg.path).unlink, missing_ok=True)
        except OSError as e:
            log.error("segment file not deleted", extra={"path": seg.path, "why": str(e)})
            return False
        await self.index.remove(seg)
        self.counts["deleted"] += 1
        log.info("segment deleted", extra={"camera": seg.camera, "path": seg.path, "why": why})
        return True

    async def retention(self) -> None:
        """Delete, with their index entries, the closed segments this node holds (all with
        shared storage) that are past their camera's `retain_days`, then the oldest past
        the camera's `max_gb` and `recordings.max_gb`; quotas count the segments on this
        node's disk (another node's cannot be freed from here)."""
        now = time.time()
        held: dict[str, list[Segment]] = {}
        for camera in await self.index.cameras():
            policy = self.policies.get(camera) or await self._policy(camera)
            keep_s = policy.retain_days * 86400
            await self.index.forget_marks(camera, now - keep_s)
            segments = await self.index.all(camera)
            mine = await asyncio.to_thread(
                lambda segs: [s for s in segs if s.end is not None and self.sees(s, self.cfg.shared_storage)],
                segments)  # fmt: skip
            kept = []
            for seg in mine:  # by age, oldest first
                if not (seg.end < now - keep_s and await self._delete(seg, "age")):
                    kept.append(seg)
            if policy.max_gb is not None:
                kept = await self._trim(kept, policy.max_gb * GB, "camera quota")
            held[camera] = kept
        if self.cfg.max_gb is not None:
            everything = sorted((s for segs in held.values() for s in segs), key=lambda s: s.start)
            await self._trim(everything, self.cfg.max_gb * GB, "total quota")
        await self._expire_evidence(now)

    async def _trim(self, segments: list[Segment], limit: float, why: str) -> list[Segment]:
        """Delete the oldest of `segments` (oldest first) until they hold at most `limit`
        bytes; those left."""
        used = sum(s.size for s in segments)
        left = list(segments)
        while used > limit and left:
            seg = left.pop(0)
            if await self._delete(seg, why):
                used -= seg.size
        return left

    async def _policy(self, camera: str) -> RecordConfig:
        found = self.cameras.get(camera)
        return found.record if found is not None else RecordConfig()

    async def _expire_evidence(self, now: float) -> None:
        """Evidence clips outlive the camera's retention: until their ticket ended + keep
        days. Deleted, with their records, by the node that holds them."""
        keep_s = self.cfg.evidence_keep_days * 86400
        for rel, ticket_id in (await self.redis.hgetall(f"{EVIDENCE_CLIPS}:tickets")).items():
            if await self.desk.ended_before(ticket_id.decode(), now - keep_s):
                path = self.evidence.path(rel.decode())
                if path is not None:
                    await asyncio.to_thread(path.unlink, missing_ok=True)
                elif not self.cfg.shared_storage and await holder(self.redis, rel.decode()) not in (
                        None, self.node):  # fmt: skip
                    continue  # on another node's disk: that node deletes it
                await self.redis.hdel(f"{EVIDENCE_CLIPS}:tickets", rel)
                await self.redis.zrem(EVIDENCE_CLIPS, rel)

    async def _housekeeping(self) -> None:
        await forever(self._housekeep, "recordings housekeeping", log, period_s=self.cfg.check_s)

    async def _housekeep(self) -> None:
        self._check_disk()
        await self.retention()

    async def _record_all(self) -> None:
        """Recover what a crash left (retried while Redis is away), then record."""
        while True:
            try:
                await self._recover()
                break
            except (RedisError, OSError) as e:
                log.warning("recordings recovery: redis unavailable", extra={"error": str(e)})
                await asyncio.sleep(1)
        await self.work.run()

    async def close(self) -> None:
        """Shut down cleanly: every recorder closes its segment (indexed with its end and
        size, playable to its end) and the record leases are released, so another node,
        or this one restarted, records on at once with nothing to repair."""
        await self.work.close()

    async def run(self) -> None:
        if moved := await move_old_keys(self.redis):
            log.info("recording index keys moved under gw:rec:cam:", extra={"keys": moved})
        tasks = [
            asyncio.create_task(t)
            for t in (self._record_all(), self._marks(), self._housekeeping())
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


def _segment_files(root: Path) -> dict[str, list[str]]:
    """The segment files under `root`, by camera: paths relative to it. Blocking."""
    found: dict[str, list[str]] = {}
    for file in root.glob("*/*/*.mp4"):
        found.setdefault(file.parts[-3], []).append(file.relative_to(root).as_posix())
    return found
