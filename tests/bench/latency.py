"""Glass-to-glass latency added by gridwatch, and time to first frame on join.

    .venv/bin/python tests/bench/latency.py [--seconds 20] [--joins 10]

A clock camera (wall time stamped into each frame) publishes through a real RTSP
server. In the same run, one reader decodes it straight from the RTSP server (PyAV)
and one WHEP viewer decodes it through gridwatch; each frame's latency is the wall
time at decode minus the stamp. Added latency = through gridwatch - direct.

The WHEP viewer decodes each frame as soon as its last RTP packet (the marker) is in,
as a browser does; aiortc's own receiver would hold every frame until the next one
starts and so add a frame interval that is not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import av
from aiortc import RTCPeerConnection
from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from common import start_gridwatch

from gridwatch.media import clock
from gridwatch.media.webrtc import rtc_configuration
from support.procs import RtspServer, free_port, stop
from support.whep_client import negotiate  # also keeps ICE on loopback

HERE = Path(__file__).resolve().parent


def now_ms() -> float:
    return time.time_ns() / 1e6


def stamp_of(frame: av.VideoFrame) -> int | None:
    return clock.read(frame.to_ndarray()[: frame.height])


def direct_reader(url: str, seconds: float, out: mp.Queue) -> None:
    samples = []
    with av.open(url, options={"rtsp_transport": "tcp", "fflags": "nobuffer"}, timeout=5) as c:
        s = c.streams.video[0]
        s.codec_context.thread_type = "SLICE"  # frame threading would hold frames back
        end = time.monotonic() + seconds
        for packet in c.demux(s):
            if time.monotonic() > end:
                break
            for frame in packet.decode():
                t = now_ms()
                ms = stamp_of(frame)
                if ms is not None:
                    samples.append(t - ms)
    out.put(samples)


class MarkerDecoder:
    """Decodes a receiver's H.264 at each frame's marker packet."""

    def __init__(self) -> None:
        self.buf: list[bytes] = []
        self.codec = av.CodecContext.create("h264", "r")
        self.codec.thread_type = "SLICE"
        self.first_frame_at: float | None = None
        self.first = asyncio.Event()
        self.samples: list[float] = []


DECODERS: dict[int, MarkerDecoder] = {}


async def _on_rtp(self: RTCRtpReceiver, packet, arrival_time_ms: int) -> None:
    d = DECODERS.get(id(self))
    if d is None or not packet.payload:
        return
    _, data = H264PayloadDescriptor.parse(packet.payload)
    d.buf.append(data)
    if not packet.marker:
        return
    frame_data, d.buf = b"".join(d.buf), []
    try:
        frames = d.codec.decode(av.Packet(frame_data))
    except av.FFmpegError:
        return  # joined mid-GOP: nothing decodable until a key frame
    for frame in frames:
        t = now_ms()
        if d.first_frame_at is None:
            d.first_frame_at = time.monotonic()
            d.first.set()
        ms = stamp_of(frame)
        if ms is not None:
            d.samples.append(t - ms)


RTCRtpReceiver._handle_rtp_packet = _on_rtp  # type: ignore[method-assign]


async def whep_view(
    http: aiohttp.ClientSession, base: str, token: str
) -> tuple[RTCPeerConnection, MarkerDecoder, float]:
    pc = RTCPeerConnection(rtc_configuration([]))
    t = pc.addTransceiver("video", direction="recvonly")
    d = DECODERS[id(t.receiver)] = MarkerDecoder()
    _, posted = await negotiate(http, base, "clock", token, pc)
    return pc, d, posted


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(args) -> None:
    udp = free_port()
    rtsp = RtspServer({"/clock": f"udp:{udp}"}).start()
    publisher = subprocess.Popen(
        [sys.executable, str(HERE / "clock_publisher.py"), str(udp), args.size, str(args.fps)]
    )
    url = rtsp.url("/clock")
    gw = start_gridwatch(
        Path(tempfile.mkdtemp(prefix="gw-latency-")), [{"id": "clock", "source": url}]
    )
    try:
        token = gw.token("viewer")
        async with aiohttp.ClientSession() as http:
            pc, d, _ = await whep_view(http, gw.base, token)
            q: mp.Queue = mp.Queue()
            reader = mp.Process(target=direct_reader, args=(url, args.seconds, q))
            reader.start()
            await asyncio.sleep(2)  # both paths warm up before counting
            d.samples.clear()
            direct = await asyncio.get_running_loop().run_in_executor(None, q.get)
            reader.join()
            through = list(d.samples)
            await pc.close()

            joins = []
            for _ in range(args.joins):
                await asyncio.sleep(random.uniform(0.3, 1.3))  # land anywhere in the GOP
                pc, d, posted = await whep_view(http, gw.base, token)
                try:
                    await asyncio.wait_for(d.first.wait(), 5)
                    joins.append((d.first_frame_at - posted) * 1000)
                except TimeoutError:
                    joins.append(float("inf"))
                await pc.close()
    finally:
        gw.stop()
        stop(publisher)
        rtsp.stop()

    print(
        f"clock camera {args.size} @ {args.fps} fps through GStreamer rtsp-server, {args.seconds:.0f} s"
    )
    print(
        f"direct from RTSP (PyAV): n={len(direct)} p50={pct(direct, 0.5):.1f} ms p95={pct(direct, 0.95):.1f} ms"
    )
    print(
        f"through gridwatch WHEP:  n={len(through)} p50={pct(through, 0.5):.1f} ms p95={pct(through, 0.95):.1f} ms"
    )
    print(
        f"added by gridwatch: p50={pct(through, 0.5) - pct(direct, 0.5):+.1f} ms "
        f"p95={pct(through, 0.95) - pct(direct, 0.95):+.1f} ms"
    )
    print(
        f"time to first frame on join ({len(joins)} joins): p50={statistics.median(joins):.0f} ms "
        f"max={max(joins):.0f} ms all={[round(j) for j in joins]}"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--joins", type=int, default=10)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=int, default=30)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
