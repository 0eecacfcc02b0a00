"""The frame sampler: detecting cameras decoded once, at the detection rate, into Redis."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import redis

from support.procs import GridwatchServer, RedisServer, settled

ZONE = {
    "name": "np-1",
    "kind": "no_parking",
    "polygon": [[0, 200], [640, 200], [640, 360], [0, 360]],
    "frame": [640, 360],
}


def frames(r: redis.Redis, camera: str) -> list[tuple[bytes, dict]]:
    return r.xrange(f"gw:frames:{camera}")


async def distinct_frames(r: redis.Redis, camera: str, seconds: float) -> list[dict]:
    seen: dict[bytes, dict] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for entry_id, fields in frames(r, camera):
            seen.setdefault(entry_id, fields)
        await asyncio.sleep(0.05)
    return list(seen.values())


def decode(fields: dict) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(fields[b"jpeg"], np.uint8), cv2.IMREAD_COLOR)


async def test_keyframes_only_at_one_fps_without_viewers(
    rtsp_factory, redis_server, gridwatch_factory
):
    rtsp = rtsp_factory({"/cam": "testsrc:640x360@25:800"})  # a key frame every second
    gw = gridwatch_factory({
        "redis": {"url": redis_server.url},
        "cameras": [{"id": "gate", "source": rtsp.url("/cam"), "zones": [ZONE], "detect": {"fps": 1}}],
    })  # fmt: skip
    r = redis.Redis.from_url(redis_server.url)
    got = await distinct_frames(r, "gate", 6.0)
    assert 3 <= len(got) <= 8, len(got)
    assert len(frames(r, "gate")) <= 4  # capped: newest wins
    img = decode(got[-1])
    assert img.shape == (360, 640, 3) and abs(float(got[-1][b"ts"]) - time.time()) < 3
    m = gw.metrics()
    decoded = m['gridwatch_stream_sampler_decodes_total{stream="gate"}']
    packets = m['gridwatch_stream_packets_total{stream="gate"}']
    assert packets > 100 and decoded <= packets / 10, (decoded, packets)  # key frames only
    assert (
        m['gridwatch_stream_viewers{stream="gate"}'] == 0
        and m['gridwatch_stream_online{stream="gate"}'] == 1
    )
    r.close()


async def test_sub_stream_at_five_fps_decodes_every_frame(
    rtsp_factory, redis_server, gridwatch_factory
):
    rtsp = rtsp_factory({"/main": "testsrc:640x360@25:800", "/sub": "testsrc:320x180@25:300"})
    gw = gridwatch_factory({
        "redis": {"url": redis_server.url},
        "cameras": [{"id": "gate", "source": rtsp.url("/main"), "detect_source": rtsp.url("/sub"),
                     "zones": [ZONE], "detect": {"fps": 5}}],
    })  # fmt: skip
    r = redis.Redis.from_url(redis_server.url)
    await distinct_frames(r, "gate", 2.0)  # warm up
    got = await distinct_frames(r, "gate", 4.0)
    assert 14 <= len(got) <= 26, len(got)  # about 5 a second
    assert decode(got[-1]).shape == (180, 320, 3)  # from the sub-stream
    m = gw.metrics()
    assert m['gridwatch_stream_sampler_decodes_total{stream="gate@detect"}'] >= 80  # every frame
    assert m.get('gridwatch_stream_online{stream="gate"}', 0) == 0  # the main stream is not pulled
    r.close()


async def test_a_dead_nodes_cameras_are_sampled_by_another(rtsp_factory, tmp_path, users):
    store = RedisServer(tmp_path / "redis").start()
    rtsp = rtsp_factory({"/cam": "testsrc:640x360@25:800"})
    cfg = {
        "users": users,
        "redis": {"url": store.url},
        "media": {"lease_s": 2},
        "cameras": [
            {"id": "gate", "source": rtsp.url("/cam"), "zones": [ZONE], "detect": {"fps": 1}}
        ],
    }
    a = GridwatchServer(tmp_path / "a", cfg).start()
    b = GridwatchServer(tmp_path / "b", cfg).start()
    r = redis.Redis.from_url(store.url)
    try:
        await settled([a, b])
        async with asyncio.timeout(10):  # the placed owner holds the lease
            while not (r.get("gw:lease:media:gate") or b"").decode().endswith(
                f"-{(a if a.metrics()['gridwatch_placement_cameras'] else b).port}"
            ):
                await asyncio.sleep(0.1)
        holder = r.get("gw:lease:media:gate").decode()
        # Leases are held by node name: cluster.node, by default {hostname}-{port}.
        first, second = (a, b) if holder.endswith(f"-{a.port}") else (b, a)
        assert holder.endswith(f"-{first.port}")
        # Only one samples (the other, which held the camera before both were up, may
        # still relay it for a while: media.idle_grace_s after its sampler let go).
        decodes = 'gridwatch_stream_sampler_decodes_total{stream="gate"}'
        before = second.metrics().get(decodes, 0)
        assert len(await distinct_frames(r, "gate", 3.0)) >= 2
        assert second.metrics().get(decodes, 0) == before
        first.proc.kill()
        first.proc.wait()
        t0 = time.monotonic()
        async with asyncio.timeout(10):
            while (
                not (r.get("gw:lease:media:gate") or b"").decode().endswith(f"-{second.port}")
            ):
                await asyncio.sleep(0.1)
        assert time.monotonic() - t0 < 2 + 2  # the lease time, and one renewal cycle
        assert len(await distinct_frames(r, "gate", 4.0)) >= 2
    finally:
        a.stop()
        b.stop()
        r.close()
        store.stop()
