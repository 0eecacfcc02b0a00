"""Zones given in pixels of a 1920x1080 camera whose detector samples a 640x360 sub-stream
fire where they were drawn (issue 18, must-show 4): through a real RTSP server, `gridwatch
serve` and `gridwatch detect`. And a worker whose sampled frames change size redraws its
zones in the new pixels and does not carry on what it followed in the old ones.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis.asyncio as aioredis
from shapely.geometry import Polygon, box

from gridwatch.contracts.detections import state_key
from gridwatch.contracts.frames import frames_key
from gridwatch.detectors.config import DetectorsConfig
from gridwatch.detectors.scenarios import ROAD, SCENARIOS, frames, rendered
from gridwatch.detectors.worker import VIOLATIONS, CameraWatch, yolo_factory
from gridwatch.media.config import Camera
from support.procs import DEMO_WEIGHTS
from support.scenario_run import ScenarioRun

MAIN, SUB = (1920, 1080), (640, 360)
SCALE = MAIN[0] / SUB[0]
# The park scenario (640x480: a vehicle stops in the road at 5 s and stays) cut to 16:9,
# rows 120 to 480 (the road and the pavement behind it), is the camera's sub-stream; the
# same three times larger is its main stream.
CROP = "crop=640:360:0:120"
# Drawn on the main stream: the road where the vehicle stops (its box is about (240, 215,
# 500, 325) in the sub-stream) and, across it, pavement where nothing parks. Taken as
# pixels of the sub-stream instead, the first would lie below the picture and the second
# would take in the road and the vehicle.
PARKED = [[600, 540], [1700, 540], [1700, 1080], [600, 1080]]
NOWHERE = [[0, 150], [1920, 150], [1920, 450], [0, 450]]


def rendition(videos: Path, size: tuple[int, int]) -> Path:
    """The cut park scenario at `size` (its first 30 s, one key frame a second), made once."""
    path = videos / f"park-{size[0]}x{size[1]}.mp4"
    if not path.is_file():
        subprocess.run(
            ["ffmpeg", "-y", "-loglevel", "error", "-i", str(rendered("park", videos)), "-t", "30",
             "-vf", f"{CROP},scale={size[0]}:{size[1]}", "-c:v", "libx264", "-preset", "ultrafast",
             "-g", "10", "-bf", "0", "-pix_fmt", "yuv420p", str(path.with_suffix(".part.mp4"))],
            check=True, timeout=300,
        )  # fmt: skip
        path.with_suffix(".part.mp4").replace(path)
    return path


def test_zones_drawn_on_the_main_stream_fire_where_drawn_on_the_sub_stream(
    tmp_path, users, scenario_videos
):
    streams = {"source": rendition(scenario_videos, MAIN),
               "detect_source": rendition(scenario_videos, SUB)}  # fmt: skip
    zones = [
        {"name": "road", "kind": "no_parking", "polygon": PARKED, "frame": list(MAIN), "dwell_s": 6},
        {"name": "nowhere", "kind": "no_parking", "polygon": NOWHERE, "frame": list(MAIN), "dwell_s": 6},
    ]  # fmt: skip
    with ScenarioRun(tmp_path, scenario_videos, {"wide": (streams, zones)}, users) as run:
        ticket = run.wait_ticket("wide", until=30)
        run.at(24)  # the vehicle has stood in both zones' dwell twice over by now
        tickets = run.tickets()["wide"]
        assert [t["id"] for t in tickets] == [ticket["id"]], tickets
        assert ticket["detection"]["zone"] == "road"
        # Its box (pixels of the sub-stream), scaled to the main stream, lies in the zone.
        x1, y1, x2, y2 = (v * SCALE for v in ticket["detection"]["box"])
        assert box(x1, y1, x2, y2).within(Polygon(PARKED)), ticket["detection"]
        confirmed = next(e for e in run.api(f"/api/tickets/{ticket['id']}/evidence")["evidence"]
                         if e["name"].endswith("confirmed.jpg"))  # fmt: skip
        img = cv2.imdecode(np.frombuffer(run.api(confirmed["url"]), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (SUB[1], SUB[0])
        # The zone drawn where it lies in the sub-stream: its top edge, amber, at y 180.
        top = img[180, 210:560]
        assert top[:, 2].mean() > 150 and top[:, 0].mean() < 100, top.mean(axis=0)
        state = json.loads(run.r.get(state_key("wide")))
        assert state["frame"] == list(SUB)  # what it follows is in the sampled frames' pixels


async def feed(client: aioredis.Redis, watch: CameraWatch, img: np.ndarray, ts: float) -> None:
    """Put a frame on the camera's stream as the sampler does, until the worker takes it."""
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    height, width = img.shape[:2]
    seen, deadline = watch.frames, time.monotonic() + 60  # the first waits for the model
    while watch.frames == seen:
        assert time.monotonic() < deadline, "the worker took no frame"
        await client.xadd(frames_key(watch.camera.id),
                          {"ts": ts, "jpeg": jpeg, "width": width, "height": height}, maxlen=4)  # fmt: skip
        for _ in range(50):
            if watch.frames != seen:
                break
            await asyncio.sleep(0.02)


async def test_a_worker_redraws_its_zones_when_the_sampled_frames_change_size(
    redis_server, caplog
):
    client = aioredis.from_url(redis_server.url)
    camera = Camera(id="gate", source="lavfi:testsrc",
                    zones=[{"name": "np-1", "kind": "no_parking", "polygon": ROAD, "dwell_s": 4}])  # fmt: skip
    cfg = DetectorsConfig(weights=DEMO_WEIGHTS, imgsz=320, plates=False)
    watch = CameraWatch(client, camera, yolo_factory(cfg), cfg)
    task = asyncio.create_task(watch.run())
    park = list(itertools.islice(frames(SCENARIOS["park"]), 0, 14 * 10, 5))  # 2 fps to 14 s
    start = time.time()
    caplog.set_level(logging.INFO, "gridwatch.detect")
    try:
        # Half size: the road is y 165 to 240. The vehicle stops at 5 s.
        for i, img in enumerate(park):
            await feed(client, watch, cv2.resize(img, (320, 240)), start + i / 2)
        assert json.loads(await client.get(state_key("gate")))["frame"] == [320, 240]
        # The camera reconfigured: full size, the road y 330 to 480.
        for i, img in enumerate(park):
            await feed(client, watch, img, start + 20 + i / 2)
            if i == 1:  # the first is done: nothing followed at half size is carried on
                state = json.loads(await client.get(state_key("gate")))
                assert (state["frame"], state["incidents"], state["cooling"]) == ([640, 480], [], []), state
        assert watch.zones["np-1"] == [(0, 330), (640, 330), (640, 480), (0, 480)]
        assert "the sampled frames changed size: zones redrawn in their pixels" in caplog.text
        # The parked vehicle was found in each size's own pixels (its bottom at y 445).
        events = [json.loads(f[b"violation"]) for _, f in await client.xrange(VIOLATIONS)]
        assert len(events) == 2, events
        assert 210 < events[0]["box"][3] < 235 and 420 < events[1]["box"][3] < 470, events
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()
