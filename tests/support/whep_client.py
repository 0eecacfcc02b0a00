"""A WHEP viewer built on aiortc, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from gridwatch.media.webrtc import rtc_configuration, use_host_addresses

use_host_addresses(["127.0.0.1"])  # the network rule: viewers stay on loopback


@dataclass
class Viewer:
    pc: RTCPeerConnection
    location: str
    posted_at: float
    frames: list = field(default_factory=list)  # (arrival time, frame) when decoding
    count: int = 0
    first_frame_at: float | None = None
    task: asyncio.Task | None = None
    error: str | None = None

    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_frames(self, n: int, timeout: float) -> bool:
        """True once `n` frames have arrived in all; False if `timeout` passes first."""
        try:
            async with asyncio.timeout(timeout):
                while self.count < n:
                    self.progress.clear()
                    await self.progress.wait()
        except TimeoutError:
            return False
        return True

    async def close(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        if self.task:
            self.task.cancel()
        await self.pc.close()
        await http.delete(base + self.location, headers={"Authorization": f"Bearer {token}"})


async def _consume(viewer: Viewer, track, keep: int, on_frame) -> None:
    try:
        while True:
            frame = await track.recv()
            now = time.monotonic()
            viewer.count += 1
            viewer.progress.set()
            if viewer.first_frame_at is None:
                viewer.first_frame_at = now
            if on_frame:
                on_frame(now, frame)
            if keep:
                viewer.frames.append((now, frame))
                del viewer.frames[:-keep]
    except MediaStreamError:
        pass


async def negotiate(
    http: aiohttp.ClientSession,
    base: str,
    stream: str,
    token: str,
    pc: RTCPeerConnection,
    protocol: str = "whep",
) -> tuple[str, float]:
    """Offer `pc` (with its transceivers and handlers set) over WHEP or WHIP; (Location,
    POST time)."""
    await pc.setLocalDescription(await pc.createOffer())
    posted = time.monotonic()
    async with http.post(
        f"{base}/{protocol}/{stream}",
        data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    ) as r:
        body = await r.text()
        if r.status != 201:
            await pc.close()
            raise RuntimeError(f"{protocol.upper()} {r.status}: {body}")
        location = r.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    return location, posted


async def view(
    http: aiohttp.ClientSession,
    base: str,
    stream: str,
    token: str,
    *,
    keep: int = 4,
    on_frame=None,
) -> Viewer:
    """A WHEP viewer that counts (and keeps the last `keep`) decoded frames."""
    pc = RTCPeerConnection(rtc_configuration([]))
    pc.addTransceiver("video", direction="recvonly")
    viewer = Viewer(pc, "", 0.0)

    @pc.on("track")
    def _track(track) -> None:
        viewer.task = asyncio.ensure_future(_consume(viewer, track, keep, on_frame))

    viewer.location, viewer.posted_at = await negotiate(http, base, stream, token, pc)
    return viewer
