"""Publishers that connect to us: WebRTC (WHIP) and RTMP push both feed an ordinary Stream.

A pushed stream's producer is its publisher's feed, one the stream never starts: it is
online while its publisher is connected, a publisher that reconnects takes over from
its stale session, and the viewers stay attached across it (a drone that loses its link
comes back onto the same wall tiles). H.264 from a WebRTC publisher is
reassembled into access units by aiortc's jitter buffer and forwarded as it is: the
receiver's decoder is swapped for a pass-through, so nothing is decoded or encoded.
Any other codec (VP8 from a browser that will not send H.264) is transcoded once, for
every consumer of the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
    rtcrtpreceiver,
)
from aiortc.codecs.base import Decoder
from aiortc.exceptions import OperationError
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gridwatch.media.audio import OPUS_TIME_BASE, AudioError, OpusTranscoder
from gridwatch.media.h264 import H264Encoder, nal_types
from gridwatch.media.hub import StreamHub
from gridwatch.media.sources import Source
from gridwatch.media.stream import TIME_BASE, Stream
from gridwatch.media.webrtc import OfferError, use_for

log = logging.getLogger("gridwatch.publish")

KEYFRAME_REQUEST_INTERVAL_S = 0.5  # one PLI per half second at most, however many join
IDR, SPS = 5, 7


class PassthroughH264(Decoder):
    """Hands aiortc's reassembled H.264 access units on as packets, undecoded."""

    def decode(self, encoded_frame: JitterFrame) -> list[av.Packet]:  # type: ignore[override]
        packet = av.Packet(encoded_frame.data)
        packet.pts = packet.dts = encoded_frame.timestamp
        packet.time_base = TIME_BASE
        packet.is_keyframe = bool(nal_types(encoded_frame.data) & {IDR, SPS})
        return [packet]


class PassthroughOpus(Decoder):
    """Hands aiortc's received Opus frames on as packets, undecoded (48 kHz RTP clock)."""

    def decode(self, encoded_frame: JitterFrame) -> list[av.Packet]:  # type: ignore[override]
        packet = av.Packet(encoded_frame.data)
        packet.pts = packet.dts = encoded_frame.timestamp
        packet.time_base = OPUS_TIME_BASE
        return [packet]


def forward_received_media() -> None:
    """Make aiortc's receivers pass H.264 and Opus through instead of decoding them.

    This node never shows or plays what it receives: it forwards it. Other codecs (VP8,
    G.711) are decoded by aiortc and transcoded once, for every consumer.
    """
    use_for(rtcrtpreceiver, "get_decoder", "video/H264", PassthroughH264)
    use_for(rtcrtpreceiver, "get_decoder", "audio/opus", PassthroughOpus)


def push_source(stream_id: str, via: str) -> Source:
    return Source("push", f"push:{stream_id}", params={"via": via})


class Feed:
    """One publisher's packets into a stream. Once it `take`s the stream it is the
    stream's producer, one the stream does not start: stopping it (the stream closes, or
    another publisher takes over) ends the publisher's session through `on_stop`; until
    then its packets go in by the stream's one way (`Stream.ingest`), other codecs
    transcoded to H.264 off the event loop. A feed that is no longer the stream's
    producer is ignored: a stale session's last packets never reach the new one's viewers."""

    def __init__(self, stream: Stream, via: str, on_stop: Callable[[], object]):
        self.stream = stream
        self.via = via
        self.on_stop = on_stop
        self._encoder: H264Encoder | None = None
        self._opus: OpusTranscoder | None = None
        self.mute = False  # its sound was dropped

    def take(self, request_keyframe: Callable[[], None] | None) -> None:
        """This publisher feeds the stream now (`request_keyframe`: it can make key frames
        on demand, as WebRTC can)."""
        self.stream.take_producer(self)
        self.stream.timeline.restart()
        self.stream.request_keyframe = request_keyframe

    @property
    def current(self) -> bool:
        return self.stream.producer is self

    def start(self) -> None:
        """Nothing to start: the publisher connected by itself."""

    def stop(self) -> None:
        self.on_stop()

    def online(self, codec: str | None, width: int | None, height: int | None) -> None:
        if self.current:
            self.stream.set_online(codec, width, height)

    def packet(self, packet: av.Packet) -> None:
        if self.current:
            self.stream.ingest(packet)

    async def frame(self, frame: av.VideoFrame) -> None:
        if not self.current:
            return
        self.stream.state.decoded_frames += 1
        if self._encoder is None:
            w, h = frame.width - frame.width % 2, frame.height - frame.height % 2
            self._encoder = H264Encoder(w, h, 30)
            self.online("h264", w, h)
        pts, time_base = frame.pts, frame.time_base  # the encoder numbers frames its own way
        packets = await asyncio.to_thread(self._encoder.encode, frame)
        self.stream.state.encoded_frames += 1
        for p in packets:
            p.pts, p.time_base = pts, time_base
            self.packet(p)

    async def sound(self, item: av.Packet | av.AudioFrame, same_clock: bool = False) -> None:
        """Opus as it came; decoded sound (G.711 from a device that offers no Opus)
        encoded to Opus off the event loop. `same_clock`: its times are on the pictures'
        clock (FLV), not on a separate one (WebRTC). Sound that cannot be encoded is
        dropped for the rest of the session, with one line."""
        if not self.current or self.mute:
            return
        if isinstance(item, av.Packet):
            self.stream.ingest_audio(item, same_clock)
            return
        if self._opus is None:
            self._opus = OpusTranscoder()
        try:
            packets = await asyncio.to_thread(self._opus.encode, item)
        except AudioError as e:
            self.lose_sound(str(e))
            return
        self.stream.state.audio_transcoded += len(packets)
        for packet in packets:
            if self.current:
                self.stream.ingest_audio(packet, same_clock)

    def lose_sound(self, error: str) -> None:
        """This publisher's sound cannot be taken: dropped, said once, the pictures go on."""
        if self.mute:
            return
        self.mute = True
        if self.current:
            self.stream.sound_lost(f"{self.via}: {error}")

    def ended(self, reason: str) -> None:
        """The publisher left: the stream is offline until another takes it (a no-op for a
        feed another publisher replaced)."""
        if self.current:
            self.stream.producer = None
            self.stream.request_keyframe = None
            self.stream.publisher_left(reason)


def _receive_codecs() -> list:
    # H.264 first: it is forwarded as it is; VP8 is taken (and transcoded) rather than refused.
    caps = RTCRtpReceiver.getCapabilities("video").codecs
    order = {"video/H264": 0, "video/VP8": 1, "video/rtx": 2}
    return sorted((c for c in caps if c.mimeType in order), key=lambda c: order[c.mimeType])


def _audio_codecs() -> list:
    caps = RTCRtpReceiver.getCapabilities("audio").codecs
    order = {"audio/opus": 0, "audio/PCMU": 1, "audio/PCMA": 2}
    return sorted((c for c in caps if c.mimeType in order), key=lambda c: order[c.mimeType])


class WhipSession:
    def __init__(self, session_id: str, stream: Stream, pc: RTCPeerConnection, who: str):
        self.id = session_id
        self.stream = stream
        self.pc = pc
        self.who = who
        # Stopped by the stream (it closes, or another publisher takes over): hang up.
        self.feed = Feed(stream, "whip", lambda: asyncio.ensure_future(pc.close()))
        self.tasks: list[asyncio.Task] = []
        self._last_request = 0.0

    def request_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._last_request < KEYFRAME_REQUEST_INTERVAL_S:
            return
        self._last_request = now
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind != "video":
                continue
            receiver = transceiver.receiver
            for source in receiver.getSynchronizationSources():
                self.stream.state.keyframe_requests += 1
                self.tasks.append(asyncio.ensure_future(receiver._send_rtcp_pli(source.source)))
        self.tasks = [t for t in self.tasks if not t.done()]

    async def run_video(self, track: MediaStreamTrack) -> None:
        first = True
        try:
            while True:
                item = await track.recv()
                if isinstance(item, av.Packet):
                    if first:
                        self.feed.online("h264", None, None)
                    self.feed.packet(item)
                else:
                    await self.feed.frame(item)
                first = False
        except MediaStreamError:
            pass

    async def run_audio(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                item = await track.recv()
                if not self.stream.state.online and self.feed.current:
                    self.feed.online(None, None, None)  # sound only, until pictures come
                await self.feed.sound(item)
        except MediaStreamError:
            pass

    async def close(self) -> None:
        self.feed.ended("publisher left")
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


class Publishers:
    """Every WHIP publisher on this node, by session id (the WHIP resource)."""

    def __init__(self, hub: StreamHub, configuration: RTCConfiguration):
        self.hub = hub
        self.configuration = configuration
        self.sessions: dict[str, WhipSession] = {}

    def by_stream(self, stream_id: str) -> WhipSession | None:
        return next((s for s in self.sessions.values() if s.stream.id == stream_id), None)

    async def answer(self, stream: Stream, offer_sdp: str, who: str) -> WhipSession:
        if "m=video" not in offer_sdp and "m=audio" not in offer_sdp:
            raise OfferError("the offer has no video or audio media section")
        pc = RTCPeerConnection(self.configuration)
        session = WhipSession(uuid.uuid4().hex, stream, pc, who)

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            run = session.run_video if track.kind == "video" else session.run_audio
            session.tasks.append(asyncio.ensure_future(run(track)))

        try:
            if "m=video" in offer_sdp:
                pc.addTransceiver("video", direction="recvonly").setCodecPreferences(
                    _receive_codecs()
                )
            if "m=audio" in offer_sdp:  # Opus first: it is forwarded as it is
                pc.addTransceiver("audio", direction="recvonly").setCodecPreferences(
                    _audio_codecs()
                )
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            except OperationError as e:
                raise OfferError(
                    f"the offer has no codec we take (video: H.264, VP8; audio: Opus, G.711): {e}"
                ) from None
            except Exception as e:  # aiortc raises assorted types for malformed SDP
                raise OfferError(f"malformed SDP offer: {e}") from None
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            await pc.close()
            raise
        previous = self.by_stream(stream.id)
        self.sessions[session.id] = session
        if previous is not None:  # a phone or drone that reconnects replaces its stale session
            log.info("publisher replaced", extra={"stream": stream.id, "session": previous.id})
        session.feed.take(session.request_keyframe)  # stops the previous one's feed
        if previous is not None:
            await self.close(previous.id)
        await self.hub.published(stream.id, True)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session.id)

        log.info(
            "publisher joined", extra={"stream": stream.id, "session": session.id, "user": who}
        )
        return session

    async def close(self, session_id: str) -> WhipSession | None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return None
        current = session.feed.current  # a replaced session leaves the stream to the new one
        await session.close()
        if current:
            await self.hub.published(session.stream.id, False)
        log.info("publisher left", extra={"stream": session.stream.id, "session": session_id})
        stream = session.stream
        if not stream.consumers and self.by_stream(stream.id) is None:
            self.hub.remove(stream.id)
        return session

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(s) for s in list(self.sessions)))
