"""Clip export: [from, to] of a camera's segments as one MP4, cut at key frames, by remux.

The clip starts at the last key frame at or before `from` (a decoder needs it) and
ends with the last packet before `to`. Blocking: run it in a thread.
"""

from __future__ import annotations

from pathlib import Path

import av

from gridwatch.recordings.segments import Segment


class NoFootage(LookupError):
    pass


def export(root: Path, segments: list[Segment], start: float, end: float, out_path: Path) -> float:
    """Write the clip to `out_path`; its duration in seconds."""
    out = None
    vstream = None
    first = last_dts = end_pts = None
    pending: list[av.Packet] = []  # the GOP before `start`, in case `start` is mid-GOP
    try:
        for seg in sorted(segments, key=lambda s: s.start):
            try:
                src = av.open(str(root / seg.path))
            except (av.FFmpegError, OSError):
                continue
            with src:
                if not src.streams.video:
                    continue
                vin = src.streams.video[0]
                base = None
                try:
                    for packet in src.demux(vin):
                        if packet.pts is None or packet.size == 0:
                            continue
                        base = packet.pts if base is None else base
                        wall = seg.start + float((packet.pts - base) * vin.time_base)
                        if wall >= end:
                            break
                        if out is None:
                            if packet.is_keyframe:
                                pending = []
                            if not pending and not packet.is_keyframe:
                                continue
                            pending.append(packet)
                            if wall < start:
                                continue
                            out = av.open(str(out_path), "w", format="mp4",
                                          options={"movflags": "+faststart"})  # fmt: skip
                            vstream = out.add_stream_from_template(vin)
                            todo, pending = pending, []
                        else:
                            todo = [packet]
                        scale = float(vin.time_base / vstream.time_base)
                        shift = (seg.start - start) / float(vstream.time_base)
                        for p in todo:
                            # Presentation and decode times both move: B-frames keep their
                            # composition offsets.
                            pts = round((p.pts - base) * scale + shift)
                            dts = (
                                round((p.dts - base) * scale + shift) if p.dts is not None else pts
                            )
                            first = dts if first is None else first
                            pts, dts = pts - first, dts - first
                            if last_dts is not None and dts <= last_dts:
                                # Rounding, or segments that abut, must not send time back.
                                pts, dts = pts + last_dts + 1 - dts, last_dts + 1
                            p.pts, p.dts = max(pts, dts), dts
                            last_dts = dts
                            end_pts = p.pts if end_pts is None else max(end_pts, p.pts)
                            p.stream = vstream
                            out.mux(p)
                except av.FFmpegError:
                    pass  # a segment cut short by a crash: what it holds is in the clip
    finally:
        if out is not None:
            out.close()
    if out is None or end_pts is None:
        raise NoFootage("no recording covers that time")
    return float(end_pts * vstream.time_base)
