"""Detector workers share the cameras through leases, and take over a dead one's."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import redis

from support.procs import start_detector, stop

ZONE = {
    "name": "np-1",
    "kind": "no_parking",
    "polygon": [[0, 120], [320, 120], [320, 240], [0, 240]],
    "frame": [320, 240],
}


def start_worker(tmp_path, name: str, redis_url: str) -> subprocess.Popen:
    # A model built from its .yaml (random weights): this test is about sharing the cameras.
    return start_detector(tmp_path, name, {"redis": {"url": redis_url},
                          "detectors": {"weights": "yolov8n.yaml", "imgsz": 160, "lease_s": 2}})  # fmt: skip


def holders(r: redis.Redis, cameras: list[str]) -> dict[str, str | None]:
    return {c: (v.decode() if (v := r.get(f"gw:lease:detect:{c}")) else None) for c in cameras}


def frames_seen(r: redis.Redis, worker: subprocess.Popen) -> dict[str, int]:
    for key in r.scan_iter("gw:worker:*"):
        if key.decode().endswith(f"-{worker.pid}"):
            return {c: s["frames"] for c, s in json.loads(r.get(key)).items()}
    return {}


async def test_four_cameras_two_workers_one_killed(tmp_path, redis_server, gridwatch_factory):
    cameras = [f"cam{i}" for i in range(4)]
    gridwatch_factory({
        "redis": {"url": redis_server.url},
        "cameras": [{"id": c, "source": "lavfi:testsrc2=size=320x240:rate=5", "zones": [ZONE], "detect": {"fps": 2}}
                    for c in cameras],
    })  # fmt: skip
    r = redis.Redis.from_url(redis_server.url)
    a = start_worker(tmp_path, "a", redis_server.url)
    b = start_worker(tmp_path, "b", redis_server.url)
    try:
        async with asyncio.timeout(40):  # torch takes a few seconds to load
            while True:
                owners = holders(r, cameras)
                split = sorted(
                    sum(1 for h in owners.values() if h and h.endswith(f"-{w.pid}")) for w in (a, b)
                )
                if split == [2, 2]:
                    break
                await asyncio.sleep(0.3)
        async with asyncio.timeout(20):  # both run the model on their own cameras
            while not all(
                len(frames_seen(r, w)) == 2 and min(frames_seen(r, w).values()) > 0 for w in (a, b)
            ):
                await asyncio.sleep(0.3)

        a.kill()
        a.wait()
        killed_at = time.monotonic()
        async with asyncio.timeout(15):
            while not all(h and h.endswith(f"-{b.pid}") for h in holders(r, cameras).values()):
                await asyncio.sleep(0.2)
        took = time.monotonic() - killed_at
        assert took < 2 + 2, f"takeover took {took:.1f} s (lease 2 s)"
        async with asyncio.timeout(20):
            while not (len(seen := frames_seen(r, b)) == 4 and min(seen.values()) > 0):
                await asyncio.sleep(0.3)
    finally:
        stop(a)
        stop(b)
        r.close()
    assert "Traceback" not in (tmp_path / "b.log").read_text()
