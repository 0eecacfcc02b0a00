"""RTMP push ingest: drones (DJI-style controllers) and encoders publish to
rtmp://HOST:PORT/live/STREAM?token=TOKEN.

pyrtmp speaks the protocol (handshake, chunk stream, AMF0 commands); this module turns
the FLV video tags into Annex-B H.264 access units for the stream, without decoding.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from fractions import Fraction
from urllib.parse import parse_qs

import av
from pyrtmp.messages.command import NSPublish
from pyrtmp.messages.video import VideoMessage
from pyrtmp.rtmp import RTMPProtocol, SimpleRTMPController
from pyrtmp.session_manager import SessionManager

from gridwatch.media.hub import StreamHub
from gridwatch.media.publish import Feed, push_source
from gridwatch.media.stream import Stream

log = logging.getLogger("gridwatch.rtmp")

# pyrtmp configures its loggers at DEBUG on import; its per-chunk lines are not ours to keep.
for _name in [n for n in logging.root.manager.loggerDict if n.startswith("pyrtmp")] + ["pyrtmp"]:
    logging.getLogger(_name).setLevel(logging.WARNING)

AVC = 7
START = b"\x00\x00\x00\x01"
MS = Fraction(1, 1000)  # FLV timestamps are milliseconds

# (stream id, token) -> an error to refuse the publisher with, or None to accept it.
Authorize = Callable[[str, str | None], Awaitable[str | None]]



class _KnownCommands(logging.Filter):
    """pyrtmp warns of every command it does not parse (FCPublish, releaseStream, which
    every encoder sends and nothing needs); one warning per publisher is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unknown")


for _name in ("pyrtmp.rtmp", "pyrtmp.messages.command"):
    logging.getLogger(_name).addFilter(_KnownCommands())
    logging.getLogger(_name).setLevel(logging.INFO)


class FlvError(ValueError):
    pass


class FlvH264:
    """FLV video tags (AVC) to Annex-B access units, SPS/PPS before each key frame."""

    def __init__(self) -> None:
        self.params = b""
        self.length_size = 4

    def config(self, record: bytes) -> None:
        """The AVCDecoderConfigurationRecord: NAL length size, SPS and PPS."""
        if len(record) < 7 or record[0] != 1:
            raise FlvError("malformed AVC sequence header")
        self.length_size = (record[4] & 3) + 1
        params, pos = [], 5
        for _ in range(2):  # the SPS list, then the PPS list
            count = record[pos] & (0x1F if not params else 0xFF)
            pos += 1
            for _ in range(count):
                (n,) = struct.unpack_from(">H", record, pos)
                params.append(record[pos + 2 : pos + 2 + n])
                pos += 2 + n
            if pos > len(record):
                raise FlvError("truncated AVC sequence header")
        self.params = b"".join(START + p for p in params)

    def annexb(self, data: bytes, keyframe: bool) -> bytes:
        out, pos, size = [], 0, self.length_size
        while pos + size <= len(data):
            n = int.from_bytes(data[pos : pos + size], "big")
            pos += size
            if n == 0 or pos + n > len(data):
                raise FlvError("NAL unit runs past the end of the video tag")
            out.append(START + data[pos : pos + n])
            pos += n
        if keyframe and self.params:
            out.insert(0, self.params)
        return b"".join(out)

    def packet(self, tag: bytes, timestamp_ms: int) -> av.Packet | None:
        """One FLV video tag; None for sequence headers and end-of-sequence."""
        if len(tag) < 5:
            raise FlvError("video tag too short")
        frame_type, codec = tag[0] >> 4, tag[0] & 0x0F
        if tag[0] & 0x80:  # the enhanced-RTMP header bit (HEVC, AV1, ...)
            raise FlvError("enhanced RTMP codecs are not taken; push H.264")
        if codec != AVC:
            raise FlvError(f"FLV video codec {codec} is not H.264 (7); push H.264")
        kind = tag[1]
        cts = int.from_bytes(tag[2:5], "big", signed=True)
        if kind == 0:
            self.config(tag[5:])
            return None
        if kind != 1:
            return None
        keyframe = frame_type == 1
        packet = av.Packet(self.annexb(tag[5:], keyframe))
        packet.pts = timestamp_ms + cts
        packet.dts = timestamp_ms
        packet.time_base = MS
        packet.is_keyframe = keyframe
        return packet


class _Publisher:
    def __init__(self, stream: Stream, session: SessionManager) -> None:
        self.stream = stream
        self.feed = Feed(stream, "rtmp", session.writer.close)  # stopped: disconnect him
        self.flv = FlvH264()
        self.online = False


class RtmpIngest(SimpleRTMPController):
    def __init__(self, hub: StreamHub, authorize: Authorize):
        super().__init__()
        self.hub = hub
        self.authorize = authorize
        self.publishers: dict[SessionManager, _Publisher] = {}
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: RTMPProtocol(controller=self), host, port)
        bound = self.server.sockets[0].getsockname()[1]
        log.info("rtmp ingest listening", extra={"host": host, "port": bound})
        return bound

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for session in list(self.publishers):
                session.writer.close()
            await self.server.wait_closed()

    async def on_ns_publish(self, session: SessionManager, message: NSPublish) -> None:
        name, _, query = str(message.publishing_name).partition("?")
        token = (parse_qs(query).get("token") or [None])[-1]
        refusal = await self.authorize(name, token)
        if refusal is not None:
            log.warning("rtmp publish refused",
                        extra={"stream": name[:80], "peer": session.peername, "error": refusal})  # fmt: skip
            session.writer.close()
            return
        stream = self.hub.upsert(name, push_source(name, "rtmp"))
        publisher = self.publishers[session] = _Publisher(stream, session)
        publisher.feed.take(None)  # a drone that reconnects replaces (and disconnects) its stale session
        log.info("rtmp publisher joined", extra={"stream": name, "peer": session.peername})
        await super().on_ns_publish(session, message)

    async def on_video_message(self, session: SessionManager, message: VideoMessage) -> None:
        publisher = self.publishers.get(session)
        if publisher is None:
            return
        try:
            packet = publisher.flv.packet(message.payload, message.timestamp)
        except FlvError as e:
            log.warning("rtmp publisher dropped",
                        extra={"stream": publisher.stream.id, "error": str(e)})  # fmt: skip
            self._end(session, str(e))
            session.writer.close()
            return
        if packet is None:
            return
        if not publisher.online:
            publisher.feed.online("h264", None, None)
            publisher.online = True
        publisher.feed.packet(packet)

    def _end(self, session: SessionManager, reason: str) -> None:
        publisher = self.publishers.pop(session, None)
        if publisher is not None:
            current = publisher.feed.current  # a replaced session leaves the stream to the new one
            publisher.feed.ended(reason)
            log.info("rtmp publisher left", extra={"stream": publisher.stream.id, "reason": reason})
            if current and not publisher.stream.consumers:
                self.hub.remove(publisher.stream.id)

    async def cleanup(self, session: SessionManager) -> None:
        self._end(session, "publisher left")
