"""Ultralytics YOLO, on weights from a local path: the objects in one frame.

Ultralytics looks for the internet by itself (fonts, assets, weights); YOLO_OFFLINE
tells it not to, so that an air-gapped centre never waits on a DNS timeout. One
detector per camera.

No tracker: the model runs only on the frames the motion gate picks, seconds apart,
where a tracker's motion model has nothing to go on, and ByteTrack reports a new object
only once a second frame confirms it, which the gate may never send. The zone rules
follow objects at rest themselves (`rules.same_place`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gridwatch.detectors.provenance import model_facts
from gridwatch.detectors.rules import Detection


class YoloDetector:
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
        # The weights as loaded, for the evidence: hashed as the model reads them, so a
        # file replaced on disk later does not change what the violations say ran.
        self.facts = model_facts(path)
        self.model = YOLO(path)
        self.imgsz = imgsz
        self.conf = conf
        self.device = device

    @property
    def names(self) -> dict[int, str]:
        return dict(self.model.names)

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        """The objects in one BGR frame (H x W x 3 uint8): boxes in its pixels, no track ids."""
        result = self.model.predict(
            bgr, imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False
        )[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        names = result.names
        return [
            Detection(None, names[int(c)], tuple(float(v) for v in xyxy), float(p))
            for c, xyxy, p in zip(
                boxes.cls.tolist(), boxes.xyxy.tolist(), boxes.conf.tolist(), strict=True
            )
        ]
