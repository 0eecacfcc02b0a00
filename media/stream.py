"""A Stream: one producer, many consumers, encoded packets in between.

The producer starts when the first consumer attaches and stops a grace period after
the last one leaves (go2rtc's model). The stream keeps the packets since the last key
frame (the GOP cache) so that a consumer that joins starts decoding at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av

from gridwatch.media.sources import Source

log = logging.getLogger("gridwatch.media")

CLOCK_RATE = 90000
TIME_BASE = Fraction(1, CLOCK_RATE)
GOP_MAX_PACKETS = 600
GOP_MAX_BYTES = 16 * 1024 * 1024


class StreamClosed(Exception):
    pass


@dataclass
class StreamState:
    online: bool = False
    codec: str | None = None
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


class Consumer:
    """A bounded queue of packets for one viewer, recorder or sampler.

    A consumer that falls behind loses packets up to the next key frame, never
    delays the others and never builds a backlog.
    """

    def __init__(self, stream: Stream, name: str, maxsize: int):
        self.stream = stream
        self.name = name
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue(maxsize)
        self._need_keyframe = True
        self.closed = False

    def offer(self, packet: av.Packet) -> None:
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
        while not self._queue.empty():
            self._queue.get_nowait()
        self._need_keyframe = True

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
        if self.closed:
            raise StreamClosed(self.name)
        packet = await self._queue.get()
        if packet is None:
            raise StreamClosed(self.name)
        return packet

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stream.detach(self)
        self.reset()
        self._queue.put_nowait(None)


class Timeline:
    """Rewrites source timestamps into one monotonic 90 kHz clock per stream.

    A source that reconnects starts its timestamps again; viewers must not see time
    go backwards or jump, so each discontinuity is stitched onto the running clock.
    """

    MAX_GAP = 5 * CLOCK_RATE

    def __init__(self) -> None:
        self._offset: int | None = None
        self._last = 0
        self._last_wall = 0.0

    def restart(self) -> None:
        self._offset = None

    def map(self, pts: int | None, time_base: Fraction | None) -> int:
        now = time.monotonic()
        if pts is None or time_base is None:
            t = self._last + max(1, int((now - self._last_wall) * CLOCK_RATE))
        else:
            src = int(pts * time_base * CLOCK_RATE)
            if self._offset is None:
                gap = int((now - self._last_wall) * CLOCK_RATE) if self._last_wall else 0
                self._offset = self._last + max(1, min(gap, self.MAX_GAP)) - src
            t = src + self._offset
            if t <= self._last - CLOCK_RATE or t > self._last + self.MAX_GAP:
                self._offset = self._last + 3000 - src
                t = src + self._offset
        t = max(t, self._last + 1) if self._last_wall else t
        self._last, self._last_wall = t, now
        return t


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
        self.gop: list[av.Packet] = []
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

    def attach(self, name: str) -> Consumer:
        consumer = Consumer(self, name, self.consumer_queue)
        for packet in self.gop:
            consumer.offer(packet)
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
        self.source = source
        if self.producer is not None:
            self.stop_producer()
            self._start_producer()

    def close(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        for consumer in list(self.consumers):
            consumer.close()
        self.stop_producer()

    # producer side (always called on the event loop) ------------------------

    def set_online(self, codec: str, width: int | None, height: int | None) -> None:
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
        packet.pts = packet.dts = self.timeline.map(packet.pts, packet.time_base)
        packet.time_base = TIME_BASE
        self._publish(packet)

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
        elif self.gop and len(self.gop) < GOP_MAX_PACKETS and self._gop_bytes < GOP_MAX_BYTES:
            self.gop.append(packet)
            self._gop_bytes += size
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
