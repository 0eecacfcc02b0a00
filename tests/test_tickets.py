"""Tickets through the HTTP API of a real server on a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
import redis

from gridwatch.contracts.states import STATES
from gridwatch.dispatch.tickets import TRANSITIONS, allowed_actions
from support.procs import GridwatchServer

OFFICER_ACTIONS = {"accept", "decline", "arrive", "resolve"}
# The legal path to each state, as (actor, action) from a new ticket.
PATHS = {
    "new": [],
    "dispatched": [("admin", "dispatch")],
    "accepted": [("admin", "dispatch"), ("officer", "accept")],
    "on_scene": [("admin", "dispatch"), ("officer", "accept"), ("officer", "arrive")],
    "resolved": [("admin", "dispatch"), ("officer", "accept"), ("officer", "arrive"), ("officer", "resolve")],
    "verified": [("admin", "dispatch"), ("officer", "accept"), ("officer", "arrive"), ("officer", "resolve"),
                 ("admin", "verify")],
    "closed": [("admin", "dispatch"), ("officer", "accept"), ("officer", "arrive"), ("officer", "resolve"),
               ("admin", "verify"), ("admin", "close")],
    "rejected": [("admin", "reject")],
    "reassigned": [("admin", "dispatch"), ("officer", "decline")],
    "cancelled": [("admin", "cancel")],
    "suspended": [("admin", "dispatch"), ("officer", "accept"), ("admin", "suspend")],
}  # fmt: skip
HERE = {"lat": 31.2601, "lon": 120.9203}


@pytest.fixture(scope="module")
def gw(tmp_path_factory, users, redis_url):
    cfg = {
        "users": users,
        "redis": {"url": redis_url},
        # Dispatchers choose the officer here: these tests drive every step by hand.
        "dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}},
    }
    server = GridwatchServer(tmp_path_factory.mktemp("tickets"), cfg).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    from support.procs import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def tokens(gw):
    return {u: gw.token(u) for u in ("admin", "dispatcher", "officer", "officer2", "viewer")}


class Api:
    def __init__(self, http, gw, tokens):
        self.http, self.base, self.tokens = http, gw.base, tokens

    async def open(self, who="dispatcher", **fields):
        body = {"category": "illegal_parking", "location": HERE, **fields}
        async with self.http.post(self.base + "/api/tickets", json=body, headers=self.h(who)) as r:
            return r.status, await r.json()

    async def act(self, ticket_id, who, action, **extra):
        body = {"action": action, "reason": f"{who} says {action}", **extra}
        if action == "dispatch":
            body.setdefault("officer", "officer")
        async with self.http.post(
            f"{self.base}/api/tickets/{ticket_id}/actions", json=body, headers=self.h(who)
        ) as r:
            return r.status, await r.json()

    async def get(self, ticket_id, who="admin"):
        async with self.http.get(f"{self.base}/api/tickets/{ticket_id}", headers=self.h(who)) as r:
            return r.status, await r.json()

    def h(self, who):
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def in_state(self, state):
        status, t = await self.open()
        assert status == 201
        for who, action in PATHS[state]:
            status, body = await self.act(t["id"], who, action)
            assert status == 200, body
        assert body["state"] == state if PATHS[state] else True
        return t["id"]


@pytest.fixture
def api(http, gw, tokens):
    return Api(http, gw, tokens)


async def test_full_lifecycle_with_audit_log(api):
    ticket_id = await api.in_state("closed")
    status, t = await api.get(ticket_id)
    assert status == 200 and t["state"] == "closed" and t["assignee"] == "officer"
    assert set(t["times"]) >= {
        "new",
        "dispatched",
        "accepted",
        "on_scene",
        "resolved",
        "verified",
        "closed",
    }
    log = t["log"]
    assert [e["action"] for e in log] == [
        "create",
        "dispatch",
        "accept",
        "arrive",
        "resolve",
        "verify",
        "close",
    ]
    for e in log[1:]:
        assert e["who"] in ("admin", "officer") and e["role"] in ("admin", "officer")
        assert (
            e["why"] == f"{e['who']} says {e['action']}" and e["at"] > 0 and e["from"] and e["to"]
        )


async def test_every_illegal_transition_is_409_naming_the_allowed(api):
    checked = 0
    for state in STATES:
        ticket_id = await api.in_state(state)
        for action in sorted(TRANSITIONS):
            if state in TRANSITIONS[action].sources:
                continue
            who = "officer" if action in OFFICER_ACTIONS else "admin"
            status, body = await api.act(ticket_id, who, action)
            _, now = await api.get(ticket_id)
            assert now["state"] == state, f"{action} moved a {state} ticket"
            if who == "officer" and now["assignee"] != "officer":
                assert status == 403, (state, action, body)
                continue
            assert status == 409, (state, action, body)
            assert body["error"] == "conflict" and body["allowed"] == allowed_actions(state)
            for allowed in body["allowed"]:
                assert allowed in body["message"]
            checked += 1
    assert checked > 60


async def test_officers_act_only_on_their_own_tickets(api):
    ticket_id = await api.in_state("dispatched")  # assigned to "officer"
    status, body = await api.act(ticket_id, "officer2", "accept")
    assert status == 403 and "not assigned to officer2" in body["message"]
    status, _ = await api.get(ticket_id, "officer2")
    assert status == 403
    status, _ = await api.act(ticket_id, "viewer", "cancel")
    assert status == 403
    status, _ = await api.act(ticket_id, "officer", "cancel")  # a supervisor's action
    assert status == 403
    status, body = await api.act(ticket_id, "officer", "accept")
    assert status == 200 and body["state"] == "accepted"
    async with api.http.get(api.base + "/api/tickets", headers=api.h("officer2")) as r:
        assert ticket_id not in [t["id"] for t in (await r.json())["tickets"]]
    async with api.http.get(api.base + "/api/tickets", headers=api.h("officer")) as r:
        assert ticket_id in [t["id"] for t in (await r.json())["tickets"]]


async def test_same_key_twice_and_concurrently_gives_one_ticket(api, redis_url):
    status, first = await api.open(key="violation-42")
    assert status == 201
    status, again = await api.open(key="violation-42")
    assert status == 200 and again["id"] == first["id"]
    results = await asyncio.gather(*(api.open(key="violation-43") for _ in range(25)))
    ids = {body["id"] for _, body in results}
    assert len(ids) == 1
    assert sorted(s for s, _ in results) == [200] * 24 + [201]
    r = redis.Redis.from_url(redis_url)
    made = [k for k in r.hkeys("gw:ticket-keys") if k in (b"violation-42", b"violation-43")]
    assert len(made) == 2
    created = [e for e in r.xrange(f"gw:ticket:{ids.pop()}:log")]
    assert len(created) == 1


async def test_bad_ticket_input_is_400_naming_the_field(api):
    cases = [
        ({"location": {"lat": 91, "lon": 0}}, "location.lat"),
        ({"location": {"lat": "north", "lon": 0}}, "location.lat"),
        ({"location": HERE, "priority": "whenever"}, "priority"),
        ({"location": HERE, "category": "Bad Category"}, "category"),
        ({"location": HERE, "colour": "red"}, "colour"),
        ({}, "location"),
    ]
    for body, field in cases:
        async with api.http.post(
            api.base + "/api/tickets", json=body, headers=api.h("dispatcher")
        ) as r:
            assert r.status == 400, body
            assert field in (await r.json())["message"]
    ticket_id = await api.in_state("new")
    for body, status in [
        ({"action": 7}, 400),
        ({"action": "fly"}, 400),
        ({"action": "dispatch"}, 400),
        ({"action": "close", "reason": 5}, 400),
    ]:
        async with api.http.post(
            f"{api.base}/api/tickets/{ticket_id}/actions", json=body, headers=api.h("admin")
        ) as r:
            assert r.status == status, (body, await r.text())
    status, _ = await api.act("T-999999", "admin", "cancel")
    assert status == 404
    async with api.http.get(api.base + "/api/tickets?state=bogus", headers=api.h("admin")) as r:
        assert r.status == 400


async def test_stats_per_grid_and_category(gridwatch_factory, http):
    gw = gridwatch_factory(
        {
            "dispatch": {
                "categories": {
                    "illegal_parking": {"mode": "suggest"},
                    "street_stall": {"mode": "suggest"},
                }
            }
        }
    )
    tokens = {u: gw.token(u) for u in ("admin", "dispatcher", "officer", "viewer")}
    api = Api(http, gw, tokens)
    closed = await api.in_state("closed")
    await api.in_state("rejected")
    await api.in_state("accepted")
    status, stall = await api.open(category="street_stall")
    assert status == 201
    async with http.get(gw.base + "/api/stats", headers=api.h("viewer")) as r:
        assert r.status == 200
        stats = await r.json()
    overall = stats["all"]
    assert overall["tickets"] == 4 and overall["open"] == 2 and overall["closed"] == 1
    assert overall["closure_rate"] == round(1 / 3, 4)  # rejected cases do not count
    assert overall["on_time_rate"] == 1.0 and overall["overdue"] == 0
    assert overall["median_response_s"] >= 0 and overall["median_arrival_s"] >= 0
    assert stats["categories"]["street_stall"]["open"] == 1
    assert stats["categories"]["illegal_parking"]["tickets"] == 3
    assert stats["grids"]["(none)"]["tickets"] == 4
    _, t = await api.get(closed)
    assert t["state"] == "closed" and stall["state"] == "new"
    async with http.get(gw.base + "/api/stats?window_s=-5", headers=api.h("viewer")) as r:
        assert r.status == 400
    async with http.get(gw.base + "/api/stats", headers=api.h("officer")) as r:
        assert r.status == 403
