"""A Stream: one producer, many consumers, encoded packets in between.

The producer starts when the first consumer attaches and stops a grace period after
the last one leaves (go2rtc's model). The stream keeps the packets since the last key
frame (the GOP cache) so that a consumer that joins starts decoding at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av

from gridwatch.media.h264 import ParameterSets
from gridwatch.media.sources import Source

log = logging.getLogger("gridwatch.media")

CLOCK_RATE = 90000
TIME_BASE = Fraction(1, CLOCK_RATE)
# The GOP cache's bounds. Cameras in "smart codec" mode send a key frame every 10-20 s
# when little moves; a GOP longer or larger than this is not cached (a joiner waits for
# the next key frame, and a WebRTC publisher is asked for one at once).
GOP_MAX_S = 30
GOP_MAX_BYTES = 16 * 1024 * 1024


class StreamClosed(Exception):
    pass


@dataclass
class StreamState:
    online: bool = False
    codec: str | None = None  # the video codec; None for a source with sound only
    width: int | None = None
    height: int | None = None
    fps: float = 0.0
    bitrate: float = 0.0
    last_error: str | None = None
    reconnects: int = 0
    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    dropped: int = 0  # packets not delivered to a consumer that fell behind
    decoded_frames: int = 0  # frames this server decoded (transcode only)
    encoded_frames: int = 0  # frames this server encoded (transcode or synthetic source)
    snapshot_decodes: int = 0  # frames decoded to answer snapshot requests
    sampler_decodes: int = 0  # frames decoded for the detectors
    bytes_out: int = 0  # bytes handed to consumers
    keyframe_requests: int = 0  # PLIs sent to a WebRTC publisher as viewers joined
    audio: str | None = None  # "opus" while the stream has sound (any source codec becomes Opus)
    audio_packets: int = 0
    audio_transcoded: int = 0  # Opus packets this server encoded from another codec
    audio_dropped: int = 0  # sound packets a lagging listener did not get


class PacketQueue(ABC):
    """A bounded queue of a stream's packets for one reader, closed by a None at its end."""

    def __init__(self, stream: Stream, name: str, maxsize: int):
        self.stream = stream
        self.name = name
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue(maxsize)
        self.closed = False

    def ready(self) -> list[av.Packet]:
        """What is queued now, without waiting (a writer takes packets in batches)."""
        out = []
        while not self._queue.empty():
            packet = self._queue.get_nowait()
            if packet is None:
                self._queue.put_nowait(None)  # closed: get() raises on it
                break
            out.append(packet)
        return out

    async def get(self) -> av.Packet:
        """The next packet; StreamClosed once the queue is closed."""
        if self.closed:
            raise StreamClosed(self.name)
        packet = await self._queue.get()
        if packet is None:
            raise StreamClosed(self.name)
        return packet

    def _empty(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def close(self) -> None:
        """Leave the stream; a waiting get() raises StreamClosed."""
        if self.closed:
            return
        self.closed = True
        self._leave()
        self._empty()
        self._queue.put_nowait(None)

    @abstractmethod
    def _leave(self) -> None:
        """Take this reader off its stream (each kind of reader is listed in its own place)."""


class Consumer(PacketQueue):
    """A bounded queue of packets for one viewer, recorder or sampler.

    A consumer that joins mid-GOP is handed the cached GOP as its `catch_up` (the
    packets from the last key frame, shared, not copied), served before its queue of
    live packets: however long the GOP, joining never overflows the queue. A consumer
    that falls behind loses packets up to the next key frame, never delays the others
    and never builds a backlog.
    """

    def __init__(
        self, stream: Stream, name: str, maxsize: int, catch_up: list[av.Packet], sink: bool = False
    ):
        super().__init__(stream, name, maxsize)
        self.sink = sink  # holds the source running, takes no pictures (a listener)
        self.catch_up = collections.deque(() if sink else catch_up)
        self._need_keyframe = not catch_up

    def offer(self, packet: av.Packet) -> None:
        if self.sink:
            return
        if self._need_keyframe:
            if not packet.is_keyframe:
                return
            self._need_keyframe = False
        try:
            self._queue.put_nowait(packet)
            self.stream.state.bytes_out += packet.size
        except asyncio.QueueFull:
            self._need_keyframe = True
            self.stream.state.dropped += 1

    def reset(self) -> None:
        """The source restarted: what is queued belongs to a GOP that will never finish."""
        self.catch_up.clear()
        self._empty()
        self._need_keyframe = True

    def ready(self) -> list[av.Packet]:
        out = list(self.catch_up)
        self.catch_up.clear()
        return out + super().ready()

    async def get(self) -> av.Packet:
        if self.catch_up and not self.closed:
            return self.catch_up.popleft()
        return await super().get()

    def _leave(self) -> None:
        self.catch_up.clear()
        self.stream.detach(self)


class AudioConsumer(PacketQueue):
    """A bounded queue of a stream's Opus packets for one listener or recorder. Any packet
    decodes on its own, so one that falls behind just loses the oldest."""

    def __init__(self, stream: Stream, name: str, maxsize: int = 250):  # 5 s of 20 ms frames
        super().__init__(stream, name, maxsize)

    def offer(self, packet: av.Packet) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.stream.state.audio_dropped += 1
        self._queue.put_nowait(packet)

    def _leave(self) -> None:
        self.stream.listeners.discard(self)


class Timeline:
    """Maps a source's decode and presentation times onto the stream's one 90 kHz clock.

    `map(pts, dts, time_base)` gives (pts, dts): dts rises strictly, in the order
    packets are decoded; pts = dts + the source's composition offset (B-frames show
    later than they decode; the offset is kept, clamped to [0, MAX_REORDER]). A source
    restarts, reconnects, wraps its 32-bit RTP clock, steps back, or jumps forward far
    beyond the time that really passed: each is a discontinuity, and the clock goes on
    from its last value by the time that really passed, at least one frame (the
    source's own frame interval, measured), at most MAX_GAP, so viewers' frames stay
    evenly spaced and never bunch one tick apart. Forward steps up to the wall time that
    passed plus SLACK are the source's own (a pause, a slow camera) and are kept.
    Packets with neither time take the wall clock.
    """

    MAX_GAP = 5 * CLOCK_RATE
    SLACK = CLOCK_RATE  # a burst after network jitter runs ahead of the wall clock
    MAX_REORDER = CLOCK_RATE  # H.264 reorder depth is a few frames; more is a broken source
    FRAME = CLOCK_RATE // 30  # the frame interval until one is measured

    def __init__(self) -> None:
        self._offset: int | None = None  # stream dts - source dts
        self._src_last = 0
        self._last = 0
        self._last_wall = 0.0
        self.frame = self.FRAME
        self._deltas: collections.deque[int] = collections.deque(maxlen=15)
        self._same = 0  # packets in a row that repeated the previous decode time
        self.discontinuities = 0

    def restart(self) -> None:
        """The source starts over (a new session): its first packet is a discontinuity."""
        self._offset = None

    @property
    def offset(self) -> int | None:
        """Stream time minus source time (90 kHz) of the current run; None before one."""
        return self._offset

    def _step(self, now: float) -> int:
        passed = int((now - self._last_wall) * CLOCK_RATE) if self._last_wall else 0
        return max(self.frame, min(passed, self.MAX_GAP))

    def map(
        self,
        pts: int | None,
        dts: int | None,
        time_base: Fraction | None,
        start: int | None = None,
        follow: Timeline | None = None,
    ) -> tuple[int, int]:
        """(pts, dts) on the stream's clock. A packet that begins a run (the first, or after
        a discontinuity) goes at `start` when that is given and after the last, or, with
        `follow`, where that timeline's run puts the same source time (a second track of
        the same source clock: its sound beside its pictures)."""
        now = time.monotonic()
        if time_base is None or (pts is None and dts is None):
            t = self._last + self._step(now) if self._last_wall else (start or 0)
            self._offset = None
            self._last, self._last_wall = t, now
            return t, t
        num, den = time_base.numerator * CLOCK_RATE, time_base.denominator
        src_dts = (dts if dts is not None else pts) * num // den
        src_pts = src_dts if pts is None else pts * num // den
        if self._offset is not None:
            delta = src_dts - self._src_last
            passed = int((now - self._last_wall) * CLOCK_RATE)
            same = -min(self.frame // 2, CLOCK_RATE // 100) < delta <= 0
            self._same = self._same + 1 if same else 0
            if same and self._same == 1:
                # One picture sent as several packets (fields, parameter sets apart), or
                # rounding: the next tick. A source whose clock stands still is not this.
                self._offset = self._last + 1 - src_dts
            elif delta <= 0 or delta > max(passed, 0) + self.SLACK:
                self._offset = None
            else:
                self._deltas.append(delta)
                self.frame = max(
                    CLOCK_RATE // 1000, min(statistics.median_low(self._deltas), CLOCK_RATE)
                )
        if self._offset is None:
            if follow is not None and follow.offset is not None:
                start = src_dts + follow.offset
            if not self._last_wall:
                t0 = start or 0
            else:
                self.discontinuities += 1
                last_plus = self._last + self._step(now)
                t0 = start if start is not None and start > self._last else last_plus
            self._offset = t0 - src_dts
        t = src_dts + self._offset
        self._src_last, self._last, self._last_wall = src_dts, t, now
        return t + min(max(src_pts - src_dts, 0), self.MAX_REORDER), t


class Producer(Protocol):
    """Feeds a stream from its source; started and stopped by the stream."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


ProducerFactory = Callable[["Stream"], Producer]


class Stream:
    def __init__(
        self,
        stream_id: str,
        source: Source,
        producer_factory: ProducerFactory,
        *,
        idle_grace_s: float = 10.0,
        consumer_queue: int = 256,
    ):
        self.id = stream_id
        self.source = source
        self._factory = producer_factory
        self.idle_grace_s = idle_grace_s
        self.consumer_queue = consumer_queue
        self.state = StreamState()
        self.consumers: set[Consumer] = set()
        self.producer: Producer | None = None
        self.timeline = Timeline()
        self.audio_timeline = Timeline()
        self._born = time.monotonic()
        self.listeners: set[AudioConsumer] = set()
        self.parameter_sets = ParameterSets()
        self.gop: list[av.Packet] = []  # [] also while the current GOP is past the bounds
        self._gop_bytes = 0
        self._idle_handle: asyncio.TimerHandle | None = None
        self._window_start = time.monotonic()
        self._window_frames = 0
        self._window_bytes = 0
        self.loop = asyncio.get_running_loop()
        # (wall time, pts) of the newest packet: maps any recent pts to wall-clock time.
        self.anchor: tuple[float, int] = (time.time(), 0)
        # Set while a publisher that can make key frames on demand (WebRTC) feeds the stream.
        self.request_keyframe: Callable[[], None] | None = None

    @property
    def pushed(self) -> bool:
        """Fed by a publisher that connects to us (WHIP, RTMP push): nothing to start or stop."""
        return self.source.kind == "push"

    # consumers -------------------------------------------------------------

    def attach(self, name: str, sink: bool = False) -> Consumer:
        """A consumer of the pictures, from the cached GOP on; starts the producer. A
        `sink` takes none: it only keeps the source running (one who listens only)."""
        consumer = Consumer(self, name, self.consumer_queue, self.gop, sink)
        self.consumers.add(consumer)
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if self.request_keyframe is not None:
            # The cached GOP shows a picture at once; a fresh key frame ends the catch-up.
            self.request_keyframe()
        elif self.producer is None and not self.pushed:
            self._start_producer()
        return consumer

    def attach_audio(self, name: str) -> AudioConsumer:
        """The stream's sound, from now on, for a listener or a recorder. It does not start
        the producer: sound comes with the pictures a video consumer asks for."""
        listener = AudioConsumer(self, name)
        self.listeners.add(listener)
        return listener

    def detach(self, consumer: Consumer) -> None:
        self.consumers.discard(consumer)
        idle = not self.consumers and self._idle_handle is None
        if idle and self.producer is not None and not self.pushed:
            self._idle_handle = self.loop.call_later(self.idle_grace_s, self._stop_if_idle)

    def _stop_if_idle(self) -> None:
        self._idle_handle = None
        if not self.consumers:
            log.info("stream idle, stopping producer", extra={"stream": self.id})
            self.stop_producer()

    def _start_producer(self) -> None:
        log.info("starting producer", extra={"stream": self.id, "source": self.source.redacted})
        self.producer = self._factory(self)
        self.producer.start()

    def stop_producer(self) -> None:
        if self.producer is not None:
            self.producer.stop()
            self.producer = None
        self._set_offline(None)

    def replace_source(self, source: Source) -> None:
        """Feed the stream from `source` from now on (a running producer is replaced; a
        pushed source has none: its publisher takes the stream)."""
        self.source = source
        if self.producer is not None:
            self.stop_producer()
            if not self.pushed:
                self._start_producer()

    def close(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        for consumer in list(self.consumers):
            consumer.close()
        for listener in list(self.listeners):
            listener.close()
        self.stop_producer()

    # producer side (always called on the event loop) ------------------------

    def set_online(
        self, codec: str | None, width: int | None, height: int | None, parameter_sets: bytes = b""
    ) -> None:
        """The source is up; `codec`: its video codec (None: sound only); `parameter_sets`:
        its SPS/PPS (Annex-B) when it gave them out of band (an RTSP camera's SDP)."""
        if parameter_sets:
            self.parameter_sets.seed(parameter_sets)
        st = self.state
        st.online, st.codec, st.width, st.height = True, codec, width, height
        st.last_error = None
        self._window_start, self._window_frames, self._window_bytes = time.monotonic(), 0, 0
        log.info(
            "stream online",
            extra={"stream": self.id, "codec": codec, "width": width, "height": height},
        )

    def _set_offline(self, error: str | None) -> None:
        self.state.online = False
        self.state.fps = self.state.bitrate = 0.0
        self.gop.clear()
        self._gop_bytes = 0
        self.timeline.restart()
        self.audio_timeline.restart()
        self.state.audio = None
        for consumer in self.consumers:
            consumer.reset()
        if error is not None:
            self.state.last_error = error

    def source_failed(self, error: str, reconnect: bool) -> None:
        """The producer lost its source; `reconnect` says it is about to try again."""
        was_online = self.state.online
        self._set_offline(error)
        if reconnect and was_online:
            self.state.reconnects += 1
        log.warning("stream source failed", extra={"stream": self.id, "error": error})

    def take_producer(self, producer: Producer) -> None:
        """A pushed stream's publisher is its producer from now on: the stream never starts
        one (the publisher connects), and the one it replaces is stopped (a drone or phone
        that reconnects takes over from its own stale session)."""
        previous, self.producer = self.producer, producer
        if previous is not None and previous is not producer:
            previous.stop()

    def publisher_left(self, reason: str) -> None:
        """A pushed stream's publisher went away: offline until it (or another) comes back."""
        self._set_offline(reason)
        log.info("stream publisher left", extra={"stream": self.id, "reason": reason})

    def wall_of(self, pts: int) -> float:
        """When a packet of this stream (90 kHz pts) was live, as Unix time."""
        wall, at = self.anchor
        return wall + (pts - at) / CLOCK_RATE

    def ingest(self, packet: av.Packet) -> None:
        """A packet from whatever feeds the stream (a pulled source's producer, a WHIP or
        RTMP publisher), in its own time base: onto the stream's clock, then to the
        consumers. The one way in for every ingest path."""
        first = self.timeline.offset is None
        packet.pts, packet.dts = self.timeline.map(
            packet.pts, packet.dts, packet.time_base, start=self.clock() if first else None
        )
        packet.time_base = TIME_BASE
        self._publish(self.parameter_sets.complete(packet))

    def clock(self) -> int:
        """The stream's clock now: 90 kHz since the stream was made. Pictures and sound
        each begin on it, so they begin together."""
        return int((time.monotonic() - self._born) * CLOCK_RATE)

    def ingest_audio(self, packet: av.Packet, same_clock: bool) -> None:
        """An Opus packet (from a publisher as it came, or from a source's transcoder), in
        its own time base: onto the stream's clock beside the pictures, then to the
        listeners. The one way in for sound. `same_clock`: its times and the pictures'
        are of one source clock (a demuxer's, FLV's), so it goes where the pictures' run
        puts that time; otherwise (WebRTC's separate RTP clocks) it begins on the
        stream's clock when it comes."""
        self.state.audio = "opus"
        started = self.audio_timeline.offset is not None
        packet.pts, packet.dts = self.audio_timeline.map(
            packet.pts,
            packet.dts,
            packet.time_base,
            start=None if started else self.clock(),
            follow=self.timeline if same_clock else None,
        )
        packet.time_base = TIME_BASE
        self.state.audio_packets += 1
        if self.state.codec is None:
            self.anchor = (time.time(), packet.pts)  # a source with sound only
        for listener in list(self.listeners):
            listener.offer(packet)

    def sound_lost(self, error: str) -> None:
        """The source's sound cannot be taken (it does not decode, a codec we do not
        take): one line naming the cause; the pictures go on without it."""
        self.state.audio = None
        log.warning("stream sound dropped", extra={"stream": self.id, "error": error})

    def _publish(self, packet: av.Packet) -> None:
        self.anchor = (time.time(), packet.pts)
        st = self.state
        size = packet.size
        st.packets += 1
        st.bytes += size
        if packet.is_keyframe:
            st.keyframes += 1
            self.gop = [packet]
            self._gop_bytes = size
        elif self.gop:
            self._gop_bytes += size
            if (
                self._gop_bytes > GOP_MAX_BYTES
                or packet.dts - self.gop[0].dts > GOP_MAX_S * CLOCK_RATE
            ):
                self.gop = []  # a partial GOP would only show a picture that breaks up
            else:
                self.gop.append(packet)
        self._window_frames += 1
        self._window_bytes += size
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            st.fps = self._window_frames / elapsed
            st.bitrate = self._window_bytes * 8 / elapsed
            self._window_start, self._window_frames, self._window_bytes = now, 0, 0
        for consumer in self.consumers:
            consumer.offer(packet)

    def snapshot_packets(self) -> list[av.Packet]:
        """The current GOP: what a decoder needs to show the latest picture."""
        return list(self.gop)
