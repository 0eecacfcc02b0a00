"""Evidence pictures: what a detector sends is saved once and served only to who may see
the ticket, and no name a client can make reaches outside the evidence folder."""

from __future__ import annotations

import asyncio
import json
import os
import time

import cv2
import numpy as np
import redis

POSITION = {"lat": 31.2601, "lon": 120.9203}


def picture(colour: int) -> bytes:
    img = np.full((48, 64, 3), colour, np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


async def test_violation_pictures_become_ticket_evidence_served_safely(
    redis_server, gridwatch_factory, http
):
    gw = gridwatch_factory({
        "redis": {"url": redis_server.url},
        "dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}},
        "cameras": [{"id": "gate", "source": "lavfi:testsrc", "position": POSITION}],
    })  # fmt: skip
    r = redis.Redis.from_url(redis_server.url)
    now = time.time()
    event = {"id": "gate:np-1:abc", "camera": "gate", "zone": "np-1", "kind": "no_parking",
             "label": "vehicle", "box": [10, 20, 30, 40], "first_seen": now - 60, "confirmed": now}  # fmt: skip
    fields = {"violation": json.dumps(event), "first.jpg": picture(40), "confirmed.jpg": picture(120),
              "crop.jpg": picture(200)}  # fmt: skip
    r.xadd("gw:violations", fields)
    r.xadd("gw:violations", fields)  # redelivered by a retrying worker: still one ticket
    disp = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    async with asyncio.timeout(10):
        while True:
            async with http.get(gw.base + "/api/tickets", headers=disp) as resp:
                tickets = (await resp.json())["tickets"]
            if tickets and r.xlen("gw:violations") == 0:
                break
            await asyncio.sleep(0.2)
    assert len(tickets) == 1
    t = tickets[0]
    assert t["detection"] == {"zone": "np-1", "kind": "no_parking", "label": "vehicle",
                              "box": [10.0, 20.0, 30.0, 40.0]}  # fmt: skip
    async with http.get(f"{gw.base}/api/tickets/{t['id']}/evidence", headers=disp) as resp:
        listed = (await resp.json())["evidence"]
    assert [e["name"].split("/")[-1] for e in listed] == ["first.jpg", "confirmed.jpg", "crop.jpg"]
    for item, colour in zip(listed, (40, 120, 200), strict=True):
        async with http.get(gw.base + item["url"], headers=disp) as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg"
            img = cv2.imdecode(np.frombuffer(await resp.read(), np.uint8), cv2.IMREAD_COLOR)
            assert abs(float(img.mean()) - colour) < 3
    url = listed[0]["url"]
    async with http.get(gw.base + url) as resp:
        assert resp.status == 401
    officer = {"Authorization": f"Bearer {gw.token('officer')}"}  # not his ticket
    async with http.get(gw.base + url, headers=officer) as resp:
        assert resp.status == 403 and (await resp.json())["error"]

    # A ticket that names files outside the evidence folder, and a link that leads out.
    evidence_root = gw.workdir / "data" / "evidence"
    os.symlink(gw.workdir / "config.yaml", evidence_root / "sneaky.jpg")
    body = {"location": POSITION, "evidence": ["../config.yaml", "/etc/passwd", "sneaky.jpg",
                                               "..%2Fconfig.yaml"]}  # fmt: skip
    async with http.post(gw.base + "/api/tickets", json=body, headers=disp) as resp:
        bad = await resp.json()
    async with http.get(f"{gw.base}/api/tickets/{bad['id']}/evidence", headers=disp) as resp:
        assert all(e["url"] is None for e in (await resp.json())["evidence"])
    for name in ("../config.yaml", "%2Fetc%2Fpasswd", "sneaky.jpg", "..%2Fconfig.yaml",
                 "..%252Fconfig.yaml", listed[0]["name"]):  # fmt: skip
        # listed[0]: a real picture, but of another ticket.
        path = f"/api/tickets/{bad['id']}/evidence/{name}"
        async with http.get(gw.base + path, headers=disp) as resp:
            assert resp.status == 404, (name, resp.status)
            assert "password" not in (await resp.text())
    r.close()
