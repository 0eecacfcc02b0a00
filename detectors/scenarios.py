"""Scenario videos: composed street scenes where vehicles, people and stalls come, stop,
are hidden and leave, on a timeline, with the ground truth known.

The demo camera and the end-to-end tests play these files through a real RTSP server
(or the `file:` source) into the whole system. Backgrounds are vtest.avi frames the
demo model never trained on. Each actor follows waypoints `(t, x, y)` (the bottom
left corner of its picture, linear in between) and is in the picture from its first
waypoint to its last; actors listed later are drawn in front of earlier ones. A vehicle
may carry a Chinese plate (`Actor.plate`), drawn onto it in every frame.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridwatch.detectors.plate_art import put_plate
from gridwatch.detectors.scenes import (
    SIZE,
    TRAIN_FRAMES,
    Sprite,
    paste,
    sprites,
    stall,
    street_frames,
    write_mp4,
)

FPS = 10

# Zones the scenarios are made for, relative to the picture (as zones are stored): the road
# in front (from y 330 of the 640x480 picture), and the pavement behind it (y 200 to 329).
ROAD = [[0, 0.6875], [1, 0.6875], [1, 1], [0, 1]]
PAVEMENT = [[0, 0.4167], [1, 0.4167], [1, 0.6854], [0, 0.6854]]


# park-plate: the vehicle drawn 150 px high, its plate 28 px high (about 88 px wide). At the
# vehicle's real proportions (a 4.5 m car, a 440 mm plate) the plate would be some 11 px
# high at this size, which the reader does not read (docs/benchmarks.md): the scene is
# made for a camera that sees plates at 24 px or more.
PLATE_TEXT = "沪AD7521"
PLATE_VEHICLE = (150, 28)


@dataclass(frozen=True)
class Actor:
    sprite: str  # "truck", "bus", "person", "person2", "stall"
    height: int
    path: tuple[tuple[float, float, float], ...]  # (t, x, y), t ascending
    # A plate: its number and its height in pixels, drawn over the sprite's rear (the left
    # end, at bumper height). The truck sprite is a side view: the plate is a sticker at
    # its rear corner, larger than the vehicle's real proportions would make it.
    plate: tuple[str, int] | None = None

    def at(self, t: float) -> tuple[int, int] | None:
        path = self.path
        if t < path[0][0] or t > path[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(path):
            if t0 <= t <= t1:
                f = 0.0 if t1 == t0 or math.isinf(t1) else (t - t0) / (t1 - t0)
                return round(x0 + f * (x1 - x0)), round(y0 + f * (y1 - y0))
        return round(path[-1][1]), round(path[-1][2])


@dataclass(frozen=True)
class Scenario:
    name: str
    seconds: float
    actors: tuple[Actor, ...]
    background: int = 0  # which unseen street frame
    what: str = ""
    busy: bool = False  # the street's own footage plays behind (people walk in every frame)
    stamp: bool = False  # each frame carries its own time (`read_stamp`), for timing tests


def _sprite(name: str) -> Sprite:
    pool = sprites()
    by_name = {"bus": pool[0], "person": pool[1], "person2": pool[3], "truck": pool[5]}
    if name == "stall":
        return stall(random.Random(11), 130)
    return by_name[name]


def drive(
    t_in: float,
    t_stop: float,
    x_stop: float,
    t_go: float | None,
    y: float = 445,
    speed: float = 140.0,
) -> tuple[tuple[float, float, float], ...]:
    """A vehicle that drives in from the left, stops at x_stop, and leaves to the right at t_go."""
    x_in = x_stop - speed * (t_stop - t_in)
    path = [(t_in, x_in, y), (t_stop, x_stop, y)]
    if t_go is None:
        path.append((math.inf, x_stop, y))  # stays
    else:
        path += [(t_go, x_stop, y), (t_go + (SIZE[0] + 40 - x_stop) / speed, SIZE[0] + 40, y)]
    return tuple(path)


def _park(name: str, seconds: float, t_stop: float, t_go: float | None, what: str) -> Scenario:
    truck = Actor("truck", 110, drive(t_stop - 3, t_stop, 240, t_go))
    return Scenario(name, seconds, (truck,), what=what)


def walker_in_front(lead: float) -> Scenario:
    """Issue 17's occlusion scene, everything `lead` seconds later (to try the sampler's
    phases): a vehicle stops in the road at 8 s, a walker crosses in front of it from about
    30.5 to 34 s; with a 30 s dwell the violation is due at 38 s."""
    walker = Actor("person", 130, ((27.5 + lead, -80, 478), (36.5 + lead, 700, 478)))
    truck = Actor("truck", 110, drive(5 + lead, 8 + lead, 240, None))
    return Scenario(f"walker-in-front-{round(lead * 1000)}ms", 45, (truck, walker), stamp=True,
                    what=f"a vehicle stops at {8 + lead:g} s; a walker crosses in front of it "
                         f"from {30.5 + lead:g} to {34 + lead:g} s")  # fmt: skip


STAMP_BITS, STAMP_CELL = 12, 10  # frame number in binary, cells of 10 px along the top edge


def _stamp(canvas: np.ndarray, i: int) -> None:
    for bit in range(STAMP_BITS):
        on = (i >> bit) & 1
        canvas[:STAMP_CELL, bit * STAMP_CELL : (bit + 1) * STAMP_CELL] = 255 if on else 0


def read_stamp(img: np.ndarray) -> float:
    """The scenario time (s) of a stamped frame (BGR, at the scenario's size), as drawn by
    `frames`: read from the middle of each cell, so JPEG and drawn overlays do not matter."""
    c = STAMP_CELL // 2
    bits = [int(img[c - 2 : c + 2, b * STAMP_CELL + c - 2 : b * STAMP_CELL + c + 2].mean() > 128)
            for b in range(STAMP_BITS)]  # fmt: skip
    return sum(bit << k for k, bit in enumerate(bits)) / FPS


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        *(walker_in_front(lead) for lead in (0.0, 0.125, 0.25, 0.375)),
        _park("park", 60, 5, None, "a vehicle stops in the road at 5 s and stays"),
        _park("park-late", 60, 16, None, "a vehicle stops in the road at 16 s and stays"),
        _park("park-leave", 45, 5, 22, "a vehicle stops at 5 s and drives off at 22 s"),
        _park("short-stop", 40, 6, 9, "a vehicle stops for 3 s and drives on"),
        Scenario(
            "park-plate", 60,
            (Actor("truck", PLATE_VEHICLE[0], drive(2, 5, 240, None, y=470), plate=(PLATE_TEXT, PLATE_VEHICLE[1])),),
            what=f"a vehicle with the plate {PLATE_TEXT} ({PLATE_VEHICLE[1]} px high) stops in the road at 5 s and stays",
        ),
        Scenario(
            "park-return", 60,
            (Actor("truck", 110, drive(2, 5, 240, 14)), Actor("truck", 110, drive(21, 24, 240, None))),
            what="a vehicle stops at 5 s, drives off at 14 s, and is back on the same spot at 24 s",
        ),
        Scenario(
            "pass", 40,
            (Actor("truck", 110, ((4, -260, 445), (11, 680, 445))),),
            what="a vehicle drives through without stopping",
        ),
        Scenario(
            "occluded", 60,
            (
                Actor("truck", 110, drive(2, 5, 240, None)),
                # A bus pulls up in front of it for four seconds, hiding it, and leaves.
                Actor("bus", 200, ((7, 700, 478), (8, 180, 478), (12, 180, 478), (13, -500, 478))),
            ),
            what="a vehicle stops at 5 s; a bus hides it from 8 s to 12 s",
        ),
        Scenario(
            "stall", 60,
            (
                Actor("stall", 120, ((5, 300, 300), (60, 300, 300))),
                Actor("person", 130, ((3, 660, 310), (5, 450, 310), (60, 450, 310))),
            ),
            what="a stall is set up on the pavement at 5 s, its keeper beside it",
        ),
        Scenario(
            "walkers", 40,
            (
                Actor("person", 130, ((3, -60, 310), (12, 660, 310))),
                Actor("person2", 120, ((5, 660, 280), (15, -80, 280))),
                Actor("person", 140, ((8, -60, 320), (16, 660, 320))),
            ),
            what="people walk along the pavement",
        ),
        Scenario(
            "demo", 90,
            (
                Actor("truck", 110, ((3, -260, 445), (9, 680, 445))),
                Actor("truck", 110, drive(9, 12, 240, 70)),
                Actor("stall", 120, ((20, 60, 300), (80, 60, 300))),
                Actor("person", 130, ((16, -60, 310), (20, 200, 310), (80, 200, 310))),
                Actor("person2", 120, ((30, 660, 280), (40, -80, 280))),
            ),
            what="the demo camera: a vehicle passes, another parks from 12 s to 70 s, a stall "
                 "stands on the pavement from 20 s to 80 s, people walk by",
        ),
    )
}  # fmt: skip


def frames(scenario: Scenario):
    """The scenario's pictures (BGR), FPS a second."""
    unseen = street_frames()[TRAIN_FRAMES:]
    first = scenario.background * 37
    drawn = [(a, _sprite(a.sprite)) for a in scenario.actors]
    for i in range(round(scenario.seconds * FPS)):
        t = i / FPS
        canvas = unseen[(first + (i if scenario.busy else 0)) % len(unseen)].copy()
        for actor, sprite in drawn:
            where = actor.at(t)
            if where is not None:
                box = paste(canvas, sprite, where[0], where[1], actor.height)
                if box is not None and actor.plate is not None:
                    text, height = actor.plate
                    x, y = plate_spot(sprite, where[0], where[1], actor.height, height)
                    put_plate(canvas, text, x, y, height)
        if scenario.stamp:
            _stamp(canvas, i)
        yield canvas


def plate_spot(sprite: Sprite, x: int, y: int, height: int, plate_height: int) -> tuple[int, int]:
    """Top-left corner of a plate `plate_height` px high on a sprite pasted `height` px high
    with its bottom-left at (x, y): at its rear end, a little above the bumper's line."""
    return x + round(0.01 * sprite.image.shape[1] * height / sprite.image.shape[0]), (
        y - round(0.38 * height) - plate_height // 2
    )


def render(scenario: Scenario, path: Path) -> Path:
    """Write the scenario as an H.264 MP4 (one key frame a second, no B-frames)."""
    return write_mp4(frames(scenario), path, FPS)


def rendered(name: str, directory: Path) -> Path:
    """The scenario's video under `directory`, rendered once."""
    path = directory / f"{name}.mp4"
    return path if path.is_file() else render(SCENARIOS[name], path)
