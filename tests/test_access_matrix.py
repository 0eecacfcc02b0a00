"""Every route the server serves x every role x ownership, generated from the app's own
router and rules: a new route is in the matrix the moment it exists (and a route without
a rule stops the node at start), a new public route must be added here on purpose, and a
route whose rule names an ownership check must have a case below that exercises it."""

from __future__ import annotations

import re
import time

import pytest

from gridwatch.contracts.roles import ROLES
from gridwatch.signaling.app import create_app
from gridwatch.signaling.config import Config
from gridwatch.signaling.policy import rule_of
from support.procs import GridwatchServer

PUBLIC = {"/healthz", "/readyz", "/metrics", "/api/login", "/api/openapi.json", "/", "/phone", "/ops", "/sw.js"}
SAMPLE = {"id": "nope-0", "name": "nope", "stream": "nope", "session": "nope", "path": "nope/x.mp4", "plate": "nope",
          "token": "nope"}  # fmt: skip
INCIDENT = {"lat": 31.26, "lon": 120.92}


def routes() -> list[tuple[str, str, object]]:
    app = create_app(Config())
    out = []
    for route in app.router.routes():
        rule = rule_of(route.handler)
        if rule is not None and route.method != "HEAD":
            out.append((route.method, route.resource.canonical, rule))
    return out


def fill(path: str) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: SAMPLE[m[1]], path)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, users):
    server = GridwatchServer(tmp_path_factory.mktemp("matrix"), {"users": users}).start()
    yield server
    server.stop()
    assert server.tracebacks() == []


def test_public_routes_are_exactly_the_ones_meant_to_be():
    assert {path for _, path, rule in routes() if rule.public} == PUBLIC


async def test_every_route_refuses_no_token_and_every_role_it_does_not_name(gw, http):
    tokens = {role: gw.token(user) for user, role in (("admin", "admin"), ("dispatcher", "dispatcher"),
              ("viewer", "viewer"), ("officer", "officer"), ("tracker", "device"))}  # fmt: skip
    checked = 0
    for method, path, rule in routes():
        if rule.public:
            continue
        url = gw.base + fill(path)
        kw = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        async with http.request(method, url, **kw) as r:
            assert r.status == 401, (method, path, r.status)
        for role in ROLES:
            if method == "POST" and path == "/api/logout":
                token = gw.token({"device": "tracker"}.get(role, role))  # its own, revoked here
            else:
                token = tokens[role]
            async with http.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kw) as r:
                if role in rule.roles:  # served, or refused for the resource (ownership), never the role
                    text = await r.text()
                    assert r.status != 401 and "may not do this" not in text, (method, path, role, r.status, text)
                    assert r.status != 403 or rule.owner, (method, path, role, text)
                else:
                    assert r.status == 403, (method, path, role, r.status)
                    assert (await r.json())["error"] == "forbidden"
            checked += 1
    assert checked >= 5 * 40


# Routes whose rule names a check on the resource itself, and a case for each: the role
# that owns it is served, the same role on someone else's is refused.
async def test_ownership_is_checked_on_the_resource_named(gw, http):
    h = {u: {"Authorization": f"Bearer {gw.token(u)}"} for u in ("dispatcher", "officer", "officer2", "viewer")}
    async with http.post(gw.base + "/api/tracks", json={"fixes": [{**INCIDENT, "time": time.time()}]},
                         headers=h["officer"]) as r:  # fmt: skip
        assert r.status == 200
    async with http.post(gw.base + "/api/tickets", json={"category": "other", "location": INCIDENT},
                         headers=h["dispatcher"]) as r:  # fmt: skip
        ticket = await r.json()
    assert ticket["assignee"] == "officer"
    tid = ticket["id"]
    cases = {
        ("GET", "/api/tickets/{id}"): (f"/api/tickets/{tid}", None),
        ("GET", "/api/tickets/{id}/track"): (f"/api/tickets/{tid}/track", None),
        ("GET", "/api/tickets/{id}/evidence"): (f"/api/tickets/{tid}/evidence", None),
        ("GET", "/api/tickets/{id}/evidence/{name}"): (f"/api/tickets/{tid}/evidence/none.jpg", None),
        ("GET", "/api/tickets/{id}/evidence.zip"): (f"/api/tickets/{tid}/evidence.zip", None),
        ("POST", "/api/tickets/{id}/actions"): (f"/api/tickets/{tid}/actions", {"action": "accept"}),
        ("POST", "/api/tickets/{id}/evidence"): (f"/api/tickets/{tid}/evidence", None),
        ("GET", "/api/officers/{id}/track"): ("/api/officers/officer/track", None),
        ("POST", "/api/officers/{id}/duty"): ("/api/officers/officer/duty", {"on_duty": True}),
        ("POST", "/api/tracks"): ("/api/tracks", {"fixes": [{"officer": "officer", **INCIDENT, "time": time.time()}]}),
    }
    owned = {(m, p) for m, p, rule in routes() if rule.owner and "officer" in rule.roles}
    untested = owned - set(cases) - {
        ("GET", "/api/tickets"),  # his list holds only his: test_phone_api
        ("GET", "/api/streams"), ("POST", "/whep/{stream}"), ("GET", "/api/recordings"),
        ("GET", "/api/recordings/clip"), ("GET", "/recordings/{path}"),  # watch rules: test_field_abuse, test_recordings
        ("GET", "/api/recordings/timeline"),  # watch rules and his own tickets only: test_ops_recordings
        ("DELETE", "/whep/{stream}/{session}"), ("POST", "/whip/{stream}"),
        ("DELETE", "/whip/{stream}/{session}"),  # the publisher's own: test_field_abuse
    }  # fmt: skip
    assert not untested, f"routes with an ownership rule and no case here: {sorted(untested)}"
    for (method, _), (path, body) in cases.items():
        async with http.request(method, gw.base + path, json=body, headers=h["officer2"]) as r:
            assert r.status == 403, (method, path, "officer2", r.status, await r.text())
        async with http.request(method, gw.base + path, json=body, headers=h["officer"]) as r:
            assert r.status not in (401, 403), (method, path, "officer", r.status, await r.text())
