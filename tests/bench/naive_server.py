"""The baseline for the fan-out benchmark: what a naive aiortc server does.

It decodes the camera once (MediaPlayer) and relays frames (MediaRelay), so aiortc
encodes H.264 once per viewer. It speaks just enough WHEP for bench/viewers.py.

    python tests/bench/naive_server.py PORT RTSP_URL
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer, MediaRelay

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gridwatch.media.webrtc import rtc_configuration, use_host_addresses

use_host_addresses(["127.0.0.1"])


def make_app(url: str) -> web.Application:
    player = MediaPlayer(url, options={"rtsp_transport": "tcp"})
    relay = MediaRelay()
    pcs: set[RTCPeerConnection] = set()

    async def whep(request: web.Request) -> web.Response:
        pc = RTCPeerConnection(rtc_configuration([]))
        pcs.add(pc)
        t = pc.addTransceiver(relay.subscribe(player.video), direction="sendonly")
        t.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        )
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": "/whep/x/1"},
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def close(app: web.Application) -> None:
        for pc in pcs:
            await pc.close()

    app = web.Application()
    app.router.add_post("/whep/{stream}", whep)
    app.router.add_get("/healthz", healthz)
    app.on_shutdown.append(close)
    return app


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), print=None)
