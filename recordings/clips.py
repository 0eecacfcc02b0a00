"""Clip export: [from, to] of a camera's segments as one MP4, cut at key frames, by remux.

The clip starts at the last key frame at or before `from` (a decoder needs it) and
ends with the last packet before `to`; the segments' sound comes along, from the clip's
first picture on. Blocking: run it in a thread.
"""

from __future__ import annotations

from pathlib import Path

import av

from gridwatch.recordings.segments import Segment


class NoFootage(LookupError):
    pass


class _Clip:
    """The output file and its clock: every packet's time is the wall time it was
    recorded at (its segment's start plus its offset from the segment's first picture),
    less the clip's first decode time."""

    def __init__(self, out_path: Path, start: float):
        self.out_path = out_path
        self.start = start
        self.out: av.container.OutputContainer | None = None
        self.video: av.video.stream.VideoStream | None = None
        self.audio: av.audio.stream.AudioStream | None = None
        self.first: float | None = None  # seconds after `start` of the first decode time
        self.last: dict[str, int] = {}  # per kind: the last decode time written
        self.end = 0.0  # seconds: the latest presentation time written

    def open(
        self, vin: av.video.stream.VideoStream, ain: av.audio.stream.AudioStream | None
    ) -> None:
        self.out = av.open(
            str(self.out_path), "w", format="mp4", options={"movflags": "+faststart"}
        )
        self.video = self.out.add_stream_from_template(vin)
        self.audio = self.out.add_stream_from_template(ain) if ain is not None else None

    def write(self, packet: av.Packet, wall_of_pts: float, wall_of_dts: float) -> None:
        """One packet, recorded at these wall times (presentation and decode: B-frames
        keep their composition offsets)."""
        assert self.out is not None and self.video is not None
        kind = packet.stream.type
        stream = self.video if kind == "video" else self.audio
        if stream is None:
            return
        if self.first is None:
            self.first = wall_of_dts - self.start
        tb = float(stream.time_base)
        pts = round((wall_of_pts - self.start - self.first) / tb)
        dts = round((wall_of_dts - self.start - self.first) / tb)
        last = self.last.get(kind)
        if last is not None and dts <= last:
            # Rounding, or segments that abut, must not send time back.
            pts, dts = pts + last + 1 - dts, last + 1
        if dts < 0:
            return  # sound from before the clip's first picture
        packet.pts, packet.dts = max(pts, dts), dts
        self.last[kind] = dts
        self.end = max(self.end, packet.pts * tb)
        packet.stream = stream
        self.out.mux(packet)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


def export(sources: list[tuple[Segment, Path]], start: float, end: float, out_path: Path) -> float:
    """Write the clip of `sources` (each segment with the file that holds it: on this
    node's disk, or a copy fetched from the node that wrote it) to `out_path`; its
    duration in seconds. NoFootage when no segment holds a picture in [start, end)."""
    clip = _Clip(out_path, start)
    pending: list[tuple[av.Packet, float, float]] = []  # the GOP before `start`
    try:
        for seg, file in sorted(sources, key=lambda s: s[0].start):
            try:
                src = av.open(str(file))
            except (av.FFmpegError, OSError):
                continue
            with src:
                if not src.streams.video:
                    continue
                vin = src.streams.video[0]
                ain = src.streams.audio[0] if src.streams.audio else None
                base: float | None = None  # seconds: the segment's first picture
                past: set[int] = set()
                try:
                    for packet in src.demux(*(s for s in (vin, ain) if s is not None)):
                        if packet.pts is None or packet.size == 0:
                            continue
                        tb = packet.time_base
                        if packet.stream is vin and base is None:
                            base = float(packet.pts * tb)
                        if base is None:
                            continue
                        wall = seg.start + float(packet.pts * tb) - base
                        wall_dts = (
                            seg.start
                            + float((packet.dts if packet.dts is not None else packet.pts) * tb)
                            - base
                        )
                        if wall >= end:
                            # A fragment holds a run of pictures, then the sound of
                            # the same time: done once every track has gone past `end`.
                            past.add(packet.stream.index)
                            if len(past) == len(src.streams.video[:1] + src.streams.audio[:1]):
                                break
                            continue
                        if clip.out is None:
                            if packet.stream is not vin:
                                continue
                            if packet.is_keyframe:
                                pending = []
                            if not pending and not packet.is_keyframe:
                                continue
                            pending.append((packet, wall, wall_dts))
                            if wall < start:
                                continue
                            clip.open(vin, ain)
                            for p, w, d in pending:
                                clip.write(p, w, d)
                            pending = []
                        else:
                            clip.write(packet, wall, wall_dts)
                except av.FFmpegError:
                    pass  # a segment cut short by a crash: what it holds is in the clip
    finally:
        clip.close()
    if clip.out is None or clip.first is None:
        raise NoFootage("no recording covers that time")
    return clip.end
