"""Dispatch that never leaves an incident waiting and never double-books (issue 14):
busy from every ticket an officer holds, one atomic choose-and-claim, a pending queue
offered again the moment an officer is free, waits that escalate once, ETAs by each
officer's own mode and along the roads, and one assignment for tickets that come
together. Real servers, real Redis; officers are their own phones (fixes they send).
"""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest

from gridwatch.dispatch.routing import distance_m

INCIDENT = (31.2600, 120.9200)
M_PER_DEG_LAT = 111_320.0


def at(north_m: float, east_m: float = 0.0) -> dict:
    lat, lon = INCIDENT
    return {"lat": lat + north_m / M_PER_DEG_LAT,
            "lon": lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat)))}  # fmt: skip


class Desk:
    """The API as the officers' phones and a dispatcher use it."""

    def __init__(self, http, gw):
        self.http, self.gw = http, gw

    def h(self, user: str) -> dict:
        return {"Authorization": f"Bearer {self.gw.token(user)}"}

    async def call(self, method: str, path: str, user: str = "dispatcher", **kw) -> tuple[int, dict]:
        async with self.http.request(method, self.gw.base + path, headers=self.h(user), **kw) as r:
            return r.status, await r.json()

    async def fix(self, officer: str, where: dict, when: float | None = None) -> None:
        await self.fixes(officer, [{**where, "time": when or time.time()}])

    async def fixes(self, officer: str, fixes: list[dict]) -> None:
        status, body = await self.call("POST", "/api/tracks", officer, json={"fixes": fixes})
        assert status == 200 and not body["rejected"], body

    async def open(self, where: dict, **extra) -> dict:
        status, t = await self.call("POST", "/api/tickets", json={"category": "street_stall", "location": where, **extra})
        assert status == 201, t
        return t

    async def act(self, tid: str, user: str, action: str, **extra) -> dict:
        status, t = await self.call("POST", f"/api/tickets/{tid}/actions", user, json={"action": action, **extra})
        assert status == 200, t
        return t

    async def ticket(self, tid: str) -> dict:
        return (await self.call("GET", f"/api/tickets/{tid}"))[1]

    async def until(self, tid: str, ok, timeout: float = 10.0) -> dict:
        """The ticket once `ok(ticket)`; fails after `timeout` s with the ticket as it is."""
        t: dict = {}
        try:
            async with asyncio.timeout(timeout):
                while not ok(t := await self.ticket(tid)):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(f"{tid} never got there in {timeout} s: {json.dumps(t)[:1500]}")
        return t

    async def officers(self) -> dict[str, dict]:
        return {o["id"]: o for o in (await self.call("GET", "/api/officers"))[1]["officers"]}


def offered_to(officer: str):
    return lambda t: t["state"] == "dispatched" and t["assignee"] == officer


async def test_busy_with_every_ticket_he_holds_and_arrival_from_his_walk(gridwatch_factory, http):
    """Verifying his previous ticket leaves him busy with the new one, whose arrival his
    track still finds, from a walk sent whole after an offline stretch that ends past
    the place; two tickets opened at the same instant go to two officers."""
    gw = gridwatch_factory({"dispatch": {"arrive_radius_m": 30}})
    desk = Desk(http, gw)
    await desk.fix("officer", at(0))
    first = await desk.open(at(0))
    assert offered_to("officer")(first), first
    tid = first["id"]
    for action in ("accept", "arrive", "resolve"):
        await desk.act(tid, "officer", action)
    second = await desk.open(at(400))  # he is free again: the nearest
    assert offered_to("officer")(second), second
    await desk.act(second["id"], "officer", "accept")
    await desk.act(tid, "dispatcher", "verify")
    await desk.act(tid, "dispatcher", "close")
    me = (await desk.officers())["officer"]
    assert me["status"] == "busy" and me["tickets"] == [second["id"]], me
    # Offline since the offer, he walks to the second place and past it; his phone sends
    # it all at once, the last fix 200 m beyond the place.
    t0 = second["times"]["dispatched"]
    while time.time() < t0 + 2.0:
        await asyncio.sleep(0.1)
    walk = [{**at(400 * i / 10), "time": t0 + 0.1 * i} for i in range(11)]
    walk += [{**at(400 + 50 * i), "time": t0 + 1.0 + 0.2 * i} for i in range(1, 5)]
    await desk.fixes("officer", walk)
    t = await desk.until(second["id"], lambda t: t["state"] == "on_scene", 5)
    arrive = next(e for e in t["log"] if e["action"] == "arrive")
    assert arrive["role"] == "system" and "track" in arrive["why"]
    assert t["times"]["on_scene"] >= t["times"]["accepted"]

    # Two tickets at the same instant, two free officers: one each, never both to one.
    for officer in ("officer2", "officer3"):
        await desk.fix(officer, at(-1000, 100 if officer == "officer2" else -100))
    pair = await asyncio.gather(desk.open(at(-1000)), desk.open(at(-1000, 5)))
    pair = [await desk.until(t["id"], lambda t: t["state"] == "dispatched", 5) for t in pair]
    assert sorted(t["assignee"] for t in pair) == ["officer2", "officer3"]


async def test_queue_offers_the_first_free_officer_and_escalates_a_long_wait_once(gridwatch_factory, http):
    gw = gridwatch_factory({"dispatch": {"wait_s": 4, "remind_before_s": 2}})
    desk = Desk(http, gw)
    await desk.fix("officer", at(200))
    busy = await desk.open(at(0))
    await desk.act(busy["id"], "officer", "accept")
    waiting = await desk.open(at(100))
    assert waiting["state"] == "new" and waiting["assignee"] is None
    assert waiting["note"] == "no available officer within 5000 m (those in reach: busy)", waiting
    await asyncio.sleep(1.0)  # it waits
    await desk.act(busy["id"], "officer", "arrive")
    await desk.act(busy["id"], "officer", "resolve")
    freed = time.monotonic()
    t = await desk.until(waiting["id"], offered_to("officer"), 2.0)  # within 2 s of his resolve
    assert time.monotonic() - freed < 2.0
    assert t["note"] is None
    waited = [e for e in t["log"] if e["action"] == "waiting"]
    assert waited and "busy" in waited[0]["why"]
    offer = next(e for e in t["log"] if e["action"] == "dispatch")
    assert "after waiting" in offer["why"] and "busy" in offer["why"], offer
    assert not t["overdue"]

    # Nobody at all: it waits with the reason, is reminded, then escalates once.
    await desk.act(t["id"], "officer", "decline", reason="off shift")
    await desk.call("POST", "/api/officers/officer/duty", "officer", json={"on_duty": False})
    alone = await desk.open(at(-300))
    t = await desk.until(alone["id"], lambda t: t["overdue"], 8)
    assert t["state"] == "new" and "off duty" in t["note"]
    await asyncio.sleep(1.5)  # a second escalation would come in this time
    _, alerts = await desk.call("GET", "/api/alerts")
    mine = [a for a in alerts["alerts"] if a["ticket"] == alone["id"]]
    assert sorted(a["kind"] for a in mine) == ["escalation", "reminder"], mine
    assert [e["action"] for e in (await desk.ticket(alone["id"]))["log"]].count("overdue") == 1
    _, stats = await desk.call("GET", "/api/stats?window_s=600")
    assert stats["all"]["overdue"] >= 1 and stats["queue"]["length"] >= 1
    assert stats["queue"]["oldest_s"] >= 4


async def test_the_faster_officer_is_offered_first_by_mode_and_by_road(gridwatch_factory, http, tmp_path):
    gw = gridwatch_factory({"officers": [{"id": "officer", "mode": "foot"}, {"id": "officer2", "mode": "ebike"}],
                            "dispatch": {"categories": {"street_stall": {"mode": "suggest"}}}})  # fmt: skip
    desk = Desk(http, gw)
    await desk.fix("officer", at(300))
    await desk.fix("officer2", at(-900))
    t = await desk.open(at(0), category="illegal_parking")  # auto mode
    assert offered_to("officer2")(t), t  # 900 m at 5.5 m/s beats 300 m at 1.4 m/s
    offer = next(e for e in (await desk.ticket(t["id"]))["log"] if e["action"] == "dispatch")
    assert "ebike" in offer["why"] and "ETA" in offer["why"]

    # A river along the incident's street with no bridge: the officer 100 m across it
    # cannot get there; the one 600 m along the same bank is offered it.
    roads = tmp_path / "roads.geojson"
    south, north = [at(0, e) for e in (-2000, 2000)], [at(100, e) for e in (-2000, 2000)]
    roads.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString",
         "coordinates": [[p["lon"], p["lat"]] for p in bank]}} for bank in (south, north)]}))  # fmt: skip
    gw2 = gridwatch_factory({"dispatch": {"roads": str(roads)}}, name="roads")
    desk2 = Desk(http, gw2)
    await desk2.fix("officer", at(100, 0))  # across the river
    await desk2.fix("officer2", at(0, 600))  # same bank
    t = await desk2.open(at(0, 0))
    assert offered_to("officer2")(t), t
    _, cands = await desk2.call("GET", f"/api/tickets/{t['id']}/candidates")
    assert cands["candidates"] == [] or all(c["officer"] != "officer" for c in cands["candidates"])
    # With the other officer taken, the one across the river is no candidate at all.
    assert "no road" in (await desk2.ticket((await desk2.open(at(0, 50)))["id"]))["note"]


async def test_two_tickets_two_officers_each_gets_the_better_one(gridwatch_factory, http):
    """On a line: officer2 at 0, ticket A at 600 m, officer at 900 m, ticket B at 1600 m.
    One at a time, A goes to the nearest (officer, 300 m) and B to officer2 (1600 m); as
    one assignment officer2 takes A (600 m) and officer B (700 m): 600 m less walking,
    about 9 minutes on foot."""
    gw = gridwatch_factory({"dispatch": {"match_window_s": 1.0}})
    desk = Desk(http, gw)
    await desk.fix("officer2", at(0))
    await desk.fix("officer", at(900))
    a, b = await asyncio.gather(desk.open(at(600), key="a"), desk.open(at(1600), key="b"))
    a = await desk.until(a["id"], lambda t: t["state"] == "dispatched", 5)
    b = await desk.until(b["id"], lambda t: t["state"] == "dispatched", 5)
    assert (a["assignee"], b["assignee"]) == ("officer2", "officer")
    m = gw.metrics()  # the matcher shows in /metrics
    assert m["gridwatch_dispatch_offers_total"] == 2 and m["gridwatch_dispatch_match_rounds_total"] >= 1
    walk = distance_m(**_ll(at(0)), **_ll2(at(600))) + distance_m(**_ll(at(900)), **_ll2(at(1600)))
    greedy = distance_m(**_ll(at(900)), **_ll2(at(600))) + distance_m(**_ll(at(0)), **_ll2(at(1600)))
    assert (greedy - walk) * 1.3 / 1.4 > 300  # what one-at-a-time offers would have lost


def _ll(p: dict) -> dict:
    return {"lat1": p["lat"], "lon1": p["lon"]}


def _ll2(p: dict) -> dict:
    return {"lat2": p["lat"], "lon2": p["lon"]}


async def test_listing_with_cursor_and_filters_bulk_logs_and_stats_windows(gridwatch_factory, http):
    gw = gridwatch_factory({"dispatch": {"categories": {"street_stall": {"mode": "suggest"}}}})
    desk = Desk(http, gw)
    made = [await desk.open(at(10 * i), key=f"k{i}", category="street_stall" if i % 2 else "illegal_parking")
            for i in range(25)]  # fmt: skip
    seen, cursor = [], None
    while True:
        q = "/api/tickets?limit=7" + (f"&cursor={cursor}" if cursor else "")
        status, page = await desk.call("GET", q)
        assert status == 200 and len(page["tickets"]) <= 7
        seen += [t["id"] for t in page["tickets"]]
        if (cursor := page["next"]) is None:
            break
    assert seen == [t["id"] for t in reversed(made)]  # newest first, each once
    status, page = await desk.call("GET", "/api/tickets?category=street_stall&limit=1000")
    assert [t["id"] for t in page["tickets"]] == [t["id"] for t in reversed(made) if t["category"] == "street_stall"]
    mid = made[12]["created_at"]
    status, page = await desk.call("GET", f"/api/tickets?to={mid}&state=new&limit=1000")
    assert {t["id"] for t in page["tickets"]} == {t["id"] for t in made[:13]}
    for bad in ("?bogus=1", "?cursor=nope", "?state=done", "?limit=0", "?from=nan"):
        status, body = await desk.call("GET", "/api/tickets" + bad)
        assert status == 400 and body["error"] == "bad_query", (bad, body)
    status, body = await desk.call("GET", "/api/tickets?assignee=officer2", "officer")
    assert status == 403
    status, logs = await desk.call("GET", "/api/tickets/logs?limit=1000")
    assert status == 200 and set(logs["logs"]) == {t["id"] for t in made}
    assert all(entries[0]["action"] == "create" for entries in logs["logs"].values())
    assert (await desk.call("GET", "/api/tickets/logs", "officer"))[0] == 403
    status, stats = await desk.call("GET", f"/api/stats?from={made[0]['created_at']}&to={mid}")
    assert status == 200 and stats["all"]["tickets"] == 13 and stats["all"]["open"] == 25
    assert set(stats["all"]["steps"]) == {"offered", "accepted", "on_scene", "resolved", "closed"}
    assert (await desk.call("GET", f"/api/stats?from={mid}&to={mid - 10}"))[0] == 400


async def test_offers_only_to_officers_who_can_answer_and_a_decline_bars_for_a_while(gridwatch_factory, http):
    gw = gridwatch_factory({"officers": [{"id": "p-001"}], "dispatch": {"decline_bar_s": 2}})
    desk = Desk(http, gw)
    # The AVL feed puts p-001 (no login: nobody to answer) and officer2 (phone off) right there.
    status, body = await desk.call("POST", "/api/tracks", "tracker", json={"fixes": [
        {**at(10), "officer": "p-001", "time": time.time()}, {**at(20), "officer": "officer2", "time": time.time()}]})  # fmt: skip
    assert status == 200 and body["stored"] == 2
    t = await desk.open(at(0))
    assert t["state"] == "new" and t["note"] == "no available officer within 5000 m (those in reach: with no phone online)"
    await desk.fix("officer", at(500))  # his own phone: he can answer
    t = await desk.until(t["id"], offered_to("officer"), 2.0)
    await desk.act(t["id"], "officer", "decline", reason="with a citizen")
    t = await desk.until(t["id"], lambda t: "declined it" in (t["note"] or ""), 2.0)
    assert t["state"] == "reassigned"
    # Barred for decline_bar_s (2 s), not for ever: he is the only one, so it comes back.
    declined = time.monotonic()
    t = await desk.until(t["id"], offered_to("officer"), 5.0)
    assert time.monotonic() - declined >= 1.5
