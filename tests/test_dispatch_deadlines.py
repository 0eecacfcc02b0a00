"""Deadlines on /ws: a reminder to the officer, an escalation to supervisors, offline
officers getting everything when they reconnect."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

INCIDENT = {"lat": 31.2600, "lon": 120.9200}
FAR = {"lat": 31.2630, "lon": 120.9200}  # ~330 m north: he will not arrive in 3 s


class Socket:
    """A /ws connection that collects what it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.events: list[dict] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(msg.json())

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def alerts(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == "alert" and e["alert"]["kind"] == kind]

    async def wait_for(self, kind: str, timeout: float, alert: str | None = None) -> dict:
        """The first event of type `kind` (of an alert's kind `alert`)."""
        async with asyncio.timeout(timeout):
            while True:
                for e in self.events:
                    if e["type"] == kind and (alert is None or e["alert"]["kind"] == alert):
                        return e
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.ws.close()
        await self.task


@pytest.fixture
def gw(gridwatch_factory):
    return gridwatch_factory({"dispatch": {"accept_s": 60, "arrive_s": 3, "remind_before_s": 1.5}})


async def connect(http, gw, user: str) -> Socket:
    ws = await http.ws_connect(
        gw.base + "/ws", headers={"Authorization": f"Bearer {gw.token(user)}"}
    )
    sock = Socket(ws)
    await sock.wait_for("hello", 5)
    return sock


async def post_fix(http, gw, user: str, where: dict) -> None:
    fix = {"fixes": [{**where, "time": time.time()}]}
    async with http.post(
        gw.base + "/api/tracks", json=fix, headers={"Authorization": f"Bearer {gw.token(user)}"}
    ) as r:
        assert r.status == 200, await r.text()


async def test_reminder_then_escalation_to_the_right_roles(gw, http):
    await post_fix(http, gw, "officer", FAR)
    socks = {
        u: await connect(http, gw, u)
        for u in ("officer", "officer2", "dispatcher", "admin", "viewer")
    }
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    async with http.post(
        gw.base + "/api/tickets",
        json={"category": "illegal_parking", "location": INCIDENT},
        headers=h,
    ) as r:
        ticket = await r.json()
    assert ticket["assignee"] == "officer", ticket
    t0 = time.monotonic()
    tid = ticket["id"]
    oh = {"Authorization": f"Bearer {gw.token('officer')}"}
    async with http.post(
        f"{gw.base}/api/tickets/{tid}/actions", json={"action": "accept"}, headers=oh
    ) as r:
        assert r.status == 200

    reminder = await socks["officer"].wait_for("ticket.reminder", 5)
    assert reminder["ticket"]["id"] == tid and reminder["step"] == "arrive"
    assert 1.0 <= time.monotonic() - t0 < 3.0, "the reminder comes before the deadline"
    for user in ("dispatcher", "admin"):
        escalation = await socks[user].wait_for("alert", 5, alert="escalation")
        assert escalation["ticket"]["id"] == tid and escalation["step"] == "arrive"
        assert escalation["ticket"]["overdue"] is True and escalation["alert"]["level"] == "critical"
    assert time.monotonic() - t0 >= 2.9
    await asyncio.sleep(0.5)
    assert "alert" not in socks["officer"].types()
    assert "alert" not in socks["viewer"].types()  # a viewer is no supervisor
    assert "ticket.reminder" not in socks["officer2"].types()
    # Supervisors get the reminder too, as an alert that stays until acknowledged; each
    # alert once, and the wall's ticket events once each.
    alert = (await socks["dispatcher"].wait_for("alert", 1, alert="reminder"))["alert"]
    assert alert["kind"] == "reminder" and alert["ticket"] == tid
    assert "ticket.reminder" not in socks["dispatcher"].types()
    for kind in ("reminder", "escalation"):
        assert len(socks["dispatcher"].alerts(kind)) == 1
    assert socks["viewer"].types().count("ticket.overdue") == 1
    # The wall sees every change of the ticket as it happens.
    assert {"ticket.created", "ticket.dispatch", "ticket.accept", "ticket.overdue"} <= set(
        socks["viewer"].types()
    )

    async with http.get(f"{gw.base}/api/tickets/{tid}", headers=h) as r:
        t = await r.json()
    assert t["overdue"] is True and t["state"] == "accepted"
    assert any(e["action"] == "overdue" and "arrive deadline passed" in e["why"] for e in t["log"])
    for s in socks.values():
        await s.close()


async def test_offline_officer_gets_his_ticket_on_reconnect_once(gw, http):
    await post_fix(http, gw, "officer2", FAR)
    h = {"Authorization": f"Bearer {gw.token('dispatcher')}"}
    async with http.post(
        gw.base + "/api/tickets", json={"category": "street_stall", "location": INCIDENT}, headers=h
    ) as r:
        ticket = await r.json()
    assert ticket["assignee"] == "officer2"

    sock = await connect(http, gw, "officer2")  # he was offline when it was dispatched
    event = await sock.wait_for("ticket.dispatch", 5)
    assert event["ticket"]["id"] == ticket["id"] and event["id"]
    await sock.ws.send_json({"type": "ack", "id": event["id"]})
    await sock.ws.send_json({"type": "ping"})
    await sock.wait_for("pong", 5)
    await sock.close()

    again = await connect(http, gw, "officer2")
    await again.ws.send_json({"type": "ping"})
    await again.wait_for("pong", 5)
    assert "ticket.dispatch" not in again.types(), "an acknowledged event came back"
    await again.close()


async def test_fixes_over_ws_and_bad_messages(gw, http):
    sock = await connect(http, gw, "officer")
    await sock.ws.send_json({"type": "track.fix", "lat": 91, "lon": 0, "time": time.time()})
    err = await sock.wait_for("error", 5)
    assert err["error"] == "invalid_fix" and "lat" in err["message"]
    await sock.ws.send_json({"type": "track.fix", **INCIDENT, "time": time.time()})
    await sock.ws.send_json({"type": "ping"})
    await sock.wait_for("pong", 5)
    async with http.get(
        gw.base + "/api/officers", headers={"Authorization": f"Bearer {gw.token('dispatcher')}"}
    ) as r:
        officer = next(o for o in (await r.json())["officers"] if o["id"] == "officer")
    assert officer["status"] == "available" and abs(officer["lat"] - INCIDENT["lat"]) < 1e-9
    await sock.ws.send_str("{not json")
    await sock.task
    assert sock.ws.close_code == 1007
    viewer = await connect(http, gw, "viewer")
    await viewer.ws.send_json({"type": "track.fix", **INCIDENT, "time": time.time()})
    assert (await viewer.wait_for("error", 5))["error"] == "forbidden"
    await viewer.ws.send_str("x" * 70_000)  # over the message limit
    await viewer.task
    assert viewer.ws.close_code in (1009, 1006)
    async with http.get(gw.base + "/healthz") as r:
        assert r.status == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(gw.base + "/ws")  # no token
    assert refused.value.status == 401
