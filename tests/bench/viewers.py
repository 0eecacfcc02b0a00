"""Benchmark viewers: N WHEP sessions in one process that count frames without decoding.

A frame is counted at its last RTP packet (the marker bit); nothing is depacketised
or decoded, so that the viewers cost as little CPU as possible and the measurement is
the server's. Prints one JSON object on stdout.

    python tests/bench/viewers.py BASE STREAM TOKEN N SECONDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
from aiortc import RTCPeerConnection
from aiortc.rtcrtpreceiver import RTCRtpReceiver

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridwatch.media.webrtc import rtc_configuration
from support.whep_client import negotiate  # also keeps ICE on loopback

COUNTS: dict[int, list[float]] = {}  # id(receiver) -> [frames, first frame time]


async def _count(self: RTCRtpReceiver, packet, arrival_time_ms: int) -> None:
    if packet.marker:
        c = COUNTS.setdefault(id(self), [0, time.monotonic()])
        c[0] += 1


RTCRtpReceiver._handle_rtp_packet = _count  # type: ignore[method-assign]


async def one(http: aiohttp.ClientSession, base: str, stream: str, token: str):
    pc = RTCPeerConnection(rtc_configuration([]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    _, posted = await negotiate(http, base, stream, token, pc)
    return pc, id(transceiver.receiver), posted


async def main(base: str, stream: str, token: str, n: int, seconds: float) -> None:
    async with aiohttp.ClientSession() as http:
        sessions = []
        for _ in range(n):
            sessions.append(await one(http, base, stream, token))
        # Everyone receiving (or 20 s gone): report ready, wait for the go, count for `seconds`.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(rid not in COUNTS for _, rid, _ in sessions):
            await asyncio.sleep(0.1)
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        start = {rid: COUNTS.get(rid, [0])[0] for _, rid, _ in sessions}
        await asyncio.sleep(seconds)
        frames = [COUNTS.get(rid, [0])[0] - start[rid] for _, rid, _ in sessions]
        ttff = [COUNTS[rid][1] - posted for _, rid, posted in sessions if rid in COUNTS]
        print(json.dumps({"frames": frames, "ttff": ttff}), flush=True)
        for pc, _, _ in sessions:
            await pc.close()


if __name__ == "__main__":
    b, s, t, count, secs = sys.argv[1:6]
    asyncio.run(main(b, s, t, int(count), float(secs)))
