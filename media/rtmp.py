"""RTMP push ingest: drones (DJI-style controllers) and encoders publish to
rtmp://HOST:PORT/live/STREAM?token=TOKEN.

pyrtmp speaks the protocol (handshake, chunk stream, AMF0 commands); this module turns
the FLV video tags into Annex-B H.264 access units for the stream, without decoding.
Anything else (another codec, a malformed tag or chunk) drops the publisher with one
warning line naming the stream, the peer and the cause.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from fractions import Fraction
from urllib.parse import parse_qs

import av
from pyrtmp import StreamClosedException
from pyrtmp.messages import Chunk
from pyrtmp.messages.command import NCConnect, NCCreateStream, NSPublish
from pyrtmp.messages.factory import MessageFactory
from pyrtmp.messages.handshake import C0, C1, C2
from pyrtmp.rtmp import RTMPProtocol, SimpleRTMPController
from pyrtmp.session_manager import SessionManager

from gridwatch.media.audio import AudioError, OpusTranscoder
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
    """A video tag we cannot forward; the message names the cause (and the codec, by name)."""


# FLV's own video codec ids (the FLV spec, E.4.3.1), and the ones Chinese encoders and CDNs
# added before enhanced RTMP existed.
FLV_VIDEO_CODECS = {
    1: "JPEG",
    2: "Sorenson H.263",
    3: "Screen video",
    4: "On2 VP6",
    5: "On2 VP6 with alpha",
    6: "Screen video v2",
    7: "H.264",
    12: "HEVC",  # not in the FLV spec: the id Chinese encoders and CDNs use
}
# Enhanced RTMP names its codec by a FourCC after the first byte instead.
ENHANCED_CODECS = {
    b"avc1": "H.264",
    b"hvc1": "HEVC",
    b"av01": "AV1",
    b"vp09": "VP9",
    b"vp08": "VP8",
}
KEY_FRAME, COMMAND_FRAME = 1, 5  # FLV frame types (4: a generated key frame, seeking only)
AVC_HEADER, AVC_NALU, AVC_END = 0, 1, 2  # AVCPacketType
# Enhanced RTMP PacketType.
EX_SEQUENCE_START, EX_CODED_FRAMES, EX_SEQUENCE_END, EX_CODED_FRAMES_X, EX_METADATA = range(5)
EX_MULTITRACK, EX_MODEX = 6, 7


def _fourcc_name(fourcc: bytes) -> str:
    """'HEVC (hvc1)' for a known FourCC, the FourCC itself (or its hex) otherwise."""
    shown = (
        fourcc.decode("ascii")
        if fourcc.isascii() and fourcc.decode("ascii").isprintable()
        else fourcc.hex()
    )
    return (
        f"{ENHANCED_CODECS[fourcc]} ({shown})" if fourcc in ENHANCED_CODECS else f"FourCC {shown!r}"
    )


def _check_frame_type(frame_type: int) -> None:
    if not 1 <= frame_type <= 5:
        raise FlvError(f"reserved FLV video frame type {frame_type}")


def parse_avc_config(record: bytes) -> tuple[int, list[bytes]]:
    """An AVCDecoderConfigurationRecord (ISO 14496-15, 5.2.4.1) -> (NAL length size in
    bytes, [SPS..., PPS...]). Bytes after the PPS list (the High profile chroma fields)
    are not needed and not read. Empty parameter sets are left out.

    Raises FlvError naming where the record ends early or what is wrong in it.
    """
    if len(record) < 6:
        raise FlvError(f"AVC sequence header of {len(record)} bytes, shorter than its 6-byte head")
    if record[0] != 1:
        raise FlvError(f"AVC sequence header version {record[0]}, not 1")
    # lengthSizeMinusOne: 1, 2 and 4 bytes are the standard's; 3 is taken as ffmpeg takes it.
    length_size = (record[4] & 3) + 1
    params: list[bytes] = []
    pos = 5
    for kind, mask in (("SPS", 0x1F), ("PPS", 0xFF)):
        if pos >= len(record):
            raise FlvError(f"AVC sequence header ends before its {kind} count")
        count, pos = record[pos] & mask, pos + 1
        for i in range(count):
            if pos + 2 > len(record):
                raise FlvError(f"AVC sequence header ends inside {kind} {i + 1} of {count}")
            n = int.from_bytes(record[pos : pos + 2], "big")
            if pos + 2 + n > len(record):
                raise FlvError(f"AVC sequence header: {kind} {i + 1} of {count} runs past its end")
            if n:
                params.append(record[pos + 2 : pos + 2 + n])
            pos += 2 + n
    return length_size, params


def avcc_to_annexb(data: bytes, length_size: int) -> list[bytes]:
    """Length-prefixed NAL units (AVCC) -> the NAL units, in order. Zero-length NAL units
    (padding some encoders write) are skipped.

    Raises FlvError when a length runs past the data or bytes are left over after the last.
    """
    nals, pos = [], 0
    while pos < len(data):
        if pos + length_size > len(data):
            raise FlvError(
                f"{len(data) - pos} stray bytes after the last NAL unit of the video tag"
            )
        n = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if pos + n > len(data):
            raise FlvError(f"a NAL unit of {n} bytes runs past the end of the video tag")
        if n:
            nals.append(data[pos : pos + n])
        pos += n
    return nals


class FlvH264:
    """FLV video tags (H.264, legacy or enhanced RTMP's avc1) to Annex-B access units,
    SPS/PPS before each key frame.

    `packet` is total: any bytes give a packet, None, or FlvError naming the cause.
    """

    def __init__(self) -> None:
        self.params = b""
        self.length_size = 4
        self.configured = False

    def config(self, record: bytes) -> None:
        """The AVCDecoderConfigurationRecord: NAL length size, SPS and PPS (FlvError if malformed)."""
        self.length_size, params = parse_avc_config(record)
        self.params = b"".join(START + p for p in params)
        self.configured = True

    def annexb(self, data: bytes, keyframe: bool) -> bytes:
        """One AVCC access unit as Annex-B, SPS/PPS first on a key frame; b"" if it holds no NAL."""
        nals = avcc_to_annexb(data, self.length_size)
        if not nals:
            return b""
        head = self.params if keyframe else b""
        return head + b"".join(START + n for n in nals)

    def packet(self, tag: bytes, timestamp_ms: int) -> av.Packet | None:
        """One FLV video tag body -> an Annex-B packet (pts = timestamp + composition time,
        dts = timestamp, in ms); None for what carries no picture (sequence headers, ends of
        sequence, command frames, metadata, an empty frame).

        Raises FlvError for any other codec than H.264 (named), and for malformed tags.
        """
        if not tag:
            raise FlvError("empty video tag")
        if tag[0] & 0x80:
            return self._enhanced(tag, timestamp_ms)
        frame_type, codec = tag[0] >> 4, tag[0] & 0x0F
        if codec != AVC:
            name = FLV_VIDEO_CODECS.get(codec, "unknown")
            raise FlvError(f"FLV video codec {name} (codec id {codec}) is not taken; push H.264")
        _check_frame_type(frame_type)
        if frame_type == COMMAND_FRAME:
            return None  # a one-byte seek marker, not a picture
        if len(tag) < 5:
            raise FlvError(f"H.264 video tag of {len(tag)} bytes, shorter than its 5-byte header")
        kind, cts = tag[1], int.from_bytes(tag[2:5], "big", signed=True)
        if kind == AVC_HEADER:
            self.config(tag[5:])
            return None
        if kind == AVC_END:
            return None
        if kind != AVC_NALU:
            raise FlvError(f"unknown AVC packet type {kind}")
        return self._frame(tag[5:], frame_type, timestamp_ms, cts)

    def _enhanced(self, tag: bytes, timestamp_ms: int) -> av.Packet | None:
        """An enhanced RTMP tag (the 0x80 bit): taken for avc1, refused naming any other codec."""
        frame_type, kind = (tag[0] >> 4) & 0x07, tag[0] & 0x0F
        _check_frame_type(frame_type)
        if kind in (EX_MULTITRACK, EX_MODEX):  # the FourCC is not where it would be
            raise FlvError(
                f"enhanced RTMP {'multitrack' if kind == EX_MULTITRACK else 'ModEx'} video is not taken; push H.264"
            )
        if len(tag) < 5:
            raise FlvError(f"enhanced RTMP video tag of {len(tag)} bytes, shorter than its FourCC")
        fourcc = tag[1:5]
        if fourcc != b"avc1":
            raise FlvError(
                f"enhanced RTMP video codec {_fourcc_name(fourcc)} is not taken; push H.264"
            )
        if frame_type == COMMAND_FRAME and kind != EX_METADATA:
            return None
        if kind == EX_SEQUENCE_START:
            self.config(tag[5:])
            return None
        if kind in (EX_SEQUENCE_END, EX_METADATA):
            return None
        if kind == EX_CODED_FRAMES_X:
            return self._frame(tag[5:], frame_type, timestamp_ms, 0)
        if kind == EX_CODED_FRAMES:
            if len(tag) < 8:
                raise FlvError(
                    f"enhanced RTMP H.264 frame of {len(tag)} bytes, shorter than its header"
                )
            cts = int.from_bytes(tag[5:8], "big", signed=True)
            return self._frame(tag[8:], frame_type, timestamp_ms, cts)
        raise FlvError(f"enhanced RTMP packet type {kind} is not taken for H.264")

    def _frame(self, data: bytes, frame_type: int, timestamp_ms: int, cts: int) -> av.Packet | None:
        if not self.configured:
            # Without the record the NAL length size is unknown and there are no SPS/PPS:
            # a decoder can do nothing with the frame, and a conformant encoder always
            # sends the header first, so waiting would only hide a broken publisher.
            raise FlvError("an H.264 frame came before the AVC sequence header (SPS/PPS)")
        keyframe = frame_type == KEY_FRAME
        body = self.annexb(data, keyframe)
        if not body:
            return None
        packet = av.Packet(body)
        packet.pts = timestamp_ms + cts
        packet.dts = timestamp_ms
        packet.time_base = MS
        packet.is_keyframe = keyframe
        return packet


class RtmpRefusal(Exception):
    """The publisher is dropped: `cause` goes into the one warning line that says so."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


class _HungUp(Exception):
    """The session is over and already logged (a refused token): stop reading it."""


# RTMP message type ids (RTMP spec 5.4 and 7.1).
SET_CHUNK_SIZE, AUDIO, VIDEO, DATA_AMF0, COMMAND_AMF0 = 0x01, 0x08, 0x09, 0x12, 0x14
CONTROL = {0x02, 0x03, 0x04, 0x05, 0x06}  # abort, ack, user control, window, bandwidth


# FLV SoundFormat (FLV spec 10.1, E.4.2.1) -> FFmpeg's decoder, for the ones we take.
SOUND_DECODERS = {2: "mp3", 7: "pcm_alaw", 8: "pcm_mulaw", 10: "aac", 14: "mp3"}
SOUND_NAMES = {0: "linear PCM", 1: "ADPCM", 3: "linear PCM", 4: "Nellymoser", 5: "Nellymoser",
               6: "Nellymoser", 11: "Speex", 15: "device-specific sound"}  # fmt: skip
AAC_HEADER = 0  # AACPacketType: 0 the AudioSpecificConfig, 1 a raw frame


class FlvSound:
    """FLV audio tags (AAC, G.711, MP3) to the stream's Opus, transcoded once.

    `packet` parses (on the event loop, cheap); `transcode` decodes and encodes
    (blocking: in a thread). FlvError for a tag that is malformed or a format we do not
    take; AudioError for data that does not decode.
    """

    def __init__(self) -> None:
        self.transcoder: OpusTranscoder | None = None

    def packet(self, tag: bytes, timestamp_ms: int) -> av.Packet | None:
        """The tag's coded sound with its time; None for AAC's configuration."""
        if not tag:
            raise FlvError("empty audio tag")
        fmt = tag[0] >> 4
        decoder = SOUND_DECODERS.get(fmt)
        if decoder is None:
            name = SOUND_NAMES.get(fmt, f"format {fmt}")
            raise FlvError(f"FLV audio {name} is not taken; push AAC, G.711 or MP3")
        body = tag[1:]
        if decoder == "aac":
            if not body:
                raise FlvError("AAC audio tag without its packet type")
            if body[0] == AAC_HEADER:
                if len(body) < 3:
                    raise FlvError("AAC sequence header shorter than an AudioSpecificConfig")
                self.transcoder = OpusTranscoder.for_codec("aac", extradata=body[1:])
                return None
            body = body[1:]
            if self.transcoder is None:
                raise FlvError("AAC audio before its sequence header")
        elif self.transcoder is None:
            # G.711 in FLV is 8 kHz mono whatever the rate bits say; MP3 frames say theirs.
            g711 = decoder.startswith("pcm_")
            self.transcoder = OpusTranscoder.for_codec(
                decoder, sample_rate=8000 if g711 else 0, channels=1 if g711 else 0
            )
        if not body:
            return None
        packet = av.Packet(body)
        packet.pts = packet.dts = timestamp_ms
        packet.time_base = MS
        return packet

    def transcode(self, packet: av.Packet) -> list[av.Packet]:
        assert self.transcoder is not None
        return self.transcoder(packet)


class _Publisher:
    def __init__(self, stream: Stream, session: SessionManager) -> None:
        self.stream = stream
        self.feed = Feed(stream, "rtmp", session.writer.close)  # stopped: disconnect him
        self.flv = FlvH264()
        self.flv_sound = FlvSound()
        self.online = False


class RtmpIngest(SimpleRTMPController):
    """pyrtmp reads the handshake and the chunk stream; the messages are ours to dispatch.

    We run the session loop ourselves (not pyrtmp's `client_callback`) so that whatever a
    publisher sends ends in one of three ways: served, gone (he hung up), or refused with
    one warning line from gridwatch.rtmp naming the stream, the peer and the cause; never
    a library's traceback. pyrtmp's own parsers are used only for commands; its AMF0
    metadata parser asserts things real encoders break (an ECMA array's count), and
    metadata is nothing we need.
    """

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

    async def client_callback(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One connection, start to end; see the class docstring for how it can end."""
        session = SessionManager(reader=reader, writer=writer)
        reason = "publisher left"
        try:
            await self._handshake(session)
            await self._serve(session)
        except (StreamClosedException, ConnectionError, _HungUp):
            pass
        except RtmpRefusal as e:
            self._refuse(session, e.cause)
            reason = e.cause
        except Exception:  # a bug of ours: its traceback is wanted, and the session ends cleanly
            log.exception("rtmp session failed", extra={"peer": _peer(session)})
            reason = "internal error"
        finally:
            await self._end(session, reason)
            writer.close()

    def _refuse(self, session: SessionManager, cause: str) -> None:
        publisher = self.publishers.get(session)
        log.warning("rtmp publisher dropped",
                    extra={"stream": publisher.stream.id if publisher else None,
                           "peer": _peer(session), "error": cause})  # fmt: skip

    @staticmethod
    async def _handshake(session: SessionManager) -> None:
        """pyrtmp's handshake, but a first byte that is not RTMP 3 (6 is RTMPE, 'G' an HTTP
        request) is refused before we answer it."""
        c0 = await C0.from_stream(session.fifo_reader)
        if c0.protocol_version != 3:
            raise RtmpRefusal(f"not an RTMP handshake (version byte {c0.protocol_version}, not 3)")
        c1 = await C1.from_stream(session.fifo_reader)
        session.writer.write(
            C0(protocol_version=3).to_bytes()
            + C1(time=0, zero=0, random=os.urandom(1528)).to_bytes()
            + C2(time1=c1.time, time2=c1.time, random=c1.random).to_bytes()
        )
        await session.writer.drain()
        await C2.from_stream(session.fifo_reader)

    async def _serve(self, session: SessionManager) -> None:
        """Reads messages until the publisher hangs up (StreamClosedException) or is refused."""
        chunks = session.read_chunks_from_stream()
        while True:
            try:
                chunk = await anext(chunks)
            except StreamClosedException:
                raise
            except KeyError as e:  # a continuation header on a chunk stream never started
                raise RtmpRefusal(
                    f"malformed RTMP chunk stream: chunk stream {e.args[0]} continued before it began"
                ) from None
            except Exception as e:  # pyrtmp's reader over untrusted bytes raises assorted types
                raise RtmpRefusal(f"malformed RTMP chunk stream: {type(e).__name__}: {e}") from None
            await self._message(session, chunk)

    async def _message(self, session: SessionManager, chunk: Chunk) -> None:
        """One complete RTMP message, by its type id. Types we have no use for (AMF3,
        shared objects, aggregates, protocol control other than the chunk size) are skipped."""
        kind = chunk.msg_type_id
        if kind == VIDEO:
            self._video(session, chunk.payload, chunk.timestamp)
        elif kind == AUDIO:
            await self._audio(session, chunk.payload, chunk.timestamp)
        elif kind == COMMAND_AMF0:
            await self._command(session, chunk)
        elif kind == SET_CHUNK_SIZE:
            session.reader_chunk_size = _chunk_size(chunk.payload)
        # DATA_AMF0 (@setDataFrame onMetaData), CONTROL and the rest: nothing we need.

    async def _command(self, session: SessionManager, chunk: Chunk) -> None:
        try:
            message = MessageFactory.from_chunk(chunk)
        except (
            Exception
        ) as e:  # pyrtmp's AMF0 reader: ReadError, AssertionError, NotImplementedError...
            raise RtmpRefusal(f"malformed RTMP command message: {type(e).__name__}: {e}") from None
        if isinstance(message, NCConnect):
            await self.on_nc_connect(session, message)
        elif isinstance(message, NCCreateStream):
            await self.on_nc_create_stream(session, message)
        elif isinstance(message, NSPublish):
            await self.on_ns_publish(session, message)
        # FCPublish, releaseStream, deleteStream...: nothing to answer; the hang-up ends him.

    async def on_ns_publish(self, session: SessionManager, message: NSPublish) -> None:
        name, _, query = str(message.publishing_name).partition("?")
        token = (parse_qs(query).get("token") or [None])[-1]
        refusal = await self.authorize(name, token)
        if refusal is not None:
            log.warning("rtmp publish refused",
                        extra={"stream": name[:80], "peer": _peer(session), "error": refusal})  # fmt: skip
            raise _HungUp
        if session in self.publishers:
            raise RtmpRefusal("a second publish on one connection")
        stream = self.hub.upsert(name, push_source(name, "rtmp"))
        publisher = self.publishers[session] = _Publisher(stream, session)
        publisher.feed.take(
            None
        )  # a drone that reconnects replaces (and disconnects) its stale session
        await self.hub.published(name, True)
        log.info("rtmp publisher joined", extra={"stream": name, "peer": _peer(session)})
        await super().on_ns_publish(session, message)

    def _video(self, session: SessionManager, tag: bytes, timestamp_ms: int) -> None:
        """One FLV video tag body onto the stream; RtmpRefusal for what FlvH264 refuses."""
        publisher = self.publishers.get(session)
        if publisher is None:
            return  # video before publish: nowhere to put it (pyrtmp clients do not do this)
        try:
            packet = publisher.flv.packet(tag, timestamp_ms)
        except FlvError as e:
            raise RtmpRefusal(str(e)) from None
        if packet is None:
            return
        if not publisher.online:
            publisher.feed.online("h264", None, None)
            publisher.online = True
        publisher.feed.packet(packet)

    async def _audio(self, session: SessionManager, tag: bytes, timestamp_ms: int) -> None:
        """One FLV audio tag body (any bytes, possibly empty) onto the stream as Opus. Sound
        we cannot take is dropped with one line, for the rest of the session: a drone's
        pictures matter more than its microphone."""
        publisher = self.publishers.get(session)
        if publisher is None or publisher.feed.mute:
            return
        try:
            packet = publisher.flv_sound.packet(tag, timestamp_ms)
            if packet is None:
                return
            # Awaited: this publisher's next message waits, the others do not.
            out = await asyncio.to_thread(publisher.flv_sound.transcode, packet)
        except (FlvError, AudioError) as e:
            publisher.feed.lose_sound(str(e))
            return
        if not publisher.stream.state.online:
            publisher.feed.online(None, None, None)  # sound only, until pictures come
        publisher.stream.state.audio_transcoded += len(out)
        for opus in out:
            await publisher.feed.sound(opus, same_clock=True)

    async def _end(self, session: SessionManager, reason: str) -> None:
        publisher = self.publishers.pop(session, None)
        if publisher is not None:
            current = publisher.feed.current  # a replaced session leaves the stream to the new one
            publisher.feed.ended(reason)
            log.info("rtmp publisher left", extra={"stream": publisher.stream.id, "reason": reason})
            if current and not publisher.stream.consumers:
                self.hub.remove(publisher.stream.id)
            if current:
                await self.hub.published(publisher.stream.id, False)


def _peer(session: SessionManager) -> str | None:
    """host:port of the publisher; None once the socket is gone."""
    peer = session.writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else None


def _chunk_size(payload: bytes) -> int:
    """A Set Chunk Size message (RTMP 5.4.1): 31 bits, at least 1. RtmpRefusal otherwise."""
    if len(payload) < 4:
        raise RtmpRefusal(f"Set Chunk Size message of {len(payload)} bytes, not 4")
    size = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
    if size < 1:
        raise RtmpRefusal("Set Chunk Size of 0")
    return size
