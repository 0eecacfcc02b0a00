"""Sources that send what we cannot take: one line of ours naming the cause, never a
library's traceback, and the node goes on serving the other cameras."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

from test_whep_rtsp import stream_metric

from support.whep_client import view


async def test_undecodable_sources_are_named_and_the_others_go_on(
    gridwatch_factory, http, tmp_path
):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(64 * 1024))
    # A real container cut inside its header: it opens, and then it lies.
    data_only = tmp_path / "cut.mkv"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
         "-t", "2", "-c:v", "libx264", str(data_only)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    data_only.write_bytes(data_only.read_bytes()[:200])
    gw = gridwatch_factory(
        {
            "cameras": [
                {"id": "noise", "source": f"file:{garbage}"},
                {"id": "cut", "source": f"file:{data_only}"},
                {"id": "good", "source": "lavfi:testsrc2=size=320x240:rate=10"},
            ],
            "media": {"reconnect_min_s": 0.5, "reconnect_max_s": 1},
        }
    )
    token = gw.token("viewer")
    viewers = [await view(http, gw.base, cam, token) for cam in ("noise", "cut", "good")]
    try:
        assert await viewers[2].wait_frames(20, timeout=15), "the good camera stalled"
        deadline = time.monotonic() + 15
        while True:
            failed = {r.get("stream"): r for r in gw.records("stream source failed")}
            if {"noise", "cut"} <= set(failed):
                break
            assert time.monotonic() < deadline, gw.logs()[-3000:]
            await asyncio.sleep(0.3)
        for cam in ("noise", "cut"):
            assert failed[cam]["error"], failed[cam]  # the cause, in FFmpeg's words
            assert stream_metric(gw.metrics(), "online", cam) == 0
        async with http.get(
            f"{gw.base}/api/cameras/noise", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert (await r.json())["state"]["last_error"]
        assert "Traceback" not in gw.logs()
        assert stream_metric(gw.metrics(), "online", "good") == 1
    finally:
        for v in viewers:
            await v.close(http, gw.base, token)
