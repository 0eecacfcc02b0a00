"""Composed street scenes: real images with known boxes, inside the frame."""

from __future__ import annotations

import random

from gridwatch.detectors.scenes import (
    CLASSES,
    SIZE,
    TRAIN_FRAMES,
    random_scene,
    sprites,
    stall,
    street_frames,
)


def test_scenes_have_boxes_inside_the_frame_for_every_class():
    frames = street_frames()
    assert len(frames) > TRAIN_FRAMES  # some frames are never trained on
    assert {s.cls for s in sprites()} == {0, 1}
    rng = random.Random(3)
    seen = set()
    for _ in range(60):
        img, labels = random_scene(rng, frames[:TRAIN_FRAMES])
        assert img.shape == (SIZE[1], SIZE[0], 3)
        for cls, (x1, y1, x2, y2) in labels:
            assert 0 <= x1 < x2 <= SIZE[0] and 0 <= y1 < y2 <= SIZE[1]
            assert cls in range(len(CLASSES))
            seen.add(cls)
    assert seen == {0, 1, 2}
    drawn = stall(random.Random(1), 120).image
    assert drawn.shape[1] == 120 and drawn.std() > 20  # a picture, not a flat block
