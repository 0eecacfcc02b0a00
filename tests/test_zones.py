"""Zones through the API: malformed polygons are refused with the field named."""

from __future__ import annotations

from support.whep_client import view


async def test_malformed_zones_are_rejected_with_the_field_named(gridwatch_factory, http):
    gw = gridwatch_factory(
        {"cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=640x360:rate=10"}]}
    )
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    url = gw.base + "/api/cameras/gate/zones"
    good = {"name": "np-1", "kind": "no_parking", "polygon": [[10, 200], [300, 200], [300, 350], [10, 350]],
            "dwell_s": 60, "hours": "07:00-19:00"}  # fmt: skip
    bad = [
        (
            {**good, "polygon": [[0, 0], [100, 100], [100, 0], [0, 100]]},
            "zones.0.polygon",
            "Self-intersection",
        ),
        ({**good, "polygon": [[0, 0], [100, 100]]}, "zones.0.polygon", "at least 3"),
        ({**good, "polygon": [[0, 0], [50, 50], [100, 100]]}, "zones.0.polygon", "no area"),
        (
            {**good, "polygon": [[-5, 0], [100, 0], [100, 100]]},
            "zones.0.polygon.0.0",
            "greater than or equal to 0",
        ),
        ({**good, "polygon": [[0, 0], [100, "a"], [100, 100]]}, "zones.0.polygon.1.1", "number"),
        ({**good, "kind": "no_fishing"}, "zones.0.kind", ""),
        ({**good, "hours": "7-19"}, "zones.0.hours", "HH:MM"),
        ({**good, "dwell_s": 0}, "zones.0.dwell_s", ""),
    ]
    for zone, field, why in bad:
        async with http.put(url, json={"zones": [zone]}, headers=h) as r:
            body = await r.json()
            assert r.status == 400, (zone, body)
            assert field in body["message"] and why in body["message"], body["message"]
    async with http.put(url, json={"zones": "everywhere"}, headers=h) as r:
        assert r.status == 400
    async with http.put(url, json={"zones": [good]}, headers=h) as r:
        assert r.status == 200, await r.text()
    async with http.get(url, headers=h) as r:
        assert (await r.json())["zones"][0]["name"] == "np-1"

    # Once the camera's frame size is known (640x360), a zone outside it is refused.
    token = gw.token("viewer")
    viewer = await view(http, gw.base, "gate", token)
    try:
        assert await viewer.wait_frames(3, timeout=5)
        outside = {**good, "polygon": [[10, 200], [700, 200], [300, 350]]}
        async with http.put(url, json={"zones": [good, outside]}, headers=h) as r:
            body = await r.json()
            assert (
                r.status == 400
                and "zones.1.polygon.1: (700, 200) is outside the 640x360 frame" in body["message"]
            )
    finally:
        await viewer.close(http, gw.base, token)
    async with http.put(
        url, json={"zones": [good]}, headers={"Authorization": f"Bearer {gw.token('viewer')}"}
    ) as r:
        assert r.status == 403
