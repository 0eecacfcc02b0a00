"""Plate reading by plate height: how tall must a plate be in the detection frame?

    .venv/bin/python tests/bench/plates.py [--plates 60] [--heights 10,14,18,24,32,48]

For each height, `--plates` random GA 36-2018 plates (the same ones at every height) are
drawn onto the truck sprite on a street frame the size the sampler sends (640x480; the
vehicle scaled with the plate, 150:28 as in the park-plate scenario), the frame is
JPEG-coded at the sampler's quality (85), and the worker's reader reads the vehicle's
crop (its box with the worker's margin) on one thread, as the worker runs it. Printed
per height: exact reads (every character right), wrong reads (a plate number that is
not the one drawn: worse than none), mean confidence of the reads, and time per read.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import cv2

from gridwatch.detectors.plate_art import put_plate, random_plate
from gridwatch.detectors.plate_book import vehicle_crop
from gridwatch.detectors.plates import PlateReader
from gridwatch.detectors.scenes import paste, sprites, street_frames

VEHICLE_PER_PLATE = 150 / 28  # the park-plate scenario's vehicle height over plate height


def scene(text: str, plate_h: int, i: int):
    """(the JPEG-coded frame, the vehicle's box)."""
    frames = street_frames()
    frame = frames[600 + (i * 7) % (len(frames) - 600)].copy()
    vehicle_h = max(40, round(plate_h * VEHICLE_PER_PLATE))
    x, y = 20 + (i * 37) % 60, 470
    box = paste(frame, sprites()[5], x, y, vehicle_h)
    assert box is not None
    put_plate(
        frame,
        text,
        x + round(0.01 * 224 * vehicle_h / 95),
        y - round(0.38 * vehicle_h) - plate_h // 2,
        plate_h,
    )
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR), box


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plates", type=int, default=60)
    ap.add_argument("--heights", default="10,14,18,24,32,48")
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    texts = [random_plate(rng) for _ in range(args.plates)]
    started = time.perf_counter()
    reader = PlateReader(threads=1)
    print(f"reader loaded in {time.perf_counter() - started:.2f} s; {len(texts)} plates per height")
    reader.read(scene(texts[0], 32, 0)[0])  # the first call sets ONNX Runtime up
    print(
        f"{'plate px':>8} {'plate w':>7} {'exact':>7} {'wrong':>6} {'mean conf':>9} {'ms/read':>8} {'ms p90':>7}"
    )
    for h in (int(v) for v in args.heights.split(",")):
        exact = wrong = 0
        confidences: list[float] = []
        times: list[float] = []
        for i, text in enumerate(texts):
            img, box = scene(text, h, i)
            crop = vehicle_crop(img, box)
            t0 = time.perf_counter()
            read = reader.read(crop)
            times.append(time.perf_counter() - t0)
            if read is not None:
                confidences.append(read.confidence)
                exact += read.text == text
                wrong += read.text != text
        conf = f"{statistics.mean(confidences):.3f}" if confidences else "-"
        p90 = sorted(times)[int(0.9 * (len(times) - 1))]
        print(f"{h:>8} {round(h * 440 / 140):>7} {exact / len(texts):>7.0%} {wrong / len(texts):>6.0%} {conf:>9} "
              f"{1000 * statistics.mean(times):>8.1f} {1000 * p90:>7.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
