"""Officers' fixes: a malformed one is named by its field and index and never stored; the
good fixes of a batch are stored whatever the others."""

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
        ({"fixes": [{"lat": 95.0, "lon": 120.9, "time": now}]}, "fixes.0.lat"),
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


async def test_a_bad_fix_does_not_refuse_the_good_ones_of_the_batch(gw, store, http):
    """One phone's clock 30 s ahead must not lose everyone else's fixes: the good ones
    are stored and each bad one is named by its index."""
    dh = {"Authorization": f"Bearer {gw.token('tracker')}"}
    before, _ = stored(store.url)
    now = time.time()
    batch = [{**HERE, "officer": "officer", "time": now},
             {**HERE, "officer": "officer2", "time": now + 60},  # his clock is off
             {"officer": "officer3", "lat": 95.0, "lon": 120.9, "time": now},
             {**HERE, "officer": "nobody", "time": now},
             {**HERE, "officer": "officer3", "time": now - 1}]  # fmt: skip
    async with http.post(gw.base + "/api/tracks", json={"fixes": batch}, headers=dh) as r:
        body = await r.json()
        assert r.status == 200, body
    assert body["stored"] == 2 and body["officers"] == ["officer", "officer3"]
    assert [b["index"] for b in body["rejected"]] == [1, 2, 3]
    assert "time" in body["rejected"][0]["error"] and "future" in body["rejected"][0]["error"]
    assert "lat" in body["rejected"][1]["error"] and "unknown officer" in body["rejected"][2]["error"]
    count, officers = stored(store.url)
    assert count == before + 2 and {b"officer", b"officer3"} <= set(officers)
    # Nothing good at all: 400 with every bad one named.
    async with http.post(gw.base + "/api/tracks", json={"fixes": batch[1:4]}, headers=dh) as r:
        body = await r.json()
        assert r.status == 400 and [b["index"] for b in body["rejected"]] == [0, 1, 2], body


async def test_suggest_mode_lists_candidates_for_the_dispatcher(gw, http):
    for o, d in (("officer", 0.002), ("officer2", 0.001), ("officer3", 0.2)):
        fix = {"lat": 31.26 + d, "lon": 120.92, "time": time.time()}
        async with http.post(gw.base + "/api/tracks", json={"fixes": [fix]},
                             headers={"Authorization": f"Bearer {gw.token(o)}"}) as r:  # fmt: skip
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
    first = found["candidates"][0]
    assert found["reason"] is None and first["mode"] == "foot" and first["speed_mps"] == 1.4
    # No road network here: the straight line times the road factor, at his profile's speed.
    assert first["road_m"] == pytest.approx(first["distance_m"] * 1.3, abs=0.2)
    assert first["eta_s"] == pytest.approx(first["road_m"] / 1.4, abs=0.2)
    assert "ETA" in first["why"] and "foot" in first["why"]

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
    assert found["candidates"] == [] and found["reason"] == (
        "no available officer within 5000 m (those in reach: off duty)")
