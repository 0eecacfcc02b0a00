"""Real footage (issue 17): the shipped demo model finds the real parked van and the real
walkers of vtest.avi, in frames it never trained on, and through the whole system a
no-parking zone drawn around the real van opens exactly one ticket while a zone where
only people walk opens none.

Frames from real.TRAIN_FRAMES (600) on are held out of training; their street and its
parked vehicles are the same as in training (a fixed camera), their walkers are new.
"""

from __future__ import annotations

import json
import time

import pytest

from gridwatch.detectors import real
from gridwatch.detectors.rules import iou
from gridwatch.detectors.yolo import YoloDetector
from support.procs import DEMO_WEIGHTS
from support.scenario_run import ScenarioRun

VAN = real.STREET_VEHICLES[0][1]  # (652, 45, 722, 98) in 768x576
HELD_OUT = range(real.TRAIN_FRAMES, 795, 13)  # 15 frames over the last 19.5 s


def detect(model: YoloDetector, i: int):
    return model.detect(real.vtest_frame(i))


@pytest.mark.parametrize("imgsz", [320, 640])  # the demo's and tests' setting; the default
def test_the_real_parked_van_is_found_in_every_held_out_frame(imgsz):
    model = YoloDetector(DEMO_WEIGHTS, imgsz=imgsz, conf=0.25)
    missed = [i for i in HELD_OUT
              if not any(d.label == "vehicle" and iou(d.box, VAN) >= 0.5 for d in detect(model, i))]  # fmt: skip
    assert missed == [], f"the van was not found in frames {missed}"


# Two in three: the model found 14 of 15 when shipped (the one missed is the head and
# shoulders beside the van); the first demo model, trained with the walkers as
# background, found 2 (at 640).
RECALL = 2 / 3


def test_most_real_walkers_are_found_and_none_is_called_a_vehicle():
    """Recall on the hand-labelled held-out frames (real.VAL_FRAMES: 15 walkers, 25-145 px
    tall, one of them a head and shoulders beside the van) at the worker's 320 px, at
    least RECALL; and no walker is boxed as a vehicle or a stall."""
    model = YoloDetector(DEMO_WEIGHTS, imgsz=320, conf=0.25)
    found = total = 0
    for i, labels in real.VAL_FRAMES.items():
        detections = detect(model, i)
        people = [b for c, b in labels if c == real.PERSON]
        total += len(people)
        found += sum(any(d.label == "person" and iou(d.box, b) >= 0.5 for d in detections)
                     for b in people)  # fmt: skip
        wrong = [d for d in detections
                 if d.label != "person" and any(iou(d.box, b) >= 0.3 for b in people)]  # fmt: skip
        assert wrong == [], f"frame {i}: {wrong}"
    assert total == 15
    assert found / total >= RECALL, f"walkers found {found}/{total}"


# End to end: the held-out part of vtest.avi as a camera at 640x480 (the zones' pixels).
VAN_ZONE = [[520, 20], [608, 20], [608, 100], [520, 100]]  # the van (543, 38, 602, 82) only
WALK_ZONE = [[80, 125], [515, 125], [515, 435], [80, 435]]  # the crossing: walkers only
CAMERAS = {
    "van": ("vtest-held-out", [{"name": "np-van", "kind": "no_parking", "polygon": VAN_ZONE, "frame": [640, 480], "dwell_s": 6}]),
    "walk": ("vtest-held-out", [{"name": "np-walk", "kind": "no_parking", "polygon": WALK_ZONE, "frame": [640, 480], "dwell_s": 6}]),
}  # fmt: skip
CLIP_S = (795 - real.TRAIN_FRAMES) / 10  # the clip loops


@pytest.fixture(scope="module")
def run(tmp_path_factory, users):
    videos = tmp_path_factory.mktemp("real-videos")
    real.render_clip(videos / "vtest-held-out.mp4")  # ScenarioRun plays it by that name
    with ScenarioRun(tmp_path_factory.mktemp("real"), videos, CAMERAS, users) as scenario:
        yield scenario


def worker_stats(run: ScenarioRun) -> dict:
    (key,) = run.r.keys("gw:worker:*")
    return json.loads(run.r.get(key))


def test_the_real_van_in_a_no_parking_zone_opens_one_ticket_and_walkers_none(run):
    ticket = run.wait_ticket("van", until=60)  # dwell 6 s after the model first sees it
    d = ticket["detection"]
    assert ticket["category"] == "illegal_parking" and d["label"] == "vehicle"
    assert d["zone"] == "np-van" and iou(tuple(d["box"]), real.to_clip(VAN)) >= 0.5, d
    # Then watch both cameras through more than one whole loop of the clip (every walker
    # crosses the walk zone) before counting: frames sampled at 2 fps, with a deadline.
    start = {c: s["frames"] for c, s in worker_stats(run).items()}
    deadline = time.monotonic() + CLIP_S * 3
    while not all(s["frames"] - start[c] >= 2 * (CLIP_S + 2) for c, s in worker_stats(run).items()):
        assert time.monotonic() < deadline, worker_stats(run)
        time.sleep(0.5)
    tickets = run.tickets()
    assert len(tickets["van"]) == 1, tickets["van"]
    assert tickets["walk"] == [], [t["detection"] for t in tickets["walk"]]
    assert "Traceback" not in run.worker_logs()
