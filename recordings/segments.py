"""One recording segment: a camera's H.264 (and Opus) packets remuxed into fragmented MP4.

No decode, no encode: packets are written as they came. The file is fragmented (a
fragment per key frame or per second, whichever comes first) and flushed after every
packet, so a server killed mid-segment leaves a file that plays to its last fragment
(after its first second: the moov goes with the first fragment).
Blocking (file I/O): run it in a thread.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import av

from gridwatch.media.audio import OPUS_RATE, opus_head
from gridwatch.media.h264 import parameter_sets
from gridwatch.media.stream import CLOCK_RATE, TIME_BASE

FRAGMENTED = {
    # delay_moov: the moov is written with the first fragment (at most a second in), once
    # every track's first time is known, so that the sound keeps its place beside the
    # pictures (with empty_moov each track would start at 0); make_zero then puts the
    # segment's earliest time at 0.
    "movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof",
    "avoid_negative_ts": "make_zero",
    "frag_duration": "1000000",  # microseconds: a fragment at least every second
    "flush_packets": "1",
    # A sound track that falls silent (a publisher's sound dropped) must not hold the
    # pictures in the muxer's interleaving queue: at most this long (microseconds).
    "max_interleave_delta": "1000000",
}


class DiskFull(OSError):
    pass


@dataclass
class Segment:
    camera: str
    path: str  # relative to the recordings root: CAMERA/YYYY-MM-DD/HH-MM-SS.mmm.mp4
    start: float  # Unix time of its first packet (a key frame)
    end: float | None = None  # Unix time its last frame ends; None while it is written
    size: int = 0
    kind: str = "continuous"  # or "event"
    # The node (cluster.node) whose disk holds the file; None: indexed by a version that
    # did not say, so only a node that finds the file on its own disk acts on it.
    node: str | None = None

    def as_json(self) -> dict:
        return {"camera": self.camera, "path": self.path, "start": self.start, "end": self.end,
                "size": self.size, "kind": self.kind, "node": self.node}  # fmt: skip


def segment_path(camera: str, start: float) -> str:
    t = datetime.fromtimestamp(start, UTC)
    return f"{camera}/{t:%Y-%m-%d}/{t:%H-%M-%S}.{t.microsecond // 1000:03d}Z.mp4"


class SegmentWriter:
    """Writes one segment: H.264 from a key frame (`first`), and the stream's Opus sound
    when it has sound (`audio`) from that key frame's time on; `node` is the writing node,
    recorded in the segment (the node that holds its file)."""

    def __init__(
        self,
        root: Path,
        camera: str,
        first: av.Packet,
        start: float,
        kind: str,
        audio: bool = False,
        node: str | None = None,
    ):
        self.segment = Segment(camera, segment_path(camera, start), start, kind=kind, node=node)
        self.file = root / self.segment.path
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self._first_pts = first.pts
        self.last_pts = first.pts  # the latest presentation time written
        self._last_dts = first.dts
        self._frame = CLOCK_RATE // 25  # one frame's duration, until measured
        try:
            self.out = av.open(str(self.file), "w", format="mp4", options=FRAGMENTED)
            self.vstream = self.out.add_stream("h264", rate=25)
            self.vstream.time_base = TIME_BASE
            # The muxer builds the avcC box from Annex-B parameter sets.
            self.vstream.codec_context.extradata = parameter_sets(bytes(first))
            self.astream = None
            if audio:
                self.astream = self.out.add_stream("opus", rate=OPUS_RATE)
                self.astream.time_base = TIME_BASE
                self.astream.codec_context.extradata = opus_head()  # the dOps box
        except OSError as e:
            raise _disk(e) from e
        self._last_audio = first.pts - 1
        self.write(first)

    def write(self, packet: av.Packet) -> None:
        """Mux one packet as it came: its decode and presentation times (B-frames give the
        MP4 composition offsets) on the stream's 90 kHz clock."""
        if packet.dts is not None and packet.dts > self._last_dts:
            # Decode times rise one frame at a time even where B-frames reorder pts.
            self._frame = min(packet.dts - self._last_dts, CLOCK_RATE)
            self._last_dts = packet.dts
        if packet.pts is not None:
            self.last_pts = max(self.last_pts, packet.pts)
        packet.stream = self.vstream
        try:
            self.out.mux(packet)
        except (OSError, av.FFmpegError) as e:
            raise _disk(e) from e

    def write_audio(self, packet: av.Packet) -> None:
        """Mux one Opus packet of the stream (90 kHz clock) if it belongs here: from the
        first key frame's time on, never twice. Copied: the muxer rescales what it gets,
        and the stream's packets are shared with its listeners."""
        if self.astream is None or packet.pts < self._first_pts or packet.pts <= self._last_audio:
            return
        self._last_audio = packet.pts
        copy = av.Packet(bytes(packet))
        copy.pts, copy.dts, copy.time_base = packet.pts, packet.pts, packet.time_base
        copy.stream = self.astream
        try:
            self.out.mux(copy)
        except (OSError, av.FFmpegError) as e:
            raise _disk(e) from e

    def wall_end(self) -> float:
        return self.segment.start + (self.last_pts - self._first_pts + self._frame) / CLOCK_RATE

    def close(self) -> Segment:
        try:
            self.out.close()
        except (OSError, av.FFmpegError):
            pass  # the fragments already on disk are the segment
        self.segment.end = self.wall_end()
        self.segment.size = self.file.stat().st_size if self.file.exists() else 0
        return self.segment


def _disk(e: Exception) -> OSError:
    if getattr(e, "errno", None) == errno.ENOSPC or "No space" in str(e):
        return DiskFull(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return e if isinstance(e, OSError) else OSError(str(e))


def probe_end(file: Path, start: float) -> tuple[float, int]:
    """A segment left open by a crash: (its end as Unix time, size) from what it holds."""
    first = last = None
    try:
        with av.open(str(file)) as c:
            for packet in c.demux(video=0):
                if packet.pts is None:
                    continue
                t = float(packet.pts * packet.time_base)
                first = t if first is None else first
                last = t if last is None else max(last, t)
    except (av.FFmpegError, OSError):
        pass
    size = file.stat().st_size if file.exists() else 0
    return start + ((last - first) if first is not None else 0.0), size
