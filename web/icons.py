"""Draws the phone page's app icons (web/static/icons/*.png) from nothing but OpenCV:

    .venv/bin/python -m gridwatch.web.icons

A map pin over a city grid, in the wall's colours. The PNGs are committed; run this
again only to change them.
"""

from __future__ import annotations

import cv2
import numpy as np

from gridwatch.web import STATIC

BACKGROUND = (0x21, 0x18, 0x11)  # BGR of #111821
GRID = (0x41, 0x32, 0x26)
PIN = (0xEB, 0x6F, 0x1F)  # #1f6feb


def icon(size: int, maskable: bool = False) -> np.ndarray:
    image = np.full((size, size, 3), BACKGROUND, np.uint8)
    step = size // 8
    for k in range(step, size, step):  # streets
        cv2.line(image, (k, 0), (k, size), GRID, max(1, size // 64))
        cv2.line(image, (0, k), (size, k), GRID, max(1, size // 64))
    scale = 0.6 if maskable else 0.8  # a maskable icon keeps to the middle 80%
    r = int(size * scale * 0.28)
    cx, cy = size // 2, int(size * 0.5 - r * 0.45)
    tip = (cx, int(cy + r * 2.1))
    cv2.fillPoly(image, [np.array([(cx - int(r * 0.87), cy + r // 2), (cx + int(r * 0.87), cy + r // 2), tip])], PIN,
                 cv2.LINE_AA)  # fmt: skip
    cv2.circle(image, (cx, cy), r, PIN, -1, cv2.LINE_AA)
    cv2.circle(image, (cx, cy), int(r * 0.42), (255, 255, 255), -1, cv2.LINE_AA)
    return image


def main() -> None:
    out = STATIC / "icons"
    out.mkdir(exist_ok=True)
    for size in (192, 512):
        cv2.imwrite(str(out / f"icon-{size}.png"), icon(size))
    cv2.imwrite(str(out / "icon-512-maskable.png"), icon(512, maskable=True))


if __name__ == "__main__":
    main()
