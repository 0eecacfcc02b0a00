"""What the wall reads from the server: alerts and their shared acknowledgement, the base
map and the grids' warning state, officers with their track tails, published streams,
and each user's layout — with the roles and the bad input each must refuse."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

from test_dispatch_deadlines import connect
from test_dispatch_grids import square

from support.procs import GRIDWATCH, RedisServer


def auth(gw, user: str) -> dict:
    return {"Authorization": f"Bearer {gw.token(user)}"}


async def call(http, gw, method: str, path: str, user: str = "dispatcher", **kw) -> tuple[int, object]:
    async with http.request(method, gw.base + path, headers=auth(gw, user), **kw) as r:
        body = await r.json() if r.content_type.endswith("json") else await r.read()
        return r.status, body


def layers(tmp_path) -> dict:
    roads = tmp_path / "roads.geojson"
    roads.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString",
         "coordinates": [[120.91, 31.26], [120.93, 31.26]]}}]}))  # fmt: skip
    grids = tmp_path / "grids.geojson"
    grids.write_text(json.dumps({"type": "FeatureCollection", "features": [
        square("north-3", 31.26, 120.92, 0.01), square("south-1", 31.24, 120.92, 0.01)]}))  # fmt: skip
    return {"map": {"layers": [{"name": "roads", "geojson": str(roads), "kind": "roads"}]},
            "grids": {"geojson": str(grids), "warn": {"window_s": 600, "threshold": 2}},
            "dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}},
            "cameras": [{"id": "gate", "source": "lavfi:testsrc2=size=320x180:rate=5",
                         "position": {"lat": 31.265, "lon": 120.925}}]}  # fmt: skip


async def test_base_map_layers_and_grids_with_their_warning_state(gridwatch_factory, tmp_path, http):
    gw = gridwatch_factory(layers(tmp_path))
    status, m = await call(http, gw, "GET", "/api/map")
    assert status == 200
    assert m["center"] == {"lat": 31.265, "lon": 120.925}  # the cameras' middle, none configured
    assert m["tile_url"] is None and m["layers"] == [{"name": "roads", "kind": "roads", "url": "/api/map/layers/roads"}]
    status, roads = await call(http, gw, "GET", "/api/map/layers/roads")
    assert status == 200 and roads["features"][0]["geometry"]["type"] == "LineString"
    assert (await call(http, gw, "GET", "/api/map/layers/nope"))[0] == 404
    assert (await call(http, gw, "GET", "/api/map", "tracker"))[0] == 403

    for key in ("a", "b"):
        body = {"category": "illegal_parking", "location": {"lat": 31.265, "lon": 120.925}, "key": key}
        assert (await call(http, gw, "POST", "/api/tickets", json=body))[0] == 201
    status, grids = await call(http, gw, "GET", "/api/map/grids", "viewer")
    assert status == 200 and grids["threshold"] == 2
    props = {f["properties"]["name"]: f["properties"] for f in grids["features"]}
    assert props["north-3"] == {"name": "north-3", "count": 2, "warning": True}
    assert props["south-1"] == {"name": "south-1", "count": 0, "warning": False}


def test_check_config_names_a_bad_map_layer(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null}]}')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"map": {"layers": [{"name": "roads", "geojson": str(bad)}],
                                       "tile_url": "http://tiles.local/{z}/{x}.png"}}))  # fmt: skip
    r = subprocess.run([GRIDWATCH, "check-config", str(cfg)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "map.tile_url: Value error, must contain {y}" in r.stdout + r.stderr
    cfg.write_text(json.dumps({"map": {"layers": [{"name": "roads", "geojson": str(bad)}]}}))
    r = subprocess.run([GRIDWATCH, "check-config", str(cfg)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "map.layers.0.geojson" in r.stdout + r.stderr and "features.0: needs a GeoJSON geometry" in r.stdout + r.stderr


async def test_alerts_stay_open_until_one_acknowledgement_for_every_wall(gridwatch_factory, tmp_path, http):
    gw = gridwatch_factory(layers(tmp_path))
    wall_a, wall_b = await connect(http, gw, "dispatcher"), await connect(http, gw, "admin")
    viewer = await connect(http, gw, "viewer")
    for key in ("a", "b", "c", "d"):  # past the threshold twice: one surge alert while it is open
        body = {"category": "illegal_parking", "location": {"lat": 31.265, "lon": 120.925}, "key": key}
        await call(http, gw, "POST", "/api/tickets", json=body)
    raised = await wall_a.wait_for("warning", 5)
    alert = raised["alert"]
    assert alert["kind"] == "surge" and alert["grid"] == "north-3" and alert["acked_by"] is None
    await wall_b.wait_for("warning", 5)
    status, listed = await call(http, gw, "GET", "/api/alerts", "admin")
    assert status == 200 and [a["id"] for a in listed["alerts"]] == [alert["id"]]
    # Viewers and officers neither get alerts nor may acknowledge them.
    assert (await call(http, gw, "GET", "/api/alerts", "viewer"))[0] == 403
    assert (await call(http, gw, "POST", f"/api/alerts/{alert['id']}/ack", "officer"))[0] == 403

    status, acked = await call(http, gw, "POST", f"/api/alerts/{alert['id']}/ack")
    assert status == 200 and acked["acked_by"] == "dispatcher" and acked["acked_at"] >= alert["at"]
    gone = await wall_b.wait_for("alert.ack", 5)
    assert gone["alert"]["id"] == alert["id"]
    assert (await call(http, gw, "POST", f"/api/alerts/{alert['id']}/ack", "admin"))[0] == 409
    assert (await call(http, gw, "POST", "/api/alerts/A-1-nope/ack", "admin"))[0] == 404
    assert (await call(http, gw, "GET", "/api/alerts"))[1] == {"alerts": []}
    status, history = await call(http, gw, "GET", "/api/alerts?state=acked")
    assert [a["id"] for a in history["alerts"]] == [alert["id"]]
    assert (await call(http, gw, "GET", "/api/alerts?state=nonsense"))[0] == 400
    await asyncio.sleep(0.3)
    assert not {"warning", "alert.ack"} & set(viewer.types())
    for s in (wall_a, wall_b, viewer):
        await s.close()


async def test_one_bad_stored_alert_does_not_break_the_list(gridwatch_factory, http, users, tmp_path):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        gw = gridwatch_factory({"redis": {"url": redis.url}, **layers(tmp_path)})
        for key in ("a", "b"):
            body = {"category": "illegal_parking", "location": {"lat": 31.265, "lon": 120.925}, "key": key}
            await call(http, gw, "POST", "/api/tickets", json=body)
        import redis as sync_redis

        r = sync_redis.Redis.from_url(redis.url)
        r.hset("gw:alerts", "A-1-bad", b"{not json")
        r.zadd("gw:alerts:open", {"A-1-bad": time.time()})
        status, listed = await call(http, gw, "GET", "/api/alerts")
        assert status == 200 and [a["kind"] for a in listed["alerts"]] == ["surge"]
        assert '"msg": "stored record is invalid, skipped", "what": "alert", "key": "A-1-bad"' in gw.logs()
    finally:
        redis.stop()


async def test_officers_with_their_tails_and_live_positions_on_the_wall(gridwatch_factory, http):
    gw = gridwatch_factory({"officers": [{"id": "officer", "name": "Wang Lei", "grid": "north-3"}]})
    wall = await connect(http, gw, "viewer")
    now = time.time()
    fixes = [{"lat": 31.26 + i * 1e-4, "lon": 120.92, "time": now - 400 + i * 100} for i in range(5)]
    assert (await call(http, gw, "POST", "/api/tracks", "officer", json={"fixes": fixes}))[0] == 200
    event = await wall.wait_for("officers", 3)
    assert [o["id"] for o in event["officers"]] == ["officer"]
    assert event["officers"][0]["status"] == "available" and event["officers"][0]["lat"] == fixes[-1]["lat"]
    status, body = await call(http, gw, "GET", "/api/officers?tail_s=250", "viewer")
    assert status == 200 and body["stale_s"] == 120
    me = next(o for o in body["officers"] if o["id"] == "officer")
    assert me["name"] == "Wang Lei" and me["grid"] == "north-3"
    assert [t[2] for t in me["tail"]] == [f["time"] for f in fixes[-3:]]  # the last 250 s, oldest first
    for bad in ("tail_s=-1", "tail_s=3601", "tail_s=lots"):
        assert (await call(http, gw, "GET", f"/api/officers?{bad}", "viewer"))[0] == 400
    # Off duty reaches the walls too.
    await call(http, gw, "POST", "/api/officers/officer/duty", "officer", json={"on_duty": False})
    async with asyncio.timeout(3):
        while not any(o["status"] == "off_duty" for e in wall.events if e["type"] == "officers"
                      for o in e["officers"]):  # fmt: skip
            await asyncio.sleep(0.05)
    await wall.close()


async def test_layout_is_kept_per_user_and_checked(gridwatch_factory, http):
    gw = gridwatch_factory()
    assert (await call(http, gw, "GET", "/api/me/layout"))[1] == {"layout": 9, "page": 0, "hidden": [], "streams": []}
    good = {"layout": 16, "page": 2, "hidden": ["gate"], "streams": ["drone-1"]}
    assert (await call(http, gw, "PUT", "/api/me/layout", json=good)) == (200, good)
    assert (await call(http, gw, "GET", "/api/me/layout"))[1] == good
    assert (await call(http, gw, "GET", "/api/me/layout", "admin"))[1]["layout"] == 9  # his own
    for bad in ({"layout": 5}, {"page": -1}, {"hidden": ["../x"]}, {"streams": ["a"] * 65}, {"extra": 1}):
        status, body = await call(http, gw, "PUT", "/api/me/layout", json=bad)
        assert status == 400 and body["error"] == "invalid_layout", (bad, body)
    assert (await call(http, gw, "GET", "/api/me/layout", "officer"))[0] == 403


async def test_published_streams_are_listed_for_those_who_may_watch_them(gridwatch_factory, http):
    gw = gridwatch_factory()
    assert (await call(http, gw, "GET", "/api/streams"))[1] == {"streams": []}
    drone = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-t", "30", "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-pix_fmt", "yuv420p",
         "-f", "flv", f"rtmp://127.0.0.1:{gw.rtmp_port}/live/drone-2?token={gw.token('admin')}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(15):
            while not any(s["online"] for s in (await call(http, gw, "GET", "/api/streams"))[1]["streams"]):
                await asyncio.sleep(0.2)
        listed = (await call(http, gw, "GET", "/api/streams", "viewer"))[1]["streams"]
        assert [(s["id"], s["via"], s["online"]) for s in listed] == [("drone-2", "rtmp", True)]
        assert (await call(http, gw, "GET", "/api/streams", "officer"))[1] == {"streams": []}  # not his to watch
    finally:
        drone.terminate()
        drone.wait()
