"""The best plate read of each vehicle a camera follows in a no-parking zone.

While a vehicle's dwell runs, its crop is read on frames the model ran on (at most every
`every_s`, until a read is sure enough): the plate a vehicle shows while it parks —
before a bus stops in front of it, while the light is good — is kept for its violation,
together with one last read on the confirmation frame. Reads run on the worker's
own threads (not the model's: a slow read must not hold the model up), never on the
event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor

import numpy as np

from gridwatch.detectors.plates import PlateRead, PlateReader
from gridwatch.detectors.rules import Box, Incident, Violation

log = logging.getLogger("gridwatch.detect")

MARGIN = 0.15  # of the box's width and height, around the vehicle: a box cut at the bumper keeps its plate


def vehicle_crop(img: np.ndarray, box: Box, margin: float = MARGIN) -> np.ndarray:
    """The vehicle's pixels (a view of `img`, BGR) with `margin` around its box (pixels)."""
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return img[
        max(0, int(y1 - my)) : min(h, int(y2 + my) + 1),
        max(0, int(x1 - mx)) : min(w, int(x2 + mx) + 1),
    ]


def load_reader() -> PlateReader | None:
    """The plate reader, or None (logged) when rapidocr-onnxruntime is not installed."""
    try:
        return PlateReader()
    except ImportError:
        log.warning(
            "plates are not read: rapidocr-onnxruntime is not installed (pip install -e .[detect])"
        )
        return None


class PlateBook:
    def __init__(self, reader: PlateReader | None, executor: Executor | None,
                 every_s: float = 2.0, enough: float = 0.97):  # fmt: skip
        self.reader = reader
        self.executor = executor
        self.every_s = every_s
        self.enough = enough
        self.best: dict[str, tuple[PlateRead, float]] = {}  # incident id -> best read, frame time
        self._at: dict[str, float] = {}  # incident id -> when it was last read (monotonic)
        self._seen: object = None  # the detections last looked at: a new list = the model ran

    async def look(self, image, taken: float, detections: list, incidents: list[Incident]) -> None:
        """Read the plates of the vehicles dwelling in no-parking zones, when the model has
        just run (`detections` is a new list) and their last read is `every_s` old.
        `image()`: the frame (BGR), decoded once the model ran; `taken`: its time (Unix s)."""
        if self.reader is None or detections is self._seen:
            return
        self._seen = detections
        live = {inc.id for inc in incidents}
        for gone in self._at.keys() - live:
            self._at.pop(gone, None)
            self.best.pop(gone, None)
        now = time.monotonic()
        for inc in incidents:
            if (
                inc.kind != "no_parking"
                or inc.reported
                or now - self._at.get(inc.id, -1e9) < self.every_s
            ):
                continue
            if (best := self.best.get(inc.id)) is not None and best[0].confidence >= self.enough:
                continue
            if (img := image()) is None:
                return
            self._at[inc.id] = now
            self._keep(inc.id, await self._read(img, inc.box), taken)

    async def final(self, img: np.ndarray, violation: Violation) -> tuple[PlateRead, float] | None:
        """The plate for a violation and the time of the frame it was read on: the best of
        its dwell and of the confirmation frame."""
        if self.reader is None or violation.kind != "no_parking":
            return None
        best = self.best.pop(violation.incident, None)
        self._at.pop(violation.incident, None)
        if best is None or best[0].confidence < self.enough:
            read = await self._read(img, violation.box)
            if read is not None and (best is None or read.confidence > best[0].confidence):
                best = read, violation.confirmed
        return best

    async def _read(self, img: np.ndarray, box: Box) -> PlateRead | None:
        assert self.reader is not None
        crop = vehicle_crop(img, box)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, self.reader.read, crop
        )

    def _keep(self, incident: str, read: PlateRead | None, taken: float) -> None:
        if read is not None and (
            incident not in self.best or read.confidence > self.best[incident][0].confidence
        ):
            self.best[incident] = read, taken
