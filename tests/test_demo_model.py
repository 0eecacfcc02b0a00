"""The shipped demo model finds vehicles, people and stalls in scenes it never saw."""

from __future__ import annotations

import random
from pathlib import Path

from gridwatch.detectors.rules import iou
from gridwatch.detectors.scenes import CLASSES, TRAIN_FRAMES, random_scene, street_frames
from gridwatch.detectors.yolo import YoloDetector

MODEL = Path(__file__).resolve().parents[1] / "detectors" / "models" / "gridwatch-demo.pt"


def test_demo_model_recall_on_unseen_backgrounds():
    model = YoloDetector(MODEL, imgsz=320, conf=0.25)
    assert [model.names[i] for i in range(3)] == CLASSES
    rng = random.Random(20261123)  # not the training seed
    unseen = street_frames()[TRAIN_FRAMES:]
    found = total = 0
    for _ in range(25):
        img, labels = random_scene(rng, unseen)
        detections = model.detect(img)
        for cls, box in labels:
            total += 1
            found += any(d.label == CLASSES[cls] and iou(d.box, box) >= 0.5 for d in detections)
    assert total > 40
    assert found / total >= 0.75, f"recall {found}/{total}"
