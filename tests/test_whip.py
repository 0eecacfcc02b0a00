"""Field video in: an aiortc WHIP publisher and an ffmpeg RTMP push, watched over WHEP."""

from __future__ import annotations

import asyncio
import subprocess
import time

from test_whep_rtsp import stream_metric

from support.procs import stop
from support.whep_client import view
from support.whip_client import LongGopEncoder, publish, use_long_gop

use_long_gop()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_whip_publisher_to_three_viewers_without_encoding(gridwatch_factory, http):
    gw = gridwatch_factory()
    pub_token, view_token = gw.token("admin"), gw.token("dispatcher")
    pc, location = await publish(http, gw.base, "drone-7", pub_token)
    viewers = []
    try:
        for _ in range(3):
            viewers.append(await view(http, gw.base, "drone-7", view_token))
        for v in viewers:
            assert await v.wait_frames(30, timeout=10.0), "a WHEP viewer got under 30 frames"
            _, frame = v.frames[-1]
            assert (frame.width, frame.height) == (320, 240)
        m = gw.metrics()
        assert stream_metric(m, "viewers", "drone-7") == 3
        assert m['gridwatch_stream_published{stream="drone-7",via="whip"}'] == 1
        assert m['gridwatch_publishers{via="whip"}'] == 1
        assert stream_metric(m, "packets", "drone-7") >= 30
        # Forwarded as the publisher sent it: not one frame decoded or encoded here.
        assert stream_metric(m, "decoded_frames", "drone-7") == 0
        assert stream_metric(m, "encoded_frames", "drone-7") == 0
        # Only the publisher (or a dispatcher) ends the session, and only once.
        async with http.delete(gw.base + location, headers=auth(gw.token("viewer"))) as r:
            assert r.status == 403
        async with http.delete(gw.base + location, headers=auth(pub_token)) as r:
            assert r.status == 200
        async with http.delete(gw.base + location, headers=auth(pub_token)) as r:
            assert r.status == 404
    finally:
        for v in viewers:
            await v.close(http, gw.base, view_token)
        await pc.close()


async def test_viewer_joining_a_running_whip_stream_gets_a_requested_keyframe_within_1s(
    gridwatch_factory, http
):
    gw = gridwatch_factory()
    pub_token, view_token = gw.token("admin"), gw.token("viewer")
    pc, _ = await publish(http, gw.base, "drone-8", pub_token)
    first = await view(http, gw.base, "drone-8", view_token)
    try:
        assert await first.wait_frames(90, timeout=10.0)  # 3 s into a 20 s GOP
        for _ in range(2):
            await asyncio.sleep(0.6)  # past the key frame request interval
            asked = len(LongGopEncoder.forced)
            keyframes = stream_metric(gw.metrics(), "keyframes", "drone-8")
            late = await view(http, gw.base, "drone-8", view_token)
            try:
                assert await late.wait_frames(1, timeout=1.0), "no picture within 1 s of joining"
                # The publisher was asked (PLI) and answered with a fresh key frame.
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    m = gw.metrics()
                    if stream_metric(m, "keyframes", "drone-8") > keyframes:
                        break
                    await asyncio.sleep(0.05)
                assert len(LongGopEncoder.forced) > asked
                assert stream_metric(m, "keyframes", "drone-8") > keyframes
                assert time.monotonic() - late.posted_at < 1.5
                assert stream_metric(m, "keyframe_requests", "drone-8") >= 1
            finally:
                await late.close(http, gw.base, view_token)
    finally:
        await first.close(http, gw.base, view_token)
        await pc.close()


async def test_vp8_publisher_is_transcoded_once_for_every_viewer(gridwatch_factory, http):
    gw = gridwatch_factory()
    token = gw.token("admin")
    pc, _ = await publish(http, gw.base, "cam-vp8", token, codec="video/VP8")
    viewers = [await view(http, gw.base, "cam-vp8", token) for _ in range(2)]
    try:
        for v in viewers:
            assert await v.wait_frames(30, timeout=15.0)
        m = gw.metrics()
        decoded = stream_metric(m, "decoded_frames", "cam-vp8")
        encoded = stream_metric(m, "encoded_frames", "cam-vp8")
        # One encode per received frame, not one per viewer.
        assert 30 <= encoded <= decoded
        assert stream_metric(m, "packets", "cam-vp8") == encoded
    finally:
        for v in viewers:
            await v.close(http, gw.base, token)
        await pc.close()


async def test_rtmp_push_from_ffmpeg_watched_over_whep(gridwatch_factory, http):
    gw = gridwatch_factory()
    token = gw.token("admin")
    drone = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
         "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "50",
         "-pix_fmt", "yuv420p", "-f", "flv",
         f"rtmp://127.0.0.1:{gw.rtmp_port}/live/drone-9?token={token}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    viewer = None
    try:
        deadline = time.monotonic() + 15
        while stream_metric(gw.metrics(), "online", "drone-9") != 1:
            assert time.monotonic() < deadline, gw.logs()[-3000:]
            await asyncio.sleep(0.2)
        viewer = await view(http, gw.base, "drone-9", gw.token("dispatcher"))
        assert await viewer.wait_frames(25, timeout=10.0)
        _, frame = viewer.frames[-1]
        assert (frame.width, frame.height) == (640, 360)
        m = gw.metrics()
        assert m['gridwatch_stream_published{stream="drone-9",via="rtmp"}'] == 1
        assert m['gridwatch_publishers{via="rtmp"}'] == 1
        assert stream_metric(m, "encoded_frames", "drone-9") == 0
        assert stream_metric(m, "decoded_frames", "drone-9") == 0
    finally:
        if viewer:
            await viewer.close(http, gw.base, token)
        stop(drone, timeout=5)


async def test_rtmp_push_refused_without_the_right_token(gridwatch_factory):
    gw = gridwatch_factory({"cameras": [{"id": "gate", "source": "lavfi:testsrc2"}]})
    # No token; a viewer (who publishes nothing); a camera (pulled, never pushed to).
    for n, (user, target) in enumerate([(None, "drone-1"), ("viewer", "drone-2"), ("admin", "gate")]):
        query = f"?token={gw.token(user)}" if user else ""
        drone = subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
             "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-f", "flv",
             f"rtmp://127.0.0.1:{gw.rtmp_port}/live/{target}{query}"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
        )  # fmt: skip
        assert drone.returncode != 0, user
        assert gw.logs().count("rtmp publish refused") == n + 1
        assert stream_metric(gw.metrics(), "packets", target) == 0


def rtmp_drone(gw, stream: str, token: str, size: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
         "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
         "-pix_fmt", "yuv420p", "-f", "flv", f"rtmp://127.0.0.1:{gw.rtmp_port}/live/{stream}?token={token}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def test_a_publisher_that_reconnects_takes_over_and_the_viewer_stays(gridwatch_factory, http):
    """The new session is the stream's producer; the stale one is hung up by the server,
    and the viewer attached all along sees the new publisher's pictures."""
    gw = gridwatch_factory()
    token, view_token = gw.token("admin"), gw.token("dispatcher")
    # WHIP: a phone reconnects (its old peer connection still up).
    old_pc, _ = await publish(http, gw.base, "drone-5", token)
    viewer = await view(http, gw.base, "drone-5", view_token)
    new_pc = None
    try:
        assert await viewer.wait_frames(10, timeout=10.0)
        new_pc, _ = await publish(http, gw.base, "drone-5", token)
        deadline = time.monotonic() + 10
        while old_pc.connectionState not in ("closed", "failed"):
            assert time.monotonic() < deadline, f"the stale session is still {old_pc.connectionState}"
            await asyncio.sleep(0.1)
        seen = len(viewer.frames)
        assert await viewer.wait_frames(seen + 25, timeout=10.0), "the viewer lost the stream"
        m = gw.metrics()
        assert m['gridwatch_publishers{via="whip"}'] == 1 and stream_metric(m, "online", "drone-5") == 1
    finally:
        await viewer.close(http, gw.base, view_token)
        await old_pc.close()
        if new_pc:
            await new_pc.close()

    # RTMP: a drone comes back at another resolution; its stale connection is dropped.
    first = rtmp_drone(gw, "drone-6", token, "320x240")
    second = None
    viewer = None
    try:
        deadline = time.monotonic() + 15
        while stream_metric(gw.metrics(), "online", "drone-6") != 1:
            assert time.monotonic() < deadline, gw.logs()[-3000:]
            await asyncio.sleep(0.2)
        viewer = await view(http, gw.base, "drone-6", view_token)
        assert await viewer.wait_frames(10, timeout=10.0)
        second = rtmp_drone(gw, "drone-6", token, "640x360")
        deadline = time.monotonic() + 15
        while first.poll() is None:  # the server hung up on it
            assert time.monotonic() < deadline, "the stale RTMP session was not dropped"
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + 15
        while not viewer.frames or (viewer.frames[-1][1].width, viewer.frames[-1][1].height) != (640, 360):
            assert time.monotonic() < deadline, "the viewer never saw the new publisher"
            await asyncio.sleep(0.2)
        assert stream_metric(gw.metrics(), "online", "drone-6") == 1
    finally:
        if viewer:
            await viewer.close(http, gw.base, view_token)
        stop(first, timeout=5)
        if second:
            stop(second, timeout=5)
