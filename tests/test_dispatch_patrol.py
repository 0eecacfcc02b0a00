"""Nearest-officer dispatch on a live patrol: 20 officers sending fixes, a ticket at a point.

The nearest available officer gets the ticket; one lets accept_s pass and one declines,
each time the next nearest gets it; the third walks to the scene and his track puts
the ticket on scene by itself; the ticket's track comes back as GeoJSON.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from gridwatch.dispatch.officers import distance_m

INCIDENT = (31.2600, 120.9200)
M_PER_DEG_LAT = 111_320.0


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / M_PER_DEG_LAT, lon + east_m / (
        M_PER_DEG_LAT * math.cos(math.radians(lat))
    )


# Who stands where (metres from the incident): the three who can log in are nearest.
START = {"officer2": (120, 0), "officer3": (0, -190), "officer": (-260, 0)}
START |= {
    f"p-{i:02d}": (400 + 70 * i * math.cos(i), 400 + 70 * i * math.sin(i)) for i in range(4, 21)
}


class Patrol:
    """Each officer walks a small square around his start; `officer` can be sent walking."""

    def __init__(self) -> None:
        self.pos = {o: offset(*INCIDENT, n, e) for o, (n, e) in START.items()}
        self.heading = {o: i % 4 for i, o in enumerate(START)}
        self.target: dict[str, tuple[float, float]] = {}

    def step(self, metres: float) -> list[dict]:
        now = time.time()
        fixes = []
        for o, (lat, lon) in self.pos.items():
            if o in self.target:
                tlat, tlon = self.target[o]
                d = distance_m(lat, lon, tlat, tlon)
                f = min(1.0, metres / d) if d else 1.0
                lat, lon = lat + (tlat - lat) * f, lon + (tlon - lon) * f
            else:
                dn, de = [(1, 0), (0, 1), (-1, 0), (0, -1)][self.heading[o]]
                lat, lon = offset(lat, lon, dn * 5, de * 5)
                self.heading[o] = (self.heading[o] + 1) % 4
            self.pos[o] = (lat, lon)
            fixes.append(
                {"officer": o, "lat": lat, "lon": lon, "accuracy": 5.0, "speed": 1.4, "time": now}
            )
        return fixes


@pytest.fixture
def gw(gridwatch_factory):
    return gridwatch_factory(
        {
            "officers": [{"id": o} for o in START if o.startswith("p-")],
            "dispatch": {
                "accept_s": 2,
                "arrive_s": 60,
                "arrive_radius_m": 30,
                "remind_before_s": 0,
            },
        }
    )


async def test_nearest_officer_dispatch_pass_on_arrival_and_track(gw, http):
    tokens = {u: gw.token(u) for u in ("tracker", "dispatcher", "officer", "officer2", "officer3")}

    def h(u: str) -> dict:
        return {"Authorization": f"Bearer {tokens[u]}"}

    patrol = Patrol()
    stop = asyncio.Event()

    async def report() -> None:
        # The AVL feed reports those without a login (they are never offered a ticket:
        # nobody would answer); the others' phones send their own.
        while not stop.is_set():
            fixes = patrol.step(1.0)
            batches = [("tracker", [f for f in fixes if f["officer"].startswith("p-")])]
            batches += [(f["officer"], [f]) for f in fixes if not f["officer"].startswith("p-")]
            for who, batch in batches:
                async with http.post(gw.base + "/api/tracks", json={"fixes": batch}, headers=h(who)) as r:
                    assert r.status == 200, await r.text()
            await asyncio.sleep(0.3)

    reporter = asyncio.create_task(report())
    try:
        await asyncio.sleep(1.0)  # everyone has a fresh fix
        async with http.get(gw.base + "/api/officers", headers=h("dispatcher")) as r:
            officers = {o["id"]: o for o in (await r.json())["officers"]}
        assert len(officers) == 20 and all(o["status"] == "available" for o in officers.values())

        lat, lon = INCIDENT
        body = {"category": "illegal_parking", "location": {"lat": lat, "lon": lon}, "key": "v-100"}
        async with http.post(gw.base + "/api/tickets", json=body, headers=h("dispatcher")) as r:
            ticket = await r.json()
            assert r.status == 201, ticket
        tid = ticket["id"]
        assert ticket["state"] == "dispatched" and ticket["assignee"] == "officer2"

        # officer2 lets accept_s (2 s) pass: the next nearest, officer3, gets it.
        async def assignee_becomes(who: str, timeout: float) -> dict:
            async with asyncio.timeout(timeout):
                while True:
                    async with http.get(
                        f"{gw.base}/api/tickets/{tid}", headers=h("dispatcher")
                    ) as r:
                        t = await r.json()
                    if t["assignee"] == who and t["state"] == "dispatched":
                        return t
                    await asyncio.sleep(0.1)

        t = await assignee_becomes("officer3", timeout=6)
        assert t["barred"]["officer2"] > time.time() + 500  # for decline_bar_s, not for ever
        assert any(
            e["action"] == "decline" and "not accepted within 2 s" in e["why"] for e in t["log"]
        )

        # officer3 declines: officer gets it, accepts, and walks there.
        async with http.post(
            f"{gw.base}/api/tickets/{tid}/actions",
            json={"action": "decline", "reason": "on lunch"},
            headers=h("officer3"),
        ) as r:
            assert r.status == 200
        t = await assignee_becomes("officer", timeout=3)
        dispatched_at = t["times"]["dispatched"]
        async with http.post(
            f"{gw.base}/api/tickets/{tid}/actions", json={"action": "accept"}, headers=h("officer")
        ) as r:
            assert r.status == 200
        async with http.get(gw.base + "/api/officers", headers=h("dispatcher")) as r:
            status = {o["id"]: o["status"] for o in (await r.json())["officers"]}
        assert status["officer"] == "busy" and status["officer2"] == "available"

        patrol.target["officer"] = INCIDENT  # walks there, 30 m at a time (a brisk test)
        async with asyncio.timeout(20):
            while True:
                async with http.get(f"{gw.base}/api/tickets/{tid}", headers=h("officer")) as r:
                    t = await r.json()
                if t["state"] == "on_scene":
                    break
                patrol.step(30.0)
                await asyncio.sleep(0.2)
        arrive = next(e for e in t["log"] if e["action"] == "arrive")
        assert arrive["role"] == "system" and "track" in arrive["why"]

        async with http.get(f"{gw.base}/api/tickets/{tid}/track", headers=h("dispatcher")) as r:
            track = await r.json()
        assert track["type"] == "Feature" and track["geometry"]["type"] == "LineString"
        coords = track["geometry"]["coordinates"]
        props = track["properties"]
        assert props["officer"] == "officer" and len(coords) >= 5
        assert all(ts >= dispatched_at for ts in props["times"])
        last_lon, last_lat = coords[-1]
        assert distance_m(last_lat, last_lon, *INCIDENT) <= 30 + 35  # within a step of the radius
        first_lon, first_lat = coords[0]
        start = distance_m(first_lat, first_lon, *INCIDENT)
        assert start > 150, (props, coords)  # the track begins where he was sent from
        # The path is at least as long as the way from where he started to the scene.
        end = distance_m(last_lat, last_lon, *INCIDENT)
        assert start - end - 1 <= props["distance_m"] <= 2 * start, (props, coords)
        assert props["time_to_arrive_s"] > 0 and props["arrive_deadline_met"] is True
    finally:
        stop.set()
        await reporter
