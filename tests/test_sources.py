"""Demo and test sources: file: (MP4, looped), lavfi:, clock:, snapshots, and `gridwatch demo`."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import cv2
import numpy as np
import pytest

from gridwatch.media import clock
from support.procs import GRIDWATCH, free_port, make_video, stop
from support.whep_client import view


@pytest.fixture(scope="module")
def short_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "two-seconds.mp4"
    make_video(path, "480x272", 20, 2, "-g", "20")
    return path


async def test_mp4_file_plays_in_real_time_and_loops(short_mp4, gridwatch_factory, http):
    gw = gridwatch_factory({"cameras": [{"id": "rec", "source": f"file:{short_mp4}"}]})
    token = gw.token("viewer")
    viewer = await view(http, gw.base, "rec", token)
    try:
        # MP4 carries AVCC: decodable frames prove the Annex-B conversion.
        assert await viewer.wait_frames(1, timeout=3)
        t0 = time.monotonic()
        assert await viewer.wait_frames(70, timeout=8), "the 2 s file did not loop"
        # Paced like a camera: 70 frames at 20 fps take about 3.5 s, not a burst.
        assert time.monotonic() - t0 > 2.5
        _, frame = viewer.frames[-1]
        assert (frame.width, frame.height) == (480, 272)
    finally:
        await viewer.close(http, gw.base, token)


async def test_snapshot_from_the_gop_cache(gridwatch_factory, http):
    gw = gridwatch_factory(
        {"cameras": [{"id": "pattern", "source": "lavfi:testsrc2=size=320x240:rate=10"}]}
    )
    h = {"Authorization": f"Bearer {gw.token('viewer')}"}
    async with http.get(gw.base + "/api/cameras/pattern/snapshot.jpg", headers=h) as r:
        assert r.status == 200 and r.content_type == "image/jpeg"
        img = cv2.imdecode(np.frombuffer(await r.read(), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (240, 320, 3)
    assert img.std() > 20  # a picture, not a blank frame
    m = gw.metrics()
    assert m['gridwatch_stream_snapshot_decodes_total{stream="pattern"}'] >= 1


async def test_clock_source_stamps_the_wall_clock(gridwatch_factory, http):
    gw = gridwatch_factory({"cameras": [{"id": "clock", "source": "clock:640x368@25"}]})
    token = gw.token("viewer")
    lags = []

    def on_frame(now: float, frame) -> None:
        ms = clock.read(frame.to_ndarray(format="yuv420p")[: frame.height])
        if ms is not None:
            lags.append(time.time() * 1000 - ms)

    viewer = await view(http, gw.base, "clock", token, on_frame=on_frame)
    try:
        assert await viewer.wait_frames(25, timeout=5)
    finally:
        await viewer.close(http, gw.base, token)
    assert len(lags) >= 20, "stamps unreadable after H.264 and WebRTC"
    assert 0 <= sorted(lags)[len(lags) // 2] < 500


def test_clock_stamp_round_trip():
    img = clock.background(640, 368)
    for ms in (0, 1, 1_700_000_000_123, 2**47 + 12345):
        clock.stamp(img[:368], ms)
        assert clock.read(img[:368]) == ms
    img[20:60, 40:300] = 128  # smudge the stamp: the checksum must notice
    assert clock.read(img[:368]) is None


async def test_demo_serves_cameras_and_a_ticket_opens_within_a_minute(tmp_path, http):
    port = free_port()
    proc = subprocess.Popen(
        [GRIDWATCH, "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        password = None
        async with asyncio.timeout(30):
            while password is None:
                line = await asyncio.to_thread(proc.stdout.readline)
                assert line, "demo exited"
                if m := re.search(r"log in as\s+admin / (\S+)", line):
                    password = m[1]
        base = f"http://127.0.0.1:{port}"
        async with http.post(
            base + "/api/login", json={"username": "admin", "password": password}
        ) as r:
            assert r.status == 200
            token = (await r.json())["token"]
        async with http.get(
            base + "/api/cameras", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            cameras = (await r.json())["cameras"]
        assert len(cameras) >= 4
        async with http.get(base + "/") as r:
            assert r.status == 200 and "Gridwatch" in await r.text()
        viewer = await view(http, base, cameras[0]["id"], token)
        try:
            assert await viewer.wait_frames(10, timeout=5)
        finally:
            await viewer.close(http, base, token)
        # The street camera's parked vehicle opens a ticket, and the simulated officer takes it.
        async with asyncio.timeout(60):
            while True:
                async with http.get(
                    base + "/api/tickets", headers={"Authorization": f"Bearer {token}"}
                ) as r:
                    tickets = [t for t in (await r.json())["tickets"] if t["camera"] == "main-street"]
                if tickets and tickets[-1]["state"] != "new":
                    break
                await asyncio.sleep(1)
        first = tickets[-1]
        assert first["category"] == "illegal_parking" and first["assignee"] == "p-017"
        assert len([e for e in first["evidence"] if e.endswith(".jpg")]) == 3
        # Main Street records in events mode: the violation's clip joins its evidence.
        async with asyncio.timeout(60):
            while not any(e.endswith("/clip.mp4") for e in first["evidence"]):
                await asyncio.sleep(1)
                async with http.get(f"{base}/api/tickets/{first['id']}",
                                    headers={"Authorization": f"Bearer {token}"}) as r:  # fmt: skip
                    first = await r.json()
    finally:
        stop(proc)


async def test_deleting_a_camera_ends_its_viewers(gridwatch_factory, http):
    gw = gridwatch_factory(
        {"cameras": [{"id": "temp", "source": "lavfi:testsrc2=size=320x240:rate=10"}]}
    )
    token = gw.token("admin")
    viewer = await view(http, gw.base, "temp", token)
    try:
        assert await viewer.wait_frames(3, timeout=5)
        assert gw.metrics()["gridwatch_webrtc_sessions"] == 1
        async with http.delete(
            gw.base + "/api/cameras/temp", headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 200
        assert gw.metrics()["gridwatch_webrtc_sessions"] == 0
        assert 'gridwatch_stream_online{stream="temp"}' not in gw.metrics()
        async with asyncio.timeout(5):
            await viewer.task  # the track ends: no more frames will come
    finally:
        await viewer.pc.close()
