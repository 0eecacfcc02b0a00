"""RTSP camera -> gridwatch serve -> aiortc WHEP viewer, H.264 forwarded untouched."""

from __future__ import annotations

import asyncio
import time

import pytest

from support.whep_client import view


def stream_metric(metrics: dict[str, float], name: str, stream: str) -> float:
    return metrics.get(
        f'gridwatch_stream_{name}_total{{stream="{stream}"}}',
        metrics.get(f'gridwatch_stream_{name}{{stream="{stream}"}}', 0.0),
    )


async def wait_metric(gw, name: str, stream: str, value: float = 1, timeout: float = 15) -> None:
    """Until the stream's /metrics `name` reads `value` (a publisher online, its sound
    come); fails with the node's log after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while stream_metric(gw.metrics(), name, stream) != value:
        assert time.monotonic() < deadline, gw.logs()[-3000:]
        await asyncio.sleep(0.2)


async def test_viewer_gets_frames_within_2s_and_server_never_decodes(
    rtsp_factory, gridwatch_factory, http
):
    rtsp = rtsp_factory({"/cam": "testsrc:640x360@25:800"})
    gw = gridwatch_factory({"cameras": [{"id": "gate", "source": rtsp.url("/cam")}]})
    token = gw.token("viewer")

    viewer = await view(http, gw.base, "gate", token)
    try:
        assert await viewer.wait_frames(1, timeout=2.0), "no frame within 2 s of the WHEP POST"
        assert viewer.first_frame_at - viewer.posted_at < 2.0
        assert await viewer.wait_frames(25, timeout=5.0)
        _, frame = viewer.frames[-1]
        assert (frame.width, frame.height) == (640, 360)

        m = gw.metrics()
        assert stream_metric(m, "online", "gate") == 1.0
        assert stream_metric(m, "viewers", "gate") == 1.0
        assert stream_metric(m, "packets", "gate") >= 25
        assert stream_metric(m, "bytes_out", "gate") > 0
        # Pass-through: the server neither decoded nor encoded a single frame.
        assert stream_metric(m, "decoded_frames", "gate") == 0
        assert stream_metric(m, "encoded_frames", "gate") == 0
    finally:
        await viewer.close(http, gw.base, token)


async def test_second_viewer_starts_at_cached_keyframe(rtsp_factory, gridwatch_factory, http):
    # A 4 s GOP: without the GOP cache a joining viewer would wait up to 4 s for a key frame.
    rtsp = rtsp_factory({"/cam": "testsrc:640x360@25:800,gop=100"})
    gw = gridwatch_factory({"cameras": [{"id": "gate", "source": rtsp.url("/cam")}]})
    token = gw.token("viewer")
    first = await view(http, gw.base, "gate", token)
    try:
        assert await first.wait_frames(60, timeout=8.0)  # mid-GOP by now
        joins = []
        for _ in range(3):
            second = await view(http, gw.base, "gate", token)
            assert await second.wait_frames(1, timeout=2.0)
            joins.append(second.first_frame_at - second.posted_at)
            await second.close(http, gw.base, token)
            await asyncio.sleep(0.7)
        assert max(joins) < 1.0, f"time to first frame on join: {joins}"
    finally:
        await first.close(http, gw.base, token)


async def test_viewer_resumes_after_camera_restarts(rtsp_factory, gridwatch_factory, http):
    rtsp = rtsp_factory({"/cam": "testsrc:640x360@25:800"})
    gw = gridwatch_factory(
        {"cameras": [{"id": "gate", "source": rtsp.url("/cam")}], "media": {"read_timeout_s": 2}}
    )
    token = gw.token("viewer")
    viewer = await view(http, gw.base, "gate", token)
    try:
        assert await viewer.wait_frames(10, timeout=5.0)
        rtsp.stop()
        await asyncio.sleep(3.0)  # the camera stays away a while
        before = viewer.count
        assert stream_metric(gw.metrics(), "online", "gate") == 0.0
        rtsp_factory({"/cam": "testsrc:640x360@25:800"}, port=rtsp.port)
        back = time.monotonic()  # the camera answers again from here on
        while stream_metric(gw.metrics(), "online", "gate") != 1.0 and time.monotonic() - back < 8:
            await asyncio.sleep(0.05)
        online = time.monotonic() - back
        assert online < 5.0, f"stream back {online:.1f} s after the camera returned"
        # The viewer's session survived the outage and plays from the next key frame.
        assert await viewer.wait_frames(before + 10, timeout=3.0), "viewer did not resume"
        m = gw.metrics()
        assert stream_metric(m, "reconnects", "gate") >= 1
        assert stream_metric(m, "online", "gate") == 1.0
    finally:
        await viewer.close(http, gw.base, token)


async def test_node_refuses_viewers_past_its_egress_limit(rtsp_factory, gridwatch_factory, http):
    rtsp = rtsp_factory({"/cam": "testsrc:640x360@25:1500"})
    gw = gridwatch_factory(
        {"cameras": [{"id": "gate", "source": rtsp.url("/cam")}], "media": {"max_egress_mbps": 2.0}}
    )
    token = gw.token("viewer")
    first = await view(http, gw.base, "gate", token)
    try:
        assert await first.wait_frames(10, timeout=6.0)
        async with asyncio.timeout(5):  # the node measures the stream's bitrate each second
            while gw.metrics()["gridwatch_webrtc_egress_bps"] < 1.0e6:
                await asyncio.sleep(0.2)
        with pytest.raises(RuntimeError, match=r"WHEP 503.*overloaded"):
            await view(http, gw.base, "gate", token)
        count = first.count
        assert await first.wait_frames(count + 25, timeout=3.0), "the refusal disturbed the viewer"
    finally:
        await first.close(http, gw.base, token)
    again = await view(http, gw.base, "gate", token)  # room again once the first has gone
    try:
        assert await again.wait_frames(5, timeout=3.0)
    finally:
        await again.close(http, gw.base, token)
