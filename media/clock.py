"""Wall-clock stamps drawn into video frames, for glass-to-glass latency measurement.

The time in milliseconds is drawn as three rows of 16 black-or-white blocks plus a
checksum row, large enough to survive H.264 compression and scaling.
"""

from __future__ import annotations

import numpy as np

BITS = 16
ROWS = 4  # three 16-bit words of the time, one checksum word
LUMA_ON, LUMA_OFF = 235, 16


def _block(width: int) -> int:
    return max(4, width // (BITS + 4))


def _words(ms: int) -> list[int]:
    words = [(ms >> 32) & 0xFFFF, (ms >> 16) & 0xFFFF, ms & 0xFFFF]
    return [*words, sum(words) & 0xFFFF]


def stamp(luma: np.ndarray, ms: int) -> None:
    """Draw `ms` into the top-left of an 8-bit luma plane, in place."""
    b = _block(luma.shape[1])
    for row, word in enumerate(_words(ms)):
        y = b * (row + 1)
        for bit in range(BITS):
            x = b * (bit + 2)
            luma[y : y + b, x : x + b] = LUMA_ON if word >> (BITS - 1 - bit) & 1 else LUMA_OFF


def read(luma: np.ndarray) -> int | None:
    """The stamped time in ms, or None when the stamp is unreadable."""
    b = _block(luma.shape[1])
    m = max(1, b // 4)
    words = []
    for row in range(ROWS):
        y = b * (row + 1)
        word = 0
        for bit in range(BITS):
            x = b * (bit + 2)
            cell = luma[y + m : y + b - m, x + m : x + b - m]
            word = word << 1 | int(cell.mean() > (LUMA_ON + LUMA_OFF) / 2)
        words.append(word)
    if sum(words[:3]) & 0xFFFF != words[3]:
        return None
    return words[0] << 32 | words[1] << 16 | words[2]


def background(width: int, height: int) -> np.ndarray:
    """A textured YUV420 frame so that the encoder does realistic work."""
    y = np.fromfunction(lambda r, c: (r + c) % 200 + 28, (height, width), dtype=np.int32)
    chroma = np.full((height // 2, width), 128, dtype=np.uint8)
    return np.vstack([y.astype(np.uint8), chroma])
