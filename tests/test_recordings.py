"""Recording a real RTSP camera: fragmented MP4 segments by remux, the index, range
playback, clip export, a crash mid-segment, retention, marks, access and paths."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from pathlib import Path

import av
import pytest
import redis
import redis.asyncio as aioredis
from yarl import URL

from gridwatch.recordings.index import SegmentIndex, move_old_keys
from gridwatch.recordings.segments import Segment

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


async def wait_closed(http, gw, token, n: int, timeout: float, camera="gate") -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        closed = [s for s in await segments(http, gw, token, camera=camera) if s["end"] is not None]
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
    for a, b in itertools.pairwise(segs):
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


async def test_events_mode_writes_only_around_a_mark(camera, gridwatch_factory, http):
    gw = gridwatch_factory(camera_cfg(camera, {"mode": "events"}, pre_s=2, post_s=2, segment_s=60))
    token = gw.token("dispatcher")
    await asyncio.sleep(5)  # the pre-roll buffer fills; nothing is written yet
    assert await segments(http, gw, token) == []
    at = time.time()
    async with http.post(gw.base + "/api/recordings/marks", headers=auth(token),
                         json={"camera": "gate"}) as r:  # fmt: skip
        assert r.status == 201
        at = (await r.json())["at"]
    (seg,) = await wait_closed(http, gw, token, 1, timeout=15)
    assert seg["kind"] == "event"
    # From the key frame at or before at - pre_s, to the first key frame after at + post_s.
    assert at - 2 - GOP_S - 0.2 <= seg["start"] <= at - 2 + 0.2
    assert at + 2 - 0.2 <= seg["end"] <= at + 2 + GOP_S + 0.5
    await asyncio.sleep(3)
    assert len(await segments(http, gw, token)) == 1  # and nothing after the post-roll
    async with http.post(gw.base + "/api/recordings/marks", headers=auth(gw.token("viewer")),
                         json={"camera": "gate"}) as r:  # fmt: skip
        assert r.status == 403
    async with http.post(gw.base + "/api/recordings/marks", headers=auth(token),
                         json={"camera": "nope"}) as r:  # fmt: skip
        assert r.status == 404


async def test_evidence_clip_outlives_retention_by_age(camera, redis_server, gridwatch_factory, http):
    retain_s = 8
    gw = gridwatch_factory({
        **camera_cfg(camera, {"mode": "continuous", "retain_days": retain_s / 86400},
                     pre_s=2, post_s=2),
        "redis": {"url": redis_server.url},
    })  # fmt: skip
    token = gw.token("dispatcher")
    await wait_closed(http, gw, token, 1, timeout=20)
    async with http.post(gw.base + "/api/tickets", headers=auth(token), json={
            "category": "illegal_parking", "location": {"lat": 31.2, "lon": 120.9},
            "camera": "gate", "source": "camera"}) as r:  # fmt: skip
        assert r.status == 201, await r.text()
        ticket = (await r.json())["id"]
    # What dispatch does when a violation opens a ticket (gw:record:marks, the contract).
    redis.Redis.from_url(redis_server.url).xadd(
        "gw:record:marks", {"camera": "gate", "at": time.time() - 1, "ticket": ticket,
                            "folder": "v-test"})  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        async with http.get(f"{gw.base}/api/tickets/{ticket}/evidence", headers=auth(token)) as r:
            listed = {e["name"]: e for e in (await r.json())["evidence"]}
        if "v-test/clip.mp4" in listed:
            break
        assert time.monotonic() < deadline, gw.logs()[-3000:]
        await asyncio.sleep(0.5)
    first = (await segments(http, gw, token))[0]
    # Past the retention the first segments go, oldest first; the clip stays.
    deadline = time.monotonic() + 30
    while any(s["path"] == first["path"] for s in await segments(http, gw, token)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.5)
    assert not (gw.workdir / "data" / "recordings" / first["path"]).exists()
    now = time.time()
    assert all(s["end"] is None or s["end"] >= now - retain_s - 3 for s in await segments(http, gw, token))
    async with http.get(gw.base + listed["v-test/clip.mp4"]["url"], headers=auth(token)) as r:
        assert r.status == 200
        clip = gw.workdir / "evidence-clip.mp4"
        clip.write_bytes(await r.read())
    frames, seconds = decode_all(clip)
    assert abs(seconds - 4.0) <= GOP_S + 0.1 and frames >= 3 * 25
    assert "segment deleted" in gw.logs()


async def test_quota_deletes_oldest_first_and_disk_full_stops_with_an_alarm(
    camera, gridwatch_factory, http
):
    quota = 400_000  # bytes: about three 3 s segments of this camera
    gw = gridwatch_factory(camera_cfg(camera, {"mode": "continuous", "max_gb": quota / 1024**3}))
    token = gw.token("viewer")
    first = (await wait_closed(http, gw, token, 1, timeout=20))[0]
    deadline = time.monotonic() + 40
    while any(s["path"] == first["path"] for s in await segments(http, gw, token)):
        assert time.monotonic() < deadline, gw.logs()[-2000:]
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.5)  # one more check after the last close
    closed = [s for s in await segments(http, gw, token) if s["end"] is not None]
    newest = max(s["size"] for s in closed)
    assert sum(s["size"] for s in closed) <= quota + newest
    assert '"why": "camera quota"' in gw.logs()

    full = gridwatch_factory(camera_cfg(camera, {"mode": "continuous"}, min_free_mb=1e12), name="full")
    # An alert on every wall until acknowledged: a dispatcher signing in any time later sees it.
    deadline = time.monotonic() + 10
    alerts: list[dict] = []
    while not alerts:
        assert time.monotonic() < deadline, "no disk-full alert"
        async with http.get(full.base + "/api/alerts", headers=auth(full.token("dispatcher"))) as r:
            alerts = [a for a in (await r.json())["alerts"] if a["kind"] == "disk_full"]
        await asyncio.sleep(0.2)
    assert alerts[0]["level"] == "critical" and "recording stopped" in alerts[0]["message"]
    assert full.metrics()["gridwatch_recording_disk_full"] == 1
    await asyncio.sleep(4)
    assert await segments(http, full, full.token("viewer")) == []
    assert "disk full: recording stopped" in full.logs()
    async with http.get(full.base + "/healthz") as r:
        assert r.status == 200


async def test_recordings_need_a_token_a_role_and_a_path_inside(
    camera, gridwatch_factory, http, users
):
    users = [dict(u, watch=["gate"]) if u["username"] == "officer2" else u for u in users]
    gw = gridwatch_factory({**camera_cfg(camera, {"mode": "continuous"}), "users": users})
    segs = await wait_closed(http, gw, gw.token("viewer"), 1, timeout=20)
    url = gw.base + segs[0]["url"]
    async with http.get(url) as r:
        assert r.status == 401
    async with http.get(url, headers=auth(gw.token("officer"))) as r:
        assert r.status == 403  # his config gives him no cameras
    async with http.get(url, headers=auth(gw.token("officer2"))) as r:
        assert r.status == 200  # watch: [gate]
    async with http.get(gw.base + "/api/recordings", headers=auth(gw.token("officer")),
                        params={"camera": "gate", "from": 0, "to": time.time()}) as r:  # fmt: skip
        assert r.status == 403
    data = gw.workdir / "data"
    (data / "recordings" / "gate" / "evil.mp4").symlink_to(data.parent / "config.yaml")
    (data / "recordings" / "gate" / "other.mp4").symlink_to(data / "recordings" / segs[0]["path"])
    token = gw.token("admin")
    for raw in ["/recordings/../config.yaml", "/recordings/gate/../../config.yaml",
                "/recordings/%2e%2e/config.yaml", "/recordings/gate/%2e%2e%2f%2e%2e%2fconfig.yaml",
                "/recordings//etc/passwd", "/recordings/%2fetc%2fpasswd",
                "/recordings/gate/evil.mp4", "/recordings/gate/nope.mp4",
                "/recordings/gate%5c..%5c..%5cconfig.yaml"]:  # fmt: skip
        async with http.get(URL(gw.base + raw, encoded=True), headers=auth(token)) as r:
            assert 400 <= r.status < 500, raw
            assert r.status != 200
            assert "password_hash" not in await r.text()
    # A link inside the folder is served as what it points to, under that camera's rules.
    async with http.get(gw.base + "/recordings/gate/other.mp4", headers=auth(token)) as r:
        assert r.status == 200


async def test_a_published_drone_stream_is_recorded(gridwatch_factory, http):
    from support.whip_client import publish

    gw = gridwatch_factory({"recordings": {"segment_s": 2, "min_free_mb": 0, "check_s": 1,
                                           "streams": {"drone-*": {"mode": "continuous"}}},
                            "media": {"lease_s": 1.5}})  # fmt: skip
    token = gw.token("admin")
    pc, _ = await publish(http, gw.base, "drone-5", token)
    try:
        deadline = time.monotonic() + 30
        while not [s for s in await segments(http, gw, token, camera="drone-5") if s["end"]]:
            assert time.monotonic() < deadline, gw.logs()[-2000:]
            await asyncio.sleep(0.5)
    finally:
        await pc.close()
    seg = next(s for s in await segments(http, gw, token, camera="drone-5") if s["end"])
    frames, _ = decode_all(gw.workdir / "data" / "recordings" / seg["path"])
    assert frames >= 20


async def test_events_segments_never_overlap(camera, gridwatch_factory, http):
    gw = gridwatch_factory(camera_cfg(camera, {"mode": "events"}, pre_s=3, post_s=1, segment_s=60))
    token = gw.token("dispatcher")
    await asyncio.sleep(4)
    for _ in range(2):  # the second mark's pre-roll reaches back into the first event
        async with http.post(gw.base + "/api/recordings/marks", headers=auth(token),
                             json={"camera": "gate"}) as r:  # fmt: skip
            assert r.status == 201
        await asyncio.sleep(3)
    first, second = await wait_closed(http, gw, token, 2, timeout=15)
    assert second["start"] >= first["end"] - 0.1


async def test_a_camera_named_like_a_node_wide_key_has_its_own_index_and_old_keys_move(redis_server):
    r = aioredis.Redis.from_url(redis_server.url)
    try:
        index = SegmentIndex(r)
        # An index written by a version that kept a camera's keys at gw:rec:{camera}.
        old = Segment("gate", "gate/2026/11/30/10-00-00.mp4", 1000.0, 1004.0, 10, "continuous")
        await r.zadd("gw:rec:gate", {old.path: old.start})
        await r.hset("gw:rec:gate:meta", old.path, json.dumps(old.as_json()))
        await r.sadd("gw:rec:cameras", "gate")
        # A node of the new version indexed one more segment meanwhile.
        new = Segment("gate", "gate/2026/11/30/10-00-04.mp4", 1004.0, 1008.0, 10, "continuous")
        await index.put(new)
        assert await move_old_keys(r) == 2
        assert [s.path for s in await index.between("gate", 900, 1100)] == [old.path, new.path]
        assert not await r.exists("gw:rec:gate", "gw:rec:gate:meta")
        # Cameras called "cameras" and "evidence" no longer land on the node-wide keys.
        await r.zadd("gw:rec:evidence", {"evidence/t1/clip.mp4": 5.0})
        for camera in ("cameras", "evidence"):
            await index.put(Segment(camera, f"{camera}/a.mp4", 1000.0, 1004.0, 10, "continuous"))
            assert [s.path for s in await index.between(camera, 900, 1100)] == [f"{camera}/a.mp4"]
        assert await r.type("gw:rec:cameras") == b"set"
        assert await r.zrange("gw:rec:evidence", 0, -1) == [b"evidence/t1/clip.mp4"]
    finally:
        await r.aclose()
