"""Real encoders' timing quirks, end to end: B-frames (RTSP and RTMP), parameter sets sent
once (WHIP), a long GOP joined late, and the recordings of each."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from pathlib import Path

import av
import pytest
from test_recordings import wait_closed
from test_whep_rtsp import wait_metric

from support.procs import stop
from support.whep_client import view
from support.whip_client import LongGopEncoder, ParameterSetsOnceEncoder, publish, use_long_gop


def even_spacing(pts: list[int], frame: int) -> None:
    """`pts` (a viewer's frames, as decoded) rise, one `frame` apart nearly always: no
    bunches one tick apart, no reordered frames, no gaps but a rare lost frame."""
    # aiortc's receiver takes any RTP timestamp that goes back for a wrap-around (its
    # TimestampMapper) and adds 2**32: B-frames' do, by design. The wire has 32 bits.
    steps = [(b - a + 2**31) % 2**32 - 2**31 for a, b in itertools.pairwise(pts)]
    assert steps and min(steps) > 0, f"presentation times go back or repeat: {steps}"
    on_beat = sum(1 for s in steps if abs(s - frame) <= frame // 20)
    assert on_beat >= 0.95 * len(steps), f"uneven frame spacing (want {frame}): {steps}"
    assert min(steps) >= frame // 2, f"frames bunched together: {steps}"


async def live_pts(gw, http, stream: str, n: int) -> list[int]:
    """The presentation times of `n` frames a WHEP viewer decodes, after its catch-up."""
    token = gw.token("viewer")
    viewer = await view(http, gw.base, stream, token, keep=n + 30)
    try:
        assert await viewer.wait_frames(n + 30, timeout=30), gw.logs()[-2000:]
        return [f.pts for _, f in viewer.frames[-n:]]
    finally:
        await viewer.close(http, gw.base, token)


def segment_times(path: Path) -> tuple[list[tuple[int, int]], list[float]]:
    """A segment's packets as (pts, dts) in file order, and its decoded frames' times."""
    with av.open(str(path)) as c:
        packets = [(p.pts, p.dts) for p in c.demux(video=0) if p.size]
    with av.open(str(path)) as c:
        frames = [f.time for f in c.decode(video=0)]
    return packets, frames


async def test_b_frames_from_rtsp_reach_viewers_in_presentation_order_and_record_offsets(
    rtsp_factory, gridwatch_factory, http
):
    rtsp = rtsp_factory({"/cam": "testsrc:640x360@30:800,bframes=2"})
    gw = gridwatch_factory(
        {
            "cameras": [
                {"id": "gate", "source": rtsp.url("/cam"), "record": {"mode": "continuous"}}
            ],
            "recordings": {"segment_s": 2, "min_free_mb": 0, "check_s": 1},
        }
    )
    even_spacing(await live_pts(gw, http, "gate", 90), 3000)

    seg = (await wait_closed(http, gw, gw.token("viewer"), 2, timeout=30))[1]
    packets, frames = segment_times(gw.workdir / "data" / "recordings" / seg["path"])
    assert any(p != d for p, d in packets), "no composition offsets: B-frames flattened"
    dts = [d for _, d in packets]
    assert all(b > a for a, b in itertools.pairwise(dts)), "decode times go back"
    shown = sorted(p for p, _ in packets)
    assert all(b > a for a, b in itertools.pairwise(shown)), "two frames at once"
    assert len(frames) == len(packets), "frames lost in decoding"
    assert all(b > a for a, b in itertools.pairwise(frames)), "pictures go back in time"
    assert abs(frames[-1] - frames[0] - (len(frames) - 1) / 30) < 0.05


async def test_b_frames_from_rtmp_keep_their_composition_time(gridwatch_factory, http):
    gw = gridwatch_factory()
    token = gw.token("admin")
    pub = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
         "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "50", "-pix_fmt", "yuv420p",
         "-f", "flv", f"rtmp://127.0.0.1:{gw.rtmp_port}/live/drone-b?token={token}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_metric(gw, "online", "drone-b")
        even_spacing(await live_pts(gw, http, "drone-b", 75), 3600)
    finally:
        stop(pub)


@pytest.fixture
def params_once():
    """aiortc publishers in this test send SPS/PPS once (ParameterSetsOnceEncoder)."""
    use_long_gop(ParameterSetsOnceEncoder)
    yield
    use_long_gop(LongGopEncoder)


async def test_late_viewer_and_every_segment_decode_when_sps_pps_came_once(
    params_once, gridwatch_factory, http
):
    gw = gridwatch_factory(
        {
            "recordings": {
                "segment_s": 2,
                "min_free_mb": 0,
                "check_s": 1,
                "streams": {"phone-*": {"mode": "continuous"}},
            },
        }
    )
    pc, _ = await publish(http, gw.base, "phone-3", gw.token("admin"))
    try:
        # Long after the only parameter sets went by.
        segs = await wait_closed(http, gw, gw.token("viewer"), 3, timeout=40, camera="phone-3")
        token = gw.token("viewer")
        viewer = await view(http, gw.base, "phone-3", token, keep=5)
        try:
            assert await viewer.wait_frames(30, timeout=10), "the late viewer decodes nothing"
            _, frame = viewer.frames[-1]
            assert (frame.width, frame.height) == (320, 240)
        finally:
            await viewer.close(http, gw.base, token)
        root = gw.workdir / "data" / "recordings"
        for seg in segs:
            packets, frames = segment_times(root / seg["path"])
            assert frames and len(frames) >= len(packets) - 1, f"{seg['path']} does not decode"
    finally:
        await pc.close()


async def test_viewer_joining_16s_into_a_20s_gop_never_freezes(
    rtsp_factory, gridwatch_factory, http
):
    rtsp = rtsp_factory({"/cam": "testsrc:640x360@30:600,gop=600"})
    gw = gridwatch_factory({"cameras": [{"id": "gate", "source": rtsp.url("/cam")}]})
    token = gw.token("viewer")
    first = await view(http, gw.base, "gate", token, keep=0)
    late = None
    try:
        assert await first.wait_frames(480, timeout=30)  # 16 s into the camera's first GOP
        arrivals: list[float] = []
        late = await view(
            http, gw.base, "gate", token, keep=0, on_frame=lambda t, f: arrivals.append(t)
        )
        assert await late.wait_frames(1, timeout=2), "no picture within 2 s of joining"
        joined = time.monotonic()
        while time.monotonic() - joined < 7:  # past the next key frame, at 20 s
            await asyncio.sleep(0.2)
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        worst = gaps.index(max(gaps))
        assert max(gaps) < 1.0, (
            f"a freeze of {max(gaps):.1f} s after frame {worst} of {len(arrivals)}, {arrivals[worst] - joined:.2f} s after the first"
        )
        # The catch-up (the GOP so far) and then live, nothing skipped.
        assert len(arrivals) >= 480 + 7 * 30 * 0.8, len(arrivals)
        assert gw.metrics().get('gridwatch_stream_dropped_total{stream="gate"}', 0) == 0
    finally:
        await first.close(http, gw.base, token)
        if late is not None:
            await late.close(http, gw.base, token)


async def test_a_source_that_starts_over_keeps_frames_evenly_spaced(
    gridwatch_factory, http, tmp_path
):
    """A file camera loops: its clock steps back to the start (x264 with B-frames: to a
    negative decode time) every 2 s. The viewer's frames stay one interval apart across
    every loop, not bunched and not a frame short."""
    clip = tmp_path / "loop.mp4"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-t", "2", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p",
         str(clip)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    gw = gridwatch_factory({"cameras": [{"id": "loop", "source": f"file:{clip}"}]})
    pts = await live_pts(gw, http, "loop", 110)  # 4.4 s: two loops at least
    steps = [(b - a + 2**31) % 2**32 - 2**31 for a, b in itertools.pairwise(pts)]
    assert all(abs(s - 3600) <= 1 for s in steps), steps
