"""Recording a real RTSP camera: fragmented MP4 segments by remux, the index, range
playback, clip export, a crash mid-segment, retention, marks, access and paths."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import av
import pytest
import redis
from yarl import URL

GOP_S = 1.0  # the test camera sends a key frame every second


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def camera_cfg(rtsp, record: dict, **recordings) -> dict:
    return {
        "cameras": [{"id": "gate", "source": rtsp.url("/cam"), "record": record}],
        "recordings": {"segment_s": 3, "min_free_mb": 0, "check_s": 1, **recordings},
    }


async def segments(http, gw, token, start=0.0, end=None, camera="gate") -> list[dict]:
    end = end or time.time() + 60
    async with http.get(gw.base + "/api/recordings", headers=auth(token),
                        params={"camera": camera, "from": start, "to": end}) as r:  # fmt: skip
        assert r.status == 200, await r.text()
        return (await r.json())["segments"]


async def wait_closed(http, gw, token, n: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        closed = [s for s in await segments(http, gw, token) if s["end"] is not None]
        if len(closed) >= n:
            return closed
        await asyncio.sleep(0.5)
    raise AssertionError(f"fewer than {n} closed segments:\n{gw.logs()[-3000:]}")


def decode_all(path: Path) -> tuple[int, float]:
    """(frames decoded, seconds covered); raises if a frame does not decode."""
    with av.open(str(path)) as c:
        frames = [f for f in c.decode(video=0)]
    return len(frames), float(frames[-1].time - frames[0].time) if frames else 0.0


@pytest.fixture
def camera(rtsp_factory):
    return rtsp_factory({"/cam": "testsrc:320x240@25:400,gop=25"})


async def test_continuous_segments_play_cover_the_time_and_answer_ranges(
    camera, gridwatch_factory, http
):
    gw = gridwatch_factory(camera_cfg(camera, {"mode": "continuous"}))
    token = gw.token("viewer")
    segs = await wait_closed(http, gw, token, 3, timeout=30)
    root = gw.workdir / "data" / "recordings"
    for s in segs:
        assert s["path"].startswith("gate/") and s["url"] == f"/recordings/{s['path']}"
        frames, seconds = decode_all(root / s["path"])
        assert frames >= 2.5 * 25, s  # every frame decodes
        assert 2.0 <= seconds <= 5.0
        assert s["end"] - s["start"] == pytest.approx(seconds + 0.04, abs=0.3)
    for a, b in zip(segs, segs[1:], strict=False):
        assert -0.1 <= b["start"] - a["end"] <= GOP_S, "gap between segments beyond one GOP"
    # A range in the middle of the second segment finds exactly that one.
    mid = (segs[1]["start"] + segs[1]["end"]) / 2
    found = await segments(http, gw, token, mid - 0.2, mid + 0.2)
    assert [s["path"] for s in found] == [segs[1]["path"]]
    # ISO 8601 works too; nonsense is a 400 naming the field.
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(segs[0]["start"] - 1))
    assert await segments(http, gw, token, iso, time.time() + 60)
    async with http.get(gw.base + "/api/recordings", headers=auth(token),
                        params={"camera": "gate", "from": "yesterday", "to": "1"}) as r:  # fmt: skip
        assert r.status == 400 and "from" in (await r.json())["message"]
    m = gw.metrics()
    assert m['gridwatch_recording_active{mode="continuous",stream="gate"}'] == 1
    assert m['gridwatch_stream_encoded_frames_total{stream="gate"}'] == 0  # remux only
    assert m['gridwatch_stream_decoded_frames_total{stream="gate"}'] == 0


async def test_range_requests_and_a_clip_across_a_segment_boundary(camera, gridwatch_factory, http):
    gw = gridwatch_factory(camera_cfg(camera, {"mode": "continuous"}))
    token = gw.token("dispatcher")
    segs = await wait_closed(http, gw, token, 2, timeout=30)
    url = gw.base + segs[0]["url"]
    async with http.get(url, headers=auth(token)) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "video/mp4"
        whole = await r.read()
        assert r.headers["Accept-Ranges"] == "bytes"
    async with http.get(url, headers={**auth(token), "Range": "bytes=1000-1999"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(whole)}"
        assert await r.read() == whole[1000:2000]
    async with http.get(url, headers={**auth(token), "Range": f"bytes={len(whole) - 500}-"}) as r:
        assert r.status == 206 and await r.read() == whole[-500:]

    boundary = segs[0]["end"]
    start, end = boundary - 1.6, boundary + 1.4
    async with http.get(gw.base + "/api/recordings/clip", headers=auth(token),
                        params={"camera": "gate", "from": start, "to": end}) as r:  # fmt: skip
        assert r.status == 200, await r.text()
        clip = gw.workdir / "clip.mp4"
        clip.write_bytes(await r.read())
    frames, seconds = decode_all(clip)
    assert abs(seconds - (end - start)) <= GOP_S + 0.1, seconds
    assert frames >= 2 * 25
    async with http.get(gw.base + "/api/recordings/clip", headers=auth(token),
                        params={"camera": "gate", "from": 1000, "to": 1010}) as r:  # fmt: skip
        assert r.status == 404
    assert not list((gw.workdir / "data" / "tmp").iterdir())  # exported clips do not pile up


async def test_sigkill_mid_segment_leaves_a_playable_segment(camera, gridwatch_factory, http):
    gw = gridwatch_factory(camera_cfg(camera, {"mode": "continuous"}, segment_s=60))
    token = gw.token("viewer")
    deadline = time.monotonic() + 20
    while not (segs := await segments(http, gw, token)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.5)
    await asyncio.sleep(5)
    os.kill(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait()
    frames, seconds = decode_all(gw.workdir / "data" / "recordings" / segs[0]["path"])
    assert seconds >= 3.0 and frames >= 3 * 25, (frames, seconds)

    gw.start()  # the restarted node repairs the index entry from the file
    token = gw.token("viewer")
    deadline = time.monotonic() + 20
    while True:
        repaired = [s for s in await segments(http, gw, token) if s["path"] == segs[0]["path"]]
        if repaired and repaired[0]["end"] is not None:
            break
        assert time.monotonic() < deadline, gw.logs()[-2000:]
        await asyncio.sleep(0.5)
    assert repaired[0]["end"] - repaired[0]["start"] >= 3.0
    assert "segment left open by a crash, repaired" in gw.logs()
