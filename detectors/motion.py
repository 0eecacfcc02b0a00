"""Motion gating: the model runs only where what the zone rules can see has changed.

Frigate skips frames where nothing moved. That saves nothing on a busy street, where
people walk in every frame, and most of that motion cannot matter: the zone rules act
only on objects at rest (a vehicle parked, a stall set up), and only on those in a
zone. So the gate asks a narrower question of each small grey frame — has what stands
still inside (or just around) a zone changed since the model last looked? — and walkers
passing by, traffic driving through, anything outside the zones never wake the model.

Per pixel of a blurred 160-px-wide grey copy:
- moving: it differs from a fast running average of the last frames;
- at rest: it has not been moving for `settle` frames (a walker who slows down is not);
- changed at rest: it is at rest, inside a zone or its margin, and differs from what it
  was when the model last looked (`looked` takes the pixels at rest in as seen; pixels
  that moved then stay as they were, so a walker in the picture at that moment leaves
  no ghost behind).
The model looks when one connected patch of changed pixels is at least `threshold` of
the picture (people moving about leave scattered slivers; a vehicle that parks, even a
far one, is one patch). Something that comes to rest, leaves, or is uncovered is such a
change `settle` frames later. The worker adds: a re-check every few seconds, every frame while a
verification is pending, and a look as soon as a followed object that something moved
in front of is in the clear again (`calm`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

WIDTH = 160
Polygon = Sequence[Sequence[float]]


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


class ZoneGate:
    """Whether the model should look at a frame, for zones given in the frame's pixels.

    zones: polygons in the pixels of frames `frame_size` (width, height) wide; none
    means the whole picture. margin: how far around a zone still counts, as a share of
    the frame's width (an object enters a zone with its bottom edge; the rest of it
    stands above). threshold: the share of the small picture one changed patch must
    cover (0.003 of 160x120 is 58 pixels: a vehicle 50 px wide in a 640-px frame is
    about twice that). settle: frames a pixel must be still to be at rest.
    """

    # alpha: how fast the running average takes in what changed. It is high because frames
    # come at the detection rate (1-2 a second): what stops is "still" a frame or two later.
    def __init__(self, zones: Sequence[Polygon], frame_size: tuple[int, int], margin: float = 0.03,
                 threshold: float = 0.003, pixel_delta: int = 25, alpha: float = 0.7,
                 settle: int = 2):  # fmt: skip
        self.zones = [np.asarray(z, np.float32).reshape(-1, 2) for z in zones]
        self.frame_size = frame_size
        self.margin = margin
        self.threshold = threshold
        self.pixel_delta = pixel_delta
        self.alpha = alpha
        self.settle = settle
        self._still_for: np.ndarray | None = None  # frames each pixel has been still
        self._still_since: np.ndarray | None = None  # since when (s), per pixel
        self._average: np.ndarray | None = None
        self._seen: np.ndarray | None = None  # each pixel as the model last saw it
        self._grey: np.ndarray | None = None
        self._moving: np.ndarray | None = None
        self._mask: np.ndarray | None = None

    def _scale(self, shape: tuple[int, ...]) -> float:
        return shape[1] / self.frame_size[0]

    def _zone_mask(self, shape: tuple[int, ...]) -> np.ndarray:
        if not self.zones:
            return np.ones(shape[:2], bool)
        scale = self._scale(shape)
        mask = np.zeros(shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(z * scale).astype(np.int32) for z in self.zones], 1)
        grow = max(1, round(self.margin * shape[1]))
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        return mask.astype(bool)

    def look(self, img: np.ndarray, ts: float = 0.0) -> bool:
        """Take the next frame (colour BGR or grey, any size; a small grey one costs least)
        and its time in seconds: whether what stands still in the zones changed since the
        model last looked."""
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        h, w = img.shape[:2]
        if w != WIDTH:
            img = cv2.resize(
                img, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA
            )
        grey = cv2.GaussianBlur(img, (5, 5), 0).astype(np.float32)
        if self._average is None or self._average.shape != grey.shape:
            self._grey = grey
            self._average, self._seen = grey.copy(), None
            self._moving = np.zeros(grey.shape, bool)
            self._still_for = np.zeros(grey.shape, np.uint8)
            self._still_since = np.full(grey.shape, ts, np.float64)
            self._mask = self._zone_mask(grey.shape)
            return True  # the first frame: look at everything once
        assert self._grey is not None and self._still_since is not None
        # Since when: the last frame a pixel changed from the one before (against the
        # average, a pixel of what just stopped still counts as moving a frame later).
        self._still_since[np.abs(grey - self._grey) > self.pixel_delta] = ts
        self._moving = np.abs(grey - self._average) > self.pixel_delta
        cv2.accumulateWeighted(grey, self._average, self.alpha)
        assert self._still_for is not None and self._mask is not None
        self._still_for = np.where(self._moving, 0, np.minimum(self._still_for, 254) + 1)
        self._still_for = self._still_for.astype(np.uint8)
        self._grey = grey
        if self._seen is None:
            return True  # the model has not looked yet
        at_rest = self._still_for >= self.settle
        changed = at_rest & self._mask & (np.abs(grey - self._seen) > self.pixel_delta)
        if float(changed.mean()) < self.threshold:
            return False
        # One thing of some size, not the scattered slivers that people moving about leave.
        _, _, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
        return int(stats[1:, cv2.CC_STAT_AREA].max(initial=0)) >= self.threshold * changed.size

    def looked(self) -> None:
        """The model looked at the last frame: what was not moving in it is what it saw."""
        if self._grey is None or self._moving is None:
            return
        if self._seen is None:
            self._seen = self._grey.copy()
        else:
            still = ~self._moving
            self._seen[still] = self._grey[still]

    def rest_since(self, box: Sequence[float]) -> float | None:
        """Since when (s, as given to `look`) what is inside `box` (x1, y1, x2, y2 in frame
        pixels) has stood still: the 90th percentile of its pixels' still-since times, the
        latest of those that moved when it arrived (background and the plain inside of a
        vehicle may have looked still throughout). None for a box off the picture."""
        if self._still_since is None:
            return None
        region = self._region(box, self._still_since)
        return float(np.percentile(region, 90)) if region.size else None

    def _region(self, box: Sequence[float], grid: np.ndarray) -> np.ndarray:
        scale = self._scale(grid.shape)
        h, w = grid.shape
        x1, y1 = max(0, int(box[0] * scale)), max(0, int(box[1] * scale))
        x2, y2 = min(w, int(np.ceil(box[2] * scale))), min(h, int(np.ceil(box[3] * scale)))
        return grid[y1 : max(y1, y2), x1 : max(x1, x2)]

    def calm(self, box: Sequence[float], share: float = 0.02) -> bool:
        """Whether almost nothing moved inside `box` (x1, y1, x2, y2 in frame pixels) in the
        last frame: what stands there can be seen, not just what passes in front."""
        if self._moving is None:
            return False
        region = self._region(box, self._moving)
        return not region.size or float(region.mean()) < share
