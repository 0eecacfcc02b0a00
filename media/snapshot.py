"""A JPEG of a stream's latest picture, decoded from its GOP cache on demand."""

from __future__ import annotations

import asyncio

import av
import cv2

from gridwatch.media.stream import Stream, StreamClosed


def _decode_last(packets: list[av.Packet]) -> bytes | None:
    decoder = av.CodecContext.create("h264", "r")
    frame = None
    # Flushed: with B-frames the decoder holds back the latest pictures until the end.
    for packet in [*packets, None]:
        for decoded in decoder.decode(packet):
            if frame is None or (decoded.pts or 0) >= (frame.pts or 0):
                frame = decoded
    if frame is None:
        return None
    ok, jpeg = cv2.imencode(
        ".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 85]
    )
    return jpeg.tobytes() if ok else None


async def snapshot(stream: Stream, timeout: float) -> bytes | None:
    """Decode the cached GOP; when the stream is idle, run it until a key frame comes."""
    packets = stream.snapshot_packets()
    if not packets:
        consumer = stream.attach("snapshot")
        try:
            async with asyncio.timeout(timeout):
                while not (packets := stream.snapshot_packets()):
                    await consumer.get()
        except (TimeoutError, StreamClosed):
            return None
        finally:
            consumer.close()
    stream.state.snapshot_decodes += len(packets)
    return await asyncio.to_thread(_decode_last, packets)
