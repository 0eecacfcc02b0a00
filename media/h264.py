"""H.264 bitstream helpers: Annex-B normalisation and the one encoder we share."""

from __future__ import annotations

from fractions import Fraction

import av

_START = b"\x00\x00\x01"
IDR, SPS, PPS = 5, 7, 8


def nal_types(data: bytes) -> set[int]:
    types = set()
    i = data.find(_START)
    while i != -1 and i + 3 < len(data):
        types.add(data[i + 3] & 0x1F)
        i = data.find(_START, i + 3)
    return types


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B buffer, each with its start code (3 or 4 bytes) and at
    least its header byte: empty units (start codes back to back, which a hostile
    publisher can send) are left out."""
    out, i = [], data.find(_START)
    while i != -1 and i + 3 < len(data):
        start = i - 1 if i > 0 and data[i - 1] == 0 else i
        j = data.find(_START, i + 3)
        end = len(data) if j == -1 else (j - 1 if data[j - 1] == 0 else j)
        if end > i + 3:
            out.append(data[start:end])
        i = j
    return out


def nal_type(unit: bytes) -> int:
    """The type of a NAL unit that starts with its start code (5 IDR, 7 SPS, 8 PPS...)."""
    return unit[3 if unit[2] == 1 else 4] & 0x1F


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units (with start codes) in an Annex-B access unit."""
    return b"".join(u for u in nal_units(data) if nal_type(u) in (SPS, PPS))


class ParameterSets:
    """The latest SPS and PPS of one H.264 stream, put back before every IDR that lacks
    them.

    Hardware encoders, some browsers and cameras that send parameter sets only in the
    SDP give them once; a viewer who joins later, a new recording segment and a snapshot
    each start at a key frame and can decode nothing without them. Every ingest path
    goes through one of these (Stream.ingest), so every consumer sees self-contained
    key frames. Packets are Annex-B access units.
    """

    SMALL = 1024  # a packet this small may carry parameter sets alone, before its IDR

    def __init__(self) -> None:
        self.sps = b""
        self.pps = b""

    def seed(self, annexb: bytes) -> None:
        """Learn parameter sets from Annex-B bytes (a source's extradata)."""
        units = nal_units(annexb)
        sps = b"".join(u for u in units if nal_type(u) == SPS)
        pps = b"".join(u for u in units if nal_type(u) == PPS)
        self.sps, self.pps = sps or self.sps, pps or self.pps

    def complete(self, packet: av.Packet) -> av.Packet:
        """`packet`, or a copy of it with the stored SPS/PPS before its IDR; learns any
        parameter sets the packet carries. Non-key packets are scanned only when small
        (parameter sets sent on their own), so the common path costs nothing."""
        if not packet.is_keyframe and packet.size > self.SMALL:
            return packet
        data = bytes(packet)
        units = nal_units(data)
        types = [nal_type(u) for u in units]
        if SPS in types or PPS in types:
            self.seed(data)
        if IDR not in types or (SPS in types and PPS in types) or not (self.sps and self.pps):
            return packet
        head = (b"" if SPS in types else self.sps) + (b"" if PPS in types else self.pps)
        fixed = av.Packet(head + data)
        fixed.pts, fixed.dts, fixed.time_base = packet.pts, packet.dts, packet.time_base
        fixed.is_keyframe = True
        return fixed


class AnnexB:
    """Makes a demuxed H.264 stream Annex-B, as WebRTC and the stream want it.

    MP4/FLV carry length-prefixed NALs (AVCC) and need ffmpeg's h264_mp4toannexb; RTSP
    already gives Annex-B, often with SPS/PPS only in the SDP: those are
    `parameter_sets`, for the stream's ParameterSets to put before key frames.
    """

    def __init__(self, stream: av.video.stream.VideoStream):
        extradata = stream.codec_context.extradata or b""
        self._bsf = None
        self.parameter_sets = b""
        if extradata[:1] == b"\x01":
            self._bsf = av.BitStreamFilterContext("h264_mp4toannexb", stream)
        else:
            self.parameter_sets = extradata

    def __call__(self, packet: av.Packet) -> list[av.Packet]:
        if self._bsf is not None:
            return [p for p in self._bsf.filter(packet) if p.size]
        return [packet]


class H264Encoder:
    """libx264 tuned for live video: no B-frames, SPS/PPS in every key frame."""

    def __init__(self, width: int, height: int, fps: int, bitrate: int | None = None):
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, fps)
        ctx.framerate = Fraction(fps, 1)
        ctx.gop_size = fps
        ctx.max_b_frames = 0
        if bitrate:
            ctx.bit_rate = bitrate
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "repeat-headers": "1",
            "annexb": "1",
        }
        # Without a global header libx264 puts SPS/PPS in-band, which WebRTC needs.
        self.ctx = ctx
        self.fps = fps
        self._pts = 0

    def encode(self, frame: av.VideoFrame) -> list[av.Packet]:
        if frame.format.name != "yuv420p" or frame.width != self.ctx.width:
            frame = frame.reformat(self.ctx.width, self.ctx.height, "yuv420p")
        frame.pts = self._pts
        frame.time_base = self.ctx.time_base
        self._pts += 1
        return self.ctx.encode(frame)
