"""A /ws client for tests: one device of one user, its messages queued by type, and an
aiortc peer connection for the media of a call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from gridwatch.media.webrtc import rtc_configuration, use_host_addresses
from support.whip_client import MovingPicture

use_host_addresses(["127.0.0.1"])  # the network rule: calls stay on loopback


@dataclass
class Device:
    user: str
    device: str
    ws: aiohttp.ClientWebSocketResponse
    inbox: list[dict] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task | None = None
    pc: RTCPeerConnection | None = None
    frames: int = 0
    counting: list[asyncio.Future] = field(default_factory=list)

    close_reason: str = ""

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                self.close_reason = str(msg.extra or "")
                break
            self.inbox.append(msg.json())
            self.arrived.set()
        self.arrived.set()

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server to close this socket: (code, reason)."""
        async with asyncio.timeout(timeout):
            await self.reader
        return self.ws.close_code, self.close_reason

    async def send(self, **message) -> None:
        await self.ws.send_json(message)

    async def expect(self, kind: str, timeout: float = 5.0, **match) -> dict:
        """The first queued message of type `kind` (matching `match`), taken off the queue."""
        async with asyncio.timeout(timeout):
            while True:
                for i, m in enumerate(self.inbox):
                    if m.get("type") == kind and all(m.get(k) == v for k, v in match.items()):
                        return self.inbox.pop(i)
                if self.ws.closed:
                    raise AssertionError(f"{self.device}: socket closed waiting for {kind}")
                self.arrived.clear()
                await self.arrived.wait()

    def has(self, kind: str, **match) -> bool:
        return any(
            m.get("type") == kind and all(m.get(k) == v for k, v in match.items())
            for m in self.inbox
        )

    # media ----------------------------------------------------------------

    def _peer(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(rtc_configuration([]))
        pc.addTrack(MovingPicture())

        @pc.on("track")
        def _track(track) -> None:
            self.counting.append(asyncio.ensure_future(self._count(track)))

        self.pc = pc
        return pc

    async def _count(self, track) -> None:
        try:
            while True:
                await track.recv()
                self.frames += 1
        except MediaStreamError:
            pass

    async def offer(self, call: str) -> None:
        """The caller's side once the call is accepted: offer, then apply the answer."""
        pc = self._peer()
        await pc.setLocalDescription(await pc.createOffer())
        await self.send(type="sdp", call=call, sdp={"type": "offer", "sdp": pc.localDescription.sdp})
        answer = await self.expect("sdp", call=call)
        await pc.setRemoteDescription(RTCSessionDescription(**answer["sdp"]))

    async def answer(self, call: str) -> None:
        offer = await self.expect("sdp", call=call)
        pc = self._peer()
        await pc.setRemoteDescription(RTCSessionDescription(**offer["sdp"]))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.send(type="sdp", call=call, sdp={"type": "answer", "sdp": pc.localDescription.sdp})

    async def wait_frames(self, n: int, timeout: float) -> bool:
        async with asyncio.timeout(timeout):
            while self.frames < n:
                await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        if self.pc:
            await self.pc.close()
        await self.ws.close()
        if self.reader:
            await self.reader


async def connect(http: aiohttp.ClientSession, base: str, token: str, user: str, device: str) -> Device:
    ws = await http.ws_connect(
        f"{base}/ws?device={device}", headers={"Authorization": f"Bearer {token}"}
    )
    d = Device(user, device, ws)
    d.reader = asyncio.ensure_future(d._read())
    await d.expect("hello")
    await d.expect("presence.list")  # sent once the device is registered as online
    return d
