"""A WHIP publisher built on aiortc, for tests: a moving test picture sent as H.264.

Its encoder keeps one key frame per `gop` frames unless the receiver asks for one (PLI),
so a test can tell a requested key frame from a scheduled one.
"""

from __future__ import annotations

import fractions

import aiohttp
import av
import numpy as np
from aiortc import (
    AudioStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    VideoStreamTrack,
    rtcrtpsender,
)
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import convert_timebase

from gridwatch.media.h264 import PPS, SPS, nal_type, nal_units
from gridwatch.media.webrtc import rtc_configuration, use_for, use_host_addresses
from support.whep_client import negotiate

use_host_addresses(["127.0.0.1"])  # the network rule: publishers stay on loopback
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


class LongGopEncoder(Encoder):
    """libx264 with a long GOP that honours the receiver's key frame requests."""

    gop = 600
    forced: list[int] = []  # one entry per key frame a receiver asked for, all encoders

    def __init__(self) -> None:
        self.ctx: av.CodecContext | None = None

    def encode(self, frame: av.VideoFrame, force_keyframe: bool = False):
        if self.ctx is None:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.width, ctx.height, ctx.pix_fmt = frame.width, frame.height, "yuv420p"
            ctx.framerate, ctx.time_base = 30, fractions.Fraction(1, 30)
            ctx.gop_size, ctx.max_b_frames = self.gop, 0
            ctx.options = {"tune": "zerolatency", "preset": "ultrafast", "repeat-headers": "1"}
            self.ctx = ctx
        frame.pict_type = av.video.frame.PictureType.I if force_keyframe else 0
        if force_keyframe:
            LongGopEncoder.forced.append(1)
        data = self.bitstream(b"".join(bytes(p) for p in self.ctx.encode(frame)))
        payloads = H264Encoder._packetize(H264Encoder._split_bitstream(data))
        return payloads, convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)

    def bitstream(self, data: bytes) -> bytes:
        """What goes on the wire of an access unit libx264 made (a subclass's quirk)."""
        return data

    def pack(self, packet):  # pragma: no cover - frames only
        raise NotImplementedError

    @property
    def target_bitrate(self) -> int:
        return 1_000_000

    @target_bitrate.setter
    def target_bitrate(self, value: int) -> None:
        pass


class ParameterSetsOnceEncoder(LongGopEncoder):
    """A hardware-encoder-like publisher: SPS/PPS with its first key frame only; its
    later key frames (every `gop` frames, or when a receiver asks) come without them."""

    gop = 60

    def __init__(self) -> None:
        super().__init__()
        self.sent_params = False

    def bitstream(self, data: bytes) -> bytes:
        units = nal_units(data)
        kinds = [nal_type(u) for u in units]
        if not self.sent_params and SPS in kinds:
            self.sent_params = True
            return data
        return b"".join(u for u, k in zip(units, kinds, strict=True) if k not in (SPS, PPS))


def use_long_gop(encoder: type[LongGopEncoder] = LongGopEncoder) -> None:
    """aiortc's senders in this process encode H.264 with `encoder` from now on."""
    use_for(rtcrtpsender, "get_encoder", "video/H264", encoder)


class MovingPicture(VideoStreamTrack):
    """320x240 at 30 fps, a bar moving across a gradient: every frame differs."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.base = np.tile(np.arange(320, dtype=np.uint8), (240, 1))

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        img = np.stack([self.base] * 3, axis=2).copy()
        x = (self.n * 4) % 300
        img[:, x : x + 20] = 255
        self.n += 1
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class Tone(AudioStreamTrack):
    """A 440 Hz sine at 48 kHz, mono, 20 ms a frame: what a test can recognise in the
    sound that comes out the other end."""

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # paced silence, with its time
        start = frame.pts
        t = (np.arange(frame.samples) + start) / frame.sample_rate
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        out = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
        return out


async def publish(
    http: aiohttp.ClientSession,
    base: str,
    stream: str,
    token: str,
    codec: str = "video/H264",
    *,
    video: bool = True,
    audio: bool = False,
) -> tuple[RTCPeerConnection, str]:
    """Publish a MovingPicture (and with `audio` a Tone, in Opus) over WHIP, offering only
    `codec` for the pictures; (pc, Location)."""
    pc = RTCPeerConnection(rtc_configuration([]))
    if video:
        transceiver = pc.addTransceiver(MovingPicture(), direction="sendonly")
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == codec]
        )
    if audio:
        pc.addTransceiver(Tone(), direction="sendonly")
    location, _ = await negotiate(http, base, stream, token, pc, "whip")
    return pc, location
