"""Zones: stored relative to the picture (or in pixels of the frame they were drawn on),
refused with the field and the point named, converted to the pixels of whatever frame
the detector samples, and counting only the classes they name."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from shapely.geometry import Polygon

from gridwatch.contracts.config import format_errors
from gridwatch.contracts.records import load
from gridwatch.detectors.rules import Detection, RuleConfig, ZoneRule, ZoneRules
from gridwatch.media.cameras import stored_camera
from gridwatch.media.config import Zone
from gridwatch.media.zone_shape import fault

ROAD = {"name": "np-1", "kind": "no_parking", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 1]],
        "dwell_s": 60, "hours": "07:00-19:00"}  # fmt: skip
CROSSING = [[0, 0], [1, 1], [1, 0], [0, 1]]  # a bow tie: edge 2-3 crosses edge 0-1 at the middle


def errors(zone: dict) -> list[str]:
    """The errors of `zone` as the first of a list of zones, as the API words them."""
    try:
        Zone.model_validate(zone)
    except ValidationError as e:
        return [f"zones.0.{line}" for line in format_errors(e)]
    return []


def test_relative_and_pixel_zones_become_pixels_of_any_frame():
    relative = Zone.model_validate(ROAD)
    assert relative.frame is None
    assert relative.pixels(640, 360) == [(64, 180), (576, 180), (576, 360), (64, 360)]
    drawn = Zone.model_validate(
        {**ROAD, "polygon": [[192, 540], [1728, 540], [1728, 1080], [192, 1080]], "frame": [1920, 1080]}
    )
    assert drawn.pixels(640, 360) == relative.pixels(640, 360)  # a third of the 1080p pixels
    assert drawn.pixels(1920, 1080) == [(192, 540), (1728, 540), (1728, 1080), (192, 1080)]


@pytest.mark.parametrize(
    ("zone", "error"),
    [
        ({**ROAD, "polygon": [[0, 0], [812, 400], [1, 1]]},
         "zones.0.frame: the polygon is in pixels (point 1 is (812, 400)); give the picture size "
         "it was drawn on as frame: [width, height], or points from 0 to 1"),
        ({**ROAD, "polygon": [[10, 200], [700, 200], [300, 350]], "frame": [640, 360]},
         "zones.0.polygon.1: (700, 200) is outside the 640x360 frame"),
        ({**ROAD, "polygon": CROSSING},
         "zones.0.polygon.2: the edge from point 2 to point 3 crosses the edge from point 0 to "
         "point 1 at (0.5, 0.5)"),
        ({**ROAD, "polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.5, 0.05], [0.1, 0.9]]},
         "zones.0.polygon.2: the edge from point 2 to point 3 crosses the edge from point 0 to "
         "point 1 at (0.524, 0.1)"),
        ({**ROAD, "polygon": [[0, 0], [1, 0], [1, 1], [0.5, 0], [0, 1]]},
         "zones.0.polygon.2: the edge from point 2 to point 3 touches the edge from point 0 to "
         "point 1 at (0.5, 0)"),
        ({**ROAD, "polygon": [[0, 0], [1, 0], [0.5, 0], [0.5, 1]]},
         "zones.0.polygon.1: the polygon turns back on itself at point 1: the edges either side "
         "of it overlap"),
        ({**ROAD, "polygon": [[0, 0], [1, 0], [1, 1], [0, 0]]},
         "zones.0.polygon.3: point 3 repeats point 0 (0, 0): give each corner once (the polygon "
         "closes itself)"),
        ({**ROAD, "polygon": [[0, 0], [0.5, 0.5], [1, 1]]},
         "zones.0.polygon.2: points 0 to 2 lie on one line: the polygon encloses no area"),
        ({**ROAD, "polygon": [[0, 0], [1, 0]]}, "zones.0.polygon: List should have at least 3 items"),
        ({**ROAD, "polygon": [[-0.1, 0], [1, 0], [1, 1]]}, "zones.0.polygon.0.0: Input should be greater than or equal to 0"),
        ({**ROAD, "frame": [0, 1080]}, "zones.0.frame.0: Input should be greater than or equal to 1"),
        ({**ROAD, "classes": []}, "zones.0.classes: List should have at least 1 item"),
        ({**ROAD, "classes": ["x" * 33]}, "zones.0.classes.0: String should have at most 32 characters"),
    ],
)  # fmt: skip
def test_refusals_name_the_field_and_the_point(zone, error):
    found = errors(zone)
    assert len(found) == 1 and found[0].startswith(error), found


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=3, max_size=7, unique=True))
def test_the_point_named_agrees_with_shapely(points):
    """Corners on a small grid (so that many meet, overlap and line up): refused exactly
    when shapely finds no simple polygon with an area, at a point of the polygon."""
    found = fault(points)
    shape = Polygon(points)
    assert (found is None) == (shape.is_valid and shape.area > 0), (points, found)
    if found is not None:
        assert 0 <= found[0] < len(points)


def test_a_stored_camera_keeps_its_place_when_an_older_version_left_unframed_pixel_zones(caplog):
    legacy = {"name": "old", "kind": "no_parking", "polygon": [[100, 200], [600, 200], [600, 350]]}
    blob = json.dumps({"id": "gate", "source": "rtsp://cam/1", "zones": [legacy, ROAD]})
    camera = load(stored_camera, blob, "camera", "gate")
    assert camera is not None and [z.name for z in camera.zones] == ["np-1"]
    assert any(r.msg.startswith("stored zones in pixels with no frame") and r.zones == ["old"]
               for r in caplog.records), caplog.text  # fmt: skip
    # Anything else wrong still keeps the record out, as before.
    broken = json.dumps({"id": "gate", "source": "rtsp://cam/1", "zones": [legacy], "record": {"mode": "x"}})
    assert load(stored_camera, broken, "camera", "gate") is None


async def test_the_api_refuses_with_the_point_first_and_keeps_zones_as_given(gridwatch_factory, http):
    # A 640x360 camera: zones drawn on its 1080p main stream are as good as relative ones.
    gw = gridwatch_factory(
        {"cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=640x360:rate=10"}]}
    )
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    url = gw.base + "/api/cameras/gate/zones"
    drawn = {**ROAD, "name": "np-2", "polygon": [[192, 540], [1728, 540], [1728, 1080]],
             "frame": [1920, 1080], "classes": ["truck"]}  # fmt: skip
    async with http.put(url, json={"zones": [ROAD, {**ROAD, "polygon": CROSSING}]}, headers=h) as r:
        body = await r.json()
        assert r.status == 400 and body["error"] == "invalid_zones", body
        # The location first, as the page reads it to put the error at the point.
        assert body["message"].startswith(
            "zones.1.polygon.2: the edge from point 2 to point 3 crosses the edge from point 0 to point 1"
        ), body
    async with http.put(url, json={"zones": [{**drawn, "frame": None}]}, headers=h) as r:
        body = await r.json()
        assert r.status == 400 and body["message"].startswith("zones.0.frame: the polygon is in pixels")
    async with http.put(url, json={"zones": "everywhere"}, headers=h) as r:
        assert r.status == 400
    async with http.put(url, json={"zones": [ROAD, drawn]}, headers=h) as r:
        assert r.status == 200, await r.text()
    async with http.get(url, headers=h) as r:
        zones = (await r.json())["zones"]
    # As stored: relative points with no frame, pixels with theirs.
    assert [(z["name"], z["polygon"], z["frame"], z["classes"]) for z in zones] == [
        ("np-1", ROAD["polygon"], None, None),
        ("np-2", drawn["polygon"], [1920, 1080], ["truck"]),
    ]
    async with http.put(
        url, json={"zones": [ROAD]}, headers={"Authorization": f"Bearer {gw.token('viewer')}"}
    ) as r:
        assert r.status == 403


async def test_the_api_offers_the_classes_each_kind_counts_and_refuses_others(gridwatch_factory, http):
    # A model of its own: "van" is a vehicle, "kiosk" a stall, "walker" neither.
    classes = {"kiosk": "stall", "lorry": "vehicle", "van": "vehicle", "walker": "person"}
    gw = gridwatch_factory({
        "cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=640x360:rate=10"}],
        "detectors": {"classes": classes},
    })  # fmt: skip
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    url = gw.base + "/api/cameras/gate/zones"
    async with http.get(url, headers=h) as r:
        assert (await r.json()) == {"zones": [], "classes": {"no_parking": ["lorry", "van"], "no_stall": ["kiosk"]}}
    stall = {**ROAD, "name": "st-1", "kind": "no_stall"}
    zones = [{**ROAD, "classes": ["lorry", "carr", "walker"]}, {**stall, "classes": ["van"]}]
    async with http.put(url, json={"zones": zones}, headers=h) as r:
        body = await r.json()
    assert r.status == 400 and body["error"] == "invalid_zones", body
    assert body["message"] == (
        "zones.0.classes.1: 'carr' is not a class the detectors count for no_parking (lorry, van); "
        "zones.0.classes.2: 'walker' is not a class the detectors count for no_parking (lorry, van); "
        "zones.1.classes.0: 'van' is not a class the detectors count for no_stall (kiosk)"
    )
    async with http.get(url, headers=h) as r:
        assert (await r.json())["zones"] == []  # nothing of the refused list is kept
    good = [{**ROAD, "classes": ["lorry"]}, {**stall, "classes": ["kiosk"]}]
    async with http.put(url, json={"zones": good}, headers=h) as r:
        body = await r.json()
    assert r.status == 200, body
    assert [z["classes"] for z in body["zones"]] == [["lorry"], ["kiosk"]]
    assert body["classes"]["no_stall"] == ["kiosk"]


async def test_the_default_classes_name_the_coco_and_demo_model_ones(gridwatch_factory, http):
    gw = gridwatch_factory({"cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=640x360:rate=10"}]})
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    url = gw.base + "/api/cameras/gate/zones"
    async with http.put(url, json={"zones": [{**ROAD, "classes": ["vehicle", "carr"]}]}, headers=h) as r:
        body = await r.json()
    assert r.status == 400 and body["message"] == (
        "zones.0.classes.1: 'carr' is not a class the detectors count for no_parking "
        "(vehicle, car, truck, bus, motorcycle)"
    ), body
    async with http.get(url, headers=h) as r:
        offered = (await r.json())["classes"]
    assert offered["no_parking"] == ["vehicle", "car", "truck", "bus", "motorcycle"]
    assert offered["no_stall"][:2] == ["stall", "umbrella"] and "person" not in offered["no_stall"]
    # The cameras routes take zones too: the same check there.
    admin = {"Authorization": f"Bearer {gw.token('admin')}"}
    camera = {"id": "yard", "source": "rtsp://192.0.2.10/1", "zones": [{**ROAD, "classes": ["carr"]}]}
    async with http.post(gw.base + "/api/cameras", json=camera, headers=admin) as r:
        assert r.status == 400 and (await r.json())["message"].startswith("zones.0.classes.0: 'carr'"), await r.text()
    camera = {"id": "gate", "source": "lavfi:testsrc2=size=640x360:rate=10", "zones": [{**ROAD, "classes": ["carr"]}]}
    async with http.put(gw.base + "/api/cameras/gate", json=camera, headers=admin) as r:
        assert r.status == 400 and (await r.json())["message"].startswith("zones.0.classes.0: 'carr'"), await r.text()


def parked(label: str, zone: ZoneRule) -> list:
    """The violations of a `label` standing in `zone` for twice its dwell, at 2 fps."""
    groups = {"car": "vehicle", "truck": "vehicle", "person": "person", "umbrella": "stall"}
    rules = ZoneRules("gate", [zone], RuleConfig(groups, grace_s=10, cooldown_s=300))
    out = []
    for i in range(round(4 * zone.dwell_s)):
        out += rules.update(1000 + i / 2, [Detection(1, label, (200, 250, 360, 340))], datetime(2026, 1, 5, 12))
    return out


def test_a_zone_with_classes_counts_only_those():
    zone = Zone.model_validate({**ROAD, "classes": ["truck"], "hours": None})
    trucks_only = ZoneRule(zone.name, zone.kind, zone.pixels(640, 360), zone.dwell_s, None,
                           frozenset(zone.classes or ()))  # fmt: skip
    every_vehicle = ZoneRule(zone.name, zone.kind, zone.pixels(640, 360), zone.dwell_s)
    assert len(parked("truck", trucks_only)) == 1
    assert parked("car", trucks_only) == []
    assert len(parked("car", every_vehicle)) == 1
    assert parked("umbrella", every_vehicle) == []  # a stall's class is not a vehicle
