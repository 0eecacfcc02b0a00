"""Officers' fixes: malformed ones are refused whole, with the field named, and nothing stored."""

from __future__ import annotations

import time

import pytest
import redis

from support.procs import GridwatchServer, RedisServer

HERE = {"lat": 31.26, "lon": 120.92}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, users, store):
    cfg = {"users": users, "redis": {"url": store.url},
           "dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}}}  # fmt: skip
    server = GridwatchServer(tmp_path_factory.mktemp("fixes"), cfg).start()
    yield server
    server.stop()


def stored(url: str) -> tuple[int, list]:
    r = redis.Redis.from_url(url)
    try:
        tracks = sum(r.xlen(k) for k in r.scan_iter("gw:track:*"))
        return tracks, sorted(r.zrange("gw:officers:geo", 0, -1))
    finally:
        r.close()


async def test_malformed_fixes_are_400_and_nothing_is_stored(gw, store, http):
    h = {"Authorization": f"Bearer {gw.token('officer')}"}
    now = time.time()
    good = {**HERE, "time": now}
    cases = [
        ({"fixes": [good, {"lat": 95.0, "lon": 120.9, "time": now}]}, "fixes.1.lat"),
        ({"fixes": [{"lat": 31.2, "lon": -190.0, "time": now}]}, "fixes.0.lon"),
        ({"fixes": [{**HERE, "time": now + 3600}]}, "fixes.0.time"),
        ({"fixes": [{**HERE, "time": now - 3 * 86400}]}, "fixes.0.time"),
        ({"fixes": [{"lat": "31.26", "lon": 120.92, "time": now}]}, "fixes.0.lat"),
        ({"fixes": [{"lat": 31.26, "lon": 120.92, "time": "noon"}]}, "fixes.0.time"),
        ({"fixes": [{"lat": True, "lon": 120.92, "time": now}]}, "fixes.0.lat"),
        ({"fixes": [{**HERE, "time": now, "speed": -3}]}, "fixes.0.speed"),
        ({"fixes": [{**HERE, "time": now, "heading": 400}]}, "fixes.0.heading"),
        ({"fixes": [{**HERE}]}, "fixes.0.time"),
        ({"fixes": []}, "fixes"),
        ({"fixes": [good] * 1001}, "fixes"),
        ({"points": [good]}, "points"),
    ]
    for body, field in cases:
        async with http.post(gw.base + "/api/tracks", json=body, headers=h) as r:
            assert r.status == 400, (field, await r.text())
            message = (await r.json())["message"]
            assert field in message, (field, message)
    async with http.post(
        gw.base + "/api/tracks",
        data=b'{"fixes": [{"lat": NaN}]}',
        headers=h | {"Content-Type": "application/json"},
    ) as r:
        assert r.status == 400
    async with http.post(
        gw.base + "/api/tracks", json={"fixes": [{**good, "officer": "officer2"}]}, headers=h
    ) as r:
        assert r.status == 403  # an officer sends only his own position
    dh = {"Authorization": f"Bearer {gw.token('tracker')}"}
    async with http.post(
        gw.base + "/api/tracks", json={"fixes": [{**good, "officer": "nobody"}]}, headers=dh
    ) as r:
        assert r.status == 400 and "unknown officer" in (await r.json())["message"]
    async with http.post(
        gw.base + "/api/tracks",
        json={"fixes": [good]},
        headers={"Authorization": f"Bearer {gw.token('viewer')}"},
    ) as r:
        assert r.status == 403
    assert stored(store.url) == (0, []), "a refused batch left something behind"

    async with http.post(gw.base + "/api/tracks", json={"fixes": [good]}, headers=h) as r:
        assert r.status == 200
    assert stored(store.url) == (1, [b"officer"])


async def test_suggest_mode_lists_candidates_for_the_dispatcher(gw, http):
    dh = {"Authorization": f"Bearer {gw.token('tracker')}"}
    fixes = [{"officer": o, "lat": 31.26 + d, "lon": 120.92, "time": time.time()}
             for o, d in (("officer", 0.002), ("officer2", 0.001), ("officer3", 0.2))]  # fmt: skip
    async with http.post(gw.base + "/api/tracks", json={"fixes": fixes}, headers=dh) as r:
        assert r.status == 200
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    body = {"category": "illegal_parking", "location": HERE}
    async with http.post(gw.base + "/api/tickets", json=body, headers=h) as r:
        ticket = await r.json()
    assert ticket["state"] == "new"  # suggest mode: nobody is sent until a dispatcher chooses
    async with http.get(f"{gw.base}/api/tickets/{ticket['id']}/candidates", headers=h) as r:
        found = await r.json()
    assert [c["officer"] for c in found["candidates"]] == [
        "officer2",
        "officer",
    ]  # officer3 is 22 km off
    assert found["candidates"][0]["distance_m"] == pytest.approx(111, abs=2)
    assert found["candidates"][0]["eta_s"] > 0 and found["reason"] is None

    # Off duty: not offered any more, and the reason says so when nobody is left.
    for officer in ("officer2", "officer"):
        oh = {"Authorization": f"Bearer {gw.token(officer)}"}
        async with http.post(
            f"{gw.base}/api/officers/{officer}/duty", json={"on_duty": False}, headers=oh
        ) as r:
            assert r.status == 200
    async with http.post(
        f"{gw.base}/api/officers/officer3/duty", json={"on_duty": False}, headers=oh
    ) as r:
        assert r.status == 403  # an officer changes only his own duty
    async with http.get(gw.base + "/api/officers", headers=h) as r:
        status = {o["id"]: o["status"] for o in (await r.json())["officers"]}
    assert (
        status["officer"] == status["officer2"] == "off_duty" and status["officer3"] == "available"
    )
    async with http.get(f"{gw.base}/api/tickets/{ticket['id']}/candidates", headers=h) as r:
        found = await r.json()
    assert found["candidates"] == [] and "2 off duty" in found["reason"]
