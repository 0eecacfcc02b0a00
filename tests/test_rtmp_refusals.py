"""RTMP publishers we cannot take (another codec, malformed tags, a broken chunk stream)
are dropped with one warning line of ours naming the stream, the peer and the cause,
never a library's traceback, while the node keeps serving everyone else."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import time

import pytest
from test_whep_rtsp import stream_metric

from support.procs import stop
from support.whep_client import view

SET_CHUNK_SIZE, AUDIO, VIDEO, DATA, COMMAND = 0x01, 0x08, 0x09, 0x12, 0x14


def amf0(value: object) -> bytes:
    """AMF0 encoding of what an RTMP client sends: numbers, strings, null, objects."""
    if value is None:
        return b"\x05"
    if isinstance(value, bool):
        return b"\x01" + bytes([value])
    if isinstance(value, int | float):
        return b"\x00" + struct.pack(">d", value)
    if isinstance(value, str):
        return b"\x02" + struct.pack(">H", len(value.encode())) + value.encode()
    assert isinstance(value, dict)
    props = b"".join(struct.pack(">H", len(k)) + k.encode() + amf0(v) for k, v in value.items())
    return b"\x03" + props + b"\x00\x00\x09"


def ecma_array(props: dict, count: int) -> bytes:
    """An AMF0 ECMA array whose count field says `count` (encoders get it wrong)."""
    body = b"".join(struct.pack(">H", len(k)) + k.encode() + amf0(v) for k, v in props.items())
    return b"\x08" + struct.pack(">I", count) + body + b"\x00\x00\x09"


class RawPublisher:
    """An RTMP publisher over a plain socket: a valid handshake, connect, createStream and
    publish, then whatever bytes a test wants to send (one message per chunk: the chunk
    size is set to 64 KiB first)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        host, port = writer.get_extra_info("sockname")[:2]
        self.peer = f"{host}:{port}"

    @classmethod
    async def publish(cls, port: int, stream: str, token: str) -> RawPublisher:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x03" + bytes(1536))  # C0, C1 (time 0, zeros)
        s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 1536 * 2), 10)
        writer.write(s0s1s2[1:1537])  # C2 echoes S1
        client = cls(reader, writer)
        client.message(2, SET_CHUNK_SIZE, struct.pack(">I", 65536))
        client.message(
            3, COMMAND, amf0("connect") + amf0(1) + amf0({"app": "live", "type": "nonprivate"})
        )
        client.message(3, COMMAND, amf0("createStream") + amf0(2) + amf0(None))
        publish = (
            amf0("publish") + amf0(3) + amf0(None) + amf0(f"{stream}?token={token}") + amf0("live")
        )
        client.message(4, COMMAND, publish, stream_id=1)
        await writer.drain()
        return client

    def message(
        self, chunk_stream: int, kind: int, payload: bytes, timestamp: int = 0, stream_id: int = 1
    ) -> None:
        """One whole message in one type-0 chunk."""
        header = (
            bytes([chunk_stream]) + timestamp.to_bytes(3, "big") + len(payload).to_bytes(3, "big")
        )
        self.writer.write(header + bytes([kind]) + stream_id.to_bytes(4, "little") + payload)

    async def hung_up(self, timeout: float = 10.0) -> bool:
        """True once the server closed the connection (everything it sent is read)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
            return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


def warnings_about(gw, stream: str) -> list[dict]:
    """Every warning (or worse) the node logged naming `stream`, and every one pyrtmp logged."""
    return [
        r
        for r in gw.records()
        if r["level"] in ("warning", "error", "critical")
        and (r.get("stream") == stream or r["logger"].startswith("pyrtmp"))
    ]


def assert_dropped(gw, stream: str, cause: str, peer: str | None = None) -> None:
    """Exactly one warning line, ours, naming the stream, the peer and the cause; the stream
    is offline and no traceback was logged."""
    lines = warnings_about(gw, stream)
    assert len(lines) == 1, lines
    line = lines[0]
    assert (line["logger"], line["msg"]) == ("gridwatch.rtmp", "rtmp publisher dropped"), line
    assert cause in line["error"], line
    assert line["peer"].startswith("127.0.0.1:") and (peer is None or line["peer"] == peer), line
    assert stream_metric(gw.metrics(), "online", stream) == 0
    assert "Traceback" not in gw.logs()


async def wait_joined(gw, stream: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(
        r["msg"] == "rtmp publisher joined" and r.get("stream") == stream for r in gw.records()
    ):
        assert time.monotonic() < deadline, gw.logs()[-3000:]
        await asyncio.sleep(0.05)


def ffmpeg_push(gw, stream: str, token: str, *codec: str, seconds: int = 60) -> list[str]:
    return ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
            "-t", str(seconds), *codec, "-g", "25", "-f", "flv",
            f"rtmp://127.0.0.1:{gw.rtmp_port}/live/{stream}?token={token}"]  # fmt: skip


def ffmpeg_muxes_hevc_in_flv() -> bool:
    """ffmpeg 6.1 and later write HEVC as enhanced RTMP; older ones refuse to."""
    done = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=1", "-frames:v", "1",
         "-c:v", "libx265", "-f", "flv", "-y", "/dev/null"],
        capture_output=True, stdin=subprocess.DEVNULL, timeout=30,
    )  # fmt: skip
    return done.returncode == 0


async def test_an_unsupported_rtmp_codec_is_refused_with_our_log_line(gridwatch_factory):
    gw = gridwatch_factory()
    token = gw.token("admin")
    # ffmpeg's Sorenson Spark (FLV codec id 2), the codec an old Flash encoder pushes.
    sorenson = subprocess.run(ffmpeg_push(gw, "drone-flv1", token, "-c:v", "flv1", seconds=5),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30)  # fmt: skip
    assert sorenson.returncode != 0, "ffmpeg pushed Sorenson to the end: it was never refused"
    assert_dropped(
        gw, "drone-flv1", "FLV video codec Sorenson H.263 (codec id 2) is not taken; push H.264"
    )

    # Enhanced RTMP HEVC (what ffmpeg 6.1+ and OBS 29+ send), and HEVC as FLV codec id 12.
    for stream, tag, cause in [
        ("drone-hvc1", bytes([0x90]) + b"hvc1" + bytes(8), "enhanced RTMP video codec HEVC (hvc1)"),
        ("drone-av01", bytes([0x90]) + b"av01" + bytes(8), "enhanced RTMP video codec AV1 (av01)"),
        ("drone-id12", bytes([0x1C, 0, 0, 0, 0]) + bytes(8), "FLV video codec HEVC (codec id 12)"),
    ]:
        client = await RawPublisher.publish(gw.rtmp_port, stream, token)
        try:
            await wait_joined(gw, stream)
            client.message(6, VIDEO, tag)
            await client.writer.drain()
            assert await client.hung_up(), f"{stream}: the server kept the connection"
            assert_dropped(gw, stream, cause, client.peer)
        finally:
            client.close()
    assert gw.metrics()['gridwatch_publishers{via="rtmp"}'] == 0


@pytest.mark.skipif(not ffmpeg_muxes_hevc_in_flv(), reason="this ffmpeg cannot write HEVC into FLV")
async def test_ffmpeg_hevc_over_enhanced_rtmp_is_refused_naming_hevc(gridwatch_factory):
    gw = gridwatch_factory()
    hevc = subprocess.run(ffmpeg_push(gw, "drone-hevc", gw.token("admin"), "-c:v", "libx265", seconds=5),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30)  # fmt: skip
    assert hevc.returncode != 0
    assert_dropped(gw, "drone-hevc", "HEVC")


AVC_HEADER = bytes([0x17, 0, 0, 0, 0])
GOOD_RECORD = bytes([1, 0x42, 0, 0x1E, 0xFF, 0xE1, 0, 2, 0x67, 0x42, 1, 0, 2, 0x68, 0xCE])

# (what a broken publisher sends after publishing, the cause our line must name)
CORRUPT = [
    ([(VIDEO, AVC_HEADER + GOOD_RECORD[:10])], "AVC sequence header ends before its PPS count"),
    ([(VIDEO, AVC_HEADER + b"\x01\x42\x00\x1e\xff\xe3\x00\x40\x67")], "SPS 1 of 3 runs past its end"),
    ([(VIDEO, bytes([0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]))], "before the AVC sequence header"),
    ([(VIDEO, AVC_HEADER + GOOD_RECORD), (VIDEO, bytes([0x27, 1, 0, 0, 0, 0, 0, 0, 99, 0x41]))],
     "a NAL unit of 99 bytes runs past the end"),
    ([(VIDEO, b"")], "empty video tag"),
    ([(COMMAND, b"\x02\x00\x07publish\x00\x40")], "malformed RTMP command message"),
    ([(SET_CHUNK_SIZE, b"\x00\x00\x00\x00")], "Set Chunk Size of 0"),
]  # fmt: skip


async def test_a_corrupt_publisher_is_dropped_and_a_good_one_stays_watched(gridwatch_factory, http):
    gw = gridwatch_factory()
    token, view_token = gw.token("admin"), gw.token("dispatcher")
    good = subprocess.Popen(ffmpeg_push(gw, "drone-ok", token, "-c:v", "libx264", "-preset", "ultrafast",
                                        "-tune", "zerolatency", "-pix_fmt", "yuv420p"),
                            stdin=subprocess.DEVNULL)  # fmt: skip
    viewer = None
    try:
        deadline = time.monotonic() + 15
        while stream_metric(gw.metrics(), "online", "drone-ok") != 1:
            assert time.monotonic() < deadline, gw.logs()[-3000:]
            await asyncio.sleep(0.2)
        viewer = await view(http, gw.base, "drone-ok", view_token)
        assert await viewer.wait_frames(10, timeout=10.0)

        for n, (messages, cause) in enumerate(CORRUPT):
            stream = f"broken-{n}"
            client = await RawPublisher.publish(gw.rtmp_port, stream, token)
            try:
                await wait_joined(gw, stream)
                for kind, payload in messages:
                    client.message(6, kind, payload, timestamp=40)
                await client.writer.drain()
                assert await client.hung_up(), f"{cause}: the server kept the connection"
                assert_dropped(gw, stream, cause, client.peer)
            finally:
                client.close()

        # A chunk that continues a chunk stream that never began: pyrtmp's reader fails.
        client = await RawPublisher.publish(gw.rtmp_port, "broken-chunks", token)
        try:
            await wait_joined(gw, "broken-chunks")
            client.writer.write(bytes([0x40 | 9]) + bytes(7))  # type 1 header on chunk stream 9
            assert await client.hung_up()
            assert_dropped(
                gw, "broken-chunks", "chunk stream 9 continued before it began", client.peer
            )
        finally:
            client.close()

        seen = len(viewer.frames)
        assert await viewer.wait_frames(seen + 25, timeout=10.0), (
            "the good publisher's viewer stalled"
        )
        m = gw.metrics()
        assert stream_metric(m, "online", "drone-ok") == 1 and good.poll() is None
        assert m['gridwatch_publishers{via="rtmp"}'] == 1
    finally:
        if viewer:
            await viewer.close(http, gw.base, view_token)
        stop(good, timeout=5)
    assert "Traceback" not in gw.logs()


async def test_odd_metadata_and_audio_are_not_a_reason_to_drop(gridwatch_factory):
    """What encoders really send and pyrtmp's parsers trip on (an ECMA array whose count is
    wrong, AMF0 types pyrtmp does not know) is passed over, and audio tags of any shape
    cost the sound only (one line): the publisher stays, and a good H.264 frame after
    them goes online."""
    gw = gridwatch_factory()
    client = await RawPublisher.publish(gw.rtmp_port, "drone-odd", gw.token("admin"))
    try:
        await wait_joined(gw, "drone-odd")
        meta = amf0("@setDataFrame") + amf0("onMetaData")
        client.message(5, DATA, meta + ecma_array({"width": 320.0, "height": 240.0}, count=0))
        client.message(5, DATA, meta + b"\x0b" + bytes(10))  # an AMF0 date: pyrtmp raises
        client.message(5, DATA, b"\xff\xff")
        for audio in (b"", b"\xaf", b"\xaf\x00\x12", b"\x2f" + bytes(50), bytes(3)):
            client.message(7, AUDIO, audio, timestamp=10)
        client.message(6, VIDEO, AVC_HEADER + GOOD_RECORD, timestamp=0)
        client.message(6, VIDEO, bytes([0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88]), timestamp=0)
        await client.writer.drain()
        deadline = time.monotonic() + 10
        while stream_metric(gw.metrics(), "online", "drone-odd") != 1:
            assert time.monotonic() < deadline, gw.logs()[-3000:]
            await asyncio.sleep(0.1)
        assert not await client.hung_up(timeout=1.0)
        warned = warnings_about(gw, "drone-odd")
        assert [r["msg"] for r in warned] == ["stream sound dropped"], warned
    finally:
        client.close()
    assert "Traceback" not in gw.logs()
