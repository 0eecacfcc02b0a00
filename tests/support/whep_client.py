"""A WHEP viewer built on aiortc, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np
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
    sound: list = field(default_factory=list)  # (arrival time, audio frame) with audio=True
    audio_task: asyncio.Task | None = None

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

    def heard(self) -> tuple[float, float]:
        """(seconds of sound received, its loudest frequency in Hz)."""
        if not self.sound:
            return 0.0, 0.0
        rate = self.sound[0][1].sample_rate
        chunks = [f.to_ndarray().reshape(-1, len(f.layout.channels))[:, 0] for _, f in self.sound]
        samples = np.concatenate(chunks).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        peak = float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])
        return len(samples) / rate, peak

    async def close(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        if self.task:
            self.task.cancel()
        if self.audio_task:
            self.audio_task.cancel()
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


async def _listen(viewer: Viewer, track) -> None:
    try:
        while True:
            frame = await track.recv()
            viewer.sound.append((time.monotonic(), frame))
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
    audio: bool = False,
) -> Viewer:
    """A WHEP viewer that counts (and keeps the last `keep`) decoded frames; with `audio`
    it takes the sound too and keeps every decoded audio frame."""
    pc = RTCPeerConnection(rtc_configuration([]))
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    viewer = Viewer(pc, "", 0.0)

    @pc.on("track")
    def _track(track) -> None:
        if track.kind == "audio":
            viewer.audio_task = asyncio.ensure_future(_listen(viewer, track))
        else:
            viewer.task = asyncio.ensure_future(_consume(viewer, track, keep, on_frame))

    viewer.location, viewer.posted_at = await negotiate(http, base, stream, token, pc)
    return viewer
