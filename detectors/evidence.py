"""Evidence pictures: the frame with the object's box and the zone drawn, and a clean crop."""

from __future__ import annotations

import cv2
import numpy as np

from gridwatch.detectors.rules import Box

ZONE_COLOUR = (0, 200, 255)  # BGR amber
BOX_COLOUR = (0, 0, 255)


def jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode the picture as JPEG")
    return buf.tobytes()


def annotated(img: np.ndarray, polygon: list[tuple[float, float]], box: Box, caption: str) -> bytes:
    out = img.copy()
    pts = np.array(polygon, np.int32).reshape(-1, 1, 2)
    overlay = out.copy()
    cv2.fillPoly(overlay, [pts], ZONE_COLOUR)
    out = cv2.addWeighted(overlay, 0.18, out, 0.82, 0)
    cv2.polylines(out, [pts], True, ZONE_COLOUR, 2)
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, 2)
    cv2.putText(out, caption, (x1, max(14, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, BOX_COLOUR, 1,
                cv2.LINE_AA)  # fmt: skip
    return jpeg(out)


def crop(img: np.ndarray, box: Box, margin: float = 0.1) -> bytes:
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    x1, y1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    x2, y2 = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
    if x2 <= x1 or y2 <= y1:
        return jpeg(img)
    return jpeg(img[y1:y2, x1:x2])
