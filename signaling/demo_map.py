"""The demo's district: a small town map generated around the demo cameras, written as the
GeoJSON files a centre would provide (roads, buildings, a river, a park) and the grids
that tag its tickets. Made the same way every time, from nothing outside the machine.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

HALF_M = 700.0  # the district reaches this far from its centre, each way
BLOCK_M = 175.0  # distance between streets
ROAD_M = 14.0  # a street's width (buildings keep clear of it)
RIVER = (-420.0, -470.0)  # the river runs east-west between these northings


def _point(center: tuple[float, float], north_m: float, east_m: float) -> list[float]:
    """[lon, lat] of a point `north_m`, `east_m` from `center` (lat, lon)."""
    lat = center[0] + north_m / 111_320
    lon = center[1] + east_m / (111_320 * math.cos(math.radians(center[0])))
    return [round(lon, 7), round(lat, 7)]


def _box(center, n0: float, e0: float, n1: float, e1: float) -> list[list[list[float]]]:
    ring = [_point(center, n0, e0), _point(center, n0, e1), _point(center, n1, e1),
            _point(center, n1, e0), _point(center, n0, e0)]  # fmt: skip
    return [ring]


def _collection(features: list[dict]) -> dict:
    return {"type": "FeatureCollection", "features": features}


def _feature(geometry: dict, **props) -> dict:
    return {"type": "Feature", "properties": props, "geometry": geometry}


def district(center: tuple[float, float]) -> dict[str, dict]:
    """The district's layers as FeatureCollections: roads, buildings, water, green, grids."""
    lines = [i * BLOCK_M for i in range(-int(HALF_M // BLOCK_M), int(HALF_M // BLOCK_M) + 1)]
    roads = []
    for k in lines:
        if RIVER[1] < k < RIVER[0]:
            continue
        roads.append(_feature({"type": "LineString", "coordinates": [
            _point(center, k, -HALF_M), _point(center, k, HALF_M)]}, name=f"{k:+.0f} m street"))  # fmt: skip
        # North-south streets cross the river on a bridge only every other block.
        south = -HALF_M if int(k // BLOCK_M) % 2 == 0 else RIVER[0]
        roads.append(_feature({"type": "LineString", "coordinates": [
            _point(center, south, k), _point(center, HALF_M, k)]}, name=f"{k:+.0f} m avenue"))  # fmt: skip
    buildings, green = [], []
    for i, (n0, n1) in enumerate(itertools.pairwise(lines)):
        for j, (e0, e1) in enumerate(itertools.pairwise(lines)):
            if n1 > RIVER[1] and n0 < RIVER[0]:
                continue  # the river's banks
            inner = (n0 + ROAD_M, e0 + ROAD_M, n1 - ROAD_M, e1 - ROAD_M)
            if (i, j) == (4, 2):
                green.append(_feature({"type": "Polygon", "coordinates": _box(center, *inner)}, name="People's Park"))
                continue
            mid_n, mid_e = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
            for bn0, bn1 in ((inner[0], mid_n - 6), (mid_n + 6, inner[2])):
                for be0, be1 in ((inner[1], mid_e - 6), (mid_e + 6, inner[3])):
                    buildings.append(_feature({"type": "Polygon", "coordinates": _box(center, bn0, be0, bn1, be1)}))
    water = [_feature({"type": "Polygon", "coordinates": _box(center, RIVER[1], -HALF_M, RIVER[0], HALF_M)},
                      name="Canal")]  # fmt: skip
    grids = [
        _feature({"type": "Polygon", "coordinates": _box(center, n0, e0, n1, e1)}, name=name)
        for name, (n0, e0, n1, e1) in {
            "north-1": (0, -HALF_M, HALF_M, 0), "north-2": (0, 0, HALF_M, HALF_M),
            "south-1": (-HALF_M, -HALF_M, 0, 0), "south-2": (-HALF_M, 0, 0, HALF_M),
        }.items()
    ]  # fmt: skip
    return {"roads": _collection(roads), "buildings": _collection(buildings),
            "water": _collection(water), "green": _collection(green), "grids": _collection(grids)}  # fmt: skip


def write_district(center: tuple[float, float], folder: Path) -> dict[str, Path]:
    """Write the district's files into `folder`; returns layer name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, doc in district(center).items():
        paths[name] = folder / f"{name}.geojson"
        paths[name].write_text(json.dumps(doc))
    return paths


def place(center: tuple[float, float], north_m: float, east_m: float) -> dict[str, float]:
    """A camera position `north_m`, `east_m` from the centre, as the config takes it."""
    lon, lat = _point(center, north_m, east_m)
    return {"lat": lat, "lon": lon}
