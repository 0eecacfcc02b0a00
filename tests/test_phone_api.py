"""What the officer's phone needs from the server: photos from the scene as evidence
(checked by content, size-limited, listed, served and logged), his own tickets however
many others there are, his camera answers and call media relayed to the right party,
and the heartbeat he must keep."""

from __future__ import annotations

import time

import cv2
import numpy as np
from test_wall_api import call

from support.call_client import connect

INCIDENT = {"lat": 31.2600, "lon": 120.9200}


def picture(kind: str = ".jpg", size: tuple[int, int] = (320, 240)) -> bytes:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    cv2.putText(image, "scene", (20, size[1] // 2), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return cv2.imencode(kind, image)[1].tobytes()


async def upload(http, gw, tid: str, body: bytes, user: str = "officer", ctype: str = "image/jpeg"):
    async with http.post(f"{gw.base}/api/tickets/{tid}/evidence", data=body,
                         headers={"Authorization": f"Bearer {gw.token(user)}", "Content-Type": ctype}) as r:  # fmt: skip
        return r.status, await r.json()


async def ticket_for_officer(http, gw) -> str:
    await call(http, gw, "POST", "/api/tracks", "officer", json={"fixes": [{**INCIDENT, "time": time.time()}]})
    status, t = await call(http, gw, "POST", "/api/tickets", json={"category": "illegal_parking", "location": INCIDENT})
    assert status == 201 and t["assignee"] == "officer", t
    return t["id"]


async def test_photos_from_the_scene_are_checked_stored_listed_and_logged(gridwatch_factory, http):
    gw = gridwatch_factory({"server": {"max_photo_bytes": 64 * 1024}})
    tid = await ticket_for_officer(http, gw)
    # Offered but not accepted: no photos yet.
    assert (await upload(http, gw, tid, picture()))[0] == 409
    await call(http, gw, "POST", f"/api/tickets/{tid}/actions", "officer", json={"action": "accept"})

    status, jpeg = await upload(http, gw, tid, picture())
    assert status == 201 and jpeg["name"].endswith(".jpg"), jpeg
    status, png = await upload(http, gw, tid, picture(".png"), ctype="image/png")
    assert status == 201 and png["name"].endswith(".png")
    async with http.get(gw.base + jpeg["url"], headers={"Authorization": f"Bearer {gw.token('dispatcher')}"}) as r:
        assert r.status == 200 and (await r.read()) == picture()
    status, listed = await call(http, gw, "GET", f"/api/tickets/{tid}/evidence")
    assert [e["name"] for e in listed["evidence"]] == [jpeg["name"], png["name"]]
    status, t = await call(http, gw, "GET", f"/api/tickets/{tid}")
    photos = [e for e in t["log"] if e["action"] == "evidence"]
    assert [e["who"] for e in photos] == ["officer", "officer"] and "320x240" in photos[0]["why"]

    # Refused by content, by size, by who asks.
    not_image = b"\xff\xd8\xff" + b"<script>not a picture</script>" * 10
    assert (await upload(http, gw, tid, not_image))[0] == 415  # the magic alone is not enough
    assert (await upload(http, gw, tid, b"GIF89a" + b"\0" * 100, ctype="image/gif"))[0] == 415
    noisy = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (400, 400, 3), np.uint8))[1].tobytes()
    status, body = await upload(http, gw, tid, noisy, ctype="image/png")
    assert status == 413 and "at most 64 KB" in body["message"]
    assert (await upload(http, gw, tid, picture(), user="officer2"))[0] == 403
    assert (await upload(http, gw, tid, picture(), user="viewer"))[0] == 403
    assert (await upload(http, gw, "T-999999", picture(), user="dispatcher"))[0] == 404


async def test_a_ticket_keeps_every_evidence_file(gridwatch_factory, http):
    gw = gridwatch_factory()
    tid = await ticket_for_officer(http, gw)
    await call(http, gw, "POST", f"/api/tickets/{tid}/actions", "officer", json={"action": "accept"})
    for _ in range(32):
        assert (await upload(http, gw, tid, picture()))[0] == 201
    status, body = await upload(http, gw, tid, picture())
    assert status == 409 and "32 evidence files" in body["message"]
    status, listed = await call(http, gw, "GET", f"/api/tickets/{tid}/evidence")
    assert len(listed["evidence"]) == 32 and all(e["url"] for e in listed["evidence"])


async def test_an_officer_lists_his_own_tickets_however_many_there_are(gridwatch_factory, http):
    gw = gridwatch_factory({"dispatch": {"categories": {"street_stall": {"mode": "suggest"}}}})
    mine = await ticket_for_officer(http, gw)
    for i in range(30):  # newer tickets that are not his
        await call(http, gw, "POST", "/api/tickets", json={"category": "street_stall", "location": INCIDENT, "key": f"k{i}"})
    status, listed = await call(http, gw, "GET", "/api/tickets?limit=5", "officer")
    assert status == 200 and [t["id"] for t in listed["tickets"]] == [mine]
    assert (await call(http, gw, "GET", "/api/tickets?limit=5", "officer2"))[1] == {"tickets": [], "next": None}
    status, me = await call(http, gw, "GET", "/api/me", "officer")
    assert me == {"username": "officer", "role": "officer", "name": None, "on_duty": True, "heartbeat_s": 10.0}


async def test_camera_answers_and_call_media_reach_only_the_right_party(gridwatch_factory, http):
    gw = gridwatch_factory()
    desk = await connect(http, gw.base, gw.token("dispatcher"), "dispatcher", "desk-1")
    other = await connect(http, gw.base, gw.token("admin"), "admin", "desk-2")
    phone = await connect(http, gw.base, gw.token("officer"), "officer", "phone")
    try:
        await desk.send(type="publish.request", to="officer")
        assert (await phone.expect("publish.request"))["by"] == "dispatcher"
        await phone.send(type="publish.answer", to="dispatcher", accepted=False, reason="driving")
        answer = await desk.expect("publish.answer")
        assert answer == {"type": "publish.answer", "officer": "officer", "stream": "phone-officer",
                          "accepted": False, "reason": "driving"}  # fmt: skip
        assert not other.has("publish.answer")
        # Only an officer answers for his camera, and only to a dispatcher.
        await desk.send(type="publish.answer", to="officer", accepted=True)
        assert (await desk.expect("error"))["error"] == "forbidden"
        await phone.send(type="publish.answer", to="officer2", accepted=True)
        assert (await phone.expect("error"))["error"] == "forbidden"

        await desk.send(type="call.invite", to="officer")
        call_id = (await desk.expect("call.ringing"))["call"]
        await phone.expect("call.ring")
        await phone.send(type="call.media", call=call_id, audio=True, video=False)
        assert (await phone.expect("error"))["error"] == "not_active"  # not before it is answered
        await phone.send(type="call.accept", call=call_id)
        await desk.expect("call.accept")
        await phone.send(type="call.media", call=call_id, audio=True, video=False)
        media = await desk.expect("call.media")
        assert media["audio"] is True and media["video"] is False and media["from"] == "officer"
        await other.send(type="call.media", call=call_id, audio=False, video=False)
        assert (await other.expect("error"))["error"] == "forbidden"
    finally:
        for s in (desk, other, phone):
            await s.close()


def test_the_heartbeat_must_leave_room_before_an_officer_goes_stale():
    from gridwatch.signaling.config import ConfigError, parse_config

    try:
        parse_config({"tracks": {"heartbeat_s": 70}, "dispatch": {"stale_s": 120}})
    except ConfigError as e:
        assert any("tracks.heartbeat_s: must be at most half of dispatch.stale_s" in line for line in e.errors), e.errors
    else:
        raise AssertionError("a heartbeat of 70 s with stale_s 120 was accepted")
    assert parse_config({"tracks": {"heartbeat_s": 60}}).tracks.heartbeat_s == 60
