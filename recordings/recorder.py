"""A stream's recorder: a consumer of the stream that writes segments.

`continuous` writes all the time, a new segment at the first key frame after
`segment_s`. `events` keeps the last `pre_s` (from a key frame) in memory and writes
only around marks (a violation, a dispatcher's mark): from `pre_s` before the mark to
`post_s` after the last one. Packets are taken in batches and written in a thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import av

from gridwatch.media.stream import CLOCK_RATE, Consumer, Stream, StreamClosed
from gridwatch.recordings.segments import DiskFull, Segment, SegmentWriter

log = logging.getLogger("gridwatch.recordings")
DISK_RETRY_S = 10.0
IDLE_CLOSE_S = 3.0
REANCHOR_S = 2.0
MARK_LATENCY_S = 5.0


@dataclass(frozen=True)
class Plan:
    mode: str  # continuous | events
    segment_s: float
    pre_s: float
    post_s: float


class Recorder:
    def __init__(
        self,
        root: Path,
        camera: str,
        stream: Stream,
        plan: Plan,
        on_segment: Callable[[Segment], Awaitable[None]],
        disk_ok: Callable[[], bool],
        node: str | None = None,  # this node: named in every segment it writes
    ):
        self.root = root
        self.node = node
        self.camera = camera
        self.stream = stream
        self.plan = plan
        self.on_segment = on_segment  # indexes a segment as it opens and as it closes
        self.disk_ok = disk_ok
        self.writer: SegmentWriter | None = None
        self.ring: collections.deque[tuple[float, av.Packet]] = collections.deque()
        self.until = 0.0  # events mode: write until this wall time
        self.pending_from: float | None = None  # events mode: a mark's pre-roll start
        self.packets = 0
        self.stalled_until = 0.0
        # A cancelled write goes on in its thread: closing must wait for it, never race it.
        self._io = threading.Lock()
        self._anchor: tuple[float, int] | None = None  # (wall, pts)
        self._consumer: Consumer | None = None
        self._stopping = False
        # Sound of the last pre_s (and the mark's margin): a segment that opens on an
        # older key frame takes its sound from here.
        self.sound: collections.deque[av.Packet] = collections.deque(
            maxlen=int((plan.pre_s + MARK_LATENCY_S + 2) * 50)  # Opus: 50 packets a second
        )

    def mark(self, at: float, pre_s: float, post_s: float) -> None:
        """Keep [at - pre_s, at + post_s] (events mode; continuous keeps it anyway)."""
        self.until = max(self.until, at + post_s)
        if self.writer is None:
            start = at - pre_s
            self.pending_from = (
                start if self.pending_from is None else min(self.pending_from, start)
            )

    def stop(self) -> None:
        """End run() cleanly (the node shuts down, or the camera is no longer ours): what
        is written is closed and indexed with its end and size, so the next recorder of
        the camera, here or on another node, finds nothing to repair. On the event loop;
        a batch being written is finished and indexed first."""
        self._stopping = True
        if self._consumer is not None:
            self._consumer.close()  # a waiting get() raises StreamClosed at once

    async def run(self) -> None:
        if self._stopping:
            return
        consumer = self._consumer = self.stream.attach(f"recorder:{self.camera}")
        listener = self.stream.attach_audio(f"recorder:{self.camera}")
        log.info("recording", extra={"camera": self.camera, "mode": self.plan.mode})
        try:
            while not self._stopping:
                try:
                    # Not wait_for: on 3.11 it can swallow a cancel that races a packet.
                    async with asyncio.timeout(IDLE_CLOSE_S):
                        first = await consumer.get()
                except TimeoutError:
                    # The source went quiet (a camera offline, a phone that left): the
                    # segment ends where its pictures end, not whenever they resume.
                    # Sound with no pictures is not recorded: kept a while, then dropped.
                    self.sound.extend(listener.ready())
                    await self._finish()
                    continue
                batch, sound = [first, *consumer.ready()], listener.ready()
                if not self.disk_ok() or time.monotonic() < self.stalled_until:
                    await self._finish()
                    self.ring.clear()
                    self.sound.clear()
                    continue
                try:
                    events = await asyncio.to_thread(self._write, batch, sound)
                except DiskFull:
                    # What is on disk stays playable; try again once space may be back.
                    log.error("disk full: recording stopped", extra={"camera": self.camera})
                    self.stalled_until = time.monotonic() + DISK_RETRY_S
                    closed = await asyncio.to_thread(self._close)
                    events = [closed] if closed else []
                for seg in events:
                    await self.on_segment(seg)
                self._ask_for_keyframe()
        except StreamClosed:
            pass
        finally:
            consumer.close()
            listener.close()
            await self._finish()

    def _ask_for_keyframe(self) -> None:
        """A WebRTC publisher sends key frames rarely: ask for one when a split is due."""
        w, request = self.writer, self.stream.request_keyframe
        if w is not None and request is not None:
            if self.stream.wall_of(w.last_pts) - w.segment.start >= self.plan.segment_s:
                request()

    async def _finish(self) -> None:
        if self.writer is not None and (seg := await asyncio.to_thread(self._close)):
            await self.on_segment(seg)

    def _close(self) -> Segment | None:
        with self._io:
            writer, self.writer = self.writer, None
            return writer.close() if writer is not None else None

    def _open(self, first: av.Packet, wall: float, kind: str) -> Segment:
        audio = self.stream.state.audio is not None
        self.writer = SegmentWriter(self.root, self.camera, first, wall, kind, audio, self.node)
        for packet in self.sound:  # the sound since the key frame it opens on
            self.writer.write_audio(packet)
        return self.writer.segment

    # thread side ---------------------------------------------------------------

    def _write(self, batch: list[av.Packet], sound: list[av.Packet]) -> list[Segment]:
        """Write a batch of pictures and the sound that came with them; the segments
        opened or closed meanwhile, for the index."""
        with self._io:
            # Sound comes a little after its pictures (transcoding, Opus's 20 ms): what
            # belongs to the pictures already written goes in first, so that a segment
            # about to close in this batch still gets the sound of its end.
            writer = self.writer
            later = [p for p in sound if writer is None or p.pts > writer.last_pts]
            for packet in sound:
                self.sound.append(packet)
                if writer is not None and packet.pts <= writer.last_pts:
                    writer.write_audio(packet)
            events = self._write_locked(batch)
            if self.writer is not None:
                for packet in later:
                    self.writer.write_audio(packet)
            return events

    def _write_locked(self, batch: list[av.Packet]) -> list[Segment]:
        events: list[Segment] = []
        for packet in batch:
            self.packets += 1
            wall = self._wall(packet.pts)
            if self.plan.mode == "events":
                self._events(packet, wall, events)
            else:
                self._continuous(packet, wall, events)
        return events

    def _wall(self, pts: int) -> float:
        """Wall time of a packet on the recorder's own steady clock, so that segments
        abut exactly; it follows the stream's arrival clock only past REANCHOR_S (a
        source that stalled, or drifts), not through network jitter."""
        live = self.stream.wall_of(pts)
        if (
            self._anchor is None
            or abs(self._anchor[0] + (pts - self._anchor[1]) / CLOCK_RATE - live) > REANCHOR_S
        ):
            self._anchor = (live, pts)
        return self._anchor[0] + (pts - self._anchor[1]) / CLOCK_RATE

    def _swap(self) -> Segment:
        """Close the current segment (the caller holds the I/O lock)."""
        writer, self.writer = self.writer, None
        assert writer is not None
        return writer.close()

    def _split(self, packet: av.Packet, wall: float) -> bool:
        w = self.writer
        return (
            w is not None and packet.is_keyframe and wall - w.segment.start >= self.plan.segment_s
        )

    def _continuous(self, packet: av.Packet, wall: float, events: list[Segment]) -> None:
        if self._split(packet, wall):
            events.append(self._swap())
        if self.writer is None:
            if not packet.is_keyframe:
                return
            events.append(self._open(packet, wall, "continuous"))
        else:
            self.writer.write(packet)

    def _events(self, packet: av.Packet, wall: float, events: list[Segment]) -> None:
        self.ring.append((wall, packet))
        # Keep pre_s, from the key frame that starts it, and a margin for a mark that
        # reaches us late (Redis, a loaded node): its pre-roll must still be here.
        horizon = wall - self.plan.pre_s - MARK_LATENCY_S
        while len(self.ring) > 1:
            keyframes = [i for i, (w, p) in enumerate(self.ring) if p.is_keyframe and w <= horizon]
            if len(keyframes) < 1 or keyframes[-1] == 0:
                break
            for _ in range(keyframes[-1]):
                self.ring.popleft()
        if self.writer is not None and (self._split(packet, wall) or (
                packet.is_keyframe and wall > self.until)):  # fmt: skip
            events.append(self._swap())
            if wall > self.until:
                # What the ring held is on disk now: a next mark's pre-roll starts here,
                # never inside the segment just written.
                self.ring = collections.deque([(wall, packet)])
                return
        if self.writer is None and self.pending_from is not None:
            start = self.pending_from
            self.pending_from = None
            backlog = list(self.ring)
            first = max(
                (i for i, (w, p) in enumerate(backlog) if p.is_keyframe and w <= start),
                default=next((i for i, (_, p) in enumerate(backlog) if p.is_keyframe), None),
            )
            if first is None:
                return
            w0, p0 = backlog[first]
            events.append(self._open(p0, w0, "event"))
            for _, p in backlog[first + 1 :]:
                self.writer.write(p)
            return
        if self.writer is None and packet.is_keyframe and wall <= self.until:
            events.append(self._open(packet, wall, "event"))  # a segment split mid-event
        elif self.writer is not None:
            self.writer.write(packet)
