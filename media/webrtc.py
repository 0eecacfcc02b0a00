"""WebRTC viewers: H.264 packets from a Stream forwarded to aiortc without decoding.

aiortc's sender packetises an `av.Packet` it gets from a track instead of encoding a
frame, so forwarding costs packetisation and SRTP only, never a codec.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType

import aioice.ice
import av
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpSender,
    RTCSessionDescription,
    rtcicetransport,
    rtcrtpsender,
)
from aiortc.codecs.h264 import H264Encoder as AiortcH264Encoder
from aiortc.exceptions import OperationError
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gridwatch.media.ice_mux import IceMux, MuxConnection
from gridwatch.media.stream import (
    CLOCK_RATE,
    Consumer,
    PacketQueue,
    Stream,
    StreamClosed,
)

log = logging.getLogger("gridwatch.webrtc")


class OfferError(ValueError):
    """The SDP offer cannot be answered; the message says why, for the client."""


def use_host_addresses(addresses: list[str]) -> None:
    """Offer only these addresses as ICE host candidates ([] = every interface).

    aioice skips loopback and offers every interface; multi-NIC and Docker hosts (and
    tests, which must stay on 127.0.0.1) need to choose.
    """
    original = getattr(aioice.ice.get_host_addresses, "__wrapped__", aioice.ice.get_host_addresses)
    if not addresses:
        aioice.ice.get_host_addresses = original
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    get_host_addresses.__wrapped__ = original  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


def use_ice_mux(mux: IceMux | None) -> None:
    """Make every RTCPeerConnection of this process gather its host candidates on `mux`'s
    one UDP port (webrtc.udp_port); None: a port of its own per session, aioice's way.

    aiortc creates each ICE connection through `rtcicetransport.Connection`: replacing
    that name is the whole hook.
    """
    current = rtcicetransport.Connection
    original = getattr(current, "__wrapped__", current)
    if mux is None:
        rtcicetransport.Connection = original
        return
    connection = functools.partial(MuxConnection, mux)
    connection.__wrapped__ = original  # type: ignore[attr-defined]
    rtcicetransport.Connection = connection  # type: ignore[misc]


class SharedPacketizer(AiortcH264Encoder):
    """aiortc's H.264 codec, but each packet is split into RTP payloads once for every viewer.

    All viewers of a stream receive the same av.Packet object, so the payloads are
    cached by packet identity; frames to encode (not ours to forward) go through
    aiortc's encoder unchanged.
    """

    _packed: collections.OrderedDict[int, tuple[av.Packet, tuple[list[bytes], int]]] = (
        collections.OrderedDict()
    )
    CACHE = 1024

    def pack(self, packet: av.Packet | Retimed) -> tuple[list[bytes], int]:  # type: ignore[override]
        if isinstance(packet, Retimed):  # the stream's packet, at this viewer's own time
            payloads, _ = self.pack(packet.packet)
            return payloads, packet.pts  # the RTP clock of H.264 is 90 kHz, as the stream's
        hit = self._packed.get(id(packet))
        if hit is not None and hit[0] is packet:
            return hit[1]
        result = super().pack(packet)
        self._packed[id(packet)] = (packet, result)
        if len(self._packed) > self.CACHE:
            self._packed.popitem(last=False)
        return result


def use_for(module: ModuleType, name: str, mime_type: str, factory: Callable[[], object]) -> None:
    """Make aiortc's codec factory `module.name` give `factory()` for `mime_type` ("video/H264",
    "audio/opus"), and what it gave before for every other codec; idempotent, and each
    codec's choice kept.

    aiortc looks its encoders and decoders up through these module functions: wrapping
    them is how we extend it without forking it.
    """
    current = getattr(module, name)
    original = getattr(current, "__wrapped__", current)
    factories = {**getattr(current, "factories", {}), mime_type.lower(): factory}

    def pick(codec: RTCRtpCodecParameters):
        chosen = factories.get(codec.mimeType.lower())
        return chosen() if chosen is not None else original(codec)

    pick.__wrapped__ = original  # type: ignore[attr-defined]
    pick.factories = factories  # type: ignore[attr-defined]
    setattr(module, name, pick)


def share_h264_packetization() -> None:
    """Make aiortc's senders use SharedPacketizer for H.264."""
    use_for(rtcrtpsender, "get_encoder", "video/H264", SharedPacketizer)


def rtc_configuration(ice_servers: Iterable[dict[str, object]]) -> RTCConfiguration:
    # An explicit list, even empty: with None aiortc asks a public STUN server.
    return RTCConfiguration(iceServers=[RTCIceServer(**s) for s in ice_servers])


CATCH_UP_STEP = 90  # 1 ms of the 90 kHz RTP clock between catch-up frames
CATCH_UP_SPEED = 8  # a catch-up is sent at least this many times faster than real time
CATCH_UP_MAX_S = 2.0  # and takes at most this long, however long the GOP


@dataclass(frozen=True)
class Retimed:
    """One of the stream's packets sent to one viewer at his own RTP time `pts` (90 kHz):
    the packet is shared by every viewer and never changed, nor copied."""

    packet: av.Packet
    pts: int


class QueueTrack(MediaStreamTrack):
    """A track whose frames are a stream's packets from one of its queues (a Consumer of
    its pictures, an AudioConsumer of its sound), sent as they are; stopping the track
    closes the queue, and a closed queue ends the track."""

    def __init__(self, queue: PacketQueue):
        super().__init__()
        self.queue = queue

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        try:
            return await self.queue.get()
        except StreamClosed:
            self.stop()
            raise MediaStreamError from None

    def stop(self) -> None:
        super().stop()
        self.queue.close()


class PacketTrack(QueueTrack):
    """A video track whose frames are the stream's encoded H.264 packets.

    A viewer who joins mid-GOP gets the GOP so far (his consumer's catch-up) first, so
    that he sees a picture at once:
    - paced, CATCH_UP_SPEED times faster than it was shot but over no more than
      CATCH_UP_MAX_S: a 16 s GOP sent in one burst overflows socket buffers on the way
      and the picture breaks up until the next key frame;
    - retimed CATCH_UP_STEP apart, ending just before the live packets' times: every
      catch-up frame is late for the player, which shows it as it comes (a fast-forward
      to live), and the live frames that queued meanwhile are late too, so the player
      never holds the viewer behind live by the GOP's length.
    """

    kind = "video"

    def __init__(self, consumer: Consumer):
        super().__init__(consumer)
        catch_up, consumer.catch_up = consumer.catch_up, collections.deque()
        self._catch_up: collections.deque[Retimed] = collections.deque()
        self._pace = 0.0  # seconds between catch-up frames
        self._next = 0.0  # when the next catch-up frame may go (loop time)
        if catch_up:
            edge, n = catch_up[-1].dts + 1, len(catch_up)
            span_s = (catch_up[-1].dts - catch_up[0].dts) / CLOCK_RATE
            self._pace = min(span_s / CATCH_UP_SPEED, CATCH_UP_MAX_S) / n
            self._catch_up.extend(
                Retimed(p, edge - (n - i) * CATCH_UP_STEP) for i, p in enumerate(catch_up)
            )

    async def recv(self) -> av.Packet | Retimed:  # type: ignore[override]
        if self.readyState == "live" and self._catch_up:
            loop = asyncio.get_running_loop()
            self._next = max(self._next, loop.time())
            await asyncio.sleep(self._next - loop.time())
            self._next += self._pace
            return self._catch_up.popleft()
        return await super().recv()


class AudioPacketTrack(QueueTrack):
    """An audio track whose frames are the stream's Opus packets, sent as they are."""

    kind = "audio"


def _h264_only() -> list:
    return [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]


def _opus_only() -> list:
    return [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]


class ViewerSession:
    def __init__(self, session_id: str, stream: Stream, pc: RTCPeerConnection, track: PacketTrack,
                 who: str, audio: AudioPacketTrack | None = None):  # fmt: skip
        self.id = session_id
        self.stream = stream
        self.pc = pc
        self.track = track
        self.audio = audio
        self.who = who

    @property
    def live(self) -> bool:
        return self.pc.connectionState == "connected"

    async def close(self) -> None:
        self.track.stop()
        if self.audio is not None:
            self.audio.stop()
        await self.pc.close()


class TooManySessions(Exception):
    """A user already has as many viewer sessions as one may."""


class Viewers:
    """Every WebRTC viewer of this node, by session id (the WHEP resource). A session that
    has not connected `connect_s` after its answer is closed (an offer with no usable
    candidate would otherwise hold its place for ever); one user holds at most
    `per_user` sessions; only connected sessions count as egress."""

    def __init__(
        self, configuration: RTCConfiguration, connect_s: float = 20.0, per_user: int = 64
    ):
        self.configuration = configuration
        self.sessions: dict[str, ViewerSession] = {}
        self.connect_s = connect_s
        self.per_user = per_user
        self.reaped = 0

    async def answer(self, stream: Stream, offer_sdp: str, who: str) -> ViewerSession:
        wants_video, wants_audio = "m=video" in offer_sdp, "m=audio" in offer_sdp
        if not wants_video and not wants_audio:
            raise OfferError("the offer has no video or audio media section")
        if sum(1 for s in self.sessions.values() if s.who == who) >= self.per_user:
            raise TooManySessions(f"{who} has {self.per_user} viewer sessions already")
        pc = RTCPeerConnection(self.configuration)
        # The pictures' consumer runs the source even for a listener who takes sound only.
        track = PacketTrack(stream.attach(f"whep:{who}", sink=not wants_video))
        audio = AudioPacketTrack(stream.attach_audio(f"whep:{who}")) if wants_audio else None
        try:
            # The transceivers and their codec choice must exist before the offer is applied:
            # aiortc fixes the payload types to send while it applies the remote description.
            if wants_video:
                pc.addTransceiver(track, direction="sendonly").setCodecPreferences(_h264_only())
            if audio is not None:
                pc.addTransceiver(audio, direction="sendonly").setCodecPreferences(_opus_only())
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            except OperationError as e:
                raise OfferError(
                    f"the offer does not accept H.264 video or Opus audio: {e}"
                ) from None
            except Exception as e:  # aiortc raises assorted types for malformed SDP
                raise OfferError(f"malformed SDP offer: {e}") from None
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            track.stop()
            if audio is not None:
                audio.stop()
            await pc.close()
            raise
        session = ViewerSession(uuid.uuid4().hex, stream, pc, track, who, audio)
        self.sessions[session.id] = session
        asyncio.get_running_loop().call_later(self.connect_s, self._reap, session)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session.id)

        log.info("viewer joined", extra={"stream": stream.id, "session": session.id, "user": who})
        return session

    def _reap(self, session: ViewerSession) -> None:
        if self.sessions.get(session.id) is session and not session.live:
            self.reaped += 1
            log.warning("viewer never connected, closed",
                        extra={"stream": session.stream.id, "session": session.id, "user": session.who,
                               "state": session.pc.connectionState})  # fmt: skip
            asyncio.get_running_loop().create_task(self.close(session.id))

    async def close(self, session_id: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        await session.close()
        log.info("viewer left", extra={"stream": session.stream.id, "session": session_id})
        return True

    async def close_stream(self, stream_id: str) -> None:
        """End every session of a stream that is going away."""
        await asyncio.gather(
            *(self.close(s.id) for s in list(self.sessions.values()) if s.stream.id == stream_id)
        )

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(s) for s in list(self.sessions)))

    def egress_bps(self) -> float:
        """Video leaving this node to WebRTC viewers, from each stream's measured bitrate."""
        return sum(s.stream.state.bitrate for s in self.sessions.values() if s.live)

    def count(self, stream_id: str) -> int:
        return sum(1 for s in self.sessions.values() if s.stream.id == stream_id)
