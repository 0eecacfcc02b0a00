"""Grids tag tickets; a surge of tickets in one grid raises one warning."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from test_dispatch_deadlines import connect

from support.procs import GRIDWATCH


def square(name: str, lat: float, lon: float, size: float) -> dict:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {
        "type": "Feature",
        "properties": {"name": name},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }


@pytest.fixture
def grids_file(tmp_path):
    path = tmp_path / "grids.geojson"
    features = [square("north-3", 31.26, 120.92, 0.01), square("south-1", 31.24, 120.92, 0.01)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


async def test_tickets_are_tagged_and_a_surge_warns_once(gridwatch_factory, grids_file, http):
    gw = gridwatch_factory(
        {
            "grids": {"geojson": str(grids_file), "warn": {"window_s": 120, "threshold": 5}},
            "dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}},
        }
    )
    wall = await connect(http, gw, "dispatcher")
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}

    async def open_at(lat: float, lon: float, key: str) -> dict:
        body = {"category": "illegal_parking", "location": {"lat": lat, "lon": lon}, "key": key}
        async with http.post(gw.base + "/api/tickets", json=body, headers=h) as r:
            assert r.status == 201
            return await r.json()

    south = [await open_at(31.245, 120.925, f"s-{i}") for i in range(2)]
    assert {t["grid"] for t in south} == {"south-1"}
    outside = await open_at(31.30, 120.90, "o-1")
    assert outside["grid"] is None
    north = await asyncio.gather(*(open_at(31.265, 120.925, f"n-{i}") for i in range(8)))
    assert {t["grid"] for t in north} == {"north-3"}

    warning = await wall.wait_for("warning", 5)
    assert warning["grid"] == "north-3" and warning["count"] >= 5 and warning["threshold"] == 5
    await asyncio.sleep(1.0)
    assert [e["type"] for e in wall.events].count("warning") == 1
    await wall.close()


def test_bad_grids_file_is_a_config_error(tmp_path):
    bad = tmp_path / "grids.geojson"
    bowtie = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    bad.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "g1"},
                        "geometry": {"type": "Polygon", "coordinates": [bowtie]},
                    }
                ],
            }
        )
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"grids: {{geojson: {bad}}}\n")
    r = subprocess.run(
        [GRIDWATCH, "check-config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1 and "features.0 (g1)" in r.stdout and "Self-intersection" in r.stdout
