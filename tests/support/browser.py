"""Debian's Chromium as the tests and benchmarks start it: headless, quiet (no calls
home), fake camera and microphone, WebRTC on loopback."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # Chromium hides host candidates behind mDNS names that aiortc cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

# How long a browser test waits for media to flow (a tile playing, a call's video, a
# phone's camera shared). Generous on purpose: it only matters when a test fails, and a
# loaded CI machine takes far longer than an idle one to negotiate and decode.
MEDIA_MS = 45_000
