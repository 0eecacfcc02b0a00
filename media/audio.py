"""A stream's sound: Opus, the one audio codec every WebRTC viewer takes.

Opus from a WebRTC publisher is forwarded as it came. Anything else a camera or an
encoder sends (AAC, G.711 A-law and mu-law, MP3, ...) is transcoded to Opus once per
stream, whatever the number of listeners, by an OpusTranscoder in the thread that reads
the source (blocking: never on the event loop). Opus frames are 20 ms at 48 kHz
(RFC 7587: the RTP clock of Opus is always 48 kHz).
"""

from __future__ import annotations

import struct
from fractions import Fraction

import av
from av.audio.resampler import AudioResampler

OPUS_RATE = 48000
OPUS_TIME_BASE = Fraction(1, OPUS_RATE)
OPUS_FRAME = 960  # samples: 20 ms
OPUS_PRE_SKIP = 312  # libopus's encoder delay at 48 kHz, in samples


def opus_head(channels: int = 2, pre_skip: int = OPUS_PRE_SKIP) -> bytes:
    """The 19-byte OpusHead (RFC 7845 5.1) an MP4 muxer needs for its dOps box: version 1,
    `channels`, `pre_skip` samples, 48 kHz input, no gain, channel mapping family 0."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, OPUS_RATE, 0, 0)


class AudioError(ValueError):
    """Audio a source sent that cannot be decoded; the message says what."""


class OpusTranscoder:
    """Decodes one source's audio and encodes it to 48 kHz stereo Opus, 20 ms a packet.

    `decoder`: an opened or openable decoding context (a demuxed stream's, or one made
    from a codec name and its configuration); None for one that is handed decoded
    frames (`encode`). Output packets carry presentation times in OPUS_TIME_BASE that
    follow the source's own (so that sound stays with its pictures): the samples
    encoded since the first frame's time, put back on the source's time whenever a frame
    comes more than RESYNC_S off it (packets lost on the way: the sound must not fall
    behind for the rest of the session). A source that changes its rate or layout
    midway (HE-AAC's implicit SBR, MP3 at mixed rates) is resampled afresh.
    """

    RESYNC_S = 0.1

    def __init__(self, decoder: av.AudioCodecContext | None = None):
        self.decoder = decoder
        self.resampler: AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None  # the resampler's (format, layout, rate)
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate, encoder.layout, encoder.format = OPUS_RATE, "stereo", "s16"
        encoder.bit_rate = 64000
        encoder.time_base = OPUS_TIME_BASE
        encoder.options = {"application": "voip"}  # speech first: officers, body cameras
        self.encoder = encoder
        self._origin: int | None = None  # OPUS_TIME_BASE time of sample 0
        self._samples = 0  # samples handed to the encoder

    @classmethod
    def for_codec(cls, name: str, extradata: bytes = b"", sample_rate: int = 0,
                  channels: int = 0) -> OpusTranscoder:  # fmt: skip
        """A transcoder for a codec named as FFmpeg names it ("aac", "pcm_alaw", ...);
        AudioError when FFmpeg has no decoder for it."""
        try:
            decoder = av.CodecContext.create(name, "r")
        except (av.FFmpegError, ValueError) as e:
            raise AudioError(f"no decoder for audio codec {name!r}: {e}") from None
        if extradata:
            decoder.extradata = extradata
        if sample_rate:
            decoder.sample_rate = sample_rate
        if channels:
            decoder.layout = "mono" if channels == 1 else "stereo"
        return cls(decoder)

    def __call__(self, packet: av.Packet | None) -> list[av.Packet]:
        """Opus packets for one source packet (often none: libopus buffers 20 ms);
        AudioError for data that does not decode."""
        if self.decoder is None:
            raise AudioError("this transcoder takes decoded frames only")
        try:
            frames = self.decoder.decode(packet)
        except av.FFmpegError as e:
            raise AudioError(f"{self.decoder.name} audio does not decode: {e}") from None
        return [opus for frame in frames for opus in self.encode(frame)]

    def encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        """Opus packets for one decoded frame of any rate, layout and sample format;
        AudioError for one that cannot be resampled or encoded."""
        try:
            return self._encode(frame)
        except (av.FFmpegError, ValueError) as e:
            raise AudioError(f"audio cannot be turned into Opus: {e}") from None

    def _encode(self, frame: av.AudioFrame) -> list[av.Packet]:
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if shape != self._input:
            self._input = shape
            self.resampler = AudioResampler(
                format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_FRAME
            )
        if frame.pts is not None and frame.time_base:
            t = round(frame.pts * frame.time_base * OPUS_RATE)
            if (
                self._origin is None
                or abs(t - (self._origin + self._samples)) > self.RESYNC_S * OPUS_RATE
            ):
                self._origin = t - self._samples
        elif self._origin is None:
            self._origin = 0
        assert self.resampler is not None and self._origin is not None
        out: list[av.Packet] = []
        for chunk in self.resampler.resample(frame):
            chunk.pts, chunk.time_base = self._samples, OPUS_TIME_BASE
            self._samples += chunk.samples
            for opus in self.encoder.encode(chunk):
                opus.pts = opus.dts = self._origin + opus.pts
                opus.time_base = OPUS_TIME_BASE
                out.append(opus)
        return out
