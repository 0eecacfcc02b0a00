"""Motion gating, as Frigate does: no inference on a frame where nothing moved.

A small blurred grey copy of each frame is compared with a running average of the
scene; the share of pixels that changed decides. Parked vehicles do not move, so the
worker keeps their last detections and re-checks with the model every few seconds.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDTH = 160


class MotionGate:
    def __init__(self, threshold: float = 0.002, pixel_delta: int = 25, alpha: float = 0.2):
        self.threshold = threshold  # share of the frame that must change
        self.pixel_delta = pixel_delta
        self.alpha = alpha
        self._average: np.ndarray | None = None

    def moved(self, bgr: np.ndarray) -> bool:
        h, w = bgr.shape[:2]
        small = cv2.resize(bgr, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0).astype(
            np.float32
        )
        if self._average is None or self._average.shape != grey.shape:
            self._average = grey
            return True  # the first frame: look at everything once
        changed = np.abs(grey - self._average) > self.pixel_delta
        cv2.accumulateWeighted(grey, self._average, self.alpha)
        return float(changed.mean()) >= self.threshold
