"""Ultralytics YOLO with its ByteTrack tracker, on weights from a local path.

Ultralytics looks for the internet by itself (fonts, assets, weights); YOLO_OFFLINE
tells it not to, so that an air-gapped centre never waits on a DNS timeout. One
tracker per camera: ByteTrack's state belongs to one scene.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gridwatch.detectors.rules import Detection


class YoloTracker:
    def __init__(
        self, weights: Path | str, imgsz: int = 640, conf: float = 0.25, device: str | None = None
    ):
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO  # heavy (torch): only where detection runs

        path = str(weights)
        if not path.endswith(".yaml") and not Path(path).is_file():
            raise FileNotFoundError(
                f"detect.weights: no file {path} (weights are never downloaded)"
            )
        self.model = YOLO(path)
        self.imgsz = imgsz
        self.conf = conf
        self.device = device

    @property
    def names(self) -> dict[int, str]:
        return dict(self.model.names)

    def track(self, bgr: np.ndarray) -> list[Detection]:
        result = self.model.track(
            bgr, persist=True, imgsz=self.imgsz, conf=self.conf, device=self.device,
            tracker="bytetrack.yaml", verbose=False,
        )[0]  # fmt: skip
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        ids = boxes.id.int().tolist() if boxes.id is not None else [None] * len(boxes)
        names = result.names
        return [
            Detection(tid, names[int(c)], tuple(float(v) for v in xyxy), float(p))
            for tid, c, xyxy, p in zip(
                ids, boxes.cls.tolist(), boxes.xyxy.tolist(), boxes.conf.tolist(), strict=True
            )
        ]
