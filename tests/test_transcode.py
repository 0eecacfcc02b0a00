"""A codec browsers cannot take (MJPEG) is transcoded once per stream, whatever the viewers."""

from __future__ import annotations

from test_whep_rtsp import stream_metric

from support.whep_client import view


async def test_mjpeg_camera_is_transcoded_once_for_all_viewers(
    rtsp_factory, gridwatch_factory, http
):
    rtsp = rtsp_factory({"/mj": "mjpeg:320x240@10"})
    gw = gridwatch_factory({"cameras": [{"id": "old-cam", "source": rtsp.url("/mj")}]})
    token = gw.token("viewer")
    viewers = [await view(http, gw.base, "old-cam", token) for _ in range(3)]
    try:
        for v in viewers:
            assert await v.wait_frames(15, timeout=10.0)
            _, frame = v.frames[-1]
            assert (frame.width, frame.height) == (320, 240)
        m = gw.metrics()
        decoded = stream_metric(m, "decoded_frames", "old-cam")
        encoded = stream_metric(m, "encoded_frames", "old-cam")
        assert decoded >= 15
        # One encode per source frame: three viewers did not triple the work.
        assert encoded <= decoded
        # Every viewer got the same encoded frames: together far more than were encoded.
        assert sum(v.count for v in viewers) > 1.5 * encoded
        assert stream_metric(m, "viewers", "old-cam") == 3
    finally:
        for v in viewers:
            await v.close(http, gw.base, token)
