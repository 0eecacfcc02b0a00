"""Chinese licence plates drawn for scenario videos, tests and the plate benchmark.

The ordinary small-vehicle plate of GA 36-2018 (《中华人民共和国机动车号牌》): 440 x 140 mm,
blue background, white characters and a white frame; seven characters 45 mm wide and
90 mm high, 12 mm apart, with a 10 mm dot between the second and the third (34 mm from
one to the other); the first is the province's character, the second a letter. Drawn
with a CJK font from Debian (fonts-wqy-zenhei, or fonts-noto-cjk): nothing is fetched.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from gridwatch.detectors.plates import LETTERS, PROVINCES

FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
PLATE_MM = (440, 140)  # width, height
BLUE = (160, 70, 0)  # BGR: the plate's blue
WHITE = (245, 245, 245)
SCALE = 4  # pixels per mm of the master drawing (1760 x 560), scaled down to the size wanted
_CHAR_MM = (45, 90)
_GAP_MM, _DOT_GAP_MM, _TOP_MM = 12, 34, 25


@cache
def _font_path() -> Path:
    for path in FONTS:
        if path.is_file():
            return path
    raise FileNotFoundError("no CJK font: apt-get install fonts-wqy-zenhei (./install.sh --test)")


@cache
def _glyph(char: str) -> np.ndarray:
    """The character white on black, stretched to fill a 45 x 90 mm cell (grey, uint8)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(_font_path()), 200)
    canvas = Image.new("L", (260, 260), 0)
    ImageDraw.Draw(canvas).text((30, 10), char, fill=255, font=font)
    ink = np.array(canvas)
    ys, xs = np.nonzero(ink > 40)
    ink = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    w, h = _CHAR_MM[0] * SCALE, _CHAR_MM[1] * SCALE
    # Letters, digits and the province character fill the cell; a narrow one ("1") keeps
    # its own width.
    natural = round(ink.shape[1] * h / ink.shape[0])
    iw = natural if natural < w // 2 else w
    return cv2.resize(ink, (iw, h), interpolation=cv2.INTER_AREA)


@cache
def _master(text: str) -> np.ndarray:
    if len(text) != 7:
        raise ValueError(f"{text!r}: a GA 36-2018 ordinary plate has 7 characters")
    w, h = (v * SCALE for v in PLATE_MM)
    plate = np.empty((h, w, 3), np.uint8)
    plate[:] = BLUE
    cv2.rectangle(plate, (3 * SCALE, 3 * SCALE), (w - 3 * SCALE, h - 3 * SCALE), WHITE, 2 * SCALE)
    total = 7 * _CHAR_MM[0] + 5 * _GAP_MM + _DOT_GAP_MM
    x = (PLATE_MM[0] - total) / 2
    for i, char in enumerate(text):
        glyph = _glyph(char)
        cx = round((x + _CHAR_MM[0] / 2) * SCALE)
        x0, y0 = cx - glyph.shape[1] // 2, _TOP_MM * SCALE
        region = plate[y0 : y0 + glyph.shape[0], x0 : x0 + glyph.shape[1]]
        alpha = (glyph.astype(np.float32) / 255)[..., None]
        region[:] = (region * (1 - alpha) + np.array(WHITE) * alpha).astype(np.uint8)
        x += _CHAR_MM[0] + (_DOT_GAP_MM if i == 1 else _GAP_MM)
        if i == 1:  # the dot between the authority's letter and the serial
            cv2.circle(plate, (round((x - _DOT_GAP_MM / 2) * SCALE), h // 2), 5 * SCALE, WHITE, -1)
    return plate


def plate_image(text: str, height: int) -> np.ndarray:
    """The plate for `text` (7 characters), BGR, `height` pixels high and 440/140 as wide."""
    width = max(4, round(height * PLATE_MM[0] / PLATE_MM[1]))
    return cv2.resize(_master(text), (width, height), interpolation=cv2.INTER_AREA)


def random_plate(rng: random.Random) -> str:
    """A plate number in the ordinary format: province, letter, five of letters and digits."""
    serial_chars = LETTERS + "0123456789"
    serial = [rng.choice("0123456789") for _ in range(5)]
    for i in rng.sample(range(5), rng.randint(0, 2)):  # most serials have a letter or two
        serial[i] = rng.choice(LETTERS)
    assert all(c in serial_chars for c in serial)
    return rng.choice(PROVINCES) + rng.choice(LETTERS) + "".join(serial)


def put_plate(img: np.ndarray, text: str, x: int, y: int, height: int) -> tuple[int, int, int, int]:
    """Draw the plate onto `img` (BGR, in place) with its top-left corner at (x, y), clipped
    to the picture; returns its box (x1, y1, x2, y2) in the picture's pixels."""
    plate = plate_image(text, height)
    ph, pw = plate.shape[:2]
    x1, y1 = max(0, x), max(0, y)
    x2, y2 = min(img.shape[1], x + pw), min(img.shape[0], y + ph)
    if x2 > x1 and y2 > y1:
        img[y1:y2, x1:x2] = plate[y1 - y : y2 - y, x1 - x : x2 - x]
    return x1, y1, x2, y2
