"""End to end through a real RTSP server, `gridwatch serve` and `gridwatch detect` with the
shipped demo model: what parks too long opens exactly one ticket with its pictures, and
what only passes, stops briefly, or parks outside the zone's hours opens none.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import cv2
import numpy as np
import pytest

from gridwatch.detectors.scenarios import PAVEMENT, ROAD
from support.scenario_run import ScenarioRun


def zone(kind: str, dwell_s: float = 6, **extra) -> dict:
    polygon = ROAD if kind == "no_parking" else PAVEMENT
    return {"name": "np-1" if kind == "no_parking" else "sw-1", "kind": kind, "polygon": polygon,
            "dwell_s": dwell_s, **extra}  # fmt: skip


def hours_not_now() -> str:
    later = datetime.now() + timedelta(hours=2)
    return f"{later:%H}:00-{(later + timedelta(hours=1)):%H}:00"


CAMERAS = {
    "park": ("park", [zone("no_parking")]),
    "pass": ("pass", [zone("no_parking")]),
    "short": ("short-stop", [zone("no_parking")]),
    "occluded": ("occluded", [zone("no_parking")]),
    "after-hours": ("park", [zone("no_parking", hours=hours_not_now())]),
    "stall": ("stall", [zone("no_stall"), zone("no_parking")]),
    "walkers": ("walkers", [zone("no_stall")]),
}
WATCH_S = 32  # every scenario has played its part by then


@pytest.fixture(scope="module")
def run(tmp_path_factory, users, scenario_videos):
    with ScenarioRun(
        tmp_path_factory.mktemp("scenarios"), scenario_videos, CAMERAS, users
    ) as scenario:
        scenario.at(WATCH_S)
        scenario.tickets_at_end = scenario.tickets()
        yield scenario


def jpeg(raw: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def test_a_vehicle_parked_past_its_dwell_opens_one_ticket_with_pictures(run):
    tickets = run.tickets_at_end["park"]
    assert len(tickets) == 1, tickets
    t = tickets[0]
    assert t["category"] == "illegal_parking" and t["source"] == "camera"
    assert t["detection"]["zone"] == "np-1" and t["detection"]["label"] == "vehicle"
    x1, y1, x2, y2 = t["detection"]["box"]
    assert 200 < x1 < 290 and 450 < x2 < 540 and 320 < y1 < 350 and 430 < y2 < 460  # the truck
    names = {e.rsplit("/", 1)[-1] for e in t["evidence"]}
    assert names == {"first.jpg", "confirmed.jpg", "crop.jpg"}
    listed = run.api(f"/api/tickets/{t['id']}/evidence")["evidence"]
    for item in listed:
        img = jpeg(run.api(item["url"]))
        if item["name"].endswith("confirmed.jpg"):
            assert img.shape[:2] == (480, 640)
            # The zone is drawn (amber border at the zone's top edge) and the box (red).
            assert img[330, 5:635, 2].mean() > 150 and img[330, 5:635, 0].mean() < 100
            assert img[round(y1), round(x1) + 5 : round(x2) - 5, 2].mean() > 180
        if item["name"].endswith("crop.jpg"):
            assert img.shape[1] < 400 and img.shape[0] < 200  # the truck alone
    # The dwell was measured: it was confirmed at least dwell_s after it stopped.
    assert "for " in t["description"] and int(t["description"].split("for ")[1].split()[0]) >= 6


def test_passing_or_a_short_stop_opens_nothing(run):
    assert run.tickets_at_end["pass"] == []
    assert run.tickets_at_end["short"] == []


def test_a_parked_vehicle_hidden_for_seconds_mid_dwell_is_still_one_ticket(run):
    assert len(run.tickets_at_end["occluded"]) == 1


def test_outside_the_zones_active_hours_nothing_opens(run):
    assert run.tickets_at_end["after-hours"] == []


def test_a_street_stall_opens_one_ticket_and_walkers_none(run):
    stall = run.tickets_at_end["stall"]
    assert len(stall) == 1 and stall[0]["category"] == "street_stall"
    assert stall[0]["detection"]["zone"] == "sw-1"
    assert run.tickets_at_end["walkers"] == []


def test_every_camera_was_watched_gated_and_the_stream_drained(run):
    (key,) = run.r.keys("gw:worker:*")
    stats = json.loads(run.r.get(key))
    assert set(stats) == set(CAMERAS)
    for camera, s in stats.items():
        # Sampled at 2 fps for ~30 s: at least half of that on a loaded machine; and the
        # worker took most of them (one that falls behind takes the newest, skipping some).
        sampled = run.sampled(camera)
        assert sampled >= WATCH_S and s["frames"] >= sampled * 0.6, (camera, sampled, s)
        # Motion gating: a still street is looked at only every recheck_s.
        assert s["inferences"] < s["frames"], (camera, s)
    assert sum(s["violations"] for s in stats.values()) == 3
    metrics = run.gw.metrics()  # the worker's counts on the server's /metrics
    assert metrics["gridwatch_detect_workers"] == 1
    assert (
        sum(v for k, v in metrics.items() if k.startswith("gridwatch_detect_violations_total")) == 3
    )
    assert metrics['gridwatch_detect_queue{stream="gw:violations"}'] == 0
    assert run.r.xlen("gw:violations") == 0  # acknowledged and deleted: they carry pictures
    assert run.r.xlen("gw:violations:dead") == 0
    assert "Traceback" not in run.worker_logs()
