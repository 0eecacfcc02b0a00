"""Reading Chinese licence plates on a vehicle's picture (PP-OCRv4 through rapidocr-onnxruntime).

The format (contracts.plates) is GA 36-2018 (《中华人民共和国机动车号牌》, the Ministry of
Public Security's standard for motor-vehicle plates): the province's one-character
abbreviation, the issuing authority's letter, then the serial — five letters or digits
on an ordinary plate (京A·12345, 沪B·D7K21), six on a new-energy plate (粤B·D12345).
Letters never include I or O. Plates for special uses (警, 学, 使, 领, 港, 澳 and the
like) are out of scope: they do not match and are not read.

The models are the PP-OCRv4 text detector and recogniser (Chinese characters, letters,
digits) that the `rapidocr-onnxruntime` wheel carries: nothing is downloaded. A reader
loads them once (about 0.4 s); `read` is plain CPU work and blocks for 15-50 ms (a
plate found by its colour) to a few hundred (the text detector's fallback) on one core:
call it in a thread, never on the event loop.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from gridwatch.contracts.plates import LETTERS, PLATE, PROVINCES

__all__ = ["LETTERS", "PROVINCES", "PlateRead", "PlateReader", "normalise", "valid"]

# Only where the format leaves one reading: the second character is a letter, so a digit
# there is the letter it looks like; the serial has no I or O, so those are 1 and 0.
_AS_LETTER = str.maketrans({"8": "B", "0": "D", "5": "S", "2": "Z", "6": "G"})
_IN_SERIAL = str.maketrans({"O": "0", "I": "1"})
# What the recogniser returns around a plate's characters: its dot, frame and spaces.
_NOISE = re.compile(
    "[\\s·•.\\-_:|'\"()\\[\\],\u2018\u2019\u201c\u201d\u3001\u3002\uff08\uff09\uff0c]"
)


def _mend(text: str) -> str:
    """Upper case, and the confusions the positions make unambiguous (length kept)."""
    text = text.upper()
    return text[:1] + text[1:2].translate(_AS_LETTER) + text[2:].translate(_IN_SERIAL)


def normalise(raw: str) -> str | None:
    """The plate number in `raw` (what the recogniser read), or None when it is not one.

    Separators are dropped and letters made upper case; OCR confusions are mended only
    where the position leaves no doubt (a digit in the letter's place, I or O in the
    serial). A read with a character too many or too few is not guessed at."""
    text = _NOISE.sub("", raw).upper()
    # A read that starts with the frame's edge or a stray mark before the province.
    start = next((i for i, c in enumerate(text) if c in PROVINCES), None)
    if start is None:
        return None
    text = text[start:]
    if len(text) not in (7, 8):
        return None
    text = _mend(text)
    return text if PLATE.fullmatch(text) else None


def valid(text: str) -> bool:
    """Whether `text` is a plate number in the GA 36-2018 form this module reads."""
    return PLATE.fullmatch(text) is not None


@dataclass(frozen=True)
class PlateRead:
    text: str  # e.g. "沪B12345" (no dot)
    confidence: float  # 0..1: the recogniser's probability of its least sure character
    crop: np.ndarray  # BGR, the plate as it appears in the picture (its own pixels, not scaled)
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the picture's pixels


# A plate under about 18 px high (its blue under 20 px): the recogniser takes the
# province's character for another in a third to a half of the reads, sure of itself (0.9
# and more). A wrong plate points at another vehicle's owner: none is read (measured:
# tests/bench/plates.py, docs/benchmarks.md).
MIN_HEIGHT = 20  # px, the plate's blue in the picture (its frame and a pixel or two of blur)
MIN_CONFIDENCE = 0.5  # the least sure character's probability


class PlateReader:
    """Loads the models once; `read(picture)` finds and reads a plate on it.

    `threads`: ONNX Runtime threads per model call (1: many cameras share the cores, one
    call per core, as the detector's model calls do). Safe to call from several threads:
    calls are serialised (one ONNX session each; the work is short)."""

    def __init__(
        self, threads: int = 1, min_height: int = MIN_HEIGHT, min_confidence: float = MIN_CONFIDENCE
    ):
        from rapidocr_onnxruntime import RapidOCR

        n = {f"{m}_{k}": threads for m in ("det", "cls", "rec")
             for k in ("intra_op_num_threads", "inter_op_num_threads")}  # fmt: skip
        # The detector at the picture's own scale (its default scales the short side up to
        # 736 px: seconds for a vehicle's crop); the plates read are 18 px high or more.
        ocr = RapidOCR(**n, det_limit_type="max", det_limit_side_len=960)
        self._det, self._rec = ocr.text_det, ocr.text_rec
        self._chars: list[str] = ocr.text_rec.postprocess_op.character  # 0: CTC's blank
        self._provinces = np.array([self._chars.index(c) for c in PROVINCES])
        self.min_height, self.min_confidence = min_height, min_confidence
        self._lock = threading.Lock()

    def read(self, img: np.ndarray) -> PlateRead | None:
        """The best plate read on `img` (BGR, HxWx3 uint8: a vehicle's crop, or a frame),
        or None when no text on it reads as a plate.

        First the blue regions of a plate's shape (ordinary plates; cheap: only the
        recogniser runs, on each candidate); when none of them reads, the text detector
        looks for any line of text (green and yellow plates, plates under odd light)."""
        if img is None or img.ndim != 3 or min(img.shape[:2]) < 8:
            return None
        with self._lock:
            found = self._best(img, _blue_regions(img, self.min_height))
            if found is None:
                found = self._best(img, self._text_lines(img))
        return found if found is not None and found.confidence >= self.min_confidence else None

    def _best(self, img: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> PlateRead | None:
        if not boxes:
            return None
        best: PlateRead | None = None
        for box in boxes:
            x1, y1, x2, y2 = box
            crop = img[y1:y2, x1:x2]
            read = self._recognise(crop)
            if read is not None and (best is None or read[1] > best.confidence):
                best = PlateRead(read[0], round(read[1], 4), crop.copy(), box)
        return best

    def _recognise(self, crop: np.ndarray) -> tuple[str, float] | None:
        """(plate, its least sure character's probability) on a plate's crop, or None.

        CTC greedy decoding, as the recogniser's own, with one constraint from the
        format: the first Chinese character is the province's place, so it is the most
        probable of the 31 provinces there (the recogniser alone reads a small 宁 as 皖,
        藏 as 豫, and scores them 0.9 and more: the plate's mean says nothing)."""
        line = _for_recogniser(crop)
        h, w = line.shape[:2]
        x = self._rec.resize_norm_img(line, max(320 / 48, w / h))[np.newaxis].astype(np.float32)
        probs = self._rec.session(x)[0][0]  # (time steps, characters): softmax output
        best = probs.argmax(axis=1)
        out: list[tuple[str, float]] = []
        prev = 0
        for t, k in enumerate(best):
            if k != 0 and k != prev:
                char = self._chars[k]
                if not out:
                    if char.isascii():
                        prev = k
                        continue  # before the province: the frame's edge, a bolt
                    j = self._provinces[probs[t, self._provinces].argmax()]
                    out.append((self._chars[j], float(probs[t, j])))
                elif not _NOISE.fullmatch(char):
                    out.append((char, float(probs[t, k])))
            prev = k
        if len(out) not in (7, 8):
            return None
        text = _mend("".join(c for c, _ in out))
        return (text, min(p for _, p in out)) if PLATE.fullmatch(text) else None

    def _text_lines(self, img: np.ndarray) -> list[tuple[int, int, int, int]]:
        boxes, _ = self._det(img)
        if boxes is None or len(boxes) == 0:
            return []
        h, w = img.shape[:2]
        out = []
        for quad in boxes:
            xs, ys = quad[:, 0], quad[:, 1]
            x1, y1, x2, y2 = (
                int(xs.min()),
                int(ys.min()),
                int(np.ceil(xs.max())),
                int(np.ceil(ys.max())),
            )
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
            # The detector's box is the characters' line (90/140 of the plate) grown by
            # its unclip ratio (1.6): about the plate's height.
            if y2 - y1 >= self.min_height and (x2 - x1) >= 1.5 * (y2 - y1):
                out.append((x1, y1, x2, y2))
        return out[:8]


def _for_recogniser(crop: np.ndarray) -> np.ndarray:
    """A small plate scaled up smoothly to the recogniser's 48 px line height (it would
    scale bilinearly itself; cubic keeps small strokes apart better)."""
    h, w = crop.shape[:2]
    if h >= 48:
        return crop
    f = 48 / h
    return cv2.resize(crop, (max(1, round(w * f)), 48), interpolation=cv2.INTER_CUBIC)


def _blue_regions(img: np.ndarray, min_height: int) -> list[tuple[int, int, int, int]]:
    """Boxes of blue blobs shaped like a plate (440:140, loosely: 2:1 to 5:1 wide) at least
    `min_height` px high, largest first, at most four, each with a little margin."""
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    mask = cv2.inRange(hsv, (100, 110, 60), (125, 255, 255))
    # Close the gaps the white characters cut into the blue.
    k = max(3, min(img.shape[:2]) // 40) | 1
    mask = cv2.morphologyEx(
        mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    )
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    h, w = img.shape[:2]
    out = []
    for x, y, bw, bh, area in stats[1:]:
        if bh < min_height or not 2.0 <= bw / bh <= 5.0 or area < 0.5 * bw * bh:
            continue
        mx, my = max(1, bw // 20), max(1, bh // 8)
        box = (max(0, x - mx), max(0, y - my), min(w, x + bw + mx), min(h, y + bh + my))
        out.append((int(area), tuple(int(v) for v in box)))
    return [box for _, box in sorted(out, reverse=True)[:4]]
