"""H.264 bitstream helpers: Annex-B normalisation and the one encoder we share."""

from __future__ import annotations

from fractions import Fraction

import av

_START = b"\x00\x00\x01"


def nal_types(data: bytes) -> set[int]:
    types = set()
    i = data.find(_START)
    while i != -1 and i + 3 < len(data):
        types.add(data[i + 3] & 0x1F)
        i = data.find(_START, i + 3)
    return types


def parameter_sets(data: bytes) -> bytes:
    """The SPS and PPS NAL units (with start codes) at the head of an Annex-B key frame."""
    out, i = [], data.find(_START)
    while i != -1 and i + 3 < len(data):
        start = i - 1 if i > 0 and data[i - 1] == 0 else i
        j = data.find(_START, i + 3)
        end = len(data) if j == -1 else (j - 1 if data[j - 1] == 0 else j)
        if data[i + 3] & 0x1F in (7, 8):
            out.append(b"\x00" + data[start:end] if start == i else data[start:end])
        i = j
    return b"".join(out)


class AnnexB:
    """Makes a demuxed H.264 stream WebRTC-ready: Annex-B, SPS/PPS before key frames.

    MP4/FLV carry length-prefixed NALs (AVCC) and need ffmpeg's h264_mp4toannexb;
    RTSP already gives Annex-B but cameras often send SPS/PPS only in the SDP.
    """

    def __init__(self, stream: av.video.stream.VideoStream):
        extradata = stream.codec_context.extradata or b""
        self._bsf = None
        self._params = b""
        if extradata[:1] == b"\x01":
            self._bsf = av.BitStreamFilterContext("h264_mp4toannexb", stream)
        else:
            self._params = extradata

    def __call__(self, packet: av.Packet) -> list[av.Packet]:
        if self._bsf is not None:
            return [p for p in self._bsf.filter(packet) if p.size]
        if packet.is_keyframe and self._params and 7 not in nal_types(bytes(packet)):
            fixed = av.Packet(self._params + bytes(packet))
            fixed.pts, fixed.dts, fixed.time_base = packet.pts, packet.dts, packet.time_base
            fixed.is_keyframe = True
            return [fixed]
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
