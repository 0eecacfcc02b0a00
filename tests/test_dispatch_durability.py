"""Open tickets survive redis-server being killed and gridwatch serve being restarted."""

from __future__ import annotations

import asyncio
import time

import redis

from support.procs import GridwatchServer, RedisServer

INCIDENT = {"lat": 31.2600, "lon": 120.9200}
FAR = {"lat": 31.2630, "lon": 120.9200}


async def snapshot(http, gw, token: str) -> dict[str, dict]:
    h = {"Authorization": f"Bearer {token}"}
    async with http.get(gw.base + "/api/tickets?limit=1000", headers=h) as r:
        tickets = (await r.json())["tickets"]
    out = {}
    for t in tickets:
        async with http.get(f"{gw.base}/api/tickets/{t['id']}", headers=h) as r:
            out[t["id"]] = await r.json()
    return out


async def test_no_ticket_transition_or_deadline_lost(tmp_path, users, http):
    store = RedisServer(tmp_path / "redis").start()
    cfg = {
        "users": users,
        "redis": {"url": store.url},
        # The arrive deadline must outlast a Redis restart and a node restart on a busy
        # machine (14 s did not always), and then fire.
        "dispatch": {"accept_s": 600, "arrive_s": 40, "remind_before_s": 0},
    }
    gw = GridwatchServer(tmp_path / "node", cfg).start()
    try:
        async with http.post(
            gw.base + "/api/tracks",
            json={"fixes": [{**FAR, "time": time.time()}]},
            headers={"Authorization": f"Bearer {gw.token('officer')}"},
        ) as r:
            assert r.status == 200
        admin = gw.token("admin")
        h = {"Authorization": f"Bearer {admin}"}
        ids = []
        for i in range(6):
            body = {"category": "illegal_parking", "location": INCIDENT, "key": f"k-{i}"}
            async with http.post(gw.base + "/api/tickets", json=body, headers=h) as r:
                ids.append((await r.json())["id"])
        # One dispatched to the officer (with an arrive deadline 40 s out), the rest moved by hand.
        async with http.post(
            f"{gw.base}/api/tickets/{ids[1]}/actions",
            json={"action": "reject", "reason": "dup"},
            headers=h,
        ) as r:
            assert r.status == 200
        async with http.post(
            f"{gw.base}/api/tickets/{ids[2]}/actions", json={"action": "cancel"}, headers=h
        ) as r:
            assert r.status == 200
        before = await snapshot(http, gw, admin)
        r0 = redis.Redis.from_url(store.url)
        deadlines = {m.decode(): s for m, s in r0.zrange("gw:deadlines", 0, -1, withscores=True)}
        r0.close()
        assert any(m.startswith(f"{ids[0]}:arrive") for m in deadlines), deadlines

        # redis-server dies at once; the node answers 503 meanwhile and does not fall over.
        store.kill()
        async with http.get(gw.base + "/api/tickets", headers=h) as r:
            assert r.status == 503 and (await r.json())["error"] == "unavailable"
        async with http.get(gw.base + "/healthz") as r:
            assert r.status == 503
        store = RedisServer(tmp_path / "redis", port=store.port).start()  # same data dir: the AOF
        async with asyncio.timeout(10):
            while True:
                async with http.get(gw.base + "/healthz") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.2)
        assert await snapshot(http, gw, admin) == before

        # And the node itself restarts: everything is still there, and the timers still fire.
        gw.stop()
        gw = GridwatchServer(tmp_path / "node2", cfg).start()
        admin = gw.token("admin")
        after = await snapshot(http, gw, admin)
        assert after == before
        r1 = redis.Redis.from_url(store.url)
        assert {
            m.decode(): s for m, s in r1.zrange("gw:deadlines", 0, -1, withscores=True)
        } == deadlines
        r1.close()
        async with asyncio.timeout(60):
            while True:
                t = (await snapshot(http, gw, admin))[ids[0]]
                if t["overdue"]:
                    break
                await asyncio.sleep(0.3)
        assert any(e["action"] == "overdue" for e in t["log"])
        assert t["state"] == "dispatched"  # the arrive deadline passed; the accept one has not
    finally:
        gw.stop()
        store.stop()
