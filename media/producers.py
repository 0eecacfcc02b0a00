"""Producers: the threads that read a source and feed its Stream.

Demuxing, pacing and (rare) transcoding block, so each producer owns one thread;
packets cross to the event loop with call_soon_threadsafe. A source that fails is
reopened with exponential backoff and full jitter so that a camera farm coming back
after a network cut does not reconnect in lockstep.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import itertools
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import av

from gridwatch.media import clock
from gridwatch.media.audio import AudioError, OpusTranscoder
from gridwatch.media.h264 import AnnexB, H264Encoder
from gridwatch.media.onvif import OnvifFailure
from gridwatch.media.sources import Source, redact
from gridwatch.media.stream import Stream

log = logging.getLogger("gridwatch.media")

Resolver = Callable[[Source], Awaitable[str]]


class SourceEnded(Exception):
    pass


# Failures a live source is expected to have: no log trace, just the state and a retry.
EXPECTED = (av.FFmpegError, SourceEnded, OSError, ValueError, OnvifFailure)


def is_refusal(e: BaseException) -> bool:
    """Whether the source refused our credentials: an ONVIF device's WS-Security refusal
    (or one its clock may explain), an RTSP or HTTP 401/403."""
    if isinstance(e, OnvifFailure):
        return e.reason in ("credentials", "clock")
    return isinstance(e, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError))


def backoff_s(attempt: int, min_s: float, max_s: float) -> float:
    """Seconds to wait before reconnect `attempt` (0 after a session that ran a while):
    exponential from `min_s`, capped at `max_s`, with full jitter (AWS Architecture Blog,
    "Exponential Backoff And Jitter", 2015), so that many sources that failed together do
    not come back in lockstep."""
    cap = min(max_s, min_s * 2 ** min(attempt, 16))
    return random.uniform(min_s, max(cap, min_s))


class ThreadProducer(abc.ABC):
    """Runs `session()` in a thread until stopped, reconnecting after each failure."""

    def __init__(
        self,
        stream: Stream,
        *,
        reconnect_min_s: float,
        reconnect_max_s: float,
        read_timeout_s: float,
        refused_retry_s: float = 60.0,
        resolve: Resolver | None = None,
    ):
        self.stream = stream
        self.source = stream.source
        self.loop = stream.loop
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.read_timeout_s = read_timeout_s
        self.refused_retry_s = refused_retry_s
        self.resolve = resolve
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"producer-{stream.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the thread to end (after stop()); whether it
        has. Blocking: call it from a thread."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # thread side ------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.session()
                error = "source ended"
            except Exception as e:  # whatever a source does, the producer lives on
                error = redact(f"{type(e).__name__}: {e}")
                if not isinstance(e, EXPECTED):
                    log.exception("producer error", extra={"stream": self.stream.id})
                refused = is_refusal(e)
            else:
                refused = False
            if self._stop.is_set():
                break
            # A session that ran for a while was a success; start the backoff afresh.
            attempt = 0 if time.monotonic() - started > 10 else attempt + 1
            self._call(self.stream.source_failed, error, True)
            if refused:  # it will not change its mind soon, and may lock the account
                self._stop.wait(self.refused_retry_s)
                continue
            self._stop.wait(backoff_s(attempt, self.reconnect_min_s, self.reconnect_max_s))

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        if self._stop.is_set():
            return
        try:
            self.loop.call_soon_threadsafe(self._on_loop, fn, args)
        except RuntimeError:  # the loop is closed: the server is shutting down
            self._stop.set()

    def _on_loop(self, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        # A stopped producer's last packets must not reach a stream that moved on.
        if not self._stop.is_set() and self.stream.producer is self:
            fn(*args)

    def emit(self, packet: av.Packet) -> None:
        self._call(self.stream.ingest, packet)

    def online(
        self, codec: str | None, width: int | None, height: int | None, parameter_sets: bytes = b""
    ) -> None:
        self._call(self.stream.set_online, codec, width, height, parameter_sets)

    def pace(self, t0: float, seconds: float) -> None:
        """Sleep until `seconds` of media time after wall time `t0` (file/synthetic sources)."""
        delay = t0 + seconds - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)

    @abc.abstractmethod
    def session(self) -> None:
        """Open the source and emit its packets until it fails or the producer stops."""


class DecodeTimes:
    """Gives every packet of a demuxed source a decode time.

    RTP carries presentation times only. FFmpeg's RTSP demuxer works a B-frame stream's
    decode times out a few packets in, so its first packets (the key frame among them)
    come with none. Those are held, at most HOLD packets (about 100 ms at stream start),
    until a decode time arrives, and get the evenly spaced ones before it; a source that
    gives none by then is not reordered, and decodes when it presents. `frame`: one frame
    interval in the source's time base.
    """

    HOLD = 16

    def __init__(self, frame: int):
        self.frame = max(1, frame)
        self.held: list[av.Packet] = []
        self.settled = False

    def __call__(self, packet: av.Packet) -> list[av.Packet]:
        if self.settled:
            if packet.dts is None:
                packet.dts = packet.pts
            return [packet]
        self.held.append(packet)
        if packet.dts is None and len(self.held) < self.HOLD:
            return []
        self.settled, held, self.held = True, self.held, []
        known = packet.dts
        for i, p in enumerate(held[:-1] if known is not None else held):
            p.dts = p.pts if known is None else known - (len(held) - 1 - i) * self.frame
            p.pts = p.dts if p.pts is None else max(p.pts, p.dts)
        return held


class DemuxProducer(ThreadProducer):
    """RTSP, RTMP, ONVIF (resolved to RTSP) and file sources through PyAV's demuxers."""

    def _url(self) -> str:
        if self.resolve is None:
            return self.source.url
        future = asyncio.run_coroutine_threadsafe(self.resolve(self.source), self.loop)
        try:
            return future.result(timeout=self.read_timeout_s * 3)
        except concurrent.futures.CancelledError:  # the loop is shutting down
            raise SourceEnded("stopped while resolving the source") from None

    def session(self) -> None:
        src = self.source
        url = self._url()
        options: dict[str, str] = {}
        if url.startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": src.params.get("transport", "tcp")}
        with av.open(url, options=options, timeout=(self.read_timeout_s, self.read_timeout_s)) as c:
            vstream = c.streams.video[0] if c.streams.video else None
            astream = c.streams.audio[0] if c.streams.audio else None
            if vstream is None and astream is None:
                raise SourceEnded("source has neither video nor audio")
            video = self._video(vstream) if vstream is not None else None
            sound = self._sound(astream) if astream is not None else None
            if video is None:
                self.online(None, None, None)  # a microphone, a radio channel
            paced = src.kind == "file"
            while not self._stop.is_set():
                t0, first = time.monotonic(), {}
                for packet in c.demux(*(s for s in (vstream, astream) if s is not None)):
                    if self._stop.is_set():
                        return
                    if packet.size == 0:
                        continue
                    if paced and packet.pts is not None and packet.time_base is not None:
                        t = float(packet.pts * packet.time_base)
                        self.pace(t0, t - first.setdefault(packet.stream.index, t))
                    if packet.stream is vstream and video is not None:
                        for out in video(packet):
                            self.emit(out)
                    elif sound is not None:
                        try:
                            for out in sound(packet):
                                self._call(self.stream.ingest_audio, out, True)
                        except AudioError as e:
                            # The pictures go on; the sound of this session is lost, once said.
                            self._call(self.stream.sound_lost, str(e))
                            sound = None
                if not paced:
                    return
                c.seek(0)  # files loop, as demo cameras should

    def _video(
        self, vstream: av.video.stream.VideoStream
    ) -> Callable[[av.Packet], list[av.Packet]]:
        """Goes online with the video's codec; what turns its packets into the stream's."""
        codec = vstream.codec_context.name
        convert: Callable[[av.Packet], list[av.Packet]]
        params = b""
        if codec == "h264":
            convert = AnnexB(vstream)
            params = convert.parameter_sets
        else:
            convert = Transcoder(self.stream, vstream)
        self.online(codec, vstream.codec_context.width, vstream.codec_context.height, params)
        rate = vstream.average_rate or vstream.guessed_rate or 25
        times = DecodeTimes(round(1 / (rate * vstream.time_base))) if vstream.time_base else None

        def video(packet: av.Packet) -> list[av.Packet]:
            timed = times(packet) if times is not None else [packet]
            return [out for p in timed for out in convert(p)]

        return video

    def _sound(
        self, astream: av.audio.stream.AudioStream
    ) -> Callable[[av.Packet], list[av.Packet]]:
        """Opus as it came; any other codec through one OpusTranscoder."""
        if astream.codec_context.name == "opus":
            return lambda packet: [packet]
        transcoder = OpusTranscoder(astream.codec_context)
        state = self.stream.state

        def sound(packet: av.Packet) -> list[av.Packet]:
            out = transcoder(packet)
            state.audio_transcoded += len(out)
            return out

        return sound


class Transcoder:
    """Decode and re-encode to H.264, once per stream, for codecs browsers cannot take."""

    def __init__(self, stream: Stream, vstream: av.video.stream.VideoStream):
        self.stream = stream
        self.decoder = vstream.codec_context
        rate = vstream.average_rate or vstream.guessed_rate or 25
        self.fps = max(1, min(60, round(float(rate))))
        self.encoder: H264Encoder | None = None

    def __call__(self, packet: av.Packet) -> list[av.Packet]:
        out: list[av.Packet] = []
        for frame in self.decoder.decode(packet):
            self.stream.state.decoded_frames += 1
            if self.encoder is None:
                w, h = frame.width - frame.width % 2, frame.height - frame.height % 2
                self.encoder = H264Encoder(w, h, self.fps)
            out.extend(self.encoder.encode(frame))
            self.stream.state.encoded_frames += 1
        return out


class SyntheticProducer(ThreadProducer):
    """`lavfi:` test patterns and `clock:` wall-clock stamps, encoded live to H.264."""

    def frames(self) -> Iterator[av.VideoFrame]:
        src = self.source
        if src.kind == "clock":
            w, h = int(src.params["width"]), int(src.params["height"])
            base = clock.background(w, h)
            bar = max(8, w // 40)
            n = 0
            while True:
                img = base.copy()
                x = (n * 4) % (w - bar)
                img[h // 2 : h, x : x + bar] = 255  # motion, so frames differ
                clock.stamp(img[:h], time.time_ns() // 1_000_000)
                yield av.VideoFrame.from_ndarray(img, format="yuv420p")
                n += 1
        else:
            with av.open(src.url, format="lavfi") as c:
                yield from c.decode(video=0)

    def _fps(self) -> int:
        if self.source.kind == "clock":
            return int(self.source.params["fps"])
        with av.open(self.source.url, format="lavfi") as c:
            rate = c.streams.video[0].average_rate or c.streams.video[0].guessed_rate or 25
            return max(1, min(60, round(float(rate))))

    def session(self) -> None:
        fps = self._fps()
        encoder: H264Encoder | None = None
        frames = self.frames()
        t0 = time.monotonic()
        for n in itertools.count():
            # Pace before the frame is made: a clock: stamp then reads the send time.
            self.pace(t0, n / fps)
            if self._stop.is_set():
                return
            frame = next(frames, None)
            if frame is None:
                raise SourceEnded("lavfi graph ended")
            if encoder is None:
                encoder = H264Encoder(
                    frame.width - frame.width % 2, frame.height - frame.height % 2, fps
                )
                self.online("h264", encoder.ctx.width, encoder.ctx.height)
            for packet in encoder.encode(frame):
                self.emit(packet)
            self.stream.state.encoded_frames += 1
