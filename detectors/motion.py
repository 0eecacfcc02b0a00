"""Motion gating, as Frigate does: no inference on a frame where nothing moved.

A small blurred grey copy of each frame is compared with a running average of the
scene; the share of pixels that changed decides. Parked vehicles do not move, so the
worker keeps their last detections and re-checks with the model every few seconds.
"""

from __future__ import annotations

import cv2
import numpy as np

WIDTH = 160


def small_grey(jpeg: bytes, width: int) -> np.ndarray | None:
    """A JPEG decoded straight to a small grey picture (the decoder scales by 1/2, 1/4 or
    1/8 as it goes): a fraction of a full decode, and all the gate needs."""
    flag = cv2.IMREAD_GRAYSCALE
    for scale, reduced in ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                           (2, cv2.IMREAD_REDUCED_GRAYSCALE_2)):  # fmt: skip
        if width // scale >= WIDTH:
            flag = reduced
            break
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)


class MotionGate:
    # alpha: how fast the background takes in what changed. It is high because frames come
    # at the detection rate (1-2 a second): a vehicle that stops is background two
    # frames later (at 0.2 it kept "moving" for 6 s and woke the model for nothing).
    def __init__(self, threshold: float = 0.002, pixel_delta: int = 25, alpha: float = 0.7):
        self.threshold = threshold  # share of the frame that must change
        self.pixel_delta = pixel_delta
        self.alpha = alpha
        self._average: np.ndarray | None = None

    def moved(self, img: np.ndarray) -> bool:
        """img: the frame in colour (BGR) or grey, at any size (a small grey one costs least)."""
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        h, w = img.shape[:2]
        if w != WIDTH:
            img = cv2.resize(
                img, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA
            )
        grey = cv2.GaussianBlur(img, (5, 5), 0).astype(np.float32)
        if self._average is None or self._average.shape != grey.shape:
            self._average = grey
            return True  # the first frame: look at everything once
        changed = np.abs(grey - self._average) > self.pixel_delta
        cv2.accumulateWeighted(grey, self._average, self.alpha)
        return float(changed.mean()) >= self.threshold
