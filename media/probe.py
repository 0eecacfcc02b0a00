"""One picture from a source URL that is not a camera yet (the cameras screen's "test"
button): the device's own ONVIF snapshot, else the first key frame of its stream, decoded."""

from __future__ import annotations

import asyncio
import time

import av
import cv2

from gridwatch.media.onvif import Onvif
from gridwatch.media.sources import Source, SourceError, parse_source


class ProbeFailure(Exception):
    """No picture; the message says why and never holds the URL's credentials.

    `reason`: "auth" (the source refused the user name or password), "unreachable"
    (nothing answers at that address), "timeout" (no picture within the deadline), or
    "source" (it answered, but with no picture: not found, no video, undecodable).
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _where(source: Source) -> str:
    host = f"[{source.host}]" if source.host and ":" in source.host else source.host
    return f"{source.url.partition(':')[0]}://{host}" + (f":{source.port}" if source.port else "")


def _jpeg(frame: av.VideoFrame) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ProbeFailure("the picture could not be encoded as JPEG", "source")
    return jpeg.tobytes()


def first_picture(source: Source, deadline_s: float) -> bytes:
    """Open an rtsp:// or rtsps:// `source` once, decode its first key frame, as JPEG.

    Blocking (run it in a thread); returns within about `deadline_s` seconds, as FFmpeg's
    own socket timeouts and the loop below both keep to it. Raises ProbeFailure.
    """
    where = _where(source)
    started = time.monotonic()
    deadline = started + deadline_s
    options = {"rtsp_transport": source.params.get("transport", "tcp")}
    try:
        with av.open(source.url, options=options, timeout=(deadline_s, deadline_s)) as container:
            if not container.streams.video:
                raise ProbeFailure(f"{where} has no video", "source")
            video = container.streams.video[0]
            decoder = video.codec_context
            keyed = False
            for packet in container.demux(video):
                if time.monotonic() > deadline:
                    break
                keyed = keyed or packet.is_keyframe
                if not keyed or packet.size == 0:
                    continue
                # A decoder may hold the first picture back until a later packet comes.
                for frame in decoder.decode(packet):
                    return _jpeg(frame)
            if keyed:
                for frame in decoder.decode(None):
                    return _jpeg(frame)
    except (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError):
        raise ProbeFailure(f"{where} refused the user name or password", "auth") from None
    except OSError as e:  # PyAV's ConnectionRefusedError and the like are OSErrors too
        raise ProbeFailure(f"{where} could not be reached: {e.strerror or type(e).__name__}", "unreachable") from None  # fmt: skip
    except av.error.FFmpegError as e:
        # A socket timeout reads as "Invalid data" or "Immediate exit requested": the clock
        # tells them from a real answer FFmpeg could not read.
        if time.monotonic() - started >= deadline_s * 0.9:
            raise ProbeFailure(f"{where} gave no answer within {deadline_s:g} s", "timeout") from None
        raise ProbeFailure(f"{where}: {e.strerror or type(e).__name__}", "source") from None
    raise ProbeFailure(f"{where} gave no picture within {deadline_s:g} s", "timeout")


async def probe_picture(onvif: Onvif, source: Source, deadline_s: float) -> bytes:
    """A JPEG from an onvif://, rtsp:// or rtsps:// `source` within about `deadline_s`:
    for ONVIF the device's snapshot, else its stream's first key frame.

    Raises ProbeFailure, or OnvifFailure when the ONVIF device fails (refuses the
    credentials, is down, is not ONVIF)."""
    if source.kind != "onvif":
        return await asyncio.to_thread(first_picture, source, deadline_s)
    start = time.monotonic()
    try:
        async with asyncio.timeout(deadline_s):
            jpeg = await onvif.snapshot(source)
            if jpeg is None:  # no snapshot URI: the picture comes from the stream
                uri = await onvif.stream_uri(source)
    except TimeoutError:
        raise ProbeFailure(f"{_where(source)} gave no answer within {deadline_s:g} s", "timeout") from None
    if jpeg is not None:
        return jpeg
    try:
        stream = parse_source(uri)
    except SourceError as e:
        raise ProbeFailure(f"{_where(source)} handed out a stream URI that is not one: {e}", "source") from None
    remaining = max(deadline_s - (time.monotonic() - start), 1.0)
    return await asyncio.to_thread(first_picture, stream, remaining)
