"""Street scenes composed from real images that installed packages ship, with known boxes.

No detector weights can be had here, so the demo model is trained, and the scenario
tests run, on scenes made of: street frames from Debian opencv-doc's vtest.avi,
vehicles and people cut from ultralytics' bus.jpg and zidane.jpg and Debian darknet's
dog.jpg (boxes measured by hand), and market stalls drawn here (no shipped image has
one). Classes: 0 vehicle, 1 person, 2 stall.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

CLASSES = ["vehicle", "person", "stall"]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DARKNET = Path("/usr/share/darknet/data")
SIZE = (640, 480)
# Frames of vtest.avi below this index are for training, the rest for tests.
TRAIN_FRAMES = 600


def _ultralytics_assets() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("ultralytics is not installed: ./install.sh")
    return Path(os.path.dirname(spec.origin)) / "assets"


# (file, box x1 y1 x2 y2 in the original image, class)
SOURCES = [
    ("bus.jpg", (15, 230, 800, 715), 0),
    ("bus.jpg", (51, 398, 246, 902), 1),
    ("bus.jpg", (223, 405, 344, 861), 1),
    ("zidane.jpg", (120, 200, 672, 720), 1),
    ("zidane.jpg", (752, 40, 1152, 720), 1),
    ("dog.jpg", (466, 75, 690, 170), 0),
]


@dataclass(frozen=True)
class Sprite:
    image: np.ndarray  # BGR
    cls: int


@cache
def sprites() -> tuple[Sprite, ...]:
    out = []
    for name, (x1, y1, x2, y2), cls in SOURCES:
        path = (_ultralytics_assets() if name in ("bus.jpg", "zidane.jpg") else DARKNET) / name
        img = cv2.imread(str(path))
        if img is None:
            raise FileNotFoundError(
                f"{path}: install ultralytics and Debian's darknet (./install.sh --test)"
            )
        out.append(Sprite(img[y1:y2, x1:x2].copy(), cls))
    return tuple(out)


def stall(rng: random.Random, width: int) -> Sprite:
    """A market stall: a striped canopy on poles over a table of goods."""
    h = int(width * rng.uniform(0.8, 1.1))
    img = np.full((h, width, 3), 0, np.uint8)
    img[:] = (rng.randint(60, 120),) * 3
    colours = [(40, 40, 200), (240, 240, 240), (30, 140, 230), (60, 170, 60), (200, 80, 40)]
    a, b = rng.sample(colours, 2)
    canopy = int(h * 0.3)
    stripe = max(4, width // rng.randint(5, 9))
    for x in range(0, width, stripe):
        img[:canopy, x : x + stripe] = a if (x // stripe) % 2 == 0 else b
    pole = max(2, width // 30)
    img[canopy:, :pole] = img[canopy:, width - pole :] = (50, 50, 50)
    table_top = int(h * 0.6)
    img[table_top:, pole * 2 : width - pole * 2] = (30, 70, 110)
    for _ in range(rng.randint(6, 14)):  # goods on the table
        cx, cy = (
            rng.randint(pole * 3, width - pole * 3),
            rng.randint(table_top - h // 10, table_top + h // 12),
        )
        cv2.circle(img, (cx, cy), max(3, width // 18), rng.choice(colours), -1)
    return Sprite(img, 2)


def read_vtest(size: tuple[int, int] | None = None) -> tuple[np.ndarray, ...]:
    """Every frame of Debian opencv-doc's vtest.avi (795 frames of a real street, BGR,
    768x576), scaled to `size` (width, height) when given. Raises FileNotFoundError
    when the file is not installed. Not cached: the callers keep the size they use."""
    cap = cv2.VideoCapture(str(VTEST))
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame if size is None else cv2.resize(frame, size))
        ok, frame = cap.read()
    cap.release()
    if not frames:
        raise FileNotFoundError(f"{VTEST}: install Debian's opencv-doc (./install.sh --test)")
    return tuple(frames)


@cache
def street_frames() -> tuple[np.ndarray, ...]:
    """vtest.avi at SIZE, the scenes' backgrounds."""
    return read_vtest(SIZE)


def paste(
    canvas: np.ndarray, sprite: Sprite, x: int, y: int, height: int
) -> tuple[int, int, int, int] | None:
    """Paste the sprite scaled to `height` with its bottom-left at (x, y); its box, or None if off frame."""
    sh, sw = sprite.image.shape[:2]
    w = max(4, round(sw * height / sh))
    img = cv2.resize(sprite.image, (w, height), interpolation=cv2.INTER_AREA)
    x1, y1 = x, y - height
    cx1, cy1, cx2, cy2 = (
        max(0, x1),
        max(0, y1),
        min(canvas.shape[1], x1 + w),
        min(canvas.shape[0], y),
    )
    if cx2 - cx1 < w * 0.6 or cy2 - cy1 < height * 0.6:
        return None
    canvas[cy1:cy2, cx1:cx2] = img[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1]
    return cx1, cy1, cx2, cy2


HEIGHTS = {0: (60, 170), 1: (70, 190), 2: (60, 140)}


def random_scene(
    rng: random.Random, frames: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, list[tuple[int, tuple]]]:
    """A street frame with 1-5 objects; returns the image and (class, box) labels."""
    canvas = rng.choice(frames).copy()
    labels = []
    pool = sprites()
    for _ in range(rng.randint(1, 5)):
        kind = rng.choice([0, 0, 1, 1, 2])
        sprite = (
            stall(rng, rng.randint(70, 150))
            if kind == 2
            else rng.choice([s for s in pool if s.cls == kind])
        )
        height = rng.randint(*HEIGHTS[kind])
        x, y = rng.randint(-20, SIZE[0] - 40), rng.randint(height // 2, SIZE[1] + 10)
        box = paste(canvas, sprite, x, y, height)
        if box:
            labels = [
                (c, b) for c, b in labels if not _covered(b, box)
            ]  # hidden behind the new one
            labels.append((sprite.cls, box))
    return canvas, labels


def _covered(old: tuple, new: tuple) -> bool:
    ix = max(0, min(old[2], new[2]) - max(old[0], new[0]))
    iy = max(0, min(old[3], new[3]) - max(old[1], new[1]))
    area = (old[2] - old[0]) * (old[3] - old[1])
    return area > 0 and ix * iy / area > 0.6


def write_mp4(pictures: Iterable[np.ndarray], path: Path, fps: int) -> Path:
    """Write BGR pictures (H x W x 3, all of SIZE) as an H.264 MP4 at `fps`: one key frame
    a second, no B-frames, as the scenario videos and the demo cameras play. Written to a
    `.part.mp4` beside it and moved into place, so a reader never finds half a file."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps), "crf": "23"}
        for img in pictures:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    tmp.replace(path)
    return path
